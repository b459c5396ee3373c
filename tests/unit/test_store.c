/* Unit tests of src/store over SQLite: migrations, transactions and
 * savepoints, statements, backup. */
#include <criterion/criterion.h>
#include <string.h>

#include "helpers.h"
#include "store/store.h"

static const StoreMigration migs[] = {
    { 1, "one", "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT);" },
    { 2, "two", "ALTER TABLE t ADD COLUMN w BLOB;" },
};

static Store *open_new(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    StoreOptions o = { .create = true };
    Store *s = NULL;
    Err e = { 0 };
    cr_assert_eq(store_open(path, &o, &s, &e), 0, "%s", e.msg);
    return s;
}

Test(store, missing_database_is_not_created_unless_asked)
{
    char *dir = test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/none.db", dir);
    StoreOptions o = { 0 };
    Store *s = NULL;
    Err e = { 0 };
    cr_assert_eq(store_open(path, &o, &s, &e), ERR_NOTFOUND);
    cr_assert(strstr(e.msg, "bureau init"), "%s", e.msg);
    test_rmdir(dir);
}

Test(store, migrations_apply_in_order_once)
{
    char *dir = test_tmpdir();
    Store *s = open_new(dir, "m.db");
    Err e = { 0 };
    int v = -1;
    cr_assert_eq(store_schema_version(s, &v, &e), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(store_migrate(s, migs, 1, &e), 0, "%s", e.msg);
    cr_assert_eq(store_schema_version(s, &v, &e), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(store_migrate(s, migs, 2, &e), 0, "%s", e.msg);
    cr_assert_eq(store_migrate(s, migs, 2, &e), 0, "second run is a no-op: %s", e.msg);
    cr_assert_eq(store_schema_version(s, &v, &e), 0);
    cr_assert_eq(v, 2);
    StoreStmt *st;
    cr_assert_eq(store_prepare(s, "INSERT INTO t(k, v, w) VALUES (?1, ?2, ?3)", &st, &e), 0);
    store_bind_int(st, 1, 1);
    store_bind_text(st, 2, "x", 1);
    store_bind_blob(st, 3, "\0\1", 2);
    cr_assert_eq(store_stmt_exec(st, &e), 0, "%s", e.msg);
    store_close(s);
    test_rmdir(dir);
}

Test(store, newer_database_is_refused)
{
    char *dir = test_tmpdir();
    Store *s = open_new(dir, "n.db");
    Err e = { 0 };
    cr_assert_eq(store_migrate(s, migs, 2, &e), 0);
    cr_assert_eq(store_migrate(s, migs, 1, &e), ERR_SCHEMA);
    cr_assert(strstr(e.msg, "version 2, newer"), "%s", e.msg);
    store_close(s);
    test_rmdir(dir);
}

Test(store, failed_migration_leaves_nothing)
{
    char *dir = test_tmpdir();
    Store *s = open_new(dir, "f.db");
    static const StoreMigration bad[] = {
        { 1, "one", "CREATE TABLE a(x);" },
        { 2, "broken", "CREATE TABLE b(x); THIS IS NOT SQL;" },
    };
    Err e = { 0 };
    cr_assert_eq(store_migrate(s, bad, 2, &e), ERR_STORE);
    cr_assert(strstr(e.msg, "migration 2 (broken)"), "%s", e.msg);
    int v = -1;
    cr_assert_eq(store_schema_version(s, &v, &e), 0);
    cr_assert_eq(v, 0, "the whole migration run rolls back");
    store_close(s);
    test_rmdir(dir);
}

static int64_t count(Store *s)
{
    StoreStmt *st;
    Err e = { 0 };
    cr_assert_eq(store_prepare(s, "SELECT count(*) FROM t", &st, &e), 0);
    cr_assert_eq(store_step(st, &e), STORE_ROW);
    int64_t n = store_col_int(st, 0);
    store_stmt_done(st);
    return n;
}

static void insert(Store *s, int64_t k)
{
    StoreStmt *st;
    Err e = { 0 };
    cr_assert_eq(store_prepare(s, "INSERT INTO t(k, v) VALUES (?1, 'v')", &st, &e), 0);
    store_bind_int(st, 1, k);
    cr_assert_eq(store_stmt_exec(st, &e), 0, "%s", e.msg);
}

Test(store, savepoints_roll_back_alone)
{
    char *dir = test_tmpdir();
    Store *s = open_new(dir, "t.db");
    Err e = { 0 };
    cr_assert_eq(store_migrate(s, migs, 2, &e), 0);
    cr_assert_eq(store_begin_write(s, &e), 0);
    insert(s, 1);
    cr_assert_eq(store_begin_write(s, &e), 0); /* savepoint */
    insert(s, 2);
    store_rollback(s);
    cr_assert(store_in_tx(s));
    cr_assert_eq(store_begin_write(s, &e), 0);
    insert(s, 3);
    cr_assert_eq(store_commit(s, &e), 0);
    cr_assert_eq(store_commit(s, &e), 0);
    cr_assert(!store_in_tx(s));
    cr_assert_eq(count(s), 2);
    /* constraint violations are errors, not crashes */
    StoreStmt *st;
    cr_assert_eq(store_prepare(s, "INSERT INTO t(k, v) VALUES (?1, 'v')", &st, &e), 0);
    store_bind_int(st, 1, 1);
    cr_assert_eq(store_stmt_exec(st, &e), ERR_EXISTS);
    store_close(s);
    test_rmdir(dir);
}

Test(store, columns_and_types)
{
    char *dir = test_tmpdir();
    Store *s = open_new(dir, "c.db");
    Err e = { 0 };
    StoreStmt *st;
    cr_assert_eq(store_prepare(s, "SELECT 1 AS i, 2.5 AS r, 'x' AS t, x'0001' AS b, NULL AS n",
                               &st, &e), 0);
    cr_assert_eq(store_step(st, &e), STORE_ROW);
    cr_assert_eq(store_col_count(st), 5);
    cr_assert_str_eq(store_col_name(st, 2), "t");
    cr_assert_eq(store_col_type(st, 0), STORE_INT);
    cr_assert_eq(store_col_type(st, 1), STORE_REAL);
    cr_assert_eq(store_col_type(st, 2), STORE_TEXT);
    cr_assert_eq(store_col_type(st, 3), STORE_BLOB);
    cr_assert_eq(store_col_type(st, 4), STORE_NULL);
    size_t len;
    const unsigned char *b = store_col_blob(st, 3, &len);
    cr_assert_eq(len, 2);
    cr_assert_eq(b[1], 1);
    cr_assert_null(store_col_text(st, 4, &len));
    cr_assert_eq(store_step(st, &e), STORE_DONE);
    store_stmt_done(st);
    cr_assert_eq(store_prepare(s, "SELECT nonsense FROM nowhere", &st, &e), ERR_STORE);
    cr_assert(strstr(e.msg, "no such"), "%s", e.msg);
    store_close(s);
    test_rmdir(dir);
}

Test(store, backup_is_a_consistent_copy)
{
    char *dir = test_tmpdir();
    Store *s = open_new(dir, "b.db");
    Err e = { 0 };
    cr_assert_eq(store_migrate(s, migs, 2, &e), 0);
    for (int i = 1; i <= 100; i++)
        insert(s, i);
    char dest[512];
    snprintf(dest, sizeof dest, "%s/copy.db", dir);
    cr_assert_eq(store_backup_to(s, dest, &e), 0, "%s", e.msg);
    StoreOptions ro = { .readonly = true };
    Store *c = NULL;
    cr_assert_eq(store_open(dest, &ro, &c, &e), 0, "%s", e.msg);
    cr_assert_eq(count(c), 100);
    /* restore brings the copy's content back after a change */
    insert(s, 101);
    cr_assert_eq(count(s), 101);
    cr_assert_eq(store_restore_from(s, c, &e), 0, "%s", e.msg);
    cr_assert_eq(count(s), 100);
    store_close(c);
    store_close(s);
    test_rmdir(dir);
}
