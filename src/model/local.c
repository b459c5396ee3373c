/* The `local` provider: the in-memory tier of model/local/ behind the
 * provider interface. Its classifier learns from the labelled examples of
 * the "models" projection (bureau label, model.labeled), picked up as they
 * come, and is seeded with models.local.rules. No network, no key, no cost. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "model/local.h"
#include "model/router.h"

typedef struct Local {
    Store *rd;               /* its own read connection (NULL without a ledger) */
    pthread_mutex_t load_mu; /* one reload at a time */
    pthread_rwlock_t lock;   /* the model: written by a reload, read by calls */
    LocalNB *nb;
    LocalIdf *idf;
    int64_t loaded_seq;      /* the last example learned */
    int hash_bits, dim;
} Local;

/* Learns the examples recorded since the last look. */
static void refresh(Local *x)
{
    if (!x->rd)
        return;
    pthread_mutex_lock(&x->load_mu);
    int64_t head = 0;
    Err err = { 0 };
    store_query_int(x->rd, "SELECT coalesce(max(seq), 0) FROM model_examples WHERE ?1 = ?1",
                    "", 0, &head, &err);
    if (head > x->loaded_seq) {
        StoreStmt *st;
        if (store_prepare(x->rd,
                          "SELECT seq, label, text FROM model_examples WHERE seq > ?1 ORDER BY seq",
                          &st, &err) == 0) {
            store_bind_int(st, 1, x->loaded_seq);
            pthread_rwlock_wrlock(&x->lock);
            while (store_step(st, &err) == STORE_ROW) {
                size_t len;
                const char *text = store_col_text(st, 2, &len);
                Err e2 = { 0 };
                if (local_nb_add(x->nb, text, len, store_col_text(st, 1, NULL), &e2) < 0)
                    log_warn("local classifier: example skipped",
                             json_pack("{s:I, s:s}", "seq", (json_int_t)store_col_int(st, 0),
                                       "error", e2.msg));
                local_idf_add(x->idf, text, len);
                x->loaded_seq = store_col_int(st, 0);
            }
            pthread_rwlock_unlock(&x->lock);
            store_stmt_done(st);
        }
    }
    pthread_mutex_unlock(&x->load_mu);
}

static int64_t estimate_tokens(size_t bytes)
{
    return (int64_t)(bytes + 3) / 4;
}

typedef struct Ranked {
    const char *name;
    double score;
} Ranked;

static int ranked_cmp(const void *a, const void *b)
{
    const Ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return strcmp(x->name, y->name);
}

/* plan: the goal matched to the workflows of req->context ({goal,
 * workflows: [{name, text, summary?}], threshold?}) by similarity, the
 * better of the whole text's and the summary's (the local tier composes
 * nothing): {workflow (null below the threshold),
 * score, confidence, threshold, ranking: [{workflow, score}] (the best 5)}. */
static int local_plan(const ModelRequest *req, json_t **ret, Err *err)
{
    const json_t *ctx = req->context;
    const char *goal = json_string_value(json_object_get(ctx, "goal"));
    const json_t *wfs = json_object_get(ctx, "workflows");
    if (!goal || !json_is_array(wfs))
        return err_set(err, ERR_INVAL, "plan: the local tier needs the goal and the workflows "
                                       "(context {goal, workflows})");
    double threshold = LOCAL_PLAN_THRESHOLD;
    if (json_is_number(json_object_get(ctx, "threshold")))
        threshold = json_number_value(json_object_get(ctx, "threshold"));
    size_t n = json_array_size(wfs);
    const char **docs = xcalloc(n ? n : 1, sizeof *docs), **sums = xcalloc(n ? n : 1, sizeof *sums);
    size_t *lens = xcalloc(n ? n : 1, sizeof *lens), *slens = xcalloc(n ? n : 1, sizeof *slens);
    double *scores = xcalloc(n ? n : 1, sizeof *scores), *sscores = xcalloc(n ? n : 1, sizeof *sscores);
    Ranked *rank = xcalloc(n ? n : 1, sizeof *rank);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *w = json_array_get(wfs, i);
        const char *name = json_string_value(json_object_get(w, "name"));
        const char *text = json_string_value(json_object_get(w, "text"));
        if (!name || !text)
            continue;
        const char *sum = json_string_value(json_object_get(w, "summary"));
        rank[m].name = name;
        docs[m] = text;
        lens[m] = strlen(text);
        sums[m] = sum ? sum : text;
        slens[m] = strlen(sums[m]);
        m++;
    }
    /* the whole text, and the summary alone (name and description: a
     * short goal said in their words is not drowned by a long file) */
    int rc = local_plan_match(goal, strlen(goal), docs, lens, m, scores, err);
    if (rc == 0)
        rc = local_plan_match(goal, strlen(goal), sums, slens, m, sscores, err);
    if (rc == 0) {
        for (size_t i = 0; i < m; i++)
            rank[i].score = scores[i] > sscores[i] ? scores[i] : sscores[i];
        if (m)
            qsort(rank, m, sizeof *rank, ranked_cmp);
        json_t *list = json_array();
        for (size_t i = 0; i < m && i < 5; i++)
            json_array_append_new(list, json_pack("{s:s, s:f}", "workflow", rank[i].name,
                                                  "score", rank[i].score));
        bool match = m > 0 && rank[0].score >= threshold;
        double best = m ? rank[0].score : 0;
        *ret = json_pack("{s:s?, s:f, s:f, s:f, s:o}", "workflow", match ? rank[0].name : NULL,
                         "score", best, "confidence", best > 0 ? best : 0.0, "threshold",
                         threshold, "ranking", list);
        if (!match)
            json_object_set_new(*ret, "workflow", json_null());
    }
    free(docs);
    free(sums);
    free(lens);
    free(slens);
    free(scores);
    free(sscores);
    free(rank);
    return rc;
}

