/* Unit tests of the remote model providers' pure parts: Retry-After, the
 * top-level schema check, the classify schema, reading a model's JSON
 * answer, the request bodies and answers of both APIs, the API error
 * message, the key's redaction and the checks at creation. Calls over the
 * network are in tests/integration/test_model_providers.sh. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "model/model_int.h"

static json_t *J(const char *text)
{
    json_t *v = NULL;
    Err err = { 0 };
    cr_assert_eq(core_json_parse(text, strlen(text), &v, &err), 0, "%s: %s", text, err.msg);
    return v;
}

static void assert_json(const json_t *got, const char *want)
{
    json_t *w = J(want);
    Buf a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    core_json_canonical(got, &a);
    core_json_canonical(w, &b);
    cr_assert_str_eq(buf_cstr(&a), buf_cstr(&b));
    buf_done(&a);
    buf_done(&b);
    json_decref(w);
}

/* ---- Retry-After -------------------------------------------------------- */

Test(retry_after, seconds)
{
    int64_t ms = -1;
    cr_assert_eq(model__retry_after_parse("7", 0, &ms), 0);
    cr_assert_eq(ms, 7000);
    cr_assert_eq(model__retry_after_parse(" 0 ", 0, &ms), 0);
    cr_assert_eq(ms, 0);
    /* beyond a day is a day, however many digits */
    cr_assert_eq(model__retry_after_parse("99999999999999999999999", 0, &ms), 0);
    cr_assert_eq(ms, 86400LL * 1000);
}

