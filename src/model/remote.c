/* The remote providers' one call procedure: a chat (or an embedding) POSTed
 * over libcurl to the API a ModelWire describes, its status mapped to a
 * ModelStatus, a JSON answer checked against the request's schema with one
 * repair round.
 *
 * Invariants: the API key lives only in the provider (wiped when it is
 * freed) and in the header list of a call (wiped before it is freed); every
 * error a call reports passes model__redact() with the key last, so neither
 * an API that echoes the key nor a bug here can put it in an error. No
 * answer is read past the request's byte cap. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/json.h"
#include "effect/curl.h"
#include "model/model_int.h"

#define DEFAULT_TIMEOUT_MS 30000
#define CONNECT_TIMEOUT_MAX_MS 10000
#define RETRY_AFTER_MAX_MS (86400LL * 1000)
#define API_MESSAGE_MAX 300 /* bytes of an API's error message quoted */
#define MAX_LABELS 256
#define MAX_LABEL_LEN 256

typedef struct Remote {
    const ModelWire *wire;
    char *key;        /* NULL when the provider has none */
    char base[512];   /* base_url without trailing slashes */
    char origin[600]; /* scheme://host:port of base_url, for errors */
} Remote;

/* ---- small helpers ------------------------------------------------------ */

static void fail(ModelResponse *resp, ModelStatus status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(ModelResponse *resp, ModelStatus status, const char *fmt, ...)
{
    resp->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(resp->error, sizeof resp->error, fmt, ap);
    va_end(ap);
}

static void copy_cut(char *out, size_t size, const char *s)
{
    snprintf(out, size, "%s", s ? s : "");
    core_utf8_sanitize(out);
}

void model__reply_done(ModelReply *r)
{
    free(r->text);
    r->text = NULL;
}

int64_t model__tokens_estimate(size_t len)
{
    return (int64_t)((len + 3) / 4);
}

/* ---- Retry-After -------------------------------------------------------- */

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

int model__retry_after_parse(const char *value, int64_t now_ms, int64_t *ret_ms)
{
    if (!value)
        return ERR_INVAL;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strlen(value);
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
    if (n == 0 || n > 64)
        return ERR_INVAL;
    if (all_digits(value, n)) {
        /* delta-seconds: anything beyond a day is a day */
        int64_t s = 0;
        for (size_t i = 0; i < n && s <= RETRY_AFTER_MAX_MS / 1000; i++)
            s = s * 10 + (value[i] - '0');
        int64_t ms = s > RETRY_AFTER_MAX_MS / 1000 ? RETRY_AFTER_MAX_MS : s * 1000;
        *ret_ms = ms;
        return 0;
    }
    /* An HTTP-date always names a day or a month; curl_getdate() reads the
     * IMF-fixdate, RFC 850 and asctime forms, but also odd things like a
     * bare number, which are not dates here. */
    bool letter = false;
    for (size_t i = 0; i < n; i++)
        if ((value[i] >= 'A' && value[i] <= 'Z') || (value[i] >= 'a' && value[i] <= 'z'))
            letter = true;
    if (!letter)
        return ERR_INVAL;
    char copy[65];
    memcpy(copy, value, n);
    copy[n] = '\0';
    time_t t = curl_getdate(copy, NULL);
    if (t == (time_t)-1)
        return ERR_INVAL;
    int64_t ms = (int64_t)t * 1000 - now_ms;
    if (ms < 0)
        ms = 0;
    if (ms > RETRY_AFTER_MAX_MS)
        ms = RETRY_AFTER_MAX_MS;
    *ret_ms = ms;
    return 0;
}

/* ---- the schema check --------------------------------------------------- */

static bool type_is(const json_t *v, const char *type)
{
    if (!strcmp(type, "object"))
        return json_is_object(v);
    if (!strcmp(type, "array"))
        return json_is_array(v);
    if (!strcmp(type, "string"))
        return json_is_string(v);
    if (!strcmp(type, "number"))
        return json_is_number(v);
    if (!strcmp(type, "integer")) {
        if (json_is_integer(v))
            return true;
        if (!json_is_real(v))
            return false;
        /* every finite double from 2^53 on is whole; below, the cast is defined */
        double d = json_real_value(v);
        if (!isfinite(d))
            return false;
        if (fabs(d) >= 9007199254740992.0)
            return true;
        return d == (double)(int64_t)d;
    }
    if (!strcmp(type, "boolean"))
        return json_is_boolean(v);
    if (!strcmp(type, "null"))
        return json_is_null(v);
    return true; /* a type this check does not know: not refused here */
}

/* Whether v is of the type(s) "type" names; "type" absent or of another
 * shape allows anything. want receives the type(s) for a message. */
static bool type_ok(const json_t *type, const json_t *v, char *want, size_t want_size)
{
    if (json_is_string(type)) {
        copy_cut(want, want_size, json_string_value(type));
        return type_is(v, json_string_value(type));
    }
    if (json_is_array(type) && json_array_size(type) > 0) {
        size_t i;
        const json_t *t;
        bool any = false;
        want[0] = '\0';
        json_array_foreach (type, i, t) {
            if (!json_is_string(t))
                return true;
            size_t used = strlen(want);
            snprintf(want + used, want_size - used, "%s%s", i ? " or " : "", json_string_value(t));
            if (type_is(v, json_string_value(t)))
                any = true;
        }
        core_utf8_sanitize(want);
        return any;
    }
    return true;
}

static bool values_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    return json_equal(a, b);
}

