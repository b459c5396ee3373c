/* Themes of what people said (themes.h). */
#include "memory/themes.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "model/local.h"

typedef struct Text {
    int64_t seq;
    char *text, *who;
    float *v;
    int cluster;
} Text;

typedef struct Cluster {
    float *sum;   /* the sum of its members' vectors */
    int n;
    int first;    /* its earliest text (index) */
    int alive;
} Cluster;

static const char *str_of(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && *s ? s : NULL;
}

/* What the person wrote: message, text, a form's message, or the subject. */
static const char *said(const json_t *d)
{
    const json_t *f = json_object_get(d, "fields");
    const char *s = str_of(d, "message");
    if (!s)
        s = str_of(d, "text");
    if (!s)
        s = str_of(f, "message");
    if (!s)
        s = str_of(f, "feedback");
    if (!s)
        s = str_of(d, "subject");
    return s;
}

static const char *who_of(const json_t *d)
{
    const json_t *from = json_object_get(d, "from");
    const char *s = str_of(d, "email");
    if (!s)
        s = json_is_string(from) ? json_string_value(from) : str_of(from, "email");
    if (!s)
        s = str_of(json_object_get(d, "fields"), "email");
    if (!s)
        s = str_of(json_object_get(d, "customer"), "email");
    return s;
}

/* ---- words, for naming a theme ---- */

static bool stop_word(const char *w)
{
    static const char *const stop[] = {
        "about", "after", "again", "also", "been", "before", "being", "could", "does",
        "doing", "from", "have", "having", "here", "into", "just", "like", "more", "most",
        "much", "only", "other", "over", "really", "same", "should", "some", "such", "than",
        "that", "their", "them", "then", "there", "these", "they", "this", "those", "very",
        "want", "were", "what", "when", "where", "which", "while", "will", "with", "would",
        "your", "yours", "thanks", "thank", "please", "hello", "regards", "best", "still",
        "every", "each", "makes", "make", "made", "because", "since", "ours", "don't",
        "can't", "it's", "i'm", "we're", "you're", "cannot", "think", "know", NULL,
    };
    for (int i = 0; stop[i]; i++)
        if (!strcmp(w, stop[i]))
            return true;
    return false;
}

typedef struct Words {
    char **w;
    size_t n, cap;
} Words;

static void words_add(Words *ws, const char *p, size_t n)
{
    if (ws->n == ws->cap) {
        ws->cap = ws->cap ? ws->cap * 2 : 64;
        ws->w = xrealloc(ws->w, ws->cap * sizeof *ws->w);
    }
    char *w = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        w[i] = (char)tolower((unsigned char)p[i]);
    w[n] = '\0';
    ws->w[ws->n++] = w;
}

/* The words of text (letters, apostrophes inside), 4 letters or more, no
 * stop word; unique: each once. */
static void words_of(const char *text, bool unique, Words *ws)
{
    size_t from = ws->n;
    for (const char *p = text; *p;) {
        if (!isalpha((unsigned char)*p) && (unsigned char)*p < 0x80) {
            p++;
            continue;
        }
        const char *s = p;
        while (*p && (isalpha((unsigned char)*p) || (unsigned char)*p >= 0x80 ||
                      (*p == '\'' && isalpha((unsigned char)p[1]))))
            p++;
        size_t n = (size_t)(p - s);
        if (n < 4 || n > 40)
            continue;
        words_add(ws, s, n);
        if (stop_word(ws->w[ws->n - 1])) {
            free(ws->w[--ws->n]);
            continue;
        }
        if (unique)
            for (size_t i = from; i + 1 < ws->n; i++)
                if (!strcmp(ws->w[i], ws->w[ws->n - 1])) {
                    free(ws->w[--ws->n]);
                    break;
                }
    }
}

