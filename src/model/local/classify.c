/* Multinomial naive Bayes over hashed features, trained online, with a
 * calibrated probability. Invariant: labels[c].total is the sum of
 * labels[c].counts, and any[b] the sum over labels of counts[b], so the
 * smoothing vocabulary (buckets with any[b] > 0) is kept exactly as counts
 * grow.
 *
 * Calibration: naive Bayes treats overlapping features (a word, its bigrams,
 * its trigrams) as independent evidence, so its raw posteriors are close to
 * 0 or 1. The model keeps the feature vectors of its last LOCAL_NB_CALIB_MAX
 * examples; a fit scores each of them leave-one-out (its own counts taken
 * out of its label, which is exact for naive Bayes) and picks the
 * temperature T that minimises the log loss of softmax(score / T) over them
 * (a golden-section search: the loss is convex in 1/T). The fit runs lazily,
 * at the first classification after the examples grew by an eighth since the
 * last fit. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "model/local.h"
#include "model/local/local_int.h"

#define ALPHA           0.05 /* additive smoothing per bucket */
#define W_WORD          1.0
#define W_BIGRAM        0.7
#define W_TRIGRAM       0.25
#define CALIB_MAX       2048 /* examples kept for the temperature fit */
#define CALIB_MIN       12   /* fewer examples: the default temperature */
#define DEFAULT_T       4.0  /* before a fit: about what fits give on real mail (3.8) */

typedef struct Label {
    char name[LOCAL_LABEL_MAX + 1];
    double docs;   /* examples learned */
    double total;  /* sum of counts */
    float *counts; /* per bucket */
} Label;

/* One example's features, kept for the calibration fit. */
typedef struct Example {
    uint32_t *idx;
    float *w;
    uint32_t n;
    int label;
    double sum;
} Example;

typedef struct Calib {
    pthread_mutex_t mu;
    double temperature;
    size_t fitted_at; /* examples when fitted; 0: never */
} Calib;

struct LocalNB {
    int bits;
    size_t buckets;
    Label labels[LOCAL_MAX_LABELS];
    int nlabels;
    float *any;
    size_t vocab;
    size_t examples;
    Example ring[CALIB_MAX];
    size_t ring_len, ring_next;
    Calib *cal; /* written by const readers under cal->mu */
};

/* A document's features: (bucket, weight) pairs, merged and tf-dampened. */
typedef struct Doc {
    uint32_t *idx;
    float *w;
    size_t n, cap;
    int bits;
} Doc;

static void doc_feature(void *ctx, uint64_t h, unsigned kind)
{
    Doc *d = ctx;
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 256;
        d->idx = xrealloc(d->idx, d->cap * sizeof *d->idx);
        d->w = xrealloc(d->w, d->cap * sizeof *d->w);
    }
    d->idx[d->n] = local_bucket(h, d->bits);
    d->w[d->n] = (float)(kind == LOCAL_F_WORD ? W_WORD : kind == LOCAL_F_BIGRAM ? W_BIGRAM : W_TRIGRAM);
    d->n++;
}

static int cmp_pair(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return (*x > *y) - (*x < *y);
}

/* Sorts by bucket, sums repeats and replaces each sum s by log(1 + s). */
static void doc_build(Doc *d, const char *text, size_t len, int bits)
{
    memset(d, 0, sizeof *d);
    d->bits = bits;
    local_features(text, len, LOCAL_F_ALL, doc_feature, d);
    if (d->n == 0)
        return;
    /* Sort (bucket, weight) pairs packed into one 64-bit key each. */
    uint64_t *pairs = xmalloc(d->n * sizeof *pairs);
    for (size_t i = 0; i < d->n; i++) {
        uint32_t wbits;
        memcpy(&wbits, &d->w[i], sizeof wbits);
        pairs[i] = ((uint64_t)d->idx[i] << 32) | wbits;
    }
    qsort(pairs, d->n, sizeof *pairs, cmp_pair);
    size_t o = 0;
    for (size_t i = 0; i < d->n; i++) {
        uint32_t b = (uint32_t)(pairs[i] >> 32), wbits = (uint32_t)pairs[i];
        float w;
        memcpy(&w, &wbits, sizeof w);
        if (o > 0 && d->idx[o - 1] == b) {
            d->w[o - 1] += w;
        } else {
            d->idx[o] = b;
            d->w[o] = w;
            o++;
        }
    }
    free(pairs);
    d->n = o;
    for (size_t i = 0; i < o; i++)
        d->w[i] = (float)log1p(d->w[i]);
}

static void doc_done(Doc *d)
{
    free(d->idx);
    free(d->w);
}

LocalNB *local_nb_new(int hash_bits)
{
    if (hash_bits == 0)
        hash_bits = 18;
    if (hash_bits < 10)
        hash_bits = 10;
    if (hash_bits > 20)
        hash_bits = 20;
    LocalNB *m = xcalloc(1, sizeof *m);
    m->bits = hash_bits;
    m->buckets = (size_t)1 << hash_bits;
    m->any = xcalloc(m->buckets, sizeof *m->any);
    m->cal = xcalloc(1, sizeof *m->cal);
    pthread_mutex_init(&m->cal->mu, NULL);
    m->cal->temperature = DEFAULT_T;
    return m;
}

