/* The steps that involve the operator or the outside world: `approval`,
 * `email.send` and `webhook.post`.
 *
 * One handler, driven by what the projection already holds for the step's
 * attempt, so that it can be run again at any point (a crash, a resume):
 *
 *   nothing yet        -> approval.requested and wait (policy always, or
 *                         auto below min_confidence or outside production);
 *                         or, without a gate, effect.requested and wait
 *   approval decided   -> approve / edit: effect.requested (the decided
 *                         payload) and wait; an `approval` step is done;
 *                         reject: the step is skipped and on_reject applies
 *   effect settled     -> delivered / captured: done; failed: the inbox;
 *                         canceled by the operator: skipped, the task goes on
 *
 * The outbox (flow/outbox.c) delivers; the projection wakes the step again
 * (wait_kind 'resume') when a decision or an outcome is recorded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "effect/http_post.h"
#include "effect/mail.h"
#include "flow/effects.h"
#include "flow/engine_int.h"

void flow__gate_id(char prefix, const char *key, char out[CORE_ULID_LEN + 1])
{
    char hex[CORE_SHA256_HEX + 1];
    core_sha256_hex(key, strlen(key), hex);
    out[0] = prefix;
    memcpy(out + 1, hex, CORE_ULID_LEN - 1);
    out[CORE_ULID_LEN] = '\0';
}

/* Appends an internal event of the step (data's reference is stolen). */
static int emit(FlowStepRun *r, const char *type, json_t *data, const char *key)
{
    char source[FLOW_NAME_MAX + 16];
    flow__source(r->wf->name, source);
    Event *ev = NULL;
    Err err = { 0 };
    int rc = ledger_event_new(type, source, r->subject, data, key, r->limits, &ev, &err);
    json_decref(data);
    if (rc < 0)
        return flow__step_fail(r, false, "%s: %s", type, err.msg), -1;
    flow__step_emit(r, ev);
    return 0;
}

/* The row of the latest approval of the step (any attempt: a decision
 * stands for a retry), or NULL. */
static json_t *approval_row(FlowStepRun *r)
{
    StoreStmt *st;
    Err err = { 0 };
    json_t *row = NULL;
    if (store_prepare(r->rd,
                      "SELECT id, status, payload, diff, reason, decided_by, attempt FROM approvals"
                      " WHERE task_id = ?1 AND step_id = ?2 ORDER BY requested_seq DESC LIMIT 1",
                      &st, &err) < 0)
        return NULL;
    store_bind_text(st, 1, r->task_id, strlen(r->task_id));
    store_bind_text(st, 2, r->step->id, strlen(r->step->id));
    if (store_step(st, &err) == STORE_ROW) {
        json_t *payload = NULL, *diff = NULL;
        size_t len;
        const char *p = store_col_text(st, 2, &len);
        if (p)
            core_json_parse(p, len, &payload, &err);
        p = store_col_text(st, 3, &len);
        if (p)
            core_json_parse(p, len, &diff, &err);
        const char *reason = store_col_text(st, 4, NULL), *by = store_col_text(st, 5, NULL);
        row = json_pack("{s:s, s:s, s:o, s:o, s:s?, s:s?, s:I}", "id", store_col_text(st, 0, NULL),
                        "status", store_col_text(st, 1, NULL), "payload",
                        payload ? payload : json_null(), "diff", diff ? diff : json_null(),
                        "reason", reason, "by", by, "attempt",
                        (json_int_t)store_col_int(st, 6));
    }
    store_stmt_done(st);
    return row;
}

/* The effect the step requested last, in this attempt or an earlier one,
 * or NULL. An earlier attempt's effect counts unless it failed or was
 * canceled: one the operator resolved as sent (or sent again) after its step
 * went to the inbox must not be sent once more when the step is retried. */
