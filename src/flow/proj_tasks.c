/* The "tasks" projection: the state machine of tasks and steps.
 *
 * A pure function of the events: task.created, step.completed, step.failed,
 * step.waiting, step.skipped, task.action, workflow.enabled/.disabled and
 * schedule.fired. States only move forward: an event that would move a step
 * or task backwards (a late worker, a duplicate action) changes nothing.
 * Readiness is derived here too: a pending step becomes ready when every step
 * it needs has settled; it is skipped instead when one of them was skipped or
 * canceled and it has no `if` of its own. */
#include "core/json.h"
#include "flow/content.h"
#include "flow/engine_int.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const tables[] = { "tasks", "task_definitions", "task_definition_steps",
                                      "task_steps", "workflow_settings", NULL };

typedef struct StepRow {
    char id[FLOW_NAME_MAX + 1];
    char *needs; /* step ids, comma-separated */
    bool has_if;
    char status[16];
    char skip_reason[16]; /* skipped: condition, upstream or operator */
    int64_t attempts;
    bool run_anyway; /* the target of an on_reject: runs though its need was skipped */
    bool changed;
} StepRow;

typedef struct TaskRow {
    char id[CORE_ULID_LEN + 1];
    char status[16];
    char *key; /* concurrency key or NULL */
    char loaded[16]; /* the status as stored: the row is written only when it changes */
    StepRow *steps;
    size_t n;
} TaskRow;

static void task_row_done(TaskRow *t)
{
    free(t->key);
    for (size_t i = 0; i < t->n; i++)
        free(t->steps[i].needs);
    free(t->steps);
    memset(t, 0, sizeof *t);
}

static bool settled(const char *status)
{
    return flow__status_terminal(status);
}

/* The step events of a task come one after the other, so the writer keeps
 * each open task's row and steps as the last apply left them (stored)
 * instead of reading them again for the next event. Direct-mapped by task
 * id, big enough for thousands of tasks running at once; a row is
 * taken out while an apply works on it and put back only once that apply
 * succeeded. forget() (a rollback, a rebuild, another process's appends)
 * and a change of connection empty it. */
#define ROW_CACHE 8192

static struct {
    pthread_mutex_t mu;
    const Store *owner;
    TaskRow rows[ROW_CACHE];
} cache = { .mu = PTHREAD_MUTEX_INITIALIZER };

static size_t cache_slot(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *c = id; *c; c++)
        h = (h ^ (uint8_t)*c) * 16777619u;
    return h % ROW_CACHE;
}

static void cache_clear(void)
{
    for (size_t i = 0; i < ROW_CACHE; i++)
        task_row_done(&cache.rows[i]);
}

static void forget(void)
{
    pthread_mutex_lock(&cache.mu);
    cache_clear();
    cache.owner = NULL;
    pthread_mutex_unlock(&cache.mu);
}

/* Moves the cached row of id into t; false when there is none. */
static bool cache_take(Store *tx, const char *id, TaskRow *t)
{
    pthread_mutex_lock(&cache.mu);
    TaskRow *c = &cache.rows[cache_slot(id)];
    bool hit = cache.owner == tx && !strcmp(c->id, id);
    if (hit) {
        *t = *c;
        memset(c, 0, sizeof *c);
    }
    pthread_mutex_unlock(&cache.mu);
    return hit;
}

/* After a successful apply: t is as stored; it moves into the cache unless
 * it ended (no step of it runs any more). */
static void cache_put(Store *tx, TaskRow *t)
{
    if (settled(t->status))
        return;
    snprintf(t->loaded, sizeof t->loaded, "%s", t->status);
    for (size_t i = 0; i < t->n; i++)
        t->steps[i].changed = false;
    pthread_mutex_lock(&cache.mu);
    if (cache.owner != tx) {
        cache_clear();
        cache.owner = tx;
    }
    TaskRow *c = &cache.rows[cache_slot(t->id)];
    task_row_done(c);
    *c = *t;
    memset(t, 0, sizeof *t);
    pthread_mutex_unlock(&cache.mu);
}