static void key_shown(const char *key, char *out, size_t size)
{
    snprintf(out, size, "%.64s", key);
    core_utf8_sanitize(out);
}

/* One top-level property's value against its schema. */
static bool property_check(const char *key, const json_t *ps, const json_t *v, char *why,
                           size_t why_size)
{
    char k[65], want[128];
    if (!json_is_object(ps))
        return true;
    if (!type_ok(json_object_get(ps, "type"), v, want, sizeof want)) {
        key_shown(key, k, sizeof k);
        snprintf(why, why_size, "'%s' must be %s, not %s", k, want, core_json_type_name(v));
        return false;
    }
    const json_t *en = json_object_get(ps, "enum");
    if (json_is_array(en)) {
        size_t i;
        const json_t *e;
        bool found = false;
        json_array_foreach (en, i, e)
            if (values_equal(e, v))
                found = true;
        if (!found) {
            key_shown(key, k, sizeof k);
            snprintf(why, why_size, "'%s' is not one of the allowed values", k);
            return false;
        }
    }
    if (json_is_number(v)) {
        const json_t *min = json_object_get(ps, "minimum");
        const json_t *max = json_object_get(ps, "maximum");
        double d = json_number_value(v);
        if ((json_is_number(min) && d < json_number_value(min)) ||
            (json_is_number(max) && d > json_number_value(max))) {
            key_shown(key, k, sizeof k);
            snprintf(why, why_size, "'%s' is out of its range", k);
            return false;
        }
    }
    return true;
}

bool model__schema_check(const json_t *schema, const json_t *v, char *why, size_t why_size)
{
    char want[128], k[65];
    if (!json_is_object(schema))
        return true;
    if (!type_ok(json_object_get(schema, "type"), v, want, sizeof want)) {
        snprintf(why, why_size, "the answer must be %s, not %s", want, core_json_type_name(v));
        return false;
    }
    if (!json_is_object(v))
        return true;
    const json_t *req = json_object_get(schema, "required");
    if (json_is_array(req)) {
        size_t i;
        const json_t *r;
        json_array_foreach (req, i, r) {
            if (json_is_string(r) && !json_object_get(v, json_string_value(r))) {
                key_shown(json_string_value(r), k, sizeof k);
                snprintf(why, why_size, "the key '%s' is missing", k);
                return false;
            }
        }
    }
    const json_t *props = json_object_get(schema, "properties");
    const json_t *extra = json_object_get(schema, "additionalProperties");
    const char *key;
    const json_t *val;
    json_object_foreach ((json_t *)v, key, val) {
        const json_t *ps = json_is_object(props) ? json_object_get(props, key) : NULL;
        if (!ps && json_is_false(extra)) {
            key_shown(key, k, sizeof k);
            snprintf(why, why_size, "the key '%s' is not allowed", k);
            return false;
        }
        if (ps && !property_check(key, ps, val, why, why_size))
            return false;
    }
    return true;
}

