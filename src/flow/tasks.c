/* Reading tasks for the CLI and the API, and the operator's actions on tasks
 * and workflows (recorded as events; the projection applies them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow/engine_int.h"

json_t *flow__col_text(StoreStmt *st, int col)
{
    const char *v = store_col_text(st, col, NULL);
    return v ? json_string(v) : json_null();
}

json_t *flow__col_json(StoreStmt *st, int col)
{
    size_t len;
    const char *v = store_col_text(st, col, &len);
    json_t *j = NULL;
    Err err = { 0 };
    if (!v || core_json_parse(v, len, &j, &err) < 0)
        return json_null();
    return j;
}

#define TASK_COLS                                                                          \
    "id, workflow, version, status, trigger_seq, depth, concurrency_key, created_at,"      \
    " updated_at, finished_at, error, input"

static json_t *task_row(StoreStmt *st)
{
    json_t *t = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "id", store_col_text(st, 0, NULL),
                          "workflow", store_col_text(st, 1, NULL), "version",
                          store_col_text(st, 2, NULL), "status", store_col_text(st, 3, NULL),
                          "trigger_seq", (json_int_t)store_col_int(st, 4), "depth",
                          (json_int_t)store_col_int(st, 5));
    json_object_set_new(t, "concurrency_key", flow__col_text(st, 6));
    json_object_set_new(t, "created_at", flow__col_text(st, 7));
    json_object_set_new(t, "updated_at", flow__col_text(st, 8));
    json_object_set_new(t, "finished_at", flow__col_text(st, 9));
    json_object_set_new(t, "error", flow__col_text(st, 10));
    json_object_set_new(t, "input", flow__col_json(st, 11));
    return t;
}

int flow_tasks_list(Store *rd, const char *status, const char *workflow, int64_t limit,
                    json_t **ret, Err *err)
{
    static const char *const statuses[] = { "queued", "running", "inbox", "succeeded",
                                            "failed", "canceled" };
    bool known = !status;
    for (size_t i = 0; !known && i < sizeof statuses / sizeof statuses[0]; i++)
        known = !strcmp(status, statuses[i]);
    if (!known)
        return err_set(err, ERR_INVAL,
                       "unknown status '%.32s' (queued, running, inbox, succeeded, failed, "
                       "canceled)",
                       status);
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT " TASK_COLS " FROM tasks"
                           " WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR workflow = ?2)"
                           " ORDER BY created_seq DESC LIMIT ?3",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, status, status ? strlen(status) : 0);
    store_bind_text(st, 2, workflow, workflow ? strlen(workflow) : 0);
    store_bind_int(st, 3, limit > 0 ? limit : -1);
    json_t *arr = json_array();
    while ((rc = store_step(st, err)) == STORE_ROW)
        json_array_append_new(arr, task_row(st));
    store_stmt_done(st);
    if (rc < 0) {
        json_decref(arr);
        return rc;
    }
    *ret = arr;
    return 0;
}

int flow_task_get(Store *rd, const char *id, json_t **ret, Err *err)
{
    int rc = store_begin_read(rd, err);
    if (rc < 0)
        return rc;
    StoreStmt *st;
    json_t *t = NULL;
    if ((rc = store_prepare(rd, "SELECT " TASK_COLS " FROM tasks WHERE id = ?1", &st, err)) < 0)
        goto out;
    store_bind_text(st, 1, id, strlen(id));
    if ((rc = store_step(st, err)) == STORE_ROW)
        t = task_row(st);
    store_stmt_done(st);
    if (rc < 0)
        goto out;
    if (!t) {
        rc = err_set(err, ERR_NOTFOUND, "no task %s", id);
        goto out;
    }
    if ((rc = store_prepare(rd,
                            "SELECT step_id, kind, status, attempts, needs, output, error,"
                            " started_at, finished_at, wake_at, wait_kind, wait_event, skip_reason, inputs"
                            " FROM task_steps WHERE task_id = ?1 ORDER BY pos",
                            &st, err)) < 0)
        goto out;
    store_bind_text(st, 1, id, strlen(id));
    json_t *steps = json_array();
    while ((rc = store_step(st, err)) == STORE_ROW) {
        json_t *s = json_pack("{s:s, s:s, s:s, s:I}", "id", store_col_text(st, 0, NULL), "kind",
                              store_col_text(st, 1, NULL), "status", store_col_text(st, 2, NULL),
                              "attempts", (json_int_t)store_col_int(st, 3));
        json_t *needs = json_array();
        char buf[FLOW_MAX_STEPS * (FLOW_NAME_MAX + 1) + 1];
        snprintf(buf, sizeof buf, "%s", store_col_text(st, 4, NULL));
        char *save = NULL;
        for (char *n = strtok_r(buf, ",", &save); n; n = strtok_r(NULL, ",", &save))
            json_array_append_new(needs, json_string(n));
        json_object_set_new(s, "needs", needs);
        json_object_set_new(s, "output", flow__col_json(st, 5));
        json_object_set_new(s, "error", flow__col_text(st, 6));
        json_object_set_new(s, "started_at", flow__col_text(st, 7));
        json_object_set_new(s, "finished_at", flow__col_text(st, 8));
        json_object_set_new(s, "wake_at", flow__col_text(st, 9));
        json_object_set_new(s, "wait", flow__col_text(st, 10));
        json_object_set_new(s, "wait_event", flow__col_text(st, 11));
        json_object_set_new(s, "skip_reason", flow__col_text(st, 12));
        json_object_set_new(s, "inputs", flow__col_json(st, 13));
        json_array_append_new(steps, s);
    }
    store_stmt_done(st);
    json_object_set_new(t, "steps", steps);
    if (rc < 0)
        goto out;
    rc = 0;
    *ret = t;
    t = NULL;
out:
    json_decref(t);
    store_rollback(rd);
    return rc;
}

int flow_task_action(Ledger *l, Store *rd, const char *task_id, const char *action, Err *err)
{
    bool cancel = !strcmp(action, "cancel"), compensate = !strcmp(action, "compensate");
    if (!cancel && !compensate && strcmp(action, "retry") && strcmp(action, "skip"))
        return err_set(err, ERR_INVAL, "unknown action '%s' (retry, skip, cancel or compensate)",
                       action);
    StoreStmt *st;
    int rc = store_prepare(rd, "SELECT status, workflow, compensation FROM tasks WHERE id = ?1",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, task_id, strlen(task_id));
    char status[16] = "", workflow[FLOW_NAME_MAX + 1] = "", comp[16] = "";
    if ((rc = store_step(st, err)) == STORE_ROW) {
        snprintf(status, sizeof status, "%s", store_col_text(st, 0, NULL));
        snprintf(workflow, sizeof workflow, "%s", store_col_text(st, 1, NULL));
        const char *c = store_col_text(st, 2, NULL);
        snprintf(comp, sizeof comp, "%s", c ? c : "");
    }
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    if (!status[0])
        return err_set(err, ERR_NOTFOUND, "no task %s", task_id);
    if (cancel && flow__status_terminal(status))
        return err_set(err, ERR_EXISTS, "task %s is already %s", task_id, status);
    if (compensate && comp[0])
        return err_set(err, ERR_EXISTS, "task %s: its compensation is %s already", task_id,
                       !strcmp(comp, "done") ? "done" : "running");
    if (!cancel && !compensate && strcmp(status, "inbox"))
        return err_set(err, ERR_EXISTS,
                       "task %s is %s: only a task in the inbox can be retried or skipped",
                       task_id, status);
    json_t *d = json_pack("{s:s, s:s}", "task", task_id, "action", action);
    char source[FLOW_NAME_MAX + 16];
    flow__source(workflow, source);
    Event *ev = NULL;
    rc = ledger_event_new("task.action", "operator", NULL, d, NULL, ledger_limits(l), &ev, err);
    json_decref(d);
    if (rc == 0)
        rc = ledger_append(l, &ev, 1, NULL, err);
    if (rc == 0)
        log_info("task action", json_pack("{s:s, s:s}", "task", task_id, "action", action));
    return rc;
}

int flow_workflow_set_enabled(Ledger *l, const char *data_dir, const char *name, bool on, Err *err)
{
    FlowCatalog cat;
    int rc = flow_catalog_load(data_dir, &cat, NULL, NULL, err);
    if (rc < 0)
        return rc;
    const FlowWorkflow *w = flow_catalog_find(&cat, name);
    if (!w) {
        flow_catalog_done(&cat);
        return err_set(err, ERR_NOTFOUND, "no workflow named '%s' (see `bureau workflows list`)",
                       name);
    }
    json_t *d = json_pack("{s:s, s:s}", "workflow", name, "version", w->version);
    flow_catalog_done(&cat);
    Event *ev = NULL;
    rc = ledger_event_new(on ? "workflow.enabled" : "workflow.disabled", "operator", NULL, d, NULL,
                          ledger_limits(l), &ev, err);
    json_decref(d);
    return rc < 0 ? rc : ledger_append(l, &ev, 1, NULL, err);
}

/* {key: count} from a query answering (key, count) rows. */
static int counts(Store *rd, const char *sql, const char *arg, json_t *into, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd, sql, &st, err);
    if (rc < 0)
        return rc;
    if (arg)
        store_bind_text(st, 1, arg, strlen(arg));
    while ((rc = store_step(st, err)) == STORE_ROW)
        json_object_set_new(into, store_col_text(st, 0, NULL),
                            json_integer(store_col_int(st, 1)));
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