/* Loads a task and its steps; ERR_NOTFOUND when unknown. */
static int task_load(Store *tx, const char *id, TaskRow *t, Err *err)
{
    memset(t, 0, sizeof *t);
    if (cache_take(tx, id, t))
        return 0;
    StoreStmt *st;
    int rc = store_prepare(tx, "SELECT status, concurrency_key FROM tasks WHERE id = ?1",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, id, strlen(id));
    rc = store_step(st, err);
    if (rc == STORE_ROW) {
        snprintf(t->id, sizeof t->id, "%s", id);
        snprintf(t->status, sizeof t->status, "%s", store_col_text(st, 0, NULL));
        const char *k = store_col_text(st, 1, NULL);
        t->key = k ? xstrdup(k) : NULL;
        snprintf(t->loaded, sizeof t->loaded, "%s", t->status);
    }
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    if (rc != STORE_ROW)
        return ERR_NOTFOUND;
    rc = store_prepare(tx,
                       "SELECT step_id, needs, has_if, status, skip_reason, attempts, run_anyway"
                       " FROM task_steps"
                       " WHERE task_id = ?1 ORDER BY pos",
                       &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, id, strlen(id));
    size_t cap = 0;
    while ((rc = store_step(st, err)) == STORE_ROW) {
        if (t->n == cap) {
            cap = cap ? cap * 2 : 8;
            t->steps = xrealloc(t->steps, cap * sizeof *t->steps);
        }
        StepRow *s = &t->steps[t->n++];
        memset(s, 0, sizeof *s);
        snprintf(s->id, sizeof s->id, "%s", store_col_text(st, 0, NULL));
        const char *needs = store_col_text(st, 1, NULL);
        s->needs = xstrdup(needs ? needs : "");
        s->has_if = store_col_int(st, 2) != 0;
        snprintf(s->status, sizeof s->status, "%s", store_col_text(st, 3, NULL));
        const char *why = store_col_text(st, 4, NULL);
        snprintf(s->skip_reason, sizeof s->skip_reason, "%s", why ? why : "");
        s->attempts = store_col_int(st, 5);
        s->run_anyway = store_col_int(st, 6) != 0;
    }
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

static StepRow *find_step_n(TaskRow *t, const char *id, size_t len)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strncmp(t->steps[i].id, id, len) && t->steps[i].id[len] == '\0')
            return &t->steps[i];
    return NULL;
}

static StepRow *find_step(TaskRow *t, const char *id)
{
    return find_step_n(t, id, strlen(id));
}

static void set_status(StepRow *s, const char *status)
{
    snprintf(s->status, sizeof s->status, "%s", status);
    s->changed = true;
}

static void set_skipped(StepRow *s, const char *reason)
{
    set_status(s, "skipped");
    snprintf(s->skip_reason, sizeof s->skip_reason, "%s", reason);
}

/* Pending steps whose needs have all settled become ready, or skipped when
 * a need was skipped or canceled and they have no `if`. Repeats until
 * nothing changes (skips cascade). Only for a running task. */
static void propagate(TaskRow *t)
{
    if (strcmp(t->status, "running"))
        return;
    for (bool again = true; again;) {
        again = false;
        for (size_t i = 0; i < t->n; i++) {
            StepRow *s = &t->steps[i];
            if (strcmp(s->status, "pending"))
                continue;
            bool all = true, upstream_skip = false;
            for (const char *n = s->needs; *n;) {
                size_t len = strcspn(n, ",");
                StepRow *d = len ? find_step_n(t, n, len) : NULL;
                n += len + (n[len] == ',');
                if (!d)
                    continue;
                /* a step the operator skipped lets the task go on */
                if (!settled(d->status))
                    all = false;
                else if ((!strcmp(d->status, "skipped") && strcmp(d->skip_reason, "operator")) ||
                         !strcmp(d->status, "canceled"))
                    upstream_skip = true;
            }
            if (!all)
                continue;
            if (upstream_skip && !s->has_if && !s->run_anyway) {
                set_skipped(s, "upstream");
                again = true;
            } else {
                set_status(s, "ready");
            }
        }
    }
}

/* Writes back changed steps (status only, and finished_at for settled ones),
 * the task's status and open count, finishing the task when nothing is open. */
