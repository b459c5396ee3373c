/* The engine's memory consolidation thread (flow/consolidator.c). */
#ifndef BUREAU_FLOW_CONSOLIDATOR_H
#define BUREAU_FLOW_CONSOLIDATOR_H

#include "core/config.h"
#include "ledger/ledger.h"
#include "model/router.h"

typedef struct FlowConsolidator FlowConsolidator;

/* Starts it (nothing, *ret NULL, when memory.consolidate_schedule is "off"
 * or empty). ERR_CONFIG for a schedule that does not parse. cfg and router
 * must outlive it. */
int flow__consolidator_start(Ledger *l, const Config *cfg, ModelRouter *router,
                             FlowConsolidator **ret, Err *err);
/* Stops it (a run under way finishes first). NULL is fine. */
void flow__consolidator_stop(FlowConsolidator *c);

#endif
