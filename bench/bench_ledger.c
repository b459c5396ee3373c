/* bench_ledger: durable appends per second through the ledger's single writer
 * for 1, 8 and 64 concurrent appender threads, against a reference run in the
 * same process: raw SQLite inserting exactly the rows the ledger wrote (read
 * back after the run, so ids, seqs and hashes are the same bytes) into the same
 * `events` schema, 1,000 rows per transaction with one prepared statement.
 *
 * Each configuration starts from a fresh database in a fresh directory on the
 * same file system, so table size never depends on the order of the runs. A
 * counting VFS shim (the default VFS wrapped) counts commits (WAL frames that
 * end a transaction) and fsyncs for both sides, which gives the writer's mean
 * batch size.
 *
 * Environment: BENCH_SECONDS (default 3) per ledger configuration,
 * BENCH_DIR (default $TMPDIR or /tmp) where the temp directory is made,
 * BENCH_NORMAL=0 to skip the durability: normal lines, BENCH_APPENDERS (default
 * 1,8,64) the appender counts, BENCH_PAGE_SIZE (an experiment: both databases
 * are created with this SQLite page size instead of the default) and
 * BENCH_WAL_AUTOCHECKPOINT (an experiment: every connection's
 * wal_autocheckpoint, default SQLite's 1000 pages). */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/opensslv.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "ledger/ledger.h"

#define RAW_BATCH 1000
#define RAW_REPEATS 3
#define GOAL_RATIO 0.50
#define MAX_SECONDS 10.0
#define MAX_CONFIGS 8
#define MAX_APPENDERS 1024
#define PATH_CAP 1024 /* the temp directory's path, at most */

/* ---- a counting VFS: the default VFS, wrapped ---- */

enum { FILE_MAIN, FILE_WAL, FILE_OTHER };

typedef struct CountFile {
    sqlite3_file base;
    int kind;
    sqlite3_file *real; /* lives right after this struct */
} CountFile;

static sqlite3_vfs *real_vfs;
static atomic_long n_commits;   /* WAL frames that end a transaction */
static atomic_long n_wal_syncs; /* xSync on a WAL file */
static atomic_long n_db_syncs;  /* xSync on a main database file */
static atomic_llong n_sync_ns;  /* time spent in xSync, any file */
static atomic_llong n_wal_bytes; /* bytes written to WAL files */

#define REAL(f) (((CountFile *)(f))->real)

static int cf_close(sqlite3_file *f)
{
    return REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : SQLITE_OK;
}

static int cf_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
    return REAL(f)->pMethods->xRead(REAL(f), buf, amt, off);
}

/* SQLite writes each WAL frame as a 24-byte header, then the page. Bytes 4-7
 * of the header are the database size after a commit, 0 on other frames. */
static int cf_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off)
{
    CountFile *c = (CountFile *)f;
    if (c->kind == FILE_WAL) {
        atomic_fetch_add(&n_wal_bytes, amt);
        const unsigned char *p = buf;
        if (amt == 24 && off >= 32 && (p[4] | p[5] | p[6] | p[7]))
            atomic_fetch_add(&n_commits, 1);
    }
    return c->real->pMethods->xWrite(c->real, buf, amt, off);
}

static int cf_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int cf_sync(sqlite3_file *f, int flags)
{
    CountFile *c = (CountFile *)f;
    if (c->kind == FILE_WAL)
        atomic_fetch_add(&n_wal_syncs, 1);
    else if (c->kind == FILE_MAIN)
        atomic_fetch_add(&n_db_syncs, 1);
    int64_t t0 = core_time_mono_ns();
    int rc = c->real->pMethods->xSync(c->real, flags);
    atomic_fetch_add(&n_sync_ns, core_time_mono_ns() - t0);
    return rc;
}

static int cf_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int cf_lock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xLock(REAL(f), l); }
static int cf_unlock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xUnlock(REAL(f), l); }

static int cf_check_lock(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int cf_fcntl(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int cf_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }

static int cf_devchar(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int cf_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, pp);
}

static int cf_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}

static void cf_shm_barrier(sqlite3_file *f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }

static int cf_shm_unmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static int cf_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
    if (REAL(f)->pMethods->iVersion < 3) {
        *pp = NULL;
        return SQLITE_OK;
    }
    return REAL(f)->pMethods->xFetch(REAL(f), off, amt, pp);
}

