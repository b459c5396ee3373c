/* Unit tests of the ledger: appends, idempotency, concurrency, the chain,
 * waking readers (in and across processes), leases and reactors. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spawn.h>
#include <stdlib.h>

#include "core/clock.h"
#include "helpers.h"
#include "ledger/ledger.h"
#include "ledger/reactor.h"

extern char **environ;

/* "Another process" is this binary run again with TEST_CHILD_DIR set: it
 * appends one event (key TEST_CHILD_KEY, if set) before Criterion starts and
 * exits. A plain fork() of a process with running ledger threads could
 * inherit a lock held by one of them. */
__attribute__((constructor)) static void child_append(void)
{
    const char *d = getenv("TEST_CHILD_DIR");
    if (!d)
        return;
    const char *key = getenv("TEST_CHILD_KEY");
    Ledger *other = NULL;
    Err e = { 0 };
    if (ledger_open(d, NULL, &other, &e) < 0)
        _exit(2);
    json_t *data = json_pack("{s:i}", "child", 1);
    Event *ev = NULL;
    int rc = ledger_event_new("test.other", "child", NULL, data, key, NULL, &ev, &e);
    json_decref(data);
    if (rc == 0)
        rc = ledger_append(other, &ev, 1, NULL, &e);
    ledger_close(other);
    _exit(rc < 0 ? 3 : 0);
}

static pid_t spawn_child(const char *d, const char *key)
{
    char dir_env[512], key_env[256];
    snprintf(dir_env, sizeof dir_env, "TEST_CHILD_DIR=%s", d);
    snprintf(key_env, sizeof key_env, "TEST_CHILD_KEY=%s", key ? key : "");
    int n = 0;
    while (environ[n])
        n++;
    char **env = calloc((size_t)n + 3, sizeof *env);
    for (int i = 0; i < n; i++)
        env[i] = environ[i];
    env[n] = dir_env;
    if (key)
        env[n + 1] = key_env;
    char *argv[] = { "test_ledger", NULL };
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, env);
    free(env);
    cr_assert_eq(rc, 0, "posix_spawn: %d", rc);
    return pid;
}

static char *dir;
static Ledger *led;

static void setup(void)
{
    dir = test_tmpdir();
    Config cfg;
    core_config_defaults(&cfg);
    cfg.durability_normal = true; /* unit tests: crash safety is tested elsewhere */
    log_set_level(LOG_ERROR);
    Err e = { 0 };
    cr_assert_eq(ledger_db_prepare(dir, &cfg, true, &e), 0, "%s", e.msg);
    LedgerOptions o = { .config = &cfg, .watch = true };
    cr_assert_eq(ledger_open(dir, &o, &led, &e), 0, "%s", e.msg);
}

static void teardown(void)
{
    ledger_close(led);
    test_rmdir(dir);
}

static Event *mk(const char *type, const char *key, int i)
{
    json_t *data = json_pack("{s:i, s:s}", "i", i, "note", "hello");
    Event *ev = NULL;
    Err e = { 0 };
    cr_assert_eq(ledger_event_new(type, "test", NULL, data, key, NULL, &ev, &e), 0, "%s", e.msg);
    json_decref(data);
    return ev;
}

static Store *reader(void)
{
    Store *s = NULL;
    Err e = { 0 };
    cr_assert_eq(ledger_reader_open(led, &s, &e), 0, "%s", e.msg);
    return s;
}

TestSuite(ledger, .init = setup, .fini = teardown);

