/* Consolidation (docs/memory.md, "Consolidation"): the items that expired
 * (past their kind's TTL) are folded, per subject and calendar month, into
 * a summary written by the `summarize` route, and removed from short-term
 * memory. Each summary is a `memory.consolidated` event {subject, period,
 * version, summary, items: [seqs], at, replaces, route, provider, model,
 * cost_usd}; the "items" projection then drops those items and keeps the
 * summary as an item of kind `summary` (never expiring). Items of a month
 * that already has a summary make its next version: the earlier summary is
 * part of the input and is replaced, and stays in the ledger. */
#ifndef BUREAU_MEMORY_CONSOLIDATE_H
#define BUREAU_MEMORY_CONSOLIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "ledger/ledger.h"
#include "model/router.h"

#define MEMORY_CONSOLIDATE_MAX_GROUPS 1000    /* summaries made in one run */
#define MEMORY_CONSOLIDATE_MAX_ITEMS  500     /* items folded into one summary */
#define MEMORY_CONSOLIDATE_INPUT_MAX  (48 * 1024) /* bytes of text given to the model */
#define MEMORY_CONSOLIDATE_ITEM_CHARS 1200    /* bytes of one item in that text */

#define MEMORY_CONSOLIDATE_LEASE "memory.consolidate" /* one process runs at a time */
#define MEMORY_CONSOLIDATE_LEASE_MS (30 * 60 * 1000)   /* renewed before each group */

/* One run at now_ms, under the lease MEMORY_CONSOLIDATE_LEASE (ERR_BUSY when
 * another process holds it; renewed before each group; a run that loses it
 * stops before the next group, lease_lost true). dry_run: no lease, nothing
 * is called or written, the groups are only listed. *ret: {items,
 * summaries, failed, dry_run, lease_lost, groups: [{subject, period, items,
 * version, seq | error}]}. A group whose model call fails is left for the
 * next run (listed with its error). Returns <0 otherwise only when the
 * store or the ledger fails. */
int memory_consolidate(Ledger *l, Store *rd, ModelRouter *router, const Config *cfg,
                       int64_t now_ms, bool dry_run, json_t **ret, Err *err);

#endif
