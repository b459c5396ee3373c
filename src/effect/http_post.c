/* webhook.post: one signed JSON POST over libcurl, its answer classified.
 *
 * Invariant: nothing derived from the secret but the signature leaves this
 * file, and the signature only in its header; the outcome's detail holds
 * the receiver's host, its status and the start of its answer. */
#include <assert.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/crypto.h"
#include "core/json.h"
#include "effect/curl.h"
#include "effect/http_post.h"

#define CONNECT_TIMEOUT_MAX_S 10
#define EXCERPT_MAX 200 /* bytes of the answer's body quoted in the detail */

/* ---- the URL ---------------------------------------------------------- */

static bool has_prefix_nocase(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && !strncasecmp(s, prefix, n);
}

/* Parses url[0..len) into *ret (caller frees with curl_url_cleanup()), or
 * writes why it is refused into why and returns ERR_INVAL. */
static int url_parse(const char *url, size_t len, CURLU **ret, char *why, size_t why_size)
{
    if (len == 0) {
        snprintf(why, why_size, "is empty");
        return ERR_INVAL;
    }
    if (len > HTTP_POST_MAX_URL) {
        snprintf(why, why_size, "is %zu bytes long, at most %d are allowed", len,
                 HTTP_POST_MAX_URL);
        return ERR_INVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c == 0x7f) {
            snprintf(why, why_size, "has a space or control character at byte %zu", i);
            return ERR_INVAL;
        }
    }
    if (!has_prefix_nocase(url, len, "http://") && !has_prefix_nocase(url, len, "https://")) {
        snprintf(why, why_size, "must start with http:// or https://");
        return ERR_INVAL;
    }
    /* libcurl reads "http:///x" as host "x"; a person meant something else */
    size_t authority = has_prefix_nocase(url, len, "http://") ? 7 : 8;
    if (authority == len || url[authority] == '/') {
        snprintf(why, why_size, "has no host");
        return ERR_INVAL;
    }
    CURLU *u = curl_url();
    if (!u) {
        fprintf(stderr, "curl_url: out of memory\n");
        abort();
    }
    /* url holds no NUL (checked above: NUL is a control character, and
     * len is the full length), so libcurl sees all of it. */
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        snprintf(why, why_size, "cannot be parsed: %s", curl_url_strerror(uc));
        curl_url_cleanup(u);
        return ERR_INVAL;
    }
    char *part = NULL;
    bool user = curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK;
    curl_free(part);
    part = NULL;
    bool password = curl_url_get(u, CURLUPART_PASSWORD, &part, 0) == CURLUE_OK;
    curl_free(part);
    part = NULL;
    if (user || password) {
        snprintf(why, why_size,
                 "must not hold a user name or password (sign with secret_env instead)");
        curl_url_cleanup(u);
        return ERR_INVAL;
    }
    uc = curl_url_get(u, CURLUPART_HOST, &part, 0);
    bool host = uc == CURLUE_OK && part && *part;
    curl_free(part);
    if (!host) {
        snprintf(why, why_size, "has no host");
        curl_url_cleanup(u);
        return ERR_INVAL;
    }
    *ret = u;
    return 0;
}

/* "scheme://host:port" of a parsed URL, for details: never the path or
 * query, which may hold a token. */
static void url_origin(CURLU *u, char *out, size_t size)
{
    char *scheme = NULL, *host = NULL, *port = NULL;
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    snprintf(out, size, "%s://%s:%s", scheme ? scheme : "?", host ? host : "?",
             port ? port : "?");
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
}

/* The origin of a redirect's target: an http to https redirect often
 * repeats the path, and with it a token the URL may hold. */
