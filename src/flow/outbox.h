/* The effect outbox (flow/outbox.c): delivers effects, marks the ones a
 * dead process left half-done as uncertain, and runs compensation sagas.
 * Started and stopped by the workflow engine. */
#ifndef BUREAU_FLOW_OUTBOX_H
#define BUREAU_FLOW_OUTBOX_H

#include "core/config.h"
#include "ledger/ledger.h"

typedef struct FlowOutbox FlowOutbox;

/* Starts the outbox thread on l. After each pass it calls on_idle(ctx,
 * head): head is the ledger head the pass saw when nothing was due now and
 * nothing was appended, else -1. */
int flow__outbox_start(Ledger *l, const Config *cfg, void (*on_idle)(void *ctx, int64_t head),
                       void *ctx, FlowOutbox **ret, Err *err);
/* The ms until the outbox's next timer (a retry, the end of an undo
 * window): 0 when one is due, -1 when there is none. */
int64_t flow__outbox_next_ms(Store *rd, int64_t now);
/* Stops it (a delivery under way finishes first). NULL is fine. */
void flow__outbox_stop(FlowOutbox *o);

#endif
