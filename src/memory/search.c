/* Hybrid search over memory items (search.h). */
#include "memory/search.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "ledger/ledger.h"
#include "memory/fusion.h"
#include "memory/identity.h"
#include "memory/index.h"
#include "memory/items.h"
#include "memory/vectors.h"
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

/* One subject (a contact that stands) with items in the index: the sum of
 * its items' vectors, the centroid's direction before normalising. */
typedef struct Group {
    char id[MEMORY_CONTACT_ID_LEN + 1];
    float *sum;
} Group;

typedef struct VecCache {
    char *path;
    char model[MEMORY_VECTOR_MODEL_MAX + 1]; /* a remote embed model, "" for local */
    int64_t vcount;      /* its stored vectors when read */
    int dim;
    MemIndex *ix;
    LocalIdf *idf;
    int64_t max_id;
    int64_t head;        /* the ledger head the cache last saw */
    int64_t merged;      /* contacts merged away then: a change regroups */
    Group *groups;       /* [0] is unused: group 0 is "no subject" */
    size_t n_groups, cap_groups;
    uint32_t *gmap;      /* open addressing over groups, by id hash; 0 = free */
    size_t gmap_cap;
    /* per item, in id order (ids only grow): when it occurred and its kind */
    int64_t *ids, *at_ms;
    unsigned char *kind;
    size_t n_items, cap_items;
} VecCache;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static VecCache cache;
/* The engine's router, for a remote embed route's query vectors. Searches
 * use it under the read lock, outside cache_lock (a call is slow); setting
 * it takes the write lock, so the engine's stop waits for calls in flight. */
static pthread_rwlock_t router_lock = PTHREAD_RWLOCK_INITIALIZER;
static ModelRouter *default_router;

void memory_search_use_router(ModelRouter *r)
{
    pthread_rwlock_wrlock(&router_lock);
    default_router = r;
    pthread_rwlock_unlock(&router_lock);
}

/* ---- the result cache: identical searches within a short window ---- */

#define RESULT_SLOTS 32
#define RESULT_TTL_MS 60000

typedef struct Result {
    char *key;           /* path, query and options */
    int64_t head;        /* valid while the ledger head is this */
    int64_t at_ms;
    json_t *hits;
} Result;

static Result results[RESULT_SLOTS];
static size_t result_next;

static void results_drop(void)
{
    for (size_t i = 0; i < RESULT_SLOTS; i++) {
        free(results[i].key);
        json_decref(results[i].hits);
    }
    memset(results, 0, sizeof results);
    result_next = 0;
}

static void cache_drop(void)
{
    free(cache.path);
    mem_index_free(cache.ix);
    local_idf_free(cache.idf);
    for (size_t i = 1; i < cache.n_groups; i++) /* group 0 (no subject) has none */
        free(cache.groups[i].sum);
    free(cache.groups);
    free(cache.gmap);
    free(cache.ids);
    free(cache.at_ms);
    free(cache.kind);
    memset(&cache, 0, sizeof cache);
}