static void redirect_origin(const char *location, char *out, size_t size)
{
    if (!location || !*location) {
        snprintf(out, size, "(no Location)");
        return;
    }
    CURLU *u = curl_url();
    if (!u) {
        fprintf(stderr, "curl_url: out of memory\n");
        abort();
    }
    if (curl_url_set(u, CURLUPART_URL, location, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK)
        url_origin(u, out, size);
    else
        snprintf(out, size, "(a Location that does not parse)");
    curl_url_cleanup(u);
}

/* ---- the check -------------------------------------------------------- */

static int check_secret_env(const json_t *v, Err *err)
{
    if (!json_is_string(v))
        return err_set(err, ERR_INVAL, "with.secret_env: must be a string, not %s",
                       core_json_type_name(v));
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0)
        return err_set(err, ERR_INVAL, "with.secret_env: is empty");
    if (len > HTTP_POST_MAX_ENV)
        return err_set(err, ERR_INVAL, "with.secret_env: is %zu bytes long, at most %d are allowed",
                       len, HTTP_POST_MAX_ENV);
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool good = (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
        if (!good) {
            char shown[HTTP_POST_MAX_ENV + 1];
            snprintf(shown, sizeof shown, "%s", s);
            core_utf8_sanitize(shown);
            return err_set(err, ERR_INVAL,
                           "with.secret_env: '%s' is not an environment variable name "
                           "([A-Z_][A-Z0-9_]*)",
                           shown);
        }
    }
    return 0;
}

int http_post_check(const json_t *with, Err *err)
{
    if (!json_is_object(with))
        return err_set(err, ERR_INVAL, "with: must be an object {url, body, secret_env?}, not %s",
                       with ? core_json_type_name(with) : "nothing");
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)with, key, v) {
        if (strcmp(key, "url") && strcmp(key, "body") && strcmp(key, "secret_env")) {
            char shown[65];
            snprintf(shown, sizeof shown, "%s", key);
            core_utf8_sanitize(shown);
            return err_set(err, ERR_INVAL,
                           "with.%s: unknown key (webhook.post takes url, body and secret_env)",
                           shown);
        }
    }

    const json_t *url = json_object_get(with, "url");
    if (!url)
        return err_set(err, ERR_INVAL, "with.url: missing (the receiver's http:// or https:// URL)");
    if (!json_is_string(url))
        return err_set(err, ERR_INVAL, "with.url: must be a string, not %s",
                       core_json_type_name(url));
    char why[256];
    CURLU *u = NULL;
    if (url_parse(json_string_value(url), json_string_length(url), &u, why, sizeof why) < 0)
        return err_set(err, ERR_INVAL, "with.url: %s", why);
    curl_url_cleanup(u);

    const json_t *body = json_object_get(with, "body");
    if (!body)
        return err_set(err, ERR_INVAL, "with.body: missing (the JSON value to send)");
    Buf b;
    buf_init(&b, HTTP_POST_MAX_BODY);
    int rc = core_json_dump(body, &b);
    buf_done(&b);
    if (rc < 0)
        return err_set(err, ERR_INVAL, "with.body: larger than %d bytes as JSON",
                       HTTP_POST_MAX_BODY);

    const json_t *env = json_object_get(with, "secret_env");
    if (env && check_secret_env(env, err) < 0)
        return ERR_INVAL;
    return 0;
}

/* ---- the signature ---------------------------------------------------- */

int http_post_sign(const char *secret, int64_t ts, const char *body, size_t len, char *out,
                   size_t size)
{
    if (!secret || !body || ts < 0)
        return ERR_INVAL;
    char prefix[24];
    int n = snprintf(prefix, sizeof prefix, "%" PRId64 ".", ts);
    /* "t=" TS ",v1=" HEX NUL, where prefix is TS "." */
    size_t need = 2 + ((size_t)n - 1) + 4 + CORE_SHA256_HEX + 1;
    if (size < need)
        return ERR_TOOBIG;
    char *text = xmalloc((size_t)n + len + 1);
    memcpy(text, prefix, (size_t)n);
    memcpy(text + n, body, len);
    uint8_t mac[CORE_SHA256_LEN];
    core_hmac_sha256(secret, strlen(secret), text, (size_t)n + len, mac);
    free(text);
    char hex[CORE_SHA256_HEX + 1];
    core_hex_encode(mac, sizeof mac, hex);
    snprintf(out, size, "t=%" PRId64 ",v1=%s", ts, hex);
    return 0;
}

/* ---- the delivery ----------------------------------------------------- */

static void outcome(EffectOutcome *out, EffectResult result, long code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void outcome(EffectOutcome *out, EffectResult result, long code, const char *fmt, ...)
{
    out->result = result;
    out->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->detail, sizeof out->detail, fmt, ap);
    va_end(ap);
    core_utf8_sanitize(out->detail);
}

