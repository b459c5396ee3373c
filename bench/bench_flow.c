/* bench_flow: the workflow engine end to end (planner, runner, workers, the
 * "tasks" projection, the ledger's writer, SQLite), for a 5-step workflow of
 * lua and emit steps: lua, emit, lua, emit, lua, each step's inputs rendered
 * from {{ }} templates over the trigger and the earlier steps' outputs.
 *
 * Throughput ("backlog"): BENCH_TASKS trigger events are appended before the
 * engine starts (in batches of TRIGGER_BATCH); the clock runs from
 * flow_engine_start until flow_engine_wait_idle returns. Once with
 * durability full (synchronous=FULL), once with durability normal, each in a
 * fresh data directory. Afterwards SQL on a reader connection checks that
 * exactly N tasks and 5N steps succeeded, that N events of each emit step
 * were stored, and that the last step's outputs add up to what the same
 * arithmetic gives in C.
 *
 * Latency: one task at a time (append one trigger durably, wait until the
 * engine is idle, repeat LAT_TASKS times after LAT_WARMUP unmeasured ones),
 * with full and with normal durability: the full/normal gap is what fsync
 * costs a lone task.
 *
 * "CPU per step" is the process's CPU time (getrusage RUSAGE_SELF, user +
 * system, all threads) during the engine run divided by the steps run. It
 * is Bureau's whole overhead per step: the planner (matching triggers,
 * task.created), the runner (ready-step queries, dispatch), the workers
 * (loading the task context, rendering templates, running the Lua, building
 * events with their hashes), the writer (group commit, applying the
 * projections), SQLite, and the system time of the fsync and write calls.
 * The Lua work of the steps themselves is a few arithmetic operations.
 * Time a thread sleeps in fsync is not CPU time: it shows in wall time only.
 *
 * Environment: BENCH_TASKS (default 4000) tasks per throughput run,
 * BENCH_DIR (default $TMPDIR or /tmp) where the temp directory is made,
 * BENCH_WORKERS (flow.workers, default 0 = two per core). */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "flow/engine.h"
#include "ledger/ledger.h"
#include "ledger/projection.h"

#define DEFAULT_TASKS 4000
#define MAX_TASKS 100000
#define MAX_WORKERS 256
#define STEPS 5                /* steps of the bench workflow */
#define TRIGGER_BATCH 500      /* trigger events per ledger_append */
#define LAT_WARMUP 5           /* one-at-a-time tasks run before measuring */
#define LAT_TASKS 50           /* one-at-a-time tasks measured */
#define IDLE_TIMEOUT_MS 60000  /* one engine run, at most */
#define GOAL_TASKS_S 2000.0    /* full durability, 2 cores */
#define GOAL_STEP_US 200.0     /* Bureau CPU per step */
#define PATH_CAP 1024          /* the temp directory's path, at most */

/* ---- the workflow and its scripts ---- */

static const char WORKFLOW_YAML[] =
    "name: bench\n"
    "description: bench_flow's 5-step workflow (lua, emit, lua, emit, lua)\n"
    "on: { event: bench.item }\n"
    "steps:\n"
    "  - id: score\n"
    "    do: lua\n"
    "    with: { script: bench_score, args: { n: \"{{ event.data.n }}\" } }\n"
    "  - id: scored\n"
    "    do: emit\n"
    "    with:\n"
    "      type: bench.scored\n"
    "      data: { n: \"{{ event.data.n }}\", score: \"{{ steps.score.output.score }}\" }\n"
    "  - id: rank\n"
    "    do: lua\n"
    "    with:\n"
    "      script: bench_rank\n"
    "      args: { score: \"{{ steps.score.output.score }}\", kind: \"{{ steps.scored.output.type }}\" }\n"
    "  - id: ranked\n"
    "    do: emit\n"
    "    with:\n"
    "      type: bench.ranked\n"
    "      data: { rank: \"{{ steps.rank.output.rank }}\", label: \"item-{{ event.data.n }}\" }\n"
    "  - id: total\n"
    "    do: lua\n"
    "    with:\n"
    "      script: bench_total\n"
    "      args: { rank: \"{{ steps.rank.output.rank }}\", score: \"{{ steps.score.output.score }}\" }\n";

