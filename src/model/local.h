/* The built-in `local` model tier: classification, extraction, extractive
 * summaries and hashed embeddings, computed in memory with no network, no
 * database and no global state. Every entry point reads at most
 * LOCAL_MAX_TEXT bytes of its text (the rest is ignored), so its time and
 * memory are bounded whatever it is given. Text is UTF-8; invalid bytes are
 * read as spaces. See docs/internals/model_local.md. */
#ifndef BUREAU_MODEL_LOCAL_H
#define BUREAU_MODEL_LOCAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define LOCAL_MAX_TEXT   (64 * 1024) /* bytes of a text that are read */
#define LOCAL_MAX_LABELS 64
#define LOCAL_LABEL_MAX  32          /* bytes of a label, [a-z0-9_-]{1,32} */
#define LOCAL_EMBED_DIM  384         /* the default embedding dimension */
#define LOCAL_EMBED_MIN_DIM 8
#define LOCAL_EMBED_MAX_DIM 4096

/* ---- features (features.c) ---------------------------------------------- */

/* Feature kinds, as flags. */
enum {
    LOCAL_F_WORD    = 1, /* a word (token) */
    LOCAL_F_BIGRAM  = 2, /* two adjacent words */
    LOCAL_F_TRIGRAM = 4, /* three characters of one word, "^" and "$" marking its ends */
    LOCAL_F_ALL     = 7,
};

/* Writes the normalised form of text[0..min(len, LOCAL_MAX_TEXT)) to out,
 * which must hold that many bytes plus one; returns its length (never more
 * than the input's). ASCII and Latin-1 capitals (À-Þ) are lower-cased, the
 * typographic apostrophe ’ becomes ', invalid UTF-8 bytes and control
 * characters become spaces; out is NUL-terminated. */
size_t local_normalize(const char *text, size_t len, char *out);

/* 64-bit FNV-1a of p[0..n) from seed (0: the FNV offset basis), finished by
 * a 64-bit mixer so that every output bit depends on every input bit. */
uint64_t local_hash(const void *p, size_t n, uint64_t seed);

/* The bucket (0 .. 2^bits - 1) and the sign (+1 or -1) of a feature hash,
 * taken from independent bits of it. bits is 1..32. */
static inline uint32_t local_bucket(uint64_t h, int bits)
{
    return (uint32_t)(h & ((UINT64_C(1) << bits) - 1));
}
static inline int local_sign(uint64_t h)
{
    return (h >> 63) ? -1 : 1;
}

/* Called once per feature occurrence, in text order; kind is one LOCAL_F_*. */
typedef void (*LocalFeatureFn)(void *ctx, uint64_t hash, unsigned kind);

/* Normalises text, splits it into words (runs of letters and digits, with
 * apostrophes inside a word kept; digits read as 0 so that amounts and dates
 * share features) and calls fn for each feature of the kinds asked for.
 * Returns the number of features reported. */
size_t local_features(const char *text, size_t len, unsigned kinds, LocalFeatureFn fn, void *ctx);

/* ---- classifier (classify.c) --------------------------------------------- */

/* A multinomial naive Bayes classifier over hashed features, trained online,
 * with a probability calibrated by a temperature fitted on leave-one-out
 * predictions of the examples it was trained on.
 * Thread-safety: local_nb_classify() may run on several threads at once;
 * local_nb_add() and local_nb_seed() must not run alongside anything. */
typedef struct LocalNB LocalNB;

/* hash_bits is clamped to 10..20 (0: 18); each label holds 2^hash_bits
 * floats of counts (1 MiB at 18). */
LocalNB *local_nb_new(int hash_bits);
void local_nb_free(LocalNB *m);

/* Learns one example. ERR_INVAL for a bad label, ERR_TOOBIG when it would
 * be the 65th label. text may be empty. */
int local_nb_add(LocalNB *m, const char *text, size_t len, const char *label, Err *err);