json_t *model__classify_schema(const json_t *labels)
{
    if (!json_is_array(labels) || json_array_size(labels) == 0 ||
        json_array_size(labels) > MAX_LABELS)
        return NULL;
    size_t i;
    const json_t *l;
    json_array_foreach (labels, i, l) {
        if (!json_is_string(l) || json_string_length(l) == 0 ||
            json_string_length(l) > MAX_LABEL_LEN)
            return NULL;
    }
    return json_pack("{s:s, s:{s:{s:s, s:O}, s:{s:s, s:i, s:i}}, s:[s, s], s:b}", "type",
                     "object", "properties", "label", "type", "string", "enum", labels,
                     "confidence", "type", "number", "minimum", 0, "maximum", 1, "required",
                     "label", "confidence", "additionalProperties", 0);
}

/* ---- texts -------------------------------------------------------------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int model__json_answer_parse(const char *text, json_t **ret, char *why, size_t why_size)
{
    if (!text) {
        snprintf(why, why_size, "the answer is empty");
        return ERR_INVAL;
    }
    const char *s = text, *e = text + strlen(text);
    while (s < e && is_space(*s))
        s++;
    while (e > s && is_space(e[-1]))
        e--;
    /* one Markdown fence around the value, as some models write it anyway */
    if (e - s >= 6 && !strncmp(s, "```", 3) && !strncmp(e - 3, "```", 3)) {
        const char *nl = memchr(s, '\n', (size_t)(e - s));
        if (nl && nl < e - 3) {
            s = nl + 1;
            e -= 3;
            while (s < e && is_space(*s))
                s++;
            while (e > s && is_space(e[-1]))
                e--;
        }
    }
    if (s == e) {
        snprintf(why, why_size, "the answer is empty");
        return ERR_INVAL;
    }
    Err err = { 0 };
    if (core_json_parse(s, (size_t)(e - s), ret, &err) < 0) {
        snprintf(why, why_size, "the answer is not JSON: %s", err.msg);
        return ERR_INVAL;
    }
    return 0;
}

int model__system_build(const char *system, const json_t *schema, Buf *out)
{
    int rc = 0;
    if (system && *system)
        rc = buf_puts(out, system);
    if (rc == 0 && schema) {
        if (system && *system)
            rc = buf_puts(out, "\n\n");
        if (rc == 0)
            rc = buf_puts(out, "Answer with a single JSON value and nothing else: no prose, no "
                               "Markdown code fence. The value must follow this JSON schema:\n");
        if (rc == 0)
            rc = core_json_dump(schema, out);
    }
    return rc;
}

int model__repair_build(const json_t *schema, const char *why, Buf *out)
{
    int rc = buf_printf(out,
                        "Your previous answer is not valid JSON for the required schema (%s). "
                        "Answer again with only the corrected JSON value, nothing before or "
                        "after it.",
                        why);
    if (rc == 0 && schema) {
        rc = buf_puts(out, " It must follow this JSON schema:\n");
        if (rc == 0)
            rc = core_json_dump(schema, out);
    }
    return rc;
}

/* s on one line: control characters become spaces, runs of spaces one. */
static void one_line(const char *s, size_t len, char *out, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            c = ' ';
        if (c == ' ' && (n == 0 || out[n - 1] == ' '))
            continue;
        out[n++] = (char)c;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
    core_utf8_sanitize(out);
}

void model__error_message(const char *body, size_t len, char *out, size_t size)
{
    if (size == 0)
        return;
    out[0] = '\0';
    if (!body || len == 0)
        return;
    size_t limit = size - 1 < API_MESSAGE_MAX ? size - 1 : API_MESSAGE_MAX;
    json_t *v = NULL;
    Err err = { 0 };
    if (core_json_parse(body, len, &v, &err) == 0 && json_is_object(v)) {
        const json_t *e = json_object_get(v, "error");
        const json_t *m = NULL;
        if (json_is_object(e))
            m = json_object_get(e, "message");
        else if (json_is_string(e))
            m = e;
        if (!json_is_string(m))
            m = json_object_get(v, "message");
        if (!json_is_string(m))
            m = json_object_get(v, "detail");
        if (json_is_string(m)) {
            one_line(json_string_value(m), json_string_length(m), out, limit + 1);
            json_decref(v);
            return;
        }
    }
    json_decref(v);
    one_line(body, len, out, limit + 1);
}