static const char SCRIPT_SCORE[] =
    "-- a little arithmetic on the trigger's number\n"
    "local n, s = args.n, 0\n"
    "for i = 1, 10 do s = s + (n * i) % 7 end\n"
    "return { score = s, parity = n % 2 }\n";

static const char SCRIPT_RANK[] = "return { rank = args.score * 3 + #args.kind }\n";

static const char SCRIPT_TOTAL[] = "return { total = args.rank + args.score, ok = true }\n";

/* What the three scripts compute for trigger n, for the check afterwards. */
static int64_t expected_total(int64_t n)
{
    int64_t score = 0;
    for (int64_t i = 1; i <= 10; i++)
        score += (n * i) % 7;
    int64_t rank = score * 3 + (int64_t)strlen("bench.scored");
    return rank + score;
}

/* ---- small helpers ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int write_file(const char *dir, const char *name, const char *text, Err *err)
{
    char path[PATH_CAP + 128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return err_set(err, ERR_IO, "create %s: %s", path, strerror(errno));
    size_t len = strlen(text);
    bool ok = fwrite(text, 1, len, f) == len;
    if (fclose(f) != 0)
        ok = false;
    return ok ? 0 : err_set(err, ERR_IO, "write %s: %s", path, strerror(errno));
}

static int make_dir(const char *path, Err *err)
{
    if (mkdir(path, 0700) < 0)
        return err_set(err, ERR_IO, "mkdir %s: %s", path, strerror(errno));
    return 0;
}

/* The first column of the first row of sql, as an integer (0 for NULL). */
static int query_int(Store *rd, const char *sql, int64_t *ret, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd, sql, &st, err);
    if (rc < 0)
        return rc;
    rc = store_step(st, err);
    if (rc == STORE_ROW)
        *ret = store_col_int(st, 0);
    else if (rc >= 0)
        rc = err_set(err, ERR_INTERNAL, "no row from: %s", sql);
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

/* ---- machine details: bench/bench_util.h ---- */

static void print_machine(const char *dir, int tasks, int workers)
{
    struct utsname u;
    char model[256], date[CORE_TIME_LEN + 1];
    uname(&u);
    cpu_model(model, sizeof model);
    core_time_format(core_time_now_ms(), date);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("Bureau workflow engine benchmark, %s\n", date);
    printf("machine : nproc %ld, %s\n", cores, model);
    printf("kernel  : %s %s %s\n", u.sysname, u.release, u.machine);
    printf("sqlite  : %s (library)\n", sqlite3_libversion());
    printf("storage : %s, file system %s\n", dir, fs_name(dir));
    if (workers > 0)
        printf("workers : %d (flow.workers = BENCH_WORKERS)\n", workers);
    else
        printf("workers : %ld (flow.workers 0 = two per core)\n", 2 * (cores > 0 ? cores : 1));
    printf("workflow: 5 steps (lua, emit, lua, emit, lua) with {{ }} templates; "
           "throughput: %d triggers appended up front, then the engine runs until idle; "
           "latency: %d tasks one at a time (after %d unmeasured)\n",
           tasks, LAT_TASKS, LAT_WARMUP);
}

/* ---- one data directory with the bench workflow ---- */

typedef struct Bench {
    char dir[PATH_CAP + 64];
    Config cfg;
    Ledger *l;
    Store *rd;
    int64_t next_n; /* the next trigger's number */
} Bench;

static int bench_open(Bench *b, const char *base, const char *name, bool normal, int workers,
                      Err *err)
{
    memset(b, 0, sizeof *b);
    snprintf(b->dir, sizeof b->dir, "%s/%s", base, name);
    core_config_defaults(&b->cfg);
    b->cfg.durability_normal = normal;
    b->cfg.flow_workers = workers;
    b->cfg.log_level = LOG_WARN;
    char sub[PATH_CAP + 128];
    int rc = make_dir(b->dir, err);
    if (rc < 0)
        return rc;
    if ((rc = ledger_db_prepare(b->dir, &b->cfg, true, err)) < 0)
        return rc;
    snprintf(sub, sizeof sub, "%s/workflows", b->dir);
    if ((rc = make_dir(sub, err)) < 0 ||
        (rc = write_file(sub, "bench.yaml", WORKFLOW_YAML, err)) < 0)
        return rc;
    snprintf(sub, sizeof sub, "%s/agents", b->dir);
    if ((rc = make_dir(sub, err)) < 0 ||
        (rc = write_file(sub, "bench_score.lua", SCRIPT_SCORE, err)) < 0 ||
        (rc = write_file(sub, "bench_rank.lua", SCRIPT_RANK, err)) < 0 ||
        (rc = write_file(sub, "bench_total.lua", SCRIPT_TOTAL, err)) < 0)
        return rc;
    LedgerOptions opts = { .config = &b->cfg };
    if ((rc = ledger_open(b->dir, &opts, &b->l, err)) < 0)
        return rc;
    return ledger_reader_open(b->l, &b->rd, err);
}

