/* Helpers shared by the push connectors (webhook.c, stripe.c, form.c); not
 * part of the ingest interface. */
#ifndef BUREAU_INGEST_INGEST_INT_H
#define BUREAU_INGEST_INGEST_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "ingest/ingest.h"

/* Longest idempotency key taken from outside (a header or body value), before
 * the connector's namespace is prepended; the ledger allows EVENT_KEY_MAX for
 * the whole key. */
#define INGEST__KEY_MAX 512

/* The value at a dotted path ("event.type", "items.0.id": a numeric segment
 * indexes an array) inside root, or NULL; borrowed. */
const json_t *ingest__json_path(const json_t *root, const char *path);

/* Parses Unix seconds: 1 to 15 decimal digits, nothing else. */
int ingest__parse_unix(const char *s, size_t len, int64_t *ret);

/* Refuses (ERR_AUTH, INGEST_STALE) a timestamp more than tolerance_s seconds
 * away from now_s in either direction; exactly tolerance_s is accepted. */
/* HMAC-SHA256(secret, TS "." BODY): the signed text of timestamped schemes
 * (Stripe, and webhooks with a timestamp header). */
void ingest__hmac_timestamped(const char *secret, size_t secret_len, const char *ts,
                              size_t ts_len, const char *body, size_t body_len,
                              uint8_t out[CORE_SHA256_LEN]);

int ingest__check_tolerance(int64_t ts, int64_t now_s, int tolerance_s, IngestReason *ret_reason,
                            Err *err);

/* True when s looks like an email address by the ledger's rule (one '@' with
 * text on both sides, no spaces or control characters, at most 254 bytes). */
bool ingest__email_ok(const char *s, size_t len);

/* Builds the event from {type, source, consent, idempotency_key, data[,
 * occurred_at]} through ledger_event_from_json(), so that every ledger check
 * applies. consent: 0 none, 1 transactional, 2 marketing. key and occurred_at
 * may be NULL; data is borrowed. */
int ingest__event_build(const char *type, const char *source, int consent, const char *key,
                        const char *occurred_at, const json_t *data, const EventLimits *lim,
                        Event **ret, Err *err);

#endif
