/* Hybrid search over memory items (search.h). */
#include "memory/search.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "memory/fusion.h"
#include "memory/identity.h"
#include "memory/index.h"
#include "model/local.h"

/* ---- the FTS5 expression ---- */

static bool word_byte(unsigned char c)
{
    return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '_';
}

char *memory_fts_query(const char *query)
{
    Buf b;
    buf_init(&b, 0);
    int words = 0;
    for (const char *p = query ? query : ""; *p && words < 64;) {
        if (!word_byte((unsigned char)*p)) {
            p++;
            continue;
        }
        const char *s = p;
        while (*p && word_byte((unsigned char)*p))
            p++;
        /* a word has no '"' in it: quoting it is enough */
        buf_printf(&b, "%s\"%.*s\"", words ? " OR " : "", (int)(p - s), s);
        words++;
    }
    char *out = strdup(b.ptr ? b.ptr : "");
    buf_done(&b);
    return out;
}

/* ---- the vector cache ---- */

typedef struct VecCache {
    char *path;
    MemIndex *ix;
    LocalIdf *idf;
    int64_t max_id;
} VecCache;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static VecCache cache;

static void cache_drop(void)
{
    free(cache.path);
    mem_index_free(cache.ix);
    local_idf_free(cache.idf);
    memset(&cache, 0, sizeof cache);
}

void memory_search_reset(void)
{
    pthread_mutex_lock(&cache_lock);
    cache_drop();
    pthread_mutex_unlock(&cache_lock);
}

/* Reads the items after cache.max_id into the index; the first time, the
 * IDF is learned from all of them before any is embedded. */
static int cache_extend(Store *rd, Err *err)
{
    int64_t count = 0;
    int rc = store_query_int(rd, "SELECT count(*) FROM items WHERE ?1 IS NOT NULL", "x", 0, &count,
                             err);
    if (rc < 0)
        return rc;
    const char *path = store_path(rd);
    if (cache.ix && (strcmp(cache.path, path ? path : "") ||
                     (size_t)count < mem_index_size(cache.ix)))
        cache_drop();
    bool fresh = !cache.ix;
    if (fresh) {
        cache.path = strdup(path ? path : "");
        cache.ix = mem_index_new(LOCAL_EMBED_DIM);
        cache.idf = local_idf_new();
    }
    StoreStmt *st;
    if (fresh) {
        if ((rc = store_prepare(rd, "SELECT text FROM items", &st, err)) < 0)
            return rc;
        while ((rc = store_step(st, err)) == STORE_ROW) {
            size_t len;
            const char *t = store_col_text(st, 0, &len);
            local_idf_add(cache.idf, t, len);
        }
        store_stmt_done(st);
        if (rc < 0)
            return rc;
    }
    if ((rc = store_prepare(rd, "SELECT id, text FROM items WHERE id > ?1 ORDER BY id", &st,
                            err)) < 0)
        return rc;
    store_bind_int(st, 1, cache.max_id);
    float *v = malloc(sizeof(float) * LOCAL_EMBED_DIM);
    while ((rc = store_step(st, err)) == STORE_ROW) {
        int64_t id = store_col_int(st, 0);
        size_t len;
        const char *t = store_col_text(st, 1, &len);
        if (!fresh) /* new items join the IDF; older vectors are not recomputed */
            local_idf_add(cache.idf, t, len);
        if (local_embed(cache.idf, t, len, LOCAL_EMBED_DIM, v, err) == 0)
            mem_index_add(cache.ix, id, v, NULL);
        cache.max_id = id;
    }
    store_stmt_done(st);
    free(v);
    return rc < 0 ? rc : 0;
}

/* ---- search ---- */

#define FILTERS                                                                                  \
    " (?2 IS NULL OR coalesce((SELECT c.merged_into FROM contacts c WHERE c.id = i.contact_id),"  \
    "  i.contact_id) = ?2)"                                                                       \
    " AND (?3 IS NULL OR instr(',' || ?3 || ',', ',' || i.kind || ',') > 0)"                      \
    " AND (?4 IS NULL OR i.at >= ?4)"

typedef struct Filter {
    const char *subject, *kinds, *since;
} Filter;

static void bind_filter(StoreStmt *st, const Filter *f)
{
    store_bind_text(st, 2, f->subject, f->subject ? strlen(f->subject) : 0);
    store_bind_text(st, 3, f->kinds, f->kinds ? strlen(f->kinds) : 0);
    store_bind_text(st, 4, f->since, f->since ? strlen(f->since) : 0);
}

typedef struct AgeCtx {
    Store *rd;
    int64_t now_ms;
} AgeCtx;

