/* Item vectors from the `embed` route (docs/memory.md, "Vectors").
 *
 * When the embed route's first candidate is the local tier (the default),
 * vectors are computed when searched (search.c) and never stored. When it
 * is a remote provider, each item's vector is asked of the route once and
 * kept in item_vectors, keyed by (model, item): a derived index outside the
 * ledger and replay. The background filler (in `bureau serve` and `bureau
 * run`) embeds the items that have none; `bureau memory reembed` embeds
 * them all after a model swap and drops other models' vectors. */
#ifndef BUREAU_MEMORY_VECTORS_H
#define BUREAU_MEMORY_VECTORS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "ledger/ledger.h"
#include "model/router.h"

#define MEMORY_EMBED_ROUTE "embed"
#define MEMORY_VECTOR_MODEL_MAX 200 /* "PROVIDER/MODEL" */
#define MEMORY_VECTOR_DIM_MAX 4096
#define MEMORY_VECTOR_TEXT_MAX (8 * 1024) /* bytes of an item given to the route */

/* The model the embed route stores vectors of, "PROVIDER/MODEL" in out;
 * false (out "") when the route starts with the local tier. */
bool memory_embed_remote(const Config *cfg, char out[MEMORY_VECTOR_MODEL_MAX + 1]);

/* Embeds up to max items (max <= 0: all) that have no vector of the
 * configured model, oldest first, through the router (the first
 * MEMORY_VECTOR_TEXT_MAX bytes of each); *done: how many were stored. An
 * item whose call fails, or that another candidate answered, is skipped
 * (*failed set, why in err->msg with err->code 0); three in a row stop the
 * pass. progress (may be NULL) is
 * called after each item. Vectors of items that no longer exist are
 * dropped. */
int memory_vectors_fill(Store *db, ModelRouter *router, const Config *cfg, int64_t max,
                        int64_t *done, bool *failed,
                        void (*progress)(void *ctx, int64_t done, int64_t total), void *ctx,
                        Err *err);

/* After a model swap: fills every vector of the configured model, then
 * drops the other models' vectors. *ret: {model, embedded, dropped,
 * failed}. ERR_INVAL when the embed route is local (nothing is stored). */
int memory_reembed(Store *db, ModelRouter *router, const Config *cfg,
                   void (*progress)(void *ctx, int64_t done, int64_t total), void *ctx,
                   json_t **ret, Err *err);

/* The query's vector from the embed route (remote models only): *ret gets
 * a malloc'ed array of *dim floats. */
int memory_embed_query(Store *rd, ModelRouter *router, const Config *cfg, const char *text,
                       float **ret, int *dim, Err *err);

/* The background filler of `bureau serve` / `bureau run`: embeds the items
 * without a vector, 64 at a time, waking on new events; backs off while
 * the route fails. Not started (NULL) when the embed route is local. */
typedef struct MemoryVectorFiller MemoryVectorFiller;
int memory_vector_filler_start(Ledger *l, const Config *cfg, ModelRouter *router,
                               MemoryVectorFiller **ret, Err *err);
void memory_vector_filler_stop(MemoryVectorFiller *f);

#endif
