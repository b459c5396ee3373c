/* The operator's side of approvals and effects: the mode, the inbox,
 * decisions, what the outbox holds, and a task's trace. Reads the
 * projections; every change is an appended event (flow/effects.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "effect/http_post.h"
#include "effect/mail.h"
#include "flow/effects.h"
#include "flow/engine_int.h"

#define TRACE_EVENTS_MAX 10000

/* Appends one operator event (data's reference is stolen). */
static int append(Ledger *l, const char *type, json_t *data, const char *key, int64_t *seq,
                  Err *err)
{
    Event *ev = NULL;
    int rc = ledger_event_new(type, "operator", NULL, data, key, ledger_limits(l), &ev, err);
    json_decref(data);
    LedgerAppendResult r = { 0 };
    if (rc == 0)
        rc = ledger_append(l, &ev, 1, &r, err);
    if (rc == 0 && seq)
        *seq = r.seq;
    return rc;
}

int flow_mode_get(Store *rd, char out[FLOW_MODE_MAX], Err *err)
{
    StoreStmt *st;
    snprintf(out, FLOW_MODE_MAX, "sandbox");
    int rc = store_prepare(rd, "SELECT value FROM install_settings WHERE key = 'mode'", &st, err);
    if (rc < 0)
        return rc;
    if ((rc = store_step(st, err)) == STORE_ROW)
        snprintf(out, FLOW_MODE_MAX, "%s", store_col_text(st, 0, NULL));
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

int flow_mode_set(Ledger *l, Store *rd, const char *mode, const char *by, bool *changed, Err *err)
{
    if (strcmp(mode, "sandbox") && strcmp(mode, "production"))
        return err_set(err, ERR_INVAL, "mode: '%.32s' is not sandbox or production", mode);
    char now[FLOW_MODE_MAX];
    int rc = flow_mode_get(rd, now, err);
    if (rc < 0)
        return rc;
    *changed = strcmp(now, mode) != 0;
    if (!*changed)
        return 0;
    rc = append(l, "operator.mode.changed",
                json_pack("{s:s, s:s, s:s}", "mode", mode, "previous", now, "by", by), NULL, NULL,
                err);
    if (rc == 0)
        log_warn("mode changed", json_pack("{s:s, s:s, s:s}", "mode", mode, "previous", now, "by",
                                           by));
    return rc;
}

/* ---- the inbox ---- */

/* The inbox is written as JSON text, not built as a Jansson tree: with a
 * thousand drafts waiting, parsing each stored preview only to print it
 * again was most of the time the dashboard waited. The stored previews and
 * sources are the projection's own JSON, spliced as they are. */

static void put_str(Buf *b, const char *s)
{
    if (!s) {
        buf_puts(b, "null");
        return;
    }
    static const char hex[] = "0123456789abcdef";
    buf_putc(b, '"');
    const char *run = s;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_append(b, run, (size_t)(p - run));
        run = p + 1;
        char esc[7] = { '\\', (char)c, 0 };
        switch (c) {
        case '"': case '\\': break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
        }
        buf_puts(b, esc);
    }
    buf_append(b, run, strlen(run));
    buf_putc(b, '"');
}

static void put_key(Buf *b, const char *k)
{
    buf_putc(b, ',');
    put_str(b, k);
    buf_putc(b, ':');
}

/* A column of stored JSON, spliced; `none` when NULL or empty. */
static void put_raw(Buf *b, StoreStmt *st, int col, const char *none)
{
    size_t len;
    const char *v = store_col_text(st, col, &len);
    if (v && len)
        buf_append(b, v, len);
    else
        buf_puts(b, none);
}

static void put_real(Buf *b, StoreStmt *st, int col)
{
    if (!store_col_text(st, col, NULL)) {
        buf_puts(b, "null");
        return;
    }
    char num[40];
    snprintf(num, sizeof num, "%.17g", store_col_real(st, col));
    if (!strpbrk(num, ".eEn")) /* a real stays a real, as Jansson writes it */
        strcat(num, ".0");
    buf_puts(b, num);
}

