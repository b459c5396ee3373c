/* Push connectors: turn a signed HTTP request into a canonical event.
 *
 * The HTTP layer (src/api) owns transport and limits; it hands these
 * functions the connector's configuration, its resolved secret, a header
 * lookup and the raw body. They verify the signature, map the body to one
 * canonical event and choose its idempotency key. Nothing here does I/O
 * except the content-addressed file store used by forms. */
#ifndef BUREAU_INGEST_INGEST_H
#define BUREAU_INGEST_INGEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "ledger/event.h"

/* Returns the value of header name (case-insensitive), or NULL. */
typedef const char *(*IngestHeaderFn)(void *ctx, const char *name);

typedef struct IngestRequest {
    const ConnectorConfig *conn;
    const char *secret;      /* the resolved secret (NULL for forms) */
    size_t secret_len;
    IngestHeaderFn header;
    void *header_ctx;
    const char *body;        /* the raw body, exactly as received */
    size_t body_len;
    int64_t now_s;           /* Unix seconds, for timestamp tolerance */
    const EventLimits *limits;
} IngestRequest;

/* Why a request was refused (a metrics label and part of the detail). */
typedef enum IngestReason {
    INGEST_OK = 0,
    INGEST_NO_SIGNATURE,  /* 401: the signature header is missing */
    INGEST_BAD_SIGNATURE, /* 401: no signature matches */
    INGEST_STALE,         /* 401: the timestamp is outside the tolerance */
    INGEST_BAD_BODY,      /* 400: not the JSON the connector expects */
    INGEST_HONEYPOT,      /* a form's honeypot field was filled: dropped */
} IngestReason;

const char *ingest_reason_name(IngestReason r); /* "bad_signature", ... */

/* kind: webhook. The signature header holds HMAC-SHA256(secret, body) in
 * hex or base64, optionally prefixed "sha256="; with timestamp_header, the
 * signed text is "TIMESTAMP.BODY" and a timestamp (Unix seconds) more than
 * tolerance_s away from now is stale. The body must be a JSON object; it
 * becomes the event's data. The type is fixed (type) or read from a body
 * field (type_field, a dotted path); the idempotency key comes from
 * key_header or key_field, else from the SHA-256 of the body, and is
 * namespaced as "webhook:NAME:KEY". Returns 0 and the event, ERR_AUTH
 * (401) or ERR_INVAL / ERR_TOOBIG (400), with *ret_reason set. */
int ingest_webhook(const IngestRequest *req, Event **ret, IngestReason *ret_reason, Err *err);

/* The signature check alone. ts may be NULL when the connector has no
 * timestamp header. */
int ingest_webhook_verify(const char *secret, size_t secret_len, const char *sig,
                          const char *ts, const char *body, size_t body_len, int64_t now_s,
                          int tolerance_s, IngestReason *ret_reason, Err *err);

/* kind: stripe. Stripe-Signature: "t=TS,v1=HEX[,v1=HEX...]" where each v1
 * is HMAC-SHA256(secret, "TS.BODY") (several during secret rotation; other
 * schemes such as v0 are ignored); stale beyond tolerance_s. Maps:
 *   payment_intent.succeeded       -> payment.succeeded (key stripe:pi:ID)
 *   charge.refunded                -> payment.refunded
 *   invoice.paid                   -> invoice.paid
 *   invoice.payment_failed         -> invoice.payment_failed
 *   customer.subscription.created  -> subscription.created
 *   customer.subscription.updated  -> subscription.updated
 *   customer.subscription.deleted  -> subscription.canceled
 *   checkout.session.completed     -> checkout.completed
 *   anything else                  -> stripe.<type>, data = data.object
 * Other events are keyed stripe:evt:EVENT_ID, so a redelivery is stored once. */
int ingest_stripe(const IngestRequest *req, Event **ret, IngestReason *ret_reason, Err *err);

int ingest_stripe_verify(const char *header, const char *secret, size_t secret_len,
                         const char *body, size_t body_len, int64_t now_s, int tolerance_s,
                         IngestReason *ret_reason, Err *err);

/* kind: form. A file the HTTP layer stored with ingest_file_*(). */
typedef struct IngestFormFile {
    const char *field, *name, *type;
    int64_t size;
    char sha256[CORE_SHA256_HEX + 1];
} IngestFormFile;

/* Builds form.submitted from the submitted fields (an object of name ->
 * string, or -> array of strings for a repeated name; borrowed) and files.
 * A filled honeypot field sets *ret_honeypot and returns 0 with no event.
 * consent_field with a truthy value ("on", "yes", "true", "1") makes the
 * consent marketing; otherwise the connector's consent applies. The key is
 * "form:NAME:" + the SHA-256 of the canonical data, so a double submission
 * is stored once. */
int ingest_form_event(const ConnectorConfig *conn, const json_t *fields,
                      const IngestFormFile *files, size_t n_files, const EventLimits *limits,
                      Event **ret, bool *ret_honeypot, Err *err);

/* The content-addressed file store: DATA/files/<sha256>. A file is written
 * to a temporary name while it is hashed, then renamed into place (or
 * dropped when the same content is already there). */
typedef struct IngestFile IngestFile;
int ingest_file_begin(const char *data_dir, size_t max_bytes, IngestFile **ret, Err *err);
/* ERR_TOOBIG past max_bytes (the file is then only good for _abort). */
int ingest_file_write(IngestFile *f, const void *data, size_t len, Err *err);
/* Completes and frees f. */
int ingest_file_finish(IngestFile *f, char ret_sha256[CORE_SHA256_HEX + 1], int64_t *ret_size,
                       Err *err);
/* For many files in a row: f's content and name are not synced by
 * ingest_file_finish(); the caller calls ingest_files_sync() once before it
 * records anything that names them. */
void ingest_file_nosync(IngestFile *f);
/* Makes every file stored so far durable (syncfs of DATA/files). */
int ingest_files_sync(const char *data_dir, Err *err);
/* Removes the temporary file and frees f. NULL is accepted. */
void ingest_file_abort(IngestFile *f);

#endif
