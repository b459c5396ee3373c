/* The vector index: a dense float32 matrix (row-major, one row per item), an
 * optional int8 copy with one scale per row, the row -> id array and an
 * open-addressing id -> row map. Invariant: rows 0..n-1 of every array
 * describe the same n items, and map[id] == row exactly when ids[row] == id.
 *
 * The kernels are plain C written so that the compiler vectorises them: the
 * float dot product keeps 8 independent partial sums (one per SIMD lane, so
 * no reassociation is needed), the int8 one is an int32 sum the compiler
 * turns into multiply-add instructions. On x86-64 each kernel is also built
 * for AVX2 and chosen at load time (target_clones). */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "memory/index.h"

#define ROWS_MIN     256
#define SCORE_BLOCK  256 /* rows scored per kernel call, then filtered */
#define MAP_EMPTY    UINT32_MAX

#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define KERNEL __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef KERNEL
#define KERNEL
#endif

struct MemIndex {
    int dim;
    size_t n, cap;     /* rows held, rows allocated */
    float *vec;        /* cap * dim */
    int64_t *ids;      /* cap */
    uint32_t *grp;     /* cap: each row's group (0: none) */
    int8_t *q8;        /* cap * dim once quantised, else NULL */
    float *q8_scale;   /* cap once quantised */
    float *q8_l1s;     /* cap once quantised: scale * Σ|code|, for the error bound */
    int64_t *map_key;  /* map_cap slots */
    uint32_t *map_row; /* MAP_EMPTY: a free slot */
    size_t map_cap;    /* a power of two, at least twice n */
};

/* ---- id -> row map: linear probing, backward-shift deletion --------------- */

static size_t map_slot(const MemIndex *ix, int64_t id)
{
    uint64_t x = (uint64_t)id; /* splitmix64's finaliser */
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return (size_t)x & (ix->map_cap - 1);
}

/* The slot holding id, or the free slot where it would go. */
static size_t map_find(const MemIndex *ix, int64_t id)
{
    size_t s = map_slot(ix, id);
    while (ix->map_row[s] != MAP_EMPTY && ix->map_key[s] != id)
        s = (s + 1) & (ix->map_cap - 1);
    return s;
}

static void map_put(MemIndex *ix, int64_t id, uint32_t row)
{
    size_t s = map_find(ix, id);
    ix->map_key[s] = id;
    ix->map_row[s] = row;
}

static void map_resize(MemIndex *ix, size_t cap)
{
    int64_t *keys = ix->map_key;
    uint32_t *rows = ix->map_row;
    size_t old = ix->map_cap;
    ix->map_cap = cap;
    ix->map_key = xmalloc(cap * sizeof *ix->map_key);
    ix->map_row = xmalloc(cap * sizeof *ix->map_row);
    for (size_t s = 0; s < cap; s++)
        ix->map_row[s] = MAP_EMPTY;
    for (size_t s = 0; s < old; s++)
        if (rows[s] != MAP_EMPTY)
            map_put(ix, keys[s], rows[s]);
    free(keys);
    free(rows);
}

/* Empties slot s and moves back the entries after it that would no longer
 * be found (Knuth 6.4, algorithm R), so the map never holds tombstones. */
static void map_delete(MemIndex *ix, size_t s)
{
    size_t mask = ix->map_cap - 1;
    size_t j = s;
    for (;;) {
        ix->map_row[s] = MAP_EMPTY;
        for (;;) {
            j = (j + 1) & mask;
            if (ix->map_row[j] == MAP_EMPTY)
                return;
            size_t home = map_slot(ix, ix->map_key[j]);
            /* j's entry may stay unless its home lies cyclically in (s, j]. */
            bool stays = s <= j ? (s < home && home <= j) : (s < home || home <= j);
            if (!stays)
                break;
        }
        ix->map_key[s] = ix->map_key[j];
        ix->map_row[s] = ix->map_row[j];
        s = j;
    }
}

/* ---- lifecycle ------------------------------------------------------------- */

MemIndex *mem_index_new(int dim)
{
    if (dim < MEM_INDEX_MIN_DIM || dim > MEM_INDEX_MAX_DIM)
        return NULL;
    MemIndex *ix = xcalloc(1, sizeof *ix);
    ix->dim = dim;
    map_resize(ix, 64);
    return ix;
}

