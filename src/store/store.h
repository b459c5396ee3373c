/* The store: one backend-neutral interface to the database.
 *
 * A Store is one connection; it is not thread-safe, so each thread opens its
 * own. Statements are prepared once per connection and cached by their SQL
 * text: store_prepare() on the same text returns the same, reset statement.
 * Parameters are always bound, never spliced into SQL. Transactions nest as
 * savepoints. The SQLite backend is store_sqlite.c; others plug in behind
 * StoreBackend (store_int.h). */
#ifndef BUREAU_STORE_STORE_H
#define BUREAU_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct Store Store;
typedef struct StoreStmt StoreStmt;

typedef struct StoreOptions {
    bool durability_normal; /* false: a commit survives power loss (fsync) */
    int busy_timeout_ms;    /* wait for other writers; 0 = default 10 s */
    bool readonly;
    bool create;            /* create the database file when missing */
    bool no_autocheckpoint; /* commits never checkpoint the WAL: call store_checkpoint() */
} StoreOptions;

/* One embedded migration: its version (1, 2, ...), name and SQL. */
typedef struct StoreMigration {
    int version;
    const char *name;
    const char *sql;
} StoreMigration;

enum { STORE_DONE = 0, STORE_ROW = 1 };

typedef enum StoreType {
    STORE_NULL,
    STORE_INT,
    STORE_REAL,
    STORE_TEXT,
    STORE_BLOB
} StoreType;

/* Opens the database at path. ERR_NOTFOUND when it is missing and
 * !opts->create; ERR_STORE otherwise. */
int store_open(const char *path, const StoreOptions *opts, Store **ret, Err *err);
void store_close(Store *s);

/* Applies the migrations newer than the database's version, in order, in
 * one transaction, recording each. Refuses with ERR_SCHEMA a database
 * whose version is newer than the newest migration given. Safe when several
 * processes migrate at once. */
int store_migrate(Store *s, const StoreMigration *migs, size_t n, Err *err);
/* The highest applied migration version (0 for a new database). */
int store_schema_version(Store *s, int *ret, Err *err);

/* Runs one or more statements without parameters or results. */
int store_exec(Store *s, const char *sql, Err *err);

/* Transactions. store_begin_write takes the database's write lock at once
 * (waiting up to the busy timeout for other processes), so that reads inside
 * it see the latest committed state. Nested begins become savepoints. */
int store_begin_read(Store *s, Err *err);
int store_begin_write(Store *s, Err *err);
int store_commit(Store *s, Err *err);
/* Rolls back the innermost transaction or savepoint; never fails. */
void store_rollback(Store *s);
bool store_in_tx(const Store *s);

/* Prepares (or fetches from the cache) a statement for sql (the text is
 * copied). Parameters are ?1, ?2... The statement is borrowed: call
 * store_stmt_done() when finished with it. Because the cache hands out the
 * same statement for the same text, one SQL text must not be stepped in two
 * places at once on one connection. */
int store_prepare(Store *s, const char *sql, StoreStmt **ret, Err *err);
void store_stmt_done(StoreStmt *st);

/* Binding: idx starts at 1. Text and blobs are copied. */
int store_bind_int(StoreStmt *st, int idx, int64_t v);
int store_bind_real(StoreStmt *st, int idx, double v);
int store_bind_text(StoreStmt *st, int idx, const char *v, size_t len); /* NULL -> NULL */
int store_bind_blob(StoreStmt *st, int idx, const void *v, size_t len);
int store_bind_null(StoreStmt *st, int idx);

/* Advances: STORE_ROW, STORE_DONE, or <0 with err set. */
int store_step(StoreStmt *st, Err *err);

/* Columns of the current row (idx starts at 0). Returned pointers are valid
 * until the next step or store_stmt_done(). */
int store_col_count(StoreStmt *st);
const char *store_col_name(StoreStmt *st, int idx);
StoreType store_col_type(StoreStmt *st, int idx);
int64_t store_col_int(StoreStmt *st, int idx);
double store_col_real(StoreStmt *st, int idx);
const char *store_col_text(StoreStmt *st, int idx, size_t *ret_len); /* NULL for NULL */
const void *store_col_blob(StoreStmt *st, int idx, size_t *ret_len);

/* Rows changed by the last insert/update/delete. */
int64_t store_changes(Store *s);

/* Runs sql with one text parameter (?1) and returns the first column of the
 * first row as an integer, or dflt when there is no row. */
/* Runs one statement; fmt describes its parameters, one character each:
 * 's' text (NULL binds NULL), 'i' int64, 'r' double. */
int store_execf(Store *s, Err *err, const char *sql, const char *fmt, ...);
int store_query_int(Store *s, const char *sql, const char *arg, int64_t dflt, int64_t *ret,
                    Err *err);

/* Runs a statement expecting no row (bind first). */
int store_stmt_exec(StoreStmt *st, Err *err);

/* A consistent online copy of the whole database into dest_path (replaced if
 * it exists), taken while other connections keep writing. */
int store_backup_to(Store *s, const char *dest_path, Err *err);
/* Replaces this database's content with src's, under the write lock. */
int store_restore_from(Store *s, const Store *src, Err *err);

/* Copies committed WAL content back into the database without blocking
 * writers (a passive checkpoint); a no-op for backends without a WAL. When
 * wal is not NULL it receives the frames in the WAL as the checkpoint saw it
 * and how many of them are now in the database (both -1 when another
 * connection's checkpoint was running). */
typedef struct StoreWal {
    int64_t frames, copied;
} StoreWal;
int store_checkpoint(Store *s, StoreWal *wal, Err *err);

const char *store_path(const Store *s);

#endif