void model__redact(char *s, size_t size, const char *key)
{
    static const char mark[] = "[redacted]";
    if (!key || !*key || !s || size == 0)
        return;
    size_t klen = strlen(key);
    if (!strstr(s, key))
        return;
    char *out = xmalloc(size);
    size_t n = 0;
    const char *p = s;
    while (*p && n + 1 < size) {
        if (!strncmp(p, key, klen)) {
            size_t m = sizeof mark - 1;
            if (m > size - 1 - n)
                m = size - 1 - n;
            memcpy(out + n, mark, m);
            n += m;
            p += klen;
        } else
            out[n++] = *p++;
    }
    out[n] = '\0';
    memcpy(s, out, n + 1);
    free(out);
}

/* ---- the HTTP exchange -------------------------------------------------- */

typedef struct Answer {
    Buf body;
    bool capped; /* more came than the cap: the transfer was stopped */
} Answer;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    Answer *a = ctx;
    size_t len = size * nmemb;
    if (buf_append(&a->body, data, len) < 0) {
        a->capped = true;
        return 0; /* stops the transfer now: CURLE_WRITE_ERROR */
    }
    return len;
}

static struct curl_slist *header_add(struct curl_slist *list, const char *line)
{
    struct curl_slist *l = curl_slist_append(list, line);
    if (!l) {
        fprintf(stderr, "curl_slist_append: out of memory\n");
        abort();
    }
    return l;
}

/* Frees a header list, wiping each line first: one holds the key. */
static void headers_free(struct curl_slist *list)
{
    for (struct curl_slist *l = list; l; l = l->next)
        explicit_bzero(l->data, strlen(l->data));
    curl_slist_free_all(list);
}

static int64_t ms_left(int64_t deadline_ns)
{
    return (deadline_ns - core_time_mono_ns()) / 1000000;
}

static void retry_after(CURL *h, ModelResponse *resp)
{
    struct curl_header *hd = NULL;
    int64_t ms = 0;
    /* OpenAI also sends the delay in milliseconds: the finer one wins */
    if (curl_easy_header(h, "retry-after-ms", 0, CURLH_HEADER, -1, &hd) == CURLHE_OK &&
        all_digits(hd->value, strlen(hd->value)) && strlen(hd->value) <= 12) {
        ms = strtoll(hd->value, NULL, 10);
        resp->retry_after_ms = ms > RETRY_AFTER_MAX_MS ? RETRY_AFTER_MAX_MS : ms;
        return;
    }
    if (curl_easy_header(h, "Retry-After", 0, CURLH_HEADER, -1, &hd) == CURLHE_OK &&
        model__retry_after_parse(hd->value, core_time_now_ms(), &ms) == 0)
        resp->retry_after_ms = ms;
}

/* POSTs body to base_url + path. Returns true when a 2xx answer came whole
 * (in ans->body); otherwise resp says what happened. */