static void bench_close(Bench *b)
{
    store_close(b->rd);
    ledger_close(b->l);
    core_config_done(&b->cfg);
    b->rd = NULL;
    b->l = NULL;
}

/* Appends n trigger events (bench.item {n}), batch at a time, durably. */
static int triggers_append(Bench *b, int n, int batch, Err *err)
{
    const EventLimits *lim = ledger_limits(b->l);
    Event **evs = xcalloc((size_t)batch, sizeof *evs);
    int rc = 0;
    for (int done = 0; done < n && rc == 0;) {
        int k = n - done < batch ? n - done : batch;
        int built = 0;
        for (; built < k; built++) {
            char key[64];
            int64_t i = b->next_n++;
            snprintf(key, sizeof key, "bench:item:%" PRId64, i);
            json_t *data = json_pack("{s:I}", "n", (json_int_t)i);
            rc = ledger_event_new("bench.item", "bench", NULL, data, key, lim, &evs[built], err);
            json_decref(data);
            if (rc < 0)
                break;
        }
        if (rc < 0) {
            for (int i = 0; i < built; i++)
                ledger_event_free(evs[i]);
            break;
        }
        rc = ledger_append(b->l, evs, (size_t)k, NULL, err);
        done += k;
    }
    free(evs);
    return rc;
}

/* Checks with SQL that every trigger so far became a task whose 5 steps
 * succeeded, with the right numbers at the end. */
static int bench_verify(Bench *b, Err *err)
{
    int64_t n = b->next_n, tasks = 0, ok = 0, steps = 0, scored = 0, ranked = 0, total = 0;
    int rc;
    if ((rc = query_int(b->rd, "SELECT count(*) FROM tasks", &tasks, err)) < 0 ||
        (rc = query_int(b->rd,
                        "SELECT count(*) FROM tasks WHERE workflow = 'bench'"
                        " AND status = 'succeeded'",
                        &ok, err)) < 0 ||
        (rc = query_int(b->rd, "SELECT count(*) FROM task_steps WHERE status = 'succeeded'",
                        &steps, err)) < 0 ||
        (rc = query_int(b->rd, "SELECT count(*) FROM events WHERE type = 'bench.scored'",
                        &scored, err)) < 0 ||
        (rc = query_int(b->rd, "SELECT count(*) FROM events WHERE type = 'bench.ranked'",
                        &ranked, err)) < 0 ||
        (rc = query_int(b->rd,
                        "SELECT sum(json_extract(output, '$.total')) FROM task_steps"
                        " WHERE step_id = 'total' AND status = 'succeeded'",
                        &total, err)) < 0)
        return rc;
    int64_t want_total = 0;
    for (int64_t i = 0; i < n; i++)
        want_total += expected_total(i);
    if (tasks != n || ok != n || steps != n * STEPS || scored != n || ranked != n ||
        total != want_total)
        return err_set(err, ERR_INTERNAL,
                       "%s: %" PRId64 " triggers, but %" PRId64 " tasks (%" PRId64
                       " succeeded), %" PRId64 " steps succeeded (want %" PRId64 "), %" PRId64
                       " bench.scored and %" PRId64 " bench.ranked events, total %" PRId64
                       " (want %" PRId64 ")",
                       b->dir, n, tasks, ok, steps, n * STEPS, scored, ranked, total,
                       want_total);
    return 0;
}

/* ---- throughput: a backlog of N triggers ---- */

