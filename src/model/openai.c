/* The OpenAI-compatible API (OpenAI, OpenRouter, vLLM, llama.cpp's server,
 * Ollama, LM Studio): POST {base_url}/chat/completions and
 * {base_url}/embeddings with a Bearer key. Only what every one of them
 * speaks is sent: model, messages, max_tokens, temperature and, for
 * structured output, response_format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "model/model_int.h"

static void message_add(json_t *msgs, const char *role, const char *content)
{
    json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", role, "content", content));
}

static json_t *chat_body(const ModelProviderConfig *cfg, const ModelChat *c)
{
    json_t *msgs = json_array();
    if (c->system)
        message_add(msgs, "system", c->system);
    message_add(msgs, "user", c->prompt);
    if (c->broken) {
        message_add(msgs, "assistant", c->broken);
        message_add(msgs, "user", c->repair);
    }
    json_t *b = json_pack("{s:s, s:o, s:i, s:b}", "model", cfg->model, "messages", msgs,
                          "temperature", 0, "stream", 0);
    if (c->max_tokens > 0)
        json_object_set_new(b, "max_tokens", json_integer(c->max_tokens));
    if (c->schema)
        json_object_set_new(b, "response_format",
                            json_pack("{s:s, s:{s:s, s:O, s:b}}", "type", "json_schema",
                                      "json_schema", "name", "output", "schema", c->schema,
                                      "strict", 1));
    else if (c->json)
        json_object_set_new(b, "response_format", json_pack("{s:s}", "type", "json_object"));
    return b;
}

/* usage.<in>/<out> as integers, when both are there */
static void usage_read(const json_t *answer, const char *in, const char *out, ModelReply *rep)
{
    const json_t *u = json_object_get(answer, "usage");
    const json_t *i = json_object_get(u, in), *o = out ? json_object_get(u, out) : NULL;
    if (json_is_integer(i) && (!out || json_is_integer(o)) && json_integer_value(i) >= 0 &&
        (!o || json_integer_value(o) >= 0)) {
        rep->has_usage = true;
        rep->tokens_in = json_integer_value(i);
        rep->tokens_out = o ? json_integer_value(o) : 0;
    }
}

static void model_read(const json_t *answer, ModelReply *rep)
{
    const json_t *m = json_object_get(answer, "model");
    if (json_is_string(m)) {
        snprintf(rep->model, sizeof rep->model, "%s", json_string_value(m));
        core_utf8_sanitize(rep->model);
    }
}

static int chat_parse(const json_t *answer, ModelReply *out, char *why, size_t why_size)
{
    const json_t *choices = json_object_get(answer, "choices");
    if (!json_is_array(choices) || json_array_size(choices) == 0) {
        snprintf(why, why_size, "no choices");
        return ERR_INVAL;
    }
    const json_t *msg = json_object_get(json_array_get(choices, 0), "message");
    const json_t *content = json_object_get(msg, "content");
    if (!json_is_string(content)) {
        const json_t *refusal = json_object_get(msg, "refusal");
        if (json_is_string(refusal)) {
            snprintf(why, why_size, "the model refused: %.200s", json_string_value(refusal));
            core_utf8_sanitize(why);
        } else
            snprintf(why, why_size, "choices[0].message.content is not a string");
        return ERR_INVAL;
    }
    out->text = xstrndup(json_string_value(content), json_string_length(content));
    usage_read(answer, "prompt_tokens", "completion_tokens", out);
    model_read(answer, out);
    return 0;
}

static struct curl_slist *auth_headers(struct curl_slist *list, const char *key)
{
    if (!key)
        return list;
    size_t n = strlen(key) + 32;
    char *line = xmalloc(n);
    snprintf(line, n, "Authorization: Bearer %s", key);
    struct curl_slist *l = curl_slist_append(list, line);
    explicit_bzero(line, n);
    free(line);
    if (!l) {
        fprintf(stderr, "curl_slist_append: out of memory\n");
        abort();
    }
    return l;
}

static json_t *embed_body(const ModelProviderConfig *cfg, const char *input)
{
    return json_pack("{s:s, s:s}", "model", cfg->embed_model[0] ? cfg->embed_model : cfg->model,
                     "input", input);
}

#define EMBED_MAX_DIM 65536

static int embed_parse(const json_t *answer, json_t **ret_vector, ModelReply *out, char *why,
                       size_t why_size)
{
    const json_t *data = json_object_get(answer, "data");
    if (!json_is_array(data) || json_array_size(data) == 0) {
        snprintf(why, why_size, "no data");
        return ERR_INVAL;
    }
    const json_t *e = json_object_get(json_array_get(data, 0), "embedding");
    if (!json_is_array(e) || json_array_size(e) == 0 || json_array_size(e) > EMBED_MAX_DIM) {
        snprintf(why, why_size, "data[0].embedding is not an array of 1 to %d numbers",
                 EMBED_MAX_DIM);
        return ERR_INVAL;
    }
    json_t *vec = json_array();
    size_t i;
    const json_t *x;
    json_array_foreach (e, i, x) {
        if (!json_is_number(x)) {
            json_decref(vec);
            snprintf(why, why_size, "data[0].embedding[%zu] is not a number", i);
            return ERR_INVAL;
        }
        json_array_append_new(vec, json_real(json_number_value(x)));
    }
    usage_read(answer, "prompt_tokens", NULL, out);
    model_read(answer, out);
    *ret_vector = vec;
    return 0;
}

const ModelWire model__openai_wire = {
    .kind = "openai",
    .chat_path = "/chat/completions",
    .chat_body = chat_body,
    .chat_parse = chat_parse,
    .auth_headers = auth_headers,
    .embed_path = "/embeddings",
    .embed_body = embed_body,
    .embed_parse = embed_parse,
    .no_embed_msg = NULL,
};

int model_openai_new(const ModelProviderConfig *cfg, ModelProvider **ret, Err *err)
{
    return model__remote_new(cfg, &model__openai_wire, ret, err);
}