static int cf_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    if (REAL(f)->pMethods->iVersion < 3)
        return SQLITE_OK;
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods count_io = {
    .iVersion = 3,
    .xClose = cf_close,
    .xRead = cf_read,
    .xWrite = cf_write,
    .xTruncate = cf_truncate,
    .xSync = cf_sync,
    .xFileSize = cf_size,
    .xLock = cf_lock,
    .xUnlock = cf_unlock,
    .xCheckReservedLock = cf_check_lock,
    .xFileControl = cf_fcntl,
    .xSectorSize = cf_sector,
    .xDeviceCharacteristics = cf_devchar,
    .xShmMap = cf_shm_map,
    .xShmLock = cf_shm_lock,
    .xShmBarrier = cf_shm_barrier,
    .xShmUnmap = cf_shm_unmap,
    .xFetch = cf_fetch,
    .xUnfetch = cf_unfetch,
};

static int cv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    CountFile *c = (CountFile *)f;
    c->real = (sqlite3_file *)(c + 1);
    c->kind = flags & SQLITE_OPEN_WAL ? FILE_WAL : flags & SQLITE_OPEN_MAIN_DB ? FILE_MAIN
                                                                               : FILE_OTHER;
    int rc = real_vfs->xOpen(real_vfs, name, c->real, flags, out_flags);
    /* SQLite calls xClose only when pMethods is set. */
    c->base.pMethods = c->real->pMethods ? &count_io : NULL;
    return rc;
}

static int cv_delete(sqlite3_vfs *v, const char *n, int sync)
{
    return real_vfs->xDelete(real_vfs, n, sync);
}

static int cv_access(sqlite3_vfs *v, const char *n, int flags, int *out)
{
    return real_vfs->xAccess(real_vfs, n, flags, out);
}

static int cv_full(sqlite3_vfs *v, const char *n, int len, char *out)
{
    return real_vfs->xFullPathname(real_vfs, n, len, out);
}

static void *cv_dlopen(sqlite3_vfs *v, const char *n) { return real_vfs->xDlOpen(real_vfs, n); }
static void cv_dlerror(sqlite3_vfs *v, int n, char *m) { real_vfs->xDlError(real_vfs, n, m); }

static void (*cv_dlsym(sqlite3_vfs *v, void *h, const char *s))(void)
{
    return real_vfs->xDlSym(real_vfs, h, s);
}

static void cv_dlclose(sqlite3_vfs *v, void *h) { real_vfs->xDlClose(real_vfs, h); }
static int cv_random(sqlite3_vfs *v, int n, char *out) { return real_vfs->xRandomness(real_vfs, n, out); }
static int cv_sleep(sqlite3_vfs *v, int us) { return real_vfs->xSleep(real_vfs, us); }
static int cv_time(sqlite3_vfs *v, double *t) { return real_vfs->xCurrentTime(real_vfs, t); }
static int cv_lasterr(sqlite3_vfs *v, int n, char *m) { return real_vfs->xGetLastError(real_vfs, n, m); }

static int cv_time64(sqlite3_vfs *v, sqlite3_int64 *t)
{
    return real_vfs->xCurrentTimeInt64(real_vfs, t);
}

static sqlite3_vfs count_vfs;

static int count_vfs_install(void)
{
    real_vfs = sqlite3_vfs_find(NULL);
    if (!real_vfs || real_vfs->iVersion < 2)
        return -1;
    count_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(CountFile) + real_vfs->szOsFile,
        .mxPathname = real_vfs->mxPathname,
        .zName = "bench-count",
        .xOpen = cv_open,
        .xDelete = cv_delete,
        .xAccess = cv_access,
        .xFullPathname = cv_full,
        .xDlOpen = cv_dlopen,
        .xDlError = cv_dlerror,
        .xDlSym = cv_dlsym,
        .xDlClose = cv_dlclose,
        .xRandomness = cv_random,
        .xSleep = cv_sleep,
        .xCurrentTime = cv_time,
        .xGetLastError = cv_lasterr,
        .xCurrentTimeInt64 = cv_time64,
    };
    return sqlite3_vfs_register(&count_vfs, 1) == SQLITE_OK ? 0 : -1;
}

typedef struct IoCount {
    long commits, wal_syncs, db_syncs;
    long long sync_ns, wal_bytes;
} IoCount;

static IoCount io_now(void)
{
    return (IoCount){ atomic_load(&n_commits), atomic_load(&n_wal_syncs),
                      atomic_load(&n_db_syncs), atomic_load(&n_sync_ns),
                      atomic_load(&n_wal_bytes) };
}

static IoCount io_since(IoCount a)
{
    IoCount b = io_now();
    return (IoCount){ b.commits - a.commits, b.wal_syncs - a.wal_syncs,
                      b.db_syncs - a.db_syncs, b.sync_ns - a.sync_ns,
                      b.wal_bytes - a.wal_bytes };
}