/* Adds keyword rules for label (creating it when new and valid; a bad label
 * or a 65th label is ignored, as keywords come from checked configuration):
 * each keyword's features count as if seen LOCAL_NB_SEED_WEIGHT times in
 * label's mail, so that a model with no examples already leans its way. */
#define LOCAL_NB_SEED_WEIGHT 4.0
void local_nb_seed(LocalNB *m, const char *label, const char *const *keywords, size_t n);

/* The most probable label (copied into label_out, NUL-terminated; ERR_TOOBIG
 * when label_size is too small), its calibrated probability in *prob_out
 * (may be NULL) and, when scores is not NULL, a new object {label: prob} for
 * every label. ERR_NOTFOUND when the model knows no label. Outputs are
 * written only on success. */
int local_nb_classify(const LocalNB *m, const char *text, size_t len, char *label_out,
                      size_t label_size, double *prob_out, json_t **scores, Err *err);

/* Examples learned (seeds are not examples). */
size_t local_nb_examples(const LocalNB *m);

/* The temperature in use (fitting it first when examples were added since
 * the last fit): posterior ∝ exp(log p / T). */
double local_nb_temperature(const LocalNB *m);

/* ---- extractor (extract.c) ----------------------------------------------- */

/* Finds contact and business details in a message:
 * {emails:[...], phones:[...], money:[{amount_minor, currency, text}],
 *  dates:[{date: "YYYY-MM-DD", text}], urls:[...], name, company}
 * name and company are strings or null. Relative dates ("tomorrow", "next
 * Monday", "in 3 days") are resolved against now_ms in UTC. Sets *ret to a
 * new reference. */
int local_extract(const char *text, size_t len, int64_t now_ms, json_t **ret, Err *err);

/* ---- summariser (summarize.c) -------------------------------------------- */

/* Extractive summary by TextRank: {summary, sentences:[indexes]}, where
 * indexes count the text's sentences from 0 and the summary is those
 * sentences in text order, joined by one space. strlen(summary) never
 * exceeds max_chars (bytes, so never more characters either); when the most
 * central sentence alone is too long, it is cut at a word boundary and ends
 * with "…". Empty text gives {summary: "", sentences: []}. */
int local_summarize(const char *text, size_t len, size_t max_chars, json_t **ret, Err *err);

/* ---- embeddings (embed.c) ------------------------------------------------ */

/* Document frequencies of hashed features, learned from the documents seen;
 * bounded (a fixed table of 2^18 counters). */
typedef struct LocalIdf LocalIdf;

LocalIdf *local_idf_new(void);
void local_idf_free(LocalIdf *idf);
void local_idf_add(LocalIdf *idf, const char *text, size_t len);
size_t local_idf_docs(const LocalIdf *idf);

/* Writes the L2-normalised embedding of text to out[0..dim): signed hashing
 * of words, bigrams and character trigrams, weighted by 1 + log(tf) and by
 * the IDF (1 when idf is NULL or empty). A text with no features gives the
 * zero vector. ERR_INVAL when dim is outside LOCAL_EMBED_MIN_DIM..MAX_DIM. */
int local_embed(const LocalIdf *idf, const char *text, size_t len, int dim, float *out, Err *err);

/* The cosine of two vectors (0 when either is zero). */
double local_cosine(const float *a, const float *b, int dim);

/* ---- goals (plan.c) -------------------------------------------------------- */

#define LOCAL_PLAN_MAX_DOCS 1000
#define LOCAL_PLAN_THRESHOLD 0.15 /* below this cosine, no workflow matches */

/* The cosine of goal against each of docs[0..n) (texts describing
 * workflows), in scores[0..n): embeddings weighted by an IDF learned from
 * the docs, so that what tells the workflows apart counts. Written only on
 * success; ERR_TOOBIG above LOCAL_PLAN_MAX_DOCS. */
int local_plan_match(const char *goal, size_t goal_len, const char *const *docs,
                     const size_t *lens, size_t n, double *scores, Err *err);

#endif
