/* The planner and the runner.
 *
 * The planner is a reactor: for each new event it appends `task.created`
 * for every enabled workflow whose trigger matches (idempotency key
 * "task:WORKFLOW:SEQ", so once per workflow per event, across crashes and
 * replays). The runner holds the lease "runner": it follows the ledger to
 * wake waits on events, asks the "tasks" projection for ready and due steps,
 * hands them to the worker pool, and fires schedules. Workers evaluate a
 * step (condition, inputs, handler) and append its outcome asynchronously;
 * the projection turns that into the next ready steps. A crash loses only
 * steps whose outcome was not yet durable; they are ready again after a
 * restart, and their idempotency keys keep their effects single. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "flow/engine_int.h"
#include "flow/consolidator.h"
#include "memory/extract_facts.h"
#include "memory/search.h"
#include "memory/vectors.h"
#include "model/quality.h"
#include "flow/outbox.h"
#include "ledger/reactor.h"

#define RUNNER_LEASE "runner"
#define FOLLOW_BATCH 512
#define QUEUE_PER_WORKER 64 /* ready steps queued ahead of each worker */
#define WAIT_SCAN_MAX 100000 /* events scanned back for a wait that starts */

typedef struct Job {
    char task[CORE_ULID_LEN + 1];
    char step[FLOW_NAME_MAX + 1];
    int attempt;
    bool resume; /* the approval or effect the step waits for has an outcome */
    struct Job *next;
} Job;

typedef struct Waiter {
    char task[CORE_ULID_LEN + 1];
    char step[FLOW_NAME_MAX + 1];
    int attempt;
    char *type;  /* exact, or a prefix ending in ".*" */
    char *where; /* Lua over e, or NULL */
    int64_t trigger_seq;
    struct Waiter *next;
} Waiter;

typedef struct Worker Worker;

typedef struct Schedule {
    const FlowWorkflow *wf;
    int64_t next_ms; /* 0: not armed (disabled) */
} Schedule;

struct FlowEngine {
    Ledger *l;
    char *data_dir;
    Config cfg; /* scalars only */
    FlowCatalog cat;
    Reactor *planner;
    FlowLua *planner_lua;
    json_t *enabled; /* planner thread: name -> true/false, from workflow_settings */
    json_t *stored_versions; /* planner thread: versions known to be stored */

    pthread_t runner;
    atomic_bool stop;
    Store *rd;
    FlowLua *runner_lua;
    Waiter *waiters;
    Schedule *schedules;
    size_t n_schedules;
    int64_t seen;
    /* runner thread: the last pass (skip_pass) */
    bool passed, pass_busy;
    uint64_t pass_gen;
    int64_t pass_head, pass_due; /* pass_due: the next timer, ms; -1 none */

    pthread_mutex_t mu;
    pthread_cond_t job_cond, idle_cond;
    Job *q_first, *q_last;
    size_t q_len; /* jobs queued, not yet taken by a worker */
    size_t q_max; /* at most, set before the workers start */
    json_t *dispatched; /* "task/step" -> true, while queued, running or being appended */
    /* "task/step[/w]" -> the seq of its outcome, once acknowledged, until a
     * runner pass began after it: a pass whose queries began earlier may
     * have read the step as it was before that outcome, and must not run
     * it again on that stale reading (a resumed step would record a wait
     * over the wake-up that came after it, and never wake). */
    json_t *acked;
    size_t inflight;
    bool idle;
    int64_t idle_head;   /* the head the runner was idle at */
    int64_t outbox_head; /* the head the outbox was idle at, -1 while busy */
    FlowOutbox *outbox;
    FlowConsolidator *consolidator;
    MemoryExtractor *extractor;
    ModelShadowRunner *shadows; /* shadow runs in the batch window (model/quality.h) */
    MemoryVectorFiller *vectors;
    ModelRouter *router;
    bool interrupted;
    int idle_waiters; /* in flow_engine_wait_idle() */
    /* while waiting for idleness: timers (the runner's and the outbox's)
     * due by then, in absolute ms, count as work; fixed when the wait
     * begins, so that a timer that keeps coming back (a reminder) cannot
     * keep the engine busy for ever */
    int64_t horizon_until;
    bool workers_stop;
    bool runner_started;
    Worker *workers;
    int n_workers;  /* started */
    bool lease_held; /* the runner held its lease when it stopped */

    pthread_mutex_t cache_mu;
    json_t *versions; /* version -> index into defs */
    json_t *tasks_cache; /* task id -> what never changes about it */
    FlowWorkflow **defs;
    size_t n_defs;
};

/* ---- shared helpers ---- */

static void time_str(int64_t ms, char out[CORE_TIME_LEN + 1])
{
    core_time_format(ms, out);
}

static bool type_matches(const char *pattern, const char *type)
{
    size_t n = strlen(pattern);
    if (n >= 2 && !strcmp(pattern + n - 2, ".*"))
        return !strncmp(type, pattern, n - 1);
    return !strcmp(pattern, type);
}

/* Orchestration events never trigger workflows (schedule.fired does, but
 * only the workflow it names; goal.approved only the goal's own task, so a
 * goal starts nothing before the operator approved it). */
static bool internal_type(const char *t)
{
    return !strncmp(t, "task.", 5) || !strncmp(t, "step.", 5) || !strncmp(t, "workflow.", 9) ||
           !strncmp(t, "schedule.", 9) || !strncmp(t, "goal.", 5);
}

static void enabled_load(FlowEngine *e, Store *rd)
{
    json_object_clear(e->enabled);
    StoreStmt *st;
    Err err = { 0 };
    if (store_prepare(rd, "SELECT name, enabled FROM workflow_settings WHERE enabled IS NOT NULL",
                      &st, &err) < 0)
        return;
    while (store_step(st, &err) == STORE_ROW)
        json_object_set_new(e->enabled, store_col_text(st, 0, NULL),
                            json_boolean(store_col_int(st, 1) != 0));
    store_stmt_done(st);
}

static bool wf_enabled(const json_t *enabled, const FlowWorkflow *w)
{
    const json_t *v = json_object_get(enabled, w->name);
    if (v)
        return json_is_true(v);
    return w->builtin ? false : w->enabled;
}

int flow_workflow_enabled(Store *rd, const char *name, bool file_enabled, bool builtin,
                          bool *ret, Err *err)
{
    int64_t v = -1;
    int rc = store_query_int(rd, "SELECT coalesce(enabled, -1) FROM workflow_settings WHERE name = ?1",
                             name, -1, &v, err);
    if (rc < 0)
        return rc;
    *ret = v >= 0 ? v != 0 : (builtin ? false : file_enabled);
    return 0;
}

/* ---- the planner ---- */

/* A task of w for ev. ikey NULL: the trigger's key "task:WORKFLOW:SEQ"
 * and the workflow's `where` must hold; else ikey is the key, `where` is
 * not asked (the operator chose the workflow) and input is task.input.
 * 1 when task.created was emitted; 0 when not, why (may be NULL) saying
 * why when it was a failure. */
static int plan_one(FlowEngine *e, Store *rd, const FlowWorkflow *w, const Event *ev, json_t *evj,
                    int depth, const char *ikey_given, const json_t *input, ReactorEmit *out,
                    Err *why)
{
    Err err = { 0 };
    json_t *env = json_pack("{s:O}", "event", evj);
    char chunk[FLOW_NAME_MAX + 32];
    if (w->on_where && !ikey_given) {
        bool yes = false;
        snprintf(chunk, sizeof chunk, "%s:on.where", w->name);
        if (flow_lua_test(e->planner_lua, w->on_where, chunk, env, &yes, &err) < 0) {
            log_warn("workflow trigger failed",
                     json_pack("{s:s, s:I, s:s}", "workflow", w->name, "seq", (json_int_t)ev->seq,
                               "error", err.msg));
            if (why)
                err_set(why, ERR_INVAL, "the trigger condition failed: %s", err.msg);
            json_decref(env);
            return 0;
        }
        if (!yes) {
            json_decref(env);
            return 0;
        }
    }
    char *key = NULL;
    if (w->concurrency) {
        json_t *k = NULL;
        snprintf(chunk, sizeof chunk, "%s:concurrency", w->name);
        if (flow_lua_eval(e->planner_lua, w->concurrency, chunk, env, &k, &err) < 0) {
            /* without its key the task could run beside another: none */
            log_error("workflow concurrency key failed: no task",
                      json_pack("{s:s, s:I, s:s}", "workflow", w->name, "seq",
                                (json_int_t)ev->seq, "error", err.msg));
            if (why)
                err_set(why, ERR_INVAL, "the workflow's concurrency key failed: %s", err.msg);
            json_decref(env);
            return 0;
        } else if (json_is_string(k)) {
            key = xstrdup(json_string_value(k));
        } else if (!json_is_null(k)) {
            Buf b;
            buf_init(&b, 0);
            core_json_canonical(k, &b);
            key = xstrdup(buf_cstr(&b));
            buf_done(&b);
        }
        json_decref(k);
    }
    json_decref(env);
    if (key) {
        char *scoped = xmalloc(strlen(w->name) + strlen(key) + 2);
        sprintf(scoped, "%s:%s", w->name, key);
        free(key);
        key = scoped;
    }
    char id[CORE_ULID_LEN + 1], ikey[160];
    core_ulid_new(id);
    if (ikey_given)
        snprintf(ikey, sizeof ikey, "%s", ikey_given);
    else
        snprintf(ikey, sizeof ikey, "task:%s:%lld", w->name, (long long)ev->seq);
    Event *te = NULL;
    /* The definition rides along until the planner sees its version stored
     * (a cache of what is confirmed, so a batch that failed cannot lose it). */
    bool stored = json_object_get(e->stored_versions, w->version) != NULL;
    if (!stored && flow__version_stored(rd, w->version)) {
        json_object_set_new(e->stored_versions, w->version, json_true());
        stored = true;
    }
    int rc = flow__task_event(w, id, ev->seq, depth, key, input, ev->subject, ikey, !stored,
                              ledger_limits(e->l), &te, &err);
    free(key);
    if (rc < 0) {
        log_error("task.created refused", json_pack("{s:s, s:s}", "workflow", w->name, "error",
                                                     err.msg));
        if (why)
            err_set(why, err.code ? err.code : ERR_INVAL, "task.created refused: %s", err.msg);
        return 0;
    }
    ledger_reactor_emit(out, te);
    return 1;
}

static int plan_full(FlowEngine *e, Store *rd, const Event *ev, ReactorEmit *out, Err *err);

/* An event the planner reads: the workflows' settings, a schedule firing,
 * an approved goal, or a type some workflow (enabled or not) starts on. */
static bool plan_wants(void *ctx, const char *t)
{
    FlowEngine *e = ctx;
    if (!strcmp(t, "workflow.enabled") || !strcmp(t, "workflow.disabled") ||
        !strcmp(t, "schedule.fired") || !strcmp(t, "goal.approved"))
        return true;
    for (size_t i = 0; !internal_type(t) && i < e->cat.n; i++)
        if (e->cat.items[i]->on_event && type_matches(e->cat.items[i]->on_event, t))
            return true;
    return false;
}

