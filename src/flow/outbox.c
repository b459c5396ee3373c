/* The effect outbox: the only way anything leaves Bureau.
 *
 * One thread under the lease "outbox" reads the "effects" projection and,
 * for each effect due now:
 *   - captures it (effect.captured) unless both the install and the effect's
 *     request were in production;
 *   - refuses marketing mail to anyone whose latest consent is not
 *     `marketing` (effect.failed, permanent: the inbox);
 *   - else records effect.started (durably) before it delivers, then
 *     effect.delivered or effect.failed (retried with backoff, permanent
 *     after outbox.max_attempts).
 * An effect started but never finished (the process died mid-delivery) is
 * never sent again blindly: the next holder of the lease marks it
 * effect.uncertain, for the operator to say sent or send again.
 *
 * It also runs sagas: for a task whose compensation is running it undoes
 * the newest effect not yet compensated, one at a time — a mail by a
 * correction draft put in the inbox, a webhook by the reverse call the step
 * configured — and records task.compensated when none is left. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "effect/http_post.h"
#include "effect/mail.h"
#include "flow/effects.h"
#include "flow/engine_int.h"
#include "flow/outbox.h"

#define OUTBOX_LEASE "outbox"
#define OUTBOX_BATCH 64

struct FlowOutbox {
    Ledger *l;
    Config cfg; /* scalars only */
    Store *rd;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    bool held;
    int64_t seen;    /* the last event looked at */
    int64_t next_ms; /* the next timer (absolute), 0: none */
    void (*on_idle)(void *ctx, int64_t head);
    void *ctx;
};

typedef struct Effect {
    char id[CORE_ULID_LEN + 1];
    char task[CORE_ULID_LEN + 1];
    char step[FLOW_NAME_MAX + 16];
    char kind[32];
    char purpose[16];
    char mode[FLOW_MODE_MAX];
    char key[CORE_ULID_LEN + FLOW_NAME_MAX + 2];
    int64_t deliveries;
    json_t *payload;
} Effect;

static void now_str(char out[CORE_TIME_LEN + 1], int64_t plus_ms)
{
    core_time_format(core_time_now_ms() + plus_ms, out);
}

/* Appends one outbox event (data's reference is stolen); durable on return. */
static int record(FlowOutbox *o, const char *type, json_t *data, const char *key)
{
    Event *ev = NULL;
    Err err = { 0 };
    int rc = ledger_event_new(type, "outbox", NULL, data, key, ledger_limits(o->l), &ev, &err);
    json_decref(data);
    if (rc == 0)
        rc = ledger_append(o->l, &ev, 1, NULL, &err);
    if (rc < 0)
        log_error("outbox: not recorded", json_pack("{s:s, s:s}", "type", type, "error", err.msg));
    return rc;
}

static json_t *effect_data(const Effect *x)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "effect", x->id, "task", x->task, "step", x->step,
                     "kind", x->kind);
}

/* The addresses of a mail payload's to and cc, lower-cased, bare. */
static json_t *recipients(const json_t *payload)
{
    json_t *out = json_array();
    const char *fields[] = { "to", "cc" };
    for (int f = 0; f < 2; f++) {
        json_t *v = json_object_get(payload, fields[f]);
        json_t *list = json_is_string(v) ? json_pack("[O]", v) : json_incref(v);
        size_t i;
        json_t *a;
        json_array_foreach(list, i, a) {
            const char *s = json_string_value(a);
            if (!s)
                continue;
            const char *lt = strrchr(s, '<'), *gt = lt ? strchr(lt, '>') : NULL;
            size_t n = lt && gt ? (size_t)(gt - lt - 1) : strlen(s);
            const char *p = lt && gt ? lt + 1 : s;
            char buf[321];
            if (n >= sizeof buf)
                continue;
            for (size_t k = 0; k < n; k++)
                buf[k] = (char)((p[k] >= 'A' && p[k] <= 'Z') ? p[k] + 32 : p[k]);
            buf[n] = '\0';
            json_array_append_new(out, json_string(buf));
        }
        json_decref(list);
    }
    return out;
}

