/* The ledger writer. Invariants:
 * - Only the writer thread appends, always inside BEGIN IMMEDIATE, reading
 *   the chain head (ledger_head row) under the write lock; so seq is dense
 *   and every row's prev_hash is the hash of the row before, across
 *   processes.
 * - A request is acknowledged (its done callback runs with rc 0) only after
 *   COMMIT returned, i.e. after the commit is durable under the configured
 *   synchronous level.
 * - Each request is a savepoint: a failing request rolls back alone, the
 *   others of the batch still commit.
 * - Idempotency keys are unique. Keys of events after '@keys' live in the
 *   writer's tail map (loaded from the events table whenever the head moved
 *   under another process), older ones in the idempotency table; the tail is
 *   moved there in sorted batches of KEYS_FLUSH, so that random keys do not
 *   cost one index page per event and commit. */
#include "ledger/ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "ledger/ledger_int.h"

#define MAX_QUEUED_EVENTS 16384
#define NOTIFY_FILE "ledger.notify"
#define KEYS_FLUSH 4096
#define CHECKPOINT_EVERY 512 /* commits between WAL checkpoints */
/* The writer finishes a checkpoint once a pass saw at most this many new
 * frames; the checkpointer makes at most CHECKPOINT_PASSES passes. */
#define CHECKPOINT_FINISH_FRAMES 64
#define CHECKPOINT_PASSES 8
#define RECENT_TYPE_CAP 64 /* bytes per remembered type, with its NUL */

/* Idempotency keys of the events after '@keys': a vector in seq order with
 * an open-addressing index (slot = position + 1, 0 = empty). */
typedef struct TailKey {
    char key[CORE_SHA256_HEX + 1];
    char id[CORE_ULID_LEN + 1];
    int64_t seq;
} TailKey;

typedef struct KeyTail {
    TailKey *v;
    size_t n, cap;
    uint32_t *slots;
    size_t nslots; /* power of two, > 2 * cap */
} KeyTail;

typedef struct Req {
    Event **events;
    size_t n;
    LedgerAppendResult *results;
    LedgerDoneFn done;
    void *ctx;
    char *reactor, *lease, *holder; /* optional checkpoint + fencing */
    int64_t reactor_seq;
    int rc;
    Err err;
    struct Req *next;
} Req;

struct Ledger {
    char *dir;
    char *db_path;
    Config cfg;
    EventLimits limits;
    char instance[CORE_ULID_LEN + 1];

    Store *w; /* the writer thread's connection */
    pthread_t writer;
    int64_t known_head; /* writer only: head after our last commit, -1 unknown */
    int64_t data_version; /* writer only: SQLite's data_version at the last batch */
    KeyTail tail;       /* writer only: valid for known_head */
    CoreSha256 *sha;    /* writer only */
    int commits_since_checkpoint;

    /* The checkpointer: runs WAL checkpoints beside the writer. */
    pthread_t checkpointer;
    bool checkpointing;
    Store *ckpt;
    pthread_cond_t ckpt_cond;
    bool ckpt_wanted;
    bool ckpt_finish; /* the writer copies the last frames (under mu) */

    pthread_mutex_t mu;
    pthread_cond_t work, space, head_cond;
    Req *q_first, *q_last;
    size_t queued_events;
    bool stopping;
    int64_t head_seq;
    uint64_t wake_gen; /* bumped by ledger_wake() */
    /* the types of this process's commits (slot seq % LEDGER_RECENT_TYPES)
     * for the seqs in [recent_lo, recent_hi]; "" = too long to keep */
    char (*recent)[RECENT_TYPE_CAP];
    int64_t recent_lo, recent_hi;
    LedgerStats stats;

    int notify_fd;
    bool watching;
    pthread_t watcher;
    int inotify_fd;
    int stop_pipe[2];
    Store *watch_rd;
};

char *ledger_db_path(const char *data_dir)
{
    size_t n = strlen(data_dir) + sizeof "/bureau.db";
    char *p = xmalloc(n);
    snprintf(p, n, "%s/bureau.db", data_dir);
    return p;
}

int ledger_schema_latest(void)
{
    return (int)ledger__migrations_count;
}

static void store_opts(const Config *cfg, bool create, StoreOptions *o)
{
    memset(o, 0, sizeof *o);
    o->durability_normal = cfg->durability_normal;
    o->busy_timeout_ms = cfg->busy_timeout_ms;
    o->create = create;
}

int ledger_db_prepare(const char *data_dir, const Config *cfg, bool create, Err *err)
{
    char *path = ledger_db_path(data_dir);
    StoreOptions o;
    store_opts(cfg, create, &o);
    Store *s = NULL;
    int rc = store_open(path, &o, &s, err);
    if (rc == 0)
        rc = store_migrate(s, ledger__migrations, ledger__migrations_count, err);
    store_close(s);
    free(path);
    return rc;
}