/* The planner reads events without their data: most are the engine's own
 * or of types no workflow is triggered by. Only an event some enabled
 * workflow may start on is read whole. */
static int plan(void *ctx, Store *rd, const Event *ev, ReactorEmit *out, Err *err)
{
    FlowEngine *e = ctx;
    const char *t = ev->type;
    /* An event some workflow, enabled or not, starts on commits its step
     * at once: handled again after a crash, it would meet the workflows'
     * settings of the restart (the reactor is lazy: docs/internals). */
    if (!plan_wants(e, t))
        return 0;
    ledger_reactor_keep(out);
    bool want = !strcmp(t, "workflow.enabled") || !strcmp(t, "workflow.disabled") ||
                !strcmp(t, "schedule.fired") || !strcmp(t, "goal.approved");
    for (size_t i = 0; !want && !internal_type(t) && i < e->cat.n; i++) {
        const FlowWorkflow *w = e->cat.items[i];
        want = w->on_event && type_matches(w->on_event, t) && wf_enabled(e->enabled, w);
    }
    if (!want)
        return 0;
    if (ev->data_len > 0) /* read whole already */
        return plan_full(e, rd, ev, out, err);
    Event *full = NULL;
    int rc = ledger_event_get(rd, ev->seq, NULL, &full, err);
    if (rc == 0)
        rc = plan_full(e, rd, full, out, err);
    ledger_event_free(full);
    return rc;
}

/* An approved goal: its task, of the workflow it matched (from the
 * catalog, enabled or not: the operator chose it) or of the graph it
 * composed (the definition in the event, validated again here). When
 * neither can be had, goal.failed says why. */
static void plan_goal(FlowEngine *e, Store *rd, const Event *ev, ReactorEmit *out)
{
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    const char *goal = json_string_value(json_object_get(d, "goal"));
    const char *kind = json_string_value(json_object_get(d, "kind"));
    const char *name = json_string_value(json_object_get(d, "workflow"));
    char why[ERR_MSG_MAX + 64] = "";
    FlowWorkflow *own = NULL;
    const FlowWorkflow *w = NULL;
    if (!goal || !kind || !name) {
        json_decref(d);
        return;
    }
    /* Only the goal.approved that moved the goal to approved starts it: a
     * rejection that won a race against this approval leaves the goal
     * rejected (the projection ignores a later goal.approved). */
    char gstatus[16] = "";
    int64_t approved_seq = -1;
    StoreStmt *gs;
    Err gerr = { 0 };
    if (store_prepare(rd, "SELECT status, coalesce(approved_seq, -1) FROM goals WHERE id = ?1",
                      &gs, &gerr) == 0) {
        store_bind_text(gs, 1, goal, strlen(goal));
        if (store_step(gs, &gerr) == STORE_ROW) {
            snprintf(gstatus, sizeof gstatus, "%s", store_col_text(gs, 0, NULL));
            approved_seq = store_col_int(gs, 1);
        }
        store_stmt_done(gs);
    }
    if (approved_seq != ev->seq) {
        snprintf(why, sizeof why, "the goal is %s, not approved by this decision",
                 gerr.code ? gerr.msg : gstatus[0] ? gstatus : "unknown");
    } else if (!strcmp(kind, "composed")) {
        Err err = { 0 };
        char want[FLOW_NAME_MAX + 1];
        flow__goal_workflow_name(goal, want);
        if (flow_workflow_from_json(json_object_get(d, "definition"), &own, &err) < 0)
            snprintf(why, sizeof why, "the approved graph does not validate: %s", err.msg);
        else if (strcmp(own->name, want))
            snprintf(why, sizeof why, "the approved graph is named '%s', not '%s'", own->name,
                     want);
        else if (flow__goal_graph_check(own, &err) < 0)
            snprintf(why, sizeof why, "the approved graph is refused: %s", err.msg);
        else
            w = own;
    } else if (!(w = flow_catalog_find(&e->cat, name))) {
        snprintf(why, sizeof why, "no workflow named '%s' in the catalog", name);
    } else {
        /* the operator approved the version the proposal showed */
        const char *version = json_string_value(json_object_get(d, "version"));
        if (version && strcmp(version, w->version)) {
            snprintf(why, sizeof why,
                     "the workflow '%s' changed since it was proposed (proposed version "
                     "%.12s, the planner's %.12s: the file changed after the proposal, or "
                     "after the planner started): submit the goal again",
                     name, version, w->version);
            w = NULL;
        }
    }
    if (w && 1 > e->cfg.flow_depth_max) {
        snprintf(why, sizeof why, "causal depth limit %d", e->cfg.flow_depth_max);
        w = NULL;
    }
    if (w) {
        char key[CORE_ULID_LEN + 16];
        snprintf(key, sizeof key, "task:goal:%s", goal);
        json_t *evj = ledger_event_to_json(ev);
        const json_t *input = json_object_get(d, "input");
        Err perr = { 0 };
        if (!plan_one(e, rd, w, ev, evj, 1, key, input ? input : NULL, out, &perr)) {
            /* an approved goal whose task could not be made: not left
             * "approved" for ever */
            snprintf(why, sizeof why, "%s", perr.code ? perr.msg : "no task was made");
            w = NULL;
        }
        json_decref(evj);
    }
    if (!w) {
        log_warn("goal not started", json_pack("{s:s, s:s}", "goal", goal, "error", why));
        Event *fe = NULL;
        Err err = { 0 };
        char key[CORE_ULID_LEN + 16];
        snprintf(key, sizeof key, "goal.failed:%s", goal);
        json_t *fd = json_pack("{s:s, s:s}", "goal", goal, "error", why);
        if (ledger_event_new("goal.failed", "planner", NULL, fd, key, ledger_limits(e->l), &fe,
                             &err) == 0)
            ledger_reactor_emit(out, fe);
        json_decref(fd);
    }
    flow_workflow_free(own);
    json_decref(d);
}

static int plan_full(FlowEngine *e, Store *rd, const Event *ev, ReactorEmit *out, Err *err)
{
    if (!strcmp(ev->type, "goal.approved"))
        plan_goal(e, rd, ev, out);
    if (!strcmp(ev->type, "workflow.enabled") || !strcmp(ev->type, "workflow.disabled")) {
        json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
        const char *name = json_string_value(json_object_get(d, "workflow"));
        if (name)
            json_object_set_new(e->enabled, name,
                                json_boolean(!strcmp(ev->type, "workflow.enabled")));
        json_decref(d);
        return 0;
    }
    bool fired = !strcmp(ev->type, "schedule.fired");
    if (!fired && internal_type(ev->type))
        return 0;
    json_t *evj = NULL;
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    int depth = (int)json_integer_value(json_object_get(json_object_get(d, "caused_by"), "depth"));
    const char *only = fired ? json_string_value(json_object_get(d, "workflow")) : NULL;
    for (size_t i = 0; i < e->cat.n; i++) {
        const FlowWorkflow *w = e->cat.items[i];
        if (fired ? !only || strcmp(only, w->name) || !w->on_schedule
                  : !w->on_event || !type_matches(w->on_event, ev->type))
            continue;
        if (!wf_enabled(e->enabled, w))
            continue;
        if (depth + 1 > e->cfg.flow_depth_max) {
            log_warn("causal depth limit: no task",
                     json_pack("{s:s, s:I, s:i}", "workflow", w->name, "seq", (json_int_t)ev->seq,
                               "depth_max", e->cfg.flow_depth_max));
            continue;
        }
        if (!evj)
            evj = ledger_event_to_json(ev);
        plan_one(e, rd, w, ev, evj, depth + 1, NULL, NULL, out, NULL);
    }
    json_decref(evj);
    json_decref(d);
    (void)err;
    return 0;
}

/* The planner's position moved: a commit without new events (or none at
 * all) wakes no ledger_wait(), but the runner's idleness depends on it, so
 * the runner is woken while someone waits for idleness. */
static void planned(void *ctx)
{
    FlowEngine *e = ctx;
    pthread_mutex_lock(&e->mu);
    bool waited = e->idle_waiters > 0;
    pthread_mutex_unlock(&e->mu);
    if (waited)
        ledger_wake(e->l);
}

/* ---- definitions by version (tasks keep the version they started with) ---- */

static const FlowWorkflow *definition(FlowEngine *e, Store *rd, const char *version, Err *err)
{
    pthread_mutex_lock(&e->cache_mu);
    json_t *idx = json_object_get(e->versions, version);
    if (idx) {
        const FlowWorkflow *w = e->defs[json_integer_value(idx)];
        pthread_mutex_unlock(&e->cache_mu);
        return w;
    }
    pthread_mutex_unlock(&e->cache_mu);
    StoreStmt *st;
    if (store_prepare(rd, "SELECT definition FROM task_definitions WHERE version = ?1", &st, err) <
        0)
        return NULL;
    store_bind_text(st, 1, version, strlen(version));
    json_t *def = NULL;
    int rc = store_step(st, err);
    if (rc == STORE_ROW) {
        size_t len;
        const char *text = store_col_text(st, 0, &len);
        core_json_parse(text, len, &def, err);
    }
    store_stmt_done(st);
    if (rc != STORE_ROW) {
        if (rc >= 0)
            err_set(err, ERR_NOTFOUND, "no definition of version %s", version);
        return NULL;
    }
    FlowWorkflow *w = NULL;
    rc = def ? flow_workflow_from_json(def, &w, err) : -1;
    json_decref(def);
    if (rc < 0)
        return NULL;
    pthread_mutex_lock(&e->cache_mu);
    idx = json_object_get(e->versions, version);
    if (idx) { /* another thread was quicker */
        flow_workflow_free(w);
        w = e->defs[json_integer_value(idx)];
    } else {
        e->defs = xrealloc(e->defs, (e->n_defs + 1) * sizeof *e->defs);
        e->defs[e->n_defs] = w;
        json_object_set_new(e->versions, version, json_integer((json_int_t)e->n_defs));
        e->n_defs++;
    }
    pthread_mutex_unlock(&e->cache_mu);
    return w;
}

/* ---- task context ---- */

typedef struct TaskCtx {
    char workflow[FLOW_NAME_MAX + 1];
    char version[CORE_SHA256_HEX + 1];
    int64_t trigger_seq;
    int depth;
    char *subject;
    json_t *env; /* event, steps, task */
    const FlowWorkflow *wf;
} TaskCtx;

static void task_ctx_done(TaskCtx *c)
{
    free(c->subject);
    json_decref(c->env);
    memset(c, 0, sizeof *c);
}

/* What never changes about a task (its row and trigger event), cached by
 * task id so that each of its steps reads only the steps' outputs. Shared
 * read-only between threads (jansson's reference counts are atomic). */
#define TASK_CACHE_MAX 8192

