/* The "content" projection (migrations/sqlite/0011_content.sql) and its
 * queries; see content.h. */
#include "flow/content.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/projection.h"

static const char *const tables[] = { "content_pieces", "content_engagement", NULL };

/* Types Bureau writes itself: they may carry a piece (a step's output, an
 * effect's payload) without being engagement. */
static bool own_type(const char *type)
{
    static const char *const prefixes[] = { "task.",      "step.",     "approval.", "effect.",
                                            "model.",     "memory.",   "connector.", "ledger.",
                                            "schedule.",  "workflow.", "operator.", "content.idea",
                                            "content.published" };
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (!strncmp(type, prefixes[i], strlen(prefixes[i])))
            return true;
    return false;
}

static bool metric_ok(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > CONTENT_METRIC_MAX)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
              *p == '.'))
            return false;
    return true;
}

static const char *piece_of(const json_t *d)
{
    const char *p = json_string_value(json_object_get(d, "piece"));
    return p && *p && strlen(p) <= CONTENT_PIECE_MAX ? p : NULL;
}

static int published(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *piece = piece_of(d);
    if (!piece)
        return 0;
    const char *title = json_string_value(json_object_get(d, "title"));
    const json_t *idea = json_object_get(d, "idea_seq");
    /* a template renders numbers as text: "42" and 42 are the same seq */
    int64_t idea_seq = json_is_integer(idea) ? (int64_t)json_integer_value(idea)
                       : json_is_string(idea) ? strtoll(json_string_value(idea), NULL, 10)
                                              : 0;
    const char *effect = json_string_value(json_object_get(d, "effect"));
    return store_execf(tx, err,
                       "INSERT INTO content_pieces(piece, title, idea_seq, effect, published_at,"
                       " seq) VALUES (?1, ?2, nullif(?3, 0), ?4, ?5, ?6)"
                       " ON CONFLICT(piece) DO UPDATE SET title = ?2, idea_seq = nullif(?3, 0),"
                       " effect = ?4, published_at = ?5, seq = ?6",
                       "ssissi", piece, title ? title : "", idea_seq, effect && *effect ? effect : NULL,
                       ev->occurred_at, ev->seq);
}

static int engagement(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *piece = piece_of(d);
    if (!piece)
        return 0;
    const char *metric = json_string_value(json_object_get(d, "metric"));
    if (!metric || !metric_ok(metric))
        metric = ev->type;
    const json_t *v = json_object_get(d, "value");
    if (!json_is_number(v))
        v = json_object_get(d, "count");
    double value = json_is_number(v) ? json_number_value(v) : 1.0;
    if (!isfinite(value) || fabs(value) > 1e12)
        value = 1.0;
    return store_execf(tx, err,
                       "INSERT OR REPLACE INTO content_engagement(seq, piece, type, metric, value,"
                       " occurred_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                       "isssrs", ev->seq, piece, ev->type, metric, value, ev->occurred_at);
}

static int apply(Store *tx, const Event *ev, Err *err)
{
    /* Most events name no piece: they cost a search of their text. */
    if (!ev->data || !memmem(ev->data, ev->data_len, "\"piece\"", 7))
        return 0;
    bool pub = !strcmp(ev->type, "content.published");
    if (!pub && own_type(ev->type))
        return 0;
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!d)
        return 0;
    int rc = pub ? published(tx, ev, d, err) : engagement(tx, ev, d, err);
    json_decref(d);
    return rc;
}

static const Projection content_projection = {
    .name = "content",
    .version = 1,
    .tables = tables,
    .apply = apply,
};

void content_projection_register(void)
{
    ledger_projection_register(&content_projection);
}

/* ---- queries ---- */

/* A whole number as an integer, else a real. */
static json_t *number(double v)
{
    return v == floor(v) && fabs(v) < 9e15 ? json_integer((json_int_t)v) : json_real(v);
}

