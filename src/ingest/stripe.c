/* The Stripe connector: Stripe's signature scheme (t=TS,v1=HMAC("TS.BODY"),
 * several v1 during a secret rotation) and the mapping of Stripe events to
 * canonical ones. One payment is one payment.succeeded whatever the number
 * of Stripe events that mention it (keyed by the payment intent); every other
 * event is keyed by the Stripe event id, so a redelivery is stored once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "ingest/ingest_int.h"

#define STRIPE_HEADER "Stripe-Signature"
#define STRIPE_HEADER_MAX 4096 /* a header with a dozen signatures is ~1 KiB */
#define STRIPE_V1_MAX 16
#define STRIPE_ID_MAX 255      /* Stripe ids are well under 100 characters */
#define STRIPE_TYPE_MAX 100
#define UNIX_MAX 253402300799LL /* 9999-12-31T23:59:59Z */

/* ---- signature -------------------------------------------------------- */

typedef struct SigHeader {
    const char *t;
    size_t t_len;
    const char *v1[STRIPE_V1_MAX];
    size_t v1_len[STRIPE_V1_MAX];
    size_t n_v1;
} SigHeader;

static void trim(const char **s, size_t *len)
{
    while (*len && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

/* Splits "k=v, k=v, ..." keeping t and v1; other schemes and pieces without
 * '=' are ignored, as Stripe's own libraries do. */
static int sig_header_parse(const char *h, size_t len, SigHeader *sh, Err *err)
{
    memset(sh, 0, sizeof *sh);
    const char *p = h, *end = h + len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item = p;
        size_t item_len = (size_t)((comma ? comma : end) - p);
        p = comma ? comma + 1 : end;
        trim(&item, &item_len);
        const char *eq = memchr(item, '=', item_len);
        if (!eq)
            continue;
        const char *k = item, *v = eq + 1;
        size_t k_len = (size_t)(eq - item), v_len = item_len - k_len - 1;
        trim(&k, &k_len);
        trim(&v, &v_len);
        if (k_len == 1 && k[0] == 't') {
            if (sh->t)
                return err_set(err, ERR_AUTH, "header %s has more than one timestamp (t=)",
                               STRIPE_HEADER);
            sh->t = v;
            sh->t_len = v_len;
        } else if (k_len == 2 && k[0] == 'v' && k[1] == '1') {
            if (sh->n_v1 == STRIPE_V1_MAX)
                return err_set(err, ERR_AUTH, "header %s has more than %d v1 signatures",
                               STRIPE_HEADER, STRIPE_V1_MAX);
            sh->v1[sh->n_v1] = v;
            sh->v1_len[sh->n_v1++] = v_len;
        }
    }
    return 0;
}

int ingest_stripe_verify(const char *header, const char *secret, size_t secret_len,
                         const char *body, size_t body_len, int64_t now_s, int tolerance_s,
                         IngestReason *ret_reason, Err *err)
{
    IngestReason reason = INGEST_BAD_SIGNATURE;
    SigHeader sh;
    int64_t ts;
    int rc = 0;
    if (!secret || secret_len == 0) {
        reason = INGEST_OK; /* the connector's fault, not the request's */
        rc = err_set(err, ERR_CONFIG, "the connector has no secret");
        goto out;
    }
    if (!header) {
        reason = INGEST_NO_SIGNATURE;
        rc = err_set(err, ERR_AUTH, "missing header %s", STRIPE_HEADER);
        goto out;
    }
    size_t hlen = strnlen(header, STRIPE_HEADER_MAX + 1);
    if (hlen > STRIPE_HEADER_MAX) {
        rc = err_set(err, ERR_AUTH, "header %s is longer than %d bytes", STRIPE_HEADER,
                     STRIPE_HEADER_MAX);
        goto out;
    }
    if ((rc = sig_header_parse(header, hlen, &sh, err)) < 0)
        goto out;
    if (!sh.t) {
        rc = err_set(err, ERR_AUTH, "header %s has no timestamp (t=)", STRIPE_HEADER);
        goto out;
    }
    if (ingest__parse_unix(sh.t, sh.t_len, &ts) < 0) {
        rc = err_set(err, ERR_AUTH, "header %s: t is not Unix seconds", STRIPE_HEADER);
        goto out;
    }
    if (sh.n_v1 == 0) {
        reason = INGEST_NO_SIGNATURE;
        rc = err_set(err, ERR_AUTH, "header %s has no v1 signature", STRIPE_HEADER);
        goto out;
    }
    uint8_t want[CORE_SHA256_LEN];
    ingest__hmac_timestamped(secret, secret_len, sh.t, sh.t_len, body, body_len, want);
    bool match = false;
    for (size_t i = 0; i < sh.n_v1; i++) {
        uint8_t given[CORE_SHA256_LEN];
        if (sh.v1_len[i] == CORE_SHA256_HEX &&
            core_hex_decode(sh.v1[i], sh.v1_len[i], given, sizeof given) == 0)
            match |= core_ct_equal(given, want, sizeof want);
    }
    if (!match) {
        rc = err_set(err, ERR_AUTH, "signature does not match");
        goto out;
    }
    if ((rc = ingest__check_tolerance(ts, now_s, tolerance_s, &reason, err)) < 0)
        goto out;
    reason = INGEST_OK;
out:
    if (ret_reason)
        *ret_reason = reason;
    return rc;
}

/* ---- mapping ---------------------------------------------------------- */

/* A non-empty string at path under o, or NULL. */
static const char *str_at(const json_t *o, const char *path)
{
    const json_t *v = ingest__json_path(o, path);
    return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

/* An id that Stripe sends as a string, or as an object with an id when the
 * field was expanded. */
static const char *id_at(const json_t *o, const char *path)
{
    const json_t *v = ingest__json_path(o, path);
    if (json_is_object(v))
        return str_at(v, "id");
    return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

/* The first of paths (NULL-terminated) holding something that looks like an
 * email address; malformed ones are skipped rather than failing the event. */
static const char *email_at(const json_t *o, const char *const *paths)
{
    for (; *paths; paths++) {
        const json_t *v = ingest__json_path(o, *paths);
        if (json_is_string(v) && ingest__email_ok(json_string_value(v), json_string_length(v)))
            return json_string_value(v);
    }
    return NULL;
}

static const char *first_str(const json_t *o, const char *const *paths)
{
    for (; *paths; paths++) {
        const char *s = str_at(o, *paths);
        if (s)
            return s;
    }
    return NULL;
}

static void put_str(json_t *d, const char *key, const char *s)
{
    if (s)
        json_object_set_new(d, key, json_string(s));
}

static int put_time(json_t *d, const char *key, const json_t *v)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UNIX_MAX)
        return ERR_INVAL;
    char t[CORE_TIME_LEN + 1];
    core_time_format((int64_t)json_integer_value(v) * 1000, t);
    json_object_set_new(d, key, json_string(t));
    return 0;
}

/* customer {id?, email?, name?}: from the object's customer field (a string
 * id, or the expanded customer) and the given email and name. */
static json_t *customer_new(const json_t *obj, const char *field, const char *email,
                            const char *name)
{
    json_t *c = json_object();
    const json_t *cf = json_object_get(obj, field);
    put_str(c, "id", id_at(obj, field));
    if (json_is_object(cf)) {
        static const char *const cemail[] = { "email", NULL };
        if (!email)
            email = email_at(cf, cemail);
        if (!name)
            name = str_at(cf, "name");
    }
    put_str(c, "email", email);
    put_str(c, "name", name);
    return c;
}

static int need_int(json_t *d, const char *key, const json_t *obj, const char *path,
                    const char *fallback, Err *err)
{
    const json_t *v = ingest__json_path(obj, path);
    if (!json_is_integer(v) && fallback)
        v = ingest__json_path(obj, path = fallback);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return err_set(err, ERR_INVAL,
                       "body field 'data.object.%s' must be a non-negative integer (minor units)",
                       path);
    json_object_set_new(d, key, json_integer(json_integer_value(v)));
    return 0;
}

static int need_str(json_t *d, const char *key, const json_t *obj, const char *path,
                    const char *fallback, Err *err)
{
    const char *s = str_at(obj, path);
    if (!s && fallback)
        s = str_at(obj, path = fallback);
    if (!s)
        return err_set(err, ERR_INVAL, "body field 'data.object.%s' must be a non-empty string",
                       path);
    json_object_set_new(d, key, json_string(s));
    return 0;
}

static int need_currency(json_t *d, const json_t *obj, const char *path, const char *fallback,
                         Err *err)
{
    const char *s = str_at(obj, path);
    if (!s && fallback)
        s = str_at(obj, path = fallback);
    if (!s || strlen(s) != 3)
        return err_set(err, ERR_INVAL,
                       "body field 'data.object.%s' must be a three-letter currency code", path);
    char cur[4];
    for (int i = 0; i < 3; i++)
        cur[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    cur[3] = '\0';
    json_object_set_new(d, "currency", json_string(cur));
    return 0;
}

static int map_payment_intent(const json_t *o, json_t *d, Err *err)
{
    static const char *const emails[] = { "receipt_email", "latest_charge.billing_details.email",
                                          "charges.data.0.billing_details.email", NULL };
    static const char *const names[] = { "latest_charge.billing_details.name",
                                         "charges.data.0.billing_details.name", "shipping.name",
                                         NULL };
    int rc;
    if ((rc = need_int(d, "amount", o, "amount_received", "amount", err)) < 0 ||
        (rc = need_currency(d, o, "currency", NULL, err)) < 0 ||
        (rc = need_str(d, "provider_id", o, "id", NULL, err)) < 0)
        return rc;
    json_object_set_new(d, "customer",
                        customer_new(o, "customer", email_at(o, emails), first_str(o, names)));
    const json_t *desc = json_object_get(o, "description");
    if (json_is_string(desc))
        json_object_set(d, "description", (json_t *)desc);
    return 0;
}

static int map_charge_refunded(const json_t *o, json_t *d, Err *err)
{
    static const char *const emails[] = { "billing_details.email", "receipt_email", NULL };
    int rc;
    if ((rc = need_int(d, "amount", o, "amount_refunded", NULL, err)) < 0 ||
        (rc = need_currency(d, o, "currency", NULL, err)) < 0 ||
        (rc = need_str(d, "charge_id", o, "id", NULL, err)) < 0)
        return rc;
    const char *pi = id_at(o, "payment_intent");
    json_object_set_new(d, "provider_id", json_string(pi ? pi : str_at(o, "id")));
    json_object_set_new(d, "customer", customer_new(o, "customer", email_at(o, emails),
                                                    str_at(o, "billing_details.name")));
    const json_t *desc = json_object_get(o, "description");
    if (json_is_string(desc))
        json_object_set(d, "description", (json_t *)desc);
    return 0;
}

static int map_invoice(const json_t *o, json_t *d, bool paid, Err *err)
{
    static const char *const emails[] = { "customer_email", NULL };
    int rc;
    if ((rc = need_int(d, "amount", o, paid ? "amount_paid" : "amount_due", NULL, err)) < 0 ||
        (rc = need_currency(d, o, "currency", NULL, err)) < 0 ||
        (rc = need_str(d, "provider_id", o, "id", NULL, err)) < 0)
        return rc;
    json_object_set_new(d, "customer", customer_new(o, "customer", email_at(o, emails),
                                                    str_at(o, "customer_name")));
    const json_t *desc = json_object_get(o, "description");
    if (json_is_string(desc))
        json_object_set(d, "description", (json_t *)desc);
    put_str(d, "subscription", id_at(o, "subscription"));
    put_str(d, "number", str_at(o, "number"));
    return 0;
}

static int map_subscription(const json_t *o, json_t *d, Err *err)
{
    int rc;
    if ((rc = need_str(d, "plan", o, "items.data.0.price.id", "plan.id", err)) < 0 ||
        (rc = need_int(d, "amount", o, "items.data.0.price.unit_amount", "plan.amount", err)) <
            0 ||
        (rc = need_currency(d, o, "currency", "items.data.0.price.currency", err)) < 0 ||
        (rc = need_str(d, "interval", o, "items.data.0.price.recurring.interval",
                       "plan.interval", err)) < 0 ||
        (rc = need_str(d, "status", o, "status", NULL, err)) < 0 ||
        (rc = need_str(d, "provider_id", o, "id", NULL, err)) < 0)
        return rc;
    const char *end_path = "current_period_end";
    const json_t *end = json_object_get(o, end_path);
    if (!json_is_integer(end))
        end = ingest__json_path(o, end_path = "items.data.0.current_period_end");
    if (put_time(d, "current_period_end", end) < 0)
        return err_set(err, ERR_INVAL, "body field 'data.object.%s' must be Unix seconds",
                       end_path);
    const json_t *cancel_at = json_object_get(o, "cancel_at");
    if (cancel_at && !json_is_null(cancel_at) && put_time(d, "cancel_at", cancel_at) < 0)
        return err_set(err, ERR_INVAL, "body field 'data.object.cancel_at' must be Unix seconds");
    const json_t *v = json_object_get(o, "cancel_at_period_end");
    if (json_is_boolean(v))
        json_object_set(d, "cancel_at_period_end", (json_t *)v);
    v = ingest__json_path(o, "items.data.0.quantity");
    if (json_is_integer(v))
        json_object_set(d, "quantity", (json_t *)v);
    json_object_set_new(d, "customer", customer_new(o, "customer", NULL, NULL));
    return 0;
}

static int map_checkout(const json_t *o, json_t *d, Err *err)
{
    static const char *const emails[] = { "customer_details.email", "customer_email", NULL };
    int rc;
    if ((rc = need_str(d, "provider_id", o, "id", NULL, err)) < 0)
        return rc;
    json_object_set_new(d, "customer", customer_new(o, "customer", email_at(o, emails),
                                                    str_at(o, "customer_details.name")));
    const json_t *v = json_object_get(o, "amount_total");
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        json_object_set(d, "amount_total", (json_t *)v);
    const char *cur = str_at(o, "currency");
    if (cur && (rc = need_currency(d, o, "currency", NULL, err)) < 0)
        return rc;
    put_str(d, "mode", str_at(o, "mode"));
    put_str(d, "payment_status", str_at(o, "payment_status"));
    put_str(d, "payment_intent", id_at(o, "payment_intent"));
    put_str(d, "subscription", id_at(o, "subscription"));
    return 0;
}

typedef enum MapKind { M_PI, M_REFUND, M_INV_PAID, M_INV_FAILED, M_SUB, M_CHECKOUT } MapKind;

static const struct {
    const char *stripe_type, *type;
    MapKind kind;
} mappings[] = {
    { "payment_intent.succeeded", "payment.succeeded", M_PI },
    { "charge.refunded", "payment.refunded", M_REFUND },
    { "invoice.paid", "invoice.paid", M_INV_PAID },
    { "invoice.payment_failed", "invoice.payment_failed", M_INV_FAILED },
    { "customer.subscription.created", "subscription.created", M_SUB },
    { "customer.subscription.updated", "subscription.updated", M_SUB },
    { "customer.subscription.deleted", "subscription.canceled", M_SUB },
    { "checkout.session.completed", "checkout.completed", M_CHECKOUT },
};

static int map(MapKind kind, const json_t *o, json_t *d, Err *err)
{
    switch (kind) {
    case M_PI: return map_payment_intent(o, d, err);
    case M_REFUND: return map_charge_refunded(o, d, err);
    case M_INV_PAID: return map_invoice(o, d, true, err);
    case M_INV_FAILED: return map_invoice(o, d, false, err);
    case M_SUB: return map_subscription(o, d, err);
    case M_CHECKOUT: return map_checkout(o, d, err);
    }
    return ERR_INTERNAL;
}

static bool stripe_id_ok(const char *s, size_t len)
{
    if (len == 0 || len > STRIPE_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

int ingest_stripe(const IngestRequest *req, Event **ret, IngestReason *ret_reason, Err *err)
{
    const ConnectorConfig *c = req->conn;
    IngestReason reason = INGEST_BAD_BODY;
    json_t *body = NULL, *data = NULL;
    char *type = NULL, *key = NULL;
    int rc;

    const char *hdr = req->header ? req->header(req->header_ctx, STRIPE_HEADER) : NULL;
    if ((rc = ingest_stripe_verify(hdr, req->secret, req->secret_len, req->body, req->body_len,
                                   req->now_s, c->tolerance_s, &reason, err)) < 0)
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
    const json_t *id = json_object_get(body, "id"), *st = json_object_get(body, "type");
    const json_t *obj = ingest__json_path(body, "data.object");
    if (!json_is_string(id) || !stripe_id_ok(json_string_value(id), json_string_length(id))) {
        rc = err_set(err, ERR_INVAL, "body field 'id' must be a Stripe event id (1-%d printable "
                     "characters)", STRIPE_ID_MAX);
        goto out;
    }
    if (!json_is_string(st) || json_string_length(st) == 0 ||
        json_string_length(st) > STRIPE_TYPE_MAX) {
        rc = err_set(err, ERR_INVAL, "body field 'type' must be a Stripe event type");
        goto out;
    }
    if (!obj) {
        rc = err_set(err, ERR_INVAL, "body field 'data.object' is missing");
        goto out;
    }
    if (!json_is_object(obj)) {
        rc = err_set(err, ERR_INVAL, "body field 'data.object' must be an object, not %s",
                     core_json_type_name(obj));
        goto out;
    }
    const char *evt_id = json_string_value(id), *stype = json_string_value(st);
    char occurred[CORE_TIME_LEN + 1];
    const json_t *created = json_object_get(body, "created");
    bool has_created = json_is_integer(created) && json_integer_value(created) >= 0 &&
                       json_integer_value(created) <= UNIX_MAX;
    if (has_created)
        core_time_format((int64_t)json_integer_value(created) * 1000, occurred);

    size_t m = 0, n_map = sizeof mappings / sizeof mappings[0];
    while (m < n_map && strcmp(mappings[m].stripe_type, stype))
        m++;
    if (m < n_map) {
        data = json_object();
        if ((rc = map(mappings[m].kind, obj, data, err)) < 0)
            goto wrap;
        json_object_set_new(data, "stripe_event_id", json_string(evt_id));
        type = xstrdup(mappings[m].type);
    } else {
        size_t n = strlen("stripe.") + strlen(stype) + 1;
        type = xmalloc(n);
        snprintf(type, n, "stripe.%s", stype);
        if (!ledger_type_valid(type, strlen(type))) {
            rc = err_set(err, ERR_INVAL, "body field 'type': '%.64s' cannot be named as an event "
                         "type", stype);
            goto out;
        }
        data = json_incref((json_t *)obj);
    }
    if (m < n_map && mappings[m].kind == M_PI) {
        const char *pi = json_string_value(json_object_get(data, "provider_id"));
        size_t n = strlen("stripe:pi:") + strlen(pi) + 1;
        if (strlen(pi) > STRIPE_ID_MAX) {
            rc = err_set(err, ERR_INVAL, "body field 'data.object.id' is longer than %d bytes",
                         STRIPE_ID_MAX);
            goto wrap;
        }
        key = xmalloc(n);
        snprintf(key, n, "stripe:pi:%s", pi);
    } else {
        size_t n = strlen("stripe:evt:") + strlen(evt_id) + 1;
        key = xmalloc(n);
        snprintf(key, n, "stripe:evt:%s", evt_id);
    }
    rc = ingest__event_build(type, c->source ? c->source : c->name, c->consent, key,
                             has_created ? occurred : NULL, data, req->limits, ret, err);
    if (rc == 0) {
        reason = INGEST_OK;
        goto out;
    }
wrap:
    err_wrap(err, "stripe event %s (%s)", evt_id, stype);
out:
    json_decref(body);
    json_decref(data);
    free(type);
    free(key);
    if (rc == ERR_CONFIG)
        reason = INGEST_OK; /* the connector's fault, not the request's */
    if (ret_reason)
        *ret_reason = reason;
    return rc;
}