static json_t *task_fixed(FlowEngine *e, Store *rd, const char *task, Err *err)
{
    pthread_mutex_lock(&e->cache_mu);
    json_t *f = json_incref(json_object_get(e->tasks_cache, task));
    pthread_mutex_unlock(&e->cache_mu);
    if (f)
        return f;
    StoreStmt *st;
    if (store_prepare(rd, "SELECT workflow, version, trigger_seq, depth, input FROM tasks WHERE id = ?1",
                      &st, err) < 0)
        return NULL;
    store_bind_text(st, 1, task, strlen(task));
    int rc = store_step(st, err);
    if (rc == STORE_ROW) {
        size_t len;
        const char *in = store_col_text(st, 4, &len);
        json_t *input = NULL;
        if (in)
            core_json_parse(in, len, &input, err);
        f = json_pack("{s:s, s:s, s:I, s:I, s:o}", "workflow", store_col_text(st, 0, NULL),
                      "version", store_col_text(st, 1, NULL), "trigger_seq",
                      (json_int_t)store_col_int(st, 2), "depth", (json_int_t)store_col_int(st, 3),
                      "input", input ? input : json_object());
    }
    store_stmt_done(st);
    if (!f) {
        if (rc >= 0)
            err_set(err, ERR_NOTFOUND, "no task %s", task);
        return NULL;
    }
    int64_t trigger = json_integer_value(json_object_get(f, "trigger_seq"));
    Event *ev = NULL;
    if (trigger > 0 && ledger_event_get(rd, trigger, NULL, &ev, err) == 0) {
        json_object_set_new(f, "event", ledger_event_to_json(ev));
        if (ev->subject)
            json_object_set_new(f, "subject", json_string(ev->subject));
        ledger_event_free(ev);
    } else {
        json_object_set_new(f, "event", json_null());
    }
    pthread_mutex_lock(&e->cache_mu);
    if (json_object_size(e->tasks_cache) >= TASK_CACHE_MAX)
        json_object_clear(e->tasks_cache);
    json_object_set(e->tasks_cache, task, f);
    pthread_mutex_unlock(&e->cache_mu);
    return f;
}

static int task_ctx_load(FlowEngine *e, Store *rd, const char *task, TaskCtx *c, Err *err)
{
    memset(c, 0, sizeof *c);
    json_t *f = task_fixed(e, rd, task, err);
    if (!f)
        return err->code < 0 ? err->code : ERR_INTERNAL;
    snprintf(c->workflow, sizeof c->workflow, "%s", json_string_value(json_object_get(f, "workflow")));
    snprintf(c->version, sizeof c->version, "%s", json_string_value(json_object_get(f, "version")));
    c->trigger_seq = json_integer_value(json_object_get(f, "trigger_seq"));
    c->depth = (int)json_integer_value(json_object_get(f, "depth"));
    const char *subject = json_string_value(json_object_get(f, "subject"));
    c->subject = subject ? xstrdup(subject) : NULL;
    if (!(c->wf = definition(e, rd, c->version, err))) {
        json_decref(f);
        return err->code < 0 ? err->code : ERR_INTERNAL;
    }
    json_t *steps = json_object();
    StoreStmt *st;
    int rc = store_prepare(rd, "SELECT step_id, status, output FROM task_steps WHERE task_id = ?1",
                           &st, err);
    if (rc < 0) {
        json_decref(f);
        json_decref(steps);
        return rc;
    }
    store_bind_text(st, 1, task, strlen(task));
    while ((rc = store_step(st, err)) == STORE_ROW) {
        size_t len;
        const char *out = store_col_text(st, 2, &len);
        json_t *o = NULL;
        if (out)
            core_json_parse(out, len, &o, err);
        json_object_set_new(steps, store_col_text(st, 0, NULL),
                            json_pack("{s:s, s:o}", "status", store_col_text(st, 1, NULL),
                                      "output", o ? o : json_null()));
    }
    store_stmt_done(st);
    json_t *t = json_pack("{s:s, s:s, s:I, s:i, s:O}", "id", task, "workflow", c->workflow,
                          "trigger_seq", (json_int_t)c->trigger_seq, "depth", c->depth, "input",
                          json_object_get(f, "input"));
    c->env = json_pack("{s:O, s:o, s:o}", "event", json_object_get(f, "event"), "steps", steps,
                       "task", t);
    json_decref(f);
    return rc < 0 ? rc : 0;
}

/* ---- appending a step's outcome ---- */

/* The key of a step in `dispatched`: "TASK/STEP" while a worker runs it,
 * "TASK/STEP/w" while the runner completes its wait. The two differ because
 * the worker's step.waiting may be seen (and its wait completed) before its
 * own append's acknowledgement has released the first. */
#define DISPATCH_KEY_MAX (CORE_ULID_LEN + FLOW_NAME_MAX + 4)

static void dispatch_key(char out[DISPATCH_KEY_MAX], const char *task, const char *step, bool wait)
{
    snprintf(out, DISPATCH_KEY_MAX, "%s/%s%s", task, step, wait ? "/w" : "");
}

typedef struct Pending {
    FlowEngine *e;
    char key[DISPATCH_KEY_MAX];
} Pending;

static void released(void *ctx, int rc, const Err *err, const LedgerAppendResult *r, size_t n)
{
    Pending *p = ctx;
    FlowEngine *e = p->e;
    if (rc < 0)
        log_error("step outcome not recorded", json_pack("{s:s, s:s}", "step", p->key, "error",
                                                          err->msg));
    else if (log_get_level() <= LOG_DEBUG)
        log_debug("step recorded", json_pack("{s:s, s:I}", "step", p->key, "seq",
                                             (json_int_t)(n ? r[n - 1].seq : 0)));
    pthread_mutex_lock(&e->mu);
    json_object_del(e->dispatched, p->key);
    if (rc == 0 && r && n > 0)
        json_object_set_new(e->acked, p->key, json_integer(r[n - 1].seq));
    e->inflight--;
    /* A runner pass that began after this outcome's commit but before this
     * acknowledgement saw it in flight and did not call the engine idle;
     * nothing else may wake it, so the last acknowledgement does while
     * someone waits for idleness. */
    bool wake = rc < 0 || (e->inflight == 0 && e->idle_waiters > 0);
    pthread_mutex_unlock(&e->mu);
    if (wake) /* after a failure the step is ready again: let the runner see it */
        ledger_wake(e->l);
    free(p);
    (void)r;
    (void)n;
}

/* Appends evs (ownership passes) for the step task/step, which was counted
 * in dispatched/inflight by the caller. */
static void submit(FlowEngine *e, const char *task, const char *step, bool wait, Event **evs,
                   size_t n)
{
    Pending *p = xcalloc(1, sizeof *p);
    p->e = e;
    dispatch_key(p->key, task, step, wait);
    Err err = { 0 };
    if (ledger_append_async(e->l, evs, n, released, p, &err) < 0) {
        Err copy = err;
        released(p, copy.code, &copy, NULL, 0);
    }
}

/* Builds a step event (data's reference is stolen); NULL with the reason in
 * why (may be NULL) when the ledger refuses it, e.g. an output too large. */
static Event *step_event_why(FlowEngine *e, const char *type, const char *workflow,
                             const char *subject, json_t *data, const char *key, Err *why)
{
    char source[FLOW_NAME_MAX + 16];
    flow__source(workflow, source);
    Event *ev = NULL;
    Err err = { 0 };
    if (ledger_event_new(type, source, subject, data, key, ledger_limits(e->l), &ev, &err) < 0) {
        log_error("step event refused", json_pack("{s:s, s:s}", "type", type, "error", err.msg));
        if (why)
            *why = err;
    }
    json_decref(data);
    return ev;
}

static Event *step_event(FlowEngine *e, const char *type, const char *workflow,
                         const char *subject, json_t *data, const char *key)
{
    return step_event_why(e, type, workflow, subject, data, key, NULL);
}

/* The delay before attempt `attempt + 1`: exponential, capped, with jitter
 * (uniform in [delay/2, delay]). */
static int64_t backoff(const FlowStepDef *s, int attempt)
{
    double d = (double)s->backoff_ms * pow(2.0, attempt - 1);
    if (d > (double)s->max_delay_ms)
        d = (double)s->max_delay_ms;
    uint32_t r = 0;
    core_random_bytes(&r, sizeof r);
    return (int64_t)(d / 2 + (d / 2) * ((double)r / 4294967295.0));
}

/* ---- workers ---- */

/* Whether s may run as far as rejections go: a step that is the on_reject
 * target of a gated step it needs runs only when one of those was rejected
 * (the branch a rejection takes, not a step of the approved path). */
static bool reject_branch_ok(const FlowWorkflow *wf, const FlowStepDef *s, const json_t *env)
{
    bool target = false;
    for (size_t i = 0; i < s->n_needs; i++) {
        const FlowStepDef *g = NULL;
        for (size_t k = 0; s->needs[i] && k < wf->n_steps; k++)
            if (!strcmp(wf->steps[k].id, s->needs[i]))
                g = &wf->steps[k];
        const char *to = g ? json_string_value(json_object_get(g->approval, "on_reject")) : NULL;
        if (!to || strcmp(to, s->id))
            continue;
        target = true;
        const json_t *st = json_object_get(json_object_get(env, "steps"), g->id);
        const char *decision =
            json_string_value(json_object_get(json_object_get(st, "output"), "decision"));
        if (decision && !strcmp(decision, "reject"))
            return true;
    }
    return !target;
}

