/* The pull runtime: one poller thread that runs each pull connector on its
 * interval (jittered), under a lease so that one process polls a connector
 * at a time, backs off exponentially on failure and says so once per change
 * of state (a log line and a connector.failed / connector.recovered event),
 * not once per retry. The kinds are a table: a new kind is one row. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/crypto.h"
#include "core/log.h"
#include "pull/pull_int.h"

typedef int (*PollFn)(const PullCtx *x, int64_t *ret_appended, Err *err);

static const struct {
    ConnectorKind kind;
    const char *name;
    PollFn poll; /* NULL: not built yet */
} kinds[] = {
    { CONNECTOR_IMAP, "imap", pull__imap_poll },
    { CONNECTOR_ICS, "ics", pull__ics_poll },
};

static const char *kind_name(ConnectorKind k)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (kinds[i].kind == k)
            return kinds[i].name;
    return "?";
}

static PollFn kind_poll(ConnectorKind k)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (kinds[i].kind == k)
            return kinds[i].poll;
    return NULL;
}

/* ---- shared by the kinds ---- */

int pull__append_batch(Ledger *l, const ConnectorConfig *c, Event **events, size_t n,
                       const json_t *cursor, int64_t *cursor_seq, int64_t *ret_added, Err *err)
{
    json_t *d = json_pack("{s:s, s:s, s:O, s:I, s:I}", "connector", c->name, "kind",
                          kind_name(c->kind), "cursor", cursor, "count", (json_int_t)n, "prev",
                          (json_int_t)*cursor_seq);
    Event *cev = NULL;
    int rc = ledger_event_new("connector.cursor", c->source, NULL, d, NULL, ledger_limits(l), &cev,
                              err);
    json_decref(d);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            ledger_event_free(events[i]);
        return rc;
    }
    /* the cursor first: the connector's row then exists when the projection
     * counts the events after it (one transaction all the same) */
    Event **all = xcalloc(n + 1, sizeof *all);
    all[0] = cev;
    memcpy(all + 1, events, n * sizeof *all);
    LedgerAppendResult *res = xcalloc(n + 1, sizeof *res);
    rc = ledger_append(l, all, n + 1, res, err);
    if (rc == 0) {
        int64_t added = 0;
        for (size_t i = 1; i <= n; i++)
            added += !res[i].duplicate;
        *cursor_seq = res[0].seq;
        *ret_added += added;
    }
    free(res);
    free(all);
    return rc;
}

int pull__lease(const PullCtx *x, Err *err)
{
    char name[96];
    snprintf(name, sizeof name, "connector:%s", x->c->name);
    return ledger_lease_acquire(x->rd, name, ledger_instance(x->opts->ledger), PULL_LEASE_MS,
                                err);
}

int pull_poll_once(const PullOptions *opts, const ConnectorConfig *c, const char *password,
                   Store *rd, int64_t *ret_appended, Err *err)
{
    PollFn poll = kind_poll(c->kind);
    if (!poll)
        return err_set(err, ERR_INTERNAL, "%s: not built yet", kind_name(c->kind));
    volatile int stop = 0;
    PullCtx x = { .opts = opts, .c = c, .password = password, .rd = rd, .stop = &stop };
    *ret_appended = 0;
    int held = pull__lease(&x, err);
    if (held < 0)
        return held;
    if (held == 0)
        return 0; /* another process polls it now */
    int rc = poll(&x, ret_appended, err);
    char name[96];
    snprintf(name, sizeof name, "connector:%s", c->name);
    Err e2 = { 0 };
    ledger_lease_release(rd, name, ledger_instance(opts->ledger), &e2);
    return rc;
}

/* ---- the poller ---- */

typedef struct ConnState {
    const ConnectorConfig *c;
    char *password;
    int64_t next_ms;     /* monotonic */
    int failures;        /* consecutive */
    bool failing;
    char last_error[512];
} ConnState;

struct PullRuntime {
    PullOptions opts;
    ConnState *conns;
    size_t n;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    volatile int stop;
    Store *rd;
};

static int64_t mono_ms(void)
{
    return core_time_mono_ns() / 1000000;
}

/* ms scaled by a random factor in [0.9, 1.1). */
static int64_t jitter(int64_t ms)
{
    uint32_t r = 0;
    core_random_bytes(&r, sizeof r);
    return ms * 9 / 10 + (int64_t)((double)ms / 5 * ((double)r / 4294967296.0));
}