/* ---- small helpers ---- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int page_size;      /* BENCH_PAGE_SIZE, 0 = SQLite's default */
static int autocheckpoint; /* BENCH_WAL_AUTOCHECKPOINT, -1 = SQLite's default */

/* Runs on every new connection (sqlite3_auto_extension), the ledger's too. */
static int conn_init(sqlite3 *db, char **errmsg, const void *api)
{
    (void)errmsg, (void)api;
    if (autocheckpoint >= 0)
        sqlite3_wal_autocheckpoint(db, autocheckpoint);
    return SQLITE_OK;
}

/* Creates an empty WAL database at path with page_size, so that the page
 * size sticks when the ledger (or the reference) opens it. */
static int db_precreate(const char *path, Err *err)
{
    if (!page_size)
        return 0;
    sqlite3 *db = NULL;
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA page_size=%d; PRAGMA journal_mode=WAL;", page_size);
    int rc = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        rc = err_set(err, ERR_STORE, "page size %d on %s: %s", page_size, path,
                     sqlite3_errmsg(db));
    sqlite3_close(db);
    return rc;
}

/* ---- machine details: bench/bench_util.h ---- */

static void print_machine(const char *dir, double seconds)
{
    struct utsname u;
    char model[256], date[CORE_TIME_LEN + 1];
    uname(&u);
    cpu_model(model, sizeof model);
    core_time_format(core_time_now_ms(), date);
    printf("Bureau ledger benchmark, %s\n", date);
    printf("machine : nproc %ld, %s\n", sysconf(_SC_NPROCESSORS_ONLN), model);
    printf("kernel  : %s %s %s\n", u.sysname, u.release, u.machine);
    printf("sqlite  : %s (library), %s\n", sqlite3_libversion(), OPENSSL_VERSION_TEXT);
    printf("storage : %s, file system %s\n", dir, fs_name(dir));
    printf("runs    : %.1f s per ledger configuration; raw = the same rows, %d per "
           "transaction, median of %d fresh runs\n",
           seconds, RAW_BATCH, RAW_REPEATS);
    if (page_size)
        printf("EXPERIMENT: both databases created with page_size=%d\n", page_size);
    if (autocheckpoint >= 0)
        printf("EXPERIMENT: every connection with wal_autocheckpoint=%d\n", autocheckpoint);
}

/* ---- events ---- */

/* One of four realistic event kinds, ~300 bytes of canonical data each, with
 * an idempotency key unique to (run, thread, i). */
static int make_event(const char *run, int thread, int64_t i, const EventLimits *lim,
                      Event **ret, Err *err)
{
    char key[96], email[96], name[64], sub[64], ref[64];
    snprintf(key, sizeof key, "bench:%s:%d:%" PRId64, run, thread, i);
    snprintf(email, sizeof email, "customer.%d.%" PRId64 "@example-shop.com", thread, i);
    snprintf(name, sizeof name, "Customer %d-%" PRId64, thread, i);
    snprintf(sub, sizeof sub, "contact:01JBENCH%04d%010" PRId64, thread, i);
    snprintf(ref, sizeof ref, "%08x%08x", (unsigned)thread * 2654435761u,
             (unsigned)i * 2246822519u);
    const char *type, *source;
    json_t *data;
    switch (i % 4) {
    case 0:
        type = "payment.succeeded";
        source = "stripe";
        data = json_pack("{s:I, s:s, s:{s:s, s:s, s:s}, s:s, s:s, s:{s:s, s:s}}",
                         "amount", (json_int_t)(1900 + (i % 97) * 100), "currency", "eur",
                         "customer", "id", ref, "email", email, "name", name, "description",
                         "Pro plan (3 seats), monthly subscription, November 2026, incl. VAT",
                         "provider_id", ref, "metadata", "order", key, "channel",
                         "checkout-page/pricing");
        break;
    case 1:
        type = "form.submitted";
        source = "form:contact";
        data = json_pack("{s:s, s:{s:s, s:s, s:s, s:s}, s:[]}", "form", "contact", "fields",
                         "email", email, "name", name, "company", "Example Shop GmbH",
                         "message",
                         "Hello, we would like a quote for the onboarding package for our "
                         "team of five, and a call next week if you have time. Best regards",
                         "files");
        break;
    case 2:
        type = "contact.imported";
        source = "csv:crm-export";
        data = json_pack("{s:s, s:s, s:s, s:s, s:[s, s], s:{s:s, s:s, s:s}}", "email", email,
                         "name", name, "company", "Example Shop GmbH", "phone",
                         "+49 30 1234567", "tags", "customer", "newsletter", "fields",
                         "source_row", ref, "owner", "operator@example-consulting.com",
                         "notes", "Met at the Berlin trade fair; interested in the yearly plan.");
        break;
    default:
        type = "support.ticket.opened";
        source = "helpdesk";
        data = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "ticket", ref, "from", email,
                         "subject", "Invoice question", "text",
                         "Hi, the last invoice lists two seats but we only use one. Could "
                         "you check and send a corrected invoice to our accounting team? "
                         "Thanks a lot!",
                         "priority", "normal", "channel", "email");
        break;
    }
    if (!data)
        return err_set(err, ERR_INTERNAL, "json_pack failed for %s", type);
    int rc = ledger_event_new(type, source, i % 2 ? sub : NULL, data, key, lim, ret, err);
    json_decref(data);
    return rc;
}

