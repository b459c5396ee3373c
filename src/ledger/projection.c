/* The projection registry, the writer's catch-up and apply hooks, replay,
 * replay --check, digests and snapshots. Table and column names spliced into
 * SQL here come from the projections' own definitions and the database's
 * schema, never from outside input; they are quoted all the same. */
#include "ledger/projection.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"
#include "ledger/ledger_int.h"

#define MAX_PROJECTIONS 64

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static const Projection *registry[MAX_PROJECTIONS];
static size_t registry_n;

void ledger_projection_register(const Projection *p)
{
    pthread_mutex_lock(&reg_lock);
    bool have = false;
    for (size_t i = 0; i < registry_n; i++)
        have |= !strcmp(registry[i]->name, p->name);
    if (!have && registry_n < MAX_PROJECTIONS)
        registry[registry_n++] = p;
    pthread_mutex_unlock(&reg_lock);
}

size_t ledger_projection_list(const Projection *const **ret)
{
    pthread_mutex_lock(&reg_lock);
    size_t n = registry_n;
    pthread_mutex_unlock(&reg_lock);
    *ret = registry;
    return n;
}

const Projection *ledger_projection_find(const char *name)
{
    const Projection *const *list;
    size_t n = ledger_projection_list(&list);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i]->name, name))
            return list[i];
    return NULL;
}

/* ---- checkpoints ---- */

