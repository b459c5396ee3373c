/* An in-memory vector index for top-k retrieval: exact (float32 dot
 * products over every row) and compressed (int8 dot products over every
 * row, then exact re-scoring of the best candidates). Vectors are expected
 * L2-normalised, so a dot product is their cosine.
 *
 * Rows are kept dense: row i of the float matrix, of the int8 matrix and of
 * the id array always describe the same item, and removal moves the last row
 * into the hole. Memory is bounded by MEM_INDEX_MAX_ROWS rows.
 *
 * Thread-safety: the search functions, mem_index_size(), mem_index_bytes()
 * and mem_index_dim() only read the index and may run on several threads at
 * once. mem_index_add(), mem_index_remove() and mem_index_quantize() change
 * it and must not run alongside anything else on the same index: the caller
 * holds a lock (a pthread_rwlock_t: read for searches, write for changes).
 * See docs/internals/memory_index.md. */
#ifndef BUREAU_MEMORY_INDEX_H
#define BUREAU_MEMORY_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define MEM_INDEX_MIN_DIM  8
#define MEM_INDEX_MAX_DIM  4096
#define MEM_INDEX_MAX_ROWS ((size_t)16 << 20) /* 16M rows */
#define MEM_INDEX_MAX_K    10000              /* k and rerank of one search */

typedef struct MemIndex MemIndex;

/* One search result. */
typedef struct MemHit {
    int64_t id;
    float score; /* the exact float32 dot product of the query and the row */
} MemHit;

/* A new empty index of vectors of dim floats; NULL when dim is outside
 * MEM_INDEX_MIN_DIM..MEM_INDEX_MAX_DIM. Free it with mem_index_free(). */
MemIndex *mem_index_new(int dim);
void mem_index_free(MemIndex *ix);

/* Copies v[0..dim) into the index under id (the caller keeps v). ERR_EXISTS
 * when id is already there, ERR_INVAL when v holds a NaN or an infinity,
 * ERR_TOOBIG when the index holds MEM_INDEX_MAX_ROWS rows. When the index is
 * quantised (mem_index_quantize), the row is quantised as well. */
int mem_index_add(MemIndex *ix, int64_t id, const float *v, Err *err);

/* Removes id's row (the last row takes its place). 0, or ERR_NOTFOUND. */
int mem_index_remove(MemIndex *ix, int64_t id);

int mem_index_dim(const MemIndex *ix);

/* Rows held. */
size_t mem_index_size(const MemIndex *ix);

/* Bytes allocated by the index: its rows (float and, once quantised, int8),
 * ids and the id map, at their current capacity. */
size_t mem_index_bytes(const MemIndex *ix);

/* The k rows with the highest dot product with q[0..dim), best first, ties
 * broken by the smaller id, into out[0..k); *n_out = min(k, size). ERR_INVAL
 * when k is outside 1..MEM_INDEX_MAX_K; out and n_out are then untouched.
 * Exact: once the index is quantised (mem_index_quantize) it scans the
 * int8 copy with an error bound per row and scores exactly only the rows
 * the bound cannot rule out, which gives the float scan's result (ids,
 * order and scores) reading a quarter of the bytes. */
int mem_index_search(const MemIndex *ix, const float *q, int k, MemHit *out, int *n_out);

/* Puts id's row in a group (a small number, 0: none, the default), for
 * mem_index_search_biased(). ERR_NOTFOUND when id is not there. */
int mem_index_set_group(MemIndex *ix, int64_t id, uint32_t group);

/* id's vector (dim floats, valid until the next change), or NULL. */
const float *mem_index_vector(const MemIndex *ix, int64_t id);

/* mem_index_search() with bias[g] added to the score of every row of group
 * g (g < n_bias; other groups get nothing): a term shared by a group, such
 * as the similarity of the query to the group's centroid. MemHit.score is
 * then the biased score. */
int mem_index_search_biased(const MemIndex *ix, const float *q, int k, const float *bias,
                            size_t n_bias, MemHit *out, int *n_out);

/* The float32 scan, whatever the index holds (benchmarks and tests). */
int mem_index_search_f32(const MemIndex *ix, const float *q, int k, const float *bias,
                         size_t n_bias, MemHit *out, int *n_out);

/* Builds the int8 copy of every row (symmetric, one float scale per row:
 * scale = max|v| / 127), kept up to date by later adds and removes. Costs
 * dim + 4 bytes per row. Calling it again does nothing. */
void mem_index_quantize(MemIndex *ix);

/* Compressed search: int8 dot products of the quantised query with every row
 * (int32 sums) choose the rerank best candidates, which are then scored
 * exactly as mem_index_search() would; the k best of them go to out, best
 * first, with their exact scores. rerank is raised to k when smaller (4k is
 * a good choice). ERR_INVAL when the index is not quantised or k or rerank
 * is outside 1..MEM_INDEX_MAX_K. */
int mem_index_search_q8(const MemIndex *ix, const float *q, int k, int rerank, MemHit *out,
                        int *n_out);

#endif