/* ---- the ledger side ---- */

/* Holds the appenders until every thread exists, then lets them all go. */
typedef struct Gate {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool open;
    double deadline; /* appenders stop starting appends at this time */
} Gate;

static double gate_pass(Gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->mu);
    double deadline = g->deadline;
    pthread_mutex_unlock(&g->mu);
    return deadline;
}

static void gate_open(Gate *g, double deadline)
{
    pthread_mutex_lock(&g->mu);
    g->deadline = deadline;
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mu);
}

typedef struct Appender {
    pthread_t tid;
    Ledger *ledger;
    Gate *gate;
    const char *run;
    int index;
    int64_t acked;
    double build_s;       /* building events (JSON, validation, SHA-256) */
    int64_t *lat_us;      /* latency of each ledger_append */
    size_t lat_n, lat_cap;
    int rc;
    Err err;
} Appender;

static void *appender_main(void *arg)
{
    Appender *a = arg;
    const EventLimits *lim = ledger_limits(a->ledger);
    double deadline = gate_pass(a->gate);
    for (int64_t i = 0;; i++) {
        double t0 = now_s();
        if (t0 >= deadline)
            break;
        Event *ev;
        if ((a->rc = make_event(a->run, a->index, i, lim, &ev, &a->err)) < 0)
            break;
        double t1 = now_s();
        LedgerAppendResult res;
        if ((a->rc = ledger_append(a->ledger, &ev, 1, &res, &a->err)) < 0)
            break;
        double t2 = now_s();
        if (res.duplicate) {
            a->rc = err_set(&a->err, ERR_INTERNAL, "event %" PRId64 " came back a duplicate", i);
            break;
        }
        a->build_s += t1 - t0;
        a->acked++;
        if (a->lat_n == a->lat_cap) {
            a->lat_cap = a->lat_cap ? a->lat_cap * 2 : 4096;
            a->lat_us = xrealloc(a->lat_us, a->lat_cap * sizeof *a->lat_us);
        }
        a->lat_us[a->lat_n++] = (int64_t)((t2 - t1) * 1e6);
    }
    return NULL;
}

typedef struct Result {
    bool normal;
    int appenders;
    int64_t events;
    double seconds, rate;
    double cpu;           /* process CPU seconds per wall second */
    double build_us;      /* mean event build time on an appender thread */
    double p50_ms, p99_ms;
    IoCount io;
    double data_bytes;    /* mean canonical data size */
    double raw_rate;      /* RAW_BATCH rows per transaction, median of RAW_REPEATS */
    IoCount raw_io;
    int same_batch;       /* the ledger's mean batch, rounded */
    double same_rate;     /* raw at same_batch rows per transaction, one run */
    IoCount same_io;
} Result;