static void run_job(FlowEngine *e, Store *rd, FlowLua *lua, const Job *j)
{
    Err err = { 0 };
    TaskCtx c;
    int64_t started = core_time_now_ms();
    char started_s[CORE_TIME_LEN + 1], finished_s[CORE_TIME_LEN + 1], key[192];
    time_str(started, started_s);
    if (task_ctx_load(e, rd, j->task, &c, &err) < 0) {
        log_error("step context", json_pack("{s:s, s:s, s:s}", "task", j->task, "step", j->step,
                                            "error", err.msg));
        Event *ev = NULL;
        if (err.code == ERR_INVAL || (err.code == ERR_NOTFOUND && c.workflow[0])) {
            /* its definition is missing or broken: that will not pass */
            json_t *d = json_pack("{s:s, s:s, s:i, s:s, s:b, s:b, s:s}", "task", j->task, "step",
                                  j->step, "attempt", j->attempt, "error", err.msg, "retryable",
                                  0, "final", 1, "on_error", "fail");
            snprintf(key, sizeof key, "step.failed:%s:%s:%d", j->task, j->step, j->attempt);
            ev = step_event(e, "step.failed", c.workflow, NULL, d, key);
        }
        task_ctx_done(&c);
        submit(e, j->task, j->step, false, ev ? &ev : NULL, ev ? 1 : 0);
        return;
    }
    const FlowStepDef *s = NULL;
    for (size_t i = 0; i < c.wf->n_steps; i++)
        if (!strcmp(c.wf->steps[i].id, j->step))
            s = &c.wf->steps[i];
    json_t *task = json_object_get(c.env, "task");
    /* time and randomness reach a step only from here, and are recorded */
    uint32_t rnd = 0;
    core_random_bytes(&rnd, sizeof rnd);
    double random = (double)rnd / 4294967296.0;
    json_object_set_new(task, "attempt", json_integer(j->attempt));
    json_object_set_new(task, "now", json_string(started_s));
    json_object_set_new(task, "random", json_real(random));
    FlowStepRun run = { .data_dir = e->data_dir, .task_id = j->task, .wf = c.wf, .step = s, .rd = rd,
                        .attempt = j->attempt, .depth = c.depth, .subject = c.subject,
                        .env = c.env, .lua = lua, .catalog = &e->cat,
                        .limits = ledger_limits(e->l), .now_ms = started, .cfg = &e->cfg,
                        .router = e->router,
                        .resume = j->resume };
    snprintf(run.key, sizeof run.key, "%s:%s", j->task, j->step);
    run.depth_max = e->cfg.flow_depth_max;
    char chunk[2 * FLOW_NAME_MAX + 16];
    json_t *inputs = NULL;
    if (!s) {
        run.outcome = FLOW_FAIL;
        snprintf(run.error, sizeof run.error, "step '%s' is not in the task's definition", j->step);
        goto record;
    }
    if (!j->resume && !reject_branch_ok(c.wf, s, c.env)) {
        json_t *d = json_pack("{s:s, s:s, s:i, s:s}", "task", j->task, "step", j->step,
                              "attempt", j->attempt, "reason", "condition: no rejection to handle");
        snprintf(key, sizeof key, "step.skipped:%s:%s", j->task, j->step);
        Event *ev = step_event(e, "step.skipped", c.wf->name, c.subject, d, key);
        submit(e, j->task, j->step, false, ev ? &ev : NULL, ev ? 1 : 0);
        task_ctx_done(&c);
        return;
    }
    if (s->if_expr && !j->resume) { /* it held when the step began */
        bool yes = false;
        snprintf(chunk, sizeof chunk, "%s:steps.%s.if", c.wf->name, s->id);
        if (flow_lua_test(lua, s->if_expr, chunk, c.env, &yes, &err) < 0) {
            run.outcome = FLOW_FAIL;
            snprintf(run.error, sizeof run.error, "%s", err.msg);
            goto record;
        }
        if (!yes) {
            json_t *d = json_pack("{s:s, s:s, s:i, s:s}", "task", j->task, "step", j->step,
                                  "attempt", j->attempt, "reason", "condition");
            snprintf(key, sizeof key, "step.skipped:%s:%s", j->task, j->step);
            Event *ev = step_event(e, "step.skipped", c.wf->name, c.subject, d, key);
            submit(e, j->task, j->step, false, ev ? &ev : NULL, ev ? 1 : 0);
            task_ctx_done(&c);
            return;
        }
    }
    snprintf(chunk, sizeof chunk, "%s:steps.%s.with", c.wf->name, s->id);
    if (flow_lua_render_json(lua, s->with, chunk, c.env, &inputs, &err) < 0) {
        run.outcome = FLOW_FAIL;
        snprintf(run.error, sizeof run.error, "%s", err.msg);
        goto record;
    }
    run.inputs = inputs;
    FlowStepHandler h = flow__step_handler(s->kind);
    if (!h) {
        run.outcome = FLOW_FAIL;
        snprintf(run.error, sizeof run.error, "no handler for step kind '%s'", s->kind);
    } else {
        h(&run);
    }
    if (run.outcome != FLOW_FAIL && s->timeout_ms > 0 &&
        core_time_now_ms() - started > s->timeout_ms) {
        flow__step_run_done(&run);
        run.outcome = FLOW_FAIL;
        run.retryable = true;
        snprintf(run.error, sizeof run.error, "timed out after %lld ms", (long long)s->timeout_ms);
    }
record:;
    time_str(core_time_now_ms(), finished_s);
    size_t n = run.n_emit;
    Event **evs = xmalloc((n + 1) * sizeof *evs);
    for (size_t i = 0; i < n; i++)
        evs[i] = run.emit[i];
    free(run.emit);
    run.emit = NULL;
    run.n_emit = 0;
    Event *own = NULL;
    json_t *d;
    Err why = { 0 };
    if (run.outcome == FLOW_DONE) {
        d = json_pack("{s:s, s:s, s:i, s:O, s:s, s:s}", "task", j->task, "step", j->step,
                      "attempt", j->attempt, "output", run.output ? run.output : json_null(),
                      "started_at", started_s, "finished_at", finished_s);
        snprintf(key, sizeof key, "step.completed:%s:%s", j->task, j->step);
        json_object_set_new(d, "random_u32", json_integer(rnd)); /* exact, cheap to print */
        /* for the trace: what the step was given, unless another event of
         * the step shows it (the event an emit appends, a gate's payload) */
        if (json_object_size(inputs) > 0 && strcmp(s->kind, "emit") &&
            strcmp(s->kind, "approval") && !flow_kind_is_effect(s->kind))
            json_object_set(d, "inputs", inputs);
        own = step_event_why(e, "step.completed", c.wf->name, c.subject, d, key, &why);
    } else if (run.outcome == FLOW_WAIT) {
        d = json_pack("{s:s, s:s, s:i, s:s, s:s}", "task", j->task, "step", j->step, "attempt",
                      j->attempt, "kind", run.wait_kind, "started_at", started_s);
        if (run.wait_until_ms > 0) {
            char until[CORE_TIME_LEN + 1];
            time_str(run.wait_until_ms, until);
            json_object_set_new(d, "until", json_string(until));
        }
        if (run.wait_event)
            json_object_set_new(d, "event", json_string(run.wait_event));
        if (run.wait_where)
            json_object_set_new(d, "where", json_string(run.wait_where));
        /* a step may wait twice in one attempt (an approval, then its effect) */
        if (j->resume)
            snprintf(key, sizeof key, "step.waiting:%s:%s:%d:%s:%lld", j->task, j->step,
                     j->attempt, run.wait_kind, (long long)started);
        else
            snprintf(key, sizeof key, "step.waiting:%s:%s:%d:%s", j->task, j->step, j->attempt,
                     run.wait_kind);
        own = step_event_why(e, "step.waiting", c.wf->name, c.subject, d, key, &why);
    } else if (run.outcome == FLOW_SKIP && run.then_action) {
        /* a rejection that cancels or compensates the task: the action ends
         * the task and cancels the step with it (a skip first would let a
         * task whose last step this is succeed) */
        d = json_pack("{s:s, s:s, s:s, s:s, s:O}", "task", j->task, "action", run.then_action,
                      "by", "approval", "step", j->step, "output",
                      run.output ? run.output : json_null());
        snprintf(key, sizeof key, "task.action:%s:%s:rejected", j->task, j->step);
        own = step_event_why(e, "task.action", c.wf->name, c.subject, d, key, &why);
    } else if (run.outcome == FLOW_SKIP) {
        d = json_pack("{s:s, s:s, s:i, s:s, s:s, s:O}", "task", j->task, "step", j->step,
                      "attempt", j->attempt, "skip", run.skip ? run.skip : "operator", "reason",
                      run.skip && !strcmp(run.skip, "rejected") ? "rejected by the operator"
                                                                : "canceled by the operator",
                      "output", run.output ? run.output : json_null());
        if (run.skip_goto[0])
            json_object_set_new(d, "goto", json_string(run.skip_goto));
        snprintf(key, sizeof key, "step.skipped:%s:%s", j->task, j->step);
        own = step_event_why(e, "step.skipped", c.wf->name, c.subject, d, key, &why);
    }
    if (run.outcome != FLOW_FAIL && !own) {
        /* An outcome the ledger refuses would be run again forever: the step
         * fails instead, for good, and emits nothing. */
        for (size_t i = 0; i < n; i++)
            ledger_event_free(evs[i]);
        n = 0;
        run.outcome = FLOW_FAIL;
        run.retryable = false;
        snprintf(run.error, sizeof run.error, "its outcome could not be recorded: %.400s", why.msg);
    }
    if (run.outcome == FLOW_FAIL) {
        bool again = run.retryable && s && j->attempt <= s->retry_max;
        const char *on_error = !s ? "fail"
                             : s->on_error == FLOW_ON_ERROR_CONTINUE ? "continue"
                             : s->on_error == FLOW_ON_ERROR_INBOX || run.force_inbox ? "inbox"
                                                                      : "fail";
        d = json_pack("{s:s, s:s, s:i, s:s, s:b, s:b, s:s, s:s, s:s}", "task", j->task, "step",
                      j->step, "attempt", j->attempt, "error", run.error, "retryable",
                      run.retryable, "final", !again, "on_error", on_error, "started_at",
                      started_s, "finished_at", finished_s);
        json_object_set_new(d, "random_u32", json_integer(rnd));
        if (inputs) /* what the operator needs to judge a failure in the inbox */
            json_object_set(d, "inputs", inputs);
        if (again) {
            char next[CORE_TIME_LEN + 1];
            time_str(core_time_now_ms() + backoff(s, j->attempt), next);
            json_object_set_new(d, "next_attempt_at", json_string(next));
        }
        snprintf(key, sizeof key, "step.failed:%s:%s:%d", j->task, j->step, j->attempt);
        json_t *lean = json_deep_copy(d);
        json_object_del(lean, "inputs");
        own = step_event(e, "step.failed", c.wf->name, c.subject, d, key);
        if (!own) /* the inputs made it too large */
            own = step_event(e, "step.failed", c.wf->name, c.subject, lean, key);
        else
            json_decref(lean);
        log_warn("step failed", json_pack("{s:s, s:s, s:i, s:s, s:b}", "task", j->task, "step",
                                          j->step, "attempt", j->attempt, "error", run.error,
                                          "final", !again));
    }
    if (own)
        evs[n++] = own;
    submit(e, j->task, j->step, false, evs, n);
    free(evs);
    json_decref(inputs);
    flow__step_run_done(&run);
    task_ctx_done(&c);
}

/* A worker's own read connection and Lua state, made before it starts. */
struct Worker {
    FlowEngine *e;
    pthread_t thread;
    Store *rd;
    FlowLua *lua;
};