static int inbox_approvals(Store *rd, Buf *out, bool *first, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(
        rd,
        "SELECT a.id, a.task_id, a.step_id, a.kind, a.preview, a.sources, a.confidence,"
        " a.confidence_source, a.model, a.cost, a.deadline, a.escalated, a.requested_at,"
        " coalesce(t.workflow, json_extract(a.preview, '$.workflow')), a.compensates, a.policy,"
        " a.reminders, a.kind = 'goal', json_extract(a.preview, '$.text')"
        " FROM approvals a LEFT JOIN tasks t ON t.id = a.task_id"
        " WHERE a.status = 'pending' AND (a.kind = 'goal'"
        "  OR (a.compensates IS NULL AND t.status IN ('running', 'inbox'))"
        "  OR (a.compensates IS NOT NULL AND t.compensation = 'running'))"
        " ORDER BY a.escalated DESC, a.requested_seq",
        &st, err);
    if (rc < 0)
        return rc;
    while ((rc = store_step(st, err)) == STORE_ROW) {
        buf_puts(out, *first ? "{\"id\":" : ",{\"id\":");
        *first = false;
        put_str(out, store_col_text(st, 0, NULL));
        buf_puts(out, ",\"kind\":\"approval\"");
        bool goal = store_col_int(st, 17) != 0; /* a goal's proposal: no task yet */
        put_key(out, "task"), put_str(out, goal ? NULL : store_col_text(st, 1, NULL));
        if (goal) {
            put_key(out, "goal"), put_str(out, store_col_text(st, 1, NULL));
            put_key(out, "title"), put_str(out, store_col_text(st, 18, NULL));
        }
        put_key(out, "step"), put_str(out, store_col_text(st, 2, NULL));
        put_key(out, "effect_kind"), put_str(out, store_col_text(st, 3, NULL));
        put_key(out, "workflow"), put_str(out, store_col_text(st, 13, NULL));
        put_key(out, "preview"), put_raw(out, st, 4, "null");
        put_key(out, "sources"), put_raw(out, st, 5, "[]");
        put_key(out, "confidence"), put_real(out, st, 6);
        put_key(out, "confidence_source"), put_str(out, store_col_text(st, 7, NULL));
        put_key(out, "model"), put_str(out, store_col_text(st, 8, NULL));
        put_key(out, "cost"), put_real(out, st, 9);
        put_key(out, "deadline"), put_str(out, store_col_text(st, 10, NULL));
        put_key(out, "escalated"), buf_puts(out, store_col_int(st, 11) ? "true" : "false");
        put_key(out, "reminders"), buf_printf(out, "%lld", (long long)store_col_int(st, 16));
        put_key(out, "created_at"), put_str(out, store_col_text(st, 12, NULL));
        put_key(out, "compensates"), put_str(out, store_col_text(st, 14, NULL));
        put_key(out, "policy"), put_str(out, store_col_text(st, 15, NULL));
        buf_putc(out, '}');
    }
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

static int inbox_failures(Store *rd, json_t *items, Err *err)
{
    StoreStmt *st;
    /* tasks waiting for the operator after a step failed */
    int rc = store_prepare(rd,
                           "SELECT t.id, s.step_id, t.workflow, s.error, s.inputs, t.updated_at"
                           " FROM tasks t JOIN task_steps s ON s.task_id = t.id"
                           " WHERE t.status = 'inbox' AND s.status = 'waiting'"
                           " AND s.wait_kind = 'inbox' ORDER BY t.created_seq",
                           &st, err);
    if (rc < 0)
        return rc;
    while ((rc = store_step(st, err)) == STORE_ROW) {
        json_t *it = json_pack("{s:s, s:s, s:s, s:s}", "id", store_col_text(st, 0, NULL), "kind",
                               "failure", "task", store_col_text(st, 0, NULL), "step",
                               store_col_text(st, 1, NULL));
        json_object_set_new(it, "workflow", flow__col_text(st, 2));
        json_object_set_new(it, "error", flow__col_text(st, 3));
        json_object_set_new(it, "preview", flow__col_json(st, 4));
        json_object_set_new(it, "sources", json_array());
        json_object_set_new(it, "confidence", json_null());
        json_object_set_new(it, "effect", json_null());
        json_object_set_new(it, "created_at", flow__col_text(st, 5));
        json_array_append_new(items, it);
    }
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    /* effects whose delivery is uncertain, and failed ones of tasks that
     * are not in the inbox already (compensations, `continue` steps) */
    rc = store_prepare(rd,
                       "SELECT e.id, e.task_id, e.step_id, e.kind, e.status, e.detail, e.payload,"
                       " e.updated_at, t.workflow FROM effects e JOIN tasks t ON t.id = e.task_id"
                       " WHERE e.status = 'uncertain' OR (e.status = 'failed'"
                       "  AND NOT (t.status = 'inbox' AND e.compensates IS NULL)"
                       "  AND NOT EXISTS (SELECT 1 FROM effects n WHERE n.task_id = e.task_id"
                       "   AND n.step_id = e.step_id AND n.requested_seq > e.requested_seq))"
                       " ORDER BY e.requested_seq",
                       &st, err);
    if (rc < 0)
        return rc;
    while ((rc = store_step(st, err)) == STORE_ROW) {
        const char *status = store_col_text(st, 4, NULL), *detail = store_col_text(st, 5, NULL);
        char error[700];
        snprintf(error, sizeof error, "%s %s: %s", store_col_text(st, 3, NULL),
                 !strcmp(status, "uncertain") ? "may or may not have been delivered"
                                              : "failed for good",
                 detail ? detail : "");
        json_t *it = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", store_col_text(st, 0, NULL),
                               "kind", "failure", "task", store_col_text(st, 1, NULL), "step",
                               store_col_text(st, 2, NULL), "effect", store_col_text(st, 0, NULL),
                               "error", error);
        json_object_set_new(it, "effect_status", json_string(status));
        json_object_set_new(it, "workflow", flow__col_text(st, 8));
        json_object_set_new(it, "preview", flow__col_json(st, 6));
        json_object_set_new(it, "sources", json_array());
        json_object_set_new(it, "confidence", json_null());
        json_object_set_new(it, "created_at", flow__col_text(st, 7));
        json_array_append_new(items, it);
    }
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

int flow_inbox_write(Store *rd, Buf *out, Err *err)
{
    bool first = true;
    buf_putc(out, '[');
    int rc = inbox_approvals(rd, out, &first, err);
    json_t *failures = json_array();
    if (rc == 0)
        rc = inbox_failures(rd, failures, err);
    size_t i;
    json_t *it;
    json_array_foreach(failures, i, it) {
        if (!first)
            buf_putc(out, ',');
        first = false;
        core_json_dump(it, out);
    }
    json_decref(failures);
    buf_putc(out, ']');
    return rc;
}

int flow_inbox_list(Store *rd, json_t **ret, Err *err)
{
    Buf b;
    buf_init(&b, 0);
    json_t *items = NULL;
    int rc = flow_inbox_write(rd, &b, err);
    if (rc == 0)
        rc = core_json_parse(buf_cstr(&b), b.len, &items, err);
    buf_done(&b);
    if (rc < 0)
        return rc;
    *ret = items;
    return 0;
}

/* ---- decisions ---- */

/* What an edit changed: for objects, each top-level key that differs
 * {from, to}; else the whole value. */
static json_t *diff_of(const json_t *from, const json_t *to)
{
    json_t *d = json_object();
    if (!json_is_object(from) || !json_is_object(to)) {
        if (!json_equal(from, to))
            json_object_set_new(d, "", json_pack("{s:O, s:O}", "from", from, "to", to));
        return d;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)from, k, v) {
        json_t *w = json_object_get(to, k);
        if (!w || !json_equal(v, w))
            json_object_set_new(d, k, json_pack("{s:O, s:O}", "from", v, "to", w ? w : json_null()));
    }
    json_object_foreach((json_t *)to, k, v) if (!json_object_get(from, k))
        json_object_set_new(d, k, json_pack("{s:n, s:O}", "from", "to", v));
    return d;
}

