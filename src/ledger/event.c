/* Canonical events: validation of outside input, row decoding, the chain
 * hash. Every check names the field it refused. */
#include "ledger/event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"
#include "ledger/ledger_int.h"

#define DEFAULT_MAX_DATA (1024 * 1024)

bool ledger_type_reserved(const char *type)
{
    static const char *const prefixes[] = { "task.",     "step.",     "workflow.", "schedule.", "goal.",
                                            "operator.", "approval.", "effect.",   "model.",
                                            "memory.",   "ledger.",  "connector." };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (!strncmp(type, prefixes[i], strlen(prefixes[i])))
            return true;
    return false;
}

bool ledger_type_valid(const char *s, size_t len)
{
    if (len == 0 || len > EVENT_TYPE_MAX || !(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    int dots = 0;
    bool seg_empty = false;
    for (size_t i = 1; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (seg_empty)
                return false;
            dots++;
            seg_empty = true;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
            seg_empty = false;
        } else {
            return false;
        }
    }
    return dots > 0 && !seg_empty;
}

static bool source_valid(const char *s, size_t len)
{
    if (len == 0 || len > EVENT_SOURCE_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("_.:/@-", c)))
            return false;
    }
    return true;
}

/* kind:id, kind like a type segment, id printable ASCII without spaces. */
static bool subject_valid(const char *s, size_t len)
{
    if (len == 0 || len > EVENT_SUBJECT_MAX || !(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    size_t i = 1;
    while (i < len && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
        i++;
    if (i >= len - 1 || s[i] != ':')
        return false;
    for (i++; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

const char *ledger__row_malformed(const Event *ev)
{
    if (!core_ulid_valid(ev->id, strlen(ev->id)))
        return "id is not a ULID";
    if (!ledger_type_valid(ev->type, strlen(ev->type)))
        return "type is not an event type";
    if (!source_valid(ev->source, strlen(ev->source)))
        return "source is not valid";
    if (ev->subject && !subject_valid(ev->subject, strlen(ev->subject)))
        return "subject is not kind:id";
    if (strcmp(ev->consent, "none") && strcmp(ev->consent, "transactional") &&
        strcmp(ev->consent, "marketing"))
        return "consent is not a consent value";
    if (ev->key_present && strlen(ev->idempotency_key) != CORE_SHA256_HEX)
        return "idempotency_key is not a SHA-256";
    if (!core_trace_valid(ev->trace_id, strlen(ev->trace_id)))
        return "trace_id is not a trace id";
    int64_t ms;
    if (core_time_parse(ev->occurred_at, strlen(ev->occurred_at), &ms) < 0 ||
        core_time_parse(ev->received_at, strlen(ev->received_at), &ms) < 0)
        return "a time is not RFC 3339";
    return NULL;
}

void ledger_event_free(Event *ev)
{
    if (!ev)
        return;
    free(ev->type);
    free(ev->source);
    free(ev->subject);
    free(ev->data);
    free(ev);
}

static int string_field(const json_t *obj, const char *name, bool required, const char **ret,
                        size_t *ret_len, Err *err)
{
    const json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v)) {
        if (required)
            return err_set(err, ERR_INVAL, "field '%s': required", name);
        *ret = NULL;
        *ret_len = 0;
        return 0;
    }
    if (!json_is_string(v))
        return err_set(err, ERR_INVAL, "field '%s': must be a string, not %s", name,
                       core_json_type_name(v));
    *ret = json_string_value(v);
    *ret_len = json_string_length(v);
    return 0;
}

static const char *const known_fields[] = { "type",    "source",          "subject",
                                            "occurred_at", "consent",     "idempotency_key",
                                            "trace_id", "data",           NULL };
static const char *const assigned_fields[] = { "seq",  "id",        "received_at",
                                               "hash", "prev_hash", "data_hash", NULL };

static int set_data(Event *ev, const json_t *data, size_t max, Err *err)
{
    Buf b;
    buf_init(&b, max);
    if (core_json_canonical(data, &b) < 0) {
        buf_done(&b);
        return err_set(err, ERR_TOOBIG, "field 'data': larger than the limit of %zu bytes", max);
    }
    ev->data_len = b.len;
    ev->data = buf_steal(&b);
    core_sha256_hex(ev->data, ev->data_len, ev->data_hash);
    return 0;
}

static void set_key(Event *ev, const char *key, size_t len)
{
    if (key)
        core_sha256_hex(key, len, ev->idempotency_key);
    else
        ev->idempotency_key[0] = '\0';
}

/* internal: built by Bureau itself (ledger_event_new), which alone may
 * write the ledger's own ledger.* types. */
static int event_from_json(const json_t *obj, const EventLimits *lim, bool internal, Event **ret,
                           Err *err);

int ledger_event_from_json(const json_t *obj, const EventLimits *lim, Event **ret, Err *err)
{
    return event_from_json(obj, lim, false, ret, err);
}

static int event_from_json(const json_t *obj, const EventLimits *lim, bool internal, Event **ret,
                           Err *err)
{
    size_t max = lim && lim->max_data_bytes ? lim->max_data_bytes : DEFAULT_MAX_DATA;
    if (!json_is_object(obj))
        return err_set(err, ERR_INVAL, "an event must be a JSON object, not %s",
                       core_json_type_name(obj));
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val) {
        bool ok = false;
        for (int i = 0; known_fields[i] && !ok; i++)
            ok = !strcmp(key, known_fields[i]);
        if (ok)
            continue;
        for (int i = 0; assigned_fields[i]; i++)
            if (!strcmp(key, assigned_fields[i]))
                return err_set(err, ERR_INVAL, "field '%s': assigned by the ledger, not accepted",
                               key);
        return err_set(err, ERR_INVAL, "field '%.64s': unknown", key);
    }

    const char *type = NULL, *source = NULL, *subject = NULL, *occurred = NULL, *consent = NULL,
               *ikey = NULL, *trace = NULL;
    size_t type_len = 0, source_len = 0, subject_len = 0, occurred_len = 0, consent_len = 0,
           ikey_len = 0, trace_len = 0;
    int rc;
    if ((rc = string_field(obj, "type", true, &type, &type_len, err)) < 0 ||
        (rc = string_field(obj, "source", true, &source, &source_len, err)) < 0 ||
        (rc = string_field(obj, "subject", false, &subject, &subject_len, err)) < 0 ||
        (rc = string_field(obj, "occurred_at", false, &occurred, &occurred_len, err)) < 0 ||
        (rc = string_field(obj, "consent", false, &consent, &consent_len, err)) < 0 ||
        (rc = string_field(obj, "idempotency_key", false, &ikey, &ikey_len, err)) < 0 ||
        (rc = string_field(obj, "trace_id", false, &trace, &trace_len, err)) < 0)
        return rc;
    if (!ledger_type_valid(type, type_len))
        return err_set(err, ERR_INVAL,
                       "field 'type': '%.64s' is not an event type (lower-case words joined "
                       "by dots, e.g. email.received)",
                       type);
    if (!internal && !strncmp(type, "ledger.", 7)) /* only the ledger writes these */
        return err_set(err, ERR_INVAL,
                       "field 'type': '%.64s': ledger.* events are written by the ledger alone",
                       type);
    if (!source_valid(source, source_len))
        return err_set(err, ERR_INVAL,
                       "field 'source': must be 1-%d characters of letters, digits and _.:/@-",
                       EVENT_SOURCE_MAX);
    if (subject && !subject_valid(subject, subject_len))
        return err_set(err, ERR_INVAL,
                       "field 'subject': must be kind:id (e.g. contact:01J...), at most %d bytes",
                       EVENT_SUBJECT_MAX);
    int64_t now = core_time_now_ms(), occurred_ms = now;
    if (occurred && core_time_parse(occurred, occurred_len, &occurred_ms) < 0)
        return err_set(err, ERR_INVAL,
                       "field 'occurred_at': not an RFC 3339 time (e.g. 2026-11-25T12:00:00Z)");
    if (consent && strcmp(consent, "transactional") && strcmp(consent, "marketing") &&
        strcmp(consent, "none"))
        return err_set(err, ERR_INVAL,
                       "field 'consent': must be transactional, marketing or none");
    if (ikey && (ikey_len == 0 || ikey_len > EVENT_KEY_MAX))
        return err_set(err, ERR_INVAL, "field 'idempotency_key': must be 1-%d bytes",
                       EVENT_KEY_MAX);
    if (trace && !core_trace_valid(trace, trace_len))
        return err_set(err, ERR_INVAL, "field 'trace_id': must be 32 lower-case hex digits");
    const json_t *data = json_object_get(obj, "data");
    if (!data)
        return err_set(err, ERR_INVAL, "field 'data': required");
    if (!json_is_object(data))
        return err_set(err, ERR_INVAL, "field 'data': must be an object, not %s",
                       core_json_type_name(data));
    if ((rc = ledger_event_check_data(type, data, err)) < 0)
        return rc;

    Event *ev = xcalloc(1, sizeof *ev);
    if ((rc = set_data(ev, data, max, err)) < 0) {
        ledger_event_free(ev);
        return rc;
    }
    ev->type = xstrndup(type, type_len);
    ev->source = xstrndup(source, source_len);
    ev->subject = subject ? xstrndup(subject, subject_len) : NULL;
    core_time_format(occurred_ms, ev->occurred_at);
    core_time_format(now, ev->received_at);
    snprintf(ev->consent, sizeof ev->consent, "%s", consent ? consent : "none");
    set_key(ev, ikey, ikey_len);
    if (trace)
        memcpy(ev->trace_id, trace, CORE_TRACE_LEN + 1);
    else
        core_trace_new(ev->trace_id);
    *ret = ev;
    return 0;
}

int ledger_event_parse(const char *text, size_t len, const EventLimits *lim, Event **ret,
                       Err *err)
{
    json_t *v;
    int rc = core_json_parse(text, len, &v, err);
    if (rc < 0)
        return rc;
    rc = ledger_event_from_json(v, lim, ret, err);
    json_decref(v);
    return rc;
}

int ledger_event_new(const char *type, const char *source, const char *subject,
                     const json_t *data, const char *key, const EventLimits *lim, Event **ret,
                     Err *err)
{
    json_t *obj = json_pack("{s:s, s:s, s:O}", "type", type, "source", source, "data", data);
    if (!obj)
        return err_set(err, ERR_INVAL, "event %s: bad arguments", type);
    if (subject)
        json_object_set_new(obj, "subject", json_string(subject));
    if (key)
        json_object_set_new(obj, "idempotency_key", json_string(key));
    int rc = event_from_json(obj, lim, true, ret, err);
    json_decref(obj);
    return rc;
}

json_t *ledger_event_to_json(const Event *ev)
{
    json_t *o = json_object();
    json_object_set_new(o, "seq", json_integer(ev->seq));
    json_object_set_new(o, "id", json_string(ev->id));
    json_object_set_new(o, "type", json_string(ev->type));
    json_object_set_new(o, "source", json_string(ev->source));
    if (ev->subject)
        json_object_set_new(o, "subject", json_string(ev->subject));
    json_object_set_new(o, "occurred_at", json_string(ev->occurred_at));
    json_object_set_new(o, "received_at", json_string(ev->received_at));
    json_object_set_new(o, "consent", json_string(ev->consent));
    if (ev->idempotency_key[0])
        json_object_set_new(o, "idempotency_key", json_string(ev->idempotency_key));
    json_object_set_new(o, "trace_id", json_string(ev->trace_id));
    json_t *data = json_loadb(ev->data, ev->data_len, 0, NULL);
    json_object_set_new(o, "data", data ? data : json_string(ev->data));
    json_object_set_new(o, "data_hash", json_string(ev->data_hash));
    json_object_set_new(o, "prev_hash", json_string(ev->prev_hash));
    json_object_set_new(o, "hash", json_string(ev->hash));
    return o;
}

static void copy_col(StoreStmt *st, int i, char *out, size_t cap)
{
    size_t len;
    const char *s = store_col_text(st, i, &len);
    if (!s)
        len = 0;
    if (len >= cap)
        len = cap - 1;
    if (len)
        memcpy(out, s, len);
    out[len] = '\0';
}

static char *dup_col(StoreStmt *st, int i)
{
    size_t len;
    const char *s = store_col_text(st, i, &len);
    return s ? xstrndup(s, len) : NULL;
}

int ledger_event_from_row(StoreStmt *st, Event **ret, Err *err)
{
    (void)err;
    Event *ev = xcalloc(1, sizeof *ev);
    ev->seq = store_col_int(st, 0);
    copy_col(st, 1, ev->id, sizeof ev->id);
    ev->type = dup_col(st, 2);
    ev->source = dup_col(st, 3);
    ev->subject = dup_col(st, 4);
    copy_col(st, 5, ev->occurred_at, sizeof ev->occurred_at);
    copy_col(st, 6, ev->received_at, sizeof ev->received_at);
    copy_col(st, 7, ev->consent, sizeof ev->consent);
    copy_col(st, 8, ev->idempotency_key, sizeof ev->idempotency_key);
    ev->key_present = store_col_type(st, 8) != STORE_NULL;
    copy_col(st, 9, ev->trace_id, sizeof ev->trace_id);
    size_t len;
    const char *d = store_col_text(st, 10, &len);
    ev->data = xstrndup(d ? d : "", d ? len : 0);
    ev->data_len = d ? len : 0;
    copy_col(st, 11, ev->data_hash, sizeof ev->data_hash);
    copy_col(st, 12, ev->prev_hash, sizeof ev->prev_hash);
    copy_col(st, 13, ev->hash, sizeof ev->hash);
    if (!ev->type)
        ev->type = xstrdup("");
    if (!ev->source)
        ev->source = xstrdup("");
    *ret = ev;
    return 0;
}

/* The chain hash's input is gathered here and hashed in large pieces: the
 * fields are short, and a digest update per piece cost more than the
 * hashing itself. */
typedef struct HashIn {
    CoreSha256 *h;
    size_t n;
    uint8_t b[1024];
} HashIn;

static void hash_in(HashIn *in, const void *p, size_t len)
{
    if (in->n + len > sizeof in->b) {
        core_sha256_update(in->h, in->b, in->n);
        in->n = 0;
        if (len > sizeof in->b) {
            core_sha256_update(in->h, p, len);
            return;
        }
    }
    memcpy(in->b + in->n, p, len);
    in->n += len;
}

/* "LEN:TEXT," with LEN in decimal; NULL is the empty string. */
static void netstring(HashIn *in, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    char len[24];
    size_t k = sizeof len;
    len[--k] = ':';
    size_t v = n;
    do
        len[--k] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    hash_in(in, len + k, sizeof len - k);
    if (n)
        hash_in(in, s, n);
    hash_in(in, ",", 1);
}

int ledger_event_chain_hash(const Event *ev, const char *prev_hash_hex,
                            char out[CORE_SHA256_HEX + 1])
{
    CoreSha256 *h = core_sha256_new();
    int rc = ledger_event_chain_hash_with(h, ev, prev_hash_hex, out);
    core_sha256_free(h);
    return rc;
}

int ledger_event_chain_hash_with(CoreSha256 *h, const Event *ev, const char *prev_hash_hex,
                                 char out[CORE_SHA256_HEX + 1])
{
    uint8_t prev[CORE_SHA256_LEN], dh[CORE_SHA256_LEN], digest[CORE_SHA256_LEN];
    if (core_hex_decode(prev_hash_hex, strlen(prev_hash_hex), prev, sizeof prev) < 0 ||
        core_hex_decode(ev->data_hash, strlen(ev->data_hash), dh, sizeof dh) < 0)
        return ERR_INVAL;
    char seq[24];
    snprintf(seq, sizeof seq, "%lld", (long long)ev->seq);
    HashIn in = { .h = h };
    hash_in(&in, prev, sizeof prev);
    netstring(&in, seq);
    netstring(&in, ev->id);
    netstring(&in, ev->type);
    netstring(&in, ev->source);
    netstring(&in, ev->subject);
    netstring(&in, ev->occurred_at);
    netstring(&in, ev->received_at);
    netstring(&in, ev->consent);
    netstring(&in, ev->idempotency_key);
    netstring(&in, ev->trace_id);
    hash_in(&in, dh, sizeof dh);
    core_sha256_update(h, in.b, in.n);
    core_sha256_final(h, digest);
    core_hex_encode(digest, sizeof digest, out);
    return 0;
}