static void *worker_main(void *arg)
{
    Worker *w = arg;
    FlowEngine *e = w->e;
    pthread_setname_np(pthread_self(), "flow-worker");
    /* Every outcome goes through the ledger's one writer, which applies them
     * in turn: when the cores are short, the workers give way to it (and to
     * the server's threads) instead of sharing the time evenly with it.
     * Raising one's own niceness needs no privilege. */
    if (e->cfg.flow_worker_nice > 0) {
        errno = 0;
        int prio = getpriority(PRIO_PROCESS, (id_t)gettid());
        if (errno == 0 &&
            setpriority(PRIO_PROCESS, (id_t)gettid(), prio + e->cfg.flow_worker_nice) < 0)
            log_warn("worker niceness not set", json_pack("{s:s}", "error", strerror(errno)));
    }
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->q_first && !e->workers_stop)
            pthread_cond_wait(&e->job_cond, &e->mu);
        if (!e->q_first || e->workers_stop)
            break;
        Job *j = e->q_first;
        e->q_first = j->next;
        if (!e->q_first)
            e->q_last = NULL;
        e->q_len--;
        /* the queue runs low: the runner tops it up now rather than at the
         * next commit, which may be a whole group commit away */
        bool low = e->q_len == e->q_max / 4;
        pthread_mutex_unlock(&e->mu);
        if (low)
            ledger_wake(e->l);
        run_job(e, w->rd, w->lua, j);
        free(j);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* Whether the step's last outcome (key) was acknowledged after seq snap,
 * the head when the caller's pass began: what the pass read of it may be
 * older than that outcome. Called with e->mu held. */
static bool stale(FlowEngine *e, const char *key, int64_t snap)
{
    json_t *a = json_object_get(e->acked, key);
    return a && json_integer_value(a) > snap;
}

/* Queues a job unless the step is already dispatched, or what the runner
 * read of it (at head snap or later) may predate its last outcome. */
static bool dispatch_job(FlowEngine *e, const char *task, const char *step, int attempt,
                         bool resume, int64_t snap)
{
    char key[DISPATCH_KEY_MAX];
    dispatch_key(key, task, step, false);
    pthread_mutex_lock(&e->mu);
    if (json_object_get(e->dispatched, key) || stale(e, key, snap)) {
        pthread_mutex_unlock(&e->mu);
        return false;
    }
    json_object_set_new(e->dispatched, key, json_true());
    e->inflight++;
    Job *j = xcalloc(1, sizeof *j);
    snprintf(j->task, sizeof j->task, "%s", task);
    snprintf(j->step, sizeof j->step, "%s", step);
    j->attempt = attempt;
    j->resume = resume;
    if (e->q_last)
        e->q_last->next = j;
    else
        e->q_first = j;
    e->q_last = j;
    e->q_len++;
    pthread_cond_signal(&e->job_cond);
    pthread_mutex_unlock(&e->mu);
    return true;
}

static bool dispatch(FlowEngine *e, const char *task, const char *step, int attempt,
                     int64_t snap)
{
    return dispatch_job(e, task, step, attempt, false, snap);
}

/* Marks a step dispatched for an outcome the runner appends itself. snap:
 * as for dispatch_job() (INT64_MAX when the caller read nothing stale, an
 * event it follows). */
static bool claim(FlowEngine *e, const char *task, const char *step, int64_t snap)
{
    char key[DISPATCH_KEY_MAX];
    dispatch_key(key, task, step, true);
    pthread_mutex_lock(&e->mu);
    bool fresh = !json_object_get(e->dispatched, key) && !stale(e, key, snap);
    if (fresh) {
        json_object_set_new(e->dispatched, key, json_true());
        e->inflight++;
    }
    pthread_mutex_unlock(&e->mu);
    return fresh;
}

static void schedule_arm(FlowEngine *e, Schedule *s, int64_t now, bool starting);

/* ---- waits on events ---- */

static void waiter_free(Waiter *w)
{
    free(w->type);
    free(w->where);
    free(w);
}

static void waiters_drop(FlowEngine *e, const char *task, const char *step)
{
    for (Waiter **p = &e->waiters; *p;) {
        Waiter *w = *p;
        if (!strcmp(w->task, task) && (!step || !strcmp(w->step, step))) {
            *p = w->next;
            waiter_free(w);
        } else {
            p = &w->next;
        }
    }
}

/* Completes the wait of w with the event ev (or a timeout when ev is NULL). */
static bool wait_complete(FlowEngine *e, const char *task, const char *step, int attempt,
                          const Event *ev, int64_t snap)
{
    if (!claim(e, task, step, snap))
        return false;
    TaskCtx c;
    Err err = { 0 };
    /* the context only names the source and subject: without it the wait
     * still ends (else it would come due again and again) */
    bool ctx = task_ctx_load(e, e->rd, task, &c, &err) == 0;
    char now[CORE_TIME_LEN + 1], key[192];
    time_str(core_time_now_ms(), now);
    json_t *out = ev ? json_pack("{s:o, s:b}", "event", ledger_event_to_json(ev), "timed_out", 0)
                     : json_pack("{s:n, s:b}", "event", "timed_out", 1);
    json_t *d = json_pack("{s:s, s:s, s:i, s:o, s:s}", "task", task, "step", step, "attempt",
                          attempt, "output", out, "finished_at", now);
    snprintf(key, sizeof key, "step.completed:%s:%s", task, step);
    Event *own = step_event(e, "step.completed", ctx ? c.wf->name : "unknown",
                            ctx ? c.subject : NULL, d, key);
    submit(e, task, step, true, own ? &own : NULL, own ? 1 : 0);
    task_ctx_done(&c);
    return true;
}

/* Whether ev satisfies w (type and `where`, with the task's globals and e). */
static bool wait_matches(FlowEngine *e, const Waiter *w, const Event *ev)
{
    if (ev->seq <= w->trigger_seq || !type_matches(w->type, ev->type))
        return false;
    if (!w->where)
        return true;
    TaskCtx c;
    Err err = { 0 };
    if (task_ctx_load(e, e->rd, w->task, &c, &err) < 0) {
        task_ctx_done(&c);
        return false;
    }
    json_object_set_new(c.env, "e", ledger_event_to_json(ev));
    bool yes = false;
    char chunk[2 * FLOW_NAME_MAX + 32];
    snprintf(chunk, sizeof chunk, "%s:steps.%s.with.where", c.workflow, w->step);
    if (flow_lua_test(e->runner_lua, w->where, chunk, c.env, &yes, &err) < 0)
        log_warn("wait condition failed", json_pack("{s:s, s:s, s:s}", "task", w->task, "step",
                                                     w->step, "error", err.msg));
    task_ctx_done(&c);
    return yes;
}

typedef struct Scan {
    FlowEngine *e;
    Waiter *w;
    const Event *found;
    Event *copy;
} Scan;

static int scan_one(void *ctx, const Event *ev)
{
    Scan *s = ctx;
    if (!wait_matches(s->e, s->w, ev))
        return 0;
    s->copy = NULL;
    Err err = { 0 };
    /* keep a copy: the borrowed event dies with the callback */
    ledger_event_get(s->e->rd, ev->seq, NULL, &s->copy, &err);
    return 1;
}

/* A new wait first looks back: an event that arrived after the task's
 * trigger but before the wait began counts. */
static void waiter_add(FlowEngine *e, const char *task, const char *step, int attempt,
                       const char *type, const char *where, int64_t upto)
{
    int64_t trigger = 0, consumed = 0;
    Err err = { 0 };
    store_query_int(e->rd, "SELECT trigger_seq FROM tasks WHERE id = ?1", task, 0, &trigger, &err);
    /* an event an earlier wait of the task took is not seen again */
    store_query_int(e->rd,
                    "SELECT coalesce(max(json_extract(output, '$.event.seq')), 0) FROM task_steps"
                    " WHERE task_id = ?1 AND kind = 'wait' AND status = 'succeeded'",
                    task, 0, &consumed, &err);
    if (consumed > trigger)
        trigger = consumed;
    Waiter *w = xcalloc(1, sizeof *w);
    snprintf(w->task, sizeof w->task, "%s", task);
    snprintf(w->step, sizeof w->step, "%s", step);
    w->attempt = attempt;
    w->type = xstrdup(type);
    w->where = where ? xstrdup(where) : NULL;
    w->trigger_seq = trigger;
    size_t tl = strlen(type);
    bool prefix = tl >= 2 && !strcmp(type + tl - 2, ".*");
    int64_t from = trigger;
    if (upto - from > WAIT_SCAN_MAX)
        from = upto - WAIT_SCAN_MAX;
    Scan s = { .e = e, .w = w };
    LedgerFilter f = { .type = prefix ? NULL : type, .after_seq = from };
    if (upto > from) {
        f.limit = upto - from;
        ledger_read(e->rd, &f, scan_one, &s, &err);
    }
    if (s.copy && s.copy->seq <= upto) {
        wait_complete(e, task, step, attempt, s.copy, INT64_MAX);
        ledger_event_free(s.copy);
        waiter_free(w);
        return;
    }
    ledger_event_free(s.copy);
    w->next = e->waiters;
    e->waiters = w;
}

/* What the runner does with one event it follows: registering and dropping
 * waits, re-arming schedules, and checking the event against the waits. */
static void handle_event(FlowEngine *e, const Event *ev)
{
    if (!strcmp(ev->type, "workflow.enabled") || !strcmp(ev->type, "workflow.disabled")) {
        json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
        const char *name = json_string_value(json_object_get(d, "workflow"));
        for (size_t i = 0; name && i < e->n_schedules; i++)
            if (!strcmp(e->schedules[i].wf->name, name))
                schedule_arm(e, &e->schedules[i], core_time_now_ms(), false);
        json_decref(d);
        return;
    }
    bool step_ev = !strncmp(ev->type, "step.", 5), action = !strcmp(ev->type, "task.action");
    if (step_ev || action) {
        json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
        const char *task = json_string_value(json_object_get(d, "task"));
        const char *step = json_string_value(json_object_get(d, "step"));
        const char *kind = json_string_value(json_object_get(d, "kind"));
        const char *type = json_string_value(json_object_get(d, "event"));
        if (task && step && !strcmp(ev->type, "step.waiting") && kind && !strcmp(kind, "event") &&
            type) {
            waiters_drop(e, task, step);
            /* scans to where the runner has read, so nothing falls between */
            waiter_add(e, task, step, (int)json_integer_value(json_object_get(d, "attempt")), type,
                       json_string_value(json_object_get(d, "where")), e->seen);
        } else if (task && strcmp(ev->type, "step.waiting")) {
            /* a wait ends with its step; all of a task's end with the task
             * (canceled, or failed by a step with on_error: fail) */
            const char *act = json_string_value(json_object_get(d, "action"));
            const char *on_error = json_string_value(json_object_get(d, "on_error"));
            bool task_ends = action ? act && (!strcmp(act, "cancel") || !strcmp(act, "compensate"))
                                    : !strcmp(ev->type, "step.failed") &&
                                          json_is_true(json_object_get(d, "final")) &&
                                          (!on_error || !strcmp(on_error, "fail"));
            if (task_ends)
                waiters_drop(e, task, NULL);
            else if (!action && step)
                waiters_drop(e, task, step);
        }
        json_decref(d);
        return;
    }
    for (Waiter **p = &e->waiters; *p;) {
        Waiter *w = *p;
        if (wait_matches(e, w, ev)) {
            *p = w->next;
            wait_complete(e, w->task, w->step, w->attempt, ev, INT64_MAX);
            waiter_free(w);
        } else {
            p = &w->next;
        }
    }
}