Test(retry_after, http_dates_in_the_three_forms)
{
    /* 1994-11-06T08:49:37Z */
    const int64_t at = 784111777LL * 1000;
    int64_t ms = -1;
    cr_assert_eq(model__retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", at - 30000, &ms), 0);
    cr_assert_eq(ms, 30000);
    cr_assert_eq(model__retry_after_parse("Sunday, 06-Nov-94 08:49:37 GMT", at - 5000, &ms), 0);
    cr_assert_eq(ms, 5000);
    cr_assert_eq(model__retry_after_parse("Sun Nov  6 08:49:37 1994", at - 1000, &ms), 0);
    cr_assert_eq(ms, 1000);
    /* a date in the past: now */
    cr_assert_eq(model__retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", at + 1000, &ms), 0);
    cr_assert_eq(ms, 0);
}

Test(retry_after, garbage_is_refused_and_leaves_the_output)
{
    int64_t ms = 42;
    cr_assert_eq(model__retry_after_parse("", 0, &ms), ERR_INVAL);
    cr_assert_eq(model__retry_after_parse("-5", 0, &ms), ERR_INVAL);
    cr_assert_eq(model__retry_after_parse("1.5", 0, &ms), ERR_INVAL);
    cr_assert_eq(model__retry_after_parse("soon", 0, &ms), ERR_INVAL);
    cr_assert_eq(model__retry_after_parse(NULL, 0, &ms), ERR_INVAL);
    cr_assert_eq(ms, 42);
}

/* ---- the schema check --------------------------------------------------- */

static const char PERSON[] =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"tag\":{\"enum\":[\"a\",1]},\"x\":{\"type\":[\"string\",\"null\"]}},"
    "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}";

static bool check(const char *schema, const char *value, char *why)
{
    json_t *s = J(schema), *v = J(value);
    bool ok = model__schema_check(s, v, why, 256);
    json_decref(s);
    json_decref(v);
    return ok;
}

Test(schema_check, accepts_what_follows)
{
    char why[256] = "";
    cr_assert(check(PERSON, "{\"name\":\"Zoë\",\"age\":42}", why), "%s", why);
    cr_assert(check(PERSON, "{\"name\":\"Zoë\",\"age\":42.0,\"tag\":1.0,\"x\":null}", why), "%s",
              why);
    cr_assert(check(PERSON, "{\"name\":\"a\",\"age\":0,\"tag\":\"a\",\"x\":\"s\"}", why), "%s",
              why);
    /* no schema constraints, an unknown type: not refused here */
    cr_assert(check("{}", "[1]", why));
    cr_assert(check("{\"type\":\"decimal\"}", "\"x\"", why));
}

Test(schema_check, refuses_and_says_why)
{
    char why[256] = "";
    cr_assert(!check(PERSON, "[]", why));
    cr_assert_str_eq(why, "the answer must be object, not array");
    cr_assert(!check(PERSON, "{\"name\":\"a\"}", why));
    cr_assert_str_eq(why, "the key 'age' is missing");
    cr_assert(!check(PERSON, "{\"name\":\"a\",\"age\":\"3\"}", why));
    cr_assert_str_eq(why, "'age' must be integer, not string");
    cr_assert(!check(PERSON, "{\"name\":\"a\",\"age\":1.5}", why));
    cr_assert(!check(PERSON, "{\"name\":\"a\",\"age\":1e300}", why)); /* whole, too big */
    cr_assert_str_eq(why, "'age' is out of its range");
    cr_assert(!check(PERSON, "{\"name\":\"a\",\"age\":151}", why));
    cr_assert_str_eq(why, "'age' is out of its range");
    cr_assert(!check(PERSON, "{\"name\":\"a\",\"age\":1,\"tag\":\"b\"}", why));
    cr_assert_str_eq(why, "'tag' is not one of the allowed values");
    cr_assert(!check(PERSON, "{\"name\":\"a\",\"age\":1,\"x\":2}", why));
    cr_assert_str_eq(why, "'x' must be string or null, not integer");
    cr_assert(!check(PERSON, "{\"name\":\"a\",\"age\":1,\"extra\":true}", why));
    cr_assert_str_eq(why, "the key 'extra' is not allowed");
}

Test(schema_check, classify_schema)
{
    json_t *labels = J("[\"spam\",\"ham\"]");
    json_t *s = model__classify_schema(labels);
    cr_assert_not_null(s);
    json_t *good = J("{\"label\":\"ham\",\"confidence\":0.5}");
    json_t *bad_label = J("{\"label\":\"eggs\",\"confidence\":0.5}");
    json_t *bad_conf = J("{\"label\":\"ham\",\"confidence\":1.5}");
    char why[256];
    cr_assert(model__schema_check(s, good, why, sizeof why));
    cr_assert(!model__schema_check(s, bad_label, why, sizeof why));
    cr_assert(!model__schema_check(s, bad_conf, why, sizeof why));
    json_decref(good);
    json_decref(bad_label);
    json_decref(bad_conf);
    json_decref(s);
    json_decref(labels);

    const char *refused[] = { "[]", "[\"\"]", "[1]", "{\"a\":1}" };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        json_t *l = J(refused[i]);
        cr_assert_null(model__classify_schema(l), "%s", refused[i]);
        json_decref(l);
    }
    cr_assert_null(model__classify_schema(NULL));
}

/* ---- a model's JSON answer ---------------------------------------------- */

Test(json_answer, plain_fenced_and_broken)
{
    json_t *v = NULL;
    char why[256];
    cr_assert_eq(model__json_answer_parse("  {\"a\":1}\n", &v, why, sizeof why), 0);
    assert_json(v, "{\"a\":1}");
    json_decref(v);
    cr_assert_eq(model__json_answer_parse("```json\n{\"a\":2}\n```", &v, why, sizeof why), 0);
    assert_json(v, "{\"a\":2}");
    json_decref(v);
    cr_assert_eq(model__json_answer_parse("```\n[1]\n```\n", &v, why, sizeof why), 0);
    assert_json(v, "[1]");
    json_decref(v);

    cr_assert_eq(model__json_answer_parse("", &v, why, sizeof why), ERR_INVAL);
    cr_assert_str_eq(why, "the answer is empty");
    cr_assert_eq(model__json_answer_parse("Sure! {\"a\":1}", &v, why, sizeof why), ERR_INVAL);
    cr_assert(!strncmp(why, "the answer is not JSON: ", 24), "%s", why);
    cr_assert_eq(model__json_answer_parse("{\"a\":1,\"a\":2}", &v, why, sizeof why), ERR_INVAL);
    cr_assert_eq(model__json_answer_parse("{\"a\":1} {}", &v, why, sizeof why), ERR_INVAL);
}

/* ---- prompts ------------------------------------------------------------ */

Test(prompts, system_and_repair)
{
    json_t *schema = J("{\"type\":\"object\"}");
    Buf b;
    buf_init(&b, 0);
    cr_assert_eq(model__system_build("Be brief.", NULL, &b), 0);
    cr_assert_str_eq(buf_cstr(&b), "Be brief.");
    buf_clear(&b);
    cr_assert_eq(model__system_build(NULL, schema, &b), 0);
    cr_assert(strstr(buf_cstr(&b), "follow this JSON schema:\n{\"type\":\"object\"}"));
    cr_assert(strncmp(buf_cstr(&b), "\n", 1));
    buf_clear(&b);
    cr_assert_eq(model__system_build("S.", schema, &b), 0);
    cr_assert(!strncmp(buf_cstr(&b), "S.\n\nAnswer with a single JSON value", 34));
    buf_clear(&b);
    cr_assert_eq(model__repair_build(schema, "the key 'a' is missing", &b), 0);
    cr_assert(strstr(buf_cstr(&b), "(the key 'a' is missing)"));
    cr_assert(strstr(buf_cstr(&b), "{\"type\":\"object\"}"));
    buf_done(&b);

    /* a capped buffer: the size bound holds */
    Buf small;
    buf_init(&small, 16);
    cr_assert_eq(model__system_build("0123456789", schema, &small), ERR_TOOBIG);
    buf_done(&small);
    json_decref(schema);
}

/* ---- the OpenAI wire ---------------------------------------------------- */

static ModelProviderConfig config(const char *kind)
{
    ModelProviderConfig c = { .timeout_ms = 1000 };
    snprintf(c.name, sizeof c.name, "t");
    snprintf(c.kind, sizeof c.kind, "%s", kind);
    snprintf(c.base_url, sizeof c.base_url, "http://127.0.0.1:9/v1/");
    snprintf(c.model, sizeof c.model, "m");
    return c;
}

Test(openai_wire, chat_bodies)
{
    ModelProviderConfig cfg = config("openai");
    json_t *schema = J("{\"type\":\"object\"}");
    ModelChat c = { .system = "S", .prompt = "P" };
    json_t *b = model__openai_wire.chat_body(&cfg, &c);
    assert_json(b, "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                   "{\"role\":\"user\",\"content\":\"P\"}],\"temperature\":0,\"stream\":false}");
    json_decref(b);

    c = (ModelChat){ .prompt = "P", .schema = schema, .json = true, .max_tokens = 5 };
    b = model__openai_wire.chat_body(&cfg, &c);
    assert_json(b, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"P\"}],"
                   "\"temperature\":0,\"stream\":false,\"max_tokens\":5,\"response_format\":"
                   "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"output\",\"schema\":"
                   "{\"type\":\"object\"},\"strict\":true}}}");
    json_decref(b);

    c = (ModelChat){ .prompt = "P", .json = true, .broken = "{oops", .repair = "R" };
    b = model__openai_wire.chat_body(&cfg, &c);
    assert_json(b, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"P\"},"
                   "{\"role\":\"assistant\",\"content\":\"{oops\"},"
                   "{\"role\":\"user\",\"content\":\"R\"}],\"temperature\":0,\"stream\":false,"
                   "\"response_format\":{\"type\":\"json_object\"}}");
    json_decref(b);
    json_decref(schema);
}

Test(openai_wire, chat_answers)
{
    ModelReply r = { 0 };
    char why[256];
    json_t *a = J("{\"model\":\"gpt-x\",\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
                  "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}");
    cr_assert_eq(model__openai_wire.chat_parse(a, &r, why, sizeof why), 0);
    cr_assert_str_eq(r.text, "hi");
    cr_assert(r.has_usage);
    cr_assert_eq(r.tokens_in, 3);
    cr_assert_eq(r.tokens_out, 4);
    cr_assert_str_eq(r.model, "gpt-x");
    model__reply_done(&r);
    json_decref(a);

    a = J("{\"choices\":[{\"message\":{\"content\":\"x\"}}]}");
    r = (ModelReply){ 0 };
    cr_assert_eq(model__openai_wire.chat_parse(a, &r, why, sizeof why), 0);
    cr_assert(!r.has_usage);
    model__reply_done(&r);
    json_decref(a);

    const char *bad[] = { "{}", "{\"choices\":[]}", "{\"choices\":[{\"message\":{}}]}",
                          "{\"choices\":[{\"message\":{\"content\":null,\"refusal\":\"no\"}}]}" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        a = J(bad[i]);
        r = (ModelReply){ 0 };
        cr_assert_lt(model__openai_wire.chat_parse(a, &r, why, sizeof why), 0, "%s", bad[i]);
        cr_assert_null(r.text);
        json_decref(a);
    }
    cr_assert_str_eq(why, "the model refused: no");
}

Test(openai_wire, embeddings)
{
    ModelProviderConfig cfg = config("openai");
    json_t *b = model__openai_wire.embed_body(&cfg, "t");
    assert_json(b, "{\"model\":\"m\",\"input\":\"t\"}");
    json_decref(b);
    snprintf(cfg.embed_model, sizeof cfg.embed_model, "e");
    b = model__openai_wire.embed_body(&cfg, "t");
    assert_json(b, "{\"model\":\"e\",\"input\":\"t\"}");
    json_decref(b);

    json_t *a = J("{\"data\":[{\"embedding\":[1,0.5]}],\"usage\":{\"prompt_tokens\":2}}");
    json_t *vec = NULL;
    ModelReply r = { 0 };
    char why[256];
    cr_assert_eq(model__openai_wire.embed_parse(a, &vec, &r, why, sizeof why), 0);
    assert_json(vec, "[1.0,0.5]");
    cr_assert(r.has_usage);
    cr_assert_eq(r.tokens_in, 2);
    json_decref(vec);
    json_decref(a);
    a = J("{\"data\":[{\"embedding\":[1,\"x\"]}]}");
    vec = NULL;
    cr_assert_lt(model__openai_wire.embed_parse(a, &vec, &r, why, sizeof why), 0);
    cr_assert_null(vec);
    cr_assert_str_eq(why, "data[0].embedding[1] is not a number");
    json_decref(a);
}

/* ---- the Anthropic wire ------------------------------------------------- */

Test(anthropic_wire, bodies_and_answers)
{
    ModelProviderConfig cfg = config("anthropic");
    ModelChat c = { .system = "S", .prompt = "P", .broken = "b", .repair = "R" };
    json_t *b = model__anthropic_wire.chat_body(&cfg, &c);
    assert_json(b, "{\"model\":\"m\",\"max_tokens\":1024,\"temperature\":0,\"system\":\"S\","
                   "\"messages\":[{\"role\":\"user\",\"content\":\"P\"},"
                   "{\"role\":\"assistant\",\"content\":\"b\"},"
                   "{\"role\":\"user\",\"content\":\"R\"}]}");
    json_decref(b);
    c = (ModelChat){ .prompt = "P", .max_tokens = 9 };
    b = model__anthropic_wire.chat_body(&cfg, &c);
    assert_json(b, "{\"model\":\"m\",\"max_tokens\":9,\"temperature\":0,"
                   "\"messages\":[{\"role\":\"user\",\"content\":\"P\"}]}");
    json_decref(b);
    cr_assert_null(model__anthropic_wire.embed_path);

    json_t *a = J("{\"model\":\"claude-x\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                  "{\"type\":\"tool_use\"},{\"type\":\"text\",\"text\":\"b\"}],"
                  "\"usage\":{\"input_tokens\":5,\"output_tokens\":6}}");
    ModelReply r = { 0 };
    char why[256];
    cr_assert_eq(model__anthropic_wire.chat_parse(a, &r, why, sizeof why), 0);
    cr_assert_str_eq(r.text, "ab");
    cr_assert_eq(r.tokens_in, 5);
    cr_assert_eq(r.tokens_out, 6);
    cr_assert_str_eq(r.model, "claude-x");
    model__reply_done(&r);
    json_decref(a);
    a = J("{\"content\":[]}");
    cr_assert_lt(model__anthropic_wire.chat_parse(a, &r, why, sizeof why), 0);
    cr_assert_str_eq(why, "no text block in content");
    json_decref(a);
}

/* ---- errors and the key ------------------------------------------------- */

static void message(const char *body, const char *want)
{
    char out[64];
    model__error_message(body, strlen(body), out, sizeof out);
    cr_assert_str_eq(out, want);
}

Test(errors, api_messages)
{
    message("{\"error\":{\"message\":\"bad model\",\"type\":\"x\"}}", "bad model");
    message("{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Over\"}}",
            "Over");
    message("{\"error\":\"model 'x' not found\"}", "model 'x' not found");
    message("{\"detail\":\"Not Found\"}", "Not Found");
    message("<html>\n  <b>502</b>\n</html>", "<html> <b>502</b> </html>");
    message("", "");
    /* cut to the buffer */
    char out[8];
    model__error_message("{\"message\":\"0123456789\"}", 24, out, sizeof out);
    cr_assert_str_eq(out, "0123456");
}

Test(errors, redaction)
{
    char s[64] = "key sk-123 and again sk-123.";
    model__redact(s, sizeof s, "sk-123");
    cr_assert_str_eq(s, "key [redacted] and again [redacted].");
    char t[12] = "ab sk-1 cd";
    model__redact(t, sizeof t, "sk-1");
    cr_assert_str_eq(t, "ab [redacte");
    char u[16] = "nothing";
    model__redact(u, sizeof u, NULL);
    model__redact(u, sizeof u, "");
    cr_assert_str_eq(u, "nothing");
    cr_assert_eq(model__tokens_estimate(0), 0);
    cr_assert_eq(model__tokens_estimate(1), 1);
    cr_assert_eq(model__tokens_estimate(8), 2);
}

/* ---- creation ----------------------------------------------------------- */

Test(create, checks_and_the_key)
{
    ModelProvider *p = NULL;
    Err err = { 0 };
    ModelProviderConfig cfg = config("openai");

    snprintf(cfg.api_key_env, sizeof cfg.api_key_env, "BUREAU_UNIT_NO_SUCH_KEY");
    unsetenv("BUREAU_UNIT_NO_SUCH_KEY");
    cr_assert_eq(model_openai_new(&cfg, &p, &err), ERR_CONFIG);
    cr_assert_str_eq(err.msg, "provider 't': the environment variable BUREAU_UNIT_NO_SUCH_KEY "
                              "(api_key_env) is not set");
    cr_assert_null(p);

    setenv("BUREAU_UNIT_KEY", "bad key\n", 1);
    snprintf(cfg.api_key_env, sizeof cfg.api_key_env, "BUREAU_UNIT_KEY");
    cr_assert_eq(model_openai_new(&cfg, &p, &err), ERR_CONFIG);
    cr_assert_null(strstr(err.msg, "bad key"));

    setenv("BUREAU_UNIT_KEY", "sk-unit", 1);
    cr_assert_eq(model_anthropic_new(&cfg, &p, &err), ERR_CONFIG); /* kind openai */
    cr_assert_eq(model_openai_new(&cfg, &p, &err), 0, "%s", err.msg);
    cr_assert_str_eq(p->cfg.kind, "openai");
    p->ops->free(p);

    ModelProviderConfig bad = config("openai");
    snprintf(bad.base_url, sizeof bad.base_url, "ftp://h/v1");
    cr_assert_eq(model_openai_new(&bad, &p, &err), ERR_CONFIG);
    snprintf(bad.base_url, sizeof bad.base_url, "http://user:pw@h/v1");
    cr_assert_eq(model_openai_new(&bad, &p, &err), ERR_CONFIG);
    cr_assert_null(strstr(err.msg, "pw"));
    bad = config("openai");
    bad.model[0] = '\0';
    cr_assert_eq(model_openai_new(&bad, &p, &err), ERR_CONFIG);
    cr_assert_str_eq(err.msg, "provider 't': model is empty");
}

Test(create, calls_that_need_no_network)
{
    ModelProviderConfig cfg = config("anthropic");
    ModelProvider *p = NULL;
    Err err = { 0 };
    cr_assert_eq(model_anthropic_new(&cfg, &p, &err), 0, "%s", err.msg);
    ModelRequest req = { .task = "embed", .prompt = "x", .timeout_ms = 1000 };
    ModelResponse resp;
    p->ops->call(p, &req, &resp);
    cr_assert_eq(resp.status, MODEL_FAILED);
    cr_assert_str_eq(resp.error, "embeddings are not offered by the anthropic provider");
    cr_assert_null(resp.output);

    json_t *labels = J("[]");
    req = (ModelRequest){ .task = "classify", .prompt = "x", .labels = labels, .timeout_ms = 1000 };
    p->ops->call(p, &req, &resp);
    cr_assert_eq(resp.status, MODEL_FAILED);
    cr_assert(!strncmp(resp.error, "classify: labels must be", 24), "%s", resp.error);
    json_decref(labels);

    req = (ModelRequest){ .task = "complete", .prompt = NULL, .timeout_ms = 1000 };
    p->ops->call(p, &req, &resp);
    cr_assert_eq(resp.status, MODEL_FAILED);
    model_response_done(&resp);
    model_response_done(NULL);
    p->ops->free(p);
    cr_assert_str_eq(model_status_name(MODEL_RATE_LIMITED), "rate_limited");
    cr_assert_str_eq(model_status_name((ModelStatus)99), "unknown");
}
