/* Renewals coming up (docs/memory.md, "Renewals"): the contacts whose
 * retainer ends, or whose subscription's period ends, within a window. Read
 * from the current facts: `subscription` ({current_period_end, cancel_at,
 * status, plan...}, from the payment connector) and `retainer` ({ends_at}
 * or {ends}: a time or a date, recorded by you or a workflow). A canceled
 * subscription is left out; one with a cancel_at is due at that time; an
 * open one only when it is yearly (a monthly one renews every month). The
 * input of the renewal-watch workflow (the step kind memory.renewals). */
#ifndef BUREAU_MEMORY_RENEWALS_H
#define BUREAU_MEMORY_RENEWALS_H

#include <jansson.h>
#include <stdint.h>

#include "core/err.h"
#include "store/store.h"

/* *ret: [{contact, name, email, kind (subscription | retainer), ends_at,
 * cancels, plan, fact_seq, fact}] of the contacts that stand, whose end is
 * within [now, now + within]. */
int memory_renewals(Store *rd, int64_t now_ms, int64_t within_ms, json_t **ret, Err *err);

#endif