int ledger_reader_open_dir(const char *data_dir, const Config *cfg, Store **ret, Err *err)
{
    Config defaults;
    if (!cfg) {
        core_config_defaults(&defaults);
        cfg = &defaults;
    }
    char *path = ledger_db_path(data_dir);
    StoreOptions o;
    store_opts(cfg, false, &o);
    int rc = store_open(path, &o, ret, err);
    free(path);
    if (rc < 0)
        return rc;
    int version;
    if ((rc = store_schema_version(*ret, &version, err)) < 0 ||
        (version > (int)ledger__migrations_count &&
         (rc = err_set(err, ERR_SCHEMA,
                       "the database is at schema version %d, newer than this bureau "
                       "binary knows (%zu)",
                       version, ledger__migrations_count)) < 0)) {
        store_close(*ret);
        *ret = NULL;
    }
    return rc;
}

int ledger_reader_open(const Ledger *l, Store **ret, Err *err)
{
    StoreOptions o;
    store_opts(&l->cfg, false, &o);
    /* The ledger's checkpointer copies the WAL back. A reader that writes
     * (a lease renewed, say) would otherwise run a whole checkpoint inside
     * its COMMIT whenever the WAL is past 1,000 pages, on the runner's or a
     * reactor's thread, in the middle of its work. */
    o.no_autocheckpoint = true;
    return store_open(l->db_path, &o, ret, err);
}

const EventLimits *ledger_limits(const Ledger *l) { return &l->limits; }
const char *ledger_instance(const Ledger *l) { return l->instance; }

/* ---- the writer ---- */

static int lease_check(Store *s, const char *lease, const char *holder, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(s, "SELECT holder, expires_ms FROM leases WHERE name = ?1", &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, lease, strlen(lease));
    rc = store_step(st, err);
    bool ok = false;
    if (rc == STORE_ROW) {
        const char *h = store_col_text(st, 0, NULL);
        ok = h && !strcmp(h, holder) && store_col_int(st, 1) > core_time_now_ms();
    }
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    return ok ? 0 : err_set(err, ERR_LEASE, "lease '%s' is no longer held by this process", lease);
}

static uint64_t key_hash(const char *hex)
{
    uint64_t h = 0;
    for (int i = 0; i < 16; i++) /* the key is already a SHA-256: its prefix is uniform */
        h = h << 4 | (uint64_t)(hex[i] <= '9' ? hex[i] - '0' : hex[i] - 'a' + 10);
    return h;
}

static void tail_index(KeyTail *t)
{
    memset(t->slots, 0, t->nslots * sizeof *t->slots);
    for (size_t i = 0; i < t->n; i++) {
        size_t j = key_hash(t->v[i].key) & (t->nslots - 1);
        while (t->slots[j])
            j = (j + 1) & (t->nslots - 1);
        t->slots[j] = (uint32_t)i + 1;
    }
}

static void tail_add(KeyTail *t, const char *key, int64_t seq, const char *id)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : KEYS_FLUSH;
        t->v = xrealloc(t->v, t->cap * sizeof *t->v);
        free(t->slots);
        t->nslots = 1;
        while (t->nslots <= 2 * t->cap)
            t->nslots <<= 1;
        t->slots = xcalloc(t->nslots, sizeof *t->slots);
        tail_index(t);
    }
    TailKey *k = &t->v[t->n];
    memcpy(k->key, key, sizeof k->key);
    memcpy(k->id, id, sizeof k->id);
    k->seq = seq;
    size_t j = key_hash(key) & (t->nslots - 1);
    while (t->slots[j])
        j = (j + 1) & (t->nslots - 1);
    t->slots[j] = (uint32_t)++t->n;
}

static const TailKey *tail_find(const KeyTail *t, const char *key)
{
    if (!t->n)
        return NULL;
    size_t j = key_hash(key) & (t->nslots - 1);
    for (; t->slots[j]; j = (j + 1) & (t->nslots - 1))
        if (!memcmp(t->v[t->slots[j] - 1].key, key, CORE_SHA256_HEX))
            return &t->v[t->slots[j] - 1];
    return NULL;
}

/* Drops the entries from position n on (a rolled-back request's). */
static void tail_truncate(KeyTail *t, size_t n)
{
    if (n < t->n) {
        t->n = n;
        tail_index(t);
    }
}

