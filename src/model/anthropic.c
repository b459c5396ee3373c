/* Anthropic's Messages API: POST {base_url}/messages with x-api-key and
 * anthropic-version. It has no JSON mode; structured output is asked for in
 * the system prompt (remote.c states the schema there) and checked, with
 * one repair round, like every provider's. It offers no embeddings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"
#include "model/model_int.h"

#define TEXT_MAX (64 << 20) /* bytes of text joined from the content blocks */

static void message_add(json_t *msgs, const char *role, const char *content)
{
    json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", role, "content", content));
}

static json_t *chat_body(const ModelProviderConfig *cfg, const ModelChat *c)
{
    json_t *msgs = json_array();
    message_add(msgs, "user", c->prompt);
    if (c->broken) {
        message_add(msgs, "assistant", c->broken);
        message_add(msgs, "user", c->repair);
    }
    int max = c->max_tokens > 0 ? c->max_tokens : MODEL_ANTHROPIC_DEFAULT_MAX_TOKENS;
    json_t *b = json_pack("{s:s, s:i, s:i}", "model", cfg->model, "max_tokens", max,
                          "temperature", 0);
    if (c->system)
        json_object_set_new(b, "system", json_string(c->system));
    json_object_set_new(b, "messages", msgs);
    return b;
}

static int chat_parse(const json_t *answer, ModelReply *out, char *why, size_t why_size)
{
    const json_t *content = json_object_get(answer, "content");
    if (!json_is_array(content)) {
        snprintf(why, why_size, "content is not an array");
        return ERR_INVAL;
    }
    Buf text;
    buf_init(&text, TEXT_MAX);
    bool any = false;
    size_t i;
    const json_t *block;
    json_array_foreach (content, i, block) {
        const json_t *type = json_object_get(block, "type");
        const json_t *t = json_object_get(block, "text");
        if (json_is_string(type) && !strcmp(json_string_value(type), "text") && json_is_string(t)) {
            any = true;
            if (buf_append(&text, json_string_value(t), json_string_length(t)) < 0) {
                buf_done(&text);
                snprintf(why, why_size, "the text is larger than %d bytes", TEXT_MAX);
                return ERR_INVAL;
            }
        }
    }
    if (!any) {
        buf_done(&text);
        snprintf(why, why_size, "no text block in content");
        return ERR_INVAL;
    }
    out->text = buf_steal(&text);
    buf_done(&text);
    const json_t *u = json_object_get(answer, "usage");
    const json_t *in = json_object_get(u, "input_tokens"), *o = json_object_get(u, "output_tokens");
    if (json_is_integer(in) && json_is_integer(o) && json_integer_value(in) >= 0 &&
        json_integer_value(o) >= 0) {
        out->has_usage = true;
        out->tokens_in = json_integer_value(in);
        out->tokens_out = json_integer_value(o);
    }
    const json_t *m = json_object_get(answer, "model");
    if (json_is_string(m)) {
        snprintf(out->model, sizeof out->model, "%s", json_string_value(m));
        core_utf8_sanitize(out->model);
    }
    return 0;
}

static struct curl_slist *append(struct curl_slist *list, const char *line)
{
    struct curl_slist *l = curl_slist_append(list, line);
    if (!l) {
        fprintf(stderr, "curl_slist_append: out of memory\n");
        abort();
    }
    return l;
}

static struct curl_slist *auth_headers(struct curl_slist *list, const char *key)
{
    list = append(list, "anthropic-version: " MODEL_ANTHROPIC_VERSION);
    if (!key)
        return list;
    size_t n = strlen(key) + 16;
    char *line = xmalloc(n);
    snprintf(line, n, "x-api-key: %s", key);
    list = append(list, line);
    explicit_bzero(line, n);
    free(line);
    return list;
}

const ModelWire model__anthropic_wire = {
    .kind = "anthropic",
    .chat_path = "/messages",
    .chat_body = chat_body,
    .chat_parse = chat_parse,
    .auth_headers = auth_headers,
    .embed_path = NULL,
    .no_embed_msg = "embeddings are not offered by the anthropic provider",
};

int model_anthropic_new(const ModelProviderConfig *cfg, ModelProvider **ret, Err *err)
{
    return model__remote_new(cfg, &model__anthropic_wire, ret, err);
}