static json_t *effect_row(FlowStepRun *r)
{
    StoreStmt *st;
    Err err = { 0 };
    json_t *row = NULL;
    if (store_prepare(r->rd,
                      "SELECT id, status, code, detail, message_id, payload FROM effects"
                      " WHERE task_id = ?1 AND step_id = ?2 AND compensates IS NULL"
                      " AND (attempt = ?3 OR status NOT IN ('failed', 'canceled'))"
                      " ORDER BY requested_seq DESC LIMIT 1",
                      &st, &err) < 0)
        return NULL;
    store_bind_text(st, 1, r->task_id, strlen(r->task_id));
    store_bind_text(st, 2, r->step->id, strlen(r->step->id));
    store_bind_int(st, 3, r->attempt);
    if (store_step(st, &err) == STORE_ROW) {
        json_t *payload = NULL;
        size_t len;
        const char *p = store_col_text(st, 5, &len);
        if (p)
            core_json_parse(p, len, &payload, &err);
        const char *detail = store_col_text(st, 3, NULL), *mid = store_col_text(st, 4, NULL);
        row = json_pack("{s:s, s:s, s:I, s:s?, s:s?, s:o}", "effect", store_col_text(st, 0, NULL),
                        "status", store_col_text(st, 1, NULL), "code",
                        (json_int_t)store_col_int(st, 2), "detail", detail, "message_id", mid,
                        "payload", payload ? payload : json_null());
    }
    store_stmt_done(st);
    return row;
}

/* The payload that would leave: `with` for an effect, with.payload for an
 * approval step. Checked for what the executor needs. */
static json_t *payload_of(FlowStepRun *r, Err *err)
{
    const char *kind = r->step->kind;
    if (!strcmp(kind, "approval")) {
        json_t *p = json_object_get(r->inputs, "payload");
        return p ? json_incref(p) : json_null();
    }
    if (!strcmp(kind, "email.send")) {
        /* an optional header whose template rendered empty is left out
         * (a reply to a message without a Message-ID, no cc) */
        static const char *const optional[] = { "cc", "in_reply_to", "references", "html" };
        json_t *p = json_deep_copy(r->inputs);
        for (size_t i = 0; i < sizeof optional / sizeof *optional; i++) {
            const json_t *v = json_object_get(p, optional[i]);
            if (json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0))
                json_object_del(p, optional[i]);
        }
        /* a message id as the pull connectors keep it (no angle brackets)
         * threads as well as one written <...> */
        json_t *irt = json_object_get(p, "in_reply_to");
        const char *id = json_string_value(irt);
        if (id && id[0] != '<' && strchr(id, '@') && !strpbrk(id, " <>")) {
            char *w = NULL;
            if (asprintf(&w, "<%s>", id) > 0)
                json_object_set_new(p, "in_reply_to", json_string(w));
            free(w);
        }
        json_t *refs = json_object_get(p, "references");
        size_t ri;
        json_t *rv;
        json_array_foreach(refs, ri, rv) {
            const char *x = json_string_value(rv);
            char *w = NULL;
            if (x && x[0] != '<' && strchr(x, '@') && !strpbrk(x, " <>") &&
                asprintf(&w, "<%s>", x) > 0)
                json_array_set_new(refs, ri, json_string(w));
            free(w);
        }
        if (mail_payload_check(p, err) < 0) {
            json_decref(p);
            return NULL;
        }
        return p;
    }
    return http_post_check(r->inputs, err) < 0 ? NULL : json_incref(r->inputs);
}

/* Asks the outbox to deliver payload, and waits for it. The step's
 * `compensate` is rendered here, with its inputs at hand, whatever path led
 * to the request (at once, or after an approval or a retry). */