/* Marketing mail: every recipient's latest consent must be `marketing`.
 * Fills why and returns false otherwise. */
static bool consent_ok(FlowOutbox *o, const Effect *x, char *why, size_t size)
{
    if (strcmp(x->purpose, "marketing") || strcmp(x->kind, "email.send"))
        return true;
    json_t *rcpt = recipients(x->payload);
    size_t i;
    json_t *a;
    bool ok = true;
    json_array_foreach(rcpt, i, a) {
        StoreStmt *st;
        Err err = { 0 };
        char consent[16] = "none";
        if (store_prepare(o->rd, "SELECT consent FROM consents WHERE email = ?1", &st, &err) < 0) {
            ok = false;
            snprintf(why, size, "consent: cannot be read: %.400s", err.msg);
            break;
        }
        const char *addr = json_string_value(a);
        store_bind_text(st, 1, addr, strlen(addr));
        if (store_step(st, &err) == STORE_ROW)
            snprintf(consent, sizeof consent, "%s", store_col_text(st, 0, NULL));
        store_stmt_done(st);
        if (strcmp(consent, "marketing")) {
            ok = false;
            snprintf(why, size,
                     "consent: %.320s has not agreed to marketing mail (latest recorded consent: %s)",
                     addr, consent);
            break;
        }
    }
    json_decref(rcpt);
    return ok;
}

static int64_t backoff_ms(const FlowOutbox *o, int64_t attempt)
{
    double d = (double)o->cfg.outbox_backoff_ms * pow(2.0, (double)(attempt - 1));
    if (d > (double)o->cfg.outbox_max_delay_ms)
        d = (double)o->cfg.outbox_max_delay_ms;
    uint32_t r = 0;
    core_random_bytes(&r, sizeof r);
    return (int64_t)(d / 2 + (d / 2) * ((double)r / 4294967295.0));
}