static int run_ledger(const char *dir, bool normal, int n, double seconds, Result *r, Err *err)
{
    Config cfg;
    core_config_defaults(&cfg);
    cfg.durability_normal = normal;
    char *path = ledger_db_path(dir);
    int rc = db_precreate(path, err);
    free(path);
    if (rc < 0)
        return rc;
    rc = ledger_db_prepare(dir, &cfg, true, err);
    if (rc < 0)
        return rc;
    LedgerOptions opts = { .config = &cfg };
    Ledger *l = NULL;
    if ((rc = ledger_open(dir, &opts, &l, err)) < 0)
        return rc;

    char run[32];
    snprintf(run, sizeof run, "%s-%d", normal ? "normal" : "full", n);
    Gate gate = { .mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
    Appender *as = xcalloc((size_t)n, sizeof *as);
    int started = 0;
    for (; started < n; started++) {
        Appender *a = &as[started];
        *a = (Appender){ .ledger = l, .gate = &gate, .run = run, .index = started };
        if (pthread_create(&a->tid, NULL, appender_main, a) != 0) {
            rc = err_set(err, ERR_INTERNAL, "cannot start appender thread %d", started);
            break;
        }
    }
    IoCount io0 = io_now();
    double cpu0 = cpu_s();
    double t0 = now_s();
    /* After a failed start the deadline is already past: the started
     * threads return at once. */
    gate_open(&gate, rc < 0 ? 0 : t0 + seconds);
    for (int i = 0; i < started; i++)
        pthread_join(as[i].tid, NULL);
    double t1 = now_s();
    r->cpu = (cpu_s() - cpu0) / (t1 - t0);
    r->io = io_since(io0);
    ledger_close(l);
    if (rc < 0) {
        free(as);
        return rc;
    }

    r->normal = normal;
    r->appenders = n;
    r->seconds = t1 - t0;
    size_t lat_total = 0;
    double build = 0;
    for (int i = 0; i < n; i++) {
        if (as[i].rc < 0 && rc == 0)
            rc = err_set(err, as[i].rc, "appender %d: %s", i, as[i].err.msg);
        r->events += as[i].acked;
        build += as[i].build_s;
        lat_total += as[i].lat_n;
    }
    if (rc == 0 && lat_total > 0) {
        int64_t *all = xmalloc(lat_total * sizeof *all);
        size_t k = 0;
        for (int i = 0; i < n; i++) {
            memcpy(all + k, as[i].lat_us, as[i].lat_n * sizeof *all);
            k += as[i].lat_n;
        }
        qsort(all, lat_total, sizeof *all, cmp_i64);
        r->p50_ms = (double)all[lat_total / 2] / 1e3;
        r->p99_ms = (double)all[lat_total * 99 / 100] / 1e3;
        free(all);
    }
    r->rate = (double)r->events / r->seconds;
    r->build_us = r->events ? build / (double)r->events * 1e6 : 0;
    for (int i = 0; i < n; i++)
        free(as[i].lat_us);
    free(as);
    return rc;
}

/* ---- the raw SQLite side ---- */

#define ROW_TEXT_COLS 13 /* every column but seq */

typedef struct Row {
    int64_t seq;
    char *text;                 /* the 13 text columns, back to back */
    int len[ROW_TEXT_COLS];     /* -1: NULL */
} Row;

typedef struct Rows {
    Row *v;
    size_t n;
    char **ddl;                 /* CREATE statements of `events` and its indexes */
    size_t ddl_n;
    double data_bytes;
} Rows;

static void rows_free(Rows *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        free(rs->v[i].text);
    free(rs->v);
    for (size_t i = 0; i < rs->ddl_n; i++)
        free(rs->ddl[i]);
    free(rs->ddl);
    memset(rs, 0, sizeof *rs);
}

static int sq_err(sqlite3 *db, Err *err, const char *what)
{
    return err_set(err, ERR_STORE, "%s: %s", what, sqlite3_errmsg(db));
}

/* Reads back every row the ledger wrote, and the exact DDL the migration
 * created for the events table, so the reference inserts the same bytes into
 * the same schema. */
static int rows_load(const char *dir, Rows *rs, Err *err)
{
    char *path = ledger_db_path(dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        rc = sq_err(db, err, "open ledger database");
        goto out;
    }
    if (sqlite3_prepare_v2(db,
                           "SELECT sql FROM sqlite_master WHERE tbl_name = 'events'"
                           " AND sql IS NOT NULL ORDER BY type = 'index', rowid",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = sq_err(db, err, "read schema");
        goto out;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        rs->ddl = xrealloc(rs->ddl, (rs->ddl_n + 1) * sizeof *rs->ddl);
        rs->ddl[rs->ddl_n++] = xstrdup((const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rs->ddl_n == 0) {
        rc = err_set(err, ERR_SCHEMA, "the ledger database has no events table");
        goto out;
    }
    if (sqlite3_prepare_v2(db, "SELECT " LEDGER_EVENT_COLUMNS " FROM events ORDER BY seq", -1,
                           &st, NULL) != SQLITE_OK) {
        rc = sq_err(db, err, "read events");
        goto out;
    }
    size_t cap = 0;
    double data = 0;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (rs->n == cap) {
            cap = cap ? cap * 2 : 65536;
            rs->v = xrealloc(rs->v, cap * sizeof *rs->v);
        }
        Row *row = &rs->v[rs->n++];
        row->seq = sqlite3_column_int64(st, 0);
        size_t total = 0;
        for (int c = 0; c < ROW_TEXT_COLS; c++)
            total += (size_t)sqlite3_column_bytes(st, c + 1);
        row->text = xmalloc(total ? total : 1);
        size_t off = 0;
        for (int c = 0; c < ROW_TEXT_COLS; c++) {
            const unsigned char *s = sqlite3_column_text(st, c + 1);
            int len = sqlite3_column_bytes(st, c + 1);
            row->len[c] = s ? len : -1;
            if (s && len) {
                memcpy(row->text + off, s, (size_t)len);
                off += (size_t)len;
            }
        }
        data += (double)row->len[9]; /* data */
    }
    if (step != SQLITE_DONE)
        rc = sq_err(db, err, "read events");
    rs->data_bytes = rs->n ? data / (double)rs->n : 0;
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(path);
    return rc;
}

/* One reference run into a fresh file: the same pragmas as the store
 * (store_sqlite.c), the schema, then the rows in transactions of batch rows
 * with one prepared statement. Only the inserts and commits are timed. */
static int raw_once(const char *path, const Rows *rs, bool normal, size_t batch,
                    double *ret_rate, IoCount *ret_io, Err *err)
{
    char wal[PATH_CAP + 160], shm[PATH_CAP + 160];
    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(shm, sizeof shm, "%s-shm", path);
    unlink(path);
    unlink(wal);
    unlink(shm);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = db_precreate(path, err);
    if (rc < 0)
        goto out;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = sq_err(db, err, "open raw database");
        goto out;
    }
    char pragmas[256];
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA secure_delete=ON;"
             " PRAGMA temp_store=MEMORY; PRAGMA cache_size=-8192;",
             normal ? "NORMAL" : "FULL");
    if (sqlite3_exec(db, pragmas, NULL, NULL, NULL) != SQLITE_OK) {
        rc = sq_err(db, err, "raw pragmas");
        goto out;
    }
    for (size_t i = 0; i < rs->ddl_n; i++)
        if (sqlite3_exec(db, rs->ddl[i], NULL, NULL, NULL) != SQLITE_OK) {
            rc = sq_err(db, err, "raw schema");
            goto out;
        }
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO events(" LEDGER_EVENT_COLUMNS ") VALUES"
                           " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = sq_err(db, err, "raw prepare");
        goto out;
    }
    IoCount io0 = io_now();
    double t0 = now_s();
    for (size_t i = 0; i < rs->n; i++) {
        if (i % batch == 0 && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
            rc = sq_err(db, err, "raw begin");
            goto out;
        }
        const Row *row = &rs->v[i];
        sqlite3_bind_int64(st, 1, row->seq);
        size_t off = 0;
        for (int c = 0; c < ROW_TEXT_COLS; c++) {
            if (row->len[c] < 0) {
                sqlite3_bind_null(st, c + 2);
                continue;
            }
            sqlite3_bind_text(st, c + 2, row->text + off, row->len[c], SQLITE_STATIC);
            off += (size_t)row->len[c];
        }
        if (sqlite3_step(st) != SQLITE_DONE) {
            rc = sq_err(db, err, "raw insert");
            goto out;
        }
        sqlite3_reset(st);
        if ((i + 1) % batch == 0 || i + 1 == rs->n) {
            if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
                rc = sq_err(db, err, "raw commit");
                goto out;
            }
        }
    }
    double t1 = now_s();
    *ret_io = io_since(io0);
    *ret_rate = (double)rs->n / (t1 - t0);
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    unlink(path);
    unlink(wal);
    unlink(shm);
    return rc;
}

