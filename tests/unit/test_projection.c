/* Unit tests of projections: the writer keeps them current, replay rebuilds
 * them equal, --check catches drift, snapshots shorten rebuilds, and a
 * version change or a lagging checkpoint is caught up at open. */
#include <criterion/criterion.h>
#include <string.h>

#include "helpers.h"
#include "ledger/ledger.h"
#include "ledger/projection.h"

static char *dir;
static Config cfg;

static void setup(void)
{
    dir = test_tmpdir();
    core_config_defaults(&cfg);
    cfg.durability_normal = true;
    log_set_level(LOG_ERROR);
    Err e = { 0 };
    cr_assert_eq(ledger_db_prepare(dir, &cfg, true, &e), 0, "%s", e.msg);
}

static void teardown(void)
{
    test_rmdir(dir);
}

TestSuite(projection, .init = setup, .fini = teardown);

static Store *db(void)
{
    Store *s = NULL;
    Err e = { 0 };
    cr_assert_eq(ledger_reader_open_dir(dir, &cfg, &s, &e), 0, "%s", e.msg);
    return s;
}

static void exec(Store *s, const char *sql)
{
    Err e = { 0 };
    cr_assert_eq(store_exec(s, sql, &e), 0, "%s: %s", sql, e.msg);
}

static int64_t scalar(Store *s, const char *sql)
{
    StoreStmt *st;
    Err e = { 0 };
    cr_assert_eq(store_prepare(s, sql, &st, &e), 0, "%s", e.msg);
    cr_assert_eq(store_step(st, &e), STORE_ROW, "%s", sql);
    int64_t v = store_col_int(st, 0);
    store_stmt_done(st);
    return v;
}

static void append_mixed(int n)
{
    Ledger *l = NULL;
    Err e = { 0 };
    LedgerOptions o = { .config = &cfg };
    cr_assert_eq(ledger_open(dir, &o, &l, &e), 0, "%s", e.msg);
    static const char *types[] = { "lead.created", "email.sent", "note.added" };
    static const char *sources[] = { "cli", "form", "imap" };
    Event **evs = calloc((size_t)n, sizeof *evs);
    for (int i = 0; i < n; i++) {
        json_t *data = json_pack("{s:i}", "i", i);
        cr_assert_eq(ledger_event_new(types[i % 3], sources[(i / 3) % 3], NULL, data, NULL, NULL,
                                      &evs[i], &e), 0);
        json_decref(data);
    }
    cr_assert_eq(ledger_append(l, evs, (size_t)n, NULL, &e), 0, "%s", e.msg);
    free(evs);
    ledger_close(l);
}

static void check_ok(Store *s)
{
    ReplayCheck res[8];
    size_t n = 0;
    Err e = { 0 };
    cr_assert_eq(ledger_replay_check(s, NULL, res, 8, &n, &e), 0, "%s", e.msg);
    cr_assert(n >= 1);
    for (size_t i = 0; i < n; i++)
        cr_assert(res[i].equal, "%s: %s != %s", res[i].projection->name, res[i].live,
                  res[i].rebuilt);
}

Test(projection, counts_follow_appends_and_replay_equals_live)
{
    append_mixed(300);
    Store *s = db();
    cr_assert_eq(scalar(s, "SELECT sum(n) FROM event_counts"), 300);
    cr_assert_eq(scalar(s, "SELECT n FROM event_counts WHERE type = 'lead.created' AND source = 'cli'"),
                 34);
    cr_assert_eq(scalar(s, "SELECT seq FROM ledger_state WHERE name = 'counts'"), 300);
    check_ok(s);
    int64_t applied = 0;
    Err e = { 0 };
    cr_assert_eq(ledger_replay(s, NULL, true, &applied, &e), 0, "%s", e.msg);
    cr_assert_eq(applied, 300);
    check_ok(s);
    store_close(s);
}

Test(projection, check_detects_drift_and_replay_repairs_it)
{
    append_mixed(60);
    Store *s = db();
    exec(s, "UPDATE event_counts SET n = n + 1 WHERE type = 'email.sent' AND source = 'form'");
    char before[CORE_SHA256_HEX + 1];
    Err e = { 0 };
    cr_assert_eq(ledger_projection_digest(s, ledger_projection_find("counts"), before, &e), 0);
    ReplayCheck res[8];
    size_t n = 0;
    cr_assert_eq(ledger_replay_check(s, "counts", res, 8, &n, &e), 0);
    cr_assert_eq(n, 1);
    cr_assert(!res[0].equal);
    cr_assert_str_eq(res[0].live, before);
    char after[CORE_SHA256_HEX + 1];
    ledger_projection_digest(s, res[0].projection, after, &e);
    cr_assert_str_eq(after, before, "--check leaves the live tables as they were");
    cr_assert_eq(ledger_replay(s, "counts", false, NULL, &e), 0);
    check_ok(s);
    cr_assert_eq(ledger_replay(s, "nope", false, NULL, &e), ERR_NOTFOUND);
    store_close(s);
}