static void words_done(Words *ws)
{
    for (size_t i = 0; i < ws->n; i++)
        free(ws->w[i]);
    free(ws->w);
    memset(ws, 0, sizeof *ws);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* How many texts hold w (df: sorted words, one per text). */
static size_t df_of(const Words *df, const char *w)
{
    char *const *hit = df->n ? bsearch(&w, df->w, df->n, sizeof *df->w, cmp_str) : NULL;
    if (!hit)
        return 0;
    size_t lo = (size_t)(hit - df->w), hi = lo;
    while (lo > 0 && !strcmp(df->w[lo - 1], w))
        lo--;
    while (hi + 1 < df->n && !strcmp(df->w[hi + 1], w))
        hi++;
    return hi - lo + 1;
}

/* The three words that best name a cluster: in many of its texts, in few
 * of the others (count in the cluster x log(N / df)). */
static json_t *name_words(const Text *t, size_t n_texts, int c, const Words *df)
{
    Words ws = { 0 };
    size_t members = 0;
    for (size_t i = 0; i < n_texts; i++)
        if (t[i].cluster == c) {
            words_of(t[i].text, true, &ws);
            members++;
        }
    if (ws.n)
        qsort(ws.w, ws.n, sizeof *ws.w, cmp_str);
    typedef struct { const char *w; double score; } Best;
    Best best[3] = { { NULL, 0 }, { NULL, 0 }, { NULL, 0 } };
    for (size_t i = 0; i < ws.n;) {
        size_t j = i;
        while (j < ws.n && !strcmp(ws.w[j], ws.w[i]))
            j++;
        size_t in = j - i, all = df_of(df, ws.w[i]);
        /* a word of one text does not name a theme of several */
        double score = in >= 2 || members == 1
                           ? (double)in * log((double)(n_texts + 1) / (double)(all ? all : 1))
                           : 0;
        for (int k = 0; k < 3; k++)
            if (score > best[k].score) {
                memmove(&best[k + 1], &best[k], (size_t)(2 - k) * sizeof *best);
                best[k] = (Best){ ws.w[i], score };
                break;
            }
        i = j;
    }
    json_t *words = json_array();
    for (int k = 0; k < 3; k++)
        if (best[k].w)
            json_array_append_new(words, json_string(best[k].w));
    words_done(&ws);
    return words;
}

static double cos_sum(const float *a, const float *b, int dim)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < dim; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

static int cmp_cluster(const void *a, const void *b, void *ctx)
{
    const Cluster *cs = ctx;
    const int *x = a, *y = b;
    if (cs[*x].n != cs[*y].n)
        return cs[*y].n - cs[*x].n;
    return cs[*x].first - cs[*y].first;
}

int memory_themes(Store *rd, const char *const *types, int64_t since_ms, int max_themes,
                  json_t **ret, Err *err)
{
    if (max_themes <= 0)
        max_themes = MEMORY_THEMES_DEFAULT_MAX;
    char since[CORE_TIME_LEN + 1];
    core_time_format(since_ms, since);
    Buf in;
    buf_init(&in, 0);
    int nt = 0;
    for (const char *const *p = types; p && *p && nt < MEMORY_THEMES_MAX_TYPES; p++, nt++) {
        json_t *s = json_string(*p);
        char *q = json_dumps(s, JSON_ENCODE_ANY);
        buf_printf(&in, "%s%s", nt ? "," : "", q ? q : "\"\"");
        free(q);
        json_decref(s);
    }
    Buf sql;
    buf_init(&sql, 0);
    buf_printf(&sql,
               "SELECT seq, data FROM events WHERE type IN (SELECT value FROM json_each(?1))"
               " AND coalesce(nullif(occurred_at, ''), received_at) >= ?2"
               " ORDER BY seq DESC LIMIT %d",
               MEMORY_THEMES_MAX_TEXTS);
    char *list = NULL;
    if (asprintf(&list, "[%s]", in.ptr ? in.ptr : "") < 0)
        list = NULL;
    buf_done(&in);
    StoreStmt *st;
    int rc = store_prepare(rd, buf_cstr(&sql), &st, err);
    buf_done(&sql);
    Text *t = NULL;
    size_t n = 0, cap = 0;
    if (rc == 0) {
        store_bind_text(st, 1, list ? list : "[]", list ? strlen(list) : 2);
        store_bind_text(st, 2, since, strlen(since));
        while ((rc = store_step(st, err)) == STORE_ROW) {
            size_t len;
            const char *data = store_col_text(st, 1, &len);
            json_t *d = data ? json_loadb(data, len, 0, NULL) : NULL;
            const char *s = said(d);
            if (s) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 64;
                    t = xrealloc(t, cap * sizeof *t);
                }
                const char *w = who_of(d);
                t[n++] = (Text){ .seq = store_col_int(st, 0), .text = xstrdup(s),
                                 .who = w ? xstrdup(w) : NULL, .cluster = -1 };
            }
            json_decref(d);
        }
        store_stmt_done(st);
        rc = rc < 0 ? rc : 0;
    }
    free(list);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++) {
            free(t[i].text);
            free(t[i].who);
        }
        free(t);
        return rc;
    }
    /* oldest first, so that the grouping reads as the week went */
    for (size_t i = 0; i < n / 2; i++) {
        Text x = t[i];
        t[i] = t[n - 1 - i];
        t[n - 1 - i] = x;
    }
    LocalIdf *idf = local_idf_new();
    for (size_t i = 0; i < n; i++)
        local_idf_add(idf, t[i].text, strlen(t[i].text));
    const int dim = LOCAL_EMBED_DIM;
    for (size_t i = 0; i < n; i++) {
        t[i].v = xcalloc((size_t)dim, sizeof(float));
        local_embed(idf, t[i].text, strlen(t[i].text), dim, t[i].v, NULL);
    }
    /* 1. each text joins the most similar group above the threshold, or
     * starts one; 2. groups whose centroids are that similar merge */
    Cluster *cs = xcalloc(n ? n : 1, sizeof *cs);
    int nc = 0;
    for (size_t i = 0; i < n; i++) {
        int best = -1;
        double best_s = MEMORY_THEMES_JOIN;
        for (int c = 0; c < nc; c++) {
            double s = cos_sum(cs[c].sum, t[i].v, dim);
            if (s > best_s) {
                best_s = s;
                best = c;
            }
        }
        if (best < 0) {
            best = nc++;
            cs[best] = (Cluster){ .sum = xcalloc((size_t)dim, sizeof(float)), .first = (int)i,
                                  .alive = 1 };
        }
        for (int d = 0; d < dim; d++)
            cs[best].sum[d] += t[i].v[d];
        cs[best].n++;
        t[i].cluster = best;
    }
    for (bool merged = true; merged;) { /* passes until one merges nothing */
        merged = false;
        for (int a = 0; a < nc; a++)
            for (int b = a + 1; b < nc && cs[a].alive; b++) {
                if (!cs[a].alive || !cs[b].alive ||
                    cos_sum(cs[a].sum, cs[b].sum, dim) <= MEMORY_THEMES_JOIN)
                    continue;
                for (int d = 0; d < dim; d++)
                    cs[a].sum[d] += cs[b].sum[d];
                cs[a].n += cs[b].n;
                cs[b].alive = 0;
                for (size_t i = 0; i < n; i++)
                    if (t[i].cluster == b)
                        t[i].cluster = a;
                merged = true;
            }
    }
    /* 3. a text left alone joins the nearest theme of two or more when it
     * is at least half as close as joining asks (a phrasing of its own) */
    for (size_t i = 0; i < n; i++) {
        int c0 = t[i].cluster;
        if (cs[c0].n != 1)
            continue;
        int best = -1;
        double best_s = MEMORY_THEMES_JOIN / 2;
        for (int c = 0; c < nc; c++) {
            if (c == c0 || !cs[c].alive || cs[c].n < 2)
                continue;
            double sim = cos_sum(cs[c].sum, t[i].v, dim);
            if (sim > best_s) {
                best_s = sim;
                best = c;
            }
        }
        if (best < 0)
            continue;
        for (int d = 0; d < dim; d++)
            cs[best].sum[d] += t[i].v[d];
        cs[best].n++;
        cs[c0].alive = 0;
        t[i].cluster = best;
    }
    /* names */
    Words df = { 0 };
    for (size_t i = 0; i < n; i++)
        words_of(t[i].text, true, &df);
    if (df.n)
        qsort(df.w, df.n, sizeof *df.w, cmp_str);
    int *order = xmalloc((size_t)(nc ? nc : 1) * sizeof *order);
    int alive = 0;
    for (int c = 0; c < nc; c++)
        if (cs[c].alive)
            order[alive++] = c;
    qsort_r(order, (size_t)alive, sizeof *order, cmp_cluster, cs);
    json_t *themes = json_array(), *other = NULL;
    for (int k = 0; k < alive; k++) {
        int c = order[k];
        bool lone = cs[c].n == 1;
        if ((int)json_array_size(themes) >= max_themes || (lone && alive > max_themes)) {
            if (!other)
                other = json_pack("{s:s, s:[], s:i, s:[], s:[]}", "label", "other", "words", "count",
                                  0, "quotes", "seqs");
            json_object_set_new(other, "count",
                                json_integer(json_integer_value(json_object_get(other, "count")) +
                                             cs[c].n));
            for (size_t i = 0; i < n; i++)
                if (t[i].cluster == c)
                    json_array_append_new(json_object_get(other, "seqs"), json_integer(t[i].seq));
            continue;
        }
        json_t *words = name_words(t, n, c, &df);
        Buf label;
        buf_init(&label, 0);
        size_t wi;
        json_t *w;
        json_array_foreach(words, wi, w)
            buf_printf(&label, "%s%s", wi ? ", " : "", json_string_value(w));
        json_t *quotes = json_array(), *seqs = json_array();
        for (size_t i = 0; i < n; i++) {
            if (t[i].cluster != c)
                continue;
            json_array_append_new(seqs, json_integer(t[i].seq));
            if (json_array_size(quotes) < MEMORY_THEMES_QUOTES) {
                size_t len = strlen(t[i].text);
                if (len > MEMORY_THEMES_QUOTE_CHARS) {
                    len = MEMORY_THEMES_QUOTE_CHARS;
                    while (len > 0 && ((unsigned char)t[i].text[len] & 0xC0) == 0x80)
                        len--;
                }
                json_array_append_new(quotes, json_pack("{s:I, s:s%, s:s?}", "seq",
                                                        (json_int_t)t[i].seq, "text", t[i].text,
                                                        len, "who", t[i].who));
            }
        }
        json_array_append_new(themes, json_pack("{s:s, s:o, s:i, s:o, s:o}", "label",
                                                label.len ? label.ptr : "(unnamed)", "words",
                                                words, "count", cs[c].n, "quotes", quotes,
                                                "seqs", seqs));
        buf_done(&label);
    }
    if (other)
        json_array_append_new(themes, other);
    *ret = json_pack("{s:s, s:I, s:o}", "since", since, "total", (json_int_t)n, "themes", themes);
    free(order);
    words_done(&df);
    for (int c = 0; c < nc; c++)
        free(cs[c].sum);
    free(cs);
    for (size_t i = 0; i < n; i++) {
        free(t[i].text);
        free(t[i].who);
        free(t[i].v);
    }
    free(t);
    local_idf_free(idf);
    return 0;
}