static int checkpoint_get(Store *s, const Projection *p, int *ret_version, int64_t *ret_seq,
                          Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(s, "SELECT version, seq FROM ledger_state WHERE name = ?1", &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, p->name, strlen(p->name));
    rc = store_step(st, err);
    if (rc == STORE_ROW) {
        *ret_version = (int)store_col_int(st, 0);
        *ret_seq = store_col_int(st, 1);
    } else if (rc == STORE_DONE) {
        *ret_version = -1;
        *ret_seq = -1;
    }
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

static int checkpoint_set(Store *s, const Projection *p, int64_t seq, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(s,
                           "INSERT INTO ledger_state(name, version, seq) VALUES (?1, ?2, ?3)"
                           " ON CONFLICT(name) DO UPDATE SET version = ?2, seq = ?3",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, p->name, strlen(p->name));
    store_bind_int(st, 2, p->version);
    store_bind_int(st, 3, seq);
    return store_stmt_exec(st, err);
}

/* ---- rebuilding ---- */

static int clear_tables(Store *s, const Projection *p, Err *err)
{
    if (p->forget)
        p->forget();
    for (const char *const *t = p->tables; *t; t++) {
        char sql[256];
        snprintf(sql, sizeof sql, "DELETE FROM \"%s\"", *t);
        int rc = store_exec(s, sql, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

typedef struct ApplyCtx {
    Store *s;
    const Projection *only; /* NULL: all in list */
    const Projection *const *list;
    size_t n;
    int64_t applied;
    Err *err;
} ApplyCtx;

static int apply_one(void *vctx, const Event *ev)
{
    ApplyCtx *c = vctx;
    for (size_t i = 0; i < c->n; i++) {
        int rc = c->list[i]->apply(c->s, ev, c->err);
        if (rc < 0)
            return err_wrap(c->err, "projection %s at seq %lld", c->list[i]->name,
                            (long long)ev->seq);
    }
    c->applied++;
    return 0;
}

/* Applies events (after_seq, head] to projections list[0..n) on s. Reads the
 * events on a second statement of the same connection, which SQLite allows
 * while the projection writes other tables. */
static int apply_range(Store *s, const Projection *const *list, size_t n, int64_t after_seq,
                       int64_t *ret_applied, Err *err)
{
    ApplyCtx c = { .s = s, .list = list, .n = n, .err = err };
    LedgerFilter f = { .after_seq = after_seq };
    int rc = ledger_read(s, &f, apply_one, &c, err);
    if (ret_applied)
        *ret_applied += c.applied;
    return rc < 0 ? rc : 0;
}

static int snapshot_load(Store *s, const Projection *p, int64_t head, int64_t *ret_seq,
                         Err *err);

static int rebuild(Store *s, const Projection *p, bool use_snapshot, int64_t head,
                   int64_t *ret_applied, Err *err)
{
    int rc = clear_tables(s, p, err);
    if (rc < 0)
        return rc;
    int64_t from = 0;
    if (use_snapshot && (rc = snapshot_load(s, p, head, &from, err)) < 0)
        return rc;
    const Projection *one[1] = { p };
    if ((rc = apply_range(s, one, 1, from, ret_applied, err)) < 0)
        return rc;
    return checkpoint_set(s, p, head, err);
}

void ledger__projections_forget(void)
{
    const Projection *const *list;
    size_t n = ledger_projection_list(&list);
    for (size_t i = 0; i < n; i++)
        if (list[i]->forget)
            list[i]->forget();
}

/* Another process may have appended since this one last did. */
int ledger__projections_catch_up(Store *tx, int64_t head, Err *err)
{
    ledger__projections_forget();
    const Projection *const *list;
    size_t n = ledger_projection_list(&list);
    for (size_t i = 0; i < n; i++) {
        int version = 0;
        int64_t seq = 0;
        int rc = checkpoint_get(tx, list[i], &version, &seq, err);
        if (rc < 0)
            return rc;
        if (version != list[i]->version)
            rc = rebuild(tx, list[i], true, head, NULL, err);
        else if (seq < head) {
            const Projection *one[1] = { list[i] };
            rc = apply_range(tx, one, 1, seq, NULL, err);
            if (rc == 0)
                rc = checkpoint_set(tx, list[i], head, err);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int ledger__projections_apply(Store *tx, const Event *ev, Err *err)
{
    const Projection *const *list;
    size_t n = ledger_projection_list(&list);
    for (size_t i = 0; i < n; i++) {
        int rc = list[i]->apply(tx, ev, err);
        if (rc < 0)
            return err_wrap(err, "projection %s", list[i]->name);
    }
    return 0;
}

int ledger__projections_checkpoint(Store *tx, int64_t head, Err *err)
{
    const Projection *const *list;
    size_t n = ledger_projection_list(&list);
    for (size_t i = 0; i < n; i++) {
        int rc = checkpoint_set(tx, list[i], head, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int select_projections(const char *only, const Projection **one,
                              const Projection *const **ret_list, size_t *ret_n, Err *err)
{
    if (!only) {
        *ret_n = ledger_projection_list(ret_list);
        return 0;
    }
    *one = ledger_projection_find(only);
    if (!*one)
        return err_set(err, ERR_NOTFOUND, "no projection named '%s'", only);
    *ret_list = one;
    *ret_n = 1;
    return 0;
}

int ledger_replay(Store *s, const char *only, bool full, int64_t *ret_events, Err *err)
{
    const Projection *one = NULL, *const *list = NULL;
    size_t n = 0;
    int rc = select_projections(only, &one, &list, &n, err);
    if (rc < 0)
        return rc;
    if ((rc = store_begin_write(s, err)) < 0)
        return rc;
    int64_t head, applied = 0;
    if ((rc = ledger_head(s, &head, NULL, err)) < 0)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        int64_t read = 0; /* events this projection's rebuild read */
        if ((rc = rebuild(s, list[i], !full, head, &read, err)) < 0)
            goto fail;
        if (read > applied)
            applied = read;
    }
    if ((rc = store_commit(s, err)) < 0)
        goto fail;
    if (ret_events)
        *ret_events = applied;
    return 0;
fail:
    store_rollback(s);
    ledger__projections_forget();
    return rc;
}

int ledger_replay_check(Store *s, const char *only, ReplayCheck *out, size_t cap,
                        size_t *ret_n, Err *err)
{
    const Projection *one = NULL, *const *list = NULL;
    size_t n = 0;
    int rc = select_projections(only, &one, &list, &n, err);
    if (rc < 0)
        return rc;
    if (n > cap)
        return err_set(err, ERR_INTERNAL, "more projections (%zu) than result slots", n);
    if ((rc = store_begin_write(s, err)) < 0)
        return rc;
    int64_t head;
    if ((rc = ledger_head(s, &head, NULL, err)) < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        out[i].projection = list[i];
        if ((rc = ledger_projection_digest(s, list[i], out[i].live, err)) < 0 ||
            (rc = rebuild(s, list[i], false, head, NULL, err)) < 0 ||
            (rc = ledger_projection_digest(s, list[i], out[i].rebuilt, err)) < 0)
            goto out;
        out[i].equal = !strcmp(out[i].live, out[i].rebuilt);
    }
    *ret_n = n;
out:
    store_rollback(s); /* the check never changes the live tables */
    ledger__projections_forget();
    return rc;
}

/* ---- digests and snapshots ---- */

static int column_list(Store *s, const char *table, Buf *cols, int *ret_n, Err *err)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT * FROM \"%s\" LIMIT 0", table);
    StoreStmt *st;
    *ret_n = 0;
    int rc = store_prepare(s, sql, &st, err);
    if (rc < 0)
        return rc;
    int n = store_col_count(st);
    for (int i = 0; i < n; i++)
        buf_printf(cols, "%s\"%s\"", i ? ", " : "", store_col_name(st, i));
    store_stmt_done(st);
    *ret_n = n;
    return 0;
}

static void hash_value(CoreSha256 *h, StoreStmt *st, int i)
{
    char tmp[64];
    size_t len = 0;
    const void *p = NULL;
    char tag;
    switch (store_col_type(st, i)) {
    case STORE_INT:
        tag = 'i';
        len = (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)store_col_int(st, i));
        p = tmp;
        break;
    case STORE_REAL:
        tag = 'r';
        len = (size_t)snprintf(tmp, sizeof tmp, "%.17g", store_col_real(st, i));
        p = tmp;
        break;
    case STORE_TEXT:
        tag = 't';
        p = store_col_text(st, i, &len);
        break;
    case STORE_BLOB:
        tag = 'b';
        p = store_col_blob(st, i, &len);
        break;
    default:
        tag = 'n';
        break;
    }
    char head[32];
    int k = snprintf(head, sizeof head, "%c%zu:", tag, len);
    core_sha256_update(h, head, (size_t)k);
    if (len)
        core_sha256_update(h, p, len);
}

int ledger_projection_digest(Store *s, const Projection *p, char out[CORE_SHA256_HEX + 1],
                             Err *err)
{
    CoreSha256 *h = core_sha256_new();
    Buf cols, sql;
    buf_init(&cols, 0);
    buf_init(&sql, 0);
    int rc = 0;
    for (const char *const *t = p->tables; *t; t++) {
        int n = 0;
        buf_clear(&cols);
        buf_clear(&sql);
        if ((rc = column_list(s, *t, &cols, &n, err)) < 0)
            goto out;
        buf_printf(&sql, "SELECT %s FROM \"%s\" ORDER BY %s", cols.ptr, *t, cols.ptr);
        core_sha256_update(h, *t, strlen(*t) + 1);
        StoreStmt *st;
        if ((rc = store_prepare(s, sql.ptr, &st, err)) < 0)
            goto out;
        while ((rc = store_step(st, err)) == STORE_ROW) {
            for (int i = 0; i < n; i++)
                hash_value(h, st, i);
            core_sha256_update(h, "\n", 1);
        }
        store_stmt_done(st);
        if (rc < 0)
            goto out;
    }
    uint8_t d[CORE_SHA256_LEN];
    core_sha256_final(h, d);
    core_hex_encode(d, sizeof d, out);
    rc = 0;
out:
    core_sha256_free(h);
    buf_done(&cols);
    buf_done(&sql);
    return rc;
}

static json_t *row_value(StoreStmt *st, int i)
{
    size_t len;
    switch (store_col_type(st, i)) {
    case STORE_INT: return json_integer(store_col_int(st, i));
    case STORE_REAL: return json_real(store_col_real(st, i));
    case STORE_TEXT: {
        const char *t = store_col_text(st, i, &len);
        return json_stringn(t, len);
    }
    case STORE_BLOB: {
        const void *b = store_col_blob(st, i, &len);
        char *hex = xmalloc(len * 2 + 1);
        core_hex_encode(b, len, hex);
        json_t *v = json_pack("{s:s}", "hex", hex);
        free(hex);
        return v;
    }
    default: return json_null();
    }
}

static int snapshot_one(Store *s, const Projection *p, int64_t *ret_seq, Err *err)
{
    int version = 0;
    int64_t seq = 0;
    int rc = checkpoint_get(s, p, &version, &seq, err);
    if (rc < 0)
        return rc;
    if (version != p->version || seq < 0)
        return err_set(err, ERR_INVAL, "projection %s has not been built yet", p->name);
    json_t *state = json_object();
    Buf cols, sql, text;
    buf_init(&cols, 0);
    buf_init(&sql, 0);
    buf_init(&text, 0);
    for (const char *const *t = p->tables; *t; t++) {
        int n = 0;
        buf_clear(&cols);
        buf_clear(&sql);
        if ((rc = column_list(s, *t, &cols, &n, err)) < 0)
            goto out;
        buf_printf(&sql, "SELECT %s FROM \"%s\" ORDER BY %s", cols.ptr, *t, cols.ptr);
        StoreStmt *st;
        if ((rc = store_prepare(s, sql.ptr, &st, err)) < 0)
            goto out;
        json_t *names = json_array(), *rows = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(names, json_string(store_col_name(st, i)));
        while ((rc = store_step(st, err)) == STORE_ROW) {
            json_t *row = json_array();
            for (int i = 0; i < n; i++)
                json_array_append_new(row, row_value(st, i));
            json_array_append_new(rows, row);
        }
        store_stmt_done(st);
        json_object_set_new(state, *t, json_pack("{s:o, s:o}", "columns", names, "rows", rows));
        if (rc < 0)
            goto out;
    }
    core_json_canonical(state, &text);
    char hash[CORE_SHA256_HEX + 1], now[CORE_TIME_LEN + 1];
    core_sha256_hex(text.ptr, text.len, hash);
    core_time_format(core_time_now_ms(), now);
    StoreStmt *ins;
    if ((rc = store_prepare(s,
                            "INSERT OR REPLACE INTO projection_snapshots"
                            "(name, version, seq, state, state_hash, created_at)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            &ins, err)) < 0)
        goto out;
    store_bind_text(ins, 1, p->name, strlen(p->name));
    store_bind_int(ins, 2, p->version);
    store_bind_int(ins, 3, seq);
    store_bind_text(ins, 4, text.ptr, text.len);
    store_bind_text(ins, 5, hash, strlen(hash));
    store_bind_text(ins, 6, now, strlen(now));
    rc = store_stmt_exec(ins, err);
    if (rc == 0 && ret_seq)
        *ret_seq = seq;
out:
    json_decref(state);
    buf_done(&cols);
    buf_done(&sql);
    buf_done(&text);
    return rc;
}

int ledger_snapshot(Store *s, const char *only, int64_t *ret_seq, Err *err)
{
    const Projection *one = NULL, *const *list = NULL;
    size_t n = 0;
    int rc = select_projections(only, &one, &list, &n, err);
    if (rc < 0)
        return rc;
    if ((rc = store_begin_write(s, err)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        if ((rc = snapshot_one(s, list[i], ret_seq, err)) < 0) {
            store_rollback(s);
            return rc;
        }
    return store_commit(s, err);
}

static int bind_json(StoreStmt *st, int idx, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_INTEGER: return store_bind_int(st, idx, json_integer_value(v));
    case JSON_REAL: return store_bind_real(st, idx, json_real_value(v));
    case JSON_STRING:
        return store_bind_text(st, idx, json_string_value(v), json_string_length(v));
    case JSON_OBJECT: {
        const char *hex = json_string_value(json_object_get(v, "hex"));
        size_t n = hex ? strlen(hex) / 2 : 0;
        uint8_t *b = xmalloc(n + 1);
        int rc = hex && core_hex_decode(hex, strlen(hex), b, n) == 0 ? store_bind_blob(st, idx, b, n)
                                                                   : ERR_INVAL;
        free(b);
        return rc;
    }
    default: return store_bind_null(st, idx);
    }
}

/* Loads the newest snapshot of p's version at or below head into its
 * (cleared) tables; *ret_seq is its seq, 0 when there is none. */
static int snapshot_load(Store *s, const Projection *p, int64_t head, int64_t *ret_seq,
                         Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(s,
                           "SELECT seq, state, state_hash FROM projection_snapshots"
                           " WHERE name = ?1 AND version = ?2 AND seq <= ?3"
                           " ORDER BY seq DESC LIMIT 1",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, p->name, strlen(p->name));
    store_bind_int(st, 2, p->version);
    store_bind_int(st, 3, head);
    rc = store_step(st, err);
    if (rc != STORE_ROW) {
        store_stmt_done(st);
        *ret_seq = 0;
        return rc < 0 ? rc : 0;
    }
    int64_t seq = store_col_int(st, 0);
    size_t len, hlen;
    const char *text = store_col_text(st, 1, &len);
    const char *want = store_col_text(st, 2, &hlen);
    char got[CORE_SHA256_HEX + 1];
    core_sha256_hex(text, len, got);
    json_t *state = NULL;
    if (!want || strcmp(got, want) || core_json_parse(text, len, &state, NULL) < 0) {
        store_stmt_done(st);
        return err_set(err, ERR_CHAIN, "snapshot of %s at seq %lld is damaged; replay --full",
                       p->name, (long long)seq);
    }
    store_stmt_done(st);
    const char *table;
    json_t *tv;
    Buf sql;
    buf_init(&sql, 0);
    rc = 0;
    json_object_foreach(state, table, tv) {
        bool owned = false;
        for (const char *const *t = p->tables; *t; t++)
            owned |= !strcmp(*t, table);
        json_t *names = json_object_get(tv, "columns"), *rows = json_object_get(tv, "rows");
        if (!owned || !json_is_array(names) || !json_is_array(rows)) {
            rc = err_set(err, ERR_CHAIN, "snapshot of %s: unexpected table '%s'", p->name, table);
            break;
        }
        buf_clear(&sql);
        buf_printf(&sql, "INSERT INTO \"%s\"(", table);
        size_t i, ncols = json_array_size(names);
        json_t *nv;
        json_array_foreach(names, i, nv) buf_printf(&sql, "%s\"%s\"", i ? ", " : "",
                                                    json_string_value(nv));
        buf_puts(&sql, ") VALUES (");
        for (i = 0; i < ncols; i++)
            buf_printf(&sql, "%s?%zu", i ? ", " : "", i + 1);
        buf_puts(&sql, ")");
        StoreStmt *ins;
        if ((rc = store_prepare(s, sql.ptr, &ins, err)) < 0)
            break;
        json_t *row;
        size_t r;
        json_array_foreach(rows, r, row) {
            for (i = 0; i < ncols; i++)
                bind_json(ins, (int)i + 1, json_array_get(row, i));
            if ((rc = store_step(ins, err)) < 0)
                break;
            store_stmt_done(ins);
        }
        store_stmt_done(ins);
        if (rc < 0)
            break;
    }
    buf_done(&sql);
    json_decref(state);
    if (rc == 0)
        *ret_seq = seq;
    return rc < 0 ? rc : 0;
}
