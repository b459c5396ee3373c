/* Unit tests of the webhook.post executor: the signature against vectors
 * computed outside the code under test (the openssl CLI), the `with`
 * check (every refusal names its field), the status classification and
 * the requests refused before any connection. The executor's .c is
 * included to reach its static functions; deliveries over the network are
 * in tests/integration/test_http_post.sh. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "effect/http_post.c"

/* ---- signature -------------------------------------------------------- */

/* Computed with:
 *   printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
 *   printf '%s' '1.{"msg":"héllo","n":[1,2]}' | openssl dgst -sha256 -hmac 'whsec_é'
 *   printf '%s' '0.' | openssl dgst -sha256 -hmac k */
static const char VEC1[] = "49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686";
static const char VEC2[] = "1fa72b0bf2a87d504495373caf96f4d1d950fd93e06140c457d830a45bf6e185";
static const char VEC3[] = "6b4a4b8b3c40f1e8f53a3d36682e5f99f7ad2ac1df1c93dfe336f329167641e7";

Test(http_sign, matches_the_openssl_vector)
{
    const char *body = "{\"a\":1}";
    char out[HTTP_POST_SIGNATURE_MAX], want[128];
    cr_assert_eq(http_post_sign("secret", 1700000000, body, strlen(body), out, sizeof out), 0);
    snprintf(want, sizeof want, "t=1700000000,v1=%s", VEC1);
    cr_assert_str_eq(out, want);
}

Test(http_sign, utf8_secret_and_body_and_a_one_digit_timestamp)
{
    const char *body = "{\"msg\":\"héllo\",\"n\":[1,2]}";
    char out[HTTP_POST_SIGNATURE_MAX], want[128];
    cr_assert_eq(http_post_sign("whsec_é", 1, body, strlen(body), out, sizeof out), 0);
    snprintf(want, sizeof want, "t=1,v1=%s", VEC2);
    cr_assert_str_eq(out, want);
}

Test(http_sign, empty_body_at_time_zero)
{
    char out[HTTP_POST_SIGNATURE_MAX], want[128];
    cr_assert_eq(http_post_sign("k", 0, "", 0, out, sizeof out), 0);
    snprintf(want, sizeof want, "t=0,v1=%s", VEC3);
    cr_assert_str_eq(out, want);
}

Test(http_sign, only_len_bytes_of_the_body_are_signed)
{
    const char *body = "{\"a\":1}TRAILING";
    char out[HTTP_POST_SIGNATURE_MAX], want[128];
    cr_assert_eq(http_post_sign("secret", 1700000000, body, 7, out, sizeof out), 0);
    snprintf(want, sizeof want, "t=1700000000,v1=%s", VEC1);
    cr_assert_str_eq(out, want);
}

Test(http_sign, exact_size_fits_one_less_is_too_big_and_out_untouched)
{
    const char *body = "{\"a\":1}";
    size_t need = strlen("t=1700000000,v1=") + 64 + 1;
    char out[HTTP_POST_SIGNATURE_MAX];
    memset(out, 'x', sizeof out);
    cr_assert_eq(http_post_sign("secret", 1700000000, body, 7, out, need - 1), ERR_TOOBIG);
    cr_assert_eq(out[0], 'x');
    cr_assert_eq(http_post_sign("secret", 1700000000, body, 7, out, need), 0);
    cr_assert_eq(strlen(out), need - 1);
    /* the largest timestamp still fits the documented maximum */
    cr_assert_eq(http_post_sign("secret", INT64_MAX, body, 7, out, sizeof out), 0);
    cr_assert_eq(strlen(out), strlen("t=9223372036854775807,v1=") + 64);
    cr_assert(!strncmp(out, "t=9223372036854775807,v1=", 25), "%s", out);
}

Test(http_sign, bad_arguments)
{
    char out[HTTP_POST_SIGNATURE_MAX];
    cr_assert_eq(http_post_sign(NULL, 1, "{}", 2, out, sizeof out), ERR_INVAL);
    cr_assert_eq(http_post_sign("k", -1, "{}", 2, out, sizeof out), ERR_INVAL);
    cr_assert_eq(http_post_sign("k", 1, NULL, 0, out, sizeof out), ERR_INVAL);
}