void mem_index_free(MemIndex *ix)
{
    if (!ix)
        return;
    free(ix->vec);
    free(ix->ids);
    free(ix->grp);
    free(ix->q8);
    free(ix->q8_scale);
    free(ix->q8_l1s);
    free(ix->map_key);
    free(ix->map_row);
    free(ix);
}

int mem_index_dim(const MemIndex *ix)
{
    return ix->dim;
}

size_t mem_index_size(const MemIndex *ix)
{
    return ix->n;
}

size_t mem_index_bytes(const MemIndex *ix)
{
    size_t d = (size_t)ix->dim;
    size_t b = sizeof *ix + ix->cap * (d * sizeof(float) + sizeof(int64_t) + sizeof(uint32_t)) +
               ix->map_cap * (sizeof(int64_t) + sizeof(uint32_t));
    if (ix->q8)
        b += ix->cap * (d + 2 * sizeof(float));
    return b;
}

/* ---- quantisation ---------------------------------------------------------- */

/* v -> out[0..dim) in -127..127 with out * scale ≈ v; returns scale (0 for a
 * zero vector, whose codes are all 0). */
static float quantize_row(const float *v, int dim, int8_t *out)
{
    float m = 0;
    for (int i = 0; i < dim; i++)
        m = fmaxf(m, fabsf(v[i]));
    if (m == 0) {
        memset(out, 0, (size_t)dim);
        return 0;
    }
    float inv = 127.0f / m;
    for (int i = 0; i < dim; i++) {
        long c = lrintf(v[i] * inv);
        out[i] = (int8_t)(c > 127 ? 127 : c < -127 ? -127 : c);
    }
    return m / 127.0f;
}

static void quantize_at(MemIndex *ix, size_t r)
{
    size_t d = (size_t)ix->dim;
    const int8_t *c = ix->q8 + r * d;
    ix->q8_scale[r] = quantize_row(ix->vec + r * d, ix->dim, ix->q8 + r * d);
    int32_t l1 = 0;
    for (size_t i = 0; i < d; i++)
        l1 += c[i] < 0 ? -c[i] : c[i];
    ix->q8_l1s[r] = ix->q8_scale[r] * (float)l1;
}

void mem_index_quantize(MemIndex *ix)
{
    if (ix->q8)
        return;
    size_t d = (size_t)ix->dim;
    ix->q8 = xmalloc((ix->cap ? ix->cap : 1) * d);
    ix->q8_scale = xmalloc((ix->cap ? ix->cap : 1) * sizeof(float));
    ix->q8_l1s = xmalloc((ix->cap ? ix->cap : 1) * sizeof(float));
    for (size_t r = 0; r < ix->n; r++)
        quantize_at(ix, r);
}

/* ---- changes --------------------------------------------------------------- */

static void rows_grow(MemIndex *ix)
{
    size_t cap = ix->cap ? ix->cap * 2 : ROWS_MIN;
    if (cap > MEM_INDEX_MAX_ROWS)
        cap = MEM_INDEX_MAX_ROWS;
    size_t d = (size_t)ix->dim;
    ix->vec = xrealloc(ix->vec, cap * d * sizeof *ix->vec);
    ix->ids = xrealloc(ix->ids, cap * sizeof *ix->ids);
    ix->grp = xrealloc(ix->grp, cap * sizeof *ix->grp);
    if (ix->q8) {
        ix->q8 = xrealloc(ix->q8, cap * d);
        ix->q8_scale = xrealloc(ix->q8_scale, cap * sizeof *ix->q8_scale);
        ix->q8_l1s = xrealloc(ix->q8_l1s, cap * sizeof *ix->q8_l1s);
    }
    ix->cap = cap;
}

int mem_index_add(MemIndex *ix, int64_t id, const float *v, Err *err)
{
    size_t d = (size_t)ix->dim;
    for (size_t i = 0; i < d; i++)
        if (!isfinite(v[i]))
            return err_set(err, ERR_INVAL, "vector of item %lld: coordinate %zu is not finite",
                           (long long)id, i);
    if (ix->map_row[map_find(ix, id)] != MAP_EMPTY)
        return err_set(err, ERR_EXISTS, "item %lld is already in the index", (long long)id);
    if (ix->n == MEM_INDEX_MAX_ROWS)
        return err_set(err, ERR_TOOBIG, "the index holds its maximum of %zu vectors",
                       MEM_INDEX_MAX_ROWS);
    if (ix->n == ix->cap)
        rows_grow(ix);
    if ((ix->n + 1) * 2 > ix->map_cap)
        map_resize(ix, ix->map_cap * 2);
    size_t r = ix->n++;
    memcpy(ix->vec + r * d, v, d * sizeof *v);
    ix->ids[r] = id;
    ix->grp[r] = 0;
    if (ix->q8)
        quantize_at(ix, r);
    map_put(ix, id, (uint32_t)r);
    return 0;
}

