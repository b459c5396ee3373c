/* Facts from what people write (docs/memory.md, "Facts"): the reactor
 * "memory.extract" reads each email.received, runs the `extract` route over
 * its text, and records what the sender's signature says of them (name,
 * company, role, phone) as memory.fact.recorded with source "extract",
 * when it differs from the current fact of that key. */
#ifndef BUREAU_MEMORY_EXTRACT_FACTS_H
#define BUREAU_MEMORY_EXTRACT_FACTS_H

#include "ledger/reactor.h"
#include "model/router.h"

#define MEMORY_EXTRACT_CONFIDENCE 0.6 /* a signature is the sender's word, parsed */
#define MEMORY_EXTRACT_MAX_TEXT (16 * 1024) /* bytes of an email given to the route */
#define MEMORY_EXTRACT_STEP 8 /* emails per reactor step (each a model call) */

typedef struct MemoryExtractor MemoryExtractor;

/* Starts the reactor on l; router must outlive it. */
int memory_extractor_start(Ledger *l, ModelRouter *router, int lease_ms, MemoryExtractor **ret,
                           Err *err);
/* Stops it. NULL is fine. */
void memory_extractor_stop(MemoryExtractor *x);

#endif
