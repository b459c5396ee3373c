/* The SQLite backend: WAL journal, a busy timeout, synchronous=FULL unless
 * the operator chose durability: normal (which keeps every commit across a
 * process crash but may lose the last ones on power loss). Prepared
 * statements are cached per connection, keyed by SQL text. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

#include "store/store_int.h"

#define CACHE_BUCKETS 64
#define MAX_DEPTH 32
/* A WAL that grew during a burst is cut back to this size when it restarts. */
#define WAL_KEEP_BYTES "67108864"
#define DB_CHUNK_BYTES (4 << 20)

typedef struct SqlStmt {
    StoreStmt base;
    struct SqliteStore *owner;
    sqlite3_stmt *stmt;
    const char *sql;
    struct SqlStmt *next;
} SqlStmt;

typedef struct SqliteStore {
    Store base;
    sqlite3 *db;
    char *path;
    int depth; /* 0: no transaction; 1: BEGIN; >1: savepoints */
    int busy_timeout_ms;
    int64_t busy_since_ns;
    SqlStmt *cache[CACHE_BUCKETS];
} SqliteStore;

static const StoreOps sqlite_ops;

static int fail(SqliteStore *s, Err *err, const char *what)
{
    int code = sqlite3_errcode(s->db);
    int rc = (code == SQLITE_BUSY || code == SQLITE_LOCKED) ? ERR_BUSY
             : code == SQLITE_FULL || code == SQLITE_IOERR ? ERR_IO
             : code == SQLITE_CONSTRAINT ? ERR_EXISTS
                                         : ERR_STORE;
    return err_set(err, rc, "%s: %s (%s)", what, sqlite3_errmsg(s->db), s->path);
}

static int exec_sql(Store *base, const char *sql, Err *err)
{
    SqliteStore *s = (SqliteStore *)base;
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = fail(s, err, "exec");
        if (msg && err)
            err_set(err, rc, "%s (%s)", msg, s->path);
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

/* Another connection holds the lock: retry every 250 µs until the busy
 * timeout. SQLite's own handler backs off to 100 ms steps, so a process
 * committing small batches back to back would starve the others. */
static int busy_wait(void *arg, int count)
{
    SqliteStore *s = arg;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    if (count == 0)
        s->busy_since_ns = ns;
    if (ns - s->busy_since_ns >= (int64_t)s->busy_timeout_ms * 1000000)
        return 0;
    struct timespec pause = { 0, 250000 };
    nanosleep(&pause, NULL);
    return 1;
}

/* Before the first connection: no memory statistics, which would take a
 * global mutex on every allocation of every connection. */
static void sqlite_setup(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    sqlite3_initialize();
}

int store__sqlite_open(const char *path, const StoreOptions *opts, Store **ret, Err *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sqlite_setup);
    if (!opts->create && access(path, F_OK) != 0)
        return err_set(err, ERR_NOTFOUND, "no database at %s (run `bureau init` first)", path);
    int flags = SQLITE_OPEN_NOMUTEX |
                (opts->readonly ? SQLITE_OPEN_READONLY
                                : SQLITE_OPEN_READWRITE | (opts->create ? SQLITE_OPEN_CREATE : 0));
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        int rc = err_set(err, ERR_STORE, "open %s: %s", path,
                         db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return rc;
    }
    SqliteStore *s = xcalloc(1, sizeof *s);
    s->base.ops = &sqlite_ops;
    s->db = db;
    s->path = xstrdup(path);
    s->busy_timeout_ms = opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 10000;
    sqlite3_busy_handler(db, busy_wait, s);
    sqlite3_extended_result_codes(db, 0);
    char pragmas[512];
    snprintf(pragmas, sizeof pragmas,
             "%s"
             "PRAGMA synchronous=%s;"
             "PRAGMA foreign_keys=ON;"
             "PRAGMA secure_delete=ON;"
             "PRAGMA temp_store=MEMORY;"
             "PRAGMA cache_size=-65536;"
             "%s",
             opts->readonly ? "" : "PRAGMA journal_mode=WAL; PRAGMA journal_size_limit=" WAL_KEEP_BYTES ";",
             opts->durability_normal ? "NORMAL" : "FULL",
             opts->no_autocheckpoint ? "PRAGMA wal_autocheckpoint=0;" : "");
    int rc = exec_sql(&s->base, pragmas, err);
    if (rc == 0 && !opts->readonly) {
        /* The database file grows in chunks, so a checkpoint's fsync rarely
         * has to write the inode's new size too. */
        int chunk = DB_CHUNK_BYTES;
        sqlite3_file_control(db, "main", SQLITE_FCNTL_CHUNK_SIZE, &chunk);
    }
    if (rc < 0) {
        s->base.ops->close(&s->base);
        return rc;
    }
    *ret = &s->base;
    return 0;
}

static void sq_close(Store *base)
{
    SqliteStore *s = (SqliteStore *)base;
    for (int i = 0; i < CACHE_BUCKETS; i++) {
        SqlStmt *st = s->cache[i];
        while (st) {
            SqlStmt *next = st->next;
            sqlite3_finalize(st->stmt);
            free(st);
            st = next;
        }
    }
    sqlite3_close_v2(s->db);
    free(s->path);
    free(s);
}