int flow_approval_decide(Ledger *l, Store *rd, const char *id, const char *decision,
                         const json_t *payload, const char *reason, const char *by,
                         json_t **ret, Err *err)
{
    if (strcmp(decision, "approve") && strcmp(decision, "edit") && strcmp(decision, "reject"))
        return err_set(err, ERR_INVAL, "decision: '%.32s' is not approve, edit or reject",
                       decision);
    if (!strcmp(decision, "edit") && !payload)
        return err_set(err, ERR_INVAL, "payload: an edit needs the whole edited payload");
    if (strcmp(decision, "edit") && payload && !json_is_null(payload))
        return err_set(err, ERR_INVAL, "payload: only an edit carries a payload");
    if (!strcmp(decision, "reject") && (!reason || !*reason))
        return err_set(err, ERR_INVAL, "reason: a rejection needs a reason");
    if (reason && strlen(reason) > 2000)
        return err_set(err, ERR_INVAL, "reason: longer than 2000 bytes");
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT a.status, a.task_id, a.step_id, a.kind, a.preview, a.attempt,"
                           " t.status, a.compensates, t.compensation"
                           " FROM approvals a LEFT JOIN tasks t ON t.id = a.task_id WHERE a.id = ?1",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, id, strlen(id));
    if ((rc = store_step(st, err)) != STORE_ROW) {
        store_stmt_done(st);
        return rc < 0 ? rc : err_set(err, ERR_NOTFOUND, "no approval '%.40s'", id);
    }
    char status[16], task[CORE_ULID_LEN + 1], step[FLOW_NAME_MAX + 16], kind[32], tstatus[16],
        tcomp[16];
    snprintf(status, sizeof status, "%s", store_col_text(st, 0, NULL));
    snprintf(task, sizeof task, "%s", store_col_text(st, 1, NULL));
    snprintf(step, sizeof step, "%s", store_col_text(st, 2, NULL));
    snprintf(kind, sizeof kind, "%s", store_col_text(st, 3, NULL));
    json_t *preview = flow__col_json(st, 4);
    int64_t attempt = store_col_int(st, 5);
    const char *ts = store_col_text(st, 6, NULL);
    snprintf(tstatus, sizeof tstatus, "%s", ts ? ts : "");
    bool compensation = store_col_text(st, 7, NULL) != NULL;
    const char *tc = store_col_text(st, 8, NULL);
    snprintf(tcomp, sizeof tcomp, "%s", tc ? tc : "");
    store_stmt_done(st);
    if (strcmp(status, "pending")) {
        json_decref(preview);
        return err_set(err, ERR_EXISTS, "approval %s was decided already (%s)", id, status);
    }
    bool goal = !strcmp(kind, "goal"); /* a goal's proposal: no task before it is approved */
    bool live = goal ? true
              : compensation ? !strcmp(tcomp, "running")
                             : !strcmp(tstatus, "running") || !strcmp(tstatus, "inbox");
    if (!live) {
        json_decref(preview);
        return err_set(err, ERR_EXISTS, "task %s has ended (%s): approval %s can no longer be "
                                        "decided", task, tstatus, id);
    }
    json_t *diff = NULL;
    if (!strcmp(decision, "edit")) {
        Err pe = { 0 };
        rc = goal && !json_is_object(payload) ? err_set(&pe, ERR_INVAL, "must be an object")
           : !strcmp(kind, "email.send")     ? mail_payload_check(payload, &pe)
           : !strcmp(kind, "webhook.post")   ? http_post_check(payload, &pe)
                                             : 0;
        if (rc < 0) {
            json_decref(preview);
            return err_set(err, ERR_INVAL, "payload.%s", pe.msg);
        }
        diff = diff_of(preview, payload);
    }
    json_decref(preview);
    json_t *d = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s}", "approval", id, "task", task, "step",
                          step, "attempt", (json_int_t)attempt, "decision", decision, "by", by);
    if (payload && !strcmp(decision, "edit"))
        json_object_set(d, "payload", (json_t *)payload);
    if (diff)
        json_object_set_new(d, "diff", diff);
    if (reason && *reason)
        json_object_set_new(d, "reason", json_string(reason));
    char key[128];
    snprintf(key, sizeof key, "approval.decided:%s", id);
    int64_t seq = 0;
    if (goal) {
        /* the decision and, unless rejected, goal.approved (what the
         * planner starts the task on) in one request: both or neither */
        json_object_set_new(d, "goal", json_string(task));
        Event *evs[2] = { 0 };
        size_t n = 0;
        rc = ledger_event_new("approval.decided", "operator", NULL, d, key, ledger_limits(l),
                              &evs[0], err);
        json_decref(d);
        if (rc == 0)
            n = 1;
        if (rc == 0 && strcmp(decision, "reject")) {
            json_t *pv = NULL;
            if (!payload) {
                StoreStmt *ps;
                if ((rc = store_prepare(rd, "SELECT preview FROM approvals WHERE id = ?1", &ps,
                                        err)) == 0) {
                    store_bind_text(ps, 1, id, strlen(id));
                    if (store_step(ps, err) == STORE_ROW)
                        pv = flow__col_json(ps, 0);
                    store_stmt_done(ps);
                }
            }
            if (rc == 0 && (rc = flow__goal_approved_event(task, id, payload ? payload : pv, by,
                                                           ledger_limits(l), &evs[1], err)) == 0)
                n = 2;
            json_decref(pv);
        }
        LedgerAppendResult res[2];
        if (rc == 0)
            rc = ledger_append(l, evs, n, res, err);
        else
            for (size_t i = 0; i < n; i++)
                ledger_event_free(evs[i]);
        if (rc < 0)
            return rc;
        if (res[0].duplicate) /* another decision came first (a race past the check above) */
            return err_set(err, ERR_EXISTS, "approval %s was decided already (concurrently)",
                           id);
        seq = res[0].seq;
        if (ret)
            *ret = json_pack("{s:s, s:s, s:s, s:n, s:s, s:I}", "approval", id, "decision", decision,
                             "goal", task, "task", "step", step, "seq", (json_int_t)seq);
        return 0;
    }
    Event *dev = NULL;
    rc = ledger_event_new("approval.decided", "operator", NULL, d, key, ledger_limits(l), &dev,
                          err);
    json_decref(d);
    LedgerAppendResult dr = { 0 };
    if (rc == 0 && (rc = ledger_append(l, &dev, 1, &dr, err)) == 0 && dr.duplicate)
        rc = err_set(err, ERR_EXISTS, "approval %s was decided already (concurrently)", id);
    if (rc < 0)
        return rc;
    seq = dr.seq;
    if (ret)
        *ret = json_pack("{s:s, s:s, s:s, s:s, s:I}", "approval", id, "decision", decision, "task",
                         task, "step", step, "seq", (json_int_t)seq);
    return 0;
}