static bool exchange(const ModelProvider *p, const char *path, const Buf *body,
                     int64_t deadline_ns, size_t max, Answer *ans, ModelResponse *resp)
{
    const Remote *r = p->impl;
    bool ok = false;
    CURL *h = NULL;
    struct curl_slist *headers = NULL;
    char url[1024];
    snprintf(url, sizeof url, "%s%s", r->base, path);

    int64_t left = ms_left(deadline_ns);
    if (left <= 0) {
        fail(resp, MODEL_TIMEOUT, "no time left for a request to %s", r->origin);
        return false;
    }
    if (effect_curl_init() < 0 || !(h = curl_easy_init())) {
        fail(resp, MODEL_RETRY, "cannot start libcurl (out of memory?)");
        return false;
    }
    headers = header_add(headers, "Content-Type: application/json");
    headers = header_add(headers, "Accept: application/json");
    headers = header_add(headers, "Expect:");
    headers = r->wire->auth_headers(headers, r->key);

    char errbuf[CURL_ERROR_SIZE] = "";
    CURLcode c = CURLE_OK;
#define SET(opt, val)                              \
    do {                                           \
        if (c == CURLE_OK)                         \
            c = curl_easy_setopt(h, (opt), (val)); \
    } while (0)
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)(left < CONNECT_TIMEOUT_MAX_MS ? left
                                                                         : CONNECT_TIMEOUT_MAX_MS));
    SET(CURLOPT_TIMEOUT_MS, (long)left);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_NETRC, (long)CURL_NETRC_IGNORED);
    SET(CURLOPT_USERAGENT, "bureau/" BUREAU_VERSION);
    SET(CURLOPT_HTTPHEADER, headers);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, buf_cstr(body));
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, ans);
    /* a Content-Length above the cap ends the transfer before the body */
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
#undef SET
    if (c != CURLE_OK) {
        fail(resp, MODEL_FAILED, "libcurl refused an option: %s", curl_easy_strerror(c));
        goto out;
    }

    c = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    resp->http_status = (int)status;
    const char *why = *errbuf ? errbuf : curl_easy_strerror(c);
    bool big = (c == CURLE_WRITE_ERROR && ans->capped) || c == CURLE_FILESIZE_EXCEEDED;

    if (big && (status == 0 || (status >= 200 && status <= 299))) {
        fail(resp, MODEL_TOO_LARGE, "the answer from %s is larger than %zu bytes", r->origin,
             max);
        goto out;
    }
    if (c == CURLE_OPERATION_TIMEDOUT) {
        fail(resp, MODEL_TIMEOUT, "no complete answer from %s within the timeout: %s",
             r->origin, why);
        goto out;
    }
    if (status == 0 || (c != CURLE_OK && !big && status >= 200 && status <= 299)) {
        switch (c) {
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
        case CURLE_NOT_BUILT_IN:
            fail(resp, MODEL_FAILED, "cannot post to %s: %s", r->origin, why);
            break;
        case CURLE_COULDNT_CONNECT:
            fail(resp, MODEL_RETRY, "cannot connect to %s: %s", r->origin, why);
            break;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
            fail(resp, MODEL_RETRY, "cannot resolve %s: %s", r->origin, why);
            break;
        default:
            fail(resp, MODEL_RETRY, "the exchange with %s failed: %s", r->origin, why);
            break;
        }
        goto out;
    }

    char msg[API_MESSAGE_MAX + 1];
    model__error_message(ans->body.ptr, ans->body.len, msg, sizeof msg);
    const char *sep = *msg ? ": " : "";
    if (status >= 200 && status <= 299)
        ok = true;
    else if (status == 429) {
        retry_after(h, resp);
        fail(resp, MODEL_RATE_LIMITED, "HTTP 429 from %s%s%s", r->origin, sep, msg);
    } else if (status == 408 || (status >= 500 && status <= 599))
        fail(resp, MODEL_RETRY, "HTTP %ld from %s%s%s", status, r->origin, sep, msg);
    else if (status >= 400 && status <= 499)
        fail(resp, MODEL_FAILED, "HTTP %ld from %s%s%s", status, r->origin, sep, msg);
    else
        fail(resp, MODEL_FAILED, "unexpected HTTP %ld from %s%s%s", status, r->origin, sep, msg);

out:
    curl_easy_cleanup(h);
    headers_free(headers);
    return ok;
}

/* POSTs the JSON body and parses a 2xx answer as JSON (*ret: a new
 * reference). Returns false with resp filled otherwise. */
static bool post_json(const ModelProvider *p, const char *path, json_t *body,
                      int64_t deadline_ns, size_t max, json_t **ret, ModelResponse *resp)
{
    const Remote *r = p->impl;
    Buf b;
    buf_init(&b, MODEL_MAX_REQUEST);
    Answer ans = { .capped = false };
    buf_init(&ans.body, max);
    bool ok = false;
    if (core_json_dump(body, &b) < 0) {
        fail(resp, MODEL_FAILED, "the request is larger than %d bytes", MODEL_MAX_REQUEST);
        goto out;
    }
    if (!exchange(p, path, &b, deadline_ns, max, &ans, resp))
        goto out;
    Err err = { 0 };
    if (core_json_parse(ans.body.ptr ? ans.body.ptr : "", ans.body.len, ret, &err) < 0) {
        fail(resp, MODEL_BAD_OUTPUT, "the answer from %s is not JSON: %s", r->origin, err.msg);
        goto out;
    }
    ok = true;
out:
    buf_done(&b);
    buf_done(&ans.body);
    return ok;
}

/* ---- the calls ---------------------------------------------------------- */

static void usage_add(ModelResponse *resp, const ModelReply *rep, size_t in_bytes,
                      size_t out_bytes)
{
    if (rep->has_usage) {
        resp->tokens_in += rep->tokens_in;
        resp->tokens_out += rep->tokens_out;
    } else {
        resp->tokens_in += model__tokens_estimate(in_bytes);
        resp->tokens_out += model__tokens_estimate(out_bytes);
    }
    if (rep->model[0])
        copy_cut(resp->model, sizeof resp->model, rep->model);
}

static size_t len0(const char *s)
{
    return s ? strlen(s) : 0;
}