static void local_call(ModelProvider *p, const ModelRequest *req, ModelResponse *resp)
{
    Local *x = p->impl;
    memset(resp, 0, sizeof *resp);
    snprintf(resp->model, sizeof resp->model, "local");
    const char *task = req->task ? req->task : "complete";
    const char *text = req->prompt ? req->prompt : "";
    size_t len = strlen(text);
    resp->tokens_in = estimate_tokens(len);
    Err err = { 0 };
    int rc = 0;
    if (!strcmp(task, "classify")) {
        refresh(x);
        json_t *scores = NULL;
        char label[LOCAL_LABEL_MAX + 1];
        double prob = 0;
        pthread_rwlock_rdlock(&x->lock);
        rc = local_nb_classify(x->nb, text, len, label, sizeof label, &prob, &scores, &err);
        pthread_rwlock_unlock(&x->lock);
        if (rc == 0 && json_is_array(req->labels) && json_array_size(req->labels) > 0) {
            /* only the labels asked for, renormalised */
            double sum = 0, best = -1;
            size_t i;
            const json_t *l;
            json_array_foreach(req->labels, i, l) sum += json_number_value(
                json_object_get(scores, json_string_value(l)));
            json_array_foreach(req->labels, i, l) {
                double s = json_number_value(json_object_get(scores, json_string_value(l)));
                if (json_is_string(l) && s > best) {
                    best = s;
                    snprintf(label, sizeof label, "%s", json_string_value(l));
                }
            }
            if (best < 0 || sum <= 0) {
                rc = err_set(&err, ERR_NOTFOUND, "the local classifier knows none of the labels "
                                                 "asked for (label some examples: bureau label)");
            } else {
                prob = best / sum;
            }
        }
        if (rc == 0) {
            resp->output = json_pack("{s:s, s:f, s:o}", "label", label, "confidence", prob,
                                     "scores", scores);
            scores = NULL;
        }
        json_decref(scores);
    } else if (!strcmp(task, "extract")) {
        rc = local_extract(text, len, core_time_now_ms(), &resp->output, &err);
    } else if (!strcmp(task, "summarize")) {
        size_t max = req->max_output_tokens > 0 ? (size_t)req->max_output_tokens * 4 : 600;
        rc = local_summarize(text, len, max, &resp->output, &err);
    } else if (!strcmp(task, "embed")) {
        refresh(x);
        float *v = xmalloc((size_t)x->dim * sizeof *v);
        pthread_rwlock_rdlock(&x->lock);
        rc = local_embed(x->idf, text, len, x->dim, v, &err);
        pthread_rwlock_unlock(&x->lock);
        if (rc == 0) {
            resp->output = json_array();
            for (int i = 0; i < x->dim; i++)
                json_array_append_new(resp->output, json_real(v[i]));
        }
        free(v);
    } else if (!strcmp(task, "plan")) {
        rc = local_plan(req, &resp->output, &err);
    } else if (!strcmp(task, "draft")) {
        /* the draft is the template the step filled: the local tier keeps it */
        resp->output = json_string(text);
    } else {
        resp->status = MODEL_FAILED;
        snprintf(resp->error, sizeof resp->error,
                 "the local tier does not write free text ('%s'): give this route a remote "
                 "candidate, or use model.draft with a template",
                 task);
        return;
    }
    if (rc < 0) {
        resp->status = MODEL_FAILED;
        snprintf(resp->error, sizeof resp->error, "%s", err.msg);
        json_decref(resp->output);
        resp->output = NULL;
        return;
    }
    resp->status = MODEL_OK;
    char *out = json_dumps(resp->output, JSON_COMPACT | JSON_ENCODE_ANY);
    resp->tokens_out = out ? estimate_tokens(strlen(out)) : 0;
    free(out);
}

static void local_free(ModelProvider *p)
{
    if (!p)
        return;
    Local *x = p->impl;
    if (x) {
        local_nb_free(x->nb);
        local_idf_free(x->idf);
        store_close(x->rd);
        pthread_mutex_destroy(&x->load_mu);
        pthread_rwlock_destroy(&x->lock);
        free(x);
    }
    free(p);
}

static const ModelProviderOps local_ops = { local_call, local_free };

int model_local_new(const ModelProviderConfig *cfg, const Config *all, Ledger *l,
                    ModelProvider **ret, Err *err)
{
    Local *x = xcalloc(1, sizeof *x);
    x->hash_bits = all->local_hash_bits;
    x->dim = all->local_embed_dim;
    x->nb = local_nb_new(x->hash_bits);
    x->idf = local_idf_new();
    pthread_mutex_init(&x->load_mu, NULL);
    pthread_rwlock_init(&x->lock, NULL);
    if (l && ledger_reader_open(l, &x->rd, err) < 0) {
        local_nb_free(x->nb);
        local_idf_free(x->idf);
        pthread_mutex_destroy(&x->load_mu);
        pthread_rwlock_destroy(&x->lock);
        free(x);
        return err->code;
    }
    /* the keyword rules, label by label */
    for (size_t i = 0; i < all->n_model_rules;) {
        const char *label = all->model_rules[i].label;
        const char *words[CONFIG_MAX_MODEL_RULES];
        size_t n = 0;
        for (; i < all->n_model_rules && !strcmp(all->model_rules[i].label, label); i++)
            words[n++] = all->model_rules[i].keyword;
        local_nb_seed(x->nb, label, words, n);
    }
    ModelProvider *p = xcalloc(1, sizeof *p);
    p->ops = &local_ops;
    p->cfg = *cfg;
    p->impl = x;
    *ret = p;
    return 0;
}