/* ---- effects ---- */

const char *const flow_effect_statuses[FLOW_EFFECT_STATUSES + 1] = {
    "requested", "held", "captured", "delivered", "uncertain", "failed", "canceled", "compensated",
    NULL,
};
#define effect_statuses flow_effect_statuses

int flow_effects_summary(Store *rd, int64_t counts[FLOW_EFFECT_STATUSES],
                         int64_t *pending_approvals, Err *err)
{
    memset(counts, 0, FLOW_EFFECT_STATUSES * sizeof *counts);
    StoreStmt *st;
    int rc = store_prepare(rd, "SELECT status, count(*) FROM effects GROUP BY status", &st, err);
    if (rc < 0)
        return rc;
    while ((rc = store_step(st, err)) == STORE_ROW)
        for (int i = 0; i < FLOW_EFFECT_STATUSES; i++)
            if (!strcmp(store_col_text(st, 0, NULL), flow_effect_statuses[i]))
                counts[i] = store_col_int(st, 1);
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    return store_query_int(rd, "SELECT count(*) FROM approvals WHERE status = ?1", "pending", 0,
                           pending_approvals, err);
}

static json_t *effect_json(StoreStmt *st)
{
    json_t *x = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", store_col_text(st, 0, NULL), "kind",
                          store_col_text(st, 1, NULL), "status", store_col_text(st, 2, NULL),
                          "task", store_col_text(st, 3, NULL), "step",
                          store_col_text(st, 4, NULL));
    json_object_set_new(x, "payload", flow__col_json(st, 5));
    json_object_set_new(x, "purpose", flow__col_text(st, 6));
    json_object_set_new(x, "mode", flow__col_text(st, 7));
    json_object_set_new(x, "delivery_key", flow__col_text(st, 8));
    json_object_set_new(x, "deliveries", json_integer(store_col_int(st, 9)));
    json_object_set_new(x, "code", store_col_text(st, 10, NULL) ? json_integer(store_col_int(st, 10))
                                                                 : json_null());
    json_object_set_new(x, "detail", flow__col_text(st, 11));
    json_object_set_new(x, "message_id", flow__col_text(st, 12));
    json_object_set_new(x, "compensates", flow__col_text(st, 13));
    json_object_set_new(x, "hold_until", flow__col_text(st, 14));
    json_object_set_new(x, "requested_at", flow__col_text(st, 15));
    json_object_set_new(x, "updated_at", flow__col_text(st, 16));
    json_object_set_new(x, "approval", flow__col_text(st, 17));
    return x;
}