static double age_of(void *vctx, int64_t id)
{
    AgeCtx *c = vctx;
    double age = 0;
    StoreStmt *st;
    if (store_prepare(c->rd, "SELECT at FROM items WHERE id = ?1", &st, NULL) < 0)
        return 0;
    store_bind_int(st, 1, id);
    if (store_step(st, NULL) == STORE_ROW) {
        const char *at = store_col_text(st, 0, NULL);
        int64_t ms;
        if (at && core_time_parse(at, strlen(at), &ms) == 0)
            age = (double)(c->now_ms - ms) / 1000.0;
    }
    store_stmt_done(st);
    return age;
}

static int bm25_list(Store *rd, const char *query, const Filter *f, int64_t *ids, char **snips,
                     int *n, Err *err)
{
    *n = 0;
    char *expr = memory_fts_query(query);
    if (!*expr) {
        free(expr);
        return 0;
    }
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT i.id, snippet(items_fts, 0, '', '', '…', 24) FROM items_fts"
                           " JOIN items i ON i.id = items_fts.rowid WHERE items_fts MATCH ?1 AND"
                           FILTERS " ORDER BY bm25(items_fts), i.id LIMIT 50",
                           &st, err);
    if (rc == 0) {
        store_bind_text(st, 1, expr, strlen(expr));
        bind_filter(st, f);
        while (*n < MEMORY_SEARCH_DEPTH && (rc = store_step(st, err)) == STORE_ROW) {
            ids[*n] = store_col_int(st, 0);
            const char *s = store_col_text(st, 1, NULL);
            snips[*n] = strdup(s ? s : "");
            (*n)++;
        }
        store_stmt_done(st);
    }
    free(expr);
    return rc < 0 ? rc : 0;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The vector list; with filters, the index is searched deeper and the ids
 * the filters allow are kept. Runs under cache_lock. */
static int vector_list(Store *rd, const char *query, const Filter *f, bool filtered, int64_t *ids,
                       int *n, Err *err)
{
    *n = 0;
    int rc = cache_extend(rd, err);
    if (rc < 0 || !mem_index_size(cache.ix) || !query)
        return rc;
    float *qv = malloc(sizeof(float) * LOCAL_EMBED_DIM);
    if ((rc = local_embed(cache.idf, query, strlen(query), LOCAL_EMBED_DIM, qv, err)) < 0) {
        free(qv);
        return rc;
    }
    double norm = 0;
    for (int i = 0; i < LOCAL_EMBED_DIM; i++)
        norm += (double)qv[i] * qv[i];
    if (norm == 0) { /* no feature in the query */
        free(qv);
        return 0;
    }
    int64_t *allowed = NULL;
    size_t n_allowed = 0, cap = 0;
    if (filtered) {
        StoreStmt *st;
        if ((rc = store_prepare(rd, "SELECT i.id FROM items i WHERE ?1 IS NULL AND" FILTERS
                                    " ORDER BY i.id",
                                &st, err)) < 0) {
            free(qv);
            return rc;
        }
        bind_filter(st, f);
        while ((rc = store_step(st, err)) == STORE_ROW) {
            if (n_allowed == cap)
                allowed = realloc(allowed, (cap = cap ? cap * 2 : 64) * sizeof *allowed);
            allowed[n_allowed++] = store_col_int(st, 0);
        }
        store_stmt_done(st);
        if (rc < 0) {
            free(qv);
            free(allowed);
            return rc;
        }
    }
    size_t size = mem_index_size(cache.ix);
    int k = filtered ? (int)(size < MEM_INDEX_MAX_K ? size : MEM_INDEX_MAX_K)
                     : (size < MEMORY_SEARCH_DEPTH ? (int)size : MEMORY_SEARCH_DEPTH);
    MemHit *hits = malloc(sizeof *hits * (size_t)k);
    int got = 0;
    mem_index_search(cache.ix, qv, k, hits, &got);
    for (int i = 0; i < got && *n < MEMORY_SEARCH_DEPTH; i++)
        if (!filtered ||
            bsearch(&hits[i].id, allowed, n_allowed, sizeof *allowed, cmp_id) != NULL)
            ids[(*n)++] = hits[i].id;
    free(hits);
    free(allowed);
    free(qv);
    return 0;
}

static json_t *rank_json(int r)
{
    return r ? json_integer(r) : json_null();
}

/* The first 200 characters of text (UTF-8), "…" when cut. */
static json_t *head_of(const char *text)
{
    size_t bytes = 0;
    int chars = 0;
    while (text[bytes] && chars < 200) {
        bytes++;
        while (((unsigned char)text[bytes] & 0xC0) == 0x80)
            bytes++;
        chars++;
    }
    char *s = malloc(bytes + 4);
    memcpy(s, text, bytes);
    strcpy(s + bytes, text[bytes] ? "…" : "");
    json_t *j = json_string(s);
    free(s);
    return j ? j : json_string("");
}

