/* The reactor runner: acquire the lease, read events after the checkpoint,
 * hand each to the reactor, append what it emitted together with the new
 * checkpoint, and sleep on the ledger's head when there is nothing to do. */
#include "ledger/reactor.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct ReactorEmit {
    Event **evs;
    size_t n, cap;
};

void ledger_reactor_emit(ReactorEmit *out, Event *ev)
{
    if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 16;
        out->evs = xrealloc(out->evs, out->cap * sizeof *out->evs);
    }
    out->evs[out->n++] = ev;
}

static void emit_clear(ReactorEmit *e)
{
    for (size_t i = 0; i < e->n; i++)
        ledger_event_free(e->evs[i]);
    e->n = 0;
}

struct Reactor {
    Ledger *l;
    ReactorDef def;
    char lease[160];
    Store *rd;
    pthread_t thread;
    atomic_bool stop;
};

int ledger_reactor_checkpoint(Store *s, const char *name, int64_t *ret, Err *err)
{
    return store_query_int(s, "SELECT seq FROM reactors WHERE name = ?1", name, 0, ret, err);
}

typedef struct Step {
    Reactor *r;
    ReactorEmit emit;
    int64_t last;
    int handled;
    Err err;
} Step;

static int step_one(void *vctx, const Event *ev)
{
    Step *s = vctx;
    int rc = s->r->def.handle(s->r->def.ctx, s->r->rd, ev, &s->emit, &s->err);
    if (rc < 0)
        return rc;
    s->last = ev->seq;
    s->handled++;
    return rc > 0 ? 1 : 0; /* > 0: this event ends the step (it commits) */
}

/* One transaction's worth of work. Returns events handled (>= 0) or <0. */
static int run_step(Reactor *r, Err *err)
{
    int64_t cp;
    int rc = ledger_reactor_checkpoint(r->rd, r->def.name, &cp, err);
    if (rc < 0)
        return rc;
    Step s = { .r = r, .last = cp };
    LedgerFilter f = { .after_seq = cp, .limit = r->def.batch,
                       .headers_only = r->def.headers_only };
    rc = ledger_read(r->rd, &f, step_one, &s, err);
    if (rc < 0 || s.err.code < 0) {
        if (s.err.code < 0)
            *err = s.err;
        emit_clear(&s.emit);
        free(s.emit.evs);
        return rc < 0 ? rc : s.err.code;
    }
    if (s.handled == 0) {
        free(s.emit.evs);
        return 0;
    }
    rc = ledger_append_checkpoint(r->l, s.emit.evs, s.emit.n, r->def.name, s.last, r->lease,
                                  ledger_instance(r->l), err);
    free(s.emit.evs); /* the events themselves went to the ledger */
    if (rc == 0 && r->def.committed)
        r->def.committed(r->def.ctx);
    return rc < 0 ? rc : s.handled;
}

static void *runner_main(void *arg)
{
    Reactor *r = arg;
    char name[16];
    snprintf(name, sizeof name, "r-%.13s", r->def.name);
    pthread_setname_np(pthread_self(), name);
    int backoff_ms = 100;
    int64_t renewed = 0;
    bool held = false;
    while (!atomic_load(&r->stop)) {
        Err err = { 0 };
        int64_t now = core_time_now_ms();
        if (!held || now - renewed > r->def.lease_ms / 3) {
            int rc = ledger_lease_acquire(r->rd, r->lease, ledger_instance(r->l),
                                          r->def.lease_ms, &err);
            if (rc < 0)
                log_warn("reactor lease", json_pack("{s:s, s:s}", "reactor", r->def.name,
                                                    "error", err.msg));
            held = rc == 1;
            renewed = now;
            if (!held) { /* another process runs it: check again before it could expire */
                ledger_wait(r->l, INT64_MAX, r->def.lease_ms / 3);
                continue;
            }
        }
        int64_t head = ledger_head_seq(r->l);
        int rc = run_step(r, &err);
        if (rc < 0) {
            if (rc == ERR_LEASE) {
                held = false;
                continue;
            }
            log_error("reactor step failed",
                      json_pack("{s:s, s:s}", "reactor", r->def.name, "error", err.msg));
            ledger_wait(r->l, INT64_MAX, backoff_ms);
            backoff_ms = backoff_ms < 30000 ? backoff_ms * 2 : 30000;
            continue;
        }
        backoff_ms = 100;
        if (rc == 0) /* caught up: sleep until something new or the lease wants renewing */
            ledger_wait(r->l, head, r->def.lease_ms / 3);
    }
    if (held) {
        Err err;
        ledger_lease_release(r->rd, r->lease, ledger_instance(r->l), &err);
    }
    return NULL;
}

int ledger_reactor_start(Ledger *l, const ReactorDef *def, Reactor **ret, Err *err)
{
    Reactor *r = xcalloc(1, sizeof *r);
    r->l = l;
    r->def = *def;
    if (r->def.lease_ms <= 0)
        r->def.lease_ms = 15000;
    if (r->def.batch <= 0)
        r->def.batch = 256;
    snprintf(r->lease, sizeof r->lease, "reactor:%s", def->name);
    int rc = ledger_reader_open(l, &r->rd, err);
    if (rc < 0) {
        free(r);
        return rc;
    }
    if (pthread_create(&r->thread, NULL, runner_main, r) != 0) {
        store_close(r->rd);
        free(r);
        return err_set(err, ERR_INTERNAL, "cannot start reactor %s", def->name);
    }
    *ret = r;
    return 0;
}

void ledger_reactor_stop(Reactor *r)
{
    if (!r)
        return;
    atomic_store(&r->stop, true);
    ledger_wake(r->l);
    pthread_join(r->thread, NULL);
    store_close(r->rd);
    free(r);
}