static int sq_prepare(Store *base, const char *sql, StoreStmt **ret, Err *err);
static int sq_step(StoreStmt *b, Err *err);
static void sq_stmt_done(StoreStmt *base);

/* Runs a parameterless statement through the statement cache: transaction
 * control runs several times per commit and is not worth re-parsing. */
static int run_cached(SqliteStore *s, const char *sql, Err *err)
{
    StoreStmt *st;
    int rc = sq_prepare(&s->base, sql, &st, err);
    if (rc < 0)
        return rc;
    rc = sq_step(st, err);
    sq_stmt_done(st);
    return rc < 0 ? rc : 0;
}

static int sq_begin(Store *base, bool write, Err *err)
{
    SqliteStore *s = (SqliteStore *)base;
    if (s->depth >= MAX_DEPTH)
        return err_set(err, ERR_INTERNAL, "transactions nested deeper than %d", MAX_DEPTH);
    char sql[32];
    if (s->depth == 0)
        snprintf(sql, sizeof sql, write ? "BEGIN IMMEDIATE" : "BEGIN");
    else
        snprintf(sql, sizeof sql, "SAVEPOINT s%d", s->depth);
    int rc = run_cached(s, sql, err);
    if (rc == 0)
        s->depth++;
    return rc;
}

static int sq_commit(Store *base, Err *err)
{
    SqliteStore *s = (SqliteStore *)base;
    if (s->depth == 0)
        return err_set(err, ERR_INTERNAL, "commit outside a transaction");
    char sql[32];
    if (s->depth == 1)
        snprintf(sql, sizeof sql, "COMMIT");
    else
        snprintf(sql, sizeof sql, "RELEASE s%d", s->depth - 1);
    int rc = run_cached(s, sql, err);
    if (rc == 0)
        s->depth--;
    return rc;
}

static void sq_rollback(Store *base)
{
    SqliteStore *s = (SqliteStore *)base;
    if (s->depth == 0)
        return;
    char sql[64];
    if (s->depth == 1)
        snprintf(sql, sizeof sql, "ROLLBACK");
    else
        snprintf(sql, sizeof sql, "ROLLBACK TO s%d; RELEASE s%d", s->depth - 1, s->depth - 1);
    exec_sql(base, sql, NULL);
    if (s->depth == 1 && !sqlite3_get_autocommit(s->db))
        exec_sql(base, "ROLLBACK", NULL);
    s->depth--;
}

static bool sq_in_tx(const Store *base)
{
    return ((const SqliteStore *)base)->depth > 0;
}

static unsigned hash_sql(const char *sql)
{
    unsigned h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)sql; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % CACHE_BUCKETS;
}

static int sq_prepare(Store *base, const char *sql, StoreStmt **ret, Err *err)
{
    SqliteStore *s = (SqliteStore *)base;
    unsigned h = hash_sql(sql);
    for (SqlStmt *st = s->cache[h]; st; st = st->next)
        if (st->sql == sql || !strcmp(st->sql, sql)) {
            *ret = &st->base;
            return 0;
        }
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL) != SQLITE_OK)
        return fail(s, err, "prepare");
    SqlStmt *st = xcalloc(1, sizeof *st);
    st->base.ops = &sqlite_ops;
    st->owner = s;
    st->stmt = stmt;
    st->sql = sqlite3_sql(stmt);
    st->next = s->cache[h];
    s->cache[h] = st;
    *ret = &st->base;
    return 0;
}

static void sq_stmt_done(StoreStmt *base)
{
    SqlStmt *st = (SqlStmt *)base;
    sqlite3_reset(st->stmt);
    sqlite3_clear_bindings(st->stmt);
}

#define STMT(b) (((SqlStmt *)(b))->stmt)

static int bind_rc(int rc)
{
    return rc == SQLITE_OK ? 0 : rc == SQLITE_TOOBIG ? ERR_TOOBIG : ERR_STORE;
}

static int sq_bind_int(StoreStmt *b, int i, int64_t v) { return bind_rc(sqlite3_bind_int64(STMT(b), i, v)); }
static int sq_bind_real(StoreStmt *b, int i, double v) { return bind_rc(sqlite3_bind_double(STMT(b), i, v)); }
static int sq_bind_null(StoreStmt *b, int i) { return bind_rc(sqlite3_bind_null(STMT(b), i)); }

static int sq_bind_text(StoreStmt *b, int i, const char *v, size_t len)
{
    return bind_rc(sqlite3_bind_text64(STMT(b), i, v, len, SQLITE_TRANSIENT, SQLITE_UTF8));
}

static int sq_bind_blob(StoreStmt *b, int i, const void *v, size_t len)
{
    return bind_rc(sqlite3_bind_blob64(STMT(b), i, v ? v : "", len, SQLITE_TRANSIENT));
}

static int sq_step(StoreStmt *b, Err *err)
{
    SqlStmt *st = (SqlStmt *)b;
    int rc = sqlite3_step(st->stmt);
    if (rc == SQLITE_ROW)
        return STORE_ROW;
    if (rc == SQLITE_DONE)
        return STORE_DONE;
    rc = fail(st->owner, err, "step");
    sqlite3_reset(st->stmt);
    return rc;
}