void memory_search_reset(void)
{
    pthread_mutex_lock(&cache_lock);
    cache_drop();
    results_drop();
    pthread_mutex_unlock(&cache_lock);
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The group of a subject, made when new (0 for none). */
static uint32_t group_of(const char *subject)
{
    if (!subject || !*subject)
        return 0;
    if ((cache.n_groups + 1) * 2 > cache.gmap_cap) {
        size_t cap = cache.gmap_cap ? cache.gmap_cap * 2 : 64;
        uint32_t *m = xcalloc(cap, sizeof *m);
        for (size_t g = 1; g < cache.n_groups; g++) {
            size_t s = str_hash(cache.groups[g].id) & (cap - 1);
            while (m[s])
                s = (s + 1) & (cap - 1);
            m[s] = (uint32_t)g;
        }
        free(cache.gmap);
        cache.gmap = m;
        cache.gmap_cap = cap;
    }
    size_t s = str_hash(subject) & (cache.gmap_cap - 1);
    for (; cache.gmap[s]; s = (s + 1) & (cache.gmap_cap - 1))
        if (!strcmp(cache.groups[cache.gmap[s]].id, subject))
            return cache.gmap[s];
    if (cache.n_groups == 0)
        cache.n_groups = 1; /* group 0: none */
    if (cache.n_groups >= cache.cap_groups) {
        cache.cap_groups = cache.cap_groups ? cache.cap_groups * 2 : 64;
        cache.groups = xrealloc(cache.groups, cache.cap_groups * sizeof *cache.groups);
    }
    uint32_t g = (uint32_t)cache.n_groups++;
    Group *gr = &cache.groups[g];
    memset(gr, 0, sizeof *gr);
    snprintf(gr->id, sizeof gr->id, "%s", subject);
    gr->sum = xcalloc((size_t)cache.dim, sizeof *gr->sum);
    cache.gmap[s] = g;
    return g;
}

static unsigned char kind_code(const char *kind)
{
    return !kind ? 0 : !strcmp(kind, "email") ? 1 : !strcmp(kind, "form") ? 2 : !strcmp(kind, "note") ? 3 : 0;
}

/* Reads the items after cache.max_id into the index. Local vectors: the
 * first time, the IDF is learned from all the items before any is
 * embedded. A remote model's: its stored vectors (item_vectors), read again
 * whole when their count changed (the background filler adds them after
 * their items). Nothing is read when neither the ledger head nor that count
 * moved. */
static int cache_extend(Store *rd, int64_t head, const char *model, int64_t vcount, Err *err)
{
    const char *path = store_path(rd);
    if (cache.ix && !strcmp(cache.path, path ? path : "") && !strcmp(cache.model, model) &&
        cache.head == head && cache.vcount == vcount)
        return 0;
    /* rows gone from what was read (a forget, a consolidation, a rebuild),
     * or a merge or unmerge since: read everything again */
    int64_t kept = 0, merged = 0;
    int rc = 0;
    if (cache.ix && !strcmp(cache.path, path ? path : "") && !strcmp(cache.model, model)) {
        StoreStmt *st;
        if ((rc = store_prepare(rd, "SELECT count(*) FROM items WHERE id <= ?1", &st, err)) < 0)
            return rc;
        store_bind_int(st, 1, cache.max_id);
        if ((rc = store_step(st, err)) == STORE_ROW)
            kept = store_col_int(st, 0);
        store_stmt_done(st);
        if (rc < 0)
            return rc;
    }
    rc = store_query_int(rd,
                         "SELECT coalesce(max(seq), 0) FROM events WHERE type IN"
                         " ('memory.merged', 'memory.unmerged') AND ?1 IS NOT NULL",
                         "x", 0, &merged, err);
    if (rc < 0)
        return rc;
    if (cache.ix && (strcmp(cache.path, path ? path : "") || strcmp(cache.model, model) ||
                     (!*model && (size_t)kept != cache.n_items) || merged != cache.merged ||
                     (*model && vcount != cache.vcount)))
        cache_drop();
    bool fresh = !cache.ix, remote = *model;
    if (fresh) {
        cache.path = strdup(path ? path : "");
        snprintf(cache.model, sizeof cache.model, "%s", model);
        cache.merged = merged;
        cache.vcount = vcount;
        cache.dim = remote ? 0 : LOCAL_EMBED_DIM;
        if (!remote) {
            cache.ix = mem_index_new(LOCAL_EMBED_DIM);
            mem_index_quantize(cache.ix); /* exact search reads the int8 copy (index.h) */
            cache.idf = local_idf_new();
        }
    }
    StoreStmt *st;
    if (fresh && !remote) {
        if ((rc = store_prepare(rd, "SELECT text FROM items", &st, err)) < 0)
            return rc;
        while ((rc = store_step(st, err)) == STORE_ROW) {
            size_t len;
            const char *t = store_col_text(st, 0, &len);
            local_idf_add(cache.idf, t, len);
        }
        store_stmt_done(st);
        if (rc < 0) {
            cache_drop(); /* a half-learned IDF is not kept */
            return rc;
        }
    }
    if ((rc = store_prepare(rd,
                            remote ? "SELECT i.id, v.vec, coalesce(c.merged_into, i.contact_id),"
                                     " i.kind, i.at, v.dim FROM items i JOIN item_vectors v ON"
                                     " v.model = ?2 AND v.item_id = i.id LEFT JOIN contacts c"
                                     " ON c.id = i.contact_id WHERE i.id > ?1 ORDER BY i.id"
                                   : "SELECT i.id, i.text, coalesce(c.merged_into, i.contact_id),"
                                     " i.kind, i.at FROM items i LEFT JOIN contacts c"
                                     " ON c.id = i.contact_id WHERE i.id > ?1 AND ?2 = ''"
                                     " ORDER BY i.id",
                            &st, err)) < 0) {
        cache_drop();
        return rc;
    }
    store_bind_int(st, 1, cache.max_id);
    store_bind_text(st, 2, model, strlen(model));
    float *v = xmalloc(sizeof(float) * (remote ? MEMORY_VECTOR_DIM_MAX : LOCAL_EMBED_DIM));
    while ((rc = store_step(st, err)) == STORE_ROW) {
        int64_t id = store_col_int(st, 0);
        bool have = false;
        if (remote) {
            size_t bytes = 0;
            const void *blob = store_col_blob(st, 1, &bytes);
            int dim = (int)store_col_int(st, 5);
            if (!cache.ix && dim >= MEM_INDEX_MIN_DIM && dim <= MEMORY_VECTOR_DIM_MAX) {
                cache.dim = dim;
                cache.ix = mem_index_new(dim);
                mem_index_quantize(cache.ix);
            }
            have = cache.ix && dim == cache.dim && bytes == (size_t)dim * sizeof(float);
            if (have) { /* unit length, so that scores are cosines as with local vectors */
                memcpy(v, blob, bytes);
                double n2 = 0;
                for (int d = 0; d < dim; d++)
                    n2 += (double)v[d] * v[d];
                if (n2 > 0)
                    for (int d = 0; d < dim; d++)
                        v[d] = (float)(v[d] / sqrt(n2));
            }
        } else {
            size_t len;
            const char *t = store_col_text(st, 1, &len);
            if (!fresh) /* new items join the IDF; older vectors are not recomputed */
                local_idf_add(cache.idf, t, len);
            have = local_embed(cache.idf, t, len, LOCAL_EMBED_DIM, v, err) == 0;
        }
        if (have && mem_index_add(cache.ix, id, v, NULL) == 0) {
            uint32_t g = group_of(store_col_text(st, 2, NULL));
            mem_index_set_group(cache.ix, id, g);
            if (g)
                for (int d = 0; d < cache.dim; d++)
                    cache.groups[g].sum[d] += v[d];
        }
        if (cache.n_items == cache.cap_items) {
            cache.cap_items = cache.cap_items ? cache.cap_items * 2 : 1024;
            cache.ids = xrealloc(cache.ids, cache.cap_items * sizeof *cache.ids);
            cache.at_ms = xrealloc(cache.at_ms, cache.cap_items * sizeof *cache.at_ms);
            cache.kind = xrealloc(cache.kind, cache.cap_items);
        }
        const char *at = store_col_text(st, 4, NULL);
        int64_t at_ms = 0;
        if (at)
            core_time_parse(at, strlen(at), &at_ms);
        cache.ids[cache.n_items] = id;
        cache.at_ms[cache.n_items] = at_ms;
        cache.kind[cache.n_items] = kind_code(store_col_text(st, 3, NULL));
        cache.n_items++;
        cache.max_id = id;
    }
    store_stmt_done(st);
    free(v);
    if (rc < 0) {
        cache_drop();
        return rc;
    }
    if (!cache.ix) { /* a remote model without a vector yet */
        cache.dim = LOCAL_EMBED_DIM;
        cache.ix = mem_index_new(LOCAL_EMBED_DIM);
    }
    cache.head = head;
    return 0;
}

/* ---- search ---- */

/* The TTL cut-offs bound as ?5 (email), ?6 (form), ?7 (note): an item of
 * those kinds that occurred before its cut-off has expired (a summary never
 * does). */
#define FILTERS                                                                                  \
    " (?2 IS NULL OR coalesce((SELECT c.merged_into FROM contacts c WHERE c.id = i.contact_id),"  \
    "  i.contact_id) = ?2)"                                                                       \
    " AND (?3 IS NULL OR instr(',' || ?3 || ',', ',' || i.kind || ',') > 0)"                      \
    " AND (?4 IS NULL OR i.at >= ?4)"                                                             \
    " AND i.at >= CASE i.kind WHEN 'email' THEN ?5 WHEN 'form' THEN ?6 WHEN 'note' THEN ?7"      \
    "  ELSE '' END"

typedef struct Filter {
    const char *subject, *kinds, *since;
    int64_t cut_ms[4];                  /* by kind code: 0 none, email, form, note */
    char cut[4][CORE_TIME_LEN + 1];
} Filter;

static void bind_filter(StoreStmt *st, const Filter *f)
{
    store_bind_text(st, 2, f->subject, f->subject ? strlen(f->subject) : 0);
    store_bind_text(st, 3, f->kinds, f->kinds ? strlen(f->kinds) : 0);
    store_bind_text(st, 4, f->since, f->since ? strlen(f->since) : 0);
    for (int i = 1; i <= 3; i++)
        store_bind_text(st, 4 + i, f->cut[i], strlen(f->cut[i]));
}

static bool expired(const Filter *f, size_t pos)
{
    unsigned char k = cache.kind[pos];
    return k && cache.at_ms[pos] < f->cut_ms[k];
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
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
    /* a summary is long-term memory: it does not fade */
    if (store_prepare(c->rd, "SELECT at FROM items WHERE id = ?1 AND kind <> 'summary'", &st,
                      NULL) < 0)
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

/* The vector list. The query's vector leans towards BM25's best hits
 * (pseudo-relevance feedback, when feedback > 0) and every item's score
 * gains the similarity of the query to its subject's centroid. With
 * filters, the index is searched deeper and the ids the filters allow are
 * kept; expired items are dropped. Runs under cache_lock. */
static int vector_list(Store *rd, const float *remote_q, int remote_dim, const char *query,
                       const Filter *f, bool filtered, const int64_t *feedback, int n_feedback,
                       int64_t *ids, int *n, Err *err)
{
    *n = 0;
    if (!mem_index_size(cache.ix))
        return 0;
    float *qv = NULL;
    int rc = 0;
    if (*cache.model) {
        if (!remote_q || remote_dim != cache.dim)
            return 0; /* no query vector: BM25 alone answers */
        qv = xmalloc(sizeof(float) * (size_t)remote_dim);
        memcpy(qv, remote_q, sizeof(float) * (size_t)remote_dim);
    } else {
        qv = xmalloc(sizeof(float) * LOCAL_EMBED_DIM);
        if ((rc = local_embed(cache.idf, query, strlen(query), LOCAL_EMBED_DIM, qv, err)) < 0) {
            free(qv);
            return rc;
        }
    }
    const int dim = cache.dim;
    int used = 0;
    for (int i = 0; i < n_feedback && used < MEMORY_SEARCH_FEEDBACK_DOCS; i++) {
        const float *dv = mem_index_vector(cache.ix, feedback[i]);
        if (!dv)
            continue;
        for (int d = 0; d < dim; d++)
            qv[d] += (float)(MEMORY_SEARCH_FEEDBACK / MEMORY_SEARCH_FEEDBACK_DOCS) * dv[d];
        used++;
    }
    double norm = 0;
    for (int i = 0; i < dim; i++)
        norm += (double)qv[i] * qv[i];
    if (norm == 0) { /* no feature in the query */
        free(qv);
        return 0;
    }
    for (int i = 0; i < dim; i++)
        qv[i] = (float)(qv[i] / sqrt(norm));
    float *bias = xcalloc(cache.n_groups ? cache.n_groups : 1, sizeof *bias);
    for (size_t g = 1; g < cache.n_groups; g++) {
        double dot = 0, len = 0;
        for (int d = 0; d < dim; d++) {
            dot += (double)qv[d] * cache.groups[g].sum[d];
            len += (double)cache.groups[g].sum[d] * cache.groups[g].sum[d];
        }
        bias[g] = len > 0 ? (float)(MEMORY_SEARCH_SUBJECT_WEIGHT * dot / sqrt(len)) : 0.0f;
    }
    int64_t *allowed = NULL;
    size_t n_allowed = 0, cap = 0;
    if (filtered) {
        StoreStmt *st;
        if ((rc = store_prepare(rd, "SELECT i.id FROM items i WHERE ?1 IS NULL AND" FILTERS
                                    " ORDER BY i.id",
                                &st, err)) < 0)
            goto out;
        bind_filter(st, f);
        while ((rc = store_step(st, err)) == STORE_ROW) {
            if (n_allowed == cap)
                allowed = xrealloc(allowed, (cap = cap ? cap * 2 : 64) * sizeof *allowed);
            allowed[n_allowed++] = store_col_int(st, 0);
        }
        store_stmt_done(st);
        if (rc < 0)
            goto out;
        rc = 0;
    }
    size_t size = mem_index_size(cache.ix);
    /* deeper than the list, so that expired items can be dropped */
    size_t want = filtered ? MEM_INDEX_MAX_K : 4 * MEMORY_SEARCH_DEPTH;
    int k = (int)(size < want ? size : want);
    MemHit *hits = xmalloc(sizeof *hits * (size_t)k);
    int got = 0;
    mem_index_search_biased(cache.ix, qv, k, bias, cache.n_groups, hits, &got);
    for (int i = 0; i < got && *n < MEMORY_SEARCH_DEPTH; i++) {
        if (filtered) {
            if (!n_allowed || !bsearch(&hits[i].id, allowed, n_allowed, sizeof *allowed, cmp_id))
                continue; /* (bsearch must not see a NULL array, even empty) */
        } else {
            int64_t *p = cache.n_items ? bsearch(&hits[i].id, cache.ids, cache.n_items,
                                                 sizeof *cache.ids, cmp_id)
                                       : NULL;
            if (!p || expired(f, (size_t)(p - cache.ids)))
                continue;
        }
        ids[(*n)++] = hits[i].id;
    }
    free(hits);
out:
    free(allowed);
    free(bias);
    free(qv);
    return rc;
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

int memory_search_kinds(const char *list, char buf[MEMORY_SEARCH_KINDS_BUF],
                        const char *out[MEMORY_SEARCH_KINDS_MAX + 1], Err *err)
{
    out[0] = NULL;
    if (strlen(list) >= MEMORY_SEARCH_KINDS_BUF)
        return err_set(err, ERR_INVAL, "kind: longer than %d bytes", MEMORY_SEARCH_KINDS_BUF - 1);
    snprintf(buf, MEMORY_SEARCH_KINDS_BUF, "%s", list);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == MEMORY_SEARCH_KINDS_MAX)
            return err_set(err, ERR_INVAL, "kind: at most %d of email, form, note, summary",
                           MEMORY_SEARCH_KINDS_MAX);
        out[n++] = t;
    }
    out[n] = NULL;
    return 0;
}

static const char *const mode_names[] = { "hybrid", "bm25", "vector", NULL };

int memory_search_mode(const char *name)
{
    for (int i = 0; mode_names[i]; i++)
        if (name && !strcmp(name, mode_names[i]))
            return i;
    return -1;
}

static int ttl_days(const Config *cfg, int kind)
{
    if (!cfg)
        return MEMORY_ITEM_TTL_DAYS;
    return kind == 1 ? cfg->memory_email_ttl_days
         : kind == 2 ? cfg->memory_form_ttl_days
                     : cfg->memory_note_ttl_days;
}

/* Fuses the lists and reads each hit's row. */
static int hits_json(Store *rd, const MemorySearch *q, int k, const int64_t *bm_ids, char **snips,
                     int n_bm, const int64_t *vec_ids, int n_vec, json_t **ret, Err *err)
{
    AgeCtx age = { .rd = rd, .now_ms = core_time_now_ms() };
    MemFuseList lists[2] = { { bm_ids, n_bm, 1.0 }, { vec_ids, n_vec, MEMORY_SEARCH_VEC_WEIGHT } };
    MemFuseOptions opt = { .k = MEMORY_SEARCH_RRF_K,
                           .half_life_s = MEMORY_SEARCH_HALF_LIFE_DAYS * 86400.0,
                           .age_s = age_of,
                           .ctx = &age };
    MemFused out[MEMORY_SEARCH_K_MAX];
    int n = 0;
    int rc = mem_fuse_rrf(lists, 2, &opt, k, out, &n, err);
    if (rc < 0)
        return rc;
    json_t *list = json_array();
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
                                out[i].score, "snippet", snippet, "seq", (json_int_t)out[i].id,
                                "event_id", store_col_text(item, 0, NULL), "subject",
                                subj ? json_string(subj) : json_null(), "kind",
                                store_col_text(item, 2, NULL), "at", store_col_text(item, 3, NULL),
                                "ranks", "bm25", rank_json(out[i].rank[0]), "vector",
                                rank_json(out[i].rank[1])));
            rc = 0;
        }
        store_stmt_done(item);
    }
    (void)q;
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *ret = list;
    return 0;
}