void local_nb_free(LocalNB *m)
{
    if (!m)
        return;
    for (int c = 0; c < m->nlabels; c++)
        free(m->labels[c].counts);
    for (size_t i = 0; i < m->ring_len; i++) {
        free(m->ring[i].idx);
        free(m->ring[i].w);
    }
    free(m->any);
    pthread_mutex_destroy(&m->cal->mu);
    free(m->cal);
    free(m);
}

static bool label_valid(const char *label)
{
    size_t n = label ? strlen(label) : 0;
    if (n == 0 || n > LOCAL_LABEL_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = label[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* The index of label, creating it when create is set; -1 when unknown, or
 * ERR_TOOBIG when full. */
static int label_find(LocalNB *m, const char *label, bool create)
{
    for (int c = 0; c < m->nlabels; c++)
        if (strcmp(m->labels[c].name, label) == 0)
            return c;
    if (!create)
        return -1;
    if (m->nlabels == LOCAL_MAX_LABELS)
        return ERR_TOOBIG;
    Label *l = &m->labels[m->nlabels];
    memset(l, 0, sizeof *l);
    memcpy(l->name, label, strlen(label) + 1);
    l->counts = xcalloc(m->buckets, sizeof *l->counts);
    return m->nlabels++;
}

static void counts_add(LocalNB *m, int c, const Doc *d, double scale)
{
    Label *l = &m->labels[c];
    for (size_t i = 0; i < d->n; i++) {
        float add = (float)(d->w[i] * scale);
        if (m->any[d->idx[i]] == 0.0f && add > 0.0f)
            m->vocab++;
        l->counts[d->idx[i]] += add;
        m->any[d->idx[i]] += add;
        l->total += add;
    }
}

int local_nb_add(LocalNB *m, const char *text, size_t len, const char *label, Err *err)
{
    if (!label_valid(label))
        return err_set(err, ERR_INVAL, "label '%.40s' is not [a-z0-9_-]{1,%d}",
                       label ? label : "", LOCAL_LABEL_MAX);
    int c = label_find(m, label, true);
    if (c < 0)
        return err_set(err, ERR_TOOBIG, "label '%s' would be label %d; at most %d", label,
                       LOCAL_MAX_LABELS + 1, LOCAL_MAX_LABELS);
    Doc d;
    doc_build(&d, text ? text : "", text ? len : 0, m->bits);
    counts_add(m, c, &d, 1.0);
    m->labels[c].docs += 1.0;
    m->examples++;

    Example *e = &m->ring[m->ring_next];
    if (m->ring_len == CALIB_MAX) {
        free(e->idx);
        free(e->w);
    } else {
        m->ring_len++;
    }
    m->ring_next = (m->ring_next + 1) % CALIB_MAX;
    e->idx = d.idx; /* the example keeps the document's arrays */
    e->w = d.w;
    e->n = (uint32_t)d.n;
    e->label = c;
    e->sum = 0;
    for (size_t i = 0; i < d.n; i++)
        e->sum += d.w[i];
    return 0;
}

void local_nb_seed(LocalNB *m, const char *label, const char *const *keywords, size_t n)
{
    if (!label_valid(label))
        return;
    int c = label_find(m, label, true);
    if (c < 0)
        return;
    for (size_t k = 0; k < n; k++) {
        if (!keywords[k])
            continue;
        Doc d;
        doc_build(&d, keywords[k], strlen(keywords[k]), m->bits);
        counts_add(m, c, &d, LOCAL_NB_SEED_WEIGHT);
        doc_done(&d);
    }
}

size_t local_nb_examples(const LocalNB *m)
{
    return m->examples;
}

/* Log-scores of every label for document (idx, w, n); when out_label >= 0
 * the document is one of that label's examples and is taken out of it
 * first (leave-one-out). A feature no label has seen says nothing about
 * the label and is left out: its smoothed likelihood differs between labels
 * only through their totals, so a long text of unseen words would go to the
 * label with the least training (the shortest seed rule). */
static void scores_raw(const LocalNB *m, const uint32_t *idx, const float *w, size_t n,
                       int out_label, double out_sum, double *z)
{
    double docs = (double)m->examples - (out_label >= 0 ? 1.0 : 0.0);
    double vocab = (double)m->vocab + 1.0;
    for (int c = 0; c < m->nlabels; c++) {
        const Label *l = &m->labels[c];
        bool loo = c == out_label;
        double ldocs = l->docs - (loo ? 1.0 : 0.0);
        double total = l->total - (loo ? out_sum : 0.0);
        if (total < 0)
            total = 0;
        double s = log((ldocs + 1.0) / (docs + m->nlabels));
        double denom = log(total + ALPHA * vocab);
        for (size_t i = 0; i < n; i++) {
            if ((double)m->any[idx[i]] - (out_label >= 0 ? w[i] : 0.0f) <= 1e-6)
                continue;
            double cnt = l->counts[idx[i]] - (loo ? w[i] : 0.0f);
            if (cnt < 0)
                cnt = 0;
            s += w[i] * (log(cnt + ALPHA) - denom);
        }
        z[c] = s;
    }
}

/* softmax(z * beta) into p; returns log p[y] when y >= 0. */
static double softmax(const double *z, int n, double beta, double *p, int y)
{
    double mx = -INFINITY;
    for (int c = 0; c < n; c++)
        if (z[c] * beta > mx)
            mx = z[c] * beta;
    double sum = 0;
    for (int c = 0; c < n; c++)
        sum += exp(z[c] * beta - mx);
    double lse = mx + log(sum);
    if (p)
        for (int c = 0; c < n; c++)
            p[c] = exp(z[c] * beta - lse);
    return y >= 0 ? z[y] * beta - lse : 0;
}

static double nll(const double *z, size_t rows, int n, const int *ys, double beta)
{
    double s = 0;
    for (size_t r = 0; r < rows; r++)
        s -= softmax(z + r * (size_t)n, n, beta, NULL, ys[r]);
    return s;
}

static void calibrate(const LocalNB *m)
{
    int labelled = 0;
    for (int c = 0; c < m->nlabels; c++)
        labelled += m->labels[c].docs > 0;
    if (m->ring_len < CALIB_MIN || labelled < 2) {
        m->cal->temperature = DEFAULT_T;
        m->cal->fitted_at = m->examples;
        return;
    }
    int L = m->nlabels;
    size_t rows = m->ring_len;
    double *z = xmalloc(rows * (size_t)L * sizeof *z);
    int *ys = xmalloc(rows * sizeof *ys);
    for (size_t r = 0; r < rows; r++) {
        const Example *e = &m->ring[r];
        scores_raw(m, e->idx, e->w, e->n, e->label, e->sum, z + r * (size_t)L);
        ys[r] = e->label;
    }
    /* Golden-section search for beta = 1/T over log(beta) in [-9, 2]. */
    const double g = (sqrt(5.0) - 1) / 2;
    double a = -9.0, b = 2.0;
    double x1 = b - g * (b - a), x2 = a + g * (b - a);
    double f1 = nll(z, rows, L, ys, exp(x1)), f2 = nll(z, rows, L, ys, exp(x2));
    for (int it = 0; it < 60 && b - a > 1e-4; it++) {
        if (f1 < f2) {
            b = x2; x2 = x1; f2 = f1;
            x1 = b - g * (b - a);
            f1 = nll(z, rows, L, ys, exp(x1));
        } else {
            a = x1; x1 = x2; f1 = f2;
            x2 = a + g * (b - a);
            f2 = nll(z, rows, L, ys, exp(x2));
        }
    }
    m->cal->temperature = 1.0 / exp((a + b) / 2);
    m->cal->fitted_at = m->examples;
    free(z);
    free(ys);
}

static double temperature(const LocalNB *m)
{
    pthread_mutex_lock(&m->cal->mu);
    size_t at = m->cal->fitted_at;
    if (at == 0 || (m->examples - at) * 8 >= at)
        if (m->examples != at)
            calibrate(m);
    double t = m->cal->temperature;
    pthread_mutex_unlock(&m->cal->mu);
    return t;
}

double local_nb_temperature(const LocalNB *m)
{
    return temperature(m);
}

int local_nb_classify(const LocalNB *m, const char *text, size_t len, char *label_out,
                      size_t label_size, double *prob_out, json_t **scores, Err *err)
{
    if (m->nlabels == 0)
        return err_set(err, ERR_NOTFOUND, "the local classifier knows no label yet");
    double t = temperature(m);
    Doc d;
    doc_build(&d, text ? text : "", text ? len : 0, m->bits);
    double z[LOCAL_MAX_LABELS], p[LOCAL_MAX_LABELS];
    scores_raw(m, d.idx, d.w, d.n, -1, 0, z);
    doc_done(&d);
    softmax(z, m->nlabels, 1.0 / t, p, -1);
    int best = 0;
    for (int c = 1; c < m->nlabels; c++)
        if (p[c] > p[best])
            best = c;
    size_t n = strlen(m->labels[best].name);
    if (n + 1 > label_size)
        return err_set(err, ERR_TOOBIG, "label '%s' needs %zu bytes, %zu given",
                       m->labels[best].name, n + 1, label_size);
    if (scores) {
        json_t *o = json_object();
        for (int c = 0; c < m->nlabels; c++)
            json_object_set_new(o, m->labels[c].name, json_real(p[c]));
        *scores = o;
    }
    memcpy(label_out, m->labels[best].name, n + 1);
    if (prob_out)
        *prob_out = p[best];
    return 0;
}