static int sq_col_count(StoreStmt *b) { return sqlite3_column_count(STMT(b)); }
static const char *sq_col_name(StoreStmt *b, int i) { return sqlite3_column_name(STMT(b), i); }
static int64_t sq_col_int(StoreStmt *b, int i) { return sqlite3_column_int64(STMT(b), i); }
static double sq_col_real(StoreStmt *b, int i) { return sqlite3_column_double(STMT(b), i); }

static StoreType sq_col_type(StoreStmt *b, int i)
{
    switch (sqlite3_column_type(STMT(b), i)) {
    case SQLITE_INTEGER: return STORE_INT;
    case SQLITE_FLOAT: return STORE_REAL;
    case SQLITE_TEXT: return STORE_TEXT;
    case SQLITE_BLOB: return STORE_BLOB;
    default: return STORE_NULL;
    }
}

static const char *sq_col_text(StoreStmt *b, int i, size_t *ret_len)
{
    const char *p = (const char *)sqlite3_column_text(STMT(b), i);
    if (ret_len)
        *ret_len = p ? (size_t)sqlite3_column_bytes(STMT(b), i) : 0;
    return p;
}

static const void *sq_col_blob(StoreStmt *b, int i, size_t *ret_len)
{
    const void *p = sqlite3_column_blob(STMT(b), i);
    if (ret_len)
        *ret_len = (size_t)sqlite3_column_bytes(STMT(b), i);
    return p;
}

static int64_t sq_changes(Store *base)
{
    return sqlite3_changes64(((SqliteStore *)base)->db);
}

static const char *sq_path(const Store *base)
{
    return ((const SqliteStore *)base)->path;
}

static int copy_db(sqlite3 *dst, sqlite3 *src, const char *what, Err *err)
{
    sqlite3_backup *bk = sqlite3_backup_init(dst, "main", src, "main");
    if (!bk)
        return err_set(err, ERR_STORE, "%s: %s", what, sqlite3_errmsg(dst));
    int rc = sqlite3_backup_step(bk, -1);
    sqlite3_backup_finish(bk);
    if (rc != SQLITE_DONE)
        return err_set(err, rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? ERR_BUSY : ERR_STORE,
                       "%s: %s", what, sqlite3_errstr(rc));
    return 0;
}

static int sq_backup_to(Store *base, const char *dest_path, Err *err)
{
    SqliteStore *s = (SqliteStore *)base;
    size_t n = strlen(dest_path) + 16;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp%d", dest_path, (int)getpid());
    unlink(tmp);
    sqlite3 *dst = NULL;
    int rc = 0;
    if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = err_set(err, ERR_IO, "backup: create %s: %s", tmp,
                     dst ? sqlite3_errmsg(dst) : "out of memory");
        goto out;
    }
    sqlite3_exec(dst, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    if ((rc = copy_db(dst, s->db, "backup", err)) < 0)
        goto out;
    /* The copy carries the WAL flag in its header; a backup file should be a
     * single self-contained file. */
    if (sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
        rc = err_set(err, ERR_STORE, "backup: %s", sqlite3_errmsg(dst));
        goto out;
    }
    sqlite3_close_v2(dst);
    dst = NULL;
    if (rename(tmp, dest_path) < 0)
        rc = err_set(err, ERR_IO, "backup: rename to %s failed", dest_path);
out:
    if (dst)
        sqlite3_close_v2(dst);
    if (rc < 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

static int sq_restore_from(Store *base, const Store *src, Err *err)
{
    SqliteStore *s = (SqliteStore *)base;
    const SqliteStore *from = (const SqliteStore *)src;
    return copy_db(s->db, from->db, "restore", err);
}

static int sq_checkpoint(Store *base, StoreWal *wal, Err *err)
{
    SqliteStore *s = (SqliteStore *)base;
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        return fail(s, err, "checkpoint");
    if (wal) {
        bool busy = rc == SQLITE_BUSY || log < 0;
        wal->frames = busy ? -1 : log;
        wal->copied = busy ? -1 : done;
    }
    return 0;
}

static const StoreOps sqlite_ops = {
    .checkpoint = sq_checkpoint,
    .name = "sqlite",
    .close = sq_close,
    .exec = exec_sql,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .in_tx = sq_in_tx,
    .prepare = sq_prepare,
    .stmt_done = sq_stmt_done,
    .bind_int = sq_bind_int,
    .bind_real = sq_bind_real,
    .bind_text = sq_bind_text,
    .bind_blob = sq_bind_blob,
    .bind_null = sq_bind_null,
    .step = sq_step,
    .col_count = sq_col_count,
    .col_name = sq_col_name,
    .col_type = sq_col_type,
    .col_int = sq_col_int,
    .col_real = sq_col_real,
    .col_text = sq_col_text,
    .col_blob = sq_col_blob,
    .changes = sq_changes,
    .backup_to = sq_backup_to,
    .restore_from = sq_restore_from,
    .path = sq_path,
};
