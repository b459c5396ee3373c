/* Unit tests of the push connectors: webhook and Stripe signatures (with
 * vectors computed outside the code under test: hard-coded from the openssl
 * CLI, or with OpenSSL's HMAC() directly), the Stripe mappings, form events
 * and the content-addressed file store. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <dirent.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/json.h"
#include "helpers.h"
#include "ingest/ingest.h"

/* ---- fixtures --------------------------------------------------------- */

#define T0 1700000000LL

/* Hard-coded vectors, computed with:
 *   printf '%s' "1700000000.$BODY" | openssl dgst -sha256 -hmac whsec_test_secret
 *   printf '%s' "$BODY" | openssl dgst -sha256 -hmac hook-secret [-binary | base64]
 *   printf '%s' "1700000000.$BODY" | openssl dgst -sha256 -hmac hook-secret */
static const char VEC_BODY[] = "{\"id\":\"evt_1\",\"type\":\"ping\",\"data\":{\"object\":{\"id\":\"x\"}}}";
static const char VEC_STRIPE[] = "99a8371490e73baaf493b3d9987c7705fc82e889b51bed3ea1817ffc11b07cf1";
static const char VEC_HOOK_HEX[] = "63c6ab7503ca6640fb8dc8aa48e46b0fd3ba6fb9f65ce094e7fefd34445e48a0";
static const char VEC_HOOK_B64[] = "Y8ardQPKZkD7jciqSORrD9O6b7n2XOCU5/79NEReSKA=";
static const char VEC_HOOK_TS[] = "ac00e8153bf384a3f874735f1614e776ee5deb7755e5d9c450f0534b3ca86a21";

#define STRIPE_SECRET "whsec_test_secret"
#define HOOK_SECRET "hook-secret"

/* HMAC-SHA256 in hex, straight from OpenSSL. */
static void hmac_hex(const char *secret, const char *text, size_t len, char out[65])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    cr_assert_not_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)text,
                            len, mac, &n));
    cr_assert_eq(n, 32);
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

/* The Stripe v1 signature of body at t, from OpenSSL. */
static void stripe_sig(const char *secret, long long t, const char *body, char out[65])
{
    size_t n = strlen(body) + 32;
    char *text = malloc(n);
    int k = snprintf(text, n, "%lld.%s", t, body);
    hmac_hex(secret, text, (size_t)k, out);
    free(text);
}

static void sha256_hex(const char *s, char out[65])
{
    core_sha256_hex(s, strlen(s), out);
}

/* Headers of a fake request. */
typedef struct Headers {
    const char *name[6], *value[6];
    int n;
} Headers;

static const char *header_fn(void *ctx, const char *name)
{
    Headers *h = ctx;
    for (int i = 0; i < h->n; i++)
        if (!strcasecmp(h->name[i], name))
            return h->value[i];
    return NULL;
}

static void hset(Headers *h, const char *name, const char *value)
{
    h->name[h->n] = name;
    h->value[h->n++] = value;
}

static const EventLimits limits = { .max_data_bytes = 64 * 1024 };

static IngestRequest request(const ConnectorConfig *c, const char *secret, Headers *h,
                             const char *body, long long now)
{
    return (IngestRequest){ .conn = c,
                            .secret = secret,
                            .secret_len = secret ? strlen(secret) : 0,
                            .header = header_fn,
                            .header_ctx = h,
                            .body = body,
                            .body_len = strlen(body),
                            .now_s = now,
                            .limits = &limits };
}

static ConnectorConfig stripe_conn(void)
{
    return (ConnectorConfig){ .name = "stripe",
                              .kind = CONNECTOR_STRIPE,
                              .source = "stripe",
                              .consent = 1,
                              .tolerance_s = 300 };
}

static json_t *event_data(const Event *ev)
{
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    cr_assert_not_null(d, "event data is not JSON: %s", ev->data);
    return d;
}

static const char *jstr(const json_t *d, const char *a, const char *b)
{
    const json_t *v = json_object_get(d, a);
    if (b)
        v = json_object_get(v, b);
    return json_string_value(v);
}

static long long jint(const json_t *d, const char *key)
{
    const json_t *v = json_object_get(d, key);
    cr_assert(json_is_integer(v), "data.%s is not an integer", key);
    return (long long)json_integer_value(v);
}

/* The stored form of an outside idempotency key. */
static void key_hash(const char *key, char out[65])
{
    sha256_hex(key, out);
}

/* ---- Stripe signatures ------------------------------------------------ */

static int sverify(const char *header, const char *secret, const char *body, long long now,
                   IngestReason *r, Err *e)
{
    return ingest_stripe_verify(header, secret, strlen(secret), body, strlen(body), now, 300, r,
                                e);
}

Test(stripe_sig, hard_coded_vector_is_accepted)
{
    char h[160];
    snprintf(h, sizeof h, "t=%lld,v1=%s", T0, VEC_STRIPE);
    IngestReason r = INGEST_BAD_BODY;
    Err e = { 0 };
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r, INGEST_OK);
}

Test(stripe_sig, openssl_computed_vector_is_accepted_and_v0_ignored)
{
    const char *body = "{\"id\":\"evt_9\",\"object\":\"event\"}";
    char sig[65], h[300];
    stripe_sig(STRIPE_SECRET, T0, body, sig);
    snprintf(h, sizeof h, "t=%lld,v1=%s,v0=%s", T0, sig,
             "6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39");
    IngestReason r;
    Err e = { 0 };
    cr_assert_eq(sverify(h, STRIPE_SECRET, body, T0 + 5, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r, INGEST_OK);
}

Test(stripe_sig, wrong_secret_is_refused)
{
    char h[160];
    snprintf(h, sizeof h, "t=%lld,v1=%s", T0, VEC_STRIPE);
    IngestReason r;
    Err e = { 0 };
    cr_assert_eq(sverify(h, "whsec_other", VEC_BODY, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_BAD_SIGNATURE);
    cr_assert(strstr(e.msg, "signature does not match"), "%s", e.msg);
    cr_assert_str_eq(ingest_reason_name(r), "bad_signature");
}

Test(stripe_sig, body_changed_by_one_byte_is_refused)
{
    char h[160], body[sizeof VEC_BODY];
    snprintf(h, sizeof h, "t=%lld,v1=%s", T0, VEC_STRIPE);
    memcpy(body, VEC_BODY, sizeof body);
    body[10] ^= 1;
    IngestReason r;
    Err e = { 0 };
    cr_assert_eq(sverify(h, STRIPE_SECRET, body, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_BAD_SIGNATURE);
    /* a different timestamp with the same signature fails too */
    snprintf(h, sizeof h, "t=%lld,v1=%s", T0 + 1, VEC_STRIPE);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_BAD_SIGNATURE);
}

Test(stripe_sig, rotation_accepts_any_matching_v1)
{
    char old[65], h[300];
    stripe_sig("whsec_old_secret", T0, VEC_BODY, old);
    IngestReason r;
    Err e = { 0 };
    /* only the second matches */
    snprintf(h, sizeof h, "t=%lld,v1=%s,v1=%s", T0, old, VEC_STRIPE);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0, &r, &e), 0, "%s", e.msg);
    /* only the first matches */
    snprintf(h, sizeof h, "t=%lld,v1=%s,v1=%s", T0, VEC_STRIPE, old);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0, &r, &e), 0, "%s", e.msg);
    /* the old secret still verifies its own signature */
    cr_assert_eq(sverify(h, "whsec_old_secret", VEC_BODY, T0, &r, &e), 0, "%s", e.msg);
    /* neither matches */
    snprintf(h, sizeof h, "t=%lld,v1=%s,v1=%s", T0, old, old);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_BAD_SIGNATURE);
}

