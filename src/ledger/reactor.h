/* Reactors: long-running consumers of the ledger that append events in
 * response to events (the trigger matcher, the runner, the outbox...).
 *
 * A reactor runs in one process at a time: its runner holds the lease
 * "reactor:NAME" and renews it while it works. Each step's emitted events
 * and the reactor's new checkpoint are appended in one transaction, fenced
 * by the lease, so a crash or a lost lease neither doubles nor drops work. */
#ifndef BUREAU_LEDGER_REACTOR_H
#define BUREAU_LEDGER_REACTOR_H

#include "ledger/ledger.h"

typedef struct ReactorEmit ReactorEmit;

/* Adds an event to append with this step (ownership passes). */
void ledger_reactor_emit(ReactorEmit *out, Event *ev);
/* For a lazy reactor: this step commits its checkpoint at once even if it
 * emitted nothing (the handler read or changed state that handling the
 * same events again after a crash might see differently). */
void ledger_reactor_keep(ReactorEmit *out);

typedef struct ReactorDef {
    const char *name;
    /* Handles one event; rd is the runner's read connection. Returning <0
     * stops the step: nothing it emitted is kept and the event is retried
     * after a back-off. Returning > 0 handles the event and ends the step
     * there (it commits at once): for a reactor whose events are slow to
     * handle, so that a step ends well within its lease. */
    int (*handle)(void *ctx, Store *rd, const Event *ev, ReactorEmit *out, Err *err);
    void *ctx;
    int lease_ms;  /* lease time to live; 0 = 15000 */
    int batch;     /* events per transaction; 0 = 256 */
    /* Events reach handle without their data (data is ""): for a reactor
     * that looks at most events' types only and fetches the few it needs
     * (ledger_event_get on rd). */
    bool headers_only;
    /* A step that emitted nothing and called no ledger_reactor_keep() is
     * not committed: the position moves in memory (ledger_reactor_position)
     * and is stored with the next commit, within 250 ms, and on stop. For
     * a reactor that ignores most events: it saves a transaction per step.
     * After a crash those events are handled again. */
    bool lazy;
    /* For a lazy reactor (may be NULL): whether handle may do anything
     * with an event of this type. Events it refuses are passed over without
     * being read when the ledger still knows their types
     * (ledger_recent_types); handle must then return 0 for them and change
     * nothing. Runs under the ledger's lock: quick, and no ledger calls. */
    bool (*wants)(void *ctx, const char *type);
    /* Called (may be NULL) on the reactor's thread after each step that
     * moved its position (committed, or held in memory by a lazy reactor):
     * a commit without new events wakes no ledger_wait(). */
    void (*committed)(void *ctx);
} ReactorDef;

typedef struct Reactor Reactor;

/* Starts a runner thread for def (copied; name and ctx must outlive it). */
int ledger_reactor_start(Ledger *l, const ReactorDef *def, Reactor **ret, Err *err);
/* Stops the runner, releases the lease. NULL is accepted. */
void ledger_reactor_stop(Reactor *r);

/* The checkpoint (last handled seq) of a reactor; 0 when it never ran. */
int ledger_reactor_checkpoint(Store *s, const char *name, int64_t *ret, Err *err);
/* The position r has handled up to, stored or not; false when r is NULL or
 * does not hold its lease (then the stored checkpoint is what there is). */
bool ledger_reactor_position(Reactor *r, int64_t *ret);

#endif
