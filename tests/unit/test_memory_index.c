/* The memory layer's retrieval core: the vector index (exact and int8
 * search) against a naive reference, removal, fusion arithmetic, and the
 * labelled retrieval set of tests/data/retrieval evaluated with BM25, the
 * local embedder and their fusion. Every random input comes from a seeded
 * PRNG, so each run sees the same data. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "memory/fusion.h"
#include "memory/index.h"
#include "model/local.h"

#ifndef TEST_SRC_DIR
#error "meson passes TEST_SRC_DIR (the source root)"
#endif
#define RETRIEVAL_DIR TEST_SRC_DIR "/tests/data/retrieval"

/* ---- seeded data ------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) /* (0, 1) */
{
    return ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
}

/* A random unit vector (Gaussian coordinates, normalised). */
static void rand_unit(uint64_t *s, float *v, int dim)
{
    double n = 0;
    for (int i = 0; i < dim; i++) {
        double g = sqrt(-2 * log(rng_unit(s))) * cos(6.283185307179586 * rng_unit(s));
        v[i] = (float)g;
        n += g * g;
    }
    n = sqrt(n);
    for (int i = 0; i < dim; i++)
        v[i] = (float)(v[i] / n);
}

/* The naive reference: every dot product in double, then sorted. */
typedef struct RefHit {
    int64_t id;
    double score;
} RefHit;

static int cmp_ref(const void *a, const void *b)
{
    const RefHit *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static RefHit *ref_search(const float *vecs, const int64_t *ids, int n, int dim, const float *q)
{
    RefHit *r = malloc((size_t)(n ? n : 1) * sizeof *r);
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < dim; j++)
            s += (double)q[j] * vecs[(size_t)i * dim + j];
        r[i] = (RefHit){ ids[i], s };
    }
    qsort(r, (size_t)n, sizeof *r, cmp_ref);
    return r;
}

/* ---- the index -------------------------------------------------------------- */

Test(memory_index, bad_arguments)
{
    cr_assert_null(mem_index_new(7));
    cr_assert_null(mem_index_new(MEM_INDEX_MAX_DIM + 1));
    MemIndex *ix = mem_index_new(8);
    float v[8] = { 1, 0, 0, 0, 0, 0, 0, 0 };
    Err err = { 0 };
    cr_assert_eq(mem_index_add(ix, 1, v, &err), 0);
    cr_assert_eq(mem_index_add(ix, 1, v, &err), ERR_EXISTS);
    v[3] = NAN;
    cr_assert_eq(mem_index_add(ix, 2, v, &err), ERR_INVAL);
    cr_assert(strstr(err.msg, "not finite"), "%s", err.msg);
    MemHit out[2] = { { -1, -1 }, { -1, -1 } };
    int n = -1;
    cr_assert_eq(mem_index_search(ix, v, 0, out, &n), ERR_INVAL);
    cr_assert_eq(n, -1);
    cr_assert_eq(mem_index_search_q8(ix, v, 1, 4, out, &n), ERR_INVAL, "not quantised yet");
    cr_assert_eq(mem_index_remove(ix, 42), ERR_NOTFOUND);
    cr_assert_eq(mem_index_size(ix), 1);
    mem_index_free(ix);
    mem_index_free(NULL);
}

Test(memory_index, empty_and_small)
{
    MemIndex *ix = mem_index_new(16);
    float q[16] = { 0 };
    q[0] = 1;
    MemHit out[5];
    int n = -1;
    cr_assert_eq(mem_index_search(ix, q, 5, out, &n), 0);
    cr_assert_eq(n, 0);
    Err err = { 0 };
    float v[16] = { 0 };
    for (int i = 0; i < 3; i++) {
        v[i] = 1;
        mem_index_add(ix, 100 + i, v, &err);
        v[i] = 0;
    }
    v[0] = 0.6f, v[1] = 0.8f;
    mem_index_add(ix, 7, v, &err);
    cr_assert_eq(mem_index_search(ix, q, 5, out, &n), 0);
    cr_assert_eq(n, 4, "k larger than the index gives every row");
    cr_assert_eq(out[0].id, 100);
    cr_assert_float_eq(out[0].score, 1.0f, 1e-6);
    cr_assert_eq(out[1].id, 7);
    cr_assert_eq(out[2].id, 101, "a tie is broken by the smaller id");
    cr_assert_eq(out[3].id, 102);
    mem_index_free(ix);
}