/* One delivery attempt over the wire; fills out and, for a mail, msgid. */
static void send_one(FlowOutbox *o, const Effect *x, EffectOutcome *out, char *msgid,
                     size_t msgid_size)
{
    memset(out, 0, sizeof *out);
    if (!strcmp(x->kind, "email.send")) {
        MailSettings ms;
        mail_settings_from_config(&o->cfg, &ms);
        mail_message_id(x->key, ms.from, msgid, msgid_size);
        Buf msg;
        buf_init(&msg, 0);
        Err err = { 0 };
        if (mail_build(x->payload, ms.from, msgid, core_time_now_ms(), &msg, &err) < 0) {
            out->result = EFFECT_PERMANENT;
            snprintf(out->detail, sizeof out->detail, "%s", err.msg);
        } else {
            mail_send(&ms, ms.from, x->payload, msg.ptr, msg.len, out);
        }
        buf_done(&msg);
        mail_settings_done(&ms);
        return;
    }
    const json_t *body = json_object_get(x->payload, "body");
    char *text = json_dumps(body ? body : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    const char *env = json_string_value(json_object_get(x->payload, "secret_env"));
    const char *secret = env ? getenv(env) : NULL;
    if (env && !secret) {
        out->result = EFFECT_PERMANENT;
        snprintf(out->detail, sizeof out->detail, "the environment variable %s (secret_env) is not set",
                 env);
    } else {
        HttpPostRequest req = {
            .url = json_string_value(json_object_get(x->payload, "url")),
            .body = text,
            .len = text ? strlen(text) : 0,
            .idempotency_key = x->key,
            .secret = secret,
            .timestamp_s = core_time_now_ms() / 1000,
            .timeout_s = o->cfg.webhook_timeout_s,
        };
        http_post_deliver(&req, out);
    }
    free(text);
}

static void deliver(FlowOutbox *o, const Effect *x, const char *mode)
{
    char key[256], why[512];
    if (strcmp(mode, "production") || strcmp(x->mode, "production")) {
        json_t *d = effect_data(x);
        json_object_set(d, "payload", x->payload);
        json_object_set_new(d, "mode", json_string(mode));
        snprintf(key, sizeof key, "effect.captured:%s", x->id);
        record(o, "effect.captured", d, key);
        return;
    }
    if (!consent_ok(o, x, why, sizeof why)) {
        json_t *d = effect_data(x);
        json_object_set_new(d, "error", json_string(why));
        json_object_set_new(d, "permanent", json_true());
        snprintf(key, sizeof key, "effect.failed:%s:consent", x->id);
        record(o, "effect.failed", d, key);
        return;
    }
    int64_t n = x->deliveries + 1;
    json_t *d = effect_data(x);
    json_object_set_new(d, "delivery", json_integer(n));
    snprintf(key, sizeof key, "effect.started:%s:%lld", x->id, (long long)n);
    if (record(o, "effect.started", d, key) < 0)
        return; /* not durable: nothing may leave */
    EffectOutcome out;
    char msgid[MAIL_MESSAGE_ID_SIZE] = "";
    send_one(o, x, &out, msgid, sizeof msgid);
    d = effect_data(x);
    json_object_set_new(d, "delivery", json_integer(n));
    if (out.code)
        json_object_set_new(d, "code", json_integer(out.code));
    json_object_set_new(d, "detail", json_string(out.detail));
    if (msgid[0])
        json_object_set_new(d, "message_id", json_string(msgid));
    if (out.result == EFFECT_DELIVERED) {
        snprintf(key, sizeof key, "effect.delivered:%s", x->id);
        record(o, "effect.delivered", d, key);
        log_info("effect delivered", json_pack("{s:s, s:s, s:I}", "effect", x->id, "kind", x->kind,
                                               "code", (json_int_t)out.code));
        return;
    }
    bool permanent = out.result == EFFECT_PERMANENT || n >= o->cfg.outbox_max_attempts;
    json_object_set_new(d, "permanent", json_boolean(permanent));
    if (!permanent) {
        char next[CORE_TIME_LEN + 1];
        now_str(next, backoff_ms(o, n));
        json_object_set_new(d, "next_at", json_string(next));
    }
    snprintf(key, sizeof key, "effect.failed:%s:%lld", x->id, (long long)n);
    record(o, "effect.failed", d, key);
    log_warn("effect not delivered", json_pack("{s:s, s:s, s:I, s:s, s:b}", "effect", x->id, "kind",
                                               x->kind, "delivery", (json_int_t)n, "detail",
                                               out.detail, "permanent", permanent));
}

static void effect_done(Effect *x)
{
    json_decref(x->payload);
    x->payload = NULL;
}

/* Effects matching where (SQL after WHERE, ?1 = now), oldest first. */
static size_t effects_load(FlowOutbox *o, const char *where, const char *now, Effect **ret)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT id, task_id, step_id, kind, purpose, mode, delivery_key, deliveries, payload"
             " FROM effects WHERE %s ORDER BY requested_seq LIMIT %d",
             where, OUTBOX_BATCH);
    StoreStmt *st;
    Err err = { 0 };
    *ret = NULL;
    if (store_prepare(o->rd, sql, &st, &err) < 0) {
        log_error("outbox query", json_pack("{s:s}", "error", err.msg));
        return 0;
    }
    if (strstr(where, "?1"))
        store_bind_text(st, 1, now, strlen(now));
    size_t n = 0;
    Effect *v = NULL;
    while (store_step(st, &err) == STORE_ROW) {
        v = xrealloc(v, (n + 1) * sizeof *v);
        Effect *x = &v[n++];
        memset(x, 0, sizeof *x);
        snprintf(x->id, sizeof x->id, "%s", store_col_text(st, 0, NULL));
        snprintf(x->task, sizeof x->task, "%s", store_col_text(st, 1, NULL));
        snprintf(x->step, sizeof x->step, "%s", store_col_text(st, 2, NULL));
        snprintf(x->kind, sizeof x->kind, "%s", store_col_text(st, 3, NULL));
        snprintf(x->purpose, sizeof x->purpose, "%s", store_col_text(st, 4, NULL));
        snprintf(x->mode, sizeof x->mode, "%s", store_col_text(st, 5, NULL));
        snprintf(x->key, sizeof x->key, "%s", store_col_text(st, 6, NULL));
        x->deliveries = store_col_int(st, 7);
        size_t len;
        const char *p = store_col_text(st, 8, &len);
        if (p)
            core_json_parse(p, len, &x->payload, &err);
    }
    store_stmt_done(st);
    *ret = v;
    return n;
}