static json_t *piece_row(StoreStmt *st)
{
    const char *effect = store_col_text(st, 3, NULL);
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:I, s:o, s:I}", "piece",
                     store_col_text(st, 0, NULL), "title", store_col_text(st, 1, NULL),
                     "published_at", store_col_text(st, 4, NULL), "idea_seq",
                     store_col_type(st, 2) == STORE_NULL ? json_null()
                                                         : json_integer(store_col_int(st, 2)),
                     "effect", effect ? json_string(effect) : json_null(), "seq",
                     (json_int_t)store_col_int(st, 5), "engagement", json_object(), "events",
                     (json_int_t)0);
}

/* Fills each piece's engagement totals and event count. */
static int totals(Store *rd, json_t *piece, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT metric, sum(value), count(*) FROM content_engagement"
                           " WHERE piece = ?1 GROUP BY metric ORDER BY metric",
                           &st, err);
    if (rc < 0)
        return rc;
    const char *id = json_string_value(json_object_get(piece, "piece"));
    store_bind_text(st, 1, id, strlen(id));
    json_t *eng = json_object_get(piece, "engagement");
    json_int_t events = 0;
    while ((rc = store_step(st, err)) == STORE_ROW) {
        json_object_set_new(eng, store_col_text(st, 0, NULL), number(store_col_real(st, 1)));
        events += store_col_int(st, 2);
    }
    store_stmt_done(st);
    json_object_set_new(piece, "events", json_integer(events));
    return rc < 0 ? rc : 0;
}

#define PIECE_COLS "piece, title, idea_seq, effect, published_at, seq"

int content_list(Store *rd, int limit, json_t **ret, Err *err)
{
    if (limit < 1 || limit > 1000)
        return err_set(err, ERR_INVAL, "limit: %d is not between 1 and 1000", limit);
    StoreStmt *st;
    int rc = store_prepare(rd, "SELECT " PIECE_COLS " FROM content_pieces ORDER BY seq DESC LIMIT ?1",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_int(st, 1, limit);
    json_t *list = json_array();
    while ((rc = store_step(st, err)) == STORE_ROW)
        json_array_append_new(list, piece_row(st));
    store_stmt_done(st);
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p) {
        if (rc >= 0)
            rc = totals(rd, p, err);
    }
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *ret = list;
    return 0;
}

int content_get(Store *rd, const char *piece, json_t **ret, Err *err)
{
    if (!piece || !*piece || strlen(piece) > CONTENT_PIECE_MAX)
        return err_set(err, ERR_INVAL, "piece: expected an id of 1 to %d bytes", CONTENT_PIECE_MAX);
    StoreStmt *st;
    int rc = store_prepare(rd, "SELECT " PIECE_COLS " FROM content_pieces WHERE piece = ?1", &st,
                           err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, piece, strlen(piece));
    json_t *p = NULL;
    if ((rc = store_step(st, err)) == STORE_ROW)
        p = piece_row(st);
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    if (!p)
        return err_set(err, ERR_NOTFOUND, "no published piece %s", piece);
    if ((rc = totals(rd, p, err)) < 0)
        goto fail;
    if ((rc = store_prepare(rd,
                            "SELECT seq, type, metric, value, occurred_at FROM content_engagement"
                            " WHERE piece = ?1 ORDER BY seq DESC LIMIT ?2",
                            &st, err)) < 0)
        goto fail;
    store_bind_text(st, 1, piece, strlen(piece));
    store_bind_int(st, 2, CONTENT_RECENT);
    json_t *recent = json_array();
    json_object_set_new(p, "recent", recent);
    while ((rc = store_step(st, err)) == STORE_ROW)
        json_array_append_new(recent,
                              json_pack("{s:I, s:s, s:s, s:o, s:s}", "seq",
                                        (json_int_t)store_col_int(st, 0), "type",
                                        store_col_text(st, 1, NULL), "metric",
                                        store_col_text(st, 2, NULL), "value",
                                        number(store_col_real(st, 3)), "occurred_at",
                                        store_col_text(st, 4, NULL)));
    store_stmt_done(st);
    if (rc < 0)
        goto fail;
    *ret = p;
    return 0;
fail:
    json_decref(p);
    return rc;
}