/* The answer's body, read up to HTTP_POST_MAX_RESPONSE bytes. */
typedef struct Answer {
    Buf body;
    bool capped; /* more came; the transfer was stopped there */
} Answer;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    Answer *a = ctx;
    size_t len = size * nmemb;
    size_t room = HTTP_POST_MAX_RESPONSE - a->body.len;
    if (len > room) {
        buf_append(&a->body, data, room);
        a->capped = true;
        return 0; /* stops the transfer: CURLE_WRITE_ERROR */
    }
    buf_append(&a->body, data, len);
    return len;
}

/* The first EXCERPT_MAX bytes of the answer on one line: control characters
 * become spaces, runs of spaces one, bytes that are not UTF-8 '?'. */
static void excerpt(const Answer *a, char *out, size_t size)
{
    size_t max = size - 1 < EXCERPT_MAX ? size - 1 : EXCERPT_MAX;
    size_t n = 0;
    for (size_t i = 0; i < a->body.len && n < max; i++) {
        unsigned char c = (unsigned char)a->body.ptr[i];
        if (c < 0x20 || c == 0x7f)
            c = ' ';
        if (c == ' ' && (n == 0 || out[n - 1] == ' '))
            continue;
        out[n++] = (char)c;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
    /* a multi-byte character cut at the end becomes '?' */
    core_utf8_sanitize(out);
}

static void classify_status(long status, const char *origin, const Answer *a,
                            const char *redirect, EffectOutcome *out)
{
    char text[EXCERPT_MAX + 1];
    excerpt(a, text, sizeof text);
    const char *sep = *text ? ": " : "";
    const char *more = a->body.len > EXCERPT_MAX || a->capped ? "..." : "";
    if (status >= 200 && status <= 299)
        outcome(out, EFFECT_DELIVERED, status, "HTTP %ld from %s", status, origin);
    else if (status >= 300 && status <= 399)
        outcome(out, EFFECT_PERMANENT, status, "HTTP %ld from %s: redirect to %s not followed",
                status, origin, redirect);
    else if (status == 408 || status == 425 || status == 429 || (status >= 500 && status <= 599))
        outcome(out, EFFECT_RETRY, status, "HTTP %ld from %s%s%s%s", status, origin, sep, text,
                more);
    else if (status >= 400 && status <= 499)
        outcome(out, EFFECT_PERMANENT, status, "HTTP %ld from %s%s%s%s", status, origin, sep,
                text, more);
    else
        outcome(out, EFFECT_PERMANENT, status, "unexpected HTTP status %ld from %s%s%s%s",
                status, origin, sep, text, more);
}

/* A failure before a status came: most are worth another try later; only a
 * request libcurl cannot make at all is permanent. */
static void classify_transport(CURLcode rc, const char *errbuf, const char *origin,
                               int timeout_s, EffectOutcome *out)
{
    const char *why = *errbuf ? errbuf : curl_easy_strerror(rc);
    switch (rc) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_BAD_FUNCTION_ARGUMENT:
        outcome(out, EFFECT_PERMANENT, 0, "cannot post to %s: %s", origin, why);
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        outcome(out, EFFECT_RETRY, 0, "cannot resolve %s: %s", origin, why);
        break;
    case CURLE_COULDNT_CONNECT:
        outcome(out, EFFECT_RETRY, 0, "cannot connect to %s: %s", origin, why);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        outcome(out, EFFECT_RETRY, 0, "no answer from %s within %d s: %s", origin, timeout_s,
                why);
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        outcome(out, EFFECT_RETRY, 0, "TLS with %s failed: %s", origin, why);
        break;
    default:
        outcome(out, EFFECT_RETRY, 0, "post to %s failed: %s", origin, why);
        break;
    }
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

static bool key_valid(const char *key)
{
    size_t n = 0;
    for (; key[n]; n++)
        if ((unsigned char)key[n] <= 0x20 || (unsigned char)key[n] >= 0x7f)
            return false;
    return n > 0 && n <= HTTP_POST_MAX_KEY;
}

int http_post_deliver(const HttpPostRequest *req, EffectOutcome *out)
{
    assert(req && out);
    int rc = 0;
    CURLU *u = NULL;
    CURL *h = NULL;
    struct curl_slist *headers = NULL;
    Answer ans = { .capped = false };
    buf_init(&ans.body, HTTP_POST_MAX_RESPONSE);
    char why[256], origin[HTTP_POST_MAX_URL + 32];

    if (!req->url || url_parse(req->url, strlen(req->url), &u, why, sizeof why) < 0) {
        outcome(out, EFFECT_PERMANENT, 0, "malformed URL: %s", req->url ? why : "none given");
        rc = ERR_INVAL;
        goto out;
    }
    url_origin(u, origin, sizeof origin);
    if (!req->body || req->len > HTTP_POST_MAX_BODY) {
        outcome(out, EFFECT_PERMANENT, 0, "the body %s", req->body ? "is larger than 1 MiB"
                                                                   : "is missing");
        rc = ERR_INVAL;
        goto out;
    }
    if (!req->idempotency_key || !key_valid(req->idempotency_key)) {
        outcome(out, EFFECT_PERMANENT, 0,
                "the idempotency key must be 1 to %d printable ASCII characters, no spaces",
                HTTP_POST_MAX_KEY);
        rc = ERR_INVAL;
        goto out;
    }
    if (req->timeout_s < 1 || req->timeout_s > HTTP_POST_MAX_TIMEOUT) {
        outcome(out, EFFECT_PERMANENT, 0, "the timeout must be 1 to %d s, not %d",
                HTTP_POST_MAX_TIMEOUT, req->timeout_s);
        rc = ERR_INVAL;
        goto out;
    }

    char line[HTTP_POST_MAX_KEY + 64];
    headers = header_add(headers, "Content-Type: application/json");
    headers = header_add(headers, "Accept: application/json, */*;q=0.5");
    /* no "Expect: 100-continue" round trip for bodies over 1 KiB */
    headers = header_add(headers, "Expect:");
    snprintf(line, sizeof line, "Idempotency-Key: %s", req->idempotency_key);
    headers = header_add(headers, line);
    if (req->secret) {
        int64_t ts = req->timestamp_s > 0 ? req->timestamp_s : core_time_now_ms() / 1000;
        char sig[HTTP_POST_SIGNATURE_MAX];
        int src = http_post_sign(req->secret, ts, req->body, req->len, sig, sizeof sig);
        assert(src == 0); /* ts >= 0, body set, sig large enough */
        (void)src;
        snprintf(line, sizeof line, "Bureau-Signature: %s", sig);
        headers = header_add(headers, line);
    }

    effect_curl_init();
    h = curl_easy_init();
    if (!h) {
        outcome(out, EFFECT_RETRY, 0, "cannot start libcurl (out of memory?)");
        rc = ERR_INTERNAL;
        goto out;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    long connect_ms = 1000L * (req->timeout_s < CONNECT_TIMEOUT_MAX_S ? req->timeout_s
                                                                      : CONNECT_TIMEOUT_MAX_S);
    CURLcode c = CURLE_OK;
#define SET(opt, val)                               \
    do {                                            \
        if (c == CURLE_OK)                          \
            c = curl_easy_setopt(h, (opt), (val));  \
    } while (0)
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_CURLU, u);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    SET(CURLOPT_TIMEOUT_MS, 1000L * req->timeout_s);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_NETRC, (long)CURL_NETRC_IGNORED);
    SET(CURLOPT_USERAGENT, "bureau/" BUREAU_VERSION);
    SET(CURLOPT_HTTPHEADER, headers);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, req->body);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->len);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, &ans);
#undef SET
    if (c != CURLE_OK) {
        /* this libcurl lacks an option we rely on: fail closed */
        outcome(out, EFFECT_RETRY, 0, "libcurl refused an option: %s", curl_easy_strerror(c));
        rc = ERR_INTERNAL;
        goto out;
    }

    c = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (c == CURLE_OK || (c == CURLE_WRITE_ERROR && ans.capped) || status >= 200) {
        /* the status line decides, even when the rest of the answer was
         * cut short (by us at the cap, or by the peer or the clock) */
        char *location = NULL, target[HTTP_POST_MAX_URL + 32];
        curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &location);
        redirect_origin(location, target, sizeof target);
        classify_status(status, origin, &ans, target, out);
    } else
        classify_transport(c, errbuf, origin, req->timeout_s, out);

out:
    curl_easy_cleanup(h);
    curl_slist_free_all(headers);
    curl_url_cleanup(u);
    buf_done(&ans.body);
    return rc;
}