/* Taking over: what a dead holder began and never finished is uncertain. */
static void mark_uncertain(FlowOutbox *o)
{
    Effect *v;
    size_t n = effects_load(o, "status = 'requested' AND in_flight = 1", NULL, &v);
    for (size_t i = 0; i < n; i++) {
        json_t *d = effect_data(&v[i]);
        json_object_set_new(d, "delivery", json_integer(v[i].deliveries));
        json_object_set_new(d, "reason",
                            json_string("its delivery began but no outcome was recorded (the "
                                        "process stopped): it may or may not have arrived"));
        char key[128];
        snprintf(key, sizeof key, "effect.uncertain:%s:%lld", v[i].id, (long long)v[i].deliveries);
        record(o, "effect.uncertain", d, key);
        log_warn("effect uncertain", json_pack("{s:s, s:s}", "effect", v[i].id, "kind", v[i].kind));
        effect_done(&v[i]);
    }
    free(v);
}

/* Effects whose task ended (canceled, or failed) before they left are not
 * sent: canceling a task while its mail waits in the undo window stops the
 * mail, and a failed task's saga has nothing of it to undo. Compensations
 * are the saga's own, and go. Returns whether it canceled any. */
static bool orphans_cancel(FlowOutbox *o)
{
    Effect *v;
    size_t n = effects_load(o,
                            "status IN ('requested', 'held') AND in_flight = 0"
                            " AND compensates IS NULL AND task_id IN"
                            " (SELECT id FROM tasks WHERE status IN ('canceled', 'failed'))",
                            NULL, &v);
    for (size_t i = 0; i < n; i++) {
        json_t *d = effect_data(&v[i]);
        json_object_set_new(d, "by", json_string("outbox"));
        json_object_set_new(d, "reason",
                            json_string("its task ended (canceled or failed) before it was sent"));
        char key[128];
        snprintf(key, sizeof key, "effect.canceled:%s:task", v[i].id);
        record(o, "effect.canceled", d, key);
        log_info("effect canceled with its task", json_pack("{s:s, s:s}", "effect", v[i].id,
                                                            "task", v[i].task));
        effect_done(&v[i]);
    }
    free(v);
    return n > 0;
}

/* ---- sagas ---- */

/* The correction draft of a sent mail: to the same people, in its thread. */
static json_t *correction_of(const json_t *sent, const char *message_id, const char *when)
{
    const char *subject = json_string_value(json_object_get(sent, "subject"));
    char subj[1100];
    snprintf(subj, sizeof subj, "Correction: %s", subject ? subject : "");
    Buf text;
    buf_init(&text, 0);
    buf_printf(&text,
               "Please disregard our message of %s (\"%s\"): it was sent in error.\n\n"
               "[Write the correction here before approving.]\n",
               when, subject ? subject : "");
    json_t *p = json_pack("{s:O, s:s, s:s}", "to", json_object_get(sent, "to"), "subject", subj,
                          "text", buf_cstr(&text));
    buf_done(&text);
    if (json_object_get(sent, "cc"))
        json_object_set(p, "cc", json_object_get(sent, "cc"));
    if (message_id && *message_id)
        json_object_set_new(p, "in_reply_to", json_string(message_id));
    return p;
}