static int task_store(Store *tx, TaskRow *t, const Event *ev, Err *err)
{
    int rc = 0;
    for (size_t i = 0; i < t->n && rc == 0; i++) {
        StepRow *s = &t->steps[i];
        if (!s->changed)
            continue;
        rc = store_execf(tx, err,
                      "UPDATE task_steps SET status = ?3,"
                      " finished_at = CASE WHEN ?4 THEN coalesce(finished_at, ?5) ELSE finished_at END,"
                      " skip_reason = nullif(?6, '')"
                      " WHERE task_id = ?1 AND step_id = ?2",
                      "sssiss", t->id, s->id, s->status, (int64_t)settled(s->status), ev->received_at,
                      !strcmp(s->status, "skipped") ? s->skip_reason : "");
    }
    if (rc < 0)
        return rc;
    size_t open = 0;
    for (size_t i = 0; i < t->n; i++)
        open += !settled(t->steps[i].status);
    if (open == 0 && !strcmp(t->status, "running"))
        snprintf(t->status, sizeof t->status, "succeeded");
    bool ended = settled(t->status);
    if (!strcmp(t->status, t->loaded)) /* most step events leave the task as it was */
        return rc;
    rc = store_execf(tx, err,
                  "UPDATE tasks SET status = ?2, updated_at = ?3,"
                  " finished_at = CASE WHEN ?4 THEN coalesce(finished_at, ?3) ELSE finished_at END"
                  " WHERE id = ?1",
                  "sssi", t->id, t->status, ev->received_at, (int64_t)ended);
    if (rc < 0 || !ended || !t->key)
        return rc;
    /* When no running task (or one in the inbox) holds the key any more, the
     * oldest queued task with it starts; a queued task that ended (canceled)
     * frees nothing. */
    int64_t holders = 0;
    if ((rc = store_query_int(tx,
                              "SELECT count(*) FROM tasks WHERE concurrency_key = ?1"
                              " AND status IN ('running', 'inbox')",
                              t->key, 0, &holders, err)) < 0 || holders > 0)
        return rc;
    StoreStmt *st;
    if ((rc = store_prepare(tx,
                            "SELECT id FROM tasks WHERE concurrency_key = ?1 AND status = 'queued'"
                            " ORDER BY created_seq LIMIT 1",
                            &st, err)) < 0)
        return rc;
    store_bind_text(st, 1, t->key, strlen(t->key));
    char next[CORE_ULID_LEN + 1] = "";
    if ((rc = store_step(st, err)) == STORE_ROW)
        snprintf(next, sizeof next, "%s", store_col_text(st, 0, NULL));
    store_stmt_done(st);
    if (rc < 0 || !next[0])
        return rc < 0 ? rc : 0;
    TaskRow q;
    if ((rc = task_load(tx, next, &q, err)) < 0)
        return rc;
    snprintf(q.status, sizeof q.status, "running");
    for (size_t i = 0; i < q.n; i++)
        if (!q.steps[i].needs[0] && !strcmp(q.steps[i].status, "pending"))
            set_status(&q.steps[i], "ready");
    propagate(&q);
    rc = task_store(tx, &q, ev, err);
    task_row_done(&q);
    return rc;
}

/* Cancels every open step and ends the task with status. */
static void end_task(TaskRow *t, const char *status)
{
    for (size_t i = 0; i < t->n; i++)
        if (!settled(t->steps[i].status))
            set_status(&t->steps[i], "canceled");
    snprintf(t->status, sizeof t->status, "%s", status);
}

static const char *str(const json_t *d, const char *k)
{
    return json_string_value(json_object_get(d, k));
}

/* The data of task.created and step events, the most of what the writer
 * applies, is read member by member from its canonical text instead of
 * being parsed into a tree. */
#define DATA_MEMBERS 128

typedef struct Data {
    CoreJsonMember m[DATA_MEMBERS];
    int n;
    char *strs[DATA_MEMBERS]; /* decoded string values, made when first asked */
} Data;

static int data_read(Data *d, const Event *ev)
{
    memset(d->strs, 0, sizeof d->strs);
    d->n = core_json_members(ev->data, ev->data_len, d->m, DATA_MEMBERS);
    return d->n;
}