typedef struct Throughput {
    bool normal;
    int tasks;
    double start_ms;  /* flow_engine_start */
    double seconds;   /* flow_engine_start until idle */
    double cpu;       /* process CPU seconds over the same span */
    double writer;    /* the ledger writer thread's CPU seconds, the same span */
    int64_t events;   /* appended by the engine */
    uint64_t commits; /* the writer's, during the run */
    uint64_t batched; /* events in those commits */
} Throughput;

static int run_throughput(const char *base, bool normal, int n, int workers, Throughput *r,
                          Err *err)
{
    memset(r, 0, sizeof *r);
    r->normal = normal;
    r->tasks = n;
    Bench b;
    FlowEngine *e = NULL;
    int rc = bench_open(&b, base, normal ? "tp-normal" : "tp-full", normal, workers, err);
    if (rc < 0)
        goto out;
    if ((rc = triggers_append(&b, n, TRIGGER_BATCH, err)) < 0)
        goto out;
    int64_t head0 = ledger_head_seq(b.l);
    LedgerStats s0, s1;
    ledger_stats(b.l, &s0);
    double cpu0 = cpu_s(), w0 = thread_cpu_s("ledger-writer"), t0 = now_s();
    if ((rc = flow_engine_start(b.l, b.dir, &b.cfg, &e, err)) < 0)
        goto out;
    r->start_ms = (now_s() - t0) * 1e3;
    rc = flow_engine_wait_idle(e, IDLE_TIMEOUT_MS, 0, err);
    r->seconds = now_s() - t0;
    r->cpu = cpu_s() - cpu0;
    r->writer = thread_cpu_s("ledger-writer") - w0;
    ledger_stats(b.l, &s1);
    if (rc < 0)
        goto out;
    r->events = ledger_head_seq(b.l) - head0;
    r->commits = s1.commits - s0.commits;
    r->batched = s1.events - s0.events;
    flow_engine_stop(e);
    e = NULL;
    rc = bench_verify(&b, err);
out:
    flow_engine_stop(e);
    bench_close(&b);
    return rc;
}

/* ---- latency: one task at a time ---- */

typedef struct Latency {
    bool normal;
    double p50_ms, p99_ms, mean_ms, max_ms; /* trigger append until wait_idle returns */
    double in_p50_ms, in_p99_ms;  /* trigger built until the last step's event built */
    double cpu_us_step;   /* process CPU per step over the measured tasks */
    double commits_task;  /* writer commits per task */
} Latency;

/* The engine's own view of each measured task: from its trigger's
 * received_at to the task's finished_at (the received_at of the last step's
 * event, set when the worker builds it), in ms (the timestamps have ms
 * resolution). It leaves out the final commit and the idle detection. */
static int inner_latency(Store *rd, double *lat, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT (julianday(t.finished_at) - julianday(e.received_at))"
                           " * 86400000.0 FROM tasks t JOIN events e ON e.seq = t.trigger_seq"
                           " ORDER BY t.created_seq",
                           &st, err);
    if (rc < 0)
        return rc;
    int i = 0;
    while ((rc = store_step(st, err)) == STORE_ROW) {
        if (i >= LAT_WARMUP && i < LAT_WARMUP + LAT_TASKS)
            lat[i - LAT_WARMUP] = store_col_real(st, 0);
        i++;
    }
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    if (i != LAT_WARMUP + LAT_TASKS)
        return err_set(err, ERR_INTERNAL, "%d finished tasks, want %d", i, LAT_WARMUP + LAT_TASKS);
    qsort(lat, LAT_TASKS, sizeof *lat, cmp_double);
    return 0;
}