static void tail_free(KeyTail *t)
{
    free(t->v);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

static int state_seq(Store *s, const char *name, int64_t *ret, Err *err)
{
    return store_query_int(s, "SELECT seq FROM ledger_state WHERE name = ?1", name, 0, ret, err);
}

/* Reloads the tail from the events after '@keys' (inside the transaction). */
static int tail_load(Ledger *l, Err *err)
{
    int64_t upto;
    int rc = state_seq(l->w, "@keys", &upto, err);
    if (rc < 0)
        return rc;
    l->tail.n = 0;
    StoreStmt *st;
    if ((rc = store_prepare(l->w,
                            "SELECT seq, id, idempotency_key FROM events"
                            " WHERE seq > ?1 AND idempotency_key IS NOT NULL ORDER BY seq",
                            &st, err)) < 0)
        return rc;
    store_bind_int(st, 1, upto);
    while ((rc = store_step(st, err)) == STORE_ROW) {
        size_t kl, il;
        const char *key = store_col_text(st, 2, &kl), *id = store_col_text(st, 1, &il);
        if (key && kl == CORE_SHA256_HEX && id && il == CORE_ULID_LEN)
            tail_add(&l->tail, key, store_col_int(st, 0), id);
    }
    store_stmt_done(st);
    if (l->tail.n == 0 && l->tail.slots)
        tail_index(&l->tail);
    return rc < 0 ? rc : 0;
}

static int key_cmp(const void *a, const void *b)
{
    return memcmp(((const TailKey *)a)->key, ((const TailKey *)b)->key, CORE_SHA256_HEX);
}

/* Moves the tail into the idempotency table, in key order (inside the
 * transaction; if it rolls back, the tail is reloaded). */
static int tail_flush(Ledger *l, int64_t head, Err *err)
{
    qsort(l->tail.v, l->tail.n, sizeof *l->tail.v, key_cmp);
    StoreStmt *st;
    int rc = 0;
    for (size_t i = 0; i < l->tail.n && rc == 0; i++) {
        if ((rc = store_prepare(l->w,
                                "INSERT INTO idempotency(key, seq) VALUES (?1, ?2)"
                                " ON CONFLICT(key) DO NOTHING",
                                &st, err)) < 0)
            break;
        store_bind_text(st, 1, l->tail.v[i].key, CORE_SHA256_HEX);
        store_bind_int(st, 2, l->tail.v[i].seq);
        rc = store_stmt_exec(st, err);
    }
    if (rc == 0 && (rc = store_prepare(l->w,
                                       "UPDATE ledger_state SET seq = ?1 WHERE name = '@keys'",
                                       &st, err)) == 0) {
        store_bind_int(st, 1, head);
        rc = store_stmt_exec(st, err);
    }
    l->tail.n = 0;
    tail_index(&l->tail);
    return rc;
}

static int find_duplicate(Ledger *l, const Event *ev, LedgerAppendResult *res, Err *err)
{
    const TailKey *k = tail_find(&l->tail, ev->idempotency_key);
    if (k) {
        res->seq = k->seq;
        memcpy(res->id, k->id, sizeof res->id);
        res->duplicate = true;
        return STORE_ROW;
    }
    StoreStmt *st;
    int rc = store_prepare(l->w,
                           "SELECT e.seq, e.id FROM idempotency i JOIN events e ON e.seq = i.seq"
                           " WHERE i.key = ?1",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, ev->idempotency_key, CORE_SHA256_HEX);
    rc = store_step(st, err);
    if (rc == STORE_ROW) {
        res->seq = store_col_int(st, 0);
        const char *id = store_col_text(st, 1, NULL);
        snprintf(res->id, sizeof res->id, "%s", id ? id : "");
        res->duplicate = true;
    }
    store_stmt_done(st);
    return rc;
}

static int insert_event(Store *s, Event *ev, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(s,
                           "INSERT INTO events(" LEDGER_EVENT_COLUMNS ") VALUES"
                           " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_int(st, 1, ev->seq);
    store_bind_text(st, 2, ev->id, CORE_ULID_LEN);
    store_bind_text(st, 3, ev->type, strlen(ev->type));
    store_bind_text(st, 4, ev->source, strlen(ev->source));
    store_bind_text(st, 5, ev->subject, ev->subject ? strlen(ev->subject) : 0);
    store_bind_text(st, 6, ev->occurred_at, CORE_TIME_LEN);
    store_bind_text(st, 7, ev->received_at, CORE_TIME_LEN);
    store_bind_text(st, 8, ev->consent, strlen(ev->consent));
    if (ev->idempotency_key[0])
        store_bind_text(st, 9, ev->idempotency_key, CORE_SHA256_HEX);
    else
        store_bind_null(st, 9);
    store_bind_text(st, 10, ev->trace_id, CORE_TRACE_LEN);
    store_bind_text(st, 11, ev->data, ev->data_len);
    store_bind_text(st, 12, ev->data_hash, CORE_SHA256_HEX);
    store_bind_text(st, 13, ev->prev_hash, CORE_SHA256_HEX);
    store_bind_text(st, 14, ev->hash, CORE_SHA256_HEX);
    return store_stmt_exec(st, err);
}

static int apply_request(Ledger *l, Req *r, int64_t *head, char *head_hash, Err *err)
{
    Store *s = l->w;
    int rc = 0;
    if (r->lease && (rc = lease_check(s, r->lease, r->holder, err)) < 0)
        return rc;
    for (size_t i = 0; i < r->n; i++) {
        Event *ev = r->events[i];
        LedgerAppendResult *res = &r->results[i];
        memset(res, 0, sizeof *res);
        if (ev->idempotency_key[0]) {
            if ((rc = find_duplicate(l, ev, res, err)) < 0)
                return rc;
            if (rc == STORE_ROW)
                continue;
        }
        ev->seq = *head + 1;
        core_ulid_new(ev->id);
        memcpy(ev->prev_hash, head_hash, CORE_SHA256_HEX + 1);
        if (ledger_event_chain_hash_with(l->sha, ev, ev->prev_hash, ev->hash) < 0)
            return err_set(err, ERR_INTERNAL, "event %s: bad data hash", ev->id);
        if ((rc = insert_event(s, ev, err)) < 0 ||
            (rc = ledger__projections_apply(s, ev, err)) < 0)
            return rc;
        *head = ev->seq;
        memcpy(head_hash, ev->hash, CORE_SHA256_HEX + 1);
        if (ev->idempotency_key[0])
            tail_add(&l->tail, ev->idempotency_key, ev->seq, ev->id);
        res->seq = ev->seq;
        memcpy(res->id, ev->id, sizeof res->id);
    }
    if (r->reactor) {
        StoreStmt *st;
        if ((rc = store_prepare(s,
                                "INSERT INTO reactors(name, seq) VALUES (?1, ?2)"
                                " ON CONFLICT(name) DO UPDATE SET seq = ?2",
                                &st, err)) < 0)
            return rc;
        store_bind_text(st, 1, r->reactor, strlen(r->reactor));
        store_bind_int(st, 2, r->reactor_seq);
        if ((rc = store_stmt_exec(st, err)) < 0)
            return rc;
    }
    return 0;
}

/* SQLite's data_version of the connection: it changes when another
 * connection (of this process or another) commits. */
static int data_version(Store *s, int64_t *ret, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(s, "PRAGMA data_version", &st, err);
    if (rc < 0)
        return rc;
    if ((rc = store_step(st, err)) == STORE_ROW)
        *ret = store_col_int(st, 0);
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

/* Commits one batch. Per-request outcomes go to r->rc / r->err; returns the
 * batch's own failure (then every request failed) or 0. */
static int commit_batch(Ledger *l, Req *batch, int64_t *ret_head, Err *err)
{
    Store *s = l->w;
    int rc = store_begin_write(s, err);
    if (rc < 0)
        return rc;
    int64_t head;
    char hash[CORE_SHA256_HEX + 1];
    if ((rc = ledger_head(s, &head, hash, err)) < 0)
        goto fail;
    if (head != l->known_head) { /* first batch, or another process appended */
        if ((rc = ledger__projections_catch_up(s, head, err)) < 0 || (rc = tail_load(l, err)) < 0)
            goto fail;
    }
    /* Another connection committed since our last batch (a rebuild by
     * another process leaves the head where it was): what projections keep
     * in memory may be stale. Leases renewed by readers count too, which
     * only costs those caches. */
    int64_t dv = -1;
    if ((rc = data_version(s, &dv, err)) < 0)
        goto fail;
    if (dv != l->data_version) {
        ledger__projections_forget();
        l->data_version = dv;
    }
    int64_t start = head;
    bool alone = batch->next == NULL; /* no savepoint needed for a lone request */
    for (Req *r = batch; r; r = r->next) {
        int64_t saved_head = head;
        size_t saved_tail = l->tail.n;
        char saved_hash[CORE_SHA256_HEX + 1];
        memcpy(saved_hash, hash, sizeof hash);
        if (!alone && (rc = store_begin_write(s, err)) < 0) /* a savepoint */
            goto fail;
        r->rc = apply_request(l, r, &head, hash, &r->err);
        if (r->rc < 0) {
            ledger__projections_forget(); /* they may have applied part of it */
            if (alone) { /* the request failed, not the batch: nothing to commit */
                store_rollback(s);
                l->known_head = -1;
                *ret_head = -1;
                return 0;
            }
            store_rollback(s);
            head = saved_head;
            memcpy(hash, saved_hash, sizeof hash);
            tail_truncate(&l->tail, saved_tail);
        } else if (!alone && (rc = store_commit(s, err)) < 0) {
            goto fail;
        }
    }
    if (head != start) {
        StoreStmt *st;
        if ((rc = ledger__projections_checkpoint(s, head, err)) < 0 ||
            (rc = store_prepare(s,
                                "UPDATE ledger_state SET seq = ?1, hash = ?2 WHERE name = '@head'",
                                &st, err)) < 0)
            goto fail;
        store_bind_int(st, 1, head);
        store_bind_text(st, 2, hash, CORE_SHA256_HEX);
        if ((rc = store_stmt_exec(st, err)) < 0)
            goto fail;
        if (l->tail.n >= KEYS_FLUSH && (rc = tail_flush(l, head, err)) < 0)
            goto fail;
    }
    if ((rc = store_commit(s, err)) < 0)
        goto fail;
    l->known_head = head;
    *ret_head = head;
    return 0;
fail:
    while (store_in_tx(s))
        store_rollback(s);
    ledger__projections_forget();
    l->known_head = -1; /* reload the head, projections and tail next time */
    return rc;
}

static void req_free(Req *r)
{
    for (size_t i = 0; i < r->n; i++)
        ledger_event_free(r->events[i]);
    free(r->events);
    free(r->results);
    free(r->reactor);
    free(r->lease);
    free(r->holder);
    free(r);
}

/* Remembers the types of the events a batch committed (seqs up to head,
 * dense). When the batch does not follow the last one remembered, another
 * process appended in between and what is known starts again. Under mu. */
static void recent_record(Ledger *l, const Req *batch, int64_t head)
{
    int64_t fresh = 0;
    for (const Req *r = batch; r; r = r->next)
        for (size_t i = 0; r->rc == 0 && i < r->n; i++)
            fresh += !r->results[i].duplicate;
    if (head - fresh != l->recent_hi)
        l->recent_lo = head - fresh + 1;
    for (const Req *r = batch; r; r = r->next)
        for (size_t i = 0; r->rc == 0 && i < r->n; i++) {
            if (r->results[i].duplicate)
                continue;
            char *slot = l->recent[r->results[i].seq % LEDGER_RECENT_TYPES];
            size_t len = strlen(r->events[i]->type);
            if (len < RECENT_TYPE_CAP)
                memcpy(slot, r->events[i]->type, len + 1);
            else
                slot[0] = '\0';
        }
    l->recent_hi = head;
    if (l->recent_lo < head - LEDGER_RECENT_TYPES + 1)
        l->recent_lo = head - LEDGER_RECENT_TYPES + 1;
}

int ledger_recent_types(Ledger *l, int64_t after_seq, int64_t upto_seq,
                        bool (*match)(void *ctx, const char *type), void *ctx)
{
    if (upto_seq <= after_seq)
        return 0;
    int found = -1;
    pthread_mutex_lock(&l->mu);
    if (after_seq + 1 >= l->recent_lo && upto_seq <= l->recent_hi) {
        found = 0;
        for (int64_t seq = after_seq + 1; seq <= upto_seq && found == 0; seq++) {
            const char *t = l->recent[seq % LEDGER_RECENT_TYPES];
            found = !t[0] ? -1 : match(ctx, t) ? 1 : 0;
        }
    }
    pthread_mutex_unlock(&l->mu);
    return found;
}

static void notify_others(Ledger *l)
{
    if (l->notify_fd >= 0)
        futimens(l->notify_fd, NULL);
}

static void *writer_main(void *arg)
{
    Ledger *l = arg;
    pthread_setname_np(pthread_self(), "ledger-writer");
    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (!l->q_first && !l->stopping)
            pthread_cond_wait(&l->work, &l->mu);
        if (!l->q_first) {
            pthread_mutex_unlock(&l->mu);
            break;
        }
        Req *batch = l->q_first, *last = batch;
        size_t events = batch->n;
        while (last->next && events + last->next->n <= (size_t)l->cfg.group_commit_max) {
            last = last->next;
            events += last->n;
        }
        l->q_first = last->next;
        if (!l->q_first)
            l->q_last = NULL;
        last->next = NULL;
        l->queued_events -= events;
        bool finish = l->ckpt_finish;
        l->ckpt_finish = false;
        pthread_cond_broadcast(&l->space);
        pthread_mutex_unlock(&l->mu);

        Err err = { 0 };
        if (finish && store_checkpoint(l->w, NULL, &err) < 0) {
            log_warn("wal checkpoint failed", json_pack("{s:s}", "error", err.msg));
            err = (Err){ 0 };
        }
        int64_t head = -1;
        int rc = commit_batch(l, batch, &head, &err);
        if (rc < 0)
            log_error("ledger commit failed",
                      json_pack("{s:s, s:I}", "error", err.msg, "events", (json_int_t)events));
        if (rc == 0 && head >= 0) {
            pthread_mutex_lock(&l->mu);
            recent_record(l, batch, head);
            if (head > l->head_seq)
                l->head_seq = head;
            pthread_cond_broadcast(&l->head_cond);
            l->stats.commits++;
            l->stats.events += events;
            int b = 0;
            while (b < LEDGER_BATCH_BUCKETS - 1 && (int)events > LEDGER_BATCH_BOUNDS[b])
                b++;
            l->stats.batch[b]++;
            if (++l->commits_since_checkpoint >= CHECKPOINT_EVERY && l->checkpointing) {
                l->commits_since_checkpoint = 0;
                l->ckpt_wanted = true;
                pthread_cond_signal(&l->ckpt_cond);
            }
            pthread_mutex_unlock(&l->mu);
            notify_others(l);
        }
        /* Acknowledge only now: a caller that returns from ledger_append()
         * finds ledger_head_seq() at least at its own event. */
        for (Req *r = batch, *next; r; r = next) {
            next = r->next;
            if (rc < 0) {
                r->rc = rc;
                r->err = err;
            }
            r->done(r->ctx, r->rc, &r->err, r->results, r->n);
            req_free(r);
        }

    }
    return NULL;
}

/* WAL checkpoints run here, on their own connection, instead of inside the
 * writer's COMMIT (the writer's connection has automatic checkpoints off).
 * PASSIVE never blocks the writer, but it cannot copy the frames committed
 * while it ran, and the WAL restarts from its beginning only once everything
 * has been copied back: under steady load it would grow without bound. So
 * the checkpointer repeats its pass while the writer keeps adding frames, and
 * once a pass found only a few new ones, the writer copies the rest between
 * two commits (a short pause) and its next commit restarts the WAL. */
static void *checkpointer_main(void *arg)
{
    Ledger *l = arg;
    pthread_setname_np(pthread_self(), "ledger-ckpt");
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->ckpt_wanted && !l->stopping)
            pthread_cond_wait(&l->ckpt_cond, &l->mu);
        if (l->stopping)
            break;
        l->ckpt_wanted = false;
        pthread_mutex_unlock(&l->mu);
        Err err = { 0 };
        /* Each pass copies what the last one could not; passes shorten as
         * fewer frames are left, until few enough for the writer to finish. */
        StoreWal wal = { -1, -1 };
        int64_t copied = 0;
        bool handover = false;
        for (int pass = 0; pass < CHECKPOINT_PASSES; pass++) {
            if (store_checkpoint(l->ckpt, &wal, &err) < 0) {
                log_warn("wal checkpoint failed", json_pack("{s:s}", "error", err.msg));
                break;
            }
            if (wal.frames < 0)
                break;
            /* a WAL that restarted since the last pass holds only new frames */
            int64_t fresh = wal.frames - (wal.frames >= copied ? copied : 0);
            copied = wal.copied;
            if (pass > 0 && fresh <= CHECKPOINT_FINISH_FRAMES) {
                handover = true;
                break;
            }
        }
        pthread_mutex_lock(&l->mu);
        l->ckpt_finish = handover;
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static int submit(Ledger *l, Req *r, Err *err)
{
    pthread_mutex_lock(&l->mu);
    while (!l->stopping && l->q_first && l->queued_events + r->n > MAX_QUEUED_EVENTS)
        pthread_cond_wait(&l->space, &l->mu);
    if (l->stopping) {
        pthread_mutex_unlock(&l->mu);
        req_free(r);
        return err_set(err, ERR_CLOSED, "the ledger is closing");
    }
    if (l->q_last)
        l->q_last->next = r;
    else
        l->q_first = r;
    l->q_last = r;
    l->queued_events += r->n;
    pthread_cond_signal(&l->work);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

static Req *req_new(Event **events, size_t n, LedgerDoneFn done, void *ctx)
{
    Req *r = xcalloc(1, sizeof *r);
    r->events = xcalloc(n ? n : 1, sizeof *events);
    if (n)
        memcpy(r->events, events, n * sizeof *events);
    r->n = n;
    r->results = xcalloc(n ? n : 1, sizeof *r->results);
    r->done = done;
    r->ctx = ctx;
    return r;
}

int ledger_append_async(Ledger *l, Event **events, size_t n, LedgerDoneFn done, void *ctx,
                        Err *err)
{
    return submit(l, req_new(events, n, done, ctx), err);
}

typedef struct Waiter {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool done;
    int rc;
    Err err;
    LedgerAppendResult *results;
} Waiter;

static void waiter_done(void *ctx, int rc, const Err *err, const LedgerAppendResult *res, size_t n)
{
    Waiter *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    if (rc < 0)
        w->err = *err;
    else if (w->results)
        memcpy(w->results, res, n * sizeof *res);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

static int wait_req(Ledger *l, Req *r, Waiter *w, Err *err)
{
    int rc = submit(l, r, err);
    if (rc < 0)
        goto out;
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cond, &w->mu);
    pthread_mutex_unlock(&w->mu);
    rc = w->rc;
    if (rc < 0 && err)
        *err = w->err;
out:
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
    return rc;
}

int ledger_append(Ledger *l, Event **events, size_t n, LedgerAppendResult *results, Err *err)
{
    Waiter w = { .mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
                 .results = results };
    return wait_req(l, req_new(events, n, waiter_done, &w), &w, err);
}

int ledger_sync(Ledger *l, Err *err)
{
    return ledger_append(l, NULL, 0, NULL, err);
}

int ledger_append_checkpoint(Ledger *l, Event **events, size_t n, const char *reactor,
                             int64_t seq, const char *lease, const char *holder, Err *err)
{
    Waiter w = { .mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
    Req *r = req_new(events, n, waiter_done, &w);
    r->reactor = xstrdup(reactor);
    r->reactor_seq = seq;
    if (lease) {
        r->lease = xstrdup(lease);
        r->holder = xstrdup(holder);
    }
    return wait_req(l, r, &w, err);
}

/* ---- waking readers ---- */

int64_t ledger_head_seq(Ledger *l)
{
    pthread_mutex_lock(&l->mu);
    int64_t h = l->head_seq;
    pthread_mutex_unlock(&l->mu);
    return h;
}

uint64_t ledger_wake_gen(Ledger *l)
{
    pthread_mutex_lock(&l->mu);
    uint64_t gen = l->wake_gen;
    pthread_mutex_unlock(&l->mu);
    return gen;
}

int64_t ledger_wait(Ledger *l, int64_t after_seq, int timeout_ms)
{
    return ledger_wait_gen(l, after_seq, ledger_wake_gen(l), timeout_ms);
}

int64_t ledger_wait_gen(Ledger *l, int64_t after_seq, uint64_t gen, int timeout_ms)
{
    struct timespec deadline = core_time_deadline(CLOCK_MONOTONIC, timeout_ms > 0 ? timeout_ms : 0);
    pthread_mutex_lock(&l->mu);
    while (l->head_seq <= after_seq && !l->stopping && timeout_ms != 0 && gen == l->wake_gen) {
        if (timeout_ms < 0)
            pthread_cond_wait(&l->head_cond, &l->mu);
        else if (pthread_cond_timedwait(&l->head_cond, &l->mu, &deadline) == ETIMEDOUT)
            break;
    }
    int64_t h = l->head_seq;
    pthread_mutex_unlock(&l->mu);
    return h;
}

const int LEDGER_BATCH_BOUNDS[LEDGER_BATCH_BUCKETS - 1] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };

void ledger_stats(Ledger *l, LedgerStats *ret)
{
    pthread_mutex_lock(&l->mu);
    *ret = l->stats;
    pthread_mutex_unlock(&l->mu);
}

void ledger_wake(Ledger *l)
{
    pthread_mutex_lock(&l->mu);
    l->wake_gen++;
    pthread_cond_broadcast(&l->head_cond);
    pthread_mutex_unlock(&l->mu);
}

static void refresh_head(Ledger *l)
{
    int64_t head;
    if (ledger_head(l->watch_rd, &head, NULL, NULL) < 0)
        return;
    pthread_mutex_lock(&l->mu);
    if (head > l->head_seq) {
        l->head_seq = head;
        pthread_cond_broadcast(&l->head_cond);
    }
    pthread_mutex_unlock(&l->mu);
}

/* Other processes touch DIR/ledger.notify after each commit; inotify turns
 * that into a wake-up here within microseconds. */
static void *watcher_main(void *arg)
{
    Ledger *l = arg;
    struct pollfd fds[2] = { { .fd = l->inotify_fd, .events = POLLIN },
                             { .fd = l->stop_pipe[0], .events = POLLIN } };
    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[1].revents)
            break;
        if (fds[0].revents & POLLIN) {
            char buf[4096];
            while (read(l->inotify_fd, buf, sizeof buf) > 0)
                ;
            refresh_head(l);
        }
    }
    return NULL;
}

static int start_watcher(Ledger *l, const char *notify_path, Err *err)
{
    l->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (l->inotify_fd < 0)
        return err_set(err, ERR_IO, "inotify: %s", strerror(errno));
    if (inotify_add_watch(l->inotify_fd, notify_path, IN_ATTRIB | IN_MODIFY) < 0)
        return err_set(err, ERR_IO, "inotify %s: %s", notify_path, strerror(errno));
    if (pipe2(l->stop_pipe, O_CLOEXEC) < 0)
        return err_set(err, ERR_IO, "pipe: %s", strerror(errno));
    int rc = ledger_reader_open(l, &l->watch_rd, err);
    if (rc < 0)
        return rc;
    if (pthread_create(&l->watcher, NULL, watcher_main, l) != 0)
        return err_set(err, ERR_INTERNAL, "cannot start the ledger watcher thread");
    l->watching = true;
    return 0;
}

/* ---- open / close ---- */

static int initial_catch_up(Ledger *l, Err *err)
{
    int rc = store_begin_write(l->w, err);
    if (rc < 0)
        return rc;
    int64_t head;
    if ((rc = ledger_head(l->w, &head, NULL, err)) < 0 ||
        (rc = ledger__projections_catch_up(l->w, head, err)) < 0 ||
        (rc = tail_load(l, err)) < 0) {
        store_rollback(l->w);
        ledger__projections_forget();
        return rc;
    }
    if ((rc = store_commit(l->w, err)) < 0)
        return rc;
    l->known_head = head;
    l->head_seq = head;
    return 0;
}

int ledger_open(const char *data_dir, const LedgerOptions *opts, Ledger **ret, Err *err)
{
    LedgerOptions none = { 0 };
    if (!opts)
        opts = &none;
    Ledger *l = xcalloc(1, sizeof *l);
    l->dir = xstrdup(data_dir);
    l->db_path = ledger_db_path(data_dir);
    if (opts->config)
        l->cfg = *opts->config;
    else
        core_config_defaults(&l->cfg);
    l->limits.max_data_bytes = l->cfg.max_data_bytes;
    l->notify_fd = l->inotify_fd = -1;
    l->stop_pipe[0] = l->stop_pipe[1] = -1;
    l->known_head = -1;
    l->data_version = -1;
    l->recent = xcalloc(LEDGER_RECENT_TYPES, sizeof *l->recent);
    l->recent_lo = 1;
    l->recent_hi = -1; /* nothing known until the writer's first commit */
    core_ulid_new(l->instance);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work, NULL);
    pthread_cond_init(&l->ckpt_cond, NULL);
    l->sha = core_sha256_new();
    pthread_cond_init(&l->space, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->head_cond, &ca);
    pthread_condattr_destroy(&ca);
    ledger_projections_builtin();

    size_t n = strlen(data_dir) + sizeof "/" NOTIFY_FILE;
    char *notify_path = xmalloc(n);
    snprintf(notify_path, n, "%s/%s", data_dir, NOTIFY_FILE);
    StoreOptions o;
    store_opts(&l->cfg, false, &o);
    int rc = ledger_db_prepare(data_dir, &l->cfg, false, err);
    o.no_autocheckpoint = true;
    if (rc < 0 || (rc = store_open(l->db_path, &o, &l->w, err)) < 0 ||
        (rc = initial_catch_up(l, err)) < 0)
        goto fail;
    o.no_autocheckpoint = false;
    if ((rc = store_open(l->db_path, &o, &l->ckpt, err)) < 0)
        goto fail;
    if (pthread_create(&l->checkpointer, NULL, checkpointer_main, l) != 0) {
        rc = err_set(err, ERR_INTERNAL, "cannot start the checkpointer thread");
        goto fail;
    }
    l->checkpointing = true;
    l->notify_fd = open(notify_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (l->notify_fd < 0) {
        rc = err_set(err, ERR_IO, "open %s: %s", notify_path, strerror(errno));
        goto fail;
    }
    if (opts->watch && (rc = start_watcher(l, notify_path, err)) < 0)
        goto fail;
    if (pthread_create(&l->writer, NULL, writer_main, l) != 0) {
        rc = err_set(err, ERR_INTERNAL, "cannot start the ledger writer thread");
        goto fail;
    }
    free(notify_path);
    *ret = l;
    return 0;
fail:
    free(notify_path);
    l->stopping = true;
    ledger_close(l);
    return rc;
}

void ledger_close(Ledger *l)
{
    if (!l)
        return;
    bool writer_running = !l->stopping;
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    pthread_cond_broadcast(&l->work);
    pthread_cond_broadcast(&l->space);
    pthread_cond_broadcast(&l->head_cond);
    pthread_mutex_unlock(&l->mu);
    if (writer_running)
        pthread_join(l->writer, NULL);
    if (l->checkpointing) {
        pthread_mutex_lock(&l->mu);
        pthread_cond_broadcast(&l->ckpt_cond);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->checkpointer, NULL);
        Err err = { 0 };
        store_checkpoint(l->ckpt, NULL, &err); /* leave a short WAL behind */
    }
    store_close(l->ckpt);
    tail_free(&l->tail);
    core_sha256_free(l->sha);
    if (l->watching) {
        if (write(l->stop_pipe[1], "x", 1) < 0) {
            /* the watcher still sees POLLHUP once the pipe closes below */
        }
        pthread_join(l->watcher, NULL);
    }
    store_close(l->watch_rd);
    store_close(l->w);
    if (l->inotify_fd >= 0)
        close(l->inotify_fd);
    for (int i = 0; i < 2; i++)
        if (l->stop_pipe[i] >= 0)
            close(l->stop_pipe[i]);
    if (l->notify_fd >= 0)
        close(l->notify_fd);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work);
    pthread_cond_destroy(&l->space);
    pthread_cond_destroy(&l->head_cond);
    pthread_cond_destroy(&l->ckpt_cond);
    free(l->recent);
    free(l->dir);
    free(l->db_path);
    free(l);
}