int memory_search(Store *rd, const MemorySearch *q, json_t **ret, Err *err)
{
    int k = q->k ? q->k : MEMORY_SEARCH_K_DEFAULT;
    if (k < 1 || k > MEMORY_SEARCH_K_MAX)
        return err_set(err, ERR_INVAL, "k: must be from 1 to %d", MEMORY_SEARCH_K_MAX);
    if (q->mode < MEMORY_SEARCH_HYBRID || q->mode > MEMORY_SEARCH_VECTOR)
        return err_set(err, ERR_INVAL, "mode: hybrid, bm25 or vector");
    if (!q->query || !*q->query)
        return err_set(err, ERR_INVAL, "query: required");
    if (strlen(q->query) > MEMORY_SEARCH_QUERY_MAX)
        return err_set(err, ERR_TOOBIG, "query: longer than %d bytes", MEMORY_SEARCH_QUERY_MAX);
    Filter f = { 0 };
    char since[CORE_TIME_LEN + 1], subject[MEMORY_CONTACT_ID_LEN + 1];
    if (q->since) {
        int64_t ms;
        if (core_time_parse(q->since, strlen(q->since), &ms) < 0)
            return err_set(err, ERR_INVAL, "since: '%.40s' is not an RFC 3339 time", q->since);
        core_time_format(ms, since);
        f.since = since;
    }
    int64_t now = q->now_ms ? q->now_ms : core_time_now_ms();
    for (int i = 1; i <= 3; i++) {
        f.cut_ms[i] = now - (int64_t)ttl_days(q->config, i) * 86400000;
        core_time_format(f.cut_ms[i], f.cut[i]);
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
        if (strcmp(*p, "email") && strcmp(*p, "form") && strcmp(*p, "note") &&
            strcmp(*p, "summary")) {
            buf_done(&kinds);
            return err_set(err, ERR_INVAL, "kind: '%.20s': email, form, note or summary", *p);
        }
        buf_printf(&kinds, "%s%s", kinds.len ? "," : "", *p);
    }
    f.kinds = kinds.len ? kinds.ptr : NULL;
    bool filtered = f.subject || f.kinds || f.since;

    int64_t head = 0;
    char hash[CORE_SHA256_HEX + 1];
    if ((rc = ledger_head(rd, &head, hash, err)) < 0) {
        buf_done(&kinds);
        return rc;
    }
    /* a remote embed model's stored vectors: their count is part of the state */
    char model[MEMORY_VECTOR_MODEL_MAX + 1] = "";
    int64_t vcount = 0;
    if (q->config && memory_embed_remote(q->config, model) &&
        (rc = store_query_int(rd, "SELECT count(*) FROM item_vectors WHERE model = ?1", model, 0,
                              &vcount, err)) < 0) {
        buf_done(&kinds);
        return rc;
    }
    /* the result cache */
    const char *path = store_path(rd);
    char *key = NULL;
    if (asprintf(&key, "%s\x1f%s\x1f%lld\x1f%s\x1f%s\x1f%s\x1f%s\x1f%d\x1f%d\x1f%lld,%lld,%lld",
                 path ? path : "", model, (long long)vcount, q->query, f.subject ? f.subject : "", f.kinds ? f.kinds : "",
                 f.since ? f.since : "", k, q->mode, (long long)f.cut_ms[1] / 60000,
                 (long long)f.cut_ms[2] / 60000, (long long)f.cut_ms[3] / 60000) < 0)
        key = NULL;
    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; key && !q->no_cache && i < RESULT_SLOTS; i++)
        if (results[i].key && results[i].head == head && !strcmp(results[i].key, key) &&
            now - results[i].at_ms < RESULT_TTL_MS && now >= results[i].at_ms) {
            *ret = json_deep_copy(results[i].hits);
            pthread_mutex_unlock(&cache_lock);
            free(key);
            buf_done(&kinds);
            return 0;
        }
    pthread_mutex_unlock(&cache_lock);

    int64_t bm_ids[MEMORY_SEARCH_DEPTH], vec_ids[MEMORY_SEARCH_DEPTH];
    char *snips[MEMORY_SEARCH_DEPTH];
    int n_bm = 0, n_vec = 0;
    json_t *list = NULL;
    rc = bm25_list(rd, q->query, &f, bm_ids, snips, &n_bm, err);
    /* a remote model's query vector: a call, made before taking the cache */
    float *remote_q = NULL;
    int remote_dim = 0;
    if (rc == 0 && q->mode != MEMORY_SEARCH_BM25 && *model) {
        pthread_rwlock_rdlock(&router_lock);
        ModelRouter *router = q->router ? q->router : default_router;
        Err e2 = { 0 };
        if (router && memory_embed_query(rd, router, q->config, q->query, &remote_q, &remote_dim,
                                         &e2) < 0)
            remote_q = NULL;
        pthread_rwlock_unlock(&router_lock);
    }
    if (rc == 0 && q->mode != MEMORY_SEARCH_BM25) {
        pthread_mutex_lock(&cache_lock);
        rc = cache_extend(rd, head, model, vcount, err);
        if (rc == 0)
            rc = vector_list(rd, remote_q, remote_dim, q->query, &f, filtered, bm_ids,
                             q->mode == MEMORY_SEARCH_HYBRID ? n_bm : 0, vec_ids, &n_vec, err);
        pthread_mutex_unlock(&cache_lock);
    }
    free(remote_q);
    if (rc == 0)
        rc = hits_json(rd, q, k, bm_ids, snips, q->mode == MEMORY_SEARCH_VECTOR ? 0 : n_bm, vec_ids,
                       n_vec, &list, err);
    for (int i = 0; i < n_bm; i++)
        free(snips[i]);
    buf_done(&kinds);
    if (rc < 0) {
        free(key);
        return rc;
    }
    if (key) {
        pthread_mutex_lock(&cache_lock);
        Result *r = &results[result_next++ % RESULT_SLOTS];
        free(r->key);
        json_decref(r->hits);
        *r = (Result){ .key = key, .head = head, .at_ms = now, .hits = json_deep_copy(list) };
        pthread_mutex_unlock(&cache_lock);
    }
    *ret = list;
    return 0;
}