Test(ledger, appends_are_dense_and_chained)
{
    for (int i = 0; i < 10; i++) {
        Event *ev = mk("test.item", NULL, i);
        LedgerAppendResult r;
        Err e = { 0 };
        cr_assert_eq(ledger_append(led, &ev, 1, &r, &e), 0, "%s", e.msg);
        cr_assert_eq(r.seq, i + 1);
        cr_assert(!r.duplicate);
        cr_assert(core_ulid_valid(r.id, strlen(r.id)));
    }
    Store *s = reader();
    int64_t count = 0, bad = -1;
    Err e = { 0 };
    cr_assert_eq(ledger_verify(s, &count, &bad, &e), 0, "%s", e.msg);
    cr_assert_eq(count, 10);
    Event *third = NULL;
    cr_assert_eq(ledger_event_get(s, 3, NULL, &third, &e), 0);
    Event *second = NULL;
    cr_assert_eq(ledger_event_get(s, 2, NULL, &second, &e), 0);
    cr_assert_str_eq(third->prev_hash, second->hash);
    Event *byid = NULL;
    cr_assert_eq(ledger_event_get(s, 0, third->id, &byid, &e), 0);
    cr_assert_eq(byid->seq, 3);
    cr_assert_eq(ledger_event_get(s, 99, NULL, &byid, &e), ERR_NOTFOUND);
    ledger_event_free(third);
    ledger_event_free(second);
    ledger_event_free(byid);
    store_close(s);
}

Test(ledger, idempotency_key_stores_once)
{
    Event *a = mk("test.item", "key-1", 1), *b = mk("test.item", "key-1", 2);
    LedgerAppendResult r1, r2;
    Err e = { 0 };
    cr_assert_eq(ledger_append(led, &a, 1, &r1, &e), 0);
    cr_assert_eq(ledger_append(led, &b, 1, &r2, &e), 0);
    cr_assert(!r1.duplicate);
    cr_assert(r2.duplicate);
    cr_assert_eq(r2.seq, r1.seq);
    cr_assert_str_eq(r2.id, r1.id);
    /* duplicates inside one request, too */
    Event *batch[3] = { mk("test.item", "key-2", 1), mk("test.item", "key-2", 2),
                        mk("test.item", NULL, 3) };
    LedgerAppendResult rs[3];
    cr_assert_eq(ledger_append(led, batch, 3, rs, &e), 0);
    cr_assert_eq(rs[0].seq, 2);
    cr_assert(rs[1].duplicate);
    cr_assert_eq(rs[1].seq, 2);
    cr_assert_eq(rs[2].seq, 3);
    cr_assert_eq(ledger_head_seq(led), 3);
}

typedef struct Worker {
    int id, n;
    int64_t *seqs;
} Worker;

static void *append_many(void *arg)
{
    Worker *w = arg;
    for (int i = 0; i < w->n; i++) {
        char key[64];
        snprintf(key, sizeof key, "w%d-%d", w->id, i);
        Event *ev = mk("test.concurrent", key, i);
        LedgerAppendResult r;
        Err e = { 0 };
        if (ledger_append(led, &ev, 1, &r, &e) < 0)
            return (void *)1;
        w->seqs[i] = r.seq;
    }
    return NULL;
}

Test(ledger, concurrent_appenders_form_one_chain)
{
    enum { THREADS = 16, EACH = 200 };
    pthread_t th[THREADS];
    Worker w[THREADS];
    for (int t = 0; t < THREADS; t++) {
        w[t] = (Worker){ .id = t, .n = EACH, .seqs = calloc(EACH, sizeof(int64_t)) };
        pthread_create(&th[t], NULL, append_many, &w[t]);
    }
    for (int t = 0; t < THREADS; t++) {
        void *ret;
        pthread_join(th[t], &ret);
        cr_assert_null(ret);
    }
    /* every acknowledged seq is distinct and the log is dense */
    char *seen = calloc(THREADS * EACH + 1, 1);
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < EACH; i++) {
            int64_t s = w[t].seqs[i];
            cr_assert(s >= 1 && s <= THREADS * EACH);
            cr_assert(!seen[s], "seq %lld acknowledged twice", (long long)s);
            seen[s] = 1;
        }
        free(w[t].seqs);
    }
    free(seen);
    Store *s = reader();
    int64_t count = 0, bad;
    Err e = { 0 };
    cr_assert_eq(ledger_verify(s, &count, &bad, &e), 0, "%s", e.msg);
    cr_assert_eq(count, THREADS * EACH);
    store_close(s);
}