/* Equal vectors under many ids: every search returns the smallest ids. */
Test(memory_index, ties_by_smaller_id)
{
    MemIndex *ix = mem_index_new(32);
    mem_index_quantize(ix);
    uint64_t s = 7;
    float v[32], q[32];
    rand_unit(&s, v, 32);
    rand_unit(&s, q, 32);
    Err err = { 0 };
    for (int i = 200; i > 0; i--) /* added in decreasing order */
        cr_assert_eq(mem_index_add(ix, i * 3, v, &err), 0);
    MemHit out[10];
    int n;
    mem_index_search(ix, q, 10, out, &n);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(out[i].id, (i + 1) * 3);
    mem_index_search_q8(ix, q, 10, 10, out, &n);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(out[i].id, (i + 1) * 3);
    mem_index_free(ix);
}

/* Compares a search with the reference: the same scores at each position,
 * and the same ids wherever the reference's neighbours are not within float
 * rounding of each other. */
static void check_against_ref(const MemHit *got, int n, const RefHit *ref, int n_ref, int k,
                              const char *what)
{
    int want = k < n_ref ? k : n_ref;
    cr_assert_eq(n, want, "%s: %d hits, want %d", what, n, want);
    for (int i = 0; i < n; i++) {
        cr_assert(fabs(got[i].score - ref[i].score) < 1e-5, "%s: score %d: %g vs %g", what, i,
                  (double)got[i].score, ref[i].score);
        bool close_prev = i > 0 && ref[i - 1].score - ref[i].score < 1e-5;
        bool close_next = i + 1 < n_ref && ref[i].score - ref[i + 1].score < 1e-5;
        if (!close_prev && !close_next)
            cr_assert_eq(got[i].id, ref[i].id, "%s: position %d", what, i);
    }
}

Test(memory_index, exact_equals_reference)
{
    static const int dims[] = { 8, 9, 15, 16, 31, 64, 100, 128, 384, 512 };
    for (int seed = 1; seed <= 20; seed++) {
        uint64_t s = (uint64_t)seed * 1000003;
        int dim = dims[seed % 10];
        int n = 1 + (int)(rng_next(&s) % 700);
        float *vecs = malloc((size_t)n * dim * sizeof *vecs);
        int64_t *ids = malloc((size_t)n * sizeof *ids);
        MemIndex *ix = mem_index_new(dim);
        Err err = { 0 };
        for (int i = 0; i < n; i++) {
            rand_unit(&s, vecs + (size_t)i * dim, dim);
            ids[i] = (int64_t)(rng_next(&s) >> 1); /* random, distinct in practice */
            cr_assert_eq(mem_index_add(ix, ids[i], vecs + (size_t)i * dim, &err), 0, "%s",
                         err.msg);
        }
        float *q = malloc((size_t)dim * sizeof *q);
        MemHit out[64];
        for (int t = 0; t < 5; t++) {
            rand_unit(&s, q, dim);
            int k = 1 + (int)(rng_next(&s) % 64);
            int got;
            cr_assert_eq(mem_index_search(ix, q, k, out, &got), 0);
            RefHit *ref = ref_search(vecs, ids, n, dim, q);
            char what[64];
            snprintf(what, sizeof what, "seed %d dim %d n %d k %d", seed, dim, n, k);
            check_against_ref(out, got, ref, n, k, what);
            free(ref);
        }
        free(q);
        free(vecs);
        free(ids);
        mem_index_free(ix);
    }
}

/* Adds, removes and re-adds at random, then checks the index against the
 * rows a plain array still holds: search results and the id map. */
