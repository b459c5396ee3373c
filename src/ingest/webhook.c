/* The generic webhook connector: HMAC-SHA256 of the raw body (optionally
 * bound to a timestamp) in a configurable header, a JSON object body that
 * becomes the event's data. Nothing is parsed before the signature has been
 * checked, and the signature is compared in constant time. Also home of the
 * helpers the other connectors share (ingest_int.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "ingest/ingest_int.h"

#define SIG_TEXT_MAX 256 /* longest signature header value we look at */

const char *ingest_reason_name(IngestReason r)
{
    switch (r) {
    case INGEST_OK: return "ok";
    case INGEST_NO_SIGNATURE: return "no_signature";
    case INGEST_BAD_SIGNATURE: return "bad_signature";
    case INGEST_STALE: return "stale";
    case INGEST_BAD_BODY: return "bad_body";
    case INGEST_HONEYPOT: return "honeypot";
    }
    return "unknown";
}

/* ---- shared helpers --------------------------------------------------- */

const json_t *ingest__json_path(const json_t *root, const char *path)
{
    const json_t *v = root;
    const char *p = path;
    if (!p || !*p)
        return NULL;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0)
            return NULL;
        if (json_is_object(v)) {
            v = json_object_getn(v, p, n);
        } else if (json_is_array(v) && n <= 9 && strspn(p, "0123456789") >= n) {
            size_t idx = 0;
            for (size_t i = 0; i < n; i++)
                idx = idx * 10 + (size_t)(p[i] - '0');
            v = json_array_get(v, idx);
        } else {
            return NULL;
        }
        if (!v || !dot)
            return v;
        p = dot + 1;
    }
}

int ingest__parse_unix(const char *s, size_t len, int64_t *ret)
{
    if (len == 0 || len > 15)
        return ERR_INVAL;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return ERR_INVAL;
        v = v * 10 + (s[i] - '0');
    }
    *ret = v;
    return 0;
}

void ingest__hmac_timestamped(const char *secret, size_t secret_len, const char *ts,
                              size_t ts_len, const char *body, size_t body_len,
                              uint8_t out[CORE_SHA256_LEN])
{
    char *text = xmalloc(ts_len + 1 + body_len + 1);
    memcpy(text, ts, ts_len);
    text[ts_len] = '.';
    if (body_len)
        memcpy(text + ts_len + 1, body, body_len);
    core_hmac_sha256(secret, secret_len, text, ts_len + 1 + body_len, out);
    free(text);
}

int ingest__check_tolerance(int64_t ts, int64_t now_s, int tolerance_s, IngestReason *ret_reason,
                            Err *err)
{
    int64_t d;
    int64_t tol = tolerance_s < 0 ? 0 : tolerance_s;
    bool overflow = __builtin_sub_overflow(now_s, ts, &d);
    if (!overflow && d <= tol && d >= -tol)
        return 0;
    *ret_reason = INGEST_STALE;
    if (overflow)
        return err_set(err, ERR_AUTH, "timestamp %lld is too far from now, tolerance %d s",
                       (long long)ts, (int)tol);
    unsigned long long away = d < 0 ? 0ULL - (unsigned long long)d : (unsigned long long)d;
    return err_set(err, ERR_AUTH, "timestamp %lld is %llu s away from now, tolerance %d s",
                   (long long)ts, away, (int)tol);
}

bool ingest__email_ok(const char *s, size_t len)
{
    if (len == 0 || len > 254)
        return false;
    const char *at = memchr(s, '@', len);
    if (!at || at == s || at == s + len - 1 || memchr(at + 1, '@', len - (size_t)(at - s) - 1))
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return false;
    return true;
}

int ingest__event_build(const char *type, const char *source, int consent, const char *key,
                        const char *occurred_at, const json_t *data, const EventLimits *lim,
                        Event **ret, Err *err)
{
    static const char *const consent_names[] = { "none", "transactional", "marketing" };
    if (consent < 0 || consent > 2)
        return err_set(err, ERR_CONFIG, "consent %d is not 0, 1 or 2", consent);
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string_nocheck(type));
    json_object_set_new(o, "source", json_string_nocheck(source));
    json_object_set_new(o, "consent", json_string_nocheck(consent_names[consent]));
    /* The key may come from a header in any encoding: it is only hashed. */
    if (key)
        json_object_set_new(o, "idempotency_key", json_stringn_nocheck(key, strlen(key)));
    if (occurred_at)
        json_object_set_new(o, "occurred_at", json_string_nocheck(occurred_at));
    json_object_set(o, "data", (json_t *)data);
    int rc = ledger_event_from_json(o, lim, ret, err);
    json_decref(o);
    return rc;
}

/* ---- signatures ------------------------------------------------------- */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Strict base64 (standard or URL-safe alphabet, padding optional but exact
 * when present, unused bits zero) of exactly out_len bytes. */