static void data_done(Data *d)
{
    for (int i = 0; i < d->n; i++)
        free(d->strs[i]);
}

/* A string member, or NULL (absent or not a string). */
static const char *dstr(Data *d, const char *k)
{
    const CoreJsonMember *m = core_json_member(d->m, d->n, k);
    if (!m)
        return NULL;
    size_t i = (size_t)(m - d->m);
    if (!d->strs[i])
        d->strs[i] = core_json_member_string(m);
    return d->strs[i];
}

/* An integer member, or 0. */
static int64_t dint(const Data *d, const char *k)
{
    int64_t v = 0;
    return core_json_member_int(core_json_member(d->m, d->n, k), &v) ? v : 0;
}

static bool dtrue(const Data *d, const char *k)
{
    const CoreJsonMember *m = core_json_member(d->m, d->n, k);
    return m && m->val_len == 4 && !memcmp(m->val, "true", 4);
}

/* A member's JSON text as written (malloc'd), or NULL when absent; with
 * only_structured, also NULL when it is not an object or array. */
static char *draw(const Data *d, const char *k, bool only_structured)
{
    const CoreJsonMember *m = core_json_member(d->m, d->n, k);
    if (!m || (only_structured && m->val[0] != '{' && m->val[0] != '['))
        return NULL;
    return xstrndup(m->val, m->val_len);
}

/* A version's definition travels in the first task.created(s) of that
 * version (until the planner sees it stored) and is kept once. */
static int apply_defined(Store *tx, const char *wf, const char *version,
                         const CoreJsonMember *dm, Err *err)
{
    int64_t known = 0;
    int rc = store_query_int(tx, "SELECT count(*) FROM task_definitions WHERE version = ?1",
                             version, 0, &known, err);
    if (rc < 0 || known) /* the planner sends it until it sees it stored */
        return rc;
    json_t *def = json_loadb(dm->val, dm->val_len, 0, NULL);
    const json_t *steps = json_object_get(def, "steps");
    if (!json_is_array(steps) || json_array_size(steps) == 0) {
        json_decref(def);
        return 0;
    }
    Buf text;
    buf_init(&text, 0);
    core_json_canonical(def, &text);
    rc = store_execf(tx, err,
                  "INSERT INTO task_definitions(version, workflow, definition, steps)"
                  " VALUES (?1, ?2, ?3, ?4)",
                  "sssi", version, wf, buf_cstr(&text), (int64_t)json_array_size(steps));
    buf_done(&text);
    size_t i;
    const json_t *s;
    json_array_foreach(steps, i, s) {
        if (rc < 0)
            break;
        char needs[FLOW_MAX_STEPS * (FLOW_NAME_MAX + 1) + 1] = "";
        size_t len = 0, j;
        const json_t *n;
        json_array_foreach(json_object_get(s, "needs"), j, n) {
            const char *nid = json_string_value(n);
            if (nid && len < sizeof needs)
                len += (size_t)snprintf(needs + len, sizeof needs - len, "%s%s", len ? "," : "",
                                        nid);
        }
        const char *sid = str(s, "id"), *kind = str(s, "do"), *on_error = str(s, "on_error");
        const json_t *cond = json_object_get(s, "if");
        rc = store_execf(tx, err,
                      "INSERT INTO task_definition_steps(version, pos, step_id, kind, needs, has_if,"
                      " on_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                      "sisssis", version, (int64_t)i, sid ? sid : "", kind ? kind : "", needs,
                      (int64_t)(cond && !json_is_null(cond)), on_error ? on_error : "fail");
    }
    json_decref(def);
    return rc;
}

