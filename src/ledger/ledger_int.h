/* Private to src/ledger. */
#ifndef BUREAU_LEDGER_LEDGER_INT_H
#define BUREAU_LEDGER_LEDGER_INT_H

#include "ledger/ledger.h"
#include "ledger/projection.h"

/* Brings every registered projection up to head inside the caller's write
 * transaction: rebuilds one whose version changed, applies the events it has
 * not seen otherwise. */
int ledger__projections_catch_up(Store *tx, int64_t head, Err *err);
/* Applies ev to every registered projection (inside the transaction). */
int ledger__projections_apply(Store *tx, const Event *ev, Err *err);
/* Records head as every projection's checkpoint. */
int ledger__projections_checkpoint(Store *tx, int64_t head, Err *err);
/* Calls every projection's forget (see Projection). */
void ledger__projections_forget(void);

/* NULL when every header value of a stored row is one the writer could have
 * written; otherwise a description of the first that is not. (The chain hash
 * writes an absent subject or key like an empty one, so an empty one must be
 * refused here.) */
const char *ledger__row_malformed(const Event *ev);

extern const StoreMigration ledger__migrations[];
extern const size_t ledger__migrations_count;

#endif