static bool b64_decode_exact(const char *s, size_t len, uint8_t *out, size_t out_len)
{
    size_t pad = 0;
    while (pad < 2 && len > 0 && s[len - 1] == '=') {
        len--;
        pad++;
    }
    if (len % 4 == 1 || (pad && (len + pad) % 4 != 0) || (len * 6) / 8 != out_len)
        return false;
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0)
            return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return n == out_len && acc == 0;
}

static void trim(const char **s, size_t *len)
{
    while (*len && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

/* Decodes a signature given as 64 hex digits or base64 of 32 bytes, with an
 * optional "sha256=" prefix. */
static bool sig_decode(const char *s, size_t len, uint8_t out[CORE_SHA256_LEN])
{
    trim(&s, &len);
    if (len >= 7 && !strncasecmp(s, "sha256=", 7)) {
        s += 7;
        len -= 7;
    }
    if (len == CORE_SHA256_HEX && core_hex_decode(s, len, out, CORE_SHA256_LEN) == 0)
        return true;
    return b64_decode_exact(s, len, out, CORE_SHA256_LEN);
}

int ingest_webhook_verify(const char *secret, size_t secret_len, const char *sig,
                          const char *ts, const char *body, size_t body_len, int64_t now_s,
                          int tolerance_s, IngestReason *ret_reason, Err *err)
{
    IngestReason reason = INGEST_BAD_SIGNATURE;
    int rc = 0;
    if (!secret || secret_len == 0) {
        reason = INGEST_OK; /* the connector's fault, not the request's */
        /* Never accept what nobody could have signed. */
        rc = err_set(err, ERR_CONFIG, "the connector has no secret");
        goto out;
    }
    if (!sig) {
        reason = INGEST_NO_SIGNATURE;
        rc = err_set(err, ERR_AUTH, "missing signature");
        goto out;
    }
    size_t sig_len = strnlen(sig, SIG_TEXT_MAX + 1);
    uint8_t given[CORE_SHA256_LEN], want[CORE_SHA256_LEN];
    if (sig_len > SIG_TEXT_MAX || !sig_decode(sig, sig_len, given)) {
        rc = err_set(err, ERR_AUTH,
                     "signature is neither 64 hex digits nor base64 of 32 bytes "
                     "(optionally prefixed sha256=)");
        goto out;
    }
    int64_t ts_val = 0;
    const char *text = body ? body : "";
    size_t text_len = body_len;
    if (ts) {
        size_t ts_len = strnlen(ts, 64);
        trim(&ts, &ts_len);
        if (ingest__parse_unix(ts, ts_len, &ts_val) < 0) {
            rc = err_set(err, ERR_AUTH, "timestamp is not Unix seconds");
            goto out;
        }
        ingest__hmac_timestamped(secret, secret_len, ts, ts_len, body, body_len, want);
    } else {
        core_hmac_sha256(secret, secret_len, text, text_len, want);
    }
    if (!core_ct_equal(given, want, sizeof want)) {
        rc = err_set(err, ERR_AUTH, "signature does not match");
        goto out;
    }
    /* Only a correctly signed request is judged on its age: "stale" then
     * means a replay, not a forgery. */
    if (ts && (rc = ingest__check_tolerance(ts_val, now_s, tolerance_s, &reason, err)) < 0)
        goto out;
    reason = INGEST_OK;
out:
    if (ret_reason)
        *ret_reason = reason;
    return rc;
}

/* ---- the connector ---------------------------------------------------- */

static const char *header(const IngestRequest *req, const char *name)
{
    return req->header ? req->header(req->header_ctx, name) : NULL;
}

static int body_type(const ConnectorConfig *c, const json_t *body, const char **ret, Err *err)
{
    if (c->type) {
        if (!ledger_type_valid(c->type, strlen(c->type)) || ledger_type_reserved(c->type))
            return err_set(err, ERR_CONFIG,
                           "connector %s: type '%.64s' is not an event type a connector may use",
                           c->name, c->type);
        *ret = c->type;
        return 0;
    }
    if (!c->type_field)
        return err_set(err, ERR_CONFIG, "connector %s: neither type nor type_field is set",
                       c->name);
    const json_t *v = ingest__json_path(body, c->type_field);
    if (!v || json_is_null(v))
        return err_set(err, ERR_INVAL, "body field '%s' (the event type) is missing",
                       c->type_field);
    if (!json_is_string(v))
        return err_set(err, ERR_INVAL, "body field '%s' (the event type) must be a string, not %s",
                       c->type_field, core_json_type_name(v));
    if (!ledger_type_valid(json_string_value(v), json_string_length(v)))
        return err_set(err, ERR_INVAL,
                       "body field '%s': '%.64s' is not an event type (lower-case words "
                       "joined by dots, e.g. lead.created)",
                       c->type_field, json_string_value(v));
    if (ledger_type_reserved(json_string_value(v)))
        return err_set(err, ERR_INVAL, "body field '%s': '%.64s' is reserved for Bureau's own events",
                       c->type_field, json_string_value(v));
    *ret = json_string_value(v);
    return 0;
}

/* The outside part of the key (caller frees), from key_header, key_field or
 * the body's hash. */
static int body_key(const IngestRequest *req, const json_t *body, char **ret, Err *err)
{
    const ConnectorConfig *c = req->conn;
    if (c->key_header) {
        const char *k = header(req, c->key_header);
        if (!k)
            return err_set(err, ERR_INVAL, "missing header %s (the idempotency key)",
                           c->key_header);
        size_t n = strnlen(k, INGEST__KEY_MAX + 1);
        if (n == 0 || n > INGEST__KEY_MAX)
            return err_set(err, ERR_INVAL, "header %s (the idempotency key) must be 1-%d bytes",
                           c->key_header, INGEST__KEY_MAX);
        *ret = xstrndup(k, n);
        return 0;
    }
    if (c->key_field) {
        const json_t *v = ingest__json_path(body, c->key_field);
        if (!v || json_is_null(v))
            return err_set(err, ERR_INVAL, "body field '%s' (the idempotency key) is missing",
                           c->key_field);
        if (json_is_integer(v)) {
            char num[32];
            snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            *ret = xstrdup(num);
            return 0;
        }
        if (!json_is_string(v))
            return err_set(err, ERR_INVAL,
                           "body field '%s' (the idempotency key) must be a string or an "
                           "integer, not %s",
                           c->key_field, core_json_type_name(v));
        size_t n = json_string_length(v);
        if (n == 0 || n > INGEST__KEY_MAX || memchr(json_string_value(v), '\0', n))
            return err_set(err, ERR_INVAL,
                           "body field '%s' (the idempotency key) must be 1-%d bytes",
                           c->key_field, INGEST__KEY_MAX);
        *ret = xstrndup(json_string_value(v), n);
        return 0;
    }
    char hex[CORE_SHA256_HEX + 1];
    core_sha256_hex(req->body ? req->body : "", req->body_len, hex);
    *ret = xstrdup(hex);
    return 0;
}

int ingest_webhook(const IngestRequest *req, Event **ret, IngestReason *ret_reason, Err *err)
{
    const ConnectorConfig *c = req->conn;
    IngestReason reason = INGEST_BAD_BODY;
    json_t *body = NULL;
    char *key = NULL, *full_key = NULL;
    int rc;

    const char *sig_name = c->signature_header ? c->signature_header : "X-Signature";
    const char *sig = header(req, sig_name);
    if (!sig && req->secret && req->secret_len) {
        reason = INGEST_NO_SIGNATURE;
        rc = err_set(err, ERR_AUTH, "missing header %s", sig_name);
        goto out;
    }
    const char *ts = NULL;
    if (c->timestamp_header && !(ts = header(req, c->timestamp_header)) && req->secret &&
        req->secret_len) {
        reason = INGEST_NO_SIGNATURE;
        rc = err_set(err, ERR_AUTH, "missing header %s (the signature's timestamp)",
                     c->timestamp_header);
        goto out;
    }
    if ((rc = ingest_webhook_verify(req->secret, req->secret_len, sig, ts, req->body,
                                    req->body_len, req->now_s, c->tolerance_s, &reason, err)) < 0)
        goto out;

    reason = INGEST_BAD_BODY;
    if ((rc = core_json_parse(req->body ? req->body : "", req->body_len, &body, err)) < 0) {
        err_wrap(err, "body");
        goto out;
    }
    if (!json_is_object(body)) {
        rc = err_set(err, ERR_INVAL, "body must be a JSON object, not %s",
                     core_json_type_name(body));
        goto out;
    }
    const char *type = NULL;
    if ((rc = body_type(c, body, &type, err)) < 0 || (rc = body_key(req, body, &key, err)) < 0)
        goto out;
    size_t full_len = strlen("webhook:") + strlen(c->name) + 1 + strlen(key) + 1;
    full_key = xmalloc(full_len);
    snprintf(full_key, full_len, "webhook:%s:%s", c->name, key);
    rc = ingest__event_build(type, c->source ? c->source : c->name, c->consent, full_key, NULL,
                             body, req->limits, ret, err);
    if (rc == 0)
        reason = INGEST_OK;
out:
    json_decref(body);
    free(key);
    free(full_key);
    if (rc == ERR_CONFIG)
        reason = INGEST_OK; /* the connector's fault, not the request's */
    if (ret_reason)
        *ret_reason = reason;
    return rc;
}