Test(memory_index, removal)
{
    const int dim = 24, cap = 600;
    uint64_t s = 99;
    float *vecs = malloc((size_t)cap * dim * sizeof *vecs);
    int64_t *ids = malloc((size_t)cap * sizeof *ids);
    int n = 0;
    MemIndex *ix = mem_index_new(dim);
    mem_index_quantize(ix);
    Err err = { 0 };
    int64_t next_id = 1;
    for (int step = 0; step < 4000; step++) {
        bool add = n == 0 || (n < cap && rng_next(&s) % 100 < 55);
        if (add) {
            rand_unit(&s, vecs + (size_t)n * dim, dim);
            ids[n] = next_id++;
            cr_assert_eq(mem_index_add(ix, ids[n], vecs + (size_t)n * dim, &err), 0);
            n++;
        } else {
            int i = (int)(rng_next(&s) % (uint64_t)n);
            cr_assert_eq(mem_index_remove(ix, ids[i]), 0);
            cr_assert_eq(mem_index_remove(ix, ids[i]), ERR_NOTFOUND);
            n--;
            memcpy(vecs + (size_t)i * dim, vecs + (size_t)n * dim, dim * sizeof *vecs);
            ids[i] = ids[n];
        }
        cr_assert_eq(mem_index_size(ix), (size_t)n);
    }
    cr_assert_gt(n, 100);
    for (int i = 0; i < n; i++) /* every row is still found by its id */
        cr_assert_eq(mem_index_add(ix, ids[i], vecs + (size_t)i * dim, &err), ERR_EXISTS);
    float q[24];
    MemHit out[20], out8[20];
    for (int t = 0; t < 20; t++) {
        rand_unit(&s, q, dim);
        int got, got8;
        mem_index_search(ix, q, 20, out, &got);
        RefHit *ref = ref_search(vecs, ids, n, dim, q);
        check_against_ref(out, got, ref, n, 20, "after removals");
        /* rerank = every row: q8 search is then exact. */
        cr_assert_eq(mem_index_search_q8(ix, q, 20, MEM_INDEX_MAX_K, out8, &got8), 0);
        cr_assert_eq(got8, got);
        for (int i = 0; i < got; i++) {
            cr_assert_eq(out8[i].id, out[i].id);
            cr_assert_eq(out8[i].score, out[i].score);
        }
        free(ref);
    }
    /* Removing everything leaves an empty, usable index. */
    for (int i = 0; i < n; i++)
        cr_assert_eq(mem_index_remove(ix, ids[i]), 0);
    cr_assert_eq(mem_index_size(ix), 0);
    int got = -1;
    mem_index_search(ix, q, 3, out, &got);
    cr_assert_eq(got, 0);
    cr_assert_eq(mem_index_add(ix, 5, q, &err), 0);
    mem_index_search_q8(ix, q, 3, 12, out, &got);
    cr_assert_eq(got, 1);
    cr_assert_eq(out[0].id, 5);
    free(vecs);
    free(ids);
    mem_index_free(ix);
}

/* int8 search finds ≥ 95% of the exact top 10 on random unit vectors. */
Test(memory_index, q8_recall)
{
    const int dims[] = { 64, 384 }, n = 20000, queries = 50, k = 10;
    for (int di = 0; di < 2; di++) {
        int dim = dims[di];
        uint64_t s = 2024 + (uint64_t)dim;
        MemIndex *ix = mem_index_new(dim);
        float *v = malloc((size_t)dim * sizeof *v);
        Err err = { 0 };
        for (int i = 0; i < n / 2; i++) {
            rand_unit(&s, v, dim);
            mem_index_add(ix, i, v, &err);
        }
        mem_index_quantize(ix); /* half before, half after: both paths */
        for (int i = n / 2; i < n; i++) {
            rand_unit(&s, v, dim);
            mem_index_add(ix, i, v, &err);
        }
        size_t plain = (size_t)n * ((size_t)dim * 4 + 8);
        cr_assert_geq(mem_index_bytes(ix), plain + (size_t)n * ((size_t)dim + 4));
        int found = 0;
        MemHit ex[10], q8[10];
        for (int t = 0; t < queries; t++) {
            rand_unit(&s, v, dim);
            int a, b;
            mem_index_search(ix, v, k, ex, &a);
            mem_index_search_q8(ix, v, k, 4 * k, q8, &b);
            cr_assert_eq(a, b);
            for (int i = 0; i < a; i++)
                for (int j = 0; j < b; j++)
                    found += ex[i].id == q8[j].id;
        }
        double recall = (double)found / (queries * k);
        cr_log_info("q8 recall@10 at dim %d, %d vectors, rerank 40: %.4f", dim, n, recall);
        cr_assert_geq(recall, 0.95, "dim %d: recall %.4f", dim, recall);
        free(v);
        mem_index_free(ix);
    }
}

