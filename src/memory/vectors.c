/* Stored item vectors from a remote embed model (vectors.h). */
#include "memory/vectors.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"

/* The embed route's first candidate, when it is not the local tier. */
static const ModelProviderConfig *remote_provider(const Config *cfg)
{
    for (size_t i = 0; i < cfg->n_model_routes; i++) {
        const ModelRouteConfig *rt = &cfg->model_routes[i];
        if (strcmp(rt->name, MEMORY_EMBED_ROUTE) || rt->n_candidates == 0)
            continue;
        for (size_t j = 0; j < cfg->n_model_providers; j++) {
            const ModelProviderConfig *pc = &cfg->model_providers[j];
            if (!strcmp(pc->name, rt->candidates[0]))
                return strcmp(pc->kind, "local") ? pc : NULL;
        }
    }
    return NULL;
}

bool memory_embed_remote(const Config *cfg, char out[MEMORY_VECTOR_MODEL_MAX + 1])
{
    const ModelProviderConfig *pc = remote_provider(cfg);
    out[0] = '\0';
    if (!pc)
        return false;
    snprintf(out, MEMORY_VECTOR_MODEL_MAX + 1, "%s/%s", pc->name,
             pc->embed_model[0] ? pc->embed_model : pc->model);
    return true;
}

/* One text's vector from the route; 1 with *ret when the configured
 * provider answered, 0 when the call failed or another candidate answered
 * (why in err->msg), <0 for a bad request. */
static int embed_one(Store *rd, ModelRouter *router, const Config *cfg, const char *text,
                     float **ret, int *dim, Err *err)
{
    const ModelProviderConfig *pc = remote_provider(cfg);
    if (!pc)
        return err_set(err, ERR_INVAL, "the embed route starts with the local tier");
    char scope[MEMORY_VECTOR_MODEL_MAX + 1];
    memory_embed_remote(cfg, scope);
    ModelCall call = { .route = MEMORY_EMBED_ROUTE,
                       .workflow = "memory-vectors",
                       .force = true,
                       .cache_scope = scope,
                       .req = { .task = "embed", .prompt = text } };
    ModelResult res = { 0 };
    int rc = model_router_call(router, rd, &call, &res, err);
    if (rc < 0) {
        model_result_done(&res);
        return rc;
    }
    rc = 0;
    size_t n = json_array_size(res.output);
    if (res.status != MODEL_CALL_OK) {
        err_set(err, ERR_INTERNAL, "embed: %s", res.error);
    } else if (strcmp(res.provider, pc->name)) {
        err_set(err, ERR_INTERNAL, "embed: answered by %s, not %s: not stored", res.provider,
                pc->name);
    } else if (n < 1 || n > MEMORY_VECTOR_DIM_MAX) {
        err_set(err, ERR_INTERNAL, "embed: %zu numbers, not 1 to %d", n, MEMORY_VECTOR_DIM_MAX);
    } else {
        float *v = xmalloc(n * sizeof *v);
        for (size_t i = 0; i < n; i++) {
            double x = json_number_value(json_array_get(res.output, i));
            v[i] = isfinite(x) ? (float)x : 0.0f;
        }
        *ret = v;
        *dim = (int)n;
        rc = 1;
    }
    model_result_done(&res);
    return rc;
}

int memory_embed_query(Store *rd, ModelRouter *router, const Config *cfg, const char *text,
                       float **ret, int *dim, Err *err)
{
    int rc = embed_one(rd, router, cfg, text, ret, dim, err);
    if (rc == 0)
        return err->code ? err->code : ERR_INTERNAL;
    return rc < 0 ? rc : 0;
}

int memory_vectors_fill(Store *db, ModelRouter *router, const Config *cfg, int64_t max,
                        int64_t *done, bool *failed,
                        void (*progress)(void *ctx, int64_t done, int64_t total), void *ctx,
                        Err *err)
{
    *done = 0;
    *failed = false;
    char model[MEMORY_VECTOR_MODEL_MAX + 1];
    if (!memory_embed_remote(cfg, model))
        return 0;
    int rc = store_execf(db, err,
                         "DELETE FROM item_vectors WHERE model = ?1 AND item_id NOT IN"
                         " (SELECT id FROM items)",
                         "s", model);
    int64_t total = 0;
    if (rc == 0)
        rc = store_query_int(db,
                             "SELECT count(*) FROM items i WHERE NOT EXISTS (SELECT 1 FROM"
                             " item_vectors v WHERE v.model = ?1 AND v.item_id = i.id)",
                             model, 0, &total, err);
    if (max > 0 && total > max)
        total = max;
    int64_t after = 0;
    int fails_in_row = 0;
    while (rc == 0 && *done < total) {
        /* one item at a time: the statement is not held across the model call */
        StoreStmt *st;
        if ((rc = store_prepare(db,
                                "SELECT i.id, i.text FROM items i WHERE i.id > ?2 AND NOT EXISTS"
                                " (SELECT 1 FROM item_vectors v WHERE v.model = ?1 AND"
                                "  v.item_id = i.id) ORDER BY i.id LIMIT 1",
                                &st, err)) < 0)
            break;
        store_bind_text(st, 1, model, strlen(model));
        store_bind_int(st, 2, after);
        if ((rc = store_step(st, err)) != STORE_ROW) {
            store_stmt_done(st);
            rc = rc < 0 ? rc : 0;
            break;
        }
        int64_t id = store_col_int(st, 0);
        size_t len = 0;
        const char *t = store_col_text(st, 1, &len);
        if (len > MEMORY_VECTOR_TEXT_MAX) { /* the head of a long item, cut at a character */
            len = MEMORY_VECTOR_TEXT_MAX;
            while (len > 0 && ((unsigned char)t[len] & 0xC0) == 0x80)
                len--;
        }
        char *text = strndup(t ? t : "", t ? len : 0);
        store_stmt_done(st);
        after = id;
        float *v = NULL;
        int dim = 0;
        Err e = { 0 };
        int got = embed_one(db, router, cfg, text, &v, &dim, &e);
        free(text);
        if (got <= 0) {
            /* this item is skipped for this pass; several failing in a row
             * is the route, not the items: the pass stops */
            *failed = true;
            err_set(err, e.code ? e.code : ERR_INTERNAL, "%s", e.msg);
            err->code = 0; /* reported, not an error of the pass */
            if (++fails_in_row >= 3)
                break;
            continue;
        }
        fails_in_row = 0;
        StoreStmt *ins;
        if ((rc = store_prepare(db,
                                "INSERT OR REPLACE INTO item_vectors(model, item_id, dim, vec)"
                                " SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM items"
                                " WHERE id = ?2)",
                                &ins, err)) == 0) {
            store_bind_text(ins, 1, model, strlen(model));
            store_bind_int(ins, 2, id);
            store_bind_int(ins, 3, dim);
            store_bind_blob(ins, 4, v, (size_t)dim * sizeof *v);
            rc = store_step(ins, err);
            store_stmt_done(ins);
            rc = rc < 0 ? rc : 0;
        }
        free(v);
        if (rc == 0) {
            (*done)++;
            if (progress)
                progress(ctx, *done, total);
        }
    }
    return rc;
}