Test(stripe_sig, tolerance_edges)
{
    char h[160];
    snprintf(h, sizeof h, "t=%lld,v1=%s", T0, VEC_STRIPE);
    IngestReason r;
    Err e = { 0 };
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0 + 300, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0 - 300, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0 + 301, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_STALE);
    cr_assert(strstr(e.msg, "timestamp 1700000000 is 301 s away from now, tolerance 300 s"),
              "%s", e.msg);
    cr_assert_str_eq(ingest_reason_name(r), "stale");
    /* a timestamp from the future likewise */
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0 - 301, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_STALE);
    /* the connector's tolerance is used */
    cr_assert_eq(ingest_stripe_verify(h, STRIPE_SECRET, strlen(STRIPE_SECRET), VEC_BODY,
                                      strlen(VEC_BODY), T0 + 301, 600, &r, &e), 0, "%s", e.msg);
}

Test(stripe_sig, stale_and_forged_is_a_bad_signature)
{
    char h[160];
    snprintf(h, sizeof h, "t=%lld,v1=%s", T0, VEC_STRIPE);
    IngestReason r;
    Err e = { 0 };
    cr_assert_eq(sverify(h, "whsec_other", VEC_BODY, T0 + 10000, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_BAD_SIGNATURE);
}

Test(stripe_sig, header_parsing_is_robust)
{
    char h[300];
    IngestReason r;
    Err e = { 0 };
    snprintf(h, sizeof h, " t = %lld , foo=bar,, v1= %s ,v1=,junk", T0, VEC_STRIPE);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0, &r, &e), 0, "%s", e.msg);
    /* upper-case hex decodes to the same bytes */
    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (char)toupper((unsigned char)VEC_STRIPE[i]);
    snprintf(h, sizeof h, "t=%lld,v1=%s", T0, upper);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0, &r, &e), 0, "%s", e.msg);
}

Test(stripe_sig, malformed_headers_are_refused)
{
    char h[300];
    IngestReason r;
    Err e = { 0 };
    cr_assert_eq(sverify(NULL, STRIPE_SECRET, VEC_BODY, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_NO_SIGNATURE);
    cr_assert(strstr(e.msg, "missing header Stripe-Signature"), "%s", e.msg);

    snprintf(h, sizeof h, "v1=%s", VEC_STRIPE);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_BAD_SIGNATURE);
    cr_assert(strstr(e.msg, "no timestamp"), "%s", e.msg);

    snprintf(h, sizeof h, "t=%lld", T0);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_NO_SIGNATURE);
    cr_assert(strstr(e.msg, "no v1 signature"), "%s", e.msg);

    snprintf(h, sizeof h, "t=%lld,v0=%s", T0, VEC_STRIPE);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_NO_SIGNATURE);

    cr_assert_eq(sverify("garbage", STRIPE_SECRET, VEC_BODY, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(sverify("", STRIPE_SECRET, VEC_BODY, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(sverify(",,,=,", STRIPE_SECRET, VEC_BODY, T0, &r, &e), ERR_AUTH);

    snprintf(h, sizeof h, "t=17e8,v1=%s", VEC_STRIPE);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0, &r, &e), ERR_AUTH);
    cr_assert(strstr(e.msg, "t is not Unix seconds"), "%s", e.msg);

    snprintf(h, sizeof h, "t=-5,v1=%s", VEC_STRIPE);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0, &r, &e), ERR_AUTH);

    snprintf(h, sizeof h, "t=%lld,t=%lld,v1=%s", T0, T0, VEC_STRIPE);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0, &r, &e), ERR_AUTH);

    /* a truncated signature never matches */
    snprintf(h, sizeof h, "t=%lld,v1=%.63s", T0, VEC_STRIPE);
    cr_assert_eq(sverify(h, STRIPE_SECRET, VEC_BODY, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_BAD_SIGNATURE);

    /* an over-long header */
    char *big = malloc(10000);
    memset(big, 'a', 9999);
    big[9999] = '\0';
    cr_assert_eq(sverify(big, STRIPE_SECRET, VEC_BODY, T0, &r, &e), ERR_AUTH);
    free(big);
}

Test(stripe_sig, an_empty_secret_never_verifies)
{
    char h[160];
    snprintf(h, sizeof h, "t=%lld,v1=%s", T0, VEC_STRIPE);
    IngestReason r;
    Err e = { 0 };
    cr_assert_eq(ingest_stripe_verify(h, "", 0, VEC_BODY, strlen(VEC_BODY), T0, 300, &r, &e),
                 ERR_CONFIG);
    cr_assert_eq(ingest_stripe_verify(h, NULL, 0, VEC_BODY, strlen(VEC_BODY), T0, 300, &r, &e),
                 ERR_CONFIG);
}

