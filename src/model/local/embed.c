/* Hashed embeddings: each feature of a text (word, bigram, character
 * trigram) adds its weight, with a sign from its hash, to one of dim
 * coordinates; the vector is then L2-normalised. Signed hashing keeps the
 * inner product an unbiased estimate of the inner product of the full
 * feature vectors (Weinberger et al., 2009). The IDF table counts documents
 * per hash bucket of a fixed size, so it is bounded whatever it reads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/local.h"
#include "model/local/local_int.h"

#define IDF_BITS 18
#define E_WORD    1.0f
#define E_BIGRAM  0.8f
#define E_TRIGRAM 0.35f

struct LocalIdf {
    size_t docs;
    uint32_t df[(size_t)1 << IDF_BITS];
};

/* The features of one text, sorted by hash with repeats counted. */
typedef struct Feats {
    uint64_t *h;
    size_t n, cap;
} Feats;

static void feats_add(void *ctx, uint64_t h, unsigned kind)
{
    Feats *f = ctx;
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 256;
        f->h = xrealloc(f->h, f->cap * sizeof *f->h);
    }
    /* The kind replaces the low two bits, so a word and a trigram never merge. */
    f->h[f->n++] = (h & ~UINT64_C(3)) | (kind == LOCAL_F_WORD ? 0 : kind == LOCAL_F_BIGRAM ? 1 : 2);
}

static int cmp_u64(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return (*x > *y) - (*x < *y);
}

static void feats_build(Feats *f, const char *text, size_t len)
{
    memset(f, 0, sizeof *f);
    local_features(text, len, LOCAL_F_ALL, feats_add, f);
    if (f->n)
        qsort(f->h, f->n, sizeof *f->h, cmp_u64);
}

LocalIdf *local_idf_new(void)
{
    return xcalloc(1, sizeof(LocalIdf));
}

void local_idf_free(LocalIdf *idf)
{
    free(idf);
}

size_t local_idf_docs(const LocalIdf *idf)
{
    return idf->docs;
}

static uint32_t idf_slot(uint64_t h)
{
    return (uint32_t)(h >> (64 - IDF_BITS));
}

void local_idf_add(LocalIdf *idf, const char *text, size_t len)
{
    Feats f;
    feats_build(&f, text ? text : "", text ? len : 0);
    for (size_t i = 0; i < f.n; i++) {
        if (i > 0 && f.h[i] == f.h[i - 1])
            continue; /* once per document */
        uint32_t *df = &idf->df[idf_slot(f.h[i])];
        if (*df < UINT32_MAX)
            (*df)++;
    }
    idf->docs++;
    free(f.h);
}

int local_embed(const LocalIdf *idf, const char *text, size_t len, int dim, float *out, Err *err)
{
    if (dim < LOCAL_EMBED_MIN_DIM || dim > LOCAL_EMBED_MAX_DIM)
        return err_set(err, ERR_INVAL, "embedding dimension %d is outside %d..%d", dim,
                       LOCAL_EMBED_MIN_DIM, LOCAL_EMBED_MAX_DIM);
    Feats f;
    feats_build(&f, text ? text : "", text ? len : 0);
    double *acc = xcalloc((size_t)dim, sizeof *acc);
    for (size_t i = 0; i < f.n;) {
        size_t j = i;
        while (j < f.n && f.h[j] == f.h[i])
            j++;
        uint64_t h = f.h[i];
        unsigned kind = (unsigned)(h & 3);
        double w = 1.0 + log((double)(j - i));
        w *= kind == 0 ? E_WORD : kind == 1 ? E_BIGRAM : E_TRIGRAM;
        if (idf && idf->docs > 0) {
            double df = idf->df[idf_slot(h)];
            w *= log((1.0 + (double)idf->docs) / (1.0 + df)) + 1.0;
        }
        /* Coordinate from the middle bits, sign from the top bit. */
        acc[(h >> 8) % (uint64_t)dim] += local_sign(h) * w;
        i = j;
    }
    double norm = 0;
    for (int k = 0; k < dim; k++)
        norm += acc[k] * acc[k];
    norm = sqrt(norm);
    for (int k = 0; k < dim; k++)
        out[k] = norm > 0 ? (float)(acc[k] / norm) : 0.0f;
    free(acc);
    free(f.h);
    return 0;
}

double local_cosine(const float *a, const float *b, int dim)
{
    double ab = 0, aa = 0, bb = 0;
    for (int k = 0; k < dim; k++) {
        ab += (double)a[k] * b[k];
        aa += (double)a[k] * a[k];
        bb += (double)b[k] * b[k];
    }
    if (aa == 0 || bb == 0)
        return 0;
    return ab / (sqrt(aa) * sqrt(bb));
}
