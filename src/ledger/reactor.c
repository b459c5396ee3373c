/* The reactor runner: acquire the lease, read events after the checkpoint,
 * hand each to the reactor, append what it emitted together with the new
 * checkpoint, and sleep on the ledger's head when there is nothing to do.
 *
 * A lazy reactor (ReactorDef.lazy) does not commit a step that emitted
 * nothing and kept nothing: its position moves in memory and is written
 * with its next commit, at the latest LAZY_MS after its last one, and when
 * it stops. Events after the stored checkpoint are handled again after a
 * crash; for those steps that changed nothing, so handling them again
 * changes nothing either. */
#include "ledger/reactor.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"

/* A lazy reactor's position is stored at least this often while it moves. */
#define LAZY_MS 250

struct ReactorEmit {
    Event **evs;
    size_t n, cap;
    bool keep; /* ledger_reactor_keep(): this step commits */
};

void ledger_reactor_keep(ReactorEmit *out)
{
    out->keep = true;
}

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
    /* runner thread only: the position handled up to, the checkpoint
     * stored, when a step last committed; valid while known (reloaded
     * whenever the lease is taken again) */
    int64_t pos, saved, saved_ms;
    bool known;
    /* pos for other threads, -1 while the lease is not held */
    _Atomic int64_t shown;
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

/* Stores the position with its checkpoint (and what a step emitted). */
static int store_position(Reactor *r, Event **evs, size_t n, int64_t last, Err *err)
{
    int rc = ledger_append_checkpoint(r->l, evs, n, r->def.name, last, r->lease,
                                      ledger_instance(r->l), err);
    if (rc < 0) {
        r->known = false; /* the lease may be gone: start again from the table */
        atomic_store(&r->shown, -1);
        return rc;
    }
    r->pos = r->saved = last;
    r->saved_ms = core_time_now_ms();
    atomic_store(&r->shown, last);
    return 0;
}

/* One transaction's worth of work. Returns events handled (>= 0) or <0. */
static int run_step(Reactor *r, Err *err)
{
    int rc;
    if (!r->known) {
        int64_t cp;
        if ((rc = ledger_reactor_checkpoint(r->rd, r->def.name, &cp, err)) < 0)
            return rc;
        r->pos = r->saved = cp;
        r->saved_ms = core_time_now_ms();
        r->known = true;
        atomic_store(&r->shown, cp);
    }
    Step s = { .r = r, .last = r->pos };
    LedgerFilter f = { .after_seq = r->pos, .limit = r->def.batch,
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
    if (r->def.lazy && s.emit.n == 0 && !s.emit.keep &&
        core_time_now_ms() - r->saved_ms < LAZY_MS) {
        free(s.emit.evs);
        r->pos = s.last;
        atomic_store(&r->shown, s.last);
        if (r->def.committed)
            r->def.committed(r->def.ctx);
        return s.handled;
    }
    rc = store_position(r, s.emit.evs, s.emit.n, s.last, err);
    free(s.emit.evs); /* the events themselves went to the ledger */
    if (rc == 0 && r->def.committed)
        r->def.committed(r->def.ctx);
    return rc < 0 ? rc : s.handled;
}

/* A lazy reactor passes over events it does not want without reading them,
 * when the ledger still knows their types. Returns whether it did. */
static bool pass_over(Reactor *r, int64_t head)
{
    if (!r->def.lazy || !r->def.wants || !r->known || head <= r->pos ||
        ledger_recent_types(r->l, r->pos, head, r->def.wants, r->def.ctx) != 0)
        return false;
    r->pos = head;
    atomic_store(&r->shown, head);
    if (r->def.committed)
        r->def.committed(r->def.ctx);
    return true;
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
            if (rc != 1 || !held) { /* taken (again): the table says where it is */
                r->known = false;
                atomic_store(&r->shown, -1);
            }
            held = rc == 1;
            renewed = now;
            if (!held) { /* another process runs it: check again before it could expire */
                ledger_wait(r->l, INT64_MAX, r->def.lease_ms / 3);
                continue;
            }
        }
        int64_t head = ledger_head_seq(r->l);
        int rc = 0;
        if (r->known && r->pos > r->saved && now - r->saved_ms >= LAZY_MS)
            rc = store_position(r, NULL, 0, r->pos, &err);
        if (rc == 0 && !pass_over(r, head))
            rc = run_step(r, &err);
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
        if (rc == 0) { /* caught up: sleep until something new or the lease wants renewing */
            int timeout = r->def.lease_ms / 3;
            if (r->known && r->pos > r->saved) { /* and store the position in time */
                int64_t left = r->saved_ms + LAZY_MS - core_time_now_ms();
                if (left < timeout)
                    timeout = left > 1 ? (int)left : 1;
            }
            ledger_wait(r->l, head, timeout);
        }
    }
    if (held) {
        Err err = { 0 };
        if (r->known && r->pos > r->saved && store_position(r, NULL, 0, r->pos, &err) < 0)
            log_warn("reactor checkpoint",
                     json_pack("{s:s, s:s}", "reactor", r->def.name, "error", err.msg));
        ledger_lease_release(r->rd, r->lease, ledger_instance(r->l), &err);
    }
    atomic_store(&r->shown, -1);
    return NULL;
}

bool ledger_reactor_position(Reactor *r, int64_t *ret)
{
    int64_t pos = r ? atomic_load(&r->shown) : -1;
    if (pos < 0)
        return false;
    *ret = pos;
    return true;
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
    atomic_store(&r->shown, -1);
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
