/* Pull connectors: what bureau serve fetches by itself (IMAP mailboxes, ICS
 * feeds) and the one-off imports (mbox, contacts CSV), as canonical events.
 *
 * Each connector keeps a cursor in the "connectors" projection. A poll
 * appends the events it found together with one connector.cursor event in
 * ONE ledger_append, so the cursor moves exactly when the events are
 * durable: a crash neither drops nor doubles anything, and a re-read (after
 * a crash, a UIDVALIDITY change or `bureau connectors replay`) is harmless
 * because every event carries an idempotency key. */
#ifndef BUREAU_PULL_PULL_H
#define BUREAU_PULL_PULL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/config.h"
#include "core/err.h"
#include "ledger/ledger.h"

/* Registers the "connectors" projection. */
void pull_projections_register(void);

/* ---- the runtime (bureau serve) ---- */

typedef struct PullRuntime PullRuntime;

/* Called when a message seen in a connector's Sent folder has Message-ID
 * message_id (without angle brackets): the caller settles an uncertain
 * effect that sent it. Runs on the poller's thread. Returns how many
 * effects it settled, or <0. */
typedef int (*PullSentFn)(void *ctx, Ledger *l, Store *rd, const char *message_id, Err *err);

typedef struct PullOptions {
    const char *data_dir;
    const Config *config;   /* borrowed for the runtime's life */
    Ledger *ledger;         /* borrowed */
    PullSentFn sent;        /* may be NULL */
    void *sent_ctx;
} PullOptions;

/* Starts one poller thread for the pull connectors of the config (none:
 * no thread). Resolves password_env first: ERR_CONFIG when it is unset. */
int pull_runtime_start(const PullOptions *opts, PullRuntime **ret, Err *err);
/* Stops the poller (a poll in flight finishes its current batch first) and
 * frees the runtime. NULL is accepted. */
void pull_runtime_stop(PullRuntime *rt);

/* One poll of connector c, now, on the calling thread (what the runtime does
 * on each tick; used by tests). *ret_appended counts new events. */
int pull_poll_once(const PullOptions *opts, const ConnectorConfig *c, const char *password,
                   Store *rd, int64_t *ret_appended, Err *err);

/* ---- status (bureau connectors, /metrics) ---- */

/* One object per configured pull connector, in config order: name, kind,
 * cursor (JSON, {} before the first poll), last_success, last_attempt,
 * last_error (null when it is not failing), last_error_at, failing,
 * failures (consecutive), events (total), events_today (UTC day of now_ms),
 * next_poll. */
int pull_status(Store *rd, const Config *cfg, int64_t now_ms, json_t **ret, Err *err);

/* Sets connector name's cursor to cursor (an object of its kind's shape;
 * {} reads everything again): appends connector.cursor {replay: true}. The
 * running poller uses it at its next poll. ERR_NOTFOUND for an unknown
 * connector, ERR_INVAL for a cursor of the wrong shape. */
int pull_replay(Ledger *l, const Config *cfg, const char *name, const json_t *cursor, Err *err);

/* ---- imports ---- */

typedef struct PullImportStats {
    int64_t seen;        /* messages or rows read */
    int64_t added;       /* new events */
    int64_t duplicates;  /* already in the ledger */
    int64_t warnings;    /* messages recorded with parse warnings */
    int64_t bad;         /* rows refused (contacts) */
    int64_t bytes;       /* input read */
} PullImportStats;

/* Called now and then during an import (for a progress line). */
typedef void (*PullProgressFn)(void *ctx, const PullImportStats *st, int64_t total_bytes);
/* Called for each refused row, with its line number and why. */
typedef void (*PullBadRowFn)(void *ctx, int64_t line, const char *why);

/* Every message of an mbox file (mboxo/mboxrd "From " separators) as
 * email.received, read as a stream (one message in memory at a time; a
 * message over max_message_bytes keeps only its header). source names the
 * events' source ("import"). */
int pull_import_mbox(Ledger *l, const char *data_dir, FILE *in, int64_t total_bytes,
                     const char *source, size_t max_message_bytes, PullProgressFn progress,
                     void *ctx, PullImportStats *st, Err *err);

/* Contacts from CSV (RFC 4180; the first row names the columns) as
 * contact.imported: email (required), name (or first name + last name),
 * company, phone, tags (split on ; or ,) and the other columns in fields.
 * A row without a valid email is reported through bad and skipped. */
#define PULL_CSV_MAX_LINE (64 * 1024)
#define PULL_CSV_MAX_COLUMNS 256
int pull_import_contacts(Ledger *l, FILE *in, int64_t total_bytes, const char *source,
                         PullProgressFn progress, PullBadRowFn bad, void *ctx,
                         PullImportStats *st, Err *err);

#endif