static int request_effect(FlowStepRun *r, const json_t *payload, const char *approval)
{
    char key[256], id[CORE_ULID_LEN + 1], mode[FLOW_MODE_MAX];
    Err err = { 0 };
    if (r->step->compensate && !r->compensation) {
        char chunk[2 * FLOW_NAME_MAX + 32];
        json_t *c = NULL;
        snprintf(chunk, sizeof chunk, "%s:steps.%s.compensate", r->wf->name, r->step->id);
        if (flow_lua_render_json(r->lua, r->step->compensate, chunk, r->env, &c, &err) < 0)
            return flow__step_fail(r, false, "%s", err.msg);
        r->compensation = c;
    }
    snprintf(key, sizeof key, "effect:%s:%s:%d", r->task_id, r->step->id, r->attempt);
    flow__gate_id('e', key, id);
    if (flow_mode_get(r->rd, mode, &err) < 0)
        return flow__step_fail(r, true, "the mode cannot be read: %s", err.msg);
    json_t *d = json_pack("{s:s, s:s, s:s, s:i, s:s, s:O, s:s, s:s, s:s, s:s?}", "effect", id,
                          "task", r->task_id, "step", r->step->id, "attempt", r->attempt, "kind",
                          r->step->kind, "payload", payload, "delivery_key", r->key, "purpose",
                          r->step->purpose ? r->step->purpose : "transactional", "mode", mode,
                          "approval", approval);
    if (r->compensation)
        json_object_set(d, "compensation", r->compensation);
    int window = r->cfg ? r->cfg->smtp_undo_window_s : 0;
    if (!strcmp(r->step->kind, "email.send") && window > 0) {
        char until[CORE_TIME_LEN + 1];
        core_time_format(r->now_ms + (int64_t)window * 1000, until);
        json_object_set_new(d, "hold_until", json_string(until));
    }
    char ekey[300];
    snprintf(ekey, sizeof ekey, "effect.requested:%s:%s:%d", r->task_id, r->step->id, r->attempt);
    if (emit(r, "effect.requested", d, ekey) < 0)
        return 0;
    r->outcome = FLOW_WAIT;
    r->wait_kind = "effect";
    return 0;
}

/* What a rejection does: skip the step, then go to a step, cancel the task
 * or compensate what it did. */
static int rejected(FlowStepRun *r, const json_t *appr)
{
    const char *to = json_string_value(json_object_get(r->step->approval, "on_reject"));
    const char *reason = json_string_value(json_object_get(appr, "reason"));
    r->outcome = FLOW_SKIP;
    r->skip = "rejected";
    r->output = json_pack("{s:s, s:s, s:s?, s:s?}", "decision", "reject", "approval",
                          json_string_value(json_object_get(appr, "id")), "reason", reason, "by",
                          json_string_value(json_object_get(appr, "by")));
    if (!to || !strcmp(to, "cancel"))
        r->then_action = "cancel";
    else if (!strcmp(to, "compensate"))
        r->then_action = "compensate";
    else
        snprintf(r->skip_goto, sizeof r->skip_goto, "%s", to);
    return 0;
}

/* An operator who approves what a task drafted agrees with how it read its
 * trigger: each model.classify label of the task becomes a labelled example
 * of the trigger's text, from which the local classifier learns. */
static void confirm_labels(FlowStepRun *r, const char *approval)
{
    const json_t *event = json_object_get(r->env, "event");
    const json_t *steps = json_object_get(r->env, "steps");
    int64_t seq = json_integer_value(json_object_get(event, "seq"));
    if (seq <= 0 || !approval)
        return;
    for (size_t i = 0; i < r->wf->n_steps; i++) {
        const FlowStepDef *s = &r->wf->steps[i];
        const char *label = json_string_value(
            json_object_get(json_object_get(json_object_get(steps, s->id), "output"), "label"));
        if (strcmp(s->kind, "model.classify") || !label)
            continue;
        const json_t *data = json_object_get(event, "data");
        char *text = model_event_text(data, NULL, 0);
        json_t *d = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "event_seq", (json_int_t)seq,
                              "label", label, "text", text, "event_type",
                              json_string_value(json_object_get(event, "type"))
                                  ? json_string_value(json_object_get(event, "type"))
                                  : "",
                              "by", "approval", "approval", approval);
        free(text);
        char key[256];
        snprintf(key, sizeof key, "model.labeled:%s:%s", approval, s->id);
        emit(r, "model.labeled", d, key);
    }
}