static int count_cb(void *ctx, const Event *ev)
{
    (*(int *)ctx)++;
    cr_assert_str_eq(ev->source, "test");
    return 0;
}

Test(ledger, read_filters)
{
    Err e = { 0 };
    for (int i = 0; i < 30; i++) {
        Event *ev = mk(i % 3 ? "test.a" : "test.b", NULL, i);
        cr_assert_eq(ledger_append(led, &ev, 1, NULL, &e), 0);
    }
    Store *s = reader();
    int n = 0;
    LedgerFilter f = { .type = "test.b" };
    cr_assert_eq(ledger_read(s, &f, count_cb, &n, &e), 0);
    cr_assert_eq(n, 10);
    n = 0;
    f = (LedgerFilter){ .type = "test.a", .after_seq = 15, .limit = 5 };
    cr_assert_eq(ledger_read(s, &f, count_cb, &n, &e), 0);
    cr_assert_eq(n, 5);
    n = 0;
    f = (LedgerFilter){ .source = "nope" };
    cr_assert_eq(ledger_read(s, &f, count_cb, &n, &e), 0);
    cr_assert_eq(n, 0);
    store_close(s);
}

typedef struct AsyncCtx {
    pthread_mutex_t mu;
    int64_t last;
    int calls;
    bool ordered;
} AsyncCtx;

static void async_done(void *ctx, int rc, const Err *err, const LedgerAppendResult *r, size_t n)
{
    AsyncCtx *a = ctx;
    pthread_mutex_lock(&a->mu);
    if (rc == 0 && n == 1) {
        if (r[0].seq <= a->last)
            a->ordered = false;
        a->last = r[0].seq;
    }
    a->calls++;
    pthread_mutex_unlock(&a->mu);
}

Test(ledger, async_callbacks_run_in_submission_order)
{
    AsyncCtx a = { .mu = PTHREAD_MUTEX_INITIALIZER, .ordered = true };
    Err e = { 0 };
    for (int i = 0; i < 500; i++) {
        Event *ev = mk("test.async", NULL, i);
        cr_assert_eq(ledger_append_async(led, &ev, 1, async_done, &a, &e), 0);
    }
    cr_assert_eq(ledger_sync(led, &e), 0);
    cr_assert_eq(a.calls, 500);
    cr_assert(a.ordered);
    cr_assert_eq(a.last, 500);
}

Test(ledger, wait_wakes_on_appends_from_another_process)
{
    int64_t head = ledger_head_seq(led);
    pid_t pid = spawn_child(dir, NULL);
    /* Wakes on the child's commit, not on the (long) timeout. */
    int64_t now = ledger_wait(led, head, 60000);
    int status;
    waitpid(pid, &status, 0);
    cr_assert_eq(WEXITSTATUS(status), 0);
    cr_assert_eq(now, head + 1);
    /* and this process's next append continues the same chain */
    Event *ev = mk("test.mine", NULL, 2);
    LedgerAppendResult r;
    Err e = { 0 };
    cr_assert_eq(ledger_append(led, &ev, 1, &r, &e), 0);
    cr_assert_eq(r.seq, head + 2);
    Store *s = reader();
    int64_t count, bad;
    cr_assert_eq(ledger_verify(s, &count, &bad, &e), 0, "%s", e.msg);
    store_close(s);
}

Test(ledger, wait_returns_at_once_when_already_past)
{
    Event *ev = mk("test.x", NULL, 1);
    Err e = { 0 };
    cr_assert_eq(ledger_append(led, &ev, 1, NULL, &e), 0);
    cr_assert_eq(ledger_wait(led, 0, -1), 1);
    cr_assert_eq(ledger_wait(led, 1, 0), 1, "a zero timeout does not block");
}