int memory_reembed(Store *db, ModelRouter *router, const Config *cfg,
                   void (*progress)(void *ctx, int64_t done, int64_t total), void *ctx,
                   json_t **ret, Err *err)
{
    char model[MEMORY_VECTOR_MODEL_MAX + 1];
    if (!memory_embed_remote(cfg, model))
        return err_set(err, ERR_INVAL,
                       "the embed route starts with the local tier: its vectors are computed "
                       "when searched, never stored; nothing to re-embed");
    int64_t done = 0, dropped = 0;
    bool failed = false;
    int rc = memory_vectors_fill(db, router, cfg, 0, &done, &failed, progress, ctx, err);
    if (rc == 0 && !failed) {
        rc = store_execf(db, err, "DELETE FROM item_vectors WHERE model <> ?1", "s", model);
        dropped = rc == 0 ? store_changes(db) : 0;
    }
    if (rc < 0)
        return rc;
    *ret = json_pack("{s:s, s:I, s:I, s:b, s:s?}", "model", model, "embedded", (json_int_t)done,
                     "dropped", (json_int_t)dropped, "failed", failed, "error",
                     failed ? err->msg : NULL);
    return 0;
}

/* ---- the background filler ---- */

struct MemoryVectorFiller {
    Ledger *l;
    const Config *cfg;
    ModelRouter *router;
    Store *db;
    pthread_t thread;
    atomic_bool stop;
};

static void *filler_main(void *arg)
{
    MemoryVectorFiller *f = arg;
    int backoff_ms = 1000;
    for (;;) {
        uint64_t gen = ledger_wake_gen(f->l); /* a stop after this wakes the waits below */
        if (atomic_load(&f->stop))
            break;
        int64_t head = ledger_head_seq(f->l), done = 0;
        bool failed = false;
        Err err = { 0 };
        int rc = memory_vectors_fill(f->db, f->router, f->cfg, 64, &done, &failed, NULL, NULL,
                                     &err);
        if (rc < 0 || failed) {
            if (backoff_ms == 1000) /* once per failing spell */
                log_warn("memory vectors: embedding failed, retrying with back-off",
                         json_pack("{s:s}", "error", err.msg));
            /* the whole delay (other wake-ups do not cut it short), or a stop */
            int64_t until = core_time_now_ms() + backoff_ms;
            while (!atomic_load(&f->stop) && core_time_now_ms() < until) {
                uint64_t g = ledger_wake_gen(f->l);
                if (atomic_load(&f->stop))
                    break;
                ledger_wait_gen(f->l, INT64_MAX, g, (int)(until - core_time_now_ms()));
            }
            backoff_ms = backoff_ms < 300000 ? backoff_ms * 2 : backoff_ms;
            continue;
        }
        backoff_ms = 1000;
        if (done == 0) /* nothing left: wait for new events */
            ledger_wait_gen(f->l, head, gen, 60000);
    }
    return NULL;
}

int memory_vector_filler_start(Ledger *l, const Config *cfg, ModelRouter *router,
                               MemoryVectorFiller **ret, Err *err)
{
    *ret = NULL;
    char model[MEMORY_VECTOR_MODEL_MAX + 1];
    if (!memory_embed_remote(cfg, model))
        return 0;
    MemoryVectorFiller *f = xcalloc(1, sizeof *f);
    f->l = l;
    f->cfg = cfg;
    f->router = router;
    int rc = ledger_reader_open(l, &f->db, err);
    if (rc < 0) {
        free(f);
        return rc;
    }
    if (pthread_create(&f->thread, NULL, filler_main, f) != 0) {
        store_close(f->db);
        free(f);
        return err_set(err, ERR_INTERNAL, "cannot start the memory vector filler");
    }
    *ret = f;
    return 0;
}

void memory_vector_filler_stop(MemoryVectorFiller *f)
{
    if (!f)
        return;
    atomic_store(&f->stop, true);
    ledger_wake(f->l);
    pthread_join(f->thread, NULL);
    store_close(f->db);
    free(f);
}