/* ---- fusion ----------------------------------------------------------------- */

Test(memory_index, fusion_math)
{
    const int64_t a[] = { 10, 20, 30 }, b[] = { 30, 40, 10, 10 };
    MemFuseList lists[2] = { { a, 3, 0 }, { b, 4, 0 } };
    MemFused out[8];
    int n = -1;
    Err err = { 0 };
    cr_assert_eq(mem_fuse_rrf(lists, 2, NULL, 8, out, &n, &err), 0);
    cr_assert_eq(n, 4);
    /* 10: 1/61 + 1/63; 30: 1/63 + 1/61 (a tie: smaller id first); 20: 1/62; 40: 1/62 */
    cr_assert_eq(out[0].id, 10);
    cr_assert_eq(out[1].id, 30);
    cr_assert_eq(out[2].id, 20);
    cr_assert_eq(out[3].id, 40);
    cr_assert_float_eq(out[0].score, 1.0 / 61 + 1.0 / 63, 1e-12);
    cr_assert_float_eq(out[2].score, 1.0 / 62, 1e-12);
    cr_assert_eq(out[0].rank[0], 1);
    cr_assert_eq(out[0].rank[1], 3, "the repeat of 10 in b counts once, at its best rank");
    cr_assert_eq(out[2].rank[1], 0, "absent from b");

    /* Weights and k */
    lists[1].weight = 2;
    MemFuseOptions o = { .k = 1 };
    cr_assert_eq(mem_fuse_rrf(lists, 2, &o, 2, out, &n, &err), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(out[0].id, 30); /* 1/4 + 2/2 */
    cr_assert_float_eq(out[0].score, 1.25, 1e-12);
    cr_assert_eq(out[1].id, 10); /* 1/2 + 2/4, ahead of 40's 2/3 */
    cr_assert_float_eq(out[1].score, 1.0, 1e-12);
}

static double age_of(void *ctx, int64_t id)
{
    (void)ctx;
    return id == 30 ? 3600.0 : id == 20 ? -5.0 : 0.0; /* 30 is an hour old */
}

Test(memory_index, fusion_recency_and_errors)
{
    const int64_t a[] = { 30, 20 };
    MemFuseList l = { a, 2, 1 };
    MemFuseOptions o = { .half_life_s = 3600, .age_s = age_of };
    MemFused out[2];
    int n;
    Err err = { 0 };
    cr_assert_eq(mem_fuse_rrf(&l, 1, &o, 2, out, &n, &err), 0);
    /* 30: 1/61 * 1/2 = 0.0082; 20: 1/62 (a negative age counts as 0) */
    cr_assert_eq(out[0].id, 20);
    cr_assert_float_eq(out[0].score, 1.0 / 62, 1e-12);
    cr_assert_float_eq(out[1].score, 0.5 / 61, 1e-12);

    o.age_s = NULL;
    n = -1;
    cr_assert_eq(mem_fuse_rrf(&l, 1, &o, 2, out, &n, &err), ERR_INVAL);
    cr_assert_eq(n, -1);
    l.weight = -1;
    cr_assert_eq(mem_fuse_rrf(&l, 1, NULL, 2, out, &n, &err), ERR_INVAL);
    l.weight = 1;
    cr_assert_eq(mem_fuse_rrf(&l, MEM_FUSE_MAX_LISTS + 1, NULL, 2, out, &n, &err), ERR_INVAL);
    cr_assert_eq(mem_fuse_rrf(&l, 0, NULL, 2, out, &n, &err), 0);
    cr_assert_eq(n, 0);
}
