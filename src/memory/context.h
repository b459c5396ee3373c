/* Context packs: for a contact and a query, who they are, the facts
 * known about them and the items that match best, within a token budget
 * (about 4 bytes a token), each part cited by its event's seq: the input of
 * drafting steps, and the "sources" an approval shows (docs/memory.md). */
#ifndef BUREAU_MEMORY_CONTEXT_H
#define BUREAU_MEMORY_CONTEXT_H

#include <jansson.h>

#include "core/config.h"
#include "core/err.h"
#include "store/store.h"

#define MEMORY_CONTEXT_BUDGET_DEFAULT 1000
#define MEMORY_CONTEXT_BUDGET_MAX 32000
#define MEMORY_CONTEXT_SUMMARIES 3   /* the latest summaries in a pack */

/* A contact's summaries (consolidated memory), latest first: [{seq,
 * event_id, at, text, period, version, items}]. */
int memory_summaries(Store *rd, const char *contact, int64_t limit, json_t **ret, Err *err);

/* The latest events about a contact, newest first: the items, identities
 * and facts that came from them, and events with subject contact:ID:
 * [{seq, id, type, source, at}]. */
int memory_timeline(Store *rd, const char *contact, int64_t limit, json_t **ret, Err *err);

/* who: an email, phone, payment customer id or contact id. query may be
 * NULL or "" (then the items are the most recent). *ret: {contact, profile,
 * budget_tokens, used_tokens, parts: [{kind: profile|fact|summary|item, text, seq,
 * event_id?}], sources: [{seq, snippet}]}. ERR_NOTFOUND for an unknown
 * contact. */
int memory_context(Store *rd, const Config *cfg, const char *who, const char *query,
                   int budget_tokens, json_t **ret, Err *err);

#endif