Test(ledger, leases_fence_reactor_checkpoints)
{
    Store *s = reader();
    Err e = { 0 };
    cr_assert_eq(ledger_lease_acquire(s, "job", "A", 60000, &e), 1);
    cr_assert_eq(ledger_lease_acquire(s, "job", "B", 60000, &e), 0);
    cr_assert_eq(ledger_lease_acquire(s, "job", "A", 60000, &e), 1, "renewal");
    Event *ev = mk("test.fenced", NULL, 1);
    cr_assert_eq(ledger_append_checkpoint(led, &ev, 1, "r1", 5, "job", "B", &e), ERR_LEASE);
    cr_assert_eq(ledger_head_seq(led), 0, "nothing was written");
    ev = mk("test.fenced", NULL, 2);
    cr_assert_eq(ledger_append_checkpoint(led, &ev, 1, "r1", 5, "job", "A", &e), 0, "%s", e.msg);
    int64_t cp;
    cr_assert_eq(ledger_reactor_checkpoint(s, "r1", &cp, &e), 0);
    cr_assert_eq(cp, 5);
    /* an expired lease can be taken over */
    cr_assert_eq(ledger_lease_acquire(s, "short", "A", -1, &e), 1);
    cr_assert_eq(ledger_lease_acquire(s, "short", "B", 60000, &e), 1);
    cr_assert_eq(ledger_lease_release(s, "short", "B", &e), 0);
    store_close(s);
}

static int pong(void *ctx, Store *rd, const Event *ev, ReactorEmit *out, Err *err)
{
    if (strcmp(ev->type, "test.ping"))
        return 0;
    json_t *data = json_pack("{s:I}", "ping", (json_int_t)ev->seq);
    char key[64];
    snprintf(key, sizeof key, "pong:%lld", (long long)ev->seq);
    Event *p = NULL;
    int rc = ledger_event_new("test.pong", "reactor", NULL, data, key, NULL, &p, err);
    json_decref(data);
    if (rc < 0)
        return rc;
    ledger_reactor_emit(out, p);
    return 0;
}

static int count_cb_any(void *ctx, const Event *ev)
{
    (void)ev;
    (*(int *)ctx)++;
    return 0;
}

static int count_type(Store *s, const char *type)
{
    int n = 0;
    LedgerFilter f = { .type = type };
    Err e = { 0 };
    cr_assert_eq(ledger_read(s, &f, count_cb_any, &n, &e), 0);
    return n;
}

/* Waits (on the ledger's own wake-ups) until reactor name has handled head. */
static void wait_reactor(Store *s, const char *name, int64_t head)
{
    int64_t cp = 0, seen = ledger_head_seq(led);
    Err e = { 0 };
    for (int rounds = 0; rounds < 10000; rounds++) {
        cr_assert_eq(ledger_reactor_checkpoint(s, name, &cp, &e), 0);
        if (cp >= head)
            return;
        seen = ledger_wait(led, seen, 30000);
    }
    cr_assert_fail("reactor %s stuck at %lld of %lld", name, (long long)cp, (long long)head);
}

Test(ledger, reactor_emits_once_per_event_across_restarts)
{
    Err e = { 0 };
    for (int i = 0; i < 50; i++) {
        Event *ev = mk(i % 2 ? "test.ping" : "test.other", NULL, i);
        cr_assert_eq(ledger_append(led, &ev, 1, NULL, &e), 0);
    }
    ReactorDef def = { .name = "pong", .handle = pong, .batch = 7 };
    Reactor *r = NULL;
    cr_assert_eq(ledger_reactor_start(led, &def, &r, &e), 0, "%s", e.msg);
    Store *s = reader();
    wait_reactor(s, "pong", 50);
    cr_assert_eq(count_type(s, "test.pong"), 25);
    ledger_reactor_stop(r);
    /* more work while it is stopped, then a restart picks up where it was */
    for (int i = 0; i < 10; i++) {
        Event *ev = mk("test.ping", NULL, i);
        cr_assert_eq(ledger_append(led, &ev, 1, NULL, &e), 0);
    }
    int64_t head = ledger_head_seq(led);
    cr_assert_eq(ledger_reactor_start(led, &def, &r, &e), 0);
    wait_reactor(s, "pong", head);
    ledger_reactor_stop(r);
    cr_assert_eq(count_type(s, "test.pong"), 35);
    int64_t count, bad;
    cr_assert_eq(ledger_verify(s, &count, &bad, &e), 0, "%s", e.msg);
    store_close(s);
}