#define EFFECT_COLS                                                                           \
    "id, kind, status, task_id, step_id, payload, purpose, mode, delivery_key, deliveries,"   \
    " code, detail, message_id, compensates, hold_until, requested_at, updated_at, approval_id"

int flow_effects_list(Store *rd, const char *status, const char *task, int64_t limit,
                      json_t **ret, Err *err)
{
    bool known = !status;
    for (int i = 0; !known && effect_statuses[i]; i++)
        known = !strcmp(status, effect_statuses[i]);
    if (!known)
        return err_set(err, ERR_INVAL,
                       "status: '%.32s' is not one of requested, held, captured, delivered, "
                       "uncertain, failed, canceled, compensated",
                       status);
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT " EFFECT_COLS " FROM effects"
                           " WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR task_id = ?2)"
                           " ORDER BY requested_seq DESC LIMIT ?3",
                           &st, err);
    if (rc < 0)
        return rc;
    if (status)
        store_bind_text(st, 1, status, strlen(status));
    if (task)
        store_bind_text(st, 2, task, strlen(task));
    store_bind_int(st, 3, limit > 0 ? limit : 100);
    json_t *list = json_array();
    while ((rc = store_step(st, err)) == STORE_ROW)
        json_array_append_new(list, effect_json(st));
    store_stmt_done(st);
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *ret = list;
    return 0;
}