/* The reference proper (RAW_BATCH rows per transaction, median of
 * RAW_REPEATS) and, with synchronous=FULL, the same rows at the ledger's own
 * mean batch size: the gap between the two is what small batches cost, the
 * gap between the latter and the ledger is the ledger's own overhead. */
static int run_raw(const char *dir, const Rows *rs, bool normal, Result *r, Err *err)
{
    char path[PATH_CAP + 128];
    snprintf(path, sizeof path, "%s/raw.db", dir);
    double rates[RAW_REPEATS];
    IoCount ios[RAW_REPEATS];
    for (int i = 0; i < RAW_REPEATS; i++) {
        int rc = raw_once(path, rs, normal, RAW_BATCH, &rates[i], &ios[i], err);
        if (rc < 0)
            return rc;
    }
    if (!normal && r->io.commits > 0) {
        double b = (double)r->events / (double)r->io.commits;
        r->same_batch = b < 1.5 ? 1 : (int)(b + 0.5);
        int rc = raw_once(path, rs, normal, (size_t)r->same_batch, &r->same_rate, &r->same_io,
                          err);
        if (rc < 0)
            return rc;
    }
    double sorted[RAW_REPEATS];
    memcpy(sorted, rates, sizeof rates);
    qsort(sorted, RAW_REPEATS, sizeof *sorted, cmp_double);
    r->raw_rate = sorted[RAW_REPEATS / 2];
    for (int i = 0; i < RAW_REPEATS; i++)
        if (rates[i] == r->raw_rate)
            r->raw_io = ios[i];
    return 0;
}