/* One step of one task's saga; returns whether it appended anything. */
static bool saga_step(FlowOutbox *o, const char *task)
{
    StoreStmt *st;
    Err err = { 0 };
    /* the newest effect of the task not compensated yet, and where its
     * compensation stands */
    if (store_prepare(o->rd,
                      "SELECT e.id, e.step_id, e.kind, e.payload, e.compensation, e.message_id,"
                      " e.updated_at,"
                      " (SELECT c.id || ' ' || c.status FROM effects c WHERE c.compensates = e.id"
                      "  ORDER BY c.requested_seq DESC LIMIT 1),"
                      " (SELECT a.id || ' ' || a.status FROM approvals a WHERE a.compensates = e.id"
                      "  ORDER BY a.requested_seq DESC LIMIT 1)"
                      " FROM effects e WHERE e.task_id = ?1 AND e.compensates IS NULL"
                      " AND e.status IN ('delivered', 'captured')"
                      " ORDER BY e.requested_seq DESC LIMIT 1",
                      &st, &err) < 0)
        return false;
    store_bind_text(st, 1, task, strlen(task));
    int rc = store_step(st, &err);
    char key[256];
    if (rc != STORE_ROW) {
        store_stmt_done(st);
        if (rc < 0)
            return false;
        snprintf(key, sizeof key, "task.compensated:%s", task);
        record(o, "task.compensated", json_pack("{s:s}", "task", task), key);
        return true;
    }
    char id[CORE_ULID_LEN + 1], step[FLOW_NAME_MAX + 1], kind[32], mid[MAIL_MESSAGE_ID_SIZE] = "",
         when[CORE_TIME_LEN + 1], comp_eff[64] = "", comp_appr[64] = "";
    snprintf(id, sizeof id, "%s", store_col_text(st, 0, NULL));
    snprintf(step, sizeof step, "%s", store_col_text(st, 1, NULL));
    snprintf(kind, sizeof kind, "%s", store_col_text(st, 2, NULL));
    json_t *payload = NULL, *comp = NULL;
    size_t len;
    const char *p = store_col_text(st, 3, &len);
    if (p)
        core_json_parse(p, len, &payload, &err);
    p = store_col_text(st, 4, &len);
    if (p)
        core_json_parse(p, len, &comp, &err);
    p = store_col_text(st, 5, NULL);
    snprintf(mid, sizeof mid, "%s", p ? p : "");
    snprintf(when, sizeof when, "%s", store_col_text(st, 6, NULL));
    p = store_col_text(st, 7, NULL);
    snprintf(comp_eff, sizeof comp_eff, "%s", p ? p : "");
    p = store_col_text(st, 8, NULL);
    snprintf(comp_appr, sizeof comp_appr, "%s", p ? p : "");
    store_stmt_done(st);

    bool did = false;
    char cstep[FLOW_NAME_MAX + 16], cid[CORE_ULID_LEN + 1], mode[FLOW_MODE_MAX];
    snprintf(cstep, sizeof cstep, "compensate:%s", step);
    flow_mode_get(o->rd, mode, &err);
    const char *ce_status = strchr(comp_eff, ' ') ? strchr(comp_eff, ' ') + 1 : NULL;
    const char *ca_status = strchr(comp_appr, ' ') ? strchr(comp_appr, ' ') + 1 : NULL;
    if (ce_status) {
        /* a compensation is under way: done when it is */
        if (!strcmp(ce_status, "delivered") || !strcmp(ce_status, "captured")) {
            comp_eff[CORE_ULID_LEN] = '\0';
            snprintf(key, sizeof key, "effect.compensated:%s", id);
            record(o, "effect.compensated",
                   json_pack("{s:s, s:s, s:s, s:s}", "effect", id, "task", task, "step", step, "by",
                             comp_eff),
                   key);
            did = true;
        } else if (!strcmp(ce_status, "canceled")) {
            /* the operator canceled the compensation (e.g. a reverse call
             * that failed for good): it is declined, and the saga goes on */
            comp_eff[CORE_ULID_LEN] = '\0';
            snprintf(key, sizeof key, "effect.compensated:%s", id);
            record(o, "effect.compensated",
                   json_pack("{s:s, s:s, s:s, s:s, s:b}", "effect", id, "task", task, "step", step,
                             "by", comp_eff, "declined", 1),
                   key);
            did = true;
        }
        goto out; /* requested, held, failed or uncertain: the operator sees it */
    }
    if (ca_status) {
        comp_appr[CORE_ULID_LEN] = '\0';
        if (!strcmp(ca_status, "rejected")) { /* the operator declined the correction */
            snprintf(key, sizeof key, "effect.compensated:%s", id);
            record(o, "effect.compensated",
                   json_pack("{s:s, s:s, s:s, s:s, s:b}", "effect", id, "task", task, "step", step,
                             "by", comp_appr, "declined", 1),
                   key);
            did = true;
        } else if (!strcmp(ca_status, "approved") || !strcmp(ca_status, "edited")) {
            json_t *decided = NULL;
            if (store_prepare(o->rd, "SELECT payload FROM approvals WHERE id = ?1", &st, &err) == 0) {
                store_bind_text(st, 1, comp_appr, strlen(comp_appr));
                if (store_step(st, &err) == STORE_ROW) {
                    p = store_col_text(st, 0, &len);
                    if (p)
                        core_json_parse(p, len, &decided, &err);
                }
                store_stmt_done(st);
            }
            snprintf(key, sizeof key, "compensation:%s", id);
            flow__gate_id('e', key, cid);
            char dkey[CORE_ULID_LEN + FLOW_NAME_MAX + 2];
            snprintf(dkey, sizeof dkey, "%.26s:c%.24s", task, id);
            json_t *d = json_pack("{s:s, s:s, s:s, s:i, s:s, s:O, s:s, s:s, s:s, s:s, s:s}",
                                  "effect", cid, "task", task, "step", cstep, "attempt", 1, "kind",
                                  "email.send", "payload", decided ? decided : json_null(),
                                  "delivery_key", dkey, "purpose", "transactional", "mode", mode,
                                  "compensates", id, "approval", comp_appr);
            json_decref(decided);
            snprintf(key, sizeof key, "effect.requested:compensation:%s", id);
            record(o, "effect.requested", d, key);
            did = true;
        }
        goto out;
    }
    /* start compensating it */
    const char *ckind = json_string_value(json_object_get(comp, "do"));
    if (!ckind && !strcmp(kind, "email.send")) {
        /* a sent mail: a correction draft in the inbox */
        snprintf(key, sizeof key, "compensation:%s", id);
        flow__gate_id('a', key, cid);
        json_t *d = json_pack("{s:s, s:s, s:s, s:i, s:s, s:o, s:s, s:s, s:s}", "approval", cid,
                              "task", task, "step", cstep, "attempt", 1, "kind", "email.send",
                              "preview", correction_of(payload, mid, when), "policy", "always",
                              "compensates", id, "title", "Correction draft");
        json_object_set_new(d, "sources", json_pack("[{s:s, s:s}]", "effect", id, "snippet",
                                                    "the mail being corrected"));
        snprintf(key, sizeof key, "approval.requested:compensation:%s", id);
        record(o, "approval.requested", d, key);
        did = true;
    } else if (ckind) {
        snprintf(key, sizeof key, "compensation:%s", id);
        flow__gate_id('e', key, cid);
        char dkey[CORE_ULID_LEN + FLOW_NAME_MAX + 2];
        snprintf(dkey, sizeof dkey, "%.26s:c%.24s", task, id);
        json_t *d = json_pack("{s:s, s:s, s:s, s:i, s:s, s:O, s:s, s:s, s:s, s:s}", "effect", cid,
                              "task", task, "step", cstep, "attempt", 1, "kind", ckind, "payload",
                              json_object_get(comp, "with"), "delivery_key", dkey, "purpose",
                              "transactional", "mode", mode, "compensates", id);
        snprintf(key, sizeof key, "effect.requested:compensation:%s", id);
        record(o, "effect.requested", d, key);
        did = true;
    } else {
        /* nothing configured to undo it: say so, and go on */
        snprintf(key, sizeof key, "effect.compensated:%s", id);
        record(o, "effect.compensated",
               json_pack("{s:s, s:s, s:s, s:s}", "effect", id, "task", task, "step", step, "by",
                         "nothing: no compensation is configured for this step"),
               key);
        did = true;
    }
out:
    json_decref(payload);
    json_decref(comp);
    return did;
}