/* One chat round: *reply filled on success. */
static bool chat_round(const ModelProvider *p, const ModelChat *c, int64_t deadline_ns,
                       size_t max, ModelReply *reply, ModelResponse *resp)
{
    const Remote *r = p->impl;
    json_t *body = r->wire->chat_body(&p->cfg, c), *answer = NULL;
    bool ok = post_json(p, r->wire->chat_path, body, deadline_ns, max, &answer, resp);
    json_decref(body);
    if (!ok)
        return false;
    char why[256] = "";
    if (r->wire->chat_parse(answer, reply, why, sizeof why) < 0) {
        fail(resp, MODEL_BAD_OUTPUT, "the answer from %s is not a %s chat answer: %s",
             r->origin, r->wire->kind, why);
        model__reply_done(reply);
        ok = false;
    } else
        usage_add(resp, reply,
                  len0(c->system) + len0(c->prompt) + len0(c->broken) + len0(c->repair),
                  len0(reply->text));
    json_decref(answer);
    return ok;
}

/* The answer a valid JSON value v gives: classify keeps only its two keys. */
static json_t *structured_output(json_t *v, bool classify)
{
    if (!classify)
        return json_incref(v);
    return json_pack("{s:O, s:O}", "label", json_object_get(v, "label"), "confidence",
                     json_object_get(v, "confidence"));
}

static void chat(const ModelProvider *p, const ModelRequest *req, int64_t deadline_ns,
                 size_t max, ModelResponse *resp)
{
    const Remote *r = p->impl;
    json_t *owned = NULL, *value = NULL;
    const json_t *schema = req->schema;
    bool classify = req->labels && !strcmp(req->task, "classify");
    Buf system, repair;
    buf_init(&system, MODEL_MAX_PROMPT);
    buf_init(&repair, MODEL_MAX_PROMPT);
    ModelReply reply = { 0 };
    char *echo = NULL;

    if (classify) {
        owned = model__classify_schema(req->labels);
        if (!owned) {
            fail(resp, MODEL_FAILED, "classify: labels must be an array of 1 to %d strings of "
                                     "1 to %d bytes",
                 MAX_LABELS, MAX_LABEL_LEN);
            goto out;
        }
        schema = owned;
    }
    if (schema && !json_is_object(schema)) {
        fail(resp, MODEL_FAILED, "the schema must be a JSON object, not %s",
             core_json_type_name(schema));
        goto out;
    }
    bool native = schema && p->cfg.json_schema && r->wire == &model__openai_wire;
    if (model__system_build(req->system, native ? NULL : schema, &system) < 0 ||
        len0(req->prompt) + system.len > MODEL_MAX_PROMPT) {
        fail(resp, MODEL_FAILED, "the prompt is larger than %d bytes", MODEL_MAX_PROMPT);
        goto out;
    }
    ModelChat c = {
        .system = system.len ? buf_cstr(&system) : NULL,
        .prompt = req->prompt,
        .schema = native ? schema : NULL,
        .json = schema != NULL,
        .max_tokens = req->max_output_tokens > 0 ? req->max_output_tokens : 0,
    };
    for (int round = 0; round < 2; round++) {
        if (!chat_round(p, &c, deadline_ns, max, &reply, resp))
            goto out;
        if (!schema) {
            resp->output = json_string(reply.text);
            if (!resp->output) {
                fail(resp, MODEL_BAD_OUTPUT, "the answer from %s is not UTF-8 text",
                     r->origin);
                goto out;
            }
            resp->status = MODEL_OK;
            goto out;
        }
        char why[256];
        if (model__json_answer_parse(reply.text, &value, why, sizeof why) == 0 &&
            model__schema_check(schema, value, why, sizeof why)) {
            resp->output = structured_output(value, classify);
            resp->status = MODEL_OK;
            goto out;
        }
        json_decref(value);
        value = NULL;
        if (round == 1) {
            fail(resp, MODEL_BAD_OUTPUT,
                 "the answer from %s is not valid JSON for the schema after a repair: %s",
                 r->origin, why);
            goto out;
        }
        /* the repair round: the broken text goes back with what is wrong */
        size_t n = strlen(reply.text);
        echo = xstrndup(reply.text, n > MODEL_REPAIR_ECHO_MAX ? MODEL_REPAIR_ECHO_MAX : n);
        core_utf8_sanitize(echo);
        model__reply_done(&reply);
        if (model__repair_build(native ? NULL : schema, why, &repair) < 0) {
            fail(resp, MODEL_FAILED, "the repair prompt is larger than %d bytes",
                 MODEL_MAX_PROMPT);
            goto out;
        }
        c.broken = echo;
        c.repair = buf_cstr(&repair);
        resp->repairs = 1;
    }
out:
    json_decref(value);
    json_decref(owned);
    model__reply_done(&reply);
    free(echo);
    buf_done(&system);
    buf_done(&repair);
}