static bool is_ping(void *ctx, const char *type)
{
    (*(int *)ctx)++;
    return !strcmp(type, "test.ping");
}

Test(ledger, recent_types_answer_for_this_process_appends_only)
{
    Err e = { 0 };
    int calls = 0;
    cr_assert_eq(ledger_recent_types(led, 0, 0, is_ping, &calls), 0, "an empty range");
    cr_assert_eq(ledger_recent_types(led, 0, 1, is_ping, &calls), -1, "nothing known yet");
    Event *evs[3] = { mk("test.other", NULL, 1), mk("test.other", NULL, 2),
                      mk("test.ping", NULL, 3) };
    cr_assert_eq(ledger_append(led, evs, 3, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(ledger_recent_types(led, 0, 2, is_ping, &calls), 0);
    cr_assert_eq(calls, 2, "one look per event");
    cr_assert_eq(ledger_recent_types(led, 0, 3, is_ping, &calls), 1);
    cr_assert_eq(ledger_recent_types(led, 2, 3, is_ping, &calls), 1);
    cr_assert_eq(ledger_recent_types(led, 0, 4, is_ping, &calls), -1, "past the head");
    /* a duplicate takes no seq; the next event follows */
    Event *dup = mk("test.keyed", "k1", 1);
    cr_assert_eq(ledger_append(led, &dup, 1, NULL, &e), 0);
    dup = mk("test.ping", "k1", 2);
    Event *next = mk("test.other", NULL, 5);
    Event *two[2] = { dup, next };
    cr_assert_eq(ledger_append(led, two, 2, NULL, &e), 0);
    cr_assert_eq(ledger_head_seq(led), 5);
    cr_assert_eq(ledger_recent_types(led, 3, 5, is_ping, &calls), 0,
                 "the duplicate's type is not remembered as an append");
    /* a type longer than what is kept is not known */
    char longtype[80];
    memset(longtype, 'x', sizeof longtype - 1);
    longtype[0] = 't';
    longtype[4] = '.';
    longtype[sizeof longtype - 1] = '\0';
    Event *lng = mk(longtype, NULL, 6);
    cr_assert_eq(ledger_append(led, &lng, 1, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(ledger_recent_types(led, 5, 6, is_ping, &calls), -1);
    /* another process appends: its event is not known here, nor is
     * anything up to this process's next commit */
    pid_t pid = spawn_child(dir, NULL);
    int status;
    waitpid(pid, &status, 0);
    cr_assert_eq(WEXITSTATUS(status), 0);
    Event *mine = mk("test.other", NULL, 8);
    LedgerAppendResult r;
    cr_assert_eq(ledger_append(led, &mine, 1, &r, &e), 0);
    cr_assert_eq(r.seq, 8);
    cr_assert_eq(ledger_recent_types(led, 6, 8, is_ping, &calls), -1, "seq 7 is another's");
    cr_assert_eq(ledger_recent_types(led, 7, 8, is_ping, &calls), 0, "seq 8 is this one's");
}

/* A lazy reactor: pings are answered (and commit), test.keep commits
 * without emitting, anything else only moves the position in memory. */
static int lazy_pong(void *ctx, Store *rd, const Event *ev, ReactorEmit *out, Err *err)
{
    if (!strcmp(ev->type, "test.keep"))
        ledger_reactor_keep(out);
    return pong(ctx, rd, ev, out, err);
}

/* Waits until the lazy reactor r has handled head (in memory). */
static void wait_position(Reactor *r, int64_t head)
{
    int64_t pos = -1;
    for (int rounds = 0; rounds < 2000; rounds++) {
        if (ledger_reactor_position(r, &pos) && pos >= head)
            return;
        ledger_wait(led, INT64_MAX, 10); /* nothing else tells when it moved */
    }
    cr_assert_fail("lazy reactor stuck at %lld of %lld", (long long)pos, (long long)head);
}

Test(ledger, lazy_reactor_commits_only_what_matters_and_its_position_on_stop)
{
    Err e = { 0 };
    Store *s = reader();
    ReactorDef def = { .name = "lazy", .handle = lazy_pong, .batch = 1000, .lazy = true };
    Reactor *r = NULL;
    int64_t pos = 0, cp = -1;
    cr_assert(!ledger_reactor_position(NULL, &pos));
    int64_t t0 = core_time_now_ms();
    cr_assert_eq(ledger_reactor_start(led, &def, &r, &e), 0, "%s", e.msg);
    wait_position(r, 0);
    /* events it ignores: the position moves, the stored checkpoint does not
     * (for up to 250 ms after the reactor's last commit, or its start) */
    Event *evs[20];
    for (int i = 0; i < 20; i++)
        evs[i] = mk("test.other", NULL, i);
    cr_assert_eq(ledger_append(led, evs, 20, NULL, &e), 0, "%s", e.msg);
    wait_position(r, 20);
    cr_assert_eq(ledger_reactor_checkpoint(s, "lazy", &cp, &e), 0);
    if (core_time_now_ms() - t0 < 200)
        cr_assert_eq(cp, 0, "an ignored event is not committed at once");
    /* ... and is stored within that bound, with nothing new appended */
    wait_reactor(s, "lazy", 20);
    /* a ping is answered and committed with its checkpoint */
    Event *ping = mk("test.ping", NULL, 1);
    cr_assert_eq(ledger_append(led, &ping, 1, NULL, &e), 0);
    wait_reactor(s, "lazy", 21);
    cr_assert_eq(count_type(s, "test.pong"), 1);
    /* a kept event commits without emitting: its position is shown only
     * once the checkpoint is stored */
    Event *keep = mk("test.keep", NULL, 1);
    cr_assert_eq(ledger_append(led, &keep, 1, NULL, &e), 0);
    int64_t head = ledger_head_seq(led);
    wait_position(r, head);
    cr_assert_eq(ledger_reactor_checkpoint(s, "lazy", &cp, &e), 0);
    cr_assert_eq(cp, head);
    /* an ignored event held in memory is stored when the reactor stops */
    Event *other = mk("test.other", NULL, 99);
    cr_assert_eq(ledger_append(led, &other, 1, NULL, &e), 0);
    head = ledger_head_seq(led);
    wait_position(r, head);
    ledger_reactor_stop(r);
    cr_assert_eq(ledger_reactor_checkpoint(s, "lazy", &cp, &e), 0);
    cr_assert_eq(cp, head, "stopping stores the position");
    /* a restart starts from there: the ping is not answered twice */
    cr_assert_eq(ledger_reactor_start(led, &def, &r, &e), 0);
    wait_position(r, head);
    ledger_reactor_stop(r);
    cr_assert_eq(count_type(s, "test.pong"), 1);
    store_close(s);
}

static int64_t scalar(Store *s, const char *sql)
{
    StoreStmt *st;
    Err e = { 0 };
    cr_assert_eq(store_prepare(s, sql, &st, &e), 0, "%s", e.msg);
    cr_assert_eq(store_step(st, &e), STORE_ROW);
    int64_t v = store_col_int(st, 0);
    store_stmt_done(st);
    return v;
}

Test(ledger, idempotency_holds_across_processes_reopens_and_key_flushes)
{
    enum { N = 5000, CHUNK = 500 };
    Err e = { 0 };
    /* keys appended by another process are seen by this one's writer */
    pid_t pid = spawn_child(dir, "shared-key");
    int status;
    waitpid(pid, &status, 0);
    cr_assert_eq(WEXITSTATUS(status), 0);
    Event *dup = mk("test.mine", "shared-key", 2);
    LedgerAppendResult r;
    cr_assert_eq(ledger_append(led, &dup, 1, &r, &e), 0);
    cr_assert(r.duplicate, "a key appended by another process is a duplicate here");
    cr_assert_eq(r.seq, 1);

    /* more keys than one flush: some end in the idempotency table */
    for (int c = 0; c < N / CHUNK; c++) {
        Event *evs[CHUNK];
        for (int i = 0; i < CHUNK; i++) {
            char key[32];
            snprintf(key, sizeof key, "k%d", c * CHUNK + i);
            evs[i] = mk("test.keyed", key, i);
        }
        cr_assert_eq(ledger_append(led, evs, CHUNK, NULL, &e), 0, "%s", e.msg);
    }
    Store *s = reader();
    cr_assert_geq(scalar(s, "SELECT count(*) FROM idempotency"), 4096);
    cr_assert_geq(scalar(s, "SELECT seq FROM ledger_state WHERE name = '@keys'"), 4096);
    /* a reopened ledger still finds every key, flushed or in the tail */
    ledger_close(led);
    Config cfg;
    core_config_defaults(&cfg);
    cfg.durability_normal = true;
    LedgerOptions o = { .config = &cfg };
    cr_assert_eq(ledger_open(dir, &o, &led, &e), 0, "%s", e.msg);
    for (int i = 0; i < N; i += 97) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        Event *ev = mk("test.keyed", key, i);
        cr_assert_eq(ledger_append(led, &ev, 1, &r, &e), 0);
        cr_assert(r.duplicate, "key %s", key);
        cr_assert_eq(r.seq, i + 2, "key %s names seq %lld", key, (long long)r.seq);
    }
    cr_assert_eq(scalar(s, "SELECT count(*) FROM events"), N + 1);
    store_close(s);
}

Test(ledger, verify_refuses_values_the_writer_never_writes)
{
    Err e = { 0 };
    for (int i = 0; i < 3; i++) {
        Event *ev = mk("test.item", NULL, i);
        cr_assert_eq(ledger_append(led, &ev, 1, NULL, &e), 0);
    }
    Store *s = reader();
    /* an empty subject hashes like an absent one: verify must still notice */
    cr_assert_eq(store_exec(s, "UPDATE events SET subject = '' WHERE seq = 2", &e), 0);
    int64_t count, bad = 0;
    cr_assert_eq(ledger_verify(s, &count, &bad, &e), ERR_CHAIN);
    cr_assert_eq(bad, 2);
    cr_assert(strstr(e.msg, "subject"), "%s", e.msg);
    store_close(s);
}

static long wal_bytes(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bureau.db-wal", dir);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "no WAL at %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Under a steady stream of commits a passive checkpoint never catches up
 * with the writer; the WAL must still restart from its beginning, not grow
 * with every commit. Without restarts 8192 commits would need about 32 times
 * the WAL of the first 256. */
Test(ledger, wal_stays_bounded_under_steady_commits)
{
    long first = 0;
    for (int i = 0; i < 8192; i++) {
        Event *ev = mk("test.item", NULL, i);
        Err e = { 0 };
        cr_assert_eq(ledger_append(led, &ev, 1, NULL, &e), 0, "%s", e.msg);
        if (i == 255)
            first = wal_bytes();
    }
    long last = wal_bytes();
    cr_assert_gt(first, 0);
    cr_assert_lt(last, 12 * first, "WAL grew from %ld to %ld bytes", first, last);
}