/* After the effect settled. */
static int effect_settled(FlowStepRun *r, json_t *eff)
{
    const char *status = json_string_value(json_object_get(eff, "status"));
    if (!strcmp(status, "delivered") || !strcmp(status, "captured")) {
        r->outcome = FLOW_DONE;
        r->output = json_incref(eff);
        return 0;
    }
    if (!strcmp(status, "canceled")) {
        r->outcome = FLOW_SKIP;
        r->skip = "operator";
        r->output = json_incref(eff);
        return 0;
    }
    if (!strcmp(status, "failed")) {
        r->force_inbox = true;
        return flow__step_fail(r, false, "effect %s failed: %s", json_string_value(json_object_get(eff, "effect")),
                    json_string_value(json_object_get(eff, "detail"))
                        ? json_string_value(json_object_get(eff, "detail"))
                        : "(no detail)");
    }
    /* requested, held or uncertain: not settled yet (the outbox or the
     * operator will say) */
    r->outcome = FLOW_WAIT;
    r->wait_kind = "effect";
    return 0;
}

static double num(const json_t *v, double dflt)
{
    if (json_is_number(v))
        return json_number_value(v);
    if (json_is_string(v)) { /* a template rendered to text */
        char *end;
        double d = strtod(json_string_value(v), &end);
        if (end != json_string_value(v) && !*end)
            return d;
    }
    return dflt;
}