/* ---- one configuration: ledger, then the raw reference on its rows ---- */

static int run_config(const char *base, bool normal, int n, double seconds, Result *r, Err *err)
{
    char dir[PATH_CAP + 64];
    snprintf(dir, sizeof dir, "%s/%s-%d", base, normal ? "normal" : "full", n);
    if (mkdir(dir, 0700) < 0)
        return err_set(err, ERR_IO, "mkdir %s: %s", dir, strerror(errno));
    memset(r, 0, sizeof *r);
    Rows rs = { 0 };
    int rc = run_ledger(dir, normal, n, seconds, r, err);
    if (rc == 0)
        rc = rows_load(dir, &rs, err);
    if (rc == 0 && (int64_t)rs.n != r->events)
        rc = err_set(err, ERR_INTERNAL, "%" PRId64 " appends acknowledged, %zu rows stored",
                     r->events, rs.n);
    if (rc == 0) {
        r->data_bytes = rs.data_bytes;
        rc = run_raw(dir, &rs, normal, r, err);
    }
    rows_free(&rs);
    rm_tree(dir);
    return rc;
}

static void print_results(const Result *rs, size_t n)
{
    printf("\n%-10s %9s %12s %12s %10s %7s %8s %8s\n", "durability", "appenders",
           "ledger ev/s", "raw ev/s", "ledger/raw", "mean", "p50 ms", "p99 ms");
    printf("%-10s %9s %12s %12s %10s %7s %8s %8s\n", "", "", "", "1000/tx", "", "batch",
           "append", "append");
    for (size_t i = 0; i < n; i++) {
        const Result *r = &rs[i];
        printf("%-10s %9d %12.0f %12.0f %9.1f%% %7.1f %8.2f %8.2f\n",
               r->normal ? "normal" : "full", r->appenders, r->rate, r->raw_rate,
               100.0 * r->rate / r->raw_rate,
               r->io.commits ? (double)r->events / (double)r->io.commits : 0, r->p50_ms,
               r->p99_ms);
    }
}

static double kb_per_event(const IoCount *io, int64_t events)
{
    return events ? (double)io->wal_bytes / 1024.0 / (double)events : 0;
}

static void print_details(const Result *rs, size_t n)
{
    printf("\n%-10s %9s %10s %8s %10s %8s %8s %8s %8s %9s %5s\n", "durability", "appenders",
           "raw ev/s", "ledger/", "fsyncs", "fsync", "WAL KB/", "WAL KB/", "WAL KB/",
           "build us", "cpu");
    printf("%-10s %9s %10s %8s %10s %8s %8s %8s %8s %9s %5s\n", "", "",
           "same batch", "raw same", "ledger", "% wall", "ledger", "raw same", "raw 1000",
           "/event", "");
    for (size_t i = 0; i < n; i++) {
        const Result *r = &rs[i];
        char same[16] = "-", ratio[16] = "-", kb_same[16] = "-";
        if (r->same_batch) {
            snprintf(same, sizeof same, "%.0f", r->same_rate);
            snprintf(ratio, sizeof ratio, "%.1f%%", 100.0 * r->rate / r->same_rate);
            snprintf(kb_same, sizeof kb_same, "%.2f", kb_per_event(&r->same_io, r->events));
        }
        printf("%-10s %9d %10s %8s %10ld %7.1f%% %8.2f %8s %8.2f %9.1f %4.0f%%\n",
               r->normal ? "normal" : "full", r->appenders, same, ratio,
               r->io.wal_syncs + r->io.db_syncs, 100.0 * (double)r->io.sync_ns / 1e9 / r->seconds,
               kb_per_event(&r->io, r->events), kb_same, kb_per_event(&r->raw_io, r->events),
               r->build_us, 100.0 * r->cpu);
    }
}

/* BENCH_APPENDERS="1,8,64" (the default) picks the appender counts. */
static int parse_appenders(const char *s, int *out, size_t cap, size_t *ret_n)
{
    size_t n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > MAX_APPENDERS || n == cap || (*end && *end != ','))
            return -1;
        out[n++] = (int)v;
        s = *end ? end + 1 : end;
    }
    *ret_n = n;
    return n ? 0 : -1;
}