static int apply_created(Store *tx, const Event *ev, Data *d, Err *err)
{
    const char *id = dstr(d, "task"), *wf = dstr(d, "workflow"), *version = dstr(d, "version");
    const char *key = dstr(d, "concurrency_key");
    if (!id || !wf || !version)
        return 0; /* checked when appended; an older malformed event is skipped */
    int64_t exists = 0, n_steps = 0;
    int rc = 0;
    const CoreJsonMember *dm = core_json_member(d->m, d->n, "definition");
    if (dm) /* the first task.created(s) of a version */
        rc = apply_defined(tx, wf, version, dm, err);
    if (rc < 0)
        return rc;
    rc = store_query_int(tx, "SELECT count(*) FROM tasks WHERE id = ?1", id, 0, &exists, err);
    if (rc < 0 || exists)
        return rc;
    if ((rc = store_query_int(tx, "SELECT steps FROM task_definitions WHERE version = ?1", version,
                              0, &n_steps, err)) < 0)
        return rc;
    if (n_steps == 0)
        return 0; /* no definition of its version came before: nothing to run */
    bool queued = false;
    if (key) {
        int64_t holders = 0;
        rc = store_query_int(tx,
                             "SELECT count(*) FROM tasks WHERE concurrency_key = ?1"
                             " AND status IN ('running', 'inbox', 'queued')",
                             key, 0, &holders, err);
        if (rc < 0)
            return rc;
        queued = holders > 0;
    }
    char *input_text = draw(d, "input", true);
    rc = store_execf(tx, err,
                  "INSERT INTO tasks(id, workflow, version, status, trigger_seq, created_seq, depth,"
                  " concurrency_key, input, created_at, updated_at)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
                  "ssssiiisss", id, wf, version, queued ? "queued" : "running",
                  dint(d, "trigger_seq"), ev->seq, dint(d, "depth"), key, input_text,
                  ev->received_at);
    free(input_text);
    if (rc == 0)
        rc = store_execf(tx, err,
                      "INSERT INTO task_steps(task_id, step_id, pos, kind, needs, has_if, on_error,"
                      " status)"
                      " SELECT ?1, step_id, pos, kind, needs, has_if, on_error,"
                      " CASE WHEN ?3 = 0 AND needs = '' THEN 'ready' ELSE 'pending' END"
                      " FROM task_definition_steps WHERE version = ?2",
                      "ssi", id, version, (int64_t)queued);
    return rc;
}

/* A step event that would move a state backwards changes nothing; it is
 * logged (again on a replay, which meets the same events). */
static void refused(const Event *ev, const TaskRow *t, const StepRow *s, const char *why)
{
    log_warn("illegal step transition refused",
             json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "seq", (json_int_t)ev->seq, "type",
                       ev->type, "task", t->id, "step", s->id, "step_status", s->status,
                       "task_status", t->status, "why", why));
}

/* The step an event names, with the checks every step event shares. */
static int load_for_step(Store *tx, Data *d, TaskRow *t, StepRow **ret, Err *err)
{
    memset(t, 0, sizeof *t); /* task_row_done() must work whatever happens */
    const char *id = dstr(d, "task"), *sid = dstr(d, "step");
    if (!id || !sid)
        return 1;
    int rc = task_load(tx, id, t, err);
    if (rc == ERR_NOTFOUND)
        return 1;
    if (rc < 0)
        return rc;
    *ret = find_step(t, sid);
    return *ret ? 0 : 1;
}

/* attempt k may settle a step whose last recorded attempt is k (a wait
 * resolving) or k - 1 (a new attempt). */
static bool attempt_ok(const StepRow *s, int64_t k)
{
    return k >= 1 && (k == s->attempts || k == s->attempts + 1);
}