int flow__step_gate(FlowStepRun *r)
{
    const char *kind = r->step->kind;
    bool effect = flow_kind_is_effect(kind);
    json_t *appr = approval_row(r), *eff = effect ? effect_row(r) : NULL;
    int rc = 0;
    if (eff) {
        rc = effect_settled(r, eff);
        goto out;
    }
    const char *ast = json_string_value(json_object_get(appr, "status"));
    if (ast && !strcmp(ast, "pending") && json_integer_value(json_object_get(appr, "attempt")) ==
                                              r->attempt) {
        r->outcome = FLOW_WAIT;
        r->wait_kind = "approval";
        goto out;
    }
    if (ast && !strcmp(ast, "rejected") &&
        json_integer_value(json_object_get(appr, "attempt")) == r->attempt) {
        rc = rejected(r, appr);
        goto out;
    }
    if (ast && (!strcmp(ast, "approved") || !strcmp(ast, "edited"))) {
        json_t *payload = json_object_get(appr, "payload");
        if (strcmp(json_string_value(json_object_get(appr, "by")) ? json_string_value(json_object_get(appr, "by")) : "", "auto"))
            confirm_labels(r, json_string_value(json_object_get(appr, "id")));
        if (!effect) {
            r->outcome = FLOW_DONE;
            /* the output is the approved (possibly edited) payload itself;
             * who decided what is in approval.decided */
            r->output = json_incref(payload);
            goto out;
        }
        rc = request_effect(r, payload, json_string_value(json_object_get(appr, "id")));
        goto out;
    }
    if (r->resume) { /* woken, but nothing it waited for is there: wait on */
        r->outcome = FLOW_WAIT;
        r->wait_kind = ast ? "approval" : "effect";
        goto out;
    }

    /* The first time: the payload, and whether the operator must see it. */
    Err err = { 0 };
    json_t *payload = payload_of(r, &err);
    if (!payload) {
        rc = flow__step_fail(r, false, "%s", err.msg);
        goto out;
    }
    json_t *gate = NULL;
    char chunk[2 * FLOW_NAME_MAX + 32];
    snprintf(chunk, sizeof chunk, "%s:steps.%s.approval", r->wf->name, r->step->id);
    if (flow_lua_render_json(r->lua, r->step->approval, chunk, r->env, &gate, &err) < 0) {
        json_decref(payload);
        rc = flow__step_fail(r, false, "%s", err.msg);
        goto out;
    }
    char mode[FLOW_MODE_MAX];
    if (flow_mode_get(r->rd, mode, &err) < 0) {
        json_decref(payload);
        json_decref(gate);
        rc = flow__step_fail(r, true, "the mode cannot be read: %s", err.msg);
        goto out;
    }
    const char *policy = json_string_value(json_object_get(gate, "policy"));
    double conf = num(json_object_get(gate, "confidence"), -1);
    double min = num(json_object_get(gate, "min_confidence"), 2);
    bool production = !strcmp(mode, "production");
    bool automatic = policy && !strcmp(policy, "auto") && production && conf >= 0 && conf >= min;
    bool ask = !policy || !strcmp(policy, "always") || (!strcmp(policy, "auto") && !automatic);
    char key[256], id[CORE_ULID_LEN + 1];
    snprintf(key, sizeof key, "approval:%s:%s:%d", r->task_id, r->step->id, r->attempt);
    flow__gate_id('a', key, id);
    if (ask || automatic) {
        json_t *d = json_pack("{s:s, s:s, s:s, s:i, s:s, s:O, s:s, s:s}", "approval", id, "task",
                              r->task_id, "step", r->step->id, "attempt", r->attempt, "kind", kind,
                              "preview", payload, "policy", policy ? policy : "always", "mode",
                              mode);
        static const char *const copy[] = { "sources", "confidence_source", "model", NULL };
        for (int i = 0; copy[i]; i++)
            if (json_object_get(gate, copy[i]))
                json_object_set(d, copy[i], json_object_get(gate, copy[i]));
        if (conf >= 0)
            json_object_set_new(d, "confidence", json_real(conf));
        if (json_object_get(gate, "cost"))
            json_object_set_new(d, "cost", json_real(num(json_object_get(gate, "cost"), 0)));
        json_t *title = json_object_get(r->inputs, "title");
        if (!effect && json_is_string(title))
            json_object_set(d, "title", title);
        int64_t deadline_ms = json_integer_value(json_object_get(gate, "deadline_ms"));
        char until[CORE_TIME_LEN + 1] = "";
        if (ask && deadline_ms > 0) {
            core_time_format(r->now_ms + deadline_ms, until);
            json_object_set_new(d, "deadline", json_string(until));
            json_object_set(d, "on_deadline", json_object_get(gate, "on_deadline"));
        }
        char ekey[300];
        snprintf(ekey, sizeof ekey, "approval.requested:%s:%s:%d", r->task_id, r->step->id,
                 r->attempt);
        if (emit(r, "approval.requested", d, ekey) < 0)
            goto payload_out;
        if (ask) {
            r->outcome = FLOW_WAIT;
            r->wait_kind = "approval";
            if (until[0])
                core_time_parse(until, strlen(until), &r->wait_until_ms);
            goto payload_out;
        }
        /* auto: above the threshold in production, recorded as a decision */
        char why[128];
        snprintf(why, sizeof why, "confidence %.3f >= %.3f", conf, min);
        d = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:s}", "approval", id, "task", r->task_id,
                      "step", r->step->id, "attempt", r->attempt, "decision", "approve", "by",
                      "auto", "reason", why);
        snprintf(ekey, sizeof ekey, "approval.decided:%s", id);
        if (emit(r, "approval.decided", d, ekey) < 0)
            goto payload_out;
    }
    if (!effect) {
        r->outcome = FLOW_DONE;
        r->output = json_incref(payload);
        goto payload_out;
    }
    rc = request_effect(r, payload, automatic ? id : NULL);
payload_out:
    json_decref(payload);
    json_decref(gate);
out:
    json_decref(appr);
    json_decref(eff);
    return rc;
}