/* Tasks whose saga runs; and failed tasks with effects start one. */
static bool sagas(FlowOutbox *o)
{
    bool did = false;
    StoreStmt *st;
    Err err = { 0 };
    /* a task that failed after irreversible effects is compensated */
    if (store_prepare(o->rd,
                      "SELECT DISTINCT e.task_id FROM effects e JOIN tasks t ON t.id = e.task_id"
                      " WHERE e.status IN ('delivered', 'captured') AND e.compensates IS NULL"
                      " AND t.status = 'failed' AND t.compensation IS NULL LIMIT 64",
                      &st, &err) == 0) {
        json_t *ids = json_array();
        while (store_step(st, &err) == STORE_ROW)
            json_array_append_new(ids, json_string(store_col_text(st, 0, NULL)));
        store_stmt_done(st);
        size_t i;
        json_t *id;
        json_array_foreach(ids, i, id) {
            char key[128];
            snprintf(key, sizeof key, "task.action:%s:compensate:failed", json_string_value(id));
            record(o, "task.action",
                   json_pack("{s:O, s:s, s:s}", "task", id, "action", "compensate", "by",
                             "failure"),
                   key);
            did = true;
        }
        json_decref(ids);
    }
    if (store_prepare(o->rd, "SELECT id FROM tasks WHERE compensation = 'running' LIMIT 64", &st,
                      &err) < 0)
        return did;
    json_t *ids = json_array();
    while (store_step(st, &err) == STORE_ROW)
        json_array_append_new(ids, json_string(store_col_text(st, 0, NULL)));
    store_stmt_done(st);
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id) did |= saga_step(o, json_string_value(id));
    json_decref(ids);
    return did;
}

