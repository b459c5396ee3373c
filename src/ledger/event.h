/* The canonical event: what every connector produces and the ledger stores.
 *
 * An Event is built from outside JSON by ledger_event_from_json(), which
 * validates every field (and the data of the shared event types) and
 * computes data_hash; the writer then assigns seq, id, prev_hash and hash.
 * Header fields carry no personal data: an outside idempotency key is kept
 * only as its SHA-256. */
#ifndef BUREAU_LEDGER_EVENT_H
#define BUREAU_LEDGER_EVENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/clock.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/ids.h"
#include "store/store.h"

#define EVENT_TYPE_MAX 128
#define EVENT_SOURCE_MAX 128
#define EVENT_SUBJECT_MAX 256
#define EVENT_KEY_MAX 1024 /* an outside idempotency key, before hashing */

typedef struct Event {
    int64_t seq;                            /* 0 until appended */
    char id[CORE_ULID_LEN + 1];             /* "" until appended */
    char *type;
    char *source;
    char *subject;                          /* NULL when none */
    char occurred_at[CORE_TIME_LEN + 1];
    char received_at[CORE_TIME_LEN + 1];
    char consent[16];                       /* transactional | marketing | none */
    char idempotency_key[CORE_SHA256_HEX + 1]; /* hex SHA-256, "" when none */
    bool key_present;                       /* read from a row: the column was not NULL */
    char trace_id[CORE_TRACE_LEN + 1];
    char *data;                             /* canonical JSON object text */
    size_t data_len;
    char data_hash[CORE_SHA256_HEX + 1];
    char prev_hash[CORE_SHA256_HEX + 1];
    char hash[CORE_SHA256_HEX + 1];
} Event;

typedef struct EventLimits {
    size_t max_data_bytes; /* canonical size of data; 0 = 1 MiB */
} EventLimits;

/* Validates an outside event object and returns a new Event (received now).
 * Errors are ERR_INVAL or ERR_TOOBIG, naming the field. */
int ledger_event_from_json(const json_t *obj, const EventLimits *lim, Event **ret, Err *err);

/* Parses text as one JSON event, then as ledger_event_from_json(). */
int ledger_event_parse(const char *text, size_t len, const EventLimits *lim, Event **ret,
                       Err *err);

/* Builds an internal event (reactors, operator actions). data's reference is
 * borrowed; key may be NULL (it is hashed like an outside key). */
int ledger_event_new(const char *type, const char *source, const char *subject,
                     const json_t *data, const char *key, const EventLimits *lim, Event **ret,
                     Err *err);

void ledger_event_free(Event *ev);

/* The event as a JSON object with every column; data parsed. */
json_t *ledger_event_to_json(const Event *ev);

/* Fills ev from a row of "SELECT " LEDGER_EVENT_COLUMNS " FROM events ...".
 * Frees nothing that was in ev before; use on a zeroed Event. */
#define LEDGER_EVENT_COLUMNS                                                        \
    "seq, id, type, source, subject, occurred_at, received_at, consent, "          \
    "idempotency_key, trace_id, data, data_hash, prev_hash, hash"
int ledger_event_from_row(StoreStmt *st, Event **ret, Err *err);

/* hash = SHA-256(prev_hash || header || data_hash), the header being the
 * netstrings of seq, id, type, source, subject, occurred_at, received_at,
 * consent, idempotency_key and trace_id. Writes hex into out. */
int ledger_event_chain_hash(const Event *ev, const char *prev_hash_hex,
                            char out[CORE_SHA256_HEX + 1]);
/* The same with the caller's hashing context (reused across calls). */
int ledger_event_chain_hash_with(CoreSha256 *h, const Event *ev, const char *prev_hash_hex,
                                 char out[CORE_SHA256_HEX + 1]);

/* True when s names an event type: ^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$ */
bool ledger_type_valid(const char *s, size_t len);
/* Types only Bureau itself appends (task.*, step.*, workflow.*, schedule.*,
 * operator.*, approval.*, effect.*, model.*, memory.*, ledger.*, connector.*): refused from the HTTP API, webhooks and workflow steps. The
 * operator's own `bureau ingest` may append them. */
bool ledger_type_reserved(const char *type);

/* Checks the data of the shared event types of DESIGN.md (email.received,
 * form.submitted, payment.*, invoice.*, subscription.*, calendar.event.*,
 * contact.imported); other types pass. Names the first bad field. */
int ledger_event_check_data(const char *type, const json_t *data, Err *err);

#endif
