/* The "effects" projection: approvals, the effect outbox, the install's
 * mode and recorded consent (migrations/sqlite/0004_effects.sql).
 *
 * A pure function of approval.*, effect.*, operator.mode.changed and the
 * events that carry consent. Like the tasks projection, states only move
 * forward: a decision on an approval already decided, or an outcome for an
 * effect already settled, changes nothing. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow/effects.h"
#include "flow/engine_int.h"

static const char *const tables[] = { "approvals", "effects", "install_settings", "consents",
                                      NULL };

static const char *str(const json_t *d, const char *k)
{
    return json_string_value(json_object_get(d, k));
}

/* JSON text of d[k] (caller frees), or NULL when absent or null. */
static char *dump(const json_t *d, const char *k)
{
    const json_t *v = json_object_get(d, k);
    return v && !json_is_null(v) ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)
                                 : NULL;
}

static int approval_requested(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *id = str(d, "approval"), *task = str(d, "task"), *step = str(d, "step");
    if (!id || !task || !step)
        return 0;
    char *preview = dump(d, "preview"), *sources = dump(d, "sources");
    const json_t *conf = json_object_get(d, "confidence"), *cost = json_object_get(d, "cost");
    /* an absent REAL binds NULL: through text, CAST back in SQL */
    char cbuf[32] = "", kbuf[32] = "";
    if (json_is_number(conf))
        snprintf(cbuf, sizeof cbuf, "%.17g", json_number_value(conf));
    if (json_is_number(cost))
        snprintf(kbuf, sizeof kbuf, "%.17g", json_number_value(cost));
    int rc = store_execf(tx, err,
                       "INSERT OR IGNORE INTO approvals(id, task_id, step_id, attempt, kind, status,"
                       " preview, sources, confidence, confidence_source, model, cost, policy,"
                       " deadline, on_deadline, compensates, requested_seq, requested_at)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7,"
                       " CAST(nullif(?8, '') AS REAL), ?9, ?10, CAST(nullif(?11, '') AS REAL),"
                       " ?12, ?13, ?14, ?15, ?16, ?17)",
                       "sssisssssssssssis", id, task, step,
                       (int64_t)json_integer_value(json_object_get(d, "attempt")),
                       str(d, "kind") ? str(d, "kind") : "approval", preview ? preview : "null",
                       sources, cbuf, str(d, "confidence_source"), str(d, "model"), kbuf,
                       str(d, "policy") ? str(d, "policy") : "always", str(d, "deadline"),
                       str(d, "on_deadline"), str(d, "compensates"), ev->seq, ev->received_at);
    free(preview);
    free(sources);
    return rc;
}

static int approval_decided(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *id = str(d, "approval"), *decision = str(d, "decision");
    if (!id || !decision)
        return 0;
    const char *status = !strcmp(decision, "approve") ? "approved"
                       : !strcmp(decision, "edit")    ? "edited"
                       : !strcmp(decision, "reject")  ? "rejected"
                                                      : NULL;
    if (!status)
        return 0;
    char *payload = dump(d, "payload"), *diff = dump(d, "diff");
    int rc = store_execf(tx, err,
                       "UPDATE approvals SET status = ?2, payload = coalesce(?3, preview),"
                       " diff = ?4, reason = ?5, decided_by = ?6, decided_seq = ?7,"
                       " decided_at = ?8 WHERE id = ?1 AND status = 'pending'",
                       "ssssssis", id, status, payload, diff, str(d, "reason"), str(d, "by"),
                       ev->seq, ev->received_at);
    free(payload);
    free(diff);
    return rc;
}