int memory_search(Store *rd, const MemorySearch *q, json_t **ret, Err *err)
{
    int k = q->k ? q->k : MEMORY_SEARCH_K_DEFAULT;
    if (k < 1 || k > MEMORY_SEARCH_K_MAX)
        return err_set(err, ERR_INVAL, "k: must be from 1 to %d", MEMORY_SEARCH_K_MAX);
    if (!q->query || !*q->query)
        return err_set(err, ERR_INVAL, "query: required");
    Filter f = { 0 };
    char since[CORE_TIME_LEN + 1], subject[MEMORY_CONTACT_ID_LEN + 1];
    if (q->since) {
        int64_t ms;
        if (core_time_parse(q->since, strlen(q->since), &ms) < 0)
            return err_set(err, ERR_INVAL, "since: '%.40s' is not an RFC 3339 time", q->since);
        core_time_format(ms, since);
        f.since = since;
    }
    int rc;
    if (q->subject) {
        if ((rc = memory_contact_find(rd, q->subject, subject, err)) < 0)
            return rc;
        f.subject = subject;
    }
    Buf kinds;
    buf_init(&kinds, 0);
    for (const char *const *p = q->kinds; p && *p; p++) {
        if (strcmp(*p, "email") && strcmp(*p, "form") && strcmp(*p, "note")) {
            buf_done(&kinds);
            return err_set(err, ERR_INVAL, "kind: '%.20s': email, form or note", *p);
        }
        buf_printf(&kinds, "%s%s", kinds.len ? "," : "", *p);
    }
    f.kinds = kinds.len ? kinds.ptr : NULL;
    bool filtered = f.subject || f.kinds || f.since;

    int64_t bm_ids[MEMORY_SEARCH_DEPTH], vec_ids[MEMORY_SEARCH_DEPTH];
    char *snips[MEMORY_SEARCH_DEPTH];
    int n_bm = 0, n_vec = 0;
    json_t *list = NULL;
    rc = bm25_list(rd, q->query, &f, bm_ids, snips, &n_bm, err);
    if (rc == 0) {
        pthread_mutex_lock(&cache_lock);
        rc = vector_list(rd, q->query, &f, filtered, vec_ids, &n_vec, err);
        pthread_mutex_unlock(&cache_lock);
    }
    AgeCtx age = { .rd = rd, .now_ms = core_time_now_ms() };
    if (rc == 0) {
        MemFuseList lists[2] = { { bm_ids, n_bm, 1.0 },
                                 { vec_ids, n_vec, MEMORY_SEARCH_VEC_WEIGHT } };
        MemFuseOptions opt = { .k = MEMORY_SEARCH_RRF_K,
                               .half_life_s = MEMORY_SEARCH_HALF_LIFE_DAYS * 86400.0,
                               .age_s = age_of,
                               .ctx = &age };
        MemFused out[MEMORY_SEARCH_K_MAX];
        int n = 0;
        rc = mem_fuse_rrf(lists, 2, &opt, k, out, &n, err);
        if (rc == 0)
            list = json_array();
        for (int i = 0; rc == 0 && i < n; i++) {
            StoreStmt *item;
            if ((rc = store_prepare(rd,
                                    "SELECT i.event_id, coalesce(c.merged_into, i.contact_id),"
                                    " i.kind, i.at, i.text FROM items i LEFT JOIN contacts c"
                                    " ON c.id = i.contact_id WHERE i.id = ?1",
                                    &item, err)) < 0)
                break;
            store_bind_int(item, 1, out[i].id);
            if ((rc = store_step(item, err)) == STORE_ROW) {
                json_t *snippet = NULL;
                for (int j = 0; j < n_bm && !snippet; j++)
                    if (bm_ids[j] == out[i].id && *snips[j])
                        snippet = json_string(snips[j]);
                if (!snippet)
                    snippet = head_of(store_col_text(item, 4, NULL));
                const char *subj = store_col_text(item, 1, NULL);
                json_array_append_new(
                    list, json_pack("{s:f, s:o, s:I, s:s, s:o, s:s, s:s, s:{s:o, s:o}}", "score",
                                    out[i].score, "snippet", snippet, "seq",
                                    (json_int_t)out[i].id, "event_id",
                                    store_col_text(item, 0, NULL), "subject",
                                    subj ? json_string(subj) : json_null(), "kind",
                                    store_col_text(item, 2, NULL), "at",
                                    store_col_text(item, 3, NULL), "ranks", "bm25",
                                    rank_json(out[i].rank[0]), "vector",
                                    rank_json(out[i].rank[1])));
                rc = 0;
            }
            store_stmt_done(item);
        }
    }
    for (int i = 0; i < n_bm; i++)
        free(snips[i]);
    buf_done(&kinds);
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *ret = list;
    return 0;
}
