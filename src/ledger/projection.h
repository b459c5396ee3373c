/* Projections: named, versioned pure functions (state, event) -> state whose
 * state lives in tables they alone own. The writer applies every registered
 * projection to each event in the transaction that appends it, and stores
 * the projection's checkpoint (the last seq applied) beside it. Replay
 * rebuilds the tables from the log; a snapshot lets a rebuild start at a seq.
 *
 * A projection must depend only on the events it is given (no clock, no
 * randomness, no other table), so that a rebuild is equal bit for bit. */
#ifndef BUREAU_LEDGER_PROJECTION_H
#define BUREAU_LEDGER_PROJECTION_H

#include <stdbool.h>
#include <stddef.h>

#include "core/crypto.h"
#include "ledger/event.h"
#include "store/store.h"

typedef struct Projection {
    const char *name;
    int version;               /* bump when apply changes: tables are rebuilt */
    const char *const *tables; /* the tables it owns, NULL-terminated */
    /* Applies ev inside the caller's write transaction on tx. */
    int (*apply)(Store *tx, const Event *ev, Err *err);
    /* Optional: drops what apply keeps in memory about its tables between
     * calls. Called whenever they may have changed other than by apply's
     * own committed work: a rollback, a rebuild, another process's appends. */
    void (*forget)(void);
} Projection;

/* Registers p (static storage) for every ledger opened afterwards in this
 * process. Registering the same name twice keeps the first. Names starting
 * with '@' are reserved for the ledger's own bookkeeping. */
void ledger_projection_register(const Projection *p);
/* Registers the ledger's own projections (counts). Idempotent. */
void ledger_projections_builtin(void);
/* The registered projections. */
size_t ledger_projection_list(const Projection *const **ret);
const Projection *ledger_projection_find(const char *name);

/* Rebuilds every projection (or only the one named) from the log inside one
 * write transaction. Unless full, starts from the newest snapshot of the
 * same version. *ret_events is the number of events read for the longest
 * rebuild (each event is counted once, however many projections it feeds). */
int ledger_replay(Store *s, const char *only, bool full, int64_t *ret_events, Err *err);

typedef struct ReplayCheck {
    const Projection *projection;
    char live[CORE_SHA256_HEX + 1];    /* digest of the tables as they are */
    char rebuilt[CORE_SHA256_HEX + 1]; /* digest after a full rebuild */
    bool equal;
} ReplayCheck;

/* Digests the live tables, rebuilds them from the first event, digests again,
 * and rolls the rebuild back: the live tables are left as they were. Fills
 * out[0..*ret_n) (cap entries at most). */
int ledger_replay_check(Store *s, const char *only, ReplayCheck *out, size_t cap,
                        size_t *ret_n, Err *err);

/* A SHA-256 over the rows of every table of p, in primary-key-independent
 * order (sorted by all columns). */
int ledger_projection_digest(Store *s, const Projection *p, char out[CORE_SHA256_HEX + 1],
                             Err *err);

/* Stores the current state of every projection (or the one named) as a
 * snapshot at its checkpoint seq. */
int ledger_snapshot(Store *s, const char *only, int64_t *ret_seq, Err *err);

#endif