static int effect_requested(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *id = str(d, "effect"), *task = str(d, "task"), *step = str(d, "step");
    const char *kind = str(d, "kind"), *key = str(d, "delivery_key");
    if (!id || !task || !step || !kind || !key)
        return 0;
    char *payload = dump(d, "payload"), *comp = dump(d, "compensation");
    const char *hold = str(d, "hold_until");
    int rc = store_execf(tx, err,
                       "INSERT OR IGNORE INTO effects(id, task_id, step_id, attempt, kind, status,"
                       " payload, delivery_key, purpose, mode, compensation, compensates,"
                       " approval_id, hold_until, requested_seq, requested_at, updated_at)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
                       " ?15, ?16, ?16)",
                       "sssissssssssssis", id, task, step,
                       (int64_t)json_integer_value(json_object_get(d, "attempt")), kind,
                       hold ? "held" : "requested", payload ? payload : "null", key,
                       str(d, "purpose") ? str(d, "purpose") : "transactional",
                       str(d, "mode") ? str(d, "mode") : "sandbox", comp, str(d, "compensates"),
                       str(d, "approval"), hold, ev->seq, ev->received_at);
    free(payload);
    free(comp);
    return rc;
}

/* The outcomes of an effect. Only a live effect moves: requested or held
 * (and failed or uncertain for the operator's resolutions). */
static int effect_outcome(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *id = str(d, "effect"), *t = ev->type + strlen("effect.");
    if (!id)
        return 0;
    const char *at = ev->received_at;
    int64_t code = json_integer_value(json_object_get(d, "code"));
    const char *detail = str(d, "detail") ? str(d, "detail") : str(d, "error");
    if (!strcmp(t, "started"))
        return store_execf(tx, err,
                         "UPDATE effects SET status = 'requested', in_flight = 1, deliveries = ?2,"
                         " updated_at = ?3 WHERE id = ?1 AND status IN ('requested', 'held')",
                         "sis", id, (int64_t)json_integer_value(json_object_get(d, "delivery")),
                         at);
    if (!strcmp(t, "delivered") || !strcmp(t, "captured"))
        return store_execf(tx, err,
                         "UPDATE effects SET status = ?2, in_flight = 0, code = nullif(?3, 0),"
                         " detail = ?4, message_id = coalesce(?5, message_id), updated_at = ?6,"
                         " next_at = NULL WHERE id = ?1 AND status IN ('requested', 'held')",
                         "ssisss", id, !strcmp(t, "delivered") ? "delivered" : "captured", code,
                         detail, str(d, "message_id"), at);
    if (!strcmp(t, "failed")) {
        bool permanent = json_is_true(json_object_get(d, "permanent"));
        return store_execf(tx, err,
                         "UPDATE effects SET status = ?2, in_flight = 0, code = nullif(?3, 0),"
                         " detail = ?4, next_at = ?5, updated_at = ?6"
                         " WHERE id = ?1 AND status IN ('requested', 'held')",
                         "ssisss", id, permanent ? "failed" : "requested", code, detail,
                         permanent ? NULL : str(d, "next_at"), at);
    }
    if (!strcmp(t, "uncertain"))
        return store_execf(tx, err,
                         "UPDATE effects SET status = 'uncertain', in_flight = 0, detail = ?2,"
                         " updated_at = ?3 WHERE id = ?1 AND status = 'requested'",
                         "sss", id, str(d, "reason"), at);
    if (!strcmp(t, "resolved")) {
        bool sent = !strcmp(str(d, "as") ? str(d, "as") : "", "delivered");
        return store_execf(tx, err,
                         sent ? "UPDATE effects SET status = 'delivered', detail = ?2,"
                                " updated_at = ?3 WHERE id = ?1 AND status IN ('uncertain', 'failed')"
                              : "UPDATE effects SET status = 'requested', next_at = NULL,"
                                " detail = ?2, updated_at = ?3"
                                " WHERE id = ?1 AND status IN ('uncertain', 'failed')",
                         "sss", id, str(d, "reason"), at);
    }
    if (!strcmp(t, "canceled"))
        return store_execf(tx, err,
                         "UPDATE effects SET status = 'canceled', detail = ?2, updated_at = ?3"
                         " WHERE id = ?1 AND in_flight = 0"
                         " AND status IN ('requested', 'held', 'failed', 'uncertain')",
                         "sss", id, str(d, "reason"), at);
    if (!strcmp(t, "compensated"))
        return store_execf(tx, err,
                         "UPDATE effects SET status = 'compensated', updated_at = ?2"
                         " WHERE id = ?1 AND status IN ('delivered', 'captured')",
                         "ss", id, at);
    return 0;
}