/* Reading the ledger only collects the events worth a look; they are
 * handled after the read, because handling runs queries (and scans) on the
 * same connection. */
typedef struct Follow {
    FlowEngine *e;
    int64_t *seqs;
    size_t n, cap;
} Follow;

static int follow_one(void *ctx, const Event *ev)
{
    Follow *f = ctx;
    FlowEngine *e = f->e;
    e->seen = ev->seq;
    /* Only what can change a wait or a schedule: a wait on an event
     * starting, anything ending a step or task that has a wait, workflows
     * switched on or off, and events a wait is looking for. */
    bool want = !strncmp(ev->type, "workflow.", 9) || !strcmp(ev->type, "step.waiting") ||
                (e->waiters && (!strncmp(ev->type, "step.", 5) || !strcmp(ev->type, "task.action")));
    for (Waiter *w = e->waiters; w && !want; w = w->next)
        want = ev->seq > w->trigger_seq && type_matches(w->type, ev->type);
    if (!want)
        return 0;
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 64;
        f->seqs = xrealloc(f->seqs, f->cap * sizeof *f->seqs);
    }
    f->seqs[f->n++] = ev->seq;
    return 0;
}

/* What follow_one() may want, by type alone (a superset). */
static bool follow_wants(void *ctx, const char *t)
{
    FlowEngine *e = ctx;
    if (!strncmp(t, "workflow.", 9) || !strcmp(t, "step.waiting"))
        return true;
    if (e->waiters && (!strncmp(t, "step.", 5) || !strcmp(t, "task.action")))
        return true;
    for (Waiter *w = e->waiters; w; w = w->next)
        if (type_matches(w->type, t))
            return true;
    return false;
}

/* Follows the ledger from e->seen to its head. Most commits (step outcomes
 * with no wait open) hold nothing for it: the types of this process's
 * recent appends tell so without reading them. */
static void follow(FlowEngine *e)
{
    Err err = { 0 };
    int64_t head = ledger_head_seq(e->l);
    if (head > e->seen && ledger_recent_types(e->l, e->seen, head, follow_wants, e) == 0) {
        e->seen = head;
        return;
    }
    for (;;) {
        int64_t before = e->seen;
        Follow f = { .e = e };
        LedgerFilter lf = { .after_seq = e->seen, .limit = FOLLOW_BATCH, .headers_only = true };
        if (ledger_read(e->rd, &lf, follow_one, &f, &err) < 0)
            log_error("runner follow", json_pack("{s:s}", "error", err.msg));
        for (size_t i = 0; i < f.n; i++) {
            Event *ev = NULL;
            if (ledger_event_get(e->rd, f.seqs[i], NULL, &ev, &err) == 0)
                handle_event(e, ev);
            ledger_event_free(ev);
        }
        free(f.seqs);
        if (e->seen - before < FOLLOW_BATCH)
            break;
    }
}

static void waiters_load(FlowEngine *e, int64_t upto)
{
    StoreStmt *st;
    Err err = { 0 };
    if (store_prepare(e->rd,
                      "SELECT task_id, step_id, attempts, wait_event, wait_where FROM task_steps"
                      " WHERE status = 'waiting' AND wait_kind = 'event'",
                      &st, &err) < 0)
        return;
    typedef struct { char task[CORE_ULID_LEN + 1], step[FLOW_NAME_MAX + 1]; int attempt;
                     char *type, *where; } Row;
    Row *rows = NULL;
    size_t n = 0;
    while (store_step(st, &err) == STORE_ROW) {
        rows = xrealloc(rows, (n + 1) * sizeof *rows);
        Row *r = &rows[n++];
        snprintf(r->task, sizeof r->task, "%s", store_col_text(st, 0, NULL));
        snprintf(r->step, sizeof r->step, "%s", store_col_text(st, 1, NULL));
        r->attempt = (int)store_col_int(st, 2);
        const char *t = store_col_text(st, 3, NULL), *w = store_col_text(st, 4, NULL);
        r->type = xstrdup(t ? t : "");
        r->where = w ? xstrdup(w) : NULL;
    }
    store_stmt_done(st);
    for (size_t i = 0; i < n; i++) {
        if (rows[i].type[0])
            waiter_add(e, rows[i].task, rows[i].step, rows[i].attempt, rows[i].type,
                       rows[i].where, upto);
        free(rows[i].type);
        free(rows[i].where);
    }
    free(rows);
}

/* ---- schedules ---- */

static void schedule_arm(FlowEngine *e, Schedule *s, int64_t now, bool starting)
{
    const FlowWorkflow *w = s->wf;
    bool on = false;
    Err err = { 0 };
    s->next_ms = 0;
    if (flow_workflow_enabled(e->rd, w->name, w->enabled, w->builtin, &on, &err) < 0 || !on)
        return;
    if (starting) {
        /* A slot missed while no runner ran fires once, not once per slot. */
        StoreStmt *st;
        char last[CORE_TIME_LEN + 1] = "", since[CORE_TIME_LEN + 1] = "";
        if (store_prepare(e->rd, "SELECT last_slot, changed_at FROM workflow_settings WHERE name = ?1",
                          &st, &err) == 0) {
            store_bind_text(st, 1, w->name, strlen(w->name));
            if (store_step(st, &err) == STORE_ROW) {
                const char *a = store_col_text(st, 0, NULL), *b = store_col_text(st, 1, NULL);
                snprintf(last, sizeof last, "%s", a ? a : "");
                snprintf(since, sizeof since, "%s", b ? b : "");
            }
            store_stmt_done(st);
        }
        int64_t prev = 0, ref = 0, t;
        if (last[0] && core_time_parse(last, strlen(last), &t) == 0)
            ref = t;
        if (since[0] && core_time_parse(since, strlen(since), &t) == 0 && t > ref)
            ref = t;
        if (ref > 0 && flow_cron_prev(&w->cron, now, &prev, &err) == 0 && prev > ref) {
            s->next_ms = prev; /* due at once */
            return;
        }
    }
    int64_t next = 0;
    if (flow_cron_next(&w->cron, now, &next, &err) == 0)
        s->next_ms = next;
}

static void schedule_fire(FlowEngine *e, Schedule *s)
{
    char slot[CORE_TIME_LEN + 1], key[160];
    time_str(s->next_ms, slot);
    snprintf(key, sizeof key, "schedule:%s:%s", s->wf->name, slot);
    json_t *d = json_pack("{s:s, s:s}", "workflow", s->wf->name, "slot", slot);
    Event *ev = NULL;
    Err err = { 0 };
    int rc = ledger_event_new("schedule.fired", "scheduler", NULL, d, key, ledger_limits(e->l),
                              &ev, &err);
    json_decref(d);
    if (rc == 0)
        rc = ledger_append(e->l, &ev, 1, NULL, &err);
    if (rc < 0)
        log_error("schedule not fired", json_pack("{s:s, s:s}", "workflow", s->wf->name, "error",
                                                  err.msg));
}

/* ---- the runner ---- */

typedef struct Due {
    char task[CORE_ULID_LEN + 1];
    char step[FLOW_NAME_MAX + 1];
    int attempts;
    char kind[16];
} Due;

/* Ready steps of running tasks, and waits whose time has come: sql takes
 * the time now (?1) or the row limit (?1), whichever is given. */
static size_t collect(FlowEngine *e, const char *sql, const char *now, int64_t limit, Due **ret)
{
    StoreStmt *st;
    Err err = { 0 };
    *ret = NULL;
    if (store_prepare(e->rd, sql, &st, &err) < 0) {
        log_error("runner query", json_pack("{s:s}", "error", err.msg));
        return 0;
    }
    if (now)
        store_bind_text(st, 1, now, strlen(now));
    else
        store_bind_int(st, 1, limit);
    size_t n = 0, cap = 0;
    Due *d = NULL;
    while (store_step(st, &err) == STORE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            d = xrealloc(d, cap * sizeof *d);
        }
        Due *x = &d[n++];
        snprintf(x->task, sizeof x->task, "%s", store_col_text(st, 0, NULL));
        snprintf(x->step, sizeof x->step, "%s", store_col_text(st, 1, NULL));
        x->attempts = (int)store_col_int(st, 2);
        const char *k = store_col_text(st, 3, NULL);
        snprintf(x->kind, sizeof x->kind, "%s", k ? k : "");
    }
    store_stmt_done(st);
    *ret = d;
    return n;
}

/* An approval's deadline passed: remind (again after the same time) or
 * escalate, as the step says. Returns whether anything was appended. */
static bool approval_overdue(FlowEngine *e, const char *task, const char *step, int64_t snap)
{
    StoreStmt *st;
    Err err = { 0 };
    if (store_prepare(e->rd,
                      "SELECT id, on_deadline, deadline, requested_at, reminders FROM approvals"
                      " WHERE task_id = ?1 AND step_id = ?2 AND status = 'pending'"
                      " ORDER BY requested_seq DESC LIMIT 1",
                      &st, &err) < 0)
        return false;
    store_bind_text(st, 1, task, strlen(task));
    store_bind_text(st, 2, step, strlen(step));
    char id[CORE_ULID_LEN + 1] = "", how[16] = "", deadline[CORE_TIME_LEN + 1] = "",
         asked[CORE_TIME_LEN + 1] = "";
    int64_t reminders = 0;
    if (store_step(st, &err) == STORE_ROW) {
        const char *h = store_col_text(st, 1, NULL), *dl = store_col_text(st, 2, NULL);
        snprintf(id, sizeof id, "%s", store_col_text(st, 0, NULL));
        snprintf(how, sizeof how, "%s", h ? h : "remind");
        snprintf(deadline, sizeof deadline, "%s", dl ? dl : "");
        snprintf(asked, sizeof asked, "%s", store_col_text(st, 3, NULL));
        reminders = store_col_int(st, 4);
    }
    store_stmt_done(st);
    if (!id[0] || !claim(e, task, step, snap))
        return false;
    int64_t due = 0, at = 0, now = core_time_now_ms();
    core_time_parse(deadline, strlen(deadline), &due);
    core_time_parse(asked, strlen(asked), &at);
    TaskCtx c;
    bool ctx = task_ctx_load(e, e->rd, task, &c, &err) == 0;
    /* reminded again every `deadline` (the step's): the stored deadline
     * moves with each reminder, so its distance to the request would
     * double the period each time */
    int64_t every = 0;
    for (size_t i = 0; ctx && i < c.wf->n_steps; i++)
        if (!strcmp(c.wf->steps[i].id, step))
            every = json_integer_value(json_object_get(c.wf->steps[i].approval, "deadline_ms"));
    if (every <= 0)
        every = due > at && reminders == 0 ? due - at : 3600 * 1000;
    char key[192], next[CORE_TIME_LEN + 1];
    json_t *d;
    const char *type;
    if (!strcmp(how, "escalate")) {
        type = "approval.escalated";
        d = json_pack("{s:s, s:s, s:s, s:s}", "approval", id, "task", task, "step", step,
                      "deadline", deadline);
        snprintf(key, sizeof key, "approval.escalated:%s", id);
    } else {
        type = "approval.reminded";
        time_str(now + every, next);
        d = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "approval", id, "task", task, "step", step,
                      "deadline", deadline, "next_at", next, "reminder",
                      (json_int_t)(reminders + 1));
        snprintf(key, sizeof key, "approval.reminded:%s:%lld", id, (long long)(reminders + 1));
    }
    log_warn("approval overdue", json_pack("{s:s, s:s, s:s, s:s}", "approval", id, "task", task,
                                           "step", step, "action", how));
    Event *ev = step_event(e, type, ctx ? c.wf->name : "unknown", ctx ? c.subject : NULL, d, key);
    submit(e, task, step, true, ev ? &ev : NULL, ev ? 1 : 0);
    task_ctx_done(&c);
    return true;
}