static int apply_step(Store *tx, const Event *ev, Data *d, Err *err)
{
    TaskRow t;
    StepRow *s = NULL;
    int rc = load_for_step(tx, d, &t, &s, err);
    if (rc != 0) {
        task_row_done(&t);
        return rc < 0 ? rc : 0;
    }
    const char *type = ev->type;
    int64_t k = dint(d, "attempt");
    bool open = !strcmp(s->status, "ready") || !strcmp(s->status, "waiting");
    bool task_live = !strcmp(t.status, "running") || !strcmp(t.status, "inbox");
    if (!open || !task_live) {
        refused(ev, &t, s, "the step or its task has settled");
        goto out;
    }
    if (!strcmp(type, "step.skipped")) {
        /* skip: condition (an `if`), rejected (an approval), operator (an
         * effect the operator canceled: the task goes on) */
        const char *why = dstr(d, "skip");
        if (!why || (strcmp(why, "rejected") && strcmp(why, "operator")))
            why = "condition";
        set_skipped(s, why);
        char *text = draw(d, "output", false);
        rc = store_execf(tx, err,
                      "UPDATE task_steps SET error = ?3, wake_at = NULL, wait_kind = NULL,"
                      " output = coalesce(?4, output)"
                      " WHERE task_id = ?1 AND step_id = ?2",
                      "ssss", t.id, s->id, dstr(d, "reason"), text);
        free(text);
        /* a rejection going to a step: that step runs though this one is skipped */
        StepRow *to = dstr(d, "goto") ? find_step(&t, dstr(d, "goto")) : NULL;
        if (rc == 0 && to && !strcmp(to->status, "pending")) {
            to->run_anyway = true;
            rc = store_execf(tx, err,
                           "UPDATE task_steps SET run_anyway = 1 WHERE task_id = ?1 AND step_id = ?2",
                           "ss", t.id, to->id);
        }
        goto settle;
    }
    if (!attempt_ok(s, k)) {
        refused(ev, &t, s, "not the step's current or next attempt");
        goto out;
    }
    const char *started = dstr(d, "started_at"), *finished = dstr(d, "finished_at");
    if (!strcmp(type, "step.completed")) {
        char *out = draw(d, "output", false);
        if (!out)
            out = xstrdup("null");
        rc = store_execf(tx, err,
                      "UPDATE task_steps SET status = 'succeeded', attempts = ?3, output = ?4,"
                      " error = NULL, started_at = coalesce(?5, started_at), finished_at = ?6,"
                      " wake_at = NULL, wait_kind = NULL"
                      " WHERE task_id = ?1 AND step_id = ?2",
                      "ssisss", t.id, s->id, k, out, started, finished ? finished : ev->received_at);
        free(out);
        snprintf(s->status, sizeof s->status, "succeeded"); /* written above */
        s->attempts = k;
    } else if (!strcmp(type, "step.waiting")) {
        const char *kind = dstr(d, "kind");
        rc = store_execf(tx, err,
                      "UPDATE task_steps SET status = 'waiting', attempts = ?3,"
                      " started_at = coalesce(started_at, ?4), wake_at = ?5, wait_kind = ?6,"
                      " wait_event = ?7, wait_where = ?8"
                      " WHERE task_id = ?1 AND step_id = ?2",
                      "ssisssss", t.id, s->id, k, started ? started : ev->received_at,
                      dstr(d, "until"), kind ? kind : "duration", dstr(d, "event"), dstr(d, "where"));
        snprintf(s->status, sizeof s->status, "waiting"); /* written above */
        s->attempts = k;
        goto out; /* no settling */
    } else { /* step.failed */
        const char *error = dstr(d, "error"), *next = dstr(d, "next_attempt_at");
        bool final = dtrue(d, "final") || !next;
        char *inputs = draw(d, "inputs", false);
        rc = store_execf(tx, err,
                      "UPDATE task_steps SET attempts = ?3, error = ?4,"
                      " started_at = coalesce(?5, started_at), wake_at = ?6, wait_kind = ?7,"
                      " inputs = ?8"
                      " WHERE task_id = ?1 AND step_id = ?2",
                      "ssisssss", t.id, s->id, k, error, started, final ? NULL : next,
                      final ? NULL : "retry", inputs);
        free(inputs);
        s->attempts = k;
        if (rc < 0)
            goto out;
        if (!final) {
            set_status(s, "waiting");
            goto settle;
        }
        const char *on_error = dstr(d, "on_error");
        if (on_error && !strcmp(on_error, "inbox")) {
            set_status(s, "waiting");
            rc = store_execf(tx, err,
                          "UPDATE task_steps SET wait_kind = 'inbox', wake_at = NULL"
                          " WHERE task_id = ?1 AND step_id = ?2",
                          "ss", t.id, s->id);
            snprintf(t.status, sizeof t.status, "inbox");
        } else if (on_error && !strcmp(on_error, "continue")) {
            set_status(s, "failed");
        } else {
            set_status(s, "failed");
            end_task(&t, "failed");
            rc = store_execf(tx, err, "UPDATE tasks SET error = ?2 WHERE id = ?1", "ss", t.id,
                          error ? error : "step failed");
        }
    }
settle:
    if (rc == 0) {
        propagate(&t);
        rc = task_store(tx, &t, ev, err);
    }
out:
    if (rc == 0)
        cache_put(tx, &t);
    task_row_done(&t);
    return rc < 0 ? rc : 0;
}

