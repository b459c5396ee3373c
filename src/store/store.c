/* Dispatch from the backend-neutral interface to the backend chosen at open
 * time, and the migration runner, which is written once over the interface. */
#include <stdarg.h>
#include <string.h>

#include "core/clock.h"
#include "store/store_int.h"

int store_open(const char *path, const StoreOptions *opts, Store **ret, Err *err)
{
    StoreOptions defaults = { 0 };
    if (!opts)
        opts = &defaults;
    if (!strncmp(path, "postgres://", 11) || !strncmp(path, "postgresql://", 13))
        return err_set(err, ERR_CONFIG, "the PostgreSQL backend is not built in yet");
    return store__sqlite_open(path, opts, ret, err);
}

void store_close(Store *s)
{
    if (s)
        s->ops->close(s);
}

int store_exec(Store *s, const char *sql, Err *err) { return s->ops->exec(s, sql, err); }
int store_begin_read(Store *s, Err *err) { return s->ops->begin(s, false, err); }
int store_begin_write(Store *s, Err *err) { return s->ops->begin(s, true, err); }
int store_commit(Store *s, Err *err) { return s->ops->commit(s, err); }
void store_rollback(Store *s) { s->ops->rollback(s); }
bool store_in_tx(const Store *s) { return s->ops->in_tx(s); }

int store_prepare(Store *s, const char *sql, StoreStmt **ret, Err *err)
{
    return s->ops->prepare(s, sql, ret, err);
}

void store_stmt_done(StoreStmt *st)
{
    if (st)
        st->ops->stmt_done(st);
}

int store_bind_int(StoreStmt *st, int i, int64_t v) { return st->ops->bind_int(st, i, v); }
int store_bind_real(StoreStmt *st, int i, double v) { return st->ops->bind_real(st, i, v); }
int store_bind_null(StoreStmt *st, int i) { return st->ops->bind_null(st, i); }

int store_bind_text(StoreStmt *st, int i, const char *v, size_t len)
{
    return v ? st->ops->bind_text(st, i, v, len) : st->ops->bind_null(st, i);
}

int store_bind_blob(StoreStmt *st, int i, const void *v, size_t len)
{
    return st->ops->bind_blob(st, i, v, len);
}

int store_step(StoreStmt *st, Err *err) { return st->ops->step(st, err); }
int store_col_count(StoreStmt *st) { return st->ops->col_count(st); }
const char *store_col_name(StoreStmt *st, int i) { return st->ops->col_name(st, i); }
StoreType store_col_type(StoreStmt *st, int i) { return st->ops->col_type(st, i); }
int64_t store_col_int(StoreStmt *st, int i) { return st->ops->col_int(st, i); }
double store_col_real(StoreStmt *st, int i) { return st->ops->col_real(st, i); }

const char *store_col_text(StoreStmt *st, int i, size_t *ret_len)
{
    return st->ops->col_text(st, i, ret_len);
}

const void *store_col_blob(StoreStmt *st, int i, size_t *ret_len)
{
    return st->ops->col_blob(st, i, ret_len);
}

int64_t store_changes(Store *s) { return s->ops->changes(s); }
int store_checkpoint(Store *s, StoreWal *wal, Err *err) { return s->ops->checkpoint(s, wal, err); }
const char *store_path(const Store *s) { return s->ops->path(s); }

int store_backup_to(Store *s, const char *dest_path, Err *err)
{
    return s->ops->backup_to(s, dest_path, err);
}

int store_restore_from(Store *s, const Store *src, Err *err)
{
    if (src->ops != s->ops)
        return err_set(err, ERR_STORE, "restore across backends (%s into %s) is not supported",
                       src->ops->name, s->ops->name);
    return s->ops->restore_from(s, src, err);
}

int store_query_int(Store *s, const char *sql, const char *arg, int64_t dflt, int64_t *ret,
                    Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(s, sql, &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, arg, strlen(arg));
    rc = store_step(st, err);
    if (rc >= 0)
        *ret = rc == STORE_ROW ? store_col_int(st, 0) : dflt;
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

int store_stmt_exec(StoreStmt *st, Err *err)
{
    int rc = store_step(st, err);
    store_stmt_done(st);
    if (rc == STORE_ROW)
        return err_set(err, ERR_INTERNAL, "statement returned a row where none was expected");
    return rc;
}

static const char *const MIGRATIONS_TABLE =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";

static int read_version(Store *s, int *ret, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(s, "SELECT coalesce(max(version), 0) FROM schema_migrations", &st,
                           err);
    if (rc < 0)
        return rc;
    rc = store_step(st, err);
    if (rc == STORE_ROW) {
        *ret = (int)store_col_int(st, 0);
        rc = 0;
    }
    store_stmt_done(st);
    return rc;
}

int store_schema_version(Store *s, int *ret, Err *err)
{
    int rc = store_exec(s, MIGRATIONS_TABLE, err);
    return rc < 0 ? rc : read_version(s, ret, err);
}

int store_migrate(Store *s, const StoreMigration *migs, size_t n, Err *err)
{
    int newest = 0, have = 0;
    char now[CORE_TIME_LEN + 1];
    core_time_format(core_time_now_ms(), now);
    for (size_t i = 0; i < n; i++) {
        if (migs[i].version != (int)i + 1)
            return err_set(err, ERR_INTERNAL, "migration %zu has version %d", i + 1,
                           migs[i].version);
        newest = migs[i].version;
    }
    int rc = store_begin_write(s, err);
    if (rc < 0)
        return rc;
    if ((rc = store_exec(s, MIGRATIONS_TABLE, err)) < 0 || (rc = read_version(s, &have, err)) < 0)
        goto out;
    if (have > newest) {
        rc = err_set(err, ERR_SCHEMA,
                     "the database is at schema version %d, newer than this bureau binary "
                     "knows (%d): upgrade bureau, or restore a backup made by this version",
                     have, newest);
        goto out;
    }
    for (size_t i = (size_t)have; i < n; i++) {
        StoreStmt *st;
        if ((rc = store_exec(s, migs[i].sql, err)) < 0) {
            err_wrap(err, "migration %d (%s)", migs[i].version, migs[i].name);
            goto out;
        }
        rc = store_prepare(s,
                           "INSERT INTO schema_migrations(version, name, applied_at)"
                           " VALUES (?1, ?2, ?3)",
                           &st, err);
        if (rc < 0)
            goto out;
        store_bind_int(st, 1, migs[i].version);
        store_bind_text(st, 2, migs[i].name, strlen(migs[i].name));
        store_bind_text(st, 3, now, strlen(now));
        if ((rc = store_stmt_exec(st, err)) < 0)
            goto out;
    }
    rc = store_commit(s, err);
    return rc;
out:
    store_rollback(s);
    return rc;
}

int store_execf(Store *s, Err *err, const char *sql, const char *fmt, ...)
{
    StoreStmt *st;
    int rc = store_prepare(s, sql, &st, err);
    if (rc < 0)
        return rc;
    va_list ap;
    va_start(ap, fmt);
    for (int i = 0; fmt[i]; i++) {
        if (fmt[i] == 's') {
            const char *v = va_arg(ap, const char *);
            store_bind_text(st, i + 1, v, v ? strlen(v) : 0);
        } else if (fmt[i] == 'r') {
            store_bind_real(st, i + 1, va_arg(ap, double));
        } else {
            store_bind_int(st, i + 1, va_arg(ap, int64_t));
        }
    }
    va_end(ap);
    return store_stmt_exec(st, err);
}