/* One pass: returns the ms until the next timer (or -1 for none) and sets
 * *busy when work was found; *outbox_next: the ms until the outbox's next
 * timer (a retry, the end of an undo window), or -1. */
static int64_t runner_pass(FlowEngine *e, bool *busy, int64_t *outbox_next)
{
    Err err = { 0 };
    *busy = false;
    /* What this pass reads is at least as new as this head: outcomes
     * acknowledged up to it are seen, later ones may not be. */
    int64_t snap = ledger_head_seq(e->l);
    pthread_mutex_lock(&e->mu);
    const char *k;
    void *tmp;
    json_t *v;
    json_object_foreach_safe(e->acked, tmp, k, v) if (json_integer_value(v) <= snap)
        json_object_del(e->acked, k);
    pthread_mutex_unlock(&e->mu);
    /* 1. new events: waits */
    follow(e);
    int64_t now = core_time_now_ms();
    char now_s[CORE_TIME_LEN + 1];
    time_str(now, now_s);
    /* 2. ready steps, as many as the queue has room for. A ready step
     * stays ready in the projection until its outcome is committed, so the
     * query also meets the steps dispatched or acknowledged since: asking
     * for those plus the room still yields every step that can be queued,
     * without reading the whole backlog on every pass. */
    Due *d = NULL;
    pthread_mutex_lock(&e->mu);
    size_t room = e->q_len < e->q_max ? e->q_max - e->q_len : 0;
    int64_t limit = (int64_t)(json_object_size(e->dispatched) + json_object_size(e->acked) + room);
    pthread_mutex_unlock(&e->mu);
    size_t n = room == 0 ? 0
                         : collect(e,
                                   "SELECT s.task_id, s.step_id, s.attempts, NULL FROM task_steps s"
                                   " JOIN tasks t ON t.id = s.task_id"
                                   " WHERE s.status = 'ready' AND t.status = 'running' LIMIT ?1",
                                   NULL, limit, &d);
    for (size_t i = 0; i < n; i++)
        *busy |= dispatch(e, d[i].task, d[i].step, d[i].attempts + 1, snap);
    free(d);
    /* 3. due timers of running tasks: retries, ended waits (a task in the
     * inbox holds all of its steps until the operator acts) */
    n = collect(e,
                "SELECT s.task_id, s.step_id, s.attempts, s.wait_kind FROM task_steps s"
                " JOIN tasks t ON t.id = s.task_id"
                " WHERE s.status = 'waiting' AND s.wake_at <= ?1"
                " AND s.wait_kind IN ('retry', 'duration', 'event', 'resume', 'approval', 'batch')"
                " AND t.status = 'running'"
                " LIMIT 256",
                now_s, 0, &d);
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(d[i].kind, "retry")) {
            *busy |= dispatch(e, d[i].task, d[i].step, d[i].attempts + 1, snap);
        } else if (!strcmp(d[i].kind, "resume") || !strcmp(d[i].kind, "batch")) {
            *busy |= dispatch_job(e, d[i].task, d[i].step, d[i].attempts, true, snap);
        } else if (!strcmp(d[i].kind, "approval")) {
            *busy |= approval_overdue(e, d[i].task, d[i].step, snap);
        } else {
            waiters_drop(e, d[i].task, d[i].step);
            if (!strcmp(d[i].kind, "duration")) {
                if (claim(e, d[i].task, d[i].step, snap)) {
                    *busy = true;
                    char key[192];
                    json_t *dd = json_pack("{s:s, s:s, s:i, s:{s:b}, s:s}", "task", d[i].task,
                                           "step", d[i].step, "attempt", d[i].attempts, "output",
                                           "waited", 1, "finished_at", now_s);
                    snprintf(key, sizeof key, "step.completed:%s:%s", d[i].task, d[i].step);
                    TaskCtx c;
                    const char *wfname = "unknown";
                    char *subject = NULL;
                    if (task_ctx_load(e, e->rd, d[i].task, &c, &err) == 0) {
                        wfname = c.workflow;
                        subject = c.subject;
                    }
                    Event *ev = step_event(e, "step.completed", wfname, subject, dd, key);
                    submit(e, d[i].task, d[i].step, true, ev ? &ev : NULL, ev ? 1 : 0);
                    task_ctx_done(&c);
                }
            } else {
                *busy |= wait_complete(e, d[i].task, d[i].step, d[i].attempts, NULL, snap);
            }
        }
    }
    free(d);
    /* 4. schedules */
    int64_t next = -1;
    for (size_t i = 0; i < e->n_schedules; i++) {
        Schedule *s = &e->schedules[i];
        if (s->next_ms > 0 && s->next_ms <= now) {
            schedule_fire(e, s);
            *busy = true;
            int64_t nx = 0;
            s->next_ms = flow_cron_next(&s->wf->cron, now, &nx, &err) == 0 ? nx : 0;
        }
        if (s->next_ms > 0 && (next < 0 || s->next_ms - now < next))
            next = s->next_ms - now;
    }
    /* 5. the next timer */
    StoreStmt *st;
    if (store_prepare(e->rd,
                      "SELECT min(s.wake_at) FROM task_steps s JOIN tasks t ON t.id = s.task_id"
                      " WHERE s.status = 'waiting'"
                      " AND s.wait_kind IN ('retry', 'duration', 'event', 'resume', 'approval',"
                      " 'batch')"
                      " AND s.wake_at IS NOT NULL AND t.status = 'running'",
                      &st, &err) == 0) {
        if (store_step(st, &err) == STORE_ROW) {
            size_t len;
            const char *w = store_col_text(st, 0, &len);
            int64_t at;
            if (w && core_time_parse(w, len, &at) == 0) {
                int64_t in = at > now ? at - now : 0;
                if (next < 0 || in < next)
                    next = in;
            }
        }
        store_stmt_done(st);
    }
    /* 6. the outbox's timers: not the runner's to wait on, but work when
     * --until-idle waits for timers */
    *outbox_next = flow__outbox_next_ms(e->rd, now);
    return next;
}

/* Whether a timer due in `in` ms (-1: none) is work for a wait for
 * idleness: due now, or by its horizon. Called with e->mu held. */
static bool timer_pending(const FlowEngine *e, int64_t now, int64_t in)
{
    return in >= 0 && (in == 0 || now + in <= e->horizon_until);
}

/* Types that can give the runner work: the engine's own events (they move
 * the tasks and effects projections and the waits), and the types the
 * waits on events look for. */
static bool runner_wants(void *ctx, const char *t)
{
    FlowEngine *e = ctx;
    static const char *const own[] = { "task.", "step.", "workflow.", "schedule.", "approval.",
                                       "effect.", "model.", "operator.", NULL };
    for (int i = 0; own[i]; i++)
        if (!strncmp(t, own[i], strlen(own[i])))
            return true;
    for (Waiter *w = e->waiters; w; w = w->next)
        if (type_matches(w->type, t))
            return true;
    return false;
}

/* Whether the runner may sleep on without a pass: woken only by appends of
 * this process that can give it no work (API events, say), with no timer
 * due, no ledger_wake() and no one waiting for idleness since its last
 * pass, which was not busy. Then its view of the log moves past them. */
static bool skip_pass(FlowEngine *e, uint64_t gen, int64_t head, int64_t now)
{
    if (!e->passed || e->pass_busy || gen != e->pass_gen || head <= e->pass_head ||
        (e->pass_due >= 0 && now >= e->pass_due))
        return false;
    pthread_mutex_lock(&e->mu);
    bool waited = e->idle_waiters > 0;
    pthread_mutex_unlock(&e->mu);
    if (waited || ledger_recent_types(e->l, e->pass_head, head, runner_wants, e) != 0)
        return false;
    if (e->seen >= e->pass_head && e->seen < head)
        e->seen = head;
    e->pass_head = head;
    return true;
}

static void *runner_main(void *arg)
{
    FlowEngine *e = arg;
    pthread_setname_np(pthread_self(), "flow-runner");
    const char *me = ledger_instance(e->l);
    int lease_ms = e->cfg.flow_lease_ms;
    bool held = false;
    int64_t renewed = 0;
    while (!atomic_load(&e->stop)) {
        Err err = { 0 };
        int64_t now = core_time_now_ms();
        if (!held || now - renewed > lease_ms / 3) {
            int rc = ledger_lease_acquire(e->rd, RUNNER_LEASE, me, lease_ms, &err);
            if (rc < 0)
                log_warn("runner lease", json_pack("{s:s}", "error", err.msg));
            bool was = held;
            held = rc == 1;
            renewed = now;
            if (!held) {
                ledger_wait(e->l, INT64_MAX, lease_ms / 3);
                continue;
            }
            if (!was) { /* taking over: the state is in the projection */
                e->passed = false;
                int64_t head = 0;
                char hash[CORE_SHA256_HEX + 1];
                ledger_head(e->rd, &head, hash, &err);
                e->seen = head;
                waiters_load(e, head);
                for (size_t i = 0; i < e->n_schedules; i++)
                    schedule_arm(e, &e->schedules[i], now, true);
                log_info("runner started", json_pack("{s:I}", "seq", (json_int_t)head));
            }
        }
        uint64_t gen = ledger_wake_gen(e->l); /* before the pass: no wake-up is lost */
        int64_t head = ledger_head_seq(e->l);
        if (held && skip_pass(e, gen, head, now)) {
            int64_t timeout = lease_ms / 3;
            if (e->pass_due >= 0 && e->pass_due - now < timeout)
                timeout = e->pass_due - now;
            ledger_wait_gen(e->l, head, gen, (int)(timeout > 0 ? timeout : 1));
            continue;
        }
        bool busy = false;
        int64_t outbox_next = -1;
        int64_t next = runner_pass(e, &busy, &outbox_next);
        int64_t passed = core_time_now_ms();
        e->passed = true;
        e->pass_busy = busy;
        e->pass_gen = gen;
        e->pass_head = head;
        e->pass_due = next >= 0 ? passed + next : -1;
        /* idle: nothing ready, running or due, and the planner caught up */
        int64_t planned = 0;
        pthread_mutex_lock(&e->mu); /* flow_engine_stop() may be stopping the planner */
        bool known = ledger_reactor_position(e->planner, &planned);
        pthread_mutex_unlock(&e->mu);
        if (!known)
            ledger_reactor_checkpoint(e->rd, "planner", &planned, &err);
        /* Idle only when nothing was committed since the pass began: an
         * outcome acknowledged meanwhile (inflight dropped to 0) has moved
         * the head first, and may have made a step ready. */
        pthread_mutex_lock(&e->mu);
        bool idle = !busy && e->inflight == 0 && ledger_head_seq(e->l) == head &&
                    e->seen >= head && planned >= head && !timer_pending(e, passed, next) &&
                    !timer_pending(e, passed, outbox_next);
        e->idle = idle;
        e->idle_head = head;
        if (idle)
            pthread_cond_broadcast(&e->idle_cond);
        pthread_mutex_unlock(&e->mu);
        int timeout = lease_ms / 3;
        if (next >= 0 && next < timeout)
            timeout = (int)next;
        if (busy)
            continue;
        ledger_wait_gen(e->l, head > e->seen ? e->seen : head, gen, timeout);
    }
    /* released by flow_engine_stop once the workers are done: another
     * process must not run the steps still queued here */
    e->lease_held = held;
    return NULL;
}