/* Operator actions on a task: cancel (any open task), retry and skip (the
 * steps waiting in the inbox). */
static int apply_action(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *id = str(d, "task"), *action = str(d, "action");
    if (!id || !action)
        return 0;
    TaskRow t;
    int rc = task_load(tx, id, &t, err);
    if (rc == ERR_NOTFOUND)
        return 0;
    if (rc < 0)
        goto out;
    if (!strcmp(action, "cancel") || !strcmp(action, "compensate")) {
        /* compensate: a task still open is canceled first; then its effects
         * are undone newest first by the outbox (a saga) */
        if (!settled(t.status)) {
            end_task(&t, "canceled");
            rc = task_store(tx, &t, ev, err);
        }
        if (rc == 0 && !strcmp(action, "compensate"))
            rc = store_execf(tx, err,
                           "UPDATE tasks SET compensation = 'running' WHERE id = ?1"
                           " AND compensation IS NULL",
                           "s", id);
        goto out;
    }
    if (strcmp(t.status, "inbox"))
        goto out;
    bool retry = !strcmp(action, "retry");
    if (!retry && strcmp(action, "skip"))
        goto out;
    StoreStmt *st;
    if ((rc = store_prepare(tx,
                            "SELECT step_id FROM task_steps WHERE task_id = ?1"
                            " AND status = 'waiting' AND wait_kind = 'inbox'",
                            &st, err)) < 0)
        goto out;
    store_bind_text(st, 1, id, strlen(id));
    while ((rc = store_step(st, err)) == STORE_ROW) {
        StepRow *s = find_step(&t, store_col_text(st, 0, NULL));
        if (!s)
            continue;
        if (retry) {
            s->changed = false; /* stays waiting: due now */
        } else {
            set_skipped(s, "operator");
        }
    }
    store_stmt_done(st);
    if (rc < 0)
        goto out;
    rc = store_execf(tx, err,
                  retry ? "UPDATE task_steps SET wait_kind = 'retry', wake_at = ?2"
                          " WHERE task_id = ?1 AND status = 'waiting' AND wait_kind = 'inbox'"
                        : "UPDATE task_steps SET wait_kind = NULL, wake_at = NULL,"
                          " error = 'skipped by the operator: ' || coalesce(error, '')"
                          " WHERE task_id = ?1 AND status = 'waiting' AND wait_kind = 'inbox'"
                          " AND ?2 IS NOT NULL",
                  "ss", id, ev->received_at);
    if (rc < 0)
        goto out;
    snprintf(t.status, sizeof t.status, "running");
    propagate(&t);
    rc = task_store(tx, &t, ev, err);
out:
    task_row_done(&t);
    return rc < 0 ? rc : 0;
}

/* A step waiting for an approval or an effect is due again (wait_kind
 * 'resume') when the decision or the effect's outcome is recorded: the
 * runner then takes it on (flow/effects.c). Deadlines move the approval
 * wait's timer. */
static int apply_gate(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *task = str(d, "task"), *step = str(d, "step"), *t = ev->type;
    if (!task || !step)
        return 0;
    if (!strcmp(t, "approval.reminded"))
        return store_execf(tx, err,
                         "UPDATE task_steps SET wake_at = ?3 WHERE task_id = ?1 AND step_id = ?2"
                         " AND status = 'waiting' AND wait_kind = 'approval'",
                         "sss", task, step, str(d, "next_at"));
    if (!strcmp(t, "approval.escalated"))
        return store_execf(tx, err,
                         "UPDATE task_steps SET wake_at = NULL WHERE task_id = ?1 AND step_id = ?2"
                         " AND status = 'waiting' AND wait_kind = 'approval'",
                         "ss", task, step);
    if (!strcmp(t, "effect.failed") && !json_is_true(json_object_get(d, "permanent")))
        return 0; /* it will be tried again */
    if (!strcmp(t, "effect.resolved") && strcmp(str(d, "as") ? str(d, "as") : "", "delivered"))
        return 0; /* sent again: the step waits for that */
    return store_execf(tx, err,
                     "UPDATE task_steps SET wait_kind = 'resume', wake_at = ?3"
                     " WHERE task_id = ?1 AND step_id = ?2 AND status = 'waiting'"
                     " AND wait_kind IN ('approval', 'effect')",
                     "sss", task, step, ev->received_at);
}

