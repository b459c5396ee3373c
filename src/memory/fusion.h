/* Reciprocal rank fusion (Cormack et al., 2009) of ranked lists of item ids,
 * with optional per-list weights and an optional recency decay:
 *
 *     score(id) = 2^(-age(id) / half_life) * Σ_lists weight / (k + rank)
 *
 * where rank counts from 1 in each list the id appears in. Pure: no state,
 * no locking needed. See docs/internals/memory_index.md. */
#ifndef BUREAU_MEMORY_FUSION_H
#define BUREAU_MEMORY_FUSION_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define MEM_FUSE_K         60.0  /* the usual RRF constant */
#define MEM_FUSE_MAX_LISTS 8
#define MEM_FUSE_MAX_LIST  10000 /* ids read from one list */

/* One ranked list, best first. The ids are borrowed. An id repeated in a
 * list counts once, at its best rank. */
typedef struct MemFuseList {
    const int64_t *ids;
    int n;
    double weight; /* 0 is read as 1 */
} MemFuseList;

typedef struct MemFuseOptions {
    double k;           /* 0: MEM_FUSE_K */
    double half_life_s; /* 0: no recency weight */
    /* The age of an item in seconds (negative ages are read as 0); called
     * once per distinct id when half_life_s > 0. */
    double (*age_s)(void *ctx, int64_t id);
    void *ctx;
} MemFuseOptions;

/* One fused result, with its rank in every list for explanation. */
typedef struct MemFused {
    int64_t id;
    double score;
    int rank[MEM_FUSE_MAX_LISTS]; /* rank in list i (from 1), 0 when absent */
} MemFused;

/* Fuses lists[0..n_lists) (opt may be NULL) and writes the n best, by
 * score then smaller id, to out[0..n); *n_out = how many were written.
 * ERR_INVAL when n_lists is outside 0..MEM_FUSE_MAX_LISTS, n < 0, a list
 * is longer than MEM_FUSE_MAX_LIST, a weight is negative or not finite, or
 * half_life_s > 0 without age_s. Outputs are written only on success. */
int mem_fuse_rrf(const MemFuseList *lists, int n_lists, const MemFuseOptions *opt, int n,
                 MemFused *out, int *n_out, Err *err);

#endif