int flow_effect_action(Ledger *l, Store *rd, const char *id, const char *action,
                       const char *reason, const char *by, Err *err)
{
    json_t *list = NULL;
    StoreStmt *st;
    int rc = store_prepare(rd, "SELECT " EFFECT_COLS ", in_flight FROM effects WHERE id = ?1", &st,
                           err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, id, strlen(id));
    if ((rc = store_step(st, err)) == STORE_ROW)
        list = effect_json(st);
    bool in_flight = rc == STORE_ROW && store_col_int(st, 18) != 0;
    store_stmt_done(st);
    if (!list)
        return rc < 0 ? rc : err_set(err, ERR_NOTFOUND, "no effect '%.40s'", id);
    const char *status = json_string_value(json_object_get(list, "status"));
    const char *type = NULL, *as = NULL;
    bool ok;
    if (!strcmp(action, "cancel")) {
        type = "effect.canceled";
        ok = !in_flight && (!strcmp(status, "requested") || !strcmp(status, "held") ||
                            !strcmp(status, "failed") || !strcmp(status, "uncertain"));
    } else if (!strcmp(action, "sent") || !strcmp(action, "resend")) {
        type = "effect.resolved";
        as = !strcmp(action, "sent") ? "delivered" : "resend";
        ok = !strcmp(status, "uncertain") || !strcmp(status, "failed");
    } else {
        json_decref(list);
        return err_set(err, ERR_INVAL, "action: '%.32s' is not cancel, sent or resend", action);
    }
    if (!ok) {
        rc = err_set(err, ERR_EXISTS, "effect %s is %s%s: '%s' does not apply", id, status,
                     in_flight ? " and being delivered" : "", action);
        json_decref(list);
        return rc;
    }
    json_t *d = json_pack("{s:s, s:O, s:O, s:O, s:s}", "effect", id, "task",
                          json_object_get(list, "task"), "step", json_object_get(list, "step"),
                          "kind", json_object_get(list, "kind"), "by", by);
    if (as)
        json_object_set_new(d, "as", json_string(as));
    if (reason && *reason)
        json_object_set_new(d, "reason", json_string(reason));
    json_decref(list);
    return append(l, type, d, NULL, NULL, err);
}