int mem_index_set_group(MemIndex *ix, int64_t id, uint32_t group)
{
    uint32_t r = ix->map_row[map_find(ix, id)];
    if (r == MAP_EMPTY)
        return ERR_NOTFOUND;
    ix->grp[r] = group;
    return 0;
}

const float *mem_index_vector(const MemIndex *ix, int64_t id)
{
    uint32_t r = ix->map_row[map_find(ix, id)];
    return r == MAP_EMPTY ? NULL : ix->vec + (size_t)r * (size_t)ix->dim;
}

int mem_index_remove(MemIndex *ix, int64_t id)
{
    size_t s = map_find(ix, id);
    if (ix->map_row[s] == MAP_EMPTY)
        return ERR_NOTFOUND;
    size_t r = ix->map_row[s], last = ix->n - 1, d = (size_t)ix->dim;
    map_delete(ix, s);
    if (r != last) {
        memcpy(ix->vec + r * d, ix->vec + last * d, d * sizeof *ix->vec);
        ix->ids[r] = ix->ids[last];
        ix->grp[r] = ix->grp[last];
        if (ix->q8) {
            memcpy(ix->q8 + r * d, ix->q8 + last * d, d);
            ix->q8_scale[r] = ix->q8_scale[last];
            ix->q8_l1s[r] = ix->q8_l1s[last];
        }
        ix->map_row[map_find(ix, ix->ids[r])] = (uint32_t)r;
    }
    ix->n--;
    return 0;
}

/* ---- kernels --------------------------------------------------------------- */

static inline float dot_f32(const float *restrict a, const float *restrict b, int dim)
{
    float s[8] = { 0 };
    int i = 0;
    for (; i + 8 <= dim; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += a[i + j] * b[i + j];
    for (; i < dim; i++)
        s[0] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

/* out[r] = q · rows[r] for r in 0..n. */
KERNEL static void scores_f32(const float *restrict q, const float *restrict rows, size_t n,
                              int dim, float *restrict out)
{
    for (size_t r = 0; r < n; r++)
        out[r] = dot_f32(q, rows + r * (size_t)dim, dim);
}

/* out[r] = q · rows[r] in integers, for r in 0..n; |sum| <= 4096 * 127^2 fits. */
KERNEL static void scores_i8(const int8_t *restrict q, const int8_t *restrict rows, size_t n,
                             int dim, int32_t *restrict out)
{
    for (size_t r = 0; r < n; r++) {
        const int8_t *restrict v = rows + r * (size_t)dim;
        int32_t s = 0;
        for (int i = 0; i < dim; i++)
            s += (int32_t)q[i] * (int32_t)v[i];
        out[r] = s;
    }
}

/* ---- a bounded min-heap: the worst kept hit at the root ------------------- */

typedef struct Heap {
    MemHit *h;
    int n, cap;
} Heap;

/* a ranks below b: a lower score, or the same score and a larger id. */
static inline bool worse(MemHit a, MemHit b)
{
    return a.score < b.score || (a.score == b.score && a.id > b.id);
}

static void heap_down(Heap *hp, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < hp->n && worse(hp->h[l], hp->h[m]))
            m = l;
        if (r < hp->n && worse(hp->h[r], hp->h[m]))
            m = r;
        if (m == i)
            return;
        MemHit t = hp->h[i];
        hp->h[i] = hp->h[m];
        hp->h[m] = t;
        i = m;
    }
}

static void heap_push(Heap *hp, MemHit x)
{
    if (hp->n == hp->cap) {
        if (!worse(hp->h[0], x))
            return;
        hp->h[0] = x;
        heap_down(hp, 0);
        return;
    }
    int i = hp->n++;
    hp->h[i] = x;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!worse(hp->h[i], hp->h[p]))
            break;
        MemHit t = hp->h[i];
        hp->h[i] = hp->h[p];
        hp->h[p] = t;
        i = p;
    }
}