static int64_t backoff_ms(const ConnState *s)
{
    int64_t base = (int64_t)(s->c->interval_s < 30 ? s->c->interval_s : 30) * 1000;
    int64_t cap = (int64_t)s->c->interval_s * 1000 > 3600000 ? (int64_t)s->c->interval_s * 1000
                                                             : 3600000;
    int64_t d = base;
    for (int i = 1; i < s->failures && d < cap; i++)
        d *= 2;
    return jitter(d < cap ? d : cap);
}

static void record_state(PullRuntime *rt, ConnState *s, const char *type, const char *error)
{
    json_t *d = json_pack("{s:s, s:s}", "connector", s->c->name, "kind", kind_name(s->c->kind));
    if (error)
        json_object_set_new(d, "error", json_string(error));
    Event *ev = NULL;
    Err err = { 0 };
    if (ledger_event_new(type, s->c->source, NULL, d, NULL, ledger_limits(rt->opts.ledger), &ev,
                         &err) == 0)
        ledger_append(rt->opts.ledger, &ev, 1, NULL, &err);
    json_decref(d);
}

static void record_poll(PullRuntime *rt, ConnState *s, bool ok, int64_t delay_ms)
{
    char now[CORE_TIME_LEN + 1], next[CORE_TIME_LEN + 1];
    int64_t t = core_time_now_ms();
    core_time_format(t, now);
    core_time_format(t + delay_ms, next);
    Err err = { 0 };
    store_execf(rt->rd, &err,
                "INSERT INTO connector_polls(name, last_attempt_at, last_success_at, failures,"
                " next_at) VALUES (?1, ?2, CASE WHEN ?3 THEN ?2 END, ?4, ?5)"
                " ON CONFLICT(name) DO UPDATE SET last_attempt_at = ?2,"
                " last_success_at = CASE WHEN ?3 THEN ?2 ELSE last_success_at END,"
                " failures = ?4, next_at = ?5",
                "ssiis", s->c->name, now, (int64_t)ok, (int64_t)s->failures, next);
}

static void poll_one(PullRuntime *rt, ConnState *s)
{
    PollFn poll = kind_poll(s->c->kind);
    Err err = { 0 };
    int64_t added = 0;
    int rc;
    if (!poll) {
        rc = err_set(&err, ERR_INTERNAL, "%s: not built yet", kind_name(s->c->kind));
    } else {
        PullCtx x = { .opts = &rt->opts, .c = s->c, .password = s->password, .rd = rt->rd,
                      .stop = &rt->stop };
        rc = pull__lease(&x, &err);
        if (rc == 0) {
            /* another process polls it: try again at the next interval */
            s->next_ms = mono_ms() + jitter((int64_t)s->c->interval_s * 1000);
            return;
        }
        if (rc > 0) {
            rc = poll(&x, &added, &err);
            char name[96];
            snprintf(name, sizeof name, "connector:%s", s->c->name);
            Err e2 = { 0 };
            ledger_lease_release(rt->rd, name, ledger_instance(rt->opts.ledger), &e2);
        }
    }
    int64_t delay;
    if (rc < 0) {
        s->failures++;
        delay = backoff_ms(s);
        if (!s->failing) {
            s->failing = true;
            snprintf(s->last_error, sizeof s->last_error, "%s", err.msg);
            log_warn("connector failing", json_pack("{s:s, s:s, s:s, s:I}", "connector",
                                                    s->c->name, "kind", kind_name(s->c->kind),
                                                    "error", err.msg, "retry_ms",
                                                    (json_int_t)delay));
            record_state(rt, s, "connector.failed", err.msg);
        }
    } else {
        delay = jitter((int64_t)s->c->interval_s * 1000);
        if (s->failing) {
            log_info("connector recovered", json_pack("{s:s, s:i}", "connector", s->c->name,
                                                      "failures", s->failures));
            record_state(rt, s, "connector.recovered", NULL);
        }
        s->failing = false;
        s->failures = 0;
        /* a poll that found nothing is only worth a debug line */
        log_emit(added ? LOG_INFO : LOG_DEBUG, "connector polled",
                 json_pack("{s:s, s:I}", "connector", s->c->name, "events", (json_int_t)added));
    }
    record_poll(rt, s, rc >= 0, delay);
    s->next_ms = mono_ms() + delay;
}

