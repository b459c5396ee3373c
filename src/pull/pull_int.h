/* Shared inside src/pull only. */
#ifndef BUREAU_PULL_PULL_INT_H
#define BUREAU_PULL_PULL_INT_H

#include "pull/pull.h"

#define PULL_BATCH 50            /* messages per append (and per lease renewal) */
#define PULL_LEASE_MS 120000     /* a dead poller's lease keeps others out this long */
#define PULL_IO_TIMEOUT_MS 30000 /* one network wait */

/* What a poll function is given. */
typedef struct PullCtx {
    const PullOptions *opts;
    const ConnectorConfig *c;
    const char *password;
    Store *rd;
    volatile int *stop;          /* non-zero: finish the batch and return */
} PullCtx;

/* The current cursor of a connector ({} before any) and the seq of the event
 * that set it (0). */
int pull__cursor_get(Store *rd, const char *name, json_t **ret, int64_t *ret_seq, Err *err);

/* Appends events[0..n) and connector.cursor {connector, kind, cursor,
 * count: n, prev: *cursor_seq} in one atomic append; on success
 * *cursor_seq becomes the cursor event's seq and *ret_added counts the
 * events that were new. Takes the events (freed whatever the outcome). */
int pull__append_batch(Ledger *l, const ConnectorConfig *c, Event **events, size_t n,
                       const json_t *cursor, int64_t *cursor_seq, int64_t *ret_added, Err *err);

/* Renews (or takes) the connector's lease; 1 held, 0 another process holds it. */
int pull__lease(const PullCtx *x, Err *err);

/* kind: imap (imap.c). */
int pull__imap_poll(const PullCtx *x, int64_t *ret_appended, Err *err);
/* kind: ics (ics.c). */
int pull__ics_poll(const PullCtx *x, int64_t *ret_appended, Err *err);

#endif