int main(void)
{
    int appenders[MAX_CONFIGS] = { 1, 8, 64 };
    size_t n_appenders = 3;
    const char *s = getenv("BENCH_APPENDERS");
    if (s && *s && parse_appenders(s, appenders, MAX_CONFIGS, &n_appenders) < 0) {
        fprintf(stderr, "bench_ledger: BENCH_APPENDERS must be a list like 1,8,64 (each 1-%d)\n",
                MAX_APPENDERS);
        return 2;
    }
    double seconds = 3.0;
    s = getenv("BENCH_SECONDS");
    if (s && *s) {
        char *end;
        seconds = strtod(s, &end);
        if (*end || !(seconds > 0 && seconds <= MAX_SECONDS)) {
            fprintf(stderr, "bench_ledger: BENCH_SECONDS must be a number in (0, %.0f]\n",
                    MAX_SECONDS);
            return 2;
        }
    }
    s = getenv("BENCH_PAGE_SIZE");
    if (s && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (*end || v < 512 || v > 65536 || (v & (v - 1))) {
            fprintf(stderr, "bench_ledger: BENCH_PAGE_SIZE must be a power of two, 512-65536\n");
            return 2;
        }
        page_size = (int)v;
    }
    autocheckpoint = -1;
    s = getenv("BENCH_WAL_AUTOCHECKPOINT");
    if (s && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (*end || v < 0 || v > 1000000) {
            fprintf(stderr, "bench_ledger: BENCH_WAL_AUTOCHECKPOINT must be 0-1000000 pages\n");
            return 2;
        }
        autocheckpoint = (int)v;
        sqlite3_auto_extension((void (*)(void))conn_init);
    }
    const char *normal_env = getenv("BENCH_NORMAL");
    bool with_normal = !(normal_env && !strcmp(normal_env, "0"));
    const char *parent = getenv("BENCH_DIR");
    if (!parent || !*parent)
        parent = getenv("TMPDIR");
    if (!parent || !*parent)
        parent = "/tmp";

    log_set_level(LOG_WARN);
    if (count_vfs_install() < 0) {
        fprintf(stderr, "bench_ledger: cannot install the counting SQLite VFS\n");
        return 1;
    }
    char base[PATH_CAP];
    if (strlen(parent) + sizeof "/bureau-bench.XXXXXX" > sizeof base) {
        fprintf(stderr, "bench_ledger: BENCH_DIR/TMPDIR is too long\n");
        return 2;
    }
    snprintf(base, sizeof base, "%s/bureau-bench.XXXXXX", parent);
    if (!mkdtemp(base)) {
        fprintf(stderr, "bench_ledger: mkdtemp in %s: %s\n", parent, strerror(errno));
        return 1;
    }

    print_machine(base, seconds);
    Result res[2 * MAX_CONFIGS];
    size_t n_res = 0;
    const Result *goal = NULL;
    Err err = { 0 };
    int rc = 0;
    for (int pass = 0; pass < (with_normal ? 2 : 1) && rc == 0; pass++)
        for (size_t i = 0; i < n_appenders && rc == 0; i++) {
            Result *r = &res[n_res];
            fprintf(stderr, "bench_ledger: durability %s, %d appender%s\n",
                    pass ? "normal" : "full", appenders[i], appenders[i] == 1 ? "" : "s");
            if ((rc = run_config(base, pass == 1, appenders[i], seconds, r, &err)) < 0)
                break;
            if (pass == 0 && appenders[i] == 64)
                goal = r;
            n_res++;
        }
    rm_tree(base);
    if (rc < 0) {
        fprintf(stderr, "bench_ledger: %s\n", err.msg);
        return 1;
    }
    print_results(res, n_res);
    print_details(res, n_res);

    printf("\nevents: 4 kinds (payment.succeeded, form.submitted, contact.imported, "
           "support.ticket.opened), mean canonical data %.0f bytes, unique idempotency keys\n",
           res[0].data_bytes);
    printf("mean batch = events / commits (counted by a VFS shim); raw same batch = the same "
           "rows at the ledger's mean batch size (FULL only); fsync %% wall = time in fsync / "
           "run time; WAL KB/event = WAL bytes written per event; build us = building one "
           "event (JSON, validation, 2x SHA-256) on its appender thread; cpu = process CPU "
           "/ wall (100%% = one core)\n");
    if (goal) {
        double ratio = goal->rate / goal->raw_rate;
        printf("goal: ledger >= %.0f%% of raw batched SQLite at 64 appenders, "
               "synchronous=FULL: %.1f%% -> %s\n",
               GOAL_RATIO * 100, ratio * 100, ratio >= GOAL_RATIO ? "MET" : "NOT MET");
    }
    return 0;
}