static void *poller(void *arg)
{
    PullRuntime *rt = arg;
    pthread_mutex_lock(&rt->mu);
    while (!rt->stop) {
        int64_t now = mono_ms(), soonest = now + 3600000;
        for (size_t i = 0; i < rt->n && !rt->stop; i++) {
            ConnState *s = &rt->conns[i];
            if (s->next_ms <= now) {
                pthread_mutex_unlock(&rt->mu);
                poll_one(rt, s);
                pthread_mutex_lock(&rt->mu);
                now = mono_ms();
            }
            if (s->next_ms < soonest)
                soonest = s->next_ms;
        }
        if (rt->stop)
            break;
        int64_t wait = soonest - mono_ms();
        if (wait > 0) {
            struct timespec ts = core_time_deadline(CLOCK_MONOTONIC, (int)wait);
            pthread_cond_timedwait(&rt->cond, &rt->mu, &ts);
        }
    }
    pthread_mutex_unlock(&rt->mu);
    return NULL;
}

int pull_runtime_start(const PullOptions *opts, PullRuntime **ret, Err *err)
{
    PullRuntime *rt = xcalloc(1, sizeof *rt);
    rt->opts = *opts;
    const Config *cfg = opts->config;
    rt->conns = xcalloc(cfg->n_connectors + 1, sizeof *rt->conns);
    int rc = 0;
    for (size_t i = 0; i < cfg->n_connectors; i++) {
        const ConnectorConfig *c = &cfg->connectors[i];
        if (!CONNECTOR_IS_PULL(c->kind))
            continue;
        ConnState *s = &rt->conns[rt->n++];
        s->c = c;
        if (c->password) {
            s->password = xstrdup(c->password);
        } else if (c->password_env) {
            const char *v = getenv(c->password_env);
            if (!v || !*v) {
                rc = err_set(err, ERR_CONFIG, "connector '%s': environment variable %s is not "
                                              "set", c->name, c->password_env);
                goto out;
            }
            s->password = xstrdup(v);
        }
        if (!kind_poll(c->kind))
            log_warn("connector not polled", json_pack("{s:s, s:s}", "connector", c->name,
                                                       "reason", "ics: not built yet"));
    }
    pthread_mutex_init(&rt->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rt->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rt->n == 0)
        goto out;
    if ((rc = ledger_reader_open_dir(opts->data_dir, cfg, &rt->rd, err)) < 0)
        goto out;
    int64_t now = mono_ms();
    for (size_t i = 0; i < rt->n; i++)
        if (kind_poll(rt->conns[i].c->kind))
            rt->conns[i].next_ms = now; /* the first poll at once */
        else
            rt->conns[i].next_ms = INT64_MAX;
    if (pthread_create(&rt->thread, NULL, poller, rt) != 0) {
        rc = err_set(err, ERR_INTERNAL, "cannot start the connector poller: %s",
                     strerror(errno));
        goto out;
    }
    rt->started = true;
out:
    if (rc < 0) {
        for (size_t i = 0; i < rt->n; i++)
            free(rt->conns[i].password);
        store_close(rt->rd);
        free(rt->conns);
        free(rt);
        return rc;
    }
    *ret = rt;
    return 0;
}

void pull_runtime_stop(PullRuntime *rt)
{
    if (!rt)
        return;
    pthread_mutex_lock(&rt->mu);
    rt->stop = 1;
    pthread_cond_broadcast(&rt->cond);
    pthread_mutex_unlock(&rt->mu);
    if (rt->started)
        pthread_join(rt->thread, NULL);
    for (size_t i = 0; i < rt->n; i++)
        free(rt->conns[i].password);
    store_close(rt->rd);
    pthread_mutex_destroy(&rt->mu);
    pthread_cond_destroy(&rt->cond);
    free(rt->conns);
    free(rt);
}

/* ---- status and replay ---- */

static json_t *col_or_null(StoreStmt *st, int i)
{
    const char *t = store_col_text(st, i, NULL);
    return t ? json_string(t) : json_null();
}