int flow_effect_sent_seen(Ledger *l, Store *rd, const char *from, const char *message_id,
                          const char *by, int *ret_settled, Err *err)
{
    char want[MAIL_MESSAGE_ID_SIZE + 2];
    size_t n = strlen(message_id);
    if (n && message_id[0] == '<')
        message_id++, n--;
    if (n && message_id[n - 1] == '>')
        n--;
    if (n == 0 || n + 3 > sizeof want)
        return 0; /* not one of ours: they have a fixed shape */
    snprintf(want, sizeof want, "<%.*s>", (int)n, message_id);
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT id, delivery_key, message_id FROM effects"
                           " WHERE status = 'uncertain' AND kind = 'email.send'",
                           &st, err);
    if (rc < 0)
        return rc;
    json_t *ids = json_array();
    while ((rc = store_step(st, err)) == STORE_ROW) {
        char mine[MAIL_MESSAGE_ID_SIZE];
        const char *known = store_col_text(st, 2, NULL);
        mail_message_id(store_col_text(st, 1, NULL), from, mine, sizeof mine);
        if (!strcasecmp(mine, want) || (known && !strcasecmp(known, want)))
            json_array_append_new(ids, json_string(store_col_text(st, 0, NULL)));
    }
    store_stmt_done(st);
    int settled = 0;
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) {
        if (rc < 0)
            break;
        rc = flow_effect_action(l, rd, json_string_value(v), "sent", "seen in the Sent folder", by,
                                err);
        settled += rc == 0;
    }
    json_decref(ids);
    if (rc < 0)
        return rc;
    if (ret_settled)
        *ret_settled = settled;
    return 0;
}

/* ---- trace ---- */

static int approvals_of(Store *rd, const char *task, json_t **ret, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT id, step_id, kind, status, preview, payload, diff, reason,"
                           " decided_by, requested_at, decided_at, confidence, policy, sources"
                           " FROM approvals WHERE task_id = ?1 ORDER BY requested_seq",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, task, strlen(task));
    json_t *list = json_array();
    while ((rc = store_step(st, err)) == STORE_ROW) {
        json_t *a = json_pack("{s:s, s:s, s:s, s:s}", "id", store_col_text(st, 0, NULL), "step",
                              store_col_text(st, 1, NULL), "kind", store_col_text(st, 2, NULL),
                              "status", store_col_text(st, 3, NULL));
        json_object_set_new(a, "preview", flow__col_json(st, 4));
        json_object_set_new(a, "payload", flow__col_json(st, 5));
        json_object_set_new(a, "diff", flow__col_json(st, 6));
        json_object_set_new(a, "reason", flow__col_text(st, 7));
        json_object_set_new(a, "decided_by", flow__col_text(st, 8));
        json_object_set_new(a, "requested_at", flow__col_text(st, 9));
        json_object_set_new(a, "decided_at", flow__col_text(st, 10));
        json_object_set_new(a, "confidence", store_col_text(st, 11, NULL)
                                                 ? json_real(store_col_real(st, 11))
                                                 : json_null());
        json_object_set_new(a, "policy", flow__col_text(st, 12));
        json_object_set_new(a, "sources", flow__col_json(st, 13));
        json_array_append_new(list, a);
    }
    store_stmt_done(st);
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *ret = list;
    return 0;
}