/* ---- with: check ------------------------------------------------------ */

static json_t *parse(const char *text)
{
    Err e = { 0 };
    json_t *v = NULL;
    cr_assert_eq(core_json_parse(text, strlen(text), &v, &e), 0, "%s: %s", text, e.msg);
    return v;
}

/* Checks that with is refused with a message starting with prefix; takes
 * the reference. */
static void expect_refused(json_t *with, const char *prefix, const char *what)
{
    Err e = { 0 };
    cr_expect_eq(http_post_check(with, &e), ERR_INVAL, "%s: accepted", what);
    cr_expect_eq(e.code, ERR_INVAL, "%s", what);
    cr_expect(!strncmp(e.msg, prefix, strlen(prefix)), "%s: got '%s', want '%s...'", what, e.msg,
              prefix);
    json_decref(with);
}

static void expect_accepted(json_t *with, const char *what)
{
    Err e = { 0 };
    cr_expect_eq(http_post_check(with, &e), 0, "%s: %s", what, e.msg);
    json_decref(with);
}

Test(http_check, broken_inputs_name_the_field)
{
    static const struct {
        const char *with, *prefix;
    } cases[] = {
        { "[]", "with: must be an object" },
        { "\"http://x/\"", "with: must be an object" },
        { "{}", "with.url: missing" },
        { "{\"body\":1}", "with.url: missing" },
        { "{\"url\":5,\"body\":1}", "with.url: must be a string, not integer" },
        { "{\"url\":null,\"body\":1}", "with.url: must be a string, not null" },
        { "{\"url\":\"\",\"body\":1}", "with.url: is empty" },
        { "{\"url\":\"ftp://example.com/x\",\"body\":1}", "with.url: must start with http" },
        { "{\"url\":\"file:///etc/passwd\",\"body\":1}", "with.url: must start with http" },
        { "{\"url\":\"gopher://example.com/\",\"body\":1}", "with.url: must start with http" },
        { "{\"url\":\"example.com/hook\",\"body\":1}", "with.url: must start with http" },
        { "{\"url\":\"//example.com/hook\",\"body\":1}", "with.url: must start with http" },
        { "{\"url\":\"http://user:pw@example.com/\",\"body\":1}", "with.url: must not hold" },
        { "{\"url\":\"https://user@example.com/\",\"body\":1}", "with.url: must not hold" },
        { "{\"url\":\"http://:pw@example.com/\",\"body\":1}", "with.url: must not hold" },
        { "{\"url\":\"http://exa mple.com/\",\"body\":1}", "with.url: has a space" },
        { "{\"url\":\"http://example.com/\\r\\nX-A: b\",\"body\":1}", "with.url: has a space" },
        { "{\"url\":\"http://\",\"body\":1}", "with.url: " },
        { "{\"url\":\"http:///path\",\"body\":1}", "with.url: " },
        { "{\"url\":\"http://[::1/\",\"body\":1}", "with.url: cannot be parsed" },
        { "{\"url\":\"http://example.com:99999/\",\"body\":1}", "with.url: cannot be parsed" },
        { "{\"url\":\"http://example.com/\"}", "with.body: missing" },
        { "{\"url\":\"http://example.com/\",\"body\":1,\"secret_env\":5}",
          "with.secret_env: must be a string, not integer" },
        { "{\"url\":\"http://example.com/\",\"body\":1,\"secret_env\":\"\"}",
          "with.secret_env: is empty" },
        { "{\"url\":\"http://example.com/\",\"body\":1,\"secret_env\":\"hook_secret\"}",
          "with.secret_env: 'hook_secret' is not an environment variable name" },
        { "{\"url\":\"http://example.com/\",\"body\":1,\"secret_env\":\"1SECRET\"}",
          "with.secret_env: '1SECRET' is not" },
        { "{\"url\":\"http://example.com/\",\"body\":1,\"secret_env\":\"A-B\"}",
          "with.secret_env: 'A-B' is not" },
        { "{\"url\":\"http://example.com/\",\"body\":1,\"secret_env\":\"A B\"}",
          "with.secret_env: 'A B' is not" },
        { "{\"url\":\"http://example.com/\",\"body\":1,\"secret\":\"inline\"}",
          "with.secret: unknown key" },
        { "{\"url\":\"http://example.com/\",\"body\":1,\"headers\":{}}",
          "with.headers: unknown key" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_refused(parse(cases[i].with), cases[i].prefix, cases[i].with);
    expect_refused(NULL, "with: must be an object", "NULL");
}

Test(http_check, a_nul_in_the_url_is_refused)
{
    json_t *with = json_pack("{s:s%, s:i}", "url", "http://example.com/\0x", (size_t)21, "body", 1);
    cr_assert_not_null(with);
    expect_refused(with, "with.url: has a space or control character at byte 19", "NUL");
}

Test(http_check, size_limits)
{
    /* url: 2048 bytes fit, 2049 do not */
    char url[HTTP_POST_MAX_URL + 2];
    size_t pre = strlen("http://example.com/");
    memcpy(url, "http://example.com/", pre);
    memset(url + pre, 'a', sizeof url - pre - 1);
    url[HTTP_POST_MAX_URL] = '\0';
    expect_accepted(json_pack("{s:s, s:i}", "url", url, "body", 1), "url of 2048 bytes");
    url[HTTP_POST_MAX_URL] = 'a';
    url[HTTP_POST_MAX_URL + 1] = '\0';
    expect_refused(json_pack("{s:s, s:i}", "url", url, "body", 1),
                   "with.url: is 2049 bytes long, at most 2048", "url of 2049 bytes");

    /* body: a string whose JSON form is exactly 1 MiB fits, one byte more does not */
    size_t n = HTTP_POST_MAX_BODY - 2;
    char *s = malloc(n + 2);
    memset(s, 'b', n + 1);
    s[n] = '\0';
    expect_accepted(json_pack("{s:s, s:s}", "url", "http://example.com/", "body", s),
                    "body of 1 MiB");
    s[n] = 'b';
    s[n + 1] = '\0';
    expect_refused(json_pack("{s:s, s:s}", "url", "http://example.com/", "body", s),
                   "with.body: larger than 1048576 bytes", "body of 1 MiB + 1");
    free(s);

    /* secret_env: 128 bytes fit, 129 do not */
    char env[HTTP_POST_MAX_ENV + 2];
    memset(env, 'S', sizeof env - 1);
    env[HTTP_POST_MAX_ENV] = '\0';
    expect_accepted(json_pack("{s:s, s:i, s:s}", "url", "http://example.com/", "body", 1,
                              "secret_env", env),
                    "secret_env of 128 bytes");
    env[HTTP_POST_MAX_ENV] = 'S';
    env[HTTP_POST_MAX_ENV + 1] = '\0';
    expect_refused(json_pack("{s:s, s:i, s:s}", "url", "http://example.com/", "body", 1,
                             "secret_env", env),
                   "with.secret_env: is 129 bytes long", "secret_env of 129 bytes");
}

Test(http_check, accepted_inputs)
{
    static const char *const cases[] = {
        "{\"url\":\"http://example.com/hook\",\"body\":{\"a\":1}}",
        "{\"url\":\"https://hooks.example.com:8443/a/b?x=1&y=%20#frag\",\"body\":[1,2,3]}",
        "{\"url\":\"HTTPS://EXAMPLE.COM/\",\"body\":\"text\"}",
        "{\"url\":\"http://127.0.0.1:1/\",\"body\":null}",
        "{\"url\":\"http://[::1]:8080/x\",\"body\":true}",
        "{\"url\":\"http://example.com\",\"body\":1.5}",
        "{\"url\":\"https://example.com/h\",\"body\":{\"nested\":{\"deep\":[{}]}},"
        "\"secret_env\":\"BUREAU_HOOK_SECRET\"}",
        "{\"secret_env\":\"_X9\",\"body\":{},\"url\":\"http://example.com/\"}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_accepted(parse(cases[i]), cases[i]);
}

/* ---- classification --------------------------------------------------- */

Test(http_classify, status_codes)
{
    static const struct {
        long status;
        EffectResult want;
    } cases[] = {
        { 200, EFFECT_DELIVERED }, { 201, EFFECT_DELIVERED }, { 202, EFFECT_DELIVERED },
        { 204, EFFECT_DELIVERED }, { 299, EFFECT_DELIVERED }, { 301, EFFECT_PERMANENT },
        { 302, EFFECT_PERMANENT }, { 307, EFFECT_PERMANENT }, { 308, EFFECT_PERMANENT },
        { 400, EFFECT_PERMANENT }, { 401, EFFECT_PERMANENT }, { 403, EFFECT_PERMANENT },
        { 404, EFFECT_PERMANENT }, { 408, EFFECT_RETRY },     { 409, EFFECT_PERMANENT },
        { 410, EFFECT_PERMANENT }, { 413, EFFECT_PERMANENT }, { 422, EFFECT_PERMANENT },
        { 425, EFFECT_RETRY },     { 429, EFFECT_RETRY },     { 499, EFFECT_PERMANENT },
        { 500, EFFECT_RETRY },     { 502, EFFECT_RETRY },     { 503, EFFECT_RETRY },
        { 504, EFFECT_RETRY },     { 599, EFFECT_RETRY },     { 600, EFFECT_PERMANENT },
        { 100, EFFECT_PERMANENT },
    };
    Answer a = { .capped = false };
    buf_init(&a.body, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        EffectOutcome out = { .result = 99 };
        classify_status(cases[i].status, "http://h:80", &a, "http://h:80", &out);
        cr_expect_eq(out.result, cases[i].want, "HTTP %ld: got %d", cases[i].status, out.result);
        cr_expect_eq(out.code, cases[i].status);
        char want[32];
        snprintf(want, sizeof want, "%ld from http://h:80", cases[i].status);
        cr_expect(strstr(out.detail, want), "HTTP %ld: detail '%s'", cases[i].status, out.detail);
    }
    buf_done(&a.body);
}

Test(http_classify, redirect_names_the_origin_of_its_target)
{
    Answer a = { .capped = false };
    buf_init(&a.body, 0);
    EffectOutcome out;
    char target[128];
    redirect_origin("https://elsewhere.example/T0KEN?sig=1", target, sizeof target);
    classify_status(301, "http://h:80", &a, target, &out);
    cr_assert_eq(out.result, EFFECT_PERMANENT);
    cr_assert_str_eq(out.detail,
                     "HTTP 301 from http://h:80: redirect to https://elsewhere.example:443 not followed");
    redirect_origin(NULL, target, sizeof target);
    classify_status(302, "http://h:80", &a, target, &out);
    cr_assert_str_eq(out.detail, "HTTP 302 from http://h:80: redirect to (no Location) not followed");
    redirect_origin("http://[bad", target, sizeof target);
    cr_assert_str_eq(target, "(a Location that does not parse)");
    buf_done(&a.body);
}

Test(http_classify, detail_quotes_the_start_of_the_answer_on_one_line)
{
    Answer a = { .capped = false };
    buf_init(&a.body, 0);
    buf_puts(&a.body, "  {\"error\":\r\n\t\"busy\"}\n\n");
    EffectOutcome out;
    classify_status(503, "https://h:443", &a, NULL, &out);
    cr_assert_str_eq(out.detail, "HTTP 503 from https://h:443: {\"error\": \"busy\"}");

    /* long answers are cut at 200 bytes, marked with "..." */
    buf_clear(&a.body);
    for (int i = 0; i < 100; i++)
        buf_puts(&a.body, "0123456789");
    classify_status(500, "http://h:80", &a, NULL, &out);
    const char *text = strstr(out.detail, ": ") + 2;
    cr_assert_eq(strlen(text), 203, "%s", out.detail);
    cr_assert_str_eq(text + 200, "...");

    /* a UTF-8 character cut at byte 200 and stray bytes become '?' */
    buf_clear(&a.body);
    for (int i = 0; i < 199; i++)
        buf_putc(&a.body, 'x');
    buf_puts(&a.body, "é");
    classify_status(400, "http://h:80", &a, NULL, &out);
    cr_assert(strstr(out.detail, "xx?..."), "%s", out.detail);
    buf_clear(&a.body);
    buf_puts(&a.body, "bad \xff byte");
    classify_status(400, "http://h:80", &a, NULL, &out);
    cr_assert_str_eq(out.detail, "HTTP 400 from http://h:80: bad ? byte");
    buf_done(&a.body);
}

Test(http_classify, transport_failures)
{
    EffectOutcome out;
    classify_transport(CURLE_COULDNT_CONNECT, "Connection refused", "http://h:1", 5, &out);
    cr_expect_eq(out.result, EFFECT_RETRY);
    cr_expect_eq(out.code, 0);
    cr_expect_str_eq(out.detail, "cannot connect to http://h:1: Connection refused");
    classify_transport(CURLE_COULDNT_RESOLVE_HOST, "", "http://nowhere:80", 5, &out);
    cr_expect_eq(out.result, EFFECT_RETRY);
    classify_transport(CURLE_OPERATION_TIMEDOUT, "", "http://h:80", 5, &out);
    cr_expect_eq(out.result, EFFECT_RETRY);
    cr_expect(strstr(out.detail, "within 5 s"), "%s", out.detail);
    classify_transport(CURLE_PEER_FAILED_VERIFICATION, "", "https://h:443", 5, &out);
    cr_expect_eq(out.result, EFFECT_RETRY);
    classify_transport(CURLE_RECV_ERROR, "", "https://h:443", 5, &out);
    cr_expect_eq(out.result, EFFECT_RETRY);
    classify_transport(CURLE_URL_MALFORMAT, "", "http://h:80", 5, &out);
    cr_expect_eq(out.result, EFFECT_PERMANENT);
    classify_transport(CURLE_UNSUPPORTED_PROTOCOL, "", "http://h:80", 5, &out);
    cr_expect_eq(out.result, EFFECT_PERMANENT);
}

/* ---- requests refused before any connection --------------------------- */

static HttpPostRequest good_request(void)
{
    return (HttpPostRequest){ .url = "http://127.0.0.1:1/hook",
                              .body = "{}",
                              .len = 2,
                              .idempotency_key = "evt_1.step",
                              .secret = "topsecret",
                              .timestamp_s = 1700000000,
                              .timeout_s = 5 };
}

static void expect_unusable(HttpPostRequest req, const char *detail_part, const char *what)
{
    EffectOutcome out = { .result = EFFECT_DELIVERED, .code = 7 };
    cr_expect_eq(http_post_deliver(&req, &out), ERR_INVAL, "%s", what);
    cr_expect_eq(out.result, EFFECT_PERMANENT, "%s", what);
    cr_expect_eq(out.code, 0, "%s", what);
    cr_expect(strstr(out.detail, detail_part), "%s: detail '%s'", what, out.detail);
    cr_expect(!strstr(out.detail, "topsecret"), "%s: the secret leaked", what);
}

Test(http_deliver, unusable_requests_are_permanent)
{
    HttpPostRequest r = good_request();
    r.url = "ftp://127.0.0.1/x";
    expect_unusable(r, "malformed URL: must start with http", "ftp");
    r.url = "http://u:topsecret@127.0.0.1/x";
    expect_unusable(r, "malformed URL: must not hold", "credentials");
    r.url = "http://[::1/";
    expect_unusable(r, "malformed URL: cannot be parsed", "bad host");
    r.url = NULL;
    expect_unusable(r, "malformed URL", "no url");
    r = good_request();
    r.idempotency_key = "";
    expect_unusable(r, "idempotency key", "empty key");
    r.idempotency_key = "a\r\nX-Injected: 1";
    expect_unusable(r, "idempotency key", "key with CRLF");
    r.idempotency_key = NULL;
    expect_unusable(r, "idempotency key", "no key");
    r = good_request();
    r.timeout_s = 0;
    expect_unusable(r, "timeout", "timeout 0");
    r.timeout_s = HTTP_POST_MAX_TIMEOUT + 1;
    expect_unusable(r, "timeout", "timeout too long");
    r = good_request();
    r.len = HTTP_POST_MAX_BODY + 1;
    expect_unusable(r, "larger than 1 MiB", "body too big");
    r.body = NULL;
    r.len = 0;
    expect_unusable(r, "missing", "no body");
}