/* The address in a consent-bearing event, lower-cased into out. */
static bool consent_email(const Event *ev, const json_t *d, char *out, size_t size)
{
    const char *e = NULL;
    if (!strcmp(ev->type, "consent.recorded") || !strcmp(ev->type, "contact.imported"))
        e = str(d, "email");
    else if (!strcmp(ev->type, "form.submitted")) {
        const json_t *f = json_object_get(d, "fields");
        e = str(f, "email") ? str(f, "email") : str(f, "Email");
    }
    size_t n = e ? strlen(e) : 0;
    if (!n || n >= size || !strchr(e, '@'))
        return false;
    for (size_t i = 0; i <= n; i++)
        out[i] = (char)tolower((unsigned char)e[i]);
    return true;
}

static int consent(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    char email[321];
    if (!consent_email(ev, d, email, sizeof email))
        return 0;
    /* consent.recorded says it in data; the others in the header */
    const char *c = !strcmp(ev->type, "consent.recorded") ? str(d, "consent") : ev->consent;
    if (!c || (strcmp(c, "none") && strcmp(c, "transactional") && strcmp(c, "marketing")))
        return 0;
    /* an imported contact or a form without a stated choice does not
     * withdraw a consent given before */
    if (strcmp(ev->type, "consent.recorded") && !strcmp(c, "none"))
        return 0;
    return store_execf(tx, err,
                     "INSERT INTO consents(email, consent, seq, at) VALUES (?1, ?2, ?3, ?4)"
                     " ON CONFLICT(email) DO UPDATE SET consent = ?2, seq = ?3, at = ?4",
                     "ssis", email, c, ev->seq, ev->received_at);
}

static int apply(Store *tx, const Event *ev, Err *err)
{
    const char *t = ev->type;
    bool approval = !strncmp(t, "approval.", 9), effect = !strncmp(t, "effect.", 7);
    bool mode = !strcmp(t, "operator.mode.changed");
    bool cons = !strcmp(t, "consent.recorded") || !strcmp(t, "form.submitted") ||
                !strcmp(t, "contact.imported");
    if (!approval && !effect && !mode && !cons)
        return 0;
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!d)
        return 0;
    int rc = 0;
    if (!strcmp(t, "approval.requested"))
        rc = approval_requested(tx, ev, d, err);
    else if (!strcmp(t, "approval.decided"))
        rc = approval_decided(tx, ev, d, err);
    else if (!strcmp(t, "approval.reminded") && str(d, "approval"))
        rc = store_execf(tx, err,
                       "UPDATE approvals SET reminders = reminders + 1, deadline = ?2"
                       " WHERE id = ?1 AND status = 'pending'",
                       "ss", str(d, "approval"), str(d, "next_at"));
    else if (!strcmp(t, "approval.escalated") && str(d, "approval"))
        rc = store_execf(tx, err,
                       "UPDATE approvals SET escalated = 1 WHERE id = ?1 AND status = 'pending'",
                       "s", str(d, "approval"));
    else if (!strcmp(t, "effect.requested"))
        rc = effect_requested(tx, ev, d, err);
    else if (effect)
        rc = effect_outcome(tx, ev, d, err);
    else if (mode && (!strcmp(str(d, "mode") ? str(d, "mode") : "", "sandbox") ||
                      !strcmp(str(d, "mode") ? str(d, "mode") : "", "production")))
        rc = store_execf(tx, err,
                       "INSERT INTO install_settings(key, value, seq, changed_at)"
                       " VALUES ('mode', ?1, ?2, ?3)"
                       " ON CONFLICT(key) DO UPDATE SET value = ?1, seq = ?2, changed_at = ?3",
                       "sis", str(d, "mode"), ev->seq, ev->received_at);
    else if (cons)
        rc = consent(tx, ev, d, err);
    json_decref(d);
    return rc;
}

static const Projection effects_projection = {
    .name = "effects",
    .version = 1,
    .tables = tables,
    .apply = apply,
};

void flow__effects_projection_register(void)
{
    ledger_projection_register(&effects_projection);
}