/* ---- the thread ---- */

int64_t flow__outbox_next_ms(Store *rd, int64_t now)
{
    StoreStmt *st;
    Err err = { 0 };
    int64_t next = -1;
    if (store_prepare(rd,
                      "SELECT min(t) FROM (SELECT min(next_at) AS t FROM effects"
                      " WHERE status = 'requested' AND in_flight = 0"
                      " UNION ALL SELECT min(hold_until) FROM effects WHERE status = 'held')",
                      &st, &err) < 0)
        return -1;
    if (store_step(st, &err) == STORE_ROW) {
        size_t len;
        const char *w = store_col_text(st, 0, &len);
        int64_t at;
        if (w && core_time_parse(w, len, &at) == 0)
            next = at > now ? at - now : 0;
    }
    store_stmt_done(st);
    return next;
}

typedef struct News {
    FlowOutbox *o;
    bool relevant;
} News;

static bool news_wants(void *ctx, const char *t)
{
    (void)ctx;
    return !strncmp(t, "effect.", 7) || !strncmp(t, "approval.", 9) || !strncmp(t, "task.", 5) ||
           !strcmp(t, "step.failed") || !strcmp(t, "operator.mode.changed");
}

static int news_one(void *ctx, const Event *ev)
{
    News *n = ctx;
    n->o->seen = ev->seq;
    n->relevant |= news_wants(NULL, ev->type);
    return 0;
}

/* Whether anything appended since the last look can concern the outbox: an
 * effect or approval event, a task action, a step failing (its task may
 * need compensating). Most events (a workflow's steps) do not, and then no
 * pass runs. */
static bool news(FlowOutbox *o)
{
    News n = { .o = o };
    Err err = { 0 };
    /* the types of this process's recent appends are in memory */
    int64_t head = ledger_head_seq(o->l);
    if (head > o->seen && ledger_recent_types(o->l, o->seen, head, news_wants, NULL) == 0) {
        o->seen = head;
        return false;
    }
    for (;;) {
        int64_t before = o->seen;
        LedgerFilter f = { .after_seq = o->seen, .limit = 4096, .headers_only = true };
        if (ledger_read(o->rd, &f, news_one, &n, &err) < 0) {
            log_error("outbox follow", json_pack("{s:s}", "error", err.msg));
            return true;
        }
        if (o->seen - before < 4096)
            return n.relevant;
    }
}

/* One pass; returns ms until the next timer (-1: none) and whether it did
 * anything. */