/* ---- lifecycle ---- */

static void outbox_idle(void *ctx, int64_t head)
{
    FlowEngine *e = ctx;
    pthread_mutex_lock(&e->mu);
    e->outbox_head = head;
    if (head >= 0)
        pthread_cond_broadcast(&e->idle_cond);
    pthread_mutex_unlock(&e->mu);
}

/* Both the runner and the outbox had nothing to do at the same head, and
 * nothing was appended since. */
static bool all_idle(FlowEngine *e)
{
    return e->idle && e->outbox_head == e->idle_head && ledger_head_seq(e->l) == e->idle_head;
}

static void catalog_error(void *ctx, const char *path, const Err *err)
{
    (void)ctx;
    log_error("workflow not loaded", json_pack("{s:s, s:s}", "file", path, "error", err->msg));
}

int flow_engine_start(Ledger *l, const char *data_dir, const Config *cfg, FlowEngine **ret,
                      Err *err)
{
    FlowEngine *e = xcalloc(1, sizeof *e);
    e->l = l;
    e->data_dir = xstrdup(data_dir);
    if (cfg)
        e->cfg = *cfg;
    else
        core_config_defaults(&e->cfg);
    e->cfg.connectors = NULL;
    e->cfg.n_connectors = 0;
    e->enabled = json_object();
    e->stored_versions = json_object();
    e->dispatched = json_object();
    e->acked = json_object();
    e->versions = json_object();
    e->tasks_cache = json_object();
    e->outbox_head = -1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->cache_mu, NULL);
    pthread_cond_init(&e->job_cond, NULL);
    pthread_cond_init(&e->idle_cond, NULL);
    flow_step_kinds_builtin();
    FlowLuaLimits lim = { e->cfg.lua_memory_bytes, e->cfg.lua_instructions };
    int rc = flow_catalog_load(data_dir, &e->cat, catalog_error, NULL, err);
    if (rc == 0)
        rc = flow_lua_new(&lim, &e->planner_lua, err);
    if (rc == 0)
        rc = flow_lua_new(&lim, &e->runner_lua, err);
    if (rc == 0)
        rc = ledger_reader_open(l, &e->rd, err);
    if (rc < 0) {
        flow_engine_stop(e);
        return rc;
    }
    enabled_load(e, e->rd);
    for (size_t i = 0; i < e->cat.n; i++)
        if (e->cat.items[i]->on_schedule) {
            e->schedules = xrealloc(e->schedules, (e->n_schedules + 1) * sizeof *e->schedules);
            e->schedules[e->n_schedules++] = (Schedule){ .wf = e->cat.items[i] };
        }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int want = e->cfg.flow_workers > 0 ? e->cfg.flow_workers : (int)(cores > 0 ? cores : 1) * 2;
    e->workers = xcalloc((size_t)want, sizeof *e->workers);
    e->q_max = (size_t)want * QUEUE_PER_WORKER;
    FlowLuaLimits wl = { e->cfg.lua_memory_bytes, e->cfg.lua_instructions };
    for (int i = 0; i < want; i++) {
        Worker *w = &e->workers[i];
        w->e = e;
        if ((rc = ledger_reader_open(l, &w->rd, err)) < 0 ||
            (rc = flow_lua_new(&wl, &w->lua, err)) < 0) {
            store_close(w->rd); /* not counted in n_workers: freed here */
            flow_engine_stop(e);
            return rc;
        }
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            flow_lua_free(w->lua);
            store_close(w->rd);
            flow_engine_stop(e);
            return err_set(err, ERR_INTERNAL, "cannot start the step workers");
        }
        e->n_workers = i + 1;
    }
    ReactorDef pd = { .name = "planner", .handle = plan, .ctx = e, .lease_ms = e->cfg.flow_lease_ms,
                      .lazy = true, .wants = plan_wants,
                      .committed = planned, .batch = 1024, .headers_only = true };
    if ((rc = ledger_reactor_start(l, &pd, &e->planner, err)) < 0) {
        flow_engine_stop(e);
        return rc;
    }
    if ((rc = model_router_new(l, &e->cfg, &e->router, err)) < 0) {
        flow_engine_stop(e);
        return rc;
    }
    if ((rc = flow__outbox_start(l, &e->cfg, outbox_idle, e, &e->outbox, err)) < 0) {
        flow_engine_stop(e);
        return rc;
    }
    memory_search_use_router(e->router);
    if ((rc = memory_extractor_start(l, e->router, e->cfg.flow_lease_ms, &e->extractor, err)) < 0) {
        flow_engine_stop(e);
        return rc;
    }
    if ((rc = memory_vector_filler_start(l, &e->cfg, e->router, &e->vectors, err)) < 0) {
        flow_engine_stop(e);
        return rc;
    }
    if ((rc = flow__consolidator_start(l, &e->cfg, e->router, &e->consolidator, err)) < 0) {
        flow_engine_stop(e);
        return rc;
    }
    if ((rc = model_shadow_runner_start(l, &e->cfg, e->router, &e->shadows, err)) < 0) {
        flow_engine_stop(e);
        return rc;
    }
    if (pthread_create(&e->runner, NULL, runner_main, e) != 0) {
        flow_engine_stop(e);
        return err_set(err, ERR_INTERNAL, "cannot start the runner");
    }
    e->runner_started = true;
    *ret = e;
    return 0;
}

void flow_engine_stop(FlowEngine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    Reactor *planner = e->planner;
    e->planner = NULL;
    pthread_mutex_unlock(&e->mu);
    ledger_reactor_stop(planner);
    flow__outbox_stop(e->outbox); /* a delivery under way finishes and is recorded */
    e->outbox = NULL;
    flow__consolidator_stop(e->consolidator); /* a run under way finishes */
    e->consolidator = NULL;
    memory_extractor_stop(e->extractor);
    e->extractor = NULL;
    model_shadow_runner_stop(e->shadows); /* a call under way finishes and is recorded */
    e->shadows = NULL;
    memory_vector_filler_stop(e->vectors);
    e->vectors = NULL;
    atomic_store(&e->stop, true);
    if (e->runner_started) {
        ledger_wake(e->l);
        pthread_join(e->runner, NULL);
    }
    pthread_mutex_lock(&e->mu);
    e->workers_stop = true; /* steps not started stay ready for the next runner */
    pthread_cond_broadcast(&e->job_cond);
    pthread_mutex_unlock(&e->mu);
    for (int i = 0; i < e->n_workers; i++)
        pthread_join(e->workers[i].thread, NULL);
    for (int i = 0; i < e->n_workers; i++) {
        flow_lua_free(e->workers[i].lua);
        store_close(e->workers[i].rd);
    }
    free(e->workers);
    Err err;
    ledger_sync(e->l, &err); /* outcomes in flight are recorded before we go */
    if (e->router)
        memory_search_use_router(NULL);
    model_router_free(e->router); /* its model.called are durable: synced above */
    if (e->lease_held)
        ledger_lease_release(e->rd, RUNNER_LEASE, ledger_instance(e->l), &err);
    for (Job *j = e->q_first, *next; j; j = next) {
        next = j->next;
        free(j);
    }
    while (e->waiters) {
        Waiter *w = e->waiters;
        e->waiters = w->next;
        waiter_free(w);
    }
    for (size_t i = 0; i < e->n_defs; i++)
        flow_workflow_free(e->defs[i]);
    free(e->defs);
    free(e->schedules);
    json_decref(e->versions);
    json_decref(e->tasks_cache);
    json_decref(e->dispatched);
    json_decref(e->acked);
    json_decref(e->enabled);
    json_decref(e->stored_versions);
    flow_lua_free(e->planner_lua);
    flow_lua_free(e->runner_lua);
    store_close(e->rd);
    flow_catalog_done(&e->cat);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->cache_mu);
    pthread_cond_destroy(&e->job_cond);
    pthread_cond_destroy(&e->idle_cond);
    free(e->data_dir);
    free(e);
}

int flow_engine_wait_idle(FlowEngine *e, int timeout_ms, int64_t horizon_ms, Err *err)
{
    struct timespec until = core_time_deadline(CLOCK_REALTIME, timeout_ms);
    pthread_mutex_lock(&e->mu);
    e->idle = false;
    e->outbox_head = -1;
    e->horizon_until = core_time_now_ms() + (horizon_ms > 0 ? horizon_ms : 0);
    e->idle_waiters++;
    ledger_wake(e->l);
    int rc = 0;
    while (!all_idle(e) && !e->interrupted && rc == 0) {
        if (timeout_ms < 0)
            pthread_cond_wait(&e->idle_cond, &e->mu);
        else
            rc = pthread_cond_timedwait(&e->idle_cond, &e->mu, &until);
    }
    e->idle_waiters--;
    bool idle = all_idle(e), interrupted = e->interrupted;
    pthread_mutex_unlock(&e->mu);
    if (idle)
        return 0;
    if (interrupted)
        return err_set(err, ERR_CLOSED, "interrupted before the engine was idle");
    return err_set(err, ERR_TIMEOUT, "the engine was still busy after %d ms", timeout_ms);
}

void flow_engine_interrupt(FlowEngine *e)
{
    pthread_mutex_lock(&e->mu);
    e->interrupted = true;
    pthread_cond_broadcast(&e->idle_cond);
    pthread_mutex_unlock(&e->mu);
}

ModelRouter *flow_engine_router(FlowEngine *e)
{
    return e ? e->router : NULL;
}

json_t *flow_engine_models_health(void *engine)
{
    FlowEngine *e = engine;
    return e && e->router ? model_router_health(e->router) : json_array();
}