/* The score a row must beat to enter a full heap (-inf while it has room). */
static inline float heap_floor(const Heap *hp)
{
    return hp->n == hp->cap ? hp->h[0].score : -INFINITY;
}

static int cmp_hit(const void *a, const void *b)
{
    const MemHit *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Sorts the heap best first into out. */
static void heap_drain(Heap *hp, MemHit *out, int *n_out)
{
    qsort(hp->h, (size_t)hp->n, sizeof *hp->h, cmp_hit);
    memcpy(out, hp->h, (size_t)hp->n * sizeof *out);
    *n_out = hp->n;
}

/* ---- search ---------------------------------------------------------------- */

int mem_index_search(const MemIndex *ix, const float *q, int k, MemHit *out, int *n_out)
{
    return mem_index_search_biased(ix, q, k, NULL, 0, out, n_out);
}

/* Exact search over the int8 copy: every row's int8 score A comes with a
 * bound B on |exact - A| (below), so a row whose A + B is below the k-th
 * best A - B seen cannot be in the top k; the rows left are scored exactly.
 * The result is the float scan's, reading a quarter of the bytes.
 *
 * With v = s·c + e (|e_i| <= s/2) for the row and q = t·p + f (|f_i| <=
 * t/2) for the query, q·v - t·s·(p·c) = t Σ p_i e_i + s Σ c_i f_i + Σ f_i e_i,
 * so |q·v - A| <= (t/2)·(s·(Σ|p_i| + dim/2) + s·Σ|c_i|). A margin covers
 * the float rounding of dot_f32 and of the bound itself. */
typedef struct Cand {
    uint32_t row;
    float upper;
} Cand;

static int search_q8_exact(const MemIndex *ix, const float *q, int k, const float *bias,
                           size_t n_bias, MemHit *out, int *n_out)
{
    size_t d = (size_t)ix->dim;
    int8_t *qq = xmalloc(d);
    float t = quantize_row(q, ix->dim, qq);
    float p1 = 0, q1 = 0;
    for (size_t i = 0; i < d; i++) {
        p1 += (float)(qq[i] < 0 ? -qq[i] : qq[i]);
        q1 += fabsf(q[i]);
    }
    /* dot_f32 errs by at most about dim·eps·max|v|·Σ|q|; 4x that, and a
     * relative 1e-5 for the bound's own arithmetic */
    float round_k = 4.0f * (float)d * FLT_EPSILON * 127.0f * q1;
    Heap lower = { .h = xmalloc((size_t)k * sizeof(MemHit)), .cap = k };
    Cand *cand = NULL;
    size_t n_cand = 0, cap_cand = 0;
    int32_t isc[SCORE_BLOCK];
    for (size_t r0 = 0; r0 < ix->n; r0 += SCORE_BLOCK) {
        size_t m = ix->n - r0 < SCORE_BLOCK ? ix->n - r0 : SCORE_BLOCK;
        scores_i8(qq, ix->q8 + r0 * d, m, ix->dim, isc);
        float tau = heap_floor(&lower);
        for (size_t j = 0; j < m; j++) {
            size_t r = r0 + j;
            float sr = ix->q8_scale[r];
            float a = t * sr * (float)isc[j];
            if (bias) {
                uint32_t g = ix->grp[r];
                a += g < n_bias ? bias[g] : 0.0f;
            }
            float b = 0.5f * t * (sr * (p1 + 0.5f * (float)d) + ix->q8_l1s[r]);
            b = b * 1.00001f + sr * round_k + 1e-6f * fabsf(a);
            if (a + b < tau)
                continue;
            if (n_cand == cap_cand) {
                cap_cand = cap_cand ? cap_cand * 2 : 256;
                cand = xrealloc(cand, cap_cand * sizeof *cand);
            }
            cand[n_cand++] = (Cand){ .row = (uint32_t)r, .upper = a + b };
            heap_push(&lower, (MemHit){ .id = ix->ids[r], .score = a - b });
            tau = heap_floor(&lower);
        }
    }
    float tau = heap_floor(&lower);
    Heap hp = { .h = xmalloc((size_t)k * sizeof(MemHit)), .cap = k };
    for (size_t i = 0; i < n_cand; i++) {
        if (cand[i].upper < tau)
            continue;
        size_t r = cand[i].row;
        float sc = dot_f32(q, ix->vec + r * d, ix->dim);
        if (bias) {
            uint32_t g = ix->grp[r];
            sc += g < n_bias ? bias[g] : 0.0f;
        }
        heap_push(&hp, (MemHit){ .id = ix->ids[r], .score = sc });
    }
    heap_drain(&hp, out, n_out);
    free(hp.h);
    free(lower.h);
    free(cand);
    free(qq);
    return 0;
}

int mem_index_search_biased(const MemIndex *ix, const float *q, int k, const float *bias,
                            size_t n_bias, MemHit *out, int *n_out)
{
    if (k < 1 || k > MEM_INDEX_MAX_K)
        return ERR_INVAL;
    if (ix->q8)
        return search_q8_exact(ix, q, k, bias, n_bias, out, n_out);
    return mem_index_search_f32(ix, q, k, bias, n_bias, out, n_out);
}

int mem_index_search_f32(const MemIndex *ix, const float *q, int k, const float *bias,
                         size_t n_bias, MemHit *out, int *n_out)
{
    if (k < 1 || k > MEM_INDEX_MAX_K)
        return ERR_INVAL;
    size_t d = (size_t)ix->dim;
    Heap hp = { .h = xmalloc((size_t)k * sizeof(MemHit)), .cap = k };
    float sc[SCORE_BLOCK];
    for (size_t r0 = 0; r0 < ix->n; r0 += SCORE_BLOCK) {
        size_t m = ix->n - r0 < SCORE_BLOCK ? ix->n - r0 : SCORE_BLOCK;
        scores_f32(q, ix->vec + r0 * d, m, ix->dim, sc);
        if (bias)
            for (size_t j = 0; j < m; j++) {
                uint32_t g = ix->grp[r0 + j];
                sc[j] += g < n_bias ? bias[g] : 0.0f;
            }
        float floor = heap_floor(&hp);
        for (size_t j = 0; j < m; j++) {
            if (sc[j] < floor)
                continue;
            heap_push(&hp, (MemHit){ .id = ix->ids[r0 + j], .score = sc[j] });
            floor = heap_floor(&hp);
        }
    }
    heap_drain(&hp, out, n_out);
    free(hp.h);
    return 0;
}

int mem_index_search_q8(const MemIndex *ix, const float *q, int k, int rerank, MemHit *out,
                        int *n_out)
{
    if (!ix->q8 || k < 1 || k > MEM_INDEX_MAX_K || rerank < 1 || rerank > MEM_INDEX_MAX_K)
        return ERR_INVAL;
    if (rerank < k)
        rerank = k;
    size_t d = (size_t)ix->dim;
    int8_t *qq = xmalloc(d);
    float qs = quantize_row(q, ix->dim, qq);
    /* Candidates by approximate score, ties by smaller id as in the end result. */
    Heap cand = { .h = xmalloc((size_t)rerank * sizeof(MemHit)), .cap = rerank };
    int32_t isc[SCORE_BLOCK];
    for (size_t r0 = 0; r0 < ix->n; r0 += SCORE_BLOCK) {
        size_t m = ix->n - r0 < SCORE_BLOCK ? ix->n - r0 : SCORE_BLOCK;
        scores_i8(qq, ix->q8 + r0 * d, m, ix->dim, isc);
        float floor = heap_floor(&cand);
        for (size_t j = 0; j < m; j++) {
            float s = qs * ix->q8_scale[r0 + j] * (float)isc[j];
            if (s < floor)
                continue;
            heap_push(&cand, (MemHit){ .id = ix->ids[r0 + j], .score = s });
            floor = heap_floor(&cand);
        }
    }
    Heap hp = { .h = xmalloc((size_t)k * sizeof(MemHit)), .cap = k };
    for (int i = 0; i < cand.n; i++) {
        size_t r = ix->map_row[map_find(ix, cand.h[i].id)];
        heap_push(&hp, (MemHit){ .id = cand.h[i].id, .score = dot_f32(q, ix->vec + r * d, ix->dim) });
    }
    heap_drain(&hp, out, n_out);
    free(hp.h);
    free(cand.h);
    free(qq);
    return 0;
}