int pull_status(Store *rd, const Config *cfg, int64_t now_ms, json_t **ret, Err *err)
{
    char today[CORE_TIME_LEN + 1];
    core_time_format(now_ms, today);
    today[10] = '\0';
    json_t *list = json_array();
    int rc = 0;
    for (size_t i = 0; i < cfg->n_connectors && rc >= 0; i++) {
        const ConnectorConfig *c = &cfg->connectors[i];
        if (!CONNECTOR_IS_PULL(c->kind))
            continue;
        json_t *o = json_pack("{s:s, s:s, s:{}, s:n, s:n, s:n, s:n, s:b, s:i, s:i, s:i, s:n}",
                              "name", c->name, "kind", kind_name(c->kind), "cursor",
                              "last_success", "last_attempt", "last_error", "last_error_at",
                              "failing", 0, "failures", 0, "events", 0, "events_today", 0,
                              "next_poll");
        StoreStmt *st;
        if ((rc = store_prepare(rd,
                                "SELECT c.cursor, c.events, c.failing, c.last_error,"
                                " c.last_error_at, c.last_event_at,"
                                " (SELECT events FROM connector_days d WHERE d.name = c.name"
                                "  AND d.day = ?2)"
                                " FROM connectors c WHERE c.name = ?1",
                                &st, err)) < 0)
            break;
        store_bind_text(st, 1, c->name, strlen(c->name));
        store_bind_text(st, 2, today, strlen(today));
        if ((rc = store_step(st, err)) == STORE_ROW) {
            size_t len = 0;
            const char *t = store_col_text(st, 0, &len);
            json_t *cur = t ? json_loadb(t, len, 0, NULL) : NULL;
            if (cur)
                json_object_set_new(o, "cursor", cur);
            json_object_set_new(o, "events", json_integer(store_col_int(st, 1)));
            bool failing = store_col_int(st, 2) != 0;
            json_object_set_new(o, "failing", json_boolean(failing));
            if (failing) {
                json_object_set_new(o, "last_error", col_or_null(st, 3));
                json_object_set_new(o, "last_error_at", col_or_null(st, 4));
            }
            json_object_set_new(o, "last_success", col_or_null(st, 5));
            json_object_set_new(o, "events_today", json_integer(store_col_int(st, 6)));
        }
        store_stmt_done(st);
        if (rc < 0)
            break;
        if ((rc = store_prepare(rd,
                                "SELECT last_attempt_at, last_success_at, failures, next_at"
                                " FROM connector_polls WHERE name = ?1",
                                &st, err)) < 0)
            break;
        store_bind_text(st, 1, c->name, strlen(c->name));
        if ((rc = store_step(st, err)) == STORE_ROW) {
            json_object_set_new(o, "last_attempt", col_or_null(st, 0));
            if (store_col_text(st, 1, NULL))
                json_object_set_new(o, "last_success", col_or_null(st, 1));
            json_object_set_new(o, "failures", json_integer(store_col_int(st, 2)));
            json_object_set_new(o, "next_poll", col_or_null(st, 3));
        }
        store_stmt_done(st);
        json_array_append_new(list, o);
    }
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *ret = list;
    return 0;
}

/* imap: {"folders": {NAME: {"uidvalidity": N, "uid": N}}} */
static int cursor_check(const ConnectorConfig *c, const json_t *cur, Err *err)
{
    if (!json_is_object(cur))
        return err_set(err, ERR_INVAL, "the cursor must be a JSON object");
    if (c->kind != CONNECTOR_IMAP)
        return 0;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)cur, k, v) {
        if (strcmp(k, "folders"))
            return err_set(err, ERR_INVAL, "imap cursor: unknown key '%.40s' (folders)", k);
        const char *f;
        const json_t *fc;
        if (!json_is_object(v))
            return err_set(err, ERR_INVAL, "imap cursor: folders must be an object");
        json_object_foreach((json_t *)v, f, fc) {
            const json_t *uv = json_object_get(fc, "uidvalidity"), *uid = json_object_get(fc, "uid");
            if (!json_is_integer(uv) || !json_is_integer(uid) || json_integer_value(uid) < 0 ||
                json_integer_value(uv) < 0 || json_object_size(fc) != 2)
                return err_set(err, ERR_INVAL, "imap cursor: folders.%.64s must be "
                                               "{uidvalidity, uid} (integers >= 0)", f);
        }
    }
    return 0;
}

int pull_replay(Ledger *l, const Config *cfg, const char *name, const json_t *cursor, Err *err)
{
    const ConnectorConfig *c = core_config_connector(cfg, name);
    if (!c || !CONNECTOR_IS_PULL(c->kind))
        return err_set(err, ERR_NOTFOUND, "no pull connector named '%.64s' in bureau.yaml", name);
    int rc = cursor_check(c, cursor, err);
    if (rc < 0)
        return rc;
    json_t *d = json_pack("{s:s, s:s, s:O, s:i, s:b}", "connector", c->name, "kind",
                          kind_name(c->kind), "cursor", cursor, "count", 0, "replay", 1);
    Event *ev = NULL;
    rc = ledger_event_new("connector.cursor", c->source, NULL, d, NULL, ledger_limits(l), &ev, err);
    json_decref(d);
    if (rc < 0)
        return rc;
    return ledger_append(l, &ev, 1, NULL, err);
}
