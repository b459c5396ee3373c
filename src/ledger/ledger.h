/* The ledger: Bureau's one append-only, hash-chained event log.
 *
 * Every append in a process goes through one writer thread, which takes the
 * database's write lock, batches whatever appends are waiting into one
 * transaction (group commit), applies the projections in that transaction
 * and acknowledges each append only after the commit is durable. Because the
 * writer reads the chain head under the write lock, appends from several
 * processes on one data directory serialize into one unbroken chain.
 *
 * Reads use the caller's own Store connection (store.h): one per thread. */
#ifndef BUREAU_LEDGER_LEDGER_H
#define BUREAU_LEDGER_LEDGER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "ledger/event.h"
#include "store/store.h"

typedef struct Ledger Ledger;

typedef struct LedgerOptions {
    const Config *config;  /* durability, limits; NULL = defaults */
    bool watch;            /* wake ledger_wait() on appends by other processes */
} LedgerOptions;

typedef struct LedgerAppendResult {
    int64_t seq;
    char id[CORE_ULID_LEN + 1];
    bool duplicate; /* the idempotency key was seen before: seq/id are the original's */
} LedgerAppendResult;

/* Called on the writer thread, in submission order, once the request is
 * durable (rc == 0) or has failed (rc < 0, err set; nothing of it was kept).
 * results has one entry per event. Must not call back into the ledger's
 * append functions synchronously. */
typedef void (*LedgerDoneFn)(void *ctx, int rc, const Err *err,
                             const LedgerAppendResult *results, size_t n);

/* The database path of a data directory: DIR/bureau.db. Caller frees. */
char *ledger_db_path(const char *data_dir);

/* The newest schema version this binary knows. */
int ledger_schema_latest(void);

/* Migrates the database (creating it when create is true) and returns the
 * store's options for the given config. */
int ledger_db_prepare(const char *data_dir, const Config *cfg, bool create, Err *err);

/* Opens the ledger of data_dir (which must have been initialised) and starts
 * its writer thread. */
int ledger_open(const char *data_dir, const LedgerOptions *opts, Ledger **ret, Err *err);

/* Waits for every submitted append to be acknowledged, stops the writer and
 * frees the ledger. NULL is accepted. */
void ledger_close(Ledger *l);

/* Opens a new connection to the ledger's database for reading on the
 * calling thread. */
int ledger_reader_open(const Ledger *l, Store **ret, Err *err);
int ledger_reader_open_dir(const char *data_dir, const Config *cfg, Store **ret, Err *err);

const EventLimits *ledger_limits(const Ledger *l);

/* Appends events[0..n) atomically and blocks until they are durable.
 * Takes ownership of the events (freed whatever the outcome). results (n
 * slots, may be NULL) is filled on success. */
int ledger_append(Ledger *l, Event **events, size_t n, LedgerAppendResult *results, Err *err);

/* The same without waiting: done is called from the writer thread. The
 * events array is copied; the events themselves are owned by the ledger from
 * here on. Blocks only while too many events are already waiting. */
int ledger_append_async(Ledger *l, Event **events, size_t n, LedgerDoneFn done, void *ctx,
                        Err *err);

/* Waits until every append submitted before the call has been acknowledged
 * (its done callback has returned). */
int ledger_sync(Ledger *l, Err *err);

/* For reactors: appends events and stores the reactor's checkpoint seq in the
 * same transaction, provided the lease `lease` is still held by `holder`
 * (ERR_LEASE otherwise, and nothing is written). n may be 0. */
int ledger_append_checkpoint(Ledger *l, Event **events, size_t n, const char *reactor,
                             int64_t seq, const char *lease, const char *holder, Err *err);

/* Blocks until the ledger's head passes after_seq, or timeout_ms passes
 * (< 0: forever), or the ledger closes. Returns the head seq (>= 0). Wakes on
 * appends by this process at once and, with opts.watch, on appends by other
 * processes. */
int64_t ledger_wait(Ledger *l, int64_t after_seq, int timeout_ms);
/* Wakes every ledger_wait() in this process (they return the head as is). */
void ledger_wake(Ledger *l);
/* The count of ledger_wake() calls so far, and a ledger_wait() that also
 * returns at once when ledger_wake() was called since the count gen was
 * taken: a loop that takes the count before its work loses no wake-up that
 * comes while it works. */