int flow_task_trace(Store *rd, const char *task, json_t **ret, Err *err)
{
    json_t *t = NULL;
    int rc = flow_task_get(rd, task, &t, err);
    if (rc < 0)
        return rc;
    json_t *trace = json_pack("{s:o}", "task", t);
    int64_t trigger = json_integer_value(json_object_get(t, "trigger_seq"));
    Event *ev = NULL;
    Err ignore = { 0 };
    if (trigger > 0 && ledger_event_get(rd, trigger, NULL, &ev, &ignore) == 0)
        json_object_set_new(trace, "trigger", ledger_event_to_json(ev));
    else
        json_object_set_new(trace, "trigger", json_null());
    ledger_event_free(ev);
    json_t *approvals = NULL, *effects = NULL;
    if ((rc = approvals_of(rd, task, &approvals, err)) < 0 ||
        (rc = flow_effects_list(rd, NULL, task, 1000, &effects, err)) < 0) {
        json_decref(approvals);
        json_decref(trace);
        return rc;
    }
    json_object_set_new(trace, "approvals", approvals);
    /* oldest first, as the story goes */
    json_t *eff = json_array();
    for (size_t i = json_array_size(effects); i-- > 0;)
        json_array_append(eff, json_array_get(effects, i));
    json_decref(effects);
    json_object_set_new(trace, "effects", eff);
    /* every event of the task, from its creation on: its steps, the events
     * it emitted, decisions, deliveries */
    StoreStmt *st;
    int64_t created = 0;
    store_query_int(rd, "SELECT created_seq FROM tasks WHERE id = ?1", task, 0, &created, &ignore);
    rc = store_prepare(rd,
                       "SELECT seq FROM events WHERE seq >= ?2 AND type NOT LIKE 'workflow.%'"
                       " AND (json_extract(data, '$.task') = ?1"
                       "  OR json_extract(data, '$.caused_by.task') = ?1)"
                       " ORDER BY seq LIMIT ?3",
                       &st, err);
    if (rc < 0) {
        json_decref(trace);
        return rc;
    }
    store_bind_text(st, 1, task, strlen(task));
    store_bind_int(st, 2, created);
    store_bind_int(st, 3, TRACE_EVENTS_MAX);
    int64_t *seqs = NULL;
    size_t n = 0;
    while ((rc = store_step(st, err)) == STORE_ROW) {
        seqs = xrealloc(seqs, (n + 1) * sizeof *seqs);
        seqs[n++] = store_col_int(st, 0);
    }
    store_stmt_done(st);
    json_t *events = json_array();
    for (size_t i = 0; rc >= 0 && i < n; i++) {
        Event *e = NULL;
        if (ledger_event_get(rd, seqs[i], NULL, &e, &ignore) == 0) {
            json_t *j = ledger_event_to_json(e);
            json_t *slim = json_pack("{s:O, s:O, s:O, s:O, s:O}", "seq", json_object_get(j, "seq"),
                                     "type", json_object_get(j, "type"), "source",
                                     json_object_get(j, "source"), "received_at",
                                     json_object_get(j, "received_at"), "data",
                                     json_object_get(j, "data"));
            json_array_append_new(events, slim);
            json_decref(j);
        }
        ledger_event_free(e);
    }
    free(seqs);
    json_object_set_new(trace, "events", events);
    if (rc < 0) {
        json_decref(trace);
        return rc;
    }
    *ret = trace;
    return 0;
}