static int run_latency(const char *base, bool normal, int workers, Latency *r, Err *err)
{
    memset(r, 0, sizeof *r);
    r->normal = normal;
    Bench b;
    FlowEngine *e = NULL;
    double lat[LAT_TASKS], inner[LAT_TASKS];
    int rc = bench_open(&b, base, normal ? "lat-normal" : "lat-full", normal, workers, err);
    if (rc < 0)
        goto out;
    if ((rc = flow_engine_start(b.l, b.dir, &b.cfg, &e, err)) < 0 ||
        (rc = flow_engine_wait_idle(e, IDLE_TIMEOUT_MS, 0, err)) < 0)
        goto out;
    LedgerStats s0 = { 0 }, s1;
    double cpu0 = 0;
    for (int i = 0; i < LAT_WARMUP + LAT_TASKS; i++) {
        if (i == LAT_WARMUP) {
            ledger_stats(b.l, &s0);
            cpu0 = cpu_s();
        }
        double t0 = now_s();
        if ((rc = triggers_append(&b, 1, 1, err)) < 0 ||
            (rc = flow_engine_wait_idle(e, IDLE_TIMEOUT_MS, 0, err)) < 0)
            goto out;
        if (i >= LAT_WARMUP)
            lat[i - LAT_WARMUP] = (now_s() - t0) * 1e3;
    }
    r->cpu_us_step = (cpu_s() - cpu0) / (LAT_TASKS * STEPS) * 1e6;
    ledger_stats(b.l, &s1);
    r->commits_task = (double)(s1.commits - s0.commits) / LAT_TASKS;
    flow_engine_stop(e);
    e = NULL;
    if ((rc = bench_verify(&b, err)) < 0 || (rc = inner_latency(b.rd, inner, err)) < 0)
        goto out;
    r->in_p50_ms = inner[LAT_TASKS / 2];
    r->in_p99_ms = inner[(LAT_TASKS * 99) / 100];
    double sum = 0;
    for (int i = 0; i < LAT_TASKS; i++)
        sum += lat[i];
    qsort(lat, LAT_TASKS, sizeof *lat, cmp_double);
    r->mean_ms = sum / LAT_TASKS;
    r->p50_ms = lat[LAT_TASKS / 2];
    r->p99_ms = lat[(LAT_TASKS * 99) / 100];
    r->max_ms = lat[LAT_TASKS - 1];
out:
    flow_engine_stop(e);
    bench_close(&b);
    return rc;
}

/* ---- output ---- */

static void print_throughput(const Throughput *rs, size_t n)
{
    printf("\nthroughput (backlog: all triggers appended before the engine starts)\n");
    printf("%-10s %6s %8s %8s %9s %8s %9s %9s %6s %8s %7s %8s\n", "durability", "tasks",
           "seconds", "tasks/s", "steps/s", "events/s", "wall us", "CPU us", "cores", "commits",
           "mean", "writer");
    printf("%-10s %6s %8s %8s %9s %8s %9s %9s %6s %8s %7s %8s\n", "", "", "", "", "",
           "(engine)", "/step", "/step", "busy", "", "batch", "busy");
    for (size_t i = 0; i < n; i++) {
        const Throughput *r = &rs[i];
        double steps = (double)r->tasks * STEPS;
        printf("%-10s %6d %8.2f %8.0f %9.0f %8.0f %9.1f %9.1f %6.2f %8" PRIu64 " %7.1f %8.2f\n",
               r->normal ? "normal" : "full", r->tasks, r->seconds, r->tasks / r->seconds,
               steps / r->seconds, (double)r->events / r->seconds, r->seconds / steps * 1e6,
               r->cpu / steps * 1e6, r->cpu / r->seconds, r->commits,
               r->commits ? (double)r->batched / (double)r->commits : 0,
               r->writer >= 0 ? r->writer / r->seconds : -1);
    }
    if (n)
        printf("(engine start, included: %.1f ms; engine events per task: %.1f)\n",
               rs[0].start_ms, (double)rs[0].events / rs[0].tasks);
}

static void print_latency(const Latency *rs, size_t n)
{
    printf("\nlatency (one task at a time: append its trigger durably, wait until idle)\n");
    printf("%-10s %8s %8s %8s %8s %9s %8s %8s %9s %8s %8s\n", "durability", "p50 ms", "p99 ms",
           "mean ms", "max ms", "p50 ms", "engine", "engine", "engine ms", "CPU us", "commits");
    printf("%-10s %8s %8s %8s %8s %9s %8s %8s %9s %8s %8s\n", "", "round", "round", "round",
           "round", "per step", "p50 ms", "p99 ms", "per step", "/step", "/task");
    for (size_t i = 0; i < n; i++) {
        const Latency *r = &rs[i];
        printf("%-10s %8.2f %8.2f %8.2f %8.2f %9.2f %8.1f %8.1f %9.2f %8.1f %8.1f\n",
               r->normal ? "normal" : "full", r->p50_ms, r->p99_ms, r->mean_ms, r->max_ms,
               r->p50_ms / STEPS, r->in_p50_ms, r->in_p99_ms, r->in_p50_ms / STEPS,
               r->cpu_us_step, r->commits_task);
    }
    printf("(round = trigger append until flow_engine_wait_idle returns, idle detection "
           "included; engine = trigger's received_at to the task's finished_at, ms "
           "timestamps, the last step's commit not included)\n");
}