Test(stripe_sig, the_connector_checks_header_and_age)
{
    ConnectorConfig c = stripe_conn();
    Headers hd = { 0 };
    IngestRequest req = request(&c, STRIPE_SECRET, &hd, VEC_BODY, T0);
    Event *ev = NULL;
    IngestReason r;
    Err e = { 0 };
    cr_assert_eq(ingest_stripe(&req, &ev, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_NO_SIGNATURE);
    char h[160];
    snprintf(h, sizeof h, "t=%lld,v1=%s", T0, VEC_STRIPE);
    hset(&hd, "Stripe-Signature", h);
    req.now_s = T0 + 301;
    cr_assert_eq(ingest_stripe(&req, &ev, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_STALE);
    c.tolerance_s = 400;
    cr_assert_eq(ingest_stripe(&req, &ev, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r, INGEST_OK);
    ledger_event_free(ev);
}

/* ---- webhook signatures ----------------------------------------------- */

static int wverify(const char *sig, const char *ts, long long now, IngestReason *r, Err *e)
{
    return ingest_webhook_verify(HOOK_SECRET, strlen(HOOK_SECRET), sig, ts, VEC_BODY,
                                 strlen(VEC_BODY), now, 300, r, e);
}

Test(webhook_sig, hex_base64_and_prefix_are_accepted)
{
    IngestReason r = INGEST_BAD_BODY;
    Err e = { 0 };
    char s[120];
    cr_assert_eq(wverify(VEC_HOOK_HEX, NULL, T0, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r, INGEST_OK);
    cr_assert_eq(wverify(VEC_HOOK_B64, NULL, T0, &r, &e), 0, "%s", e.msg);
    snprintf(s, sizeof s, "sha256=%s", VEC_HOOK_HEX);
    cr_assert_eq(wverify(s, NULL, T0, &r, &e), 0, "%s", e.msg);
    snprintf(s, sizeof s, "sha256=%s", VEC_HOOK_B64);
    cr_assert_eq(wverify(s, NULL, T0, &r, &e), 0, "%s", e.msg);
    /* base64 without padding, and URL-safe */
    snprintf(s, sizeof s, "%.43s", VEC_HOOK_B64);
    cr_assert_eq(wverify(s, NULL, T0, &r, &e), 0, "%s", e.msg);
    for (char *p = s; *p; p++)
        *p = *p == '/' ? '_' : *p == '+' ? '-' : *p;
    cr_assert_eq(wverify(s, NULL, T0, &r, &e), 0, "%s", e.msg);
}

Test(webhook_sig, wrong_or_malformed_signatures_are_refused)
{
    IngestReason r;
    Err e = { 0 };
    char s[120];
    snprintf(s, sizeof s, "%s", VEC_HOOK_HEX);
    s[0] = s[0] == '0' ? '1' : '0';
    cr_assert_eq(wverify(s, NULL, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_BAD_SIGNATURE);
    cr_assert(strstr(e.msg, "signature does not match"), "%s", e.msg);
    /* the Stripe signature of the same body is not a webhook signature */
    cr_assert_eq(wverify(VEC_STRIPE, NULL, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(wverify("", NULL, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(wverify("sha256=", NULL, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(wverify("not a signature", NULL, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_BAD_SIGNATURE);
    /* base64 with wrong padding or trailing bits */
    snprintf(s, sizeof s, "%.43s==", VEC_HOOK_B64);
    cr_assert_eq(wverify(s, NULL, T0, &r, &e), ERR_AUTH);
    snprintf(s, sizeof s, "%.42sB=", VEC_HOOK_B64);
    cr_assert_eq(wverify(s, NULL, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(wverify(NULL, NULL, T0, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_NO_SIGNATURE);
}

Test(webhook_sig, timestamp_is_signed_and_checked)
{
    IngestReason r;
    Err e = { 0 };
    cr_assert_eq(wverify(VEC_HOOK_TS, "1700000000", T0 + 300, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(wverify(VEC_HOOK_TS, "1700000000", T0 - 300, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(wverify(VEC_HOOK_TS, "1700000000", T0 + 301, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_STALE);
    cr_assert(strstr(e.msg, "301 s away from now, tolerance 300 s"), "%s", e.msg);
    cr_assert_eq(wverify(VEC_HOOK_TS, "1700000000", T0 - 301, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_STALE);
    /* the body signature alone does not cover a timestamp */
    cr_assert_eq(wverify(VEC_HOOK_HEX, "1700000000", T0, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_BAD_SIGNATURE);
    /* another timestamp changes the signed text */
    cr_assert_eq(wverify(VEC_HOOK_TS, "1700000001", T0, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_BAD_SIGNATURE);
    cr_assert_eq(wverify(VEC_HOOK_TS, "yesterday", T0, &r, &e), ERR_AUTH);
}

/* ---- webhook connector ------------------------------------------------ */

static ConnectorConfig hook_conn(void)
{
    return (ConnectorConfig){ .name = "site",
                              .kind = CONNECTOR_WEBHOOK,
                              .source = "site",
                              .signature_header = "X-Signature",
                              .tolerance_s = 300,
                              .type = "lead.created" };
}

static int hook(const ConnectorConfig *c, const char *body, const char *ts, Event **ev,
                IngestReason *r, Err *e)
{
    char sig[65];
    Headers h = { 0 };
    if (ts) {
        char text[4096];
        int k = snprintf(text, sizeof text, "%s.%s", ts, body);
        hmac_hex(HOOK_SECRET, text, (size_t)k, sig);
        hset(&h, "X-Timestamp", ts);
    } else {
        hmac_hex(HOOK_SECRET, body, strlen(body), sig);
    }
    hset(&h, "x-signature", sig);
    hset(&h, "X-Delivery", "dlv-42");
    IngestRequest req = request(c, HOOK_SECRET, &h, body, T0);
    return ingest_webhook(&req, ev, r, e);
}

Test(webhook, fixed_type_and_body_hash_key)
{
    ConnectorConfig c = hook_conn();
    c.consent = 1;
    c.source = "website";
    Event *ev = NULL;
    IngestReason r = INGEST_BAD_BODY;
    Err e = { 0 };
    const char *body = "{\"email\":\"a@example.com\",\"n\":1}";
    cr_assert_eq(hook(&c, body, NULL, &ev, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r, INGEST_OK);
    cr_assert_str_eq(ev->type, "lead.created");
    cr_assert_str_eq(ev->source, "website");
    cr_assert_str_eq(ev->consent, "transactional");
    cr_assert_str_eq(ev->data, "{\"email\":\"a@example.com\",\"n\":1}");
    char bh[65], key[200], want[65];
    sha256_hex(body, bh);
    snprintf(key, sizeof key, "webhook:site:%s", bh);
    key_hash(key, want);
    cr_assert_str_eq(ev->idempotency_key, want);
    ledger_event_free(ev);
}

Test(webhook, type_and_key_from_body_fields)
{
    ConnectorConfig c = hook_conn();
    c.type = NULL;
    c.type_field = "event.type";
    c.key_field = "event.id";
    Event *ev = NULL;
    IngestReason r;
    Err e = { 0 };
    char want[65];
    cr_assert_eq(hook(&c, "{\"event\":{\"type\":\"order.placed\",\"id\":\"o-7\"}}", NULL, &ev, &r,
                      &e), 0, "%s", e.msg);
    cr_assert_str_eq(ev->type, "order.placed");
    key_hash("webhook:site:o-7", want);
    cr_assert_str_eq(ev->idempotency_key, want);
    ledger_event_free(ev);

    /* an integer key */
    cr_assert_eq(hook(&c, "{\"event\":{\"type\":\"order.placed\",\"id\":9001}}", NULL, &ev, &r,
                      &e), 0, "%s", e.msg);
    key_hash("webhook:site:9001", want);
    cr_assert_str_eq(ev->idempotency_key, want);
    ledger_event_free(ev);

    /* an array index in the path */
    c.type_field = "events.1";
    c.key_field = NULL;
    cr_assert_eq(hook(&c, "{\"events\":[\"a.b\",\"c.d\"]}", NULL, &ev, &r, &e), 0, "%s", e.msg);
    cr_assert_str_eq(ev->type, "c.d");
    ledger_event_free(ev);
}

Test(webhook, key_from_header)
{
    ConnectorConfig c = hook_conn();
    c.key_header = "X-Delivery";
    Event *ev = NULL;
    IngestReason r;
    Err e = { 0 };
    char want[65];
    cr_assert_eq(hook(&c, "{}", NULL, &ev, &r, &e), 0, "%s", e.msg);
    key_hash("webhook:site:dlv-42", want);
    cr_assert_str_eq(ev->idempotency_key, want);
    ledger_event_free(ev);

    c.key_header = "X-Missing";
    ev = NULL;
    cr_assert_eq(hook(&c, "{}", NULL, &ev, &r, &e), ERR_INVAL);
    cr_assert_null(ev);
    cr_assert(strstr(e.msg, "missing header X-Missing"), "%s", e.msg);
}

Test(webhook, bad_bodies_are_400_naming_the_field)
{
    ConnectorConfig c = hook_conn();
    Event *ev = NULL;
    IngestReason r;
    Err e = { 0 };
    cr_assert_eq(hook(&c, "[1,2]", NULL, &ev, &r, &e), ERR_INVAL);
    cr_assert_eq(r, INGEST_BAD_BODY);
    cr_assert(strstr(e.msg, "body must be a JSON object, not array"), "%s", e.msg);
    cr_assert_str_eq(ingest_reason_name(r), "bad_body");
    cr_assert_eq(hook(&c, "{\"a\":", NULL, &ev, &r, &e), ERR_INVAL);
    cr_assert_eq(r, INGEST_BAD_BODY);
    cr_assert(strstr(e.msg, "body: malformed JSON"), "%s", e.msg);
    cr_assert_eq(hook(&c, "", NULL, &ev, &r, &e), ERR_INVAL);

    c.type = NULL;
    c.type_field = "kind";
    cr_assert_eq(hook(&c, "{\"kind\":\"Not A Type\"}", NULL, &ev, &r, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "body field 'kind'"), "%s", e.msg);
    cr_assert_eq(hook(&c, "{\"kind\":3}", NULL, &ev, &r, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "body field 'kind'"), "%s", e.msg);
    cr_assert_eq(hook(&c, "{\"other\":\"a.b\"}", NULL, &ev, &r, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "body field 'kind' (the event type) is missing"), "%s", e.msg);

    c.type_field = "t";
    c.key_field = "id";
    cr_assert_eq(hook(&c, "{\"t\":\"a.b\",\"id\":[1]}", NULL, &ev, &r, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "body field 'id'"), "%s", e.msg);
    cr_assert_eq(hook(&c, "{\"t\":\"a.b\",\"id\":\"\"}", NULL, &ev, &r, &e), ERR_INVAL);
    cr_assert_eq(hook(&c, "{\"t\":\"a.b\"}", NULL, &ev, &r, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "body field 'id' (the idempotency key) is missing"), "%s", e.msg);
    cr_assert_null(ev);
}

Test(webhook, signature_and_timestamp_headers_are_required)
{
    ConnectorConfig c = hook_conn();
    Event *ev = NULL;
    IngestReason r;
    Err e = { 0 };
    Headers h = { 0 };
    IngestRequest req = request(&c, HOOK_SECRET, &h, "{}", T0);
    cr_assert_eq(ingest_webhook(&req, &ev, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_NO_SIGNATURE);
    cr_assert(strstr(e.msg, "missing header X-Signature"), "%s", e.msg);
    cr_assert_str_eq(ingest_reason_name(r), "no_signature");

    hset(&h, "X-Signature", VEC_HOOK_HEX);
    cr_assert_eq(ingest_webhook(&req, &ev, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_BAD_SIGNATURE);

    c.timestamp_header = "X-Timestamp";
    cr_assert_eq(ingest_webhook(&req, &ev, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_NO_SIGNATURE);
    cr_assert(strstr(e.msg, "missing header X-Timestamp"), "%s", e.msg);

    /* a connector without a secret accepts nothing: a server-side error */
    c.timestamp_header = NULL;
    req.secret = NULL;
    req.secret_len = 0;
    cr_assert_eq(ingest_webhook(&req, &ev, &r, &e), ERR_CONFIG);
    cr_assert_eq(r, INGEST_OK, "not counted as the request's fault");
    cr_assert_null(ev);
}

Test(webhook, shared_types_from_the_body_are_validated)
{
    ConnectorConfig c = hook_conn();
    c.type = NULL;
    c.type_field = "type";
    Event *ev = NULL;
    IngestReason r;
    Err e = { 0 };
    cr_assert_eq(hook(&c, "{\"type\":\"payment.succeeded\",\"amount\":\"ten\"}", NULL, &ev, &r,
                      &e), ERR_INVAL);
    cr_assert_eq(r, INGEST_BAD_BODY);
    cr_assert(strstr(e.msg, "data.amount"), "%s", e.msg);
    cr_assert_null(ev);
}

Test(webhook, timestamped_requests_fresh_and_stale)
{
    ConnectorConfig c = hook_conn();
    c.timestamp_header = "X-Timestamp";
    Event *ev = NULL;
    IngestReason r;
    Err e = { 0 };
    cr_assert_eq(hook(&c, "{\"x\":1}", "1699999800", &ev, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r, INGEST_OK);
    ledger_event_free(ev);
    ev = NULL;
    cr_assert_eq(hook(&c, "{\"x\":1}", "1699999699", &ev, &r, &e), ERR_AUTH);
    cr_assert_eq(r, INGEST_STALE);
    cr_assert(strstr(e.msg, "timestamp 1699999699 is 301 s away from now, tolerance 300 s"), "%s",
              e.msg);
    cr_assert_null(ev);
}

/* ---- Stripe mappings -------------------------------------------------- */

/* Signs body as Stripe would and runs the connector. */
static int stripe(const char *body, Event **ev, Err *e)
{
    ConnectorConfig c = stripe_conn();
    char sig[65], h[200];
    stripe_sig(STRIPE_SECRET, T0, body, sig);
    snprintf(h, sizeof h, "t=%lld,v1=%s", T0, sig);
    Headers hd = { 0 };
    hset(&hd, "stripe-signature", h);
    IngestRequest req = request(&c, STRIPE_SECRET, &hd, body, T0 + 1);
    IngestReason r = INGEST_HONEYPOT;
    int rc = ingest_stripe(&req, ev, &r, e);
    cr_assert_eq(r, rc == 0 ? INGEST_OK : rc == ERR_AUTH ? r : INGEST_BAD_BODY);
    return rc;
}

static char *stripe_body(const char *id, const char *type, const char *object)
{
    char *b = malloc(8192);
    snprintf(b, 8192,
             "{\"id\":\"%s\",\"object\":\"event\",\"type\":\"%s\",\"created\":1700000000,"
             "\"livemode\":false,\"data\":{\"object\":%s}}",
             id, type, object);
    return b;
}

static const char PI[] =
    "{\"id\":\"pi_1\",\"object\":\"payment_intent\",\"amount\":2500,\"amount_received\":2000,"
    "\"currency\":\"eur\",\"customer\":\"cus_1\",\"receipt_email\":\"ann@example.com\","
    "\"description\":\"Consulting\",\"latest_charge\":\"ch_1\"}";

Test(stripe_map, payment_intent_succeeded)
{
    char *b = stripe_body("evt_a", "payment_intent.succeeded", PI);
    Event *ev = NULL;
    Err e = { 0 };
    cr_assert_eq(stripe(b, &ev, &e), 0, "%s", e.msg);
    cr_assert_str_eq(ev->type, "payment.succeeded");
    cr_assert_str_eq(ev->source, "stripe");
    cr_assert_str_eq(ev->consent, "transactional");
    cr_assert_str_eq(ev->occurred_at, "2023-11-14T22:13:20.000Z");
    json_t *d = event_data(ev);
    cr_assert_eq(jint(d, "amount"), 2000);
    cr_assert_str_eq(jstr(d, "currency", NULL), "eur");
    cr_assert_str_eq(jstr(d, "customer", "id"), "cus_1");
    cr_assert_str_eq(jstr(d, "customer", "email"), "ann@example.com");
    cr_assert_str_eq(jstr(d, "description", NULL), "Consulting");
    cr_assert_str_eq(jstr(d, "provider_id", NULL), "pi_1");
    cr_assert_str_eq(jstr(d, "stripe_event_id", NULL), "evt_a");
    char want[65];
    key_hash("stripe:pi:pi_1", want);
    cr_assert_str_eq(ev->idempotency_key, want);
    json_decref(d);

    /* another Stripe event about the same payment gets the same key */
    Event *ev2 = NULL;
    char *b2 = stripe_body("evt_b", "payment_intent.succeeded", PI);
    cr_assert_eq(stripe(b2, &ev2, &e), 0, "%s", e.msg);
    cr_assert_str_eq(ev2->idempotency_key, ev->idempotency_key);
    ledger_event_free(ev);
    ledger_event_free(ev2);
    free(b);
    free(b2);
}

Test(stripe_map, payment_intent_fallbacks_and_malformed_email)
{
    const char *obj = "{\"id\":\"pi_2\",\"amount\":700,\"currency\":\"USD\",\"customer\":null,"
                      "\"receipt_email\":\"not an email\",\"description\":null,"
                      "\"latest_charge\":{\"id\":\"ch_2\",\"billing_details\":"
                      "{\"email\":\"bob@example.org\",\"name\":\"Bob\"}}}";
    char *b = stripe_body("evt_c", "payment_intent.succeeded", obj);
    Event *ev = NULL;
    Err e = { 0 };
    cr_assert_eq(stripe(b, &ev, &e), 0, "%s", e.msg);
    json_t *d = event_data(ev);
    cr_assert_eq(jint(d, "amount"), 700);
    cr_assert_str_eq(jstr(d, "currency", NULL), "usd");
    cr_assert_str_eq(jstr(d, "customer", "email"), "bob@example.org");
    cr_assert_str_eq(jstr(d, "customer", "name"), "Bob");
    cr_assert_null(json_object_get(json_object_get(d, "customer"), "id"));
    cr_assert_null(json_object_get(d, "description"));
    json_decref(d);
    ledger_event_free(ev);
    free(b);

    /* only a malformed email: the event is kept without one */
    b = stripe_body("evt_d", "payment_intent.succeeded",
                    "{\"id\":\"pi_3\",\"amount\":1,\"currency\":\"eur\",\"receipt_email\":\"x@\"}");
    cr_assert_eq(stripe(b, &ev, &e), 0, "%s", e.msg);
    d = event_data(ev);
    cr_assert_null(json_object_get(json_object_get(d, "customer"), "email"));
    json_decref(d);
    ledger_event_free(ev);
    free(b);
}

Test(stripe_map, charge_refunded)
{
    const char *obj = "{\"id\":\"ch_1\",\"object\":\"charge\",\"amount\":2000,"
                      "\"amount_refunded\":500,\"currency\":\"eur\",\"customer\":\"cus_1\","
                      "\"payment_intent\":\"pi_1\",\"receipt_email\":\"r@example.com\","
                      "\"billing_details\":{\"email\":\"ann@example.com\",\"name\":\"Ann\"}}";
    char *b = stripe_body("evt_r", "charge.refunded", obj);
    Event *ev = NULL;
    Err e = { 0 };
    cr_assert_eq(stripe(b, &ev, &e), 0, "%s", e.msg);
    cr_assert_str_eq(ev->type, "payment.refunded");
    json_t *d = event_data(ev);
    cr_assert_eq(jint(d, "amount"), 500);
    cr_assert_str_eq(jstr(d, "currency", NULL), "eur");
    cr_assert_str_eq(jstr(d, "customer", "email"), "ann@example.com");
    cr_assert_str_eq(jstr(d, "customer", "name"), "Ann");
    cr_assert_str_eq(jstr(d, "provider_id", NULL), "pi_1");
    char want[65];
    key_hash("stripe:evt:evt_r", want);
    cr_assert_str_eq(ev->idempotency_key, want);
    json_decref(d);
    ledger_event_free(ev);
    free(b);

    /* without a payment intent the charge is the provider id */
    b = stripe_body("evt_r2", "charge.refunded",
                    "{\"id\":\"ch_9\",\"amount_refunded\":5,\"currency\":\"gbp\","
                    "\"payment_intent\":null,\"receipt_email\":\"r@example.com\"}");
    cr_assert_eq(stripe(b, &ev, &e), 0, "%s", e.msg);
    d = event_data(ev);
    cr_assert_str_eq(jstr(d, "provider_id", NULL), "ch_9");
    cr_assert_str_eq(jstr(d, "customer", "email"), "r@example.com");
    json_decref(d);
    ledger_event_free(ev);
    free(b);
}

Test(stripe_map, invoices)
{
    const char *obj = "{\"id\":\"in_1\",\"object\":\"invoice\",\"amount_due\":4900,"
                      "\"amount_paid\":4800,\"currency\":\"eur\",\"customer\":\"cus_2\","
                      "\"customer_email\":\"cara@example.com\",\"customer_name\":\"Cara\","
                      "\"subscription\":\"sub_1\",\"description\":\"Pro plan\"}";
    const struct {
        const char *stripe, *type;
        long long amount;
    } cases[] = { { "invoice.paid", "invoice.paid", 4800 },
                  { "invoice.payment_failed", "invoice.payment_failed", 4900 } };
    for (size_t i = 0; i < 2; i++) {
        char *b = stripe_body("evt_i", cases[i].stripe, obj);
        Event *ev = NULL;
        Err e = { 0 };
        cr_assert_eq(stripe(b, &ev, &e), 0, "%s", e.msg);
        cr_assert_str_eq(ev->type, cases[i].type);
        json_t *d = event_data(ev);
        cr_assert_eq(jint(d, "amount"), cases[i].amount);
        cr_assert_str_eq(jstr(d, "currency", NULL), "eur");
        cr_assert_str_eq(jstr(d, "customer", "id"), "cus_2");
        cr_assert_str_eq(jstr(d, "customer", "email"), "cara@example.com");
        cr_assert_str_eq(jstr(d, "customer", "name"), "Cara");
        cr_assert_str_eq(jstr(d, "provider_id", NULL), "in_1");
        cr_assert_str_eq(jstr(d, "description", NULL), "Pro plan");
        char want[65];
        key_hash("stripe:evt:evt_i", want);
        cr_assert_str_eq(ev->idempotency_key, want);
        json_decref(d);
        ledger_event_free(ev);
        free(b);
    }
}

Test(stripe_map, subscriptions)
{
    /* the current API: period end on the item, price on the item */
    const char *items = "{\"id\":\"sub_1\",\"object\":\"subscription\",\"customer\":\"cus_3\","
                        "\"currency\":\"eur\",\"status\":\"active\",\"cancel_at\":null,"
                        "\"items\":{\"data\":[{\"current_period_end\":1702592000,\"price\":"
                        "{\"id\":\"price_pro\",\"unit_amount\":1500,\"currency\":\"eur\","
                        "\"recurring\":{\"interval\":\"month\"}}}]}}";
    /* the older API: plan and current_period_end on the subscription */
    const char *plan = "{\"id\":\"sub_2\",\"customer\":\"cus_3\",\"currency\":\"eur\","
                       "\"status\":\"canceled\",\"current_period_end\":1702592000,"
                       "\"cancel_at\":1702592000,\"items\":{\"data\":[]},"
                       "\"plan\":{\"id\":\"plan_basic\",\"amount\":900,\"interval\":\"year\"}}";
    const struct {
        const char *stripe, *type, *obj, *plan, *interval, *status;
        long long amount;
        bool cancel;
    } cases[] = {
        { "customer.subscription.created", "subscription.created", items, "price_pro", "month",
          "active", 1500, false },
        { "customer.subscription.updated", "subscription.updated", items, "price_pro", "month",
          "active", 1500, false },
        { "customer.subscription.deleted", "subscription.canceled", plan, "plan_basic", "year",
          "canceled", 900, true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *b = stripe_body("evt_s", cases[i].stripe, cases[i].obj);
        Event *ev = NULL;
        Err e = { 0 };
        cr_assert_eq(stripe(b, &ev, &e), 0, "%s: %s", cases[i].stripe, e.msg);
        cr_assert_str_eq(ev->type, cases[i].type);
        json_t *d = event_data(ev);
        cr_assert_str_eq(jstr(d, "customer", "id"), "cus_3");
        cr_assert_str_eq(jstr(d, "plan", NULL), cases[i].plan);
        cr_assert_eq(jint(d, "amount"), cases[i].amount);
        cr_assert_str_eq(jstr(d, "currency", NULL), "eur");
        cr_assert_str_eq(jstr(d, "interval", NULL), cases[i].interval);
        cr_assert_str_eq(jstr(d, "status", NULL), cases[i].status);
        cr_assert_str_eq(jstr(d, "current_period_end", NULL), "2023-12-14T22:13:20.000Z");
        if (cases[i].cancel)
            cr_assert_str_eq(jstr(d, "cancel_at", NULL), "2023-12-14T22:13:20.000Z");
        else
            cr_assert_null(json_object_get(d, "cancel_at"));
        json_decref(d);
        ledger_event_free(ev);
        free(b);
    }
}

Test(stripe_map, checkout_session_completed)
{
    const char *obj = "{\"id\":\"cs_1\",\"object\":\"checkout.session\",\"customer\":\"cus_4\","
                      "\"customer_details\":{\"email\":\"dan@example.com\",\"name\":\"Dan\"},"
                      "\"amount_total\":9900,\"currency\":\"eur\",\"mode\":\"subscription\","
                      "\"payment_intent\":null,\"subscription\":\"sub_9\"}";
    char *b = stripe_body("evt_k", "checkout.session.completed", obj);
    Event *ev = NULL;
    Err e = { 0 };
    cr_assert_eq(stripe(b, &ev, &e), 0, "%s", e.msg);
    cr_assert_str_eq(ev->type, "checkout.completed");
    json_t *d = event_data(ev);
    cr_assert_str_eq(jstr(d, "customer", "id"), "cus_4");
    cr_assert_str_eq(jstr(d, "customer", "email"), "dan@example.com");
    cr_assert_str_eq(jstr(d, "customer", "name"), "Dan");
    cr_assert_eq(jint(d, "amount_total"), 9900);
    cr_assert_str_eq(jstr(d, "currency", NULL), "eur");
    cr_assert_str_eq(jstr(d, "mode", NULL), "subscription");
    cr_assert_str_eq(jstr(d, "subscription", NULL), "sub_9");
    cr_assert_null(json_object_get(d, "payment_intent"));
    cr_assert_null(json_object_get(d, "amount"), "a checkout is not a second payment");
    cr_assert_str_eq(jstr(d, "provider_id", NULL), "cs_1");
    char want[65];
    key_hash("stripe:evt:evt_k", want);
    cr_assert_str_eq(ev->idempotency_key, want);
    json_decref(d);
    ledger_event_free(ev);
    free(b);
}

Test(stripe_map, unknown_types_are_kept_as_stripe_type)
{
    const char *obj = "{\"id\":\"cus_5\",\"object\":\"customer\",\"email\":\"eve@example.com\"}";
    char *b = stripe_body("evt_u", "customer.created", obj);
    Event *ev = NULL;
    Err e = { 0 };
    cr_assert_eq(stripe(b, &ev, &e), 0, "%s", e.msg);
    cr_assert_str_eq(ev->type, "stripe.customer.created");
    cr_assert_str_eq(ev->data,
                     "{\"email\":\"eve@example.com\",\"id\":\"cus_5\",\"object\":\"customer\"}");
    char want[65];
    key_hash("stripe:evt:evt_u", want);
    cr_assert_str_eq(ev->idempotency_key, want);
    ledger_event_free(ev);
    free(b);

    /* the hard-coded vector's body: a one-word type */
    cr_assert_eq(stripe(VEC_BODY, &ev, &e), 0, "%s", e.msg);
    cr_assert_str_eq(ev->type, "stripe.ping");
    ledger_event_free(ev);
}

Test(stripe_map, bad_bodies_are_400_naming_the_field)
{
    Event *ev = NULL;
    Err e = { 0 };
    char *b = stripe_body("evt_x", "Not A Type", "{}");
    cr_assert_eq(stripe(b, &ev, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "body field 'type'"), "%s", e.msg);
    free(b);

    b = stripe_body("evt_x", "payment_intent.succeeded", "{\"id\":\"pi_1\",\"currency\":\"eur\"}");
    cr_assert_eq(stripe(b, &ev, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "stripe event evt_x (payment_intent.succeeded)"), "%s", e.msg);
    cr_assert(strstr(e.msg, "'data.object.amount'"), "%s", e.msg);
    free(b);

    b = stripe_body("evt_x", "invoice.paid",
                    "{\"id\":\"in_1\",\"amount_paid\":1,\"currency\":\"euro\"}");
    cr_assert_eq(stripe(b, &ev, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "'data.object.currency'"), "%s", e.msg);
    free(b);

    b = stripe_body("evt_x", "customer.subscription.created",
                    "{\"id\":\"sub_1\",\"currency\":\"eur\",\"status\":\"active\"}");
    cr_assert_eq(stripe(b, &ev, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "'data.object.plan.id'"), "%s", e.msg);
    free(b);

    cr_assert_eq(stripe("{\"id\":\"evt_x\",\"type\":\"a.b\"}", &ev, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "'data.object' is missing"), "%s", e.msg);
    cr_assert_eq(stripe("{\"type\":\"a.b\",\"data\":{\"object\":{}}}", &ev, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "body field 'id'"), "%s", e.msg);
    cr_assert_eq(stripe("[]", &ev, &e), ERR_INVAL);
    cr_assert_eq(stripe("nope", &ev, &e), ERR_INVAL);
    cr_assert_null(ev);
}

/* ---- forms ------------------------------------------------------------ */

static ConnectorConfig form_conn(void)
{
    return (ConnectorConfig){ .name = "contact",
                              .kind = CONNECTOR_FORM,
                              .source = "contact",
                              .form = "Contact us",
                              .honeypot = "website",
                              .consent_field = "newsletter" };
}

static int form(const ConnectorConfig *c, const char *fields_json, const IngestFormFile *files,
                size_t n, Event **ev, bool *hp, Err *e)
{
    json_t *f = json_loads(fields_json, 0, NULL);
    cr_assert_not_null(f, "bad test JSON %s", fields_json);
    int rc = ingest_form_event(c, f, files, n, &limits, ev, hp, e);
    json_decref(f);
    return rc;
}

Test(form, fields_and_repeated_fields)
{
    ConnectorConfig c = form_conn();
    Event *ev = NULL;
    bool hp = true;
    Err e = { 0 };
    cr_assert_eq(form(&c, "{\"email\":\"ann@example.com\",\"topic\":[\"a\",\"b\"],\"website\":\"\"}",
                      NULL, 0, &ev, &hp, &e), 0, "%s", e.msg);
    cr_assert_not(hp);
    cr_assert_str_eq(ev->type, "form.submitted");
    cr_assert_str_eq(ev->source, "contact");
    cr_assert_str_eq(ev->consent, "none");
    cr_assert_str_eq(ev->data, "{\"fields\":{\"email\":\"ann@example.com\",\"topic\":[\"a\",\"b\"]},"
                               "\"files\":[],\"form\":\"Contact us\"}");
    char dh[65], key[200], want[65];
    sha256_hex(ev->data, dh);
    snprintf(key, sizeof key, "form:contact:%s", dh);
    key_hash(key, want);
    cr_assert_str_eq(ev->idempotency_key, want);
    ledger_event_free(ev);
}

Test(form, honeypot_drops_the_submission)
{
    ConnectorConfig c = form_conn();
    Event *ev = (Event *)1;
    bool hp = false;
    Err e = { 0 };
    cr_assert_eq(form(&c, "{\"email\":\"bot@example.com\",\"website\":\"http://spam\"}", NULL, 0,
                      &ev, &hp, &e), 0, "%s", e.msg);
    cr_assert(hp);
    cr_assert_null(ev);
    hp = false;
    cr_assert_eq(form(&c, "{\"website\":[\"\",\"x\"]}", NULL, 0, &ev, &hp, &e), 0, "%s", e.msg);
    cr_assert(hp);
    cr_assert_null(ev);
}

Test(form, consent_field)
{
    ConnectorConfig c = form_conn();
    c.consent = 1;
    const struct {
        const char *fields, *consent;
    } cases[] = {
        { "{\"newsletter\":\"on\"}", "marketing" },
        { "{\"newsletter\":\"YES\"}", "marketing" },
        { "{\"newsletter\":\"True\"}", "marketing" },
        { "{\"newsletter\":\"1\"}", "marketing" },
        { "{\"newsletter\":[\"0\",\"on\"]}", "marketing" },
        { "{\"newsletter\":\"no\"}", "transactional" },
        { "{\"newsletter\":\"\"}", "transactional" },
        { "{\"newsletter\":\"onward\"}", "transactional" },
        { "{\"other\":\"on\"}", "transactional" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Event *ev = NULL;
        bool hp;
        Err e = { 0 };
        cr_assert_eq(form(&c, cases[i].fields, NULL, 0, &ev, &hp, &e), 0, "%s", e.msg);
        cr_assert_str_eq(ev->consent, cases[i].consent, "for %s", cases[i].fields);
        ledger_event_free(ev);
    }
}

Test(form, double_submission_has_the_same_key)
{
    ConnectorConfig c = form_conn();
    Event *a = NULL, *b = NULL, *d = NULL;
    bool hp;
    Err e = { 0 };
    cr_assert_eq(form(&c, "{\"b\":\"2\",\"a\":\"1\"}", NULL, 0, &a, &hp, &e), 0, "%s", e.msg);
    cr_assert_eq(form(&c, "{\"a\":\"1\",\"b\":\"2\",\"website\":\"\"}", NULL, 0, &b, &hp, &e), 0,
                 "%s", e.msg);
    cr_assert_eq(form(&c, "{\"a\":\"1\",\"b\":\"3\"}", NULL, 0, &d, &hp, &e), 0, "%s", e.msg);
    cr_assert_str_eq(a->idempotency_key, b->idempotency_key);
    cr_assert_str_neq(a->idempotency_key, d->idempotency_key);
    /* another connector with the same form data is another key */
    c.name = "other";
    Event *o = NULL;
    cr_assert_eq(form(&c, "{\"b\":\"2\",\"a\":\"1\"}", NULL, 0, &o, &hp, &e), 0, "%s", e.msg);
    cr_assert_str_neq(a->idempotency_key, o->idempotency_key);
    ledger_event_free(a);
    ledger_event_free(b);
    ledger_event_free(d);
    ledger_event_free(o);
}

Test(form, files_are_listed)
{
    ConnectorConfig c = form_conn();
    IngestFormFile f[2] = {
        { .field = "cv", .name = "cv.pdf", .type = "application/pdf", .size = 11,
          .sha256 = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9" },
        { .field = "photo", .name = "", .type = NULL, .size = 0,
          .sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    };
    Event *ev = NULL;
    bool hp;
    Err e = { 0 };
    cr_assert_eq(form(&c, "{\"name\":\"Ann\"}", f, 2, &ev, &hp, &e), 0, "%s", e.msg);
    json_t *d = event_data(ev);
    json_t *files = json_object_get(d, "files");
    cr_assert_eq(json_array_size(files), 2);
    json_t *f0 = json_array_get(files, 0), *f1 = json_array_get(files, 1);
    cr_assert_str_eq(jstr(f0, "field", NULL), "cv");
    cr_assert_str_eq(jstr(f0, "name", NULL), "cv.pdf");
    cr_assert_str_eq(jstr(f0, "type", NULL), "application/pdf");
    cr_assert_eq(jint(f0, "size"), 11);
    cr_assert_str_eq(jstr(f0, "sha256", NULL), f[0].sha256);
    cr_assert_str_eq(jstr(f1, "type", NULL), "application/octet-stream");
    json_decref(d);
    ledger_event_free(ev);

    /* a file listed without a sha256 is refused */
    f[1].sha256[0] = '\0';
    cr_assert_eq(form(&c, "{}", f, 2, &ev, &hp, &e), ERR_INVAL);
}

Test(form, bad_fields_are_refused)
{
    ConnectorConfig c = form_conn();
    Event *ev = NULL;
    bool hp;
    Err e = { 0 };
    cr_assert_eq(form(&c, "{\"n\":5}", NULL, 0, &ev, &hp, &e), ERR_INVAL);
    cr_assert(strstr(e.msg, "form field 'n'"), "%s", e.msg);
    cr_assert_eq(form(&c, "{\"n\":[\"a\",{}]}", NULL, 0, &ev, &hp, &e), ERR_INVAL);
    cr_assert_eq(form(&c, "[]", NULL, 0, &ev, &hp, &e), ERR_INVAL);
    cr_assert_null(ev);
    /* larger than the data limit */
    char *big = malloc(100 * 1024);
    memset(big, 'x', 100 * 1024 - 1);
    big[100 * 1024 - 1] = '\0';
    json_t *f = json_pack("{s:s}", "text", big);
    cr_assert_eq(ingest_form_event(&c, f, NULL, 0, &limits, &ev, &hp, &e), ERR_TOOBIG);
    json_decref(f);
    free(big);
}

/* ---- the file store --------------------------------------------------- */

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 4096);
    *len = fread(buf, 1, 4095, f);
    fclose(f);
    return buf;
}

Test(files, stores_by_content_hash)
{
    char *dir = test_tmpdir();
    IngestFile *f = NULL;
    Err e = { 0 };
    cr_assert_eq(ingest_file_begin(dir, 100, &f, &e), 0, "%s", e.msg);
    cr_assert_eq(ingest_file_write(f, "hello ", 6, &e), 0, "%s", e.msg);
    cr_assert_eq(ingest_file_write(f, "world", 5, &e), 0, "%s", e.msg);
    char sha[CORE_SHA256_HEX + 1];
    int64_t size = 0;
    cr_assert_eq(ingest_file_finish(f, sha, &size, &e), 0, "%s", e.msg);
    cr_assert_str_eq(sha, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
    cr_assert_eq(size, 11);

    char files[512], path[600];
    snprintf(files, sizeof files, "%s/files", dir);
    snprintf(path, sizeof path, "%s/%s", files, sha);
    size_t len;
    char *content = read_all(path, &len);
    cr_assert_not_null(content, "%s was not written", path);
    cr_assert_eq(len, 11);
    cr_assert_str_eq(content, "hello world");
    free(content);
    struct stat st;
    cr_assert_eq(stat(files, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700);
    cr_assert_eq(count_entries(files), 1);

    /* the same content again: still one file, no temporary left */
    cr_assert_eq(ingest_file_begin(dir, 100, &f, &e), 0, "%s", e.msg);
    cr_assert_eq(ingest_file_write(f, "hello world", 11, &e), 0, "%s", e.msg);
    cr_assert_eq(ingest_file_finish(f, sha, &size, &e), 0, "%s", e.msg);
    cr_assert_str_eq(sha, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
    cr_assert_eq(count_entries(files), 1);

    /* an empty file is a file */
    cr_assert_eq(ingest_file_begin(dir, 100, &f, &e), 0, "%s", e.msg);
    cr_assert_eq(ingest_file_finish(f, sha, &size, &e), 0, "%s", e.msg);
    cr_assert_str_eq(sha, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    cr_assert_eq(size, 0);
    cr_assert_eq(count_entries(files), 2);
    test_rmdir(dir);
}

Test(files, max_bytes_is_enforced)
{
    char *dir = test_tmpdir();
    IngestFile *f = NULL;
    Err e = { 0 };
    char files[512];
    snprintf(files, sizeof files, "%s/files", dir);
    cr_assert_eq(ingest_file_begin(dir, 10, &f, &e), 0, "%s", e.msg);
    cr_assert_eq(ingest_file_write(f, "0123456789", 10, &e), 0, "exactly the limit: %s", e.msg);
    cr_assert_eq(ingest_file_write(f, "x", 1, &e), ERR_TOOBIG);
    cr_assert(strstr(e.msg, "10 bytes"), "%s", e.msg);
    cr_assert_lt(ingest_file_write(f, "", 0, &e), 0, "a failed file stays failed");
    ingest_file_abort(f);
    cr_assert_eq(count_entries(files), 0);

    /* finish refuses a failed file, and cleans up */
    cr_assert_eq(ingest_file_begin(dir, 4, &f, &e), 0, "%s", e.msg);
    cr_assert_eq(ingest_file_write(f, "12345", 5, &e), ERR_TOOBIG);
    char sha[CORE_SHA256_HEX + 1] = "unchanged";
    int64_t size = -7;
    cr_assert_eq(ingest_file_finish(f, sha, &size, &e), ERR_TOOBIG);
    cr_assert_str_eq(sha, "unchanged");
    cr_assert_eq(size, -7);
    cr_assert_eq(count_entries(files), 0);
    test_rmdir(dir);
}

Test(files, abort_removes_the_temporary_file)
{
    char *dir = test_tmpdir();
    IngestFile *f = NULL;
    Err e = { 0 };
    char files[512];
    snprintf(files, sizeof files, "%s/files", dir);
    cr_assert_eq(ingest_file_begin(dir, 100, &f, &e), 0, "%s", e.msg);
    cr_assert_eq(ingest_file_write(f, "partial", 7, &e), 0, "%s", e.msg);
    cr_assert_eq(count_entries(files), 1, "the temporary file is in the store's directory");
    ingest_file_abort(f);
    cr_assert_eq(count_entries(files), 0);
    ingest_file_abort(NULL);
    test_rmdir(dir);
}

Test(files, unwritable_data_dir_is_an_error)
{
    IngestFile *f = (IngestFile *)1;
    Err e = { 0 };
    cr_assert_eq(ingest_file_begin("/nonexistent/bureau-data", 100, &f, &e), ERR_IO);
    cr_assert(strstr(e.msg, "/nonexistent/bureau-data/files"), "%s", e.msg);
    cr_assert_eq(f, (IngestFile *)1);
}