uint64_t ledger_wake_gen(Ledger *l);
int64_t ledger_wait_gen(Ledger *l, int64_t after_seq, uint64_t gen, int timeout_ms);
/* The last head this process knows of. */
int64_t ledger_head_seq(Ledger *l);
/* Whether an event in (after_seq, upto_seq] has a type match() accepts,
 * from the types of this process's recent commits kept in memory, without
 * reading the database: 1 yes, 0 no, -1 not known here (older than the
 * last LEDGER_RECENT_TYPES events, appended by another process, or a type
 * longer than the memory keeps). match runs under the ledger's lock: it
 * must be quick and must not call the ledger. For a follower woken by
 * every commit that cares about few types. */
#define LEDGER_RECENT_TYPES 4096
int ledger_recent_types(Ledger *l, int64_t after_seq, int64_t upto_seq,
                        bool (*match)(void *ctx, const char *type), void *ctx);

/* Counters of this process's writer, for /metrics. batch[i] counts commits
 * of at most LEDGER_BATCH_BOUNDS[i] events (the last bucket: any size). */
#define LEDGER_BATCH_BUCKETS 12
extern const int LEDGER_BATCH_BOUNDS[LEDGER_BATCH_BUCKETS - 1];
typedef struct LedgerStats {
    uint64_t commits;
    uint64_t events;
    uint64_t batch[LEDGER_BATCH_BUCKETS];
} LedgerStats;
void ledger_stats(Ledger *l, LedgerStats *ret);

/* This process's identity for leases (a ULID fixed at open). */
const char *ledger_instance(const Ledger *l);

/* Reading (any connection). */
typedef struct LedgerFilter {
    const char *type;    /* NULL: any */
    const char *source;  /* NULL: any */
    const char *subject; /* NULL: any */
    int64_t after_seq;   /* events with seq > after_seq */
    int64_t limit;       /* <= 0: no limit */
    bool headers_only;   /* data is left empty (""): for readers that look at types */
    int64_t before_seq;  /* > 0: only events with seq < before_seq */
    bool newest_first;   /* in descending seq order (a page from the end) */
} LedgerFilter;

/* Calls fn for each matching event in seq order (descending with
 * newest_first); fn returns 0 to go on, >0 to
 * stop, <0 to fail (returned). The Event is borrowed for the call. */
int ledger_read(Store *s, const LedgerFilter *f, int (*fn)(void *ctx, const Event *ev),
                void *ctx, Err *err);

/* Redaction (forgetting a person): the data of the events seqs[0..n) is
 * replaced by LEDGER_REDACTED; their data_hash, and so the chain, stay. It
 * first appends ledger.redacted {seqs, reason, subject} (durable, so the
 * chain itself says which rows may differ from their data_hash), then
 * rewrites the rows on rd (a connection of the data dir) in one
 * transaction. ledger.* events are never redacted. *ret_seq: the
 * ledger.redacted event. */
#define LEDGER_REDACTED "{\"redacted\":true}"
#define LEDGER_REDACT_MAX 100000
int ledger_redact(Ledger *l, Store *rd, const int64_t *seqs, size_t n, const char *reason,
                  const char *subject, int64_t *ret_seq, Err *err);

/* One event by seq (id NULL) or by id. ERR_NOTFOUND when absent. */
int ledger_event_get(Store *s, int64_t seq, const char *id, Event **ret, Err *err);

/* The chain head: last seq and its hash. */
int ledger_head(Store *s, int64_t *ret_seq, char ret_hash[CORE_SHA256_HEX + 1], Err *err);

/* Recomputes the whole chain. Returns 0 and the number of events, or
 * ERR_CHAIN with *ret_bad_seq and err naming the first bad seq and why. */
int ledger_verify(Store *s, int64_t *ret_count, int64_t *ret_bad_seq, Err *err);

/* Leases: name is held by holder until expiry. Returns 1 if holder holds it
 * now (acquired or renewed for ttl_ms), 0 if another holder does. */
int ledger_lease_acquire(Store *s, const char *name, const char *holder, int ttl_ms, Err *err);
int ledger_lease_release(Store *s, const char *name, const char *holder, Err *err);

#endif