static void embed(const ModelProvider *p, const ModelRequest *req, int64_t deadline_ns,
                  size_t max, ModelResponse *resp)
{
    const Remote *r = p->impl;
    if (!r->wire->embed_path) {
        fail(resp, MODEL_FAILED, "%s", r->wire->no_embed_msg);
        return;
    }
    if (len0(req->prompt) > MODEL_MAX_PROMPT) {
        fail(resp, MODEL_FAILED, "the text to embed is larger than %d bytes", MODEL_MAX_PROMPT);
        return;
    }
    json_t *body = r->wire->embed_body(&p->cfg, req->prompt), *answer = NULL, *vec = NULL;
    bool ok = post_json(p, r->wire->embed_path, body, deadline_ns, max, &answer, resp);
    json_decref(body);
    if (!ok)
        return;
    ModelReply reply = { 0 };
    char why[256] = "";
    if (r->wire->embed_parse(answer, &vec, &reply, why, sizeof why) < 0)
        fail(resp, MODEL_BAD_OUTPUT, "the answer from %s is not an embedding: %s", r->origin,
             why);
    else {
        usage_add(resp, &reply, len0(req->prompt), 0);
        resp->tokens_out = 0;
        resp->output = vec;
        resp->status = MODEL_OK;
    }
    model__reply_done(&reply);
    json_decref(answer);
}

static void remote_call(ModelProvider *p, const ModelRequest *req, ModelResponse *resp)
{
    const Remote *r = p->impl;
    memset(resp, 0, sizeof *resp);
    resp->status = MODEL_FAILED;
    copy_cut(resp->model, sizeof resp->model, p->cfg.model);
    if (!req || !req->prompt) {
        fail(resp, MODEL_FAILED, "the request has no prompt");
        goto out;
    }
    int timeout = req->timeout_ms > 0 ? req->timeout_ms : p->cfg.timeout_ms;
    if (timeout > MODEL_MAX_TIMEOUT_MS)
        timeout = MODEL_MAX_TIMEOUT_MS;
    int64_t deadline_ns = core_time_mono_ns() + (int64_t)timeout * 1000000;
    size_t max = req->max_response_bytes ? req->max_response_bytes : MODEL_DEFAULT_MAX_RESPONSE;
    if (max > MODEL_MAX_RESPONSE)
        max = MODEL_MAX_RESPONSE;
    const char *task = req->task ? req->task : "complete";
    if (!strcmp(task, "embed")) {
        if (p->cfg.embed_model[0])
            copy_cut(resp->model, sizeof resp->model, p->cfg.embed_model);
        embed(p, req, deadline_ns, max, resp);
    } else {
        ModelRequest copy = *req;
        copy.task = task;
        chat(p, &copy, deadline_ns, max, resp);
    }
out:
    if (resp->status != MODEL_OK) {
        json_decref(resp->output);
        resp->output = NULL;
    }
    core_utf8_sanitize(resp->error);
    model__redact(resp->error, sizeof resp->error, r->key);
}

/* ---- the provider ------------------------------------------------------- */

static void remote_free(ModelProvider *p)
{
    if (!p)
        return;
    Remote *r = p->impl;
    if (r) {
        if (r->key) {
            explicit_bzero(r->key, strlen(r->key));
            free(r->key);
        }
        free(r);
    }
    free(p);
}

static const ModelProviderOps remote_ops = {
    .call = remote_call,
    .free = remote_free,
};

/* Checks base_url (http or https, a host, no user name or password: the
 * key goes in api_key_env) and writes its origin. */