static int64_t pass(FlowOutbox *o, bool *busy)
{
    char now[CORE_TIME_LEN + 1], mode[FLOW_MODE_MAX];
    now_str(now, 0);
    Err err = { 0 };
    *busy = false;
    if (flow_mode_get(o->rd, mode, &err) < 0)
        return 1000;
    *busy = orphans_cancel(o);
    Effect *v;
    size_t n = effects_load(o,
                            "(status = 'requested' AND in_flight = 0 AND"
                            " (next_at IS NULL OR next_at <= ?1))"
                            " OR (status = 'held' AND hold_until <= ?1)",
                            now, &v);
    for (size_t i = 0; i < n && !atomic_load(&o->stop); i++) {
        deliver(o, &v[i], mode);
        *busy = true;
    }
    for (size_t i = 0; i < n; i++)
        effect_done(&v[i]);
    free(v);
    *busy |= sagas(o);
    int64_t next = flow__outbox_next_ms(o->rd, core_time_now_ms());
    return next;
}

static void *outbox_main(void *arg)
{
    FlowOutbox *o = arg;
    pthread_setname_np(pthread_self(), "outbox");
    const char *me = ledger_instance(o->l);
    int lease_ms = o->cfg.flow_lease_ms;
    int64_t renewed = 0;
    while (!atomic_load(&o->stop)) {
        Err err = { 0 };
        int64_t now = core_time_now_ms();
        if (!o->held || now - renewed > lease_ms / 3) {
            int rc = ledger_lease_acquire(o->rd, OUTBOX_LEASE, me, lease_ms, &err);
            bool was = o->held;
            o->held = rc == 1;
            renewed = now;
            if (!o->held) {
                ledger_wait(o->l, INT64_MAX, lease_ms / 3);
                continue;
            }
            if (!was) {
                o->seen = ledger_head_seq(o->l);
                mark_uncertain(o);
                o->next_ms = 1; /* a full pass now */
            }
        }
        uint64_t gen = ledger_wake_gen(o->l);
        int64_t head = ledger_head_seq(o->l);
        bool busy = false, due = news(o) || (o->next_ms > 0 && o->next_ms <= now);
        int64_t next = o->next_ms > 0 ? (o->next_ms > now ? o->next_ms - now : 0) : -1;
        if (due) {
            next = pass(o, &busy);
            o->next_ms = next >= 0 ? core_time_now_ms() + next : 0;
        }
        if (o->on_idle)
            o->on_idle(o->ctx, busy || next == 0 || ledger_head_seq(o->l) != head ? -1 : head);
        if (busy)
            continue;
        int timeout = lease_ms / 3;
        if (next >= 0 && next < timeout)
            timeout = (int)(next > 0 ? next : 1);
        ledger_wait_gen(o->l, head, gen, timeout);
    }
    return NULL;
}

int flow__outbox_start(Ledger *l, const Config *cfg, void (*on_idle)(void *ctx, int64_t head),
                       void *ctx, FlowOutbox **ret, Err *err)
{
    FlowOutbox *o = xcalloc(1, sizeof *o);
    o->l = l;
    o->cfg = *cfg;
    o->cfg.connectors = NULL;
    o->cfg.n_connectors = 0;
    o->on_idle = on_idle;
    o->ctx = ctx;
    int rc = ledger_reader_open(l, &o->rd, err);
    if (rc < 0) {
        free(o);
        return rc;
    }
    if (pthread_create(&o->thread, NULL, outbox_main, o) != 0) {
        store_close(o->rd);
        free(o);
        return err_set(err, ERR_INTERNAL, "cannot start the outbox");
    }
    o->started = true;
    *ret = o;
    return 0;
}

void flow__outbox_stop(FlowOutbox *o)
{
    if (!o)
        return;
    atomic_store(&o->stop, true);
    if (o->started) {
        ledger_wake(o->l);
        pthread_join(o->thread, NULL);
    }
    Err err;
    if (o->held)
        ledger_lease_release(o->rd, OUTBOX_LEASE, ledger_instance(o->l), &err);
    store_close(o->rd);
    free(o);
}