static int env_int(const char *name, int lo, int hi, int dflt, int *ret)
{
    const char *s = getenv(name);
    *ret = dflt;
    if (!s || !*s)
        return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) {
        fprintf(stderr, "bench_flow: %s must be an integer in [%d, %d]\n", name, lo, hi);
        return -1;
    }
    *ret = (int)v;
    return 0;
}

int main(void)
{
    int tasks, workers;
    if (env_int("BENCH_TASKS", 1, MAX_TASKS, DEFAULT_TASKS, &tasks) < 0 ||
        env_int("BENCH_WORKERS", 0, MAX_WORKERS, 0, &workers) < 0)
        return 2;
    const char *parent = getenv("BENCH_DIR");
    if (!parent || !*parent)
        parent = getenv("TMPDIR");
    if (!parent || !*parent)
        parent = "/tmp";
    char base[PATH_CAP];
    if (strlen(parent) + sizeof "/bureau-bench-flow.XXXXXX" > sizeof base) {
        fprintf(stderr, "bench_flow: BENCH_DIR/TMPDIR is too long\n");
        return 2;
    }
    snprintf(base, sizeof base, "%s/bureau-bench-flow.XXXXXX", parent);
    if (!mkdtemp(base)) {
        fprintf(stderr, "bench_flow: mkdtemp in %s: %s\n", parent, strerror(errno));
        return 1;
    }

    log_set_level(LOG_WARN);
    /* The order of bureau's main: projections register before any open. */
    ledger_projections_builtin();
    flow_projections_register();
    print_machine(base, tasks, workers);
    fflush(stdout);

    Throughput tp[2];
    Latency lat[2];
    Err err = { 0 };
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        fprintf(stderr, "bench_flow: throughput, durability %s, %d tasks\n",
                i ? "normal" : "full", tasks);
        rc = run_throughput(base, i == 1, tasks, workers, &tp[i], &err);
    }
    for (int i = 0; i < 2 && rc == 0; i++) {
        fprintf(stderr, "bench_flow: latency, durability %s\n", i ? "normal" : "full");
        rc = run_latency(base, i == 1, workers, &lat[i], &err);
    }
    rm_tree(base);
    if (rc < 0) {
        fprintf(stderr, "bench_flow: FAILED: %s\n", err.msg);
        return 1;
    }
    print_throughput(tp, 2);
    print_latency(lat, 2);

    printf("\nverified after every run (SQL on a reader): N tasks succeeded, 5N steps "
           "succeeded, N events per emit step, the last step's outputs sum as computed in C\n");
    printf("wall us/step = run time / steps; CPU us/step = process CPU (user+sys, all "
           "threads: planner, runner, workers, Lua, projection apply, SQLite, write/fsync "
           "syscalls) / steps, i.e. Bureau's overhead per step; cores busy = CPU / wall; "
           "mean batch = events per writer commit (ledger_stats); writer busy = the ledger "
           "writer thread's CPU / wall: it applies every event in turn, so near 1 it is what "
           "bounds tasks/s\n");
    double rate = tp[0].tasks / tp[0].seconds;
    double cpu_step = tp[0].cpu / ((double)tp[0].tasks * STEPS) * 1e6;
    printf("goal: >= %.0f tasks/s end to end, synchronous=FULL, 2 cores: %.0f tasks/s -> %s\n",
           GOAL_TASKS_S, rate, rate >= GOAL_TASKS_S ? "MET" : "NOT MET");
    printf("goal: < %.0f us of Bureau overhead (CPU) per step, synchronous=FULL: %.1f us -> %s\n",
           GOAL_STEP_US, cpu_step, cpu_step < GOAL_STEP_US ? "MET" : "NOT MET");
    return 0;
}