static int base_check(const ModelProviderConfig *cfg, char *origin, size_t size, Err *err)
{
    const char *url = cfg->base_url;
    if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8))
        return err_set(err, ERR_CONFIG, "provider '%s': base_url must start with http:// or "
                                        "https://",
                       cfg->name);
    for (const char *s = url; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return err_set(err, ERR_CONFIG,
                           "provider '%s': base_url has a space or control character",
                           cfg->name);
    CURLU *u = curl_url();
    if (!u) {
        fprintf(stderr, "curl_url: out of memory\n");
        abort();
    }
    int rc = 0;
    char *host = NULL, *user = NULL, *pass = NULL, *scheme = NULL, *port = NULL;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        rc = err_set(err, ERR_CONFIG, "provider '%s': base_url cannot be parsed: %s", cfg->name,
                     curl_url_strerror(uc));
        goto out;
    }
    curl_url_get(u, CURLUPART_USER, &user, 0);
    curl_url_get(u, CURLUPART_PASSWORD, &pass, 0);
    if (user || pass) {
        rc = err_set(err, ERR_CONFIG, "provider '%s': base_url must not hold a user name or "
                                      "password (name the key's variable in api_key_env)",
                     cfg->name);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
        rc = err_set(err, ERR_CONFIG, "provider '%s': base_url has no host", cfg->name);
        goto out;
    }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    snprintf(origin, size, "%s://%s:%s", scheme ? scheme : "?", host, port ? port : "?");
    core_utf8_sanitize(origin);
out:
    curl_free(host);
    curl_free(user);
    curl_free(pass);
    curl_free(scheme);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

int model__remote_new(const ModelProviderConfig *cfg, const ModelWire *wire,
                      ModelProvider **ret, Err *err)
{
    char origin[600];
    if (!cfg || !ret)
        return err_set(err, ERR_INVAL, "no provider configuration");
    if (cfg->kind[0] && strcmp(cfg->kind, wire->kind))
        return err_set(err, ERR_CONFIG, "provider '%s': kind '%s' is not %s", cfg->name,
                       cfg->kind, wire->kind);
    if (!memchr(cfg->base_url, '\0', sizeof cfg->base_url) ||
        !memchr(cfg->model, '\0', sizeof cfg->model) ||
        !memchr(cfg->embed_model, '\0', sizeof cfg->embed_model) ||
        !memchr(cfg->api_key_env, '\0', sizeof cfg->api_key_env))
        return err_set(err, ERR_CONFIG, "provider '%s': a setting is not NUL-terminated",
                       cfg->name);
    if (!cfg->model[0])
        return err_set(err, ERR_CONFIG, "provider '%s': model is empty", cfg->name);
    if (cfg->timeout_ms < 0 || cfg->timeout_ms > MODEL_MAX_TIMEOUT_MS)
        return err_set(err, ERR_CONFIG, "provider '%s': timeout_ms must be 0 to %d, not %d",
                       cfg->name, MODEL_MAX_TIMEOUT_MS, cfg->timeout_ms);
    if (base_check(cfg, origin, sizeof origin, err) < 0)
        return ERR_CONFIG;

    char *key = NULL;
    if (cfg->api_key_env[0]) {
        const char *v = getenv(cfg->api_key_env);
        if (!v || !*v)
            return err_set(err, ERR_CONFIG,
                           "provider '%s': the environment variable %s (api_key_env) is not "
                           "set",
                           cfg->name, cfg->api_key_env);
        size_t n = strlen(v);
        if (n > MODEL_MAX_KEY)
            return err_set(err, ERR_CONFIG, "provider '%s': the key in %s is longer than %d bytes",
                           cfg->name, cfg->api_key_env, MODEL_MAX_KEY);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f)
                return err_set(err, ERR_CONFIG,
                               "provider '%s': the key in %s holds a space, a control or a "
                               "non-ASCII character",
                               cfg->name, cfg->api_key_env);
        key = xstrdup(v);
    }

    Remote *r = xcalloc(1, sizeof *r);
    r->wire = wire;
    r->key = key;
    snprintf(r->origin, sizeof r->origin, "%s", origin);
    size_t n = strlen(cfg->base_url);
    while (n > 0 && cfg->base_url[n - 1] == '/')
        n--;
    memcpy(r->base, cfg->base_url, n);
    r->base[n] = '\0';

    ModelProvider *p = xcalloc(1, sizeof *p);
    p->ops = &remote_ops;
    p->cfg = *cfg;
    snprintf(p->cfg.kind, sizeof p->cfg.kind, "%s", wire->kind);
    if (p->cfg.timeout_ms == 0)
        p->cfg.timeout_ms = DEFAULT_TIMEOUT_MS;
    p->impl = r;
    *ret = p;
    return 0;
}