static int apply_setting(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *name = str(d, "workflow");
    if (!name)
        return 0;
    if (!strcmp(ev->type, "schedule.fired"))
        return store_execf(tx, err,
                        "INSERT INTO workflow_settings(name, last_slot) VALUES (?1, ?2)"
                        " ON CONFLICT(name) DO UPDATE SET last_slot = max(coalesce(last_slot, ''), ?2)",
                        "ss", name, str(d, "slot"));
    bool on = !strcmp(ev->type, "workflow.enabled");
    return store_execf(tx, err,
                    "INSERT INTO workflow_settings(name, enabled, changed_at) VALUES (?1, ?2, ?3)"
                    " ON CONFLICT(name) DO UPDATE SET enabled = ?2, changed_at = ?3",
                    "sis", name, (int64_t)on, ev->received_at);
}

static int apply(Store *tx, const Event *ev, Err *err)
{
    const char *t = ev->type;
    int which;
    if (!strcmp(t, "task.created"))
        which = 0;
    else if (!strncmp(t, "step.", 5) &&
             (!strcmp(t + 5, "completed") || !strcmp(t + 5, "failed") ||
              !strcmp(t + 5, "waiting") || !strcmp(t + 5, "skipped")))
        which = 1;
    else if (!strcmp(t, "task.action"))
        which = 2;
    else if (!strcmp(t, "workflow.enabled") || !strcmp(t, "workflow.disabled") ||
             !strcmp(t, "schedule.fired"))
        which = 3;
    else if (!strcmp(t, "approval.decided") || !strcmp(t, "approval.reminded") ||
             !strcmp(t, "approval.escalated") || !strcmp(t, "effect.delivered") ||
             !strcmp(t, "effect.captured") || !strcmp(t, "effect.failed") ||
             !strcmp(t, "effect.canceled") || !strcmp(t, "effect.resolved"))
        which = 4;
    else if (!strcmp(t, "task.compensated"))
        which = 5;
    else if (!strcmp(t, "model.batch.run"))
        /* bureau batch run: the steps waiting for the batch window are due now */
        return store_execf(tx, err,
                         "UPDATE task_steps SET wake_at = ?1 WHERE status = 'waiting'"
                         " AND wait_kind = 'batch'",
                         "s", ev->received_at);
    else
        return 0;
    if (which <= 1) {
        Data dd;
        if (data_read(&dd, ev) < 0)
            return 0;
        int rc = which == 0 ? apply_created(tx, ev, &dd, err) : apply_step(tx, ev, &dd, err);
        data_done(&dd);
        return rc;
    }
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!d)
        return 0;
    int rc = which == 2 ? apply_action(tx, ev, d, err)
           : which == 3 ? apply_setting(tx, ev, d, err)
           : which == 4 ? apply_gate(tx, ev, d, err)
           : str(d, "task") ? store_execf(tx, err,
                                        "UPDATE tasks SET compensation = 'done' WHERE id = ?1",
                                        "s", str(d, "task"))
                            : 0;
    json_decref(d);
    return rc;
}

static const Projection tasks_projection = {
    .name = "tasks",
    .version = 3, /* 3: outputs and inputs stored as the events' canonical text */
    .tables = tables,
    .apply = apply,
    .forget = forget,
};

void flow_projections_register(void)
{
    ledger_projection_register(&tasks_projection);
    flow__effects_projection_register();
    flow__goals_projection_register();
    model_projections_register(); /* model steps: spend, cache, examples */
    content_projection_register();
}