/* A projection that keeps something in memory: counts its forget calls. */
static int forgets;
static void probe_forget(void)
{
    forgets++;
}
static int probe_apply(Store *tx, const Event *ev, Err *err)
{
    (void)tx, (void)ev, (void)err;
    return 0;
}
static const char *const no_tables[] = { NULL };
static const Projection probe = { .name = "probe", .version = 1, .tables = no_tables,
                                  .apply = probe_apply, .forget = probe_forget };

static void append_one(Ledger *l, const char *key)
{
    Event *ev = NULL;
    Err e = { 0 };
    json_t *data = json_pack("{s:s}", "k", key);
    cr_assert_eq(ledger_event_new("note.added", "cli", NULL, data, key, NULL, &ev, &e), 0);
    json_decref(data);
    cr_assert_eq(ledger_append(l, &ev, 1, NULL, &e), 0, "%s", e.msg);
}

Test(projection, forget_follows_commits_of_other_connections)
{
    ledger_projection_register(&probe); /* this test's process only */
    Ledger *l = NULL;
    Err e = { 0 };
    LedgerOptions o = { .config = &cfg };
    cr_assert_eq(ledger_open(dir, &o, &l, &e), 0, "%s", e.msg);
    append_one(l, "a");
    int before = forgets;
    cr_assert(before >= 1, "caught up at open");
    append_one(l, "b");
    append_one(l, "c");
    cr_assert_eq(forgets, before, "nothing else committed: what it keeps stays");
    /* another connection commits without appending (as a rebuild by
     * another process does): the head does not move, forget is still due */
    Store *s = db();
    exec(s, "CREATE TABLE probe_other(a); INSERT INTO probe_other VALUES (1)");
    store_close(s);
    append_one(l, "d");
    cr_assert_eq(forgets, before + 1);
    /* a request that fails rolls back what projections applied of it */
    Event *ev = NULL;
    json_t *data = json_pack("{s:s}", "k", "e");
    cr_assert_eq(ledger_event_new("note.added", "cli", NULL, data, NULL, NULL, &ev, &e), 0);
    json_decref(data);
    cr_assert_eq(ledger_append_checkpoint(l, &ev, 1, "probe-reactor", 1, "nobody-holds-this",
                                          "me", &e),
                 ERR_LEASE, "%s", e.msg);
    cr_assert_eq(forgets, before + 2);
    ledger_close(l);
}

Test(projection, snapshot_shortens_the_rebuild)
{
    append_mixed(100);
    Store *s = db();
    Err e = { 0 };
    int64_t seq = 0, applied = 0;
    cr_assert_eq(ledger_snapshot(s, NULL, &seq, &e), 0, "%s", e.msg);
    cr_assert_eq(seq, 100);
    store_close(s);
    append_mixed(20);
    s = db();
    cr_assert_eq(ledger_replay(s, NULL, false, &applied, &e), 0, "%s", e.msg);
    cr_assert_eq(applied, 20, "starts at the snapshot");
    check_ok(s);
    cr_assert_eq(scalar(s, "SELECT sum(n) FROM event_counts"), 120);
    /* a damaged snapshot is refused, not trusted */
    exec(s, "UPDATE projection_snapshots SET state = state || ' '");
    cr_assert_eq(ledger_replay(s, NULL, false, &applied, &e), ERR_CHAIN);
    cr_assert(strstr(e.msg, "damaged"), "%s", e.msg);
    cr_assert_eq(ledger_replay(s, NULL, true, &applied, &e), 0, "--full ignores snapshots");
    cr_assert_eq(applied, 120);
    store_close(s);
}

Test(projection, lagging_or_outdated_projection_is_caught_up_at_open)
{
    append_mixed(90);
    Store *s = db();
    /* as if an older binary without this projection had appended */
    exec(s, "UPDATE ledger_state SET seq = 0 WHERE name = 'counts'; DELETE FROM event_counts");
    store_close(s);
    append_mixed(0);
    s = db();
    cr_assert_eq(scalar(s, "SELECT sum(n) FROM event_counts"), 90);
    cr_assert_eq(scalar(s, "SELECT seq FROM ledger_state WHERE name = 'counts'"), 90);
    /* a version change rebuilds from scratch, dropping whatever was there */
    exec(s, "UPDATE ledger_state SET version = 0 WHERE name = 'counts';"
            "INSERT INTO event_counts VALUES ('1999-01-01', 'junk.row', 'x', 5)");
    store_close(s);
    append_mixed(0);
    s = db();
    cr_assert_eq(scalar(s, "SELECT count(*) FROM event_counts WHERE type = 'junk.row'"), 0);
    cr_assert_eq(scalar(s, "SELECT sum(n) FROM event_counts"), 90);
    cr_assert_eq(scalar(s, "SELECT version FROM ledger_state WHERE name = 'counts'"), 1);
    check_ok(s);
    store_close(s);
}