int flow_status(Store *rd, int64_t now_ms, json_t **ret, Err *err)
{
    char since[CORE_TIME_LEN + 1];
    core_time_format(now_ms - 24 * 3600 * 1000LL, since);
    json_t *tasks = json_object(), *steps = json_object(), *recent = json_object(),
           *by_workflow = json_object();
    int rc = store_begin_read(rd, err);
    if (rc < 0)
        goto out;
    rc = counts(rd, "SELECT status, count(*) FROM tasks GROUP BY status", NULL, tasks, err);
    if (rc == 0)
        rc = counts(rd,
                    "SELECT s.status, count(*) FROM task_steps s JOIN tasks t ON t.id = s.task_id"
                    " WHERE t.status IN ('queued', 'running', 'inbox') GROUP BY s.status",
                    NULL, steps, err);
    /* the outcomes of the last day, over at most the last 100000 events */
    if (rc == 0)
        rc = counts(rd,
                    "SELECT type, count(*) FROM events WHERE seq > (SELECT coalesce(max(seq), 0)"
                    " - 100000 FROM events) AND received_at >= ?1 AND type IN ('step.completed',"
                    " 'step.failed', 'effect.delivered', 'effect.captured', 'effect.failed',"
                    " 'task.failed', 'task.succeeded', 'model.called') GROUP BY type",
                    since, recent, err);
    if (rc == 0)
        rc = counts(rd,
                    "SELECT workflow || ':' || status, count(*) FROM tasks"
                    " WHERE status IN ('queued', 'running', 'inbox', 'failed')"
                    " GROUP BY workflow, status",
                    NULL, by_workflow, err);
    store_rollback(rd);
out:
    if (rc < 0) {
        json_decref(tasks);
        json_decref(steps);
        json_decref(recent);
        json_decref(by_workflow);
        return rc;
    }
    *ret = json_pack("{s:o, s:o, s:o, s:s, s:o}", "tasks", tasks, "steps", steps, "last_day",
                     recent, "since", since, "workflows", by_workflow);
    return 0;
}
