/* Route handlers: the event API and the signed webhook connectors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "flow/effects.h"
#include "flow/engine.h"
#include "flow/goals.h"
#include "memory/context.h"
#include "memory/identity.h"
#include "memory/search.h"
#include "model/quality.h"
#include "model/router.h"
#include "pull/pull.h"

#define PAGE_DEFAULT 100
#define PAGE_MAX 1000

static const char *header(Req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

static const char *arg(Req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* Applies the Idempotency-Key header to an event object that has no key of
 * its own; suffix distinguishes the lines of a batch. Returns false (and
 * answers 400) when both are given and differ. */
static bool apply_key_header(Req *r, json_t *obj, const char *hkey, long line)
{
    if (!hkey || !json_is_object(obj))
        return true;
    char key[1100];
    if (line > 0)
        snprintf(key, sizeof key, "%s:%ld", hkey, line);
    else
        snprintf(key, sizeof key, "%s", hkey);
    json_t *own = json_object_get(obj, "idempotency_key");
    if (!own) {
        json_object_set_new(obj, "idempotency_key", json_string(key));
        return true;
    }
    if (line == 0 && json_is_string(own) && strcmp(json_string_value(own), key)) {
        api__problem(r, 400, "Bad request",
                     "the Idempotency-Key header and field 'idempotency_key' differ");
        return false;
    }
    return true;
}

static Event *parse_one(Req *r, const char *text, size_t len, const char *hkey, long line,
                        Err *err)
{
    json_t *obj;
    if (core_json_parse(text, len, &obj, err) < 0)
        return NULL;
    if (!apply_key_header(r, obj, hkey, line)) {
        json_decref(obj);
        err_set(err, ERR_INVAL, "answered");
        return NULL;
    }
    Event *ev = NULL;
    ledger_event_from_json(obj, ledger_limits(r->srv->ledger), &ev, err);
    json_decref(obj);
    if (ev && ledger_type_reserved(ev->type)) {
        err_set(err, ERR_INVAL,
                "field 'type': '%.64s' is reserved for Bureau's own events (task.*, step.*, "
                "workflow.*, schedule.*, operator.*)",
                ev->type);
        ledger_event_free(ev);
        return NULL;
    }
    return ev;
}

void api__events_post(Req *r)
{
    const char *ct = header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    const char *hkey = header(r, "Idempotency-Key");
    if (hkey && (strlen(hkey) == 0 || strlen(hkey) > EVENT_KEY_MAX)) {
        api__problem(r, 400, "Bad request", "the Idempotency-Key header must be 1-%d bytes",
                     EVENT_KEY_MAX);
        return;
    }
    bool ndjson = ct && !strncasecmp(ct, "application/x-ndjson", 20);
    if (ct && !ndjson && strncasecmp(ct, "application/json", 16)) {
        api__problem(r, 415, "Unsupported media type",
                     "send application/json (one event) or application/x-ndjson (a batch)");
        return;
    }
    Err err = { 0 };
    if (!ndjson) {
        Event *ev = parse_one(r, buf_cstr(&r->body), r->body.len, hkey, 0, &err);
        if (!ev) {
            if (!r->answered)
                api__problem(r, err.code == ERR_TOOBIG ? 413 : 400,
                             err.code == ERR_TOOBIG ? "Payload too large" : "Bad request", "%s",
                             err.msg);
            return;
        }
        api__append(r, &ev, 1, false);
        return;
    }
    /* NDJSON: every line valid, or nothing is written. */
    size_t n = 0, cap = 64;
    Event **evs = xmalloc(cap * sizeof *evs);
    const char *p = buf_cstr(&r->body), *end = p + r->body.len;
    long line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        line++;
        bool blank = true;
        for (size_t i = 0; i < len && blank; i++)
            blank = p[i] == ' ' || p[i] == '\t' || p[i] == '\r';
        if (!blank) {
            Event *ev = parse_one(r, p, len, hkey, line, &err);
            if (!ev) {
                for (size_t i = 0; i < n; i++)
                    ledger_event_free(evs[i]);
                free(evs);
                if (!r->answered)
                    api__problem(r, 400, "Bad request", "line %ld: %s (nothing was stored)", line,
                                 err.msg);
                return;
            }
            if (n == cap)
                evs = xrealloc(evs, (cap *= 2) * sizeof *evs);
            evs[n++] = ev;
        }
        p += len + 1;
    }
    if (n == 0) {
        free(evs);
        api__problem(r, 400, "Bad request", "the batch holds no event");
        return;
    }
    api__append(r, evs, n, true);
    free(evs);
}

static int add_event(void *ctx, const Event *ev)
{
    json_array_append_new(ctx, ledger_event_to_json(ev));
    return 0;
}

static bool int_arg(Req *r, const char *name, long long min, long long max, long long *ret)
{
    const char *v = arg(r, name);
    if (!v)
        return true;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < min || x > max) {
        api__problem(r, 400, "Bad request", "query parameter '%s' must be an integer from %lld to %lld",
                     name, min, max);
        return false;
    }
    *ret = x;
    return true;
}

void api__events_get(Req *r)
{
    long long since = 0, limit = PAGE_DEFAULT, before = 0;
    const char *order = arg(r, "order");
    if (order && strcmp(order, "asc") && strcmp(order, "desc")) {
        api__problem(r, 400, "Bad request", "query parameter 'order': asc or desc");
        return;
    }
    bool desc = order && !strcmp(order, "desc");
    /* newest first, a cursor is the seq to stay below */
    if (!int_arg(r, "since", 0, INT64_MAX, &since) ||
        !int_arg(r, desc ? "before" : "cursor", desc ? 1 : 0, INT64_MAX, desc ? &before : &since) ||
        (desc && !int_arg(r, "cursor", 1, INT64_MAX, &before)) ||
        !int_arg(r, "limit", 1, PAGE_MAX, &limit))
        return;
    LedgerFilter f = { .type = arg(r, "type"), .source = arg(r, "source"),
                       .subject = arg(r, "subject"), .after_seq = since, .limit = limit,
                       .before_seq = before, .newest_first = desc };
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    json_t *list = json_array();
    if (!rd || ledger_read(rd, &f, add_event, list, &err) < 0) {
        json_decref(list);
        api__problem(r, 503, "Service unavailable", "%s", err.msg);
        return;
    }
    size_t n = json_array_size(list);
    json_t *next = json_null();
    if (n == (size_t)limit) {
        char cur[32];
        snprintf(cur, sizeof cur, "%lld",
                 (long long)json_integer_value(json_object_get(json_array_get(list, n - 1), "seq")));
        next = json_string(cur);
    }
    api__json(r, 200, json_pack("{s:o, s:o}", "events", list, "next_cursor", next));
}

static const char *hook_header(void *ctx, const char *name)
{
    return header(ctx, name);
}

void api__hook(Req *r)
{
    IngestRequest in = {
        .conn = r->connector,
        .secret = r->secret,
        .secret_len = r->secret_len,
        .header = hook_header,
        .header_ctx = r,
        .body = buf_cstr(&r->body),
        .body_len = r->body.len,
        .now_s = core_time_now_ms() / 1000,
        .limits = ledger_limits(r->srv->ledger),
    };
    Event *ev = NULL;
    IngestReason reason = INGEST_OK;
    Err err = { 0 };
    int rc = r->connector->kind == CONNECTOR_STRIPE ? ingest_stripe(&in, &ev, &reason, &err)
                                                    : ingest_webhook(&in, &ev, &reason, &err);
    if (rc < 0) {
        if (reason != INGEST_OK)
            r->reason = reason;
        if (rc == ERR_AUTH) {
            log_warn("webhook refused", json_pack("{s:s, s:s, s:s}", "connector",
                                                  r->connector->name, "reason",
                                                  api__reason_name(reason), "detail", err.msg));
            api__problem(r, 401, "Unauthorized", "%s", err.msg);
        } else if (rc == ERR_CONFIG) {
            log_error("connector misconfigured", json_pack("{s:s, s:s}", "connector",
                                                          r->connector->name, "error", err.msg));
            api__problem(r, 500, "Connector misconfigured", "%s", err.msg);
        } else {
            api__problem(r, rc == ERR_TOOBIG ? 413 : 400,
                         rc == ERR_TOOBIG ? "Payload too large" : "Bad request", "%s", err.msg);
        }
        return;
    }
    api__append(r, &ev, 1, false);
}

/* ---- tasks ---- */

void api__tasks_get(Req *r)
{
    long long limit = PAGE_DEFAULT;
    if (!int_arg(r, "limit", 1, PAGE_MAX, &limit))
        return;
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    json_t *list = NULL;
    int rc = rd ? flow_tasks_list(rd, arg(r, "status"), arg(r, "workflow"), limit, &list, &err)
                : ERR_STORE;
    if (rc == ERR_INVAL) {
        api__problem(r, 400, "Bad request", "%s", err.msg);
        return;
    }
    if (rc < 0) {
        api__problem(r, 503, "Service unavailable", "%s", err.msg);
        return;
    }
    api__json(r, 200, json_pack("{s:o}", "tasks", list));
}

void api__task_get(Req *r)
{
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    json_t *t = NULL;
    int rc = rd ? flow_task_get(rd, r->target, &t, &err) : ERR_STORE;
    if (rc == ERR_NOTFOUND)
        api__problem(r, 404, "Not found", "%s", err.msg);
    else if (rc < 0)
        api__problem(r, 503, "Service unavailable", "%s", err.msg);
    else
        api__json(r, 200, t);
}

void api__task_action(Req *r)
{
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    int rc = rd ? flow_task_action(r->srv->ledger, rd, r->target, r->action, &err) : ERR_STORE;
    if (rc == ERR_NOTFOUND)
        api__problem(r, 404, "Not found", "%s", err.msg);
    else if (rc == ERR_INVAL)
        api__problem(r, 404, "Not found", "%s", err.msg);
    else if (rc == ERR_EXISTS)
        api__problem(r, 409, "Conflict", "%s", err.msg);
    else if (rc < 0)
        api__problem(r, 503, "Service unavailable", "%s", err.msg);
    else
        api__json(r, 202, json_pack("{s:s, s:s}", "task", r->target, "action", r->action));
}

/* ---- approvals, effects, the mode ---- */

/* Answers an error of the flow layer with its status. */
static void flow_problem(Req *r, int rc, const Err *err)
{
    if (rc == ERR_NOTFOUND)
        api__problem(r, 404, "Not found", "%s", err->msg);
    else if (rc == ERR_INVAL)
        api__problem(r, 400, "Bad request", "%s", err->msg);
    else if (rc == ERR_EXISTS)
        api__problem(r, 409, "Conflict", "%s", err->msg);
    else
        api__problem(r, 503, "Service unavailable", "%s", err->msg);
}

/* Who decided: the token's id, never the token. */
static void by_token(const Req *r, char out[64])
{
    snprintf(out, 64, "token:%s", r->token_id[0] ? r->token_id : "?");
}

/* The request body as a JSON object; answers 400 and returns NULL when it
 * is not one. */
static json_t *body_object(Req *r)
{
    json_t *j = NULL;
    Err err = { 0 };
    if (core_json_parse(r->body.ptr ? r->body.ptr : "", r->body.len, &j, &err) < 0) {
        api__problem(r, 400, "Bad request", "the body is not JSON: %s", err.msg);
        return NULL;
    }
    if (!json_is_object(j)) {
        api__problem(r, 400, "Bad request", "the body must be a JSON object");
        json_decref(j);
        return NULL;
    }
    return j;
}

void api__task_trace(Req *r)
{
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    json_t *t = NULL;
    int rc = rd ? flow_task_trace(rd, r->target, &t, &err) : ERR_STORE;
    if (rc < 0)
        flow_problem(r, rc, &err);
    else
        api__json(r, 200, t);
}

void api__inbox_get(Req *r)
{
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    buf_clear(&r->resp);
    buf_puts(&r->resp, "{\"items\":");
    int rc = rd ? flow_inbox_write(rd, &r->resp, &err) : ERR_STORE;
    if (rc < 0) {
        flow_problem(r, rc, &err);
        return;
    }
    buf_puts(&r->resp, "}\n");
    r->status = 200;
    r->resp_type = "application/json";
    r->answered = true;
}

void api__decision_post(Req *r)
{
    json_t *b = body_object(r);
    if (!b)
        return;
    const json_t *dec = json_object_get(b, "decision"), *reason = json_object_get(b, "reason");
    const json_t *payload = json_object_get(b, "payload");
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) if (strcmp(k, "decision") && strcmp(k, "reason") &&
                                     strcmp(k, "payload")) {
        api__problem(r, 400, "Bad request", "%.64s: unknown field (decision, payload, reason)", k);
        json_decref(b);
        return;
    }
    if (!json_is_string(dec) || (reason && !json_is_null(reason) && !json_is_string(reason))) {
        api__problem(r, 400, "Bad request", "%s",
                     !json_is_string(dec) ? "decision: required: approve, edit or reject"
                                          : "reason: must be a string");
        json_decref(b);
        return;
    }
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    char by[64];
    by_token(r, by);
    json_t *out = NULL;
    int rc = rd ? flow_approval_decide(r->srv->ledger, rd, r->target, json_string_value(dec),
                                       payload && !json_is_null(payload) ? payload : NULL,
                                       json_string_value(reason), by, &out, &err)
                : ERR_STORE;
    json_decref(b);
    if (rc < 0) {
        flow_problem(r, rc, &err);
        return;
    }
    /* the canary rule sees every decision (docs/models.md, "Quality") */
    json_t *canary = NULL;
    Err cerr = { 0 };
    if (model_canary_evaluate(r->srv->ledger, rd, r->srv->cfg, &canary, &cerr) < 0)
        log_warn("canary rule", json_pack("{s:s}", "error", cerr.msg));
    else if (json_array_size(canary))
        json_object_set(out, "canary", canary);
    json_decref(canary);
    api__json(r, 200, out);
}

void api__effects_get(Req *r)
{
    long long limit = PAGE_DEFAULT;
    if (!int_arg(r, "limit", 1, PAGE_MAX, &limit))
        return;
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    json_t *list = NULL;
    int rc = rd ? flow_effects_list(rd, arg(r, "status"), arg(r, "task"), limit, &list, &err)
                : ERR_STORE;
    if (rc < 0)
        flow_problem(r, rc, &err);
    else
        api__json(r, 200, json_pack("{s:o}", "effects", list));
}

void api__effect_action(Req *r)
{
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    char by[64];
    by_token(r, by);
    json_t *b = r->body.len ? body_object(r) : json_object();
    if (!b)
        return;
    int rc = rd ? flow_effect_action(r->srv->ledger, rd, r->target, r->action,
                                     json_string_value(json_object_get(b, "reason")), by, &err)
                : ERR_STORE;
    json_decref(b);
    if (rc < 0)
        flow_problem(r, rc, &err);
    else
        api__json(r, 202, json_pack("{s:s, s:s}", "effect", r->target, "action", r->action));
}

void api__mode_get(Req *r)
{
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    char mode[FLOW_MODE_MAX];
    int rc = rd ? flow_mode_get(rd, mode, &err) : ERR_STORE;
    if (rc < 0)
        flow_problem(r, rc, &err);
    else
        api__json(r, 200, json_pack("{s:s}", "mode", mode));
}

void api__mode_post(Req *r)
{
    json_t *b = body_object(r);
    if (!b)
        return;
    const char *mode = json_string_value(json_object_get(b, "mode"));
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    char by[64];
    by_token(r, by);
    bool changed = false;
    int rc = !mode ? err_set(&err, ERR_INVAL, "mode: required: sandbox or production")
           : rd    ? flow_mode_set(r->srv->ledger, rd, mode, by, &changed, &err)
                   : ERR_STORE;
    if (rc < 0)
        flow_problem(r, rc, &err);
    else
        api__json(r, 200, json_pack("{s:s, s:b}", "mode", mode, "changed", changed));
    json_decref(b);
}

void api__spend_get(Req *r)
{
    const char *by = arg(r, "by") ? arg(r, "by") : "route", *since = arg(r, "since");
    if (since && (strlen(since) != 10 || since[4] != '-' || since[7] != '-')) {
        api__problem(r, 400, "Bad request", "since: '%.32s' is not a day (YYYY-MM-DD)", since);
        return;
    }
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    json_t *rows = NULL;
    int rc = rd ? model_spend(rd, by, since, &rows, &err) : ERR_STORE;
    if (rc < 0) {
        flow_problem(r, rc, &err);
        return;
    }
    double total = 0;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) total += json_number_value(json_object_get(row, "cost_usd"));
    api__json(r, 200, json_pack("{s:s, s:o, s:f}", "by", by, "rows", rows, "total_usd", total));
}

void api__content_get(Req *r)
{
    long long limit = PAGE_DEFAULT;
    if (!int_arg(r, "limit", 1, PAGE_MAX, &limit))
        return;
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    json_t *list = NULL;
    int rc = rd ? content_list(rd, (int)limit, &list, &err) : ERR_STORE;
    if (rc < 0)
        flow_problem(r, rc, &err);
    else
        api__json(r, 200, json_pack("{s:o}", "pieces", list));
}

void api__content_piece_get(Req *r)
{
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    json_t *p = NULL;
    int rc = rd ? content_get(rd, r->piece, &p, &err) : ERR_STORE;
    if (rc < 0)
        flow_problem(r, rc, &err);
    else
        api__json(r, 200, p);
}

void api__models_stats_get(Req *r)
{
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    json_t *out = NULL;
    int rc = rd ? model_quality_stats(rd, r->srv->cfg, arg(r, "route"), arg(r, "since"),
                                      arg(r, "by"), &out, &err)
                : ERR_STORE;
    if (rc < 0)
        flow_problem(r, rc, &err);
    else
        api__json(r, 200, out);
}

void api__models_canary_post(Req *r)
{
    json_t *b = body_object(r);
    if (!b)
        return;
    const json_t *action = json_object_get(b, "action"), *reason = json_object_get(b, "reason");
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) if (strcmp(k, "action") && strcmp(k, "reason")) {
        api__problem(r, 400, "Bad request", "%.64s: unknown field (action, reason)", k);
        json_decref(b);
        return;
    }
    const char *a = json_string_value(action);
    if (!a || (strcmp(a, "promote") && strcmp(a, "rollback")) ||
        (reason && !json_is_null(reason) && !json_is_string(reason)) ||
        (json_is_string(reason) && json_string_length(reason) > 2000)) {
        api__problem(r, 400, "Bad request", "%s",
                     !a || (strcmp(a, "promote") && strcmp(a, "rollback"))
                         ? "action: required: promote or rollback"
                         : "reason: a string of at most 2000 bytes");
        json_decref(b);
        return;
    }
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    char by[64];
    by_token(r, by);
    json_t *out = NULL;
    int rc = rd ? model_canary_decide(r->srv->ledger, rd, r->srv->cfg, r->target,
                                      !strcmp(a, "promote"), by, json_string_value(reason), &out,
                                      &err)
                : ERR_STORE;
    json_decref(b);
    if (rc < 0)
        flow_problem(r, rc, &err);
    else
        api__json(r, 200, out);
}

void api__contacts_get(Req *r)
{
    long long limit = PAGE_DEFAULT;
    if (!int_arg(r, "limit", 1, PAGE_MAX, &limit))
        return;
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    json_t *list = NULL;
    int rc = rd ? memory_contacts_list(rd, arg(r, "q"), limit, &list, &err) : ERR_STORE;
    if (rc < 0)
        flow_problem(r, rc, &err);
    else
        api__json(r, 200, json_pack("{s:o}", "contacts", list));
}

void api__contact_get(Req *r)
{
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    char id[MEMORY_CONTACT_ID_LEN + 1];
    json_t *c = NULL, *facts = NULL, *summaries = NULL, *timeline = NULL;
    int rc = rd ? memory_contact_find(rd, r->contact, id, &err) : ERR_STORE;
    if (rc == 0)
        rc = memory_contact_get(rd, id, &c, &err);
    if (rc == 0)
        rc = memory_facts(rd, id, arg(r, "history") && !strcmp(arg(r, "history"), "1"), &facts,
                          &err);
    if (rc == 0)
        rc = memory_summaries(rd, id, 100, &summaries, &err);
    if (rc == 0)
        rc = memory_timeline(rd, id, 100, &timeline, &err);
    if (rc < 0) {
        json_decref(c);
        json_decref(facts);
        json_decref(summaries);
        flow_problem(r, rc, &err);
        return;
    }
    json_object_set_new(c, "facts", facts);
    json_object_set_new(c, "summaries", summaries);
    json_object_set_new(c, "timeline", timeline);
    api__json(r, 200, c);
}

void api__memory_search_get(Req *r)
{
    long long k = MEMORY_SEARCH_K_DEFAULT;
    if (!int_arg(r, "k", 1, MEMORY_SEARCH_K_MAX, &k))
        return;
    const char *q = arg(r, "q");
    if (!q || !*q) {
        api__problem(r, 400, "Bad request", "q: required");
        return;
    }
    char kbuf[MEMORY_SEARCH_KINDS_BUF];
    const char *kinds[MEMORY_SEARCH_KINDS_MAX + 1] = { NULL };
    const char *kind = arg(r, "kind");
    Err kerr = { 0 };
    if (kind && memory_search_kinds(kind, kbuf, kinds, &kerr) < 0) {
        api__problem(r, 400, "Bad request", "%s", kerr.msg);
        return;
    }
    const char *mode = arg(r, "mode");
    int m = mode ? memory_search_mode(mode) : MEMORY_SEARCH_HYBRID;
    if (m < 0) {
        api__problem(r, 400, "Bad request", "mode: hybrid, bm25 or vector");
        return;
    }
    MemorySearch ms = { .query = q,
                        .subject = arg(r, "subject"),
                        .kinds = kind ? kinds : NULL,
                        .since = arg(r, "since"),
                        .k = (int)k,
                        .mode = m,
                        .config = r->srv->cfg };
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    json_t *hits = NULL;
    int rc = rd ? memory_search(rd, &ms, &hits, &err) : ERR_STORE;
    if (rc < 0)
        flow_problem(r, rc, &err);
    else
        api__json(r, 200, json_pack("{s:s, s:o}", "query", q, "hits", hits));
}

/* ---- the dashboard's summaries ---- */

static const char *connector_kind(int kind)
{
    return kind == CONNECTOR_STRIPE ? "stripe"
         : kind == CONNECTOR_FORM   ? "form"
         : kind == CONNECTOR_IMAP   ? "imap"
         : kind == CONNECTOR_ICS    ? "ics"
                                    : "webhook";
}

void api__status_get(Req *r)
{
    ApiServer *s = r->srv;
    Err err = { 0 };
    Store *rd = api__reader(s, &err);
    json_t *st = NULL;
    char mode[FLOW_MODE_MAX];
    int64_t counts[FLOW_EFFECT_STATUSES] = { 0 }, pending = 0;
    int rc = rd ? flow_status(rd, core_time_now_ms(), &st, &err) : ERR_STORE;
    if (rc == 0)
        rc = flow_mode_get(rd, mode, &err);
    if (rc == 0)
        rc = flow_effects_summary(rd, counts, &pending, &err);
    if (rc < 0) {
        json_decref(st);
        flow_problem(r, rc, &err);
        return;
    }
    json_t *effects = json_object();
    for (int i = 0; i < FLOW_EFFECT_STATUSES; i++)
        json_object_set_new(effects, flow_effect_statuses[i], json_integer(counts[i]));
    json_t *conns = json_array(), *pulls = NULL;
    if (pull_status(rd, s->cfg, core_time_now_ms(), &pulls, &err) < 0) {
        /* the pollers' state is a part of the page, not a reason to fail it */
        log_warn("no pull connector status", json_pack("{s:s}", "error", err.msg));
        pulls = json_array();
    }
    for (size_t i = 0; i < s->cfg->n_connectors; i++) {
        const ConnectorConfig *c = &s->cfg->connectors[i];
        if (c->kind == CONNECTOR_IMAP || c->kind == CONNECTOR_ICS)
            continue; /* in "pull" */
        uint64_t acc = atomic_load(&s->m.accepted[1 + i]), rej = 0;
        for (int k = 0; k < API_REASONS; k++)
            rej += atomic_load(&s->m.rejected[1 + i][k]);
        json_array_append_new(conns, json_pack("{s:s, s:s, s:I, s:I}", "name", c->name, "kind",
                                               connector_kind(c->kind), "accepted",
                                               (json_int_t)acc, "rejected", (json_int_t)rej));
    }
    json_object_set_new(st, "mode", json_string(mode));
    json_object_set_new(st, "head", json_integer(ledger_head_seq(s->ledger)));
    json_object_set_new(st, "effects", effects);
    json_object_set_new(st, "approvals_pending", json_integer(pending));
    json_object_set_new(st, "connectors", conns);
    json_object_set_new(st, "pull", pulls);
    pthread_mutex_lock(&s->mu);
    ApiModelsHealth health = s->models_health;
    void *hctx = s->models_ctx;
    pthread_mutex_unlock(&s->mu);
    json_object_set_new(st, "models", health ? health(hctx) : json_array());
    const Config *cfg = s->cfg;
    json_t *routes = json_object(), *wfs = json_object();
    for (size_t i = 0; i < cfg->n_model_routes; i++)
        if (cfg->model_routes[i].daily_usd > 0 || cfg->model_routes[i].monthly_usd > 0)
            json_object_set_new(routes, cfg->model_routes[i].name,
                                json_pack("{s:f, s:f}", "daily_usd", cfg->model_routes[i].daily_usd,
                                          "monthly_usd", cfg->model_routes[i].monthly_usd));
    for (size_t i = 0; i < cfg->n_workflow_budgets; i++)
        json_object_set_new(wfs, cfg->workflow_budgets[i].name,
                            json_pack("{s:f, s:f}", "daily_usd", cfg->workflow_budgets[i].daily_usd,
                                      "monthly_usd", cfg->workflow_budgets[i].monthly_usd));
    json_object_set_new(st, "budgets",
                        json_pack("{s:f, s:f, s:{s:f, s:f}, s:o, s:o}", "daily_usd",
                                  cfg->budget_daily_usd, "monthly_usd", cfg->budget_monthly_usd,
                                  "per_customer", "daily_usd", cfg->budget_customer_daily_usd,
                                  "monthly_usd", cfg->budget_customer_monthly_usd, "routes",
                                  routes, "workflows", wfs));
    json_object_set_new(st, "uptime_s",
                        json_integer((core_time_now_ms() - s->started_ms) / 1000));
    api__json(r, 200, st);
}

void api__audit_get(Req *r)
{
    ApiServer *s = r->srv;
    int64_t head = ledger_head_seq(s->ledger);
    int64_t now = core_time_now_ms();
    pthread_mutex_lock(&s->audit_mu);
    if (!s->audit ||
        (s->audit_head != head && now - s->audit_ms >= API_AUDIT_EVERY_MS)) {
        /* the whole chain is rehashed at most once a minute, and only when it
         * grew: a page left open on a busy ledger costs little */
        s->audit_ms = now;
        Err err = { 0 };
        Store *rd = api__reader(s, &err);
        int64_t count = 0, bad = 0;
        int rc = rd ? ledger_verify(rd, &count, &bad, &err) : ERR_STORE;
        char at[CORE_TIME_LEN + 1];
        core_time_format(core_time_now_ms(), at);
        json_decref(s->audit);
        s->audit = rc == 0 ? json_pack("{s:b, s:I, s:n, s:n, s:s}", "ok", 1, "events",
                                       (json_int_t)count, "bad_seq", "detail", "checked_at", at)
                 : rc == ERR_CHAIN
                     ? json_pack("{s:b, s:I, s:I, s:s, s:s}", "ok", 0, "events",
                                 (json_int_t)count, "bad_seq", (json_int_t)bad, "detail",
                                 err.msg, "checked_at", at)
                     : NULL;
        s->audit_head = head;
        if (!s->audit) {
            pthread_mutex_unlock(&s->audit_mu);
            api__problem(r, 503, "Service unavailable", "cannot verify the chain: %s", err.msg);
            return;
        }
        if (rc == ERR_CHAIN)
            log_error("the ledger's chain does not verify",
                      json_pack("{s:I, s:s}", "bad_seq", (json_int_t)bad, "detail", err.msg));
    }
    json_t *j = json_deep_copy(s->audit);
    pthread_mutex_unlock(&s->audit_mu);
    json_object_set_new(j, "head", json_integer(head));
    api__json(r, 200, j);
}

/* ---- goals ---- */

#define GOAL_RETRY_AFTER_S "5" /* Retry-After of a POST /v1/goals while another plans */

void api__goals_post(Req *r)
{
    json_t *b = body_object(r);
    if (!b)
        return;
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) if (strcmp(k, "text")) {
        api__problem(r, 400, "Bad request", "%.64s: unknown field (text)", k);
        json_decref(b);
        return;
    }
    const json_t *text = json_object_get(b, "text");
    if (!json_is_string(text)) {
        api__problem(r, 400, "Bad request", "text: required: the goal, in words");
        json_decref(b);
        return;
    }
    /* A plan holds this worker thread for as long as the plan route takes
     * (a remote model: up to its timeout); one at a time, so that the other
     * workers keep answering every other endpoint. */
    pthread_mutex_lock(&r->srv->mu);
    ModelRouter *router = r->srv->router;
    bool busy = router && r->srv->planning;
    if (router && !busy)
        r->srv->planning = true;
    pthread_mutex_unlock(&r->srv->mu);
    if (!router) {
        json_decref(b);
        api__problem(r, 503, "Service unavailable", "no planner runs in this process");
        return;
    }
    if (busy) {
        json_decref(b);
        r->retry_after = GOAL_RETRY_AFTER_S;
        api__problem(r, 503, "Service unavailable",
                     "another goal is being planned; try again in a few seconds");
        return;
    }
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    char by[64];
    by_token(r, by);
    json_t *g = NULL;
    int rc = rd ? flow_goal_submit(r->srv->ledger, rd, router, r->srv->data_dir,
                                   json_string_value(text), by, &g, &err)
                : ERR_STORE;
    json_decref(b);
    pthread_mutex_lock(&r->srv->mu);
    r->srv->planning = false;
    pthread_mutex_unlock(&r->srv->mu);
    if (rc < 0) {
        flow_problem(r, rc, &err);
        return;
    }
    /* a refusal is an answer too: the goal with its error; 422 when the
     * goal or the plan was the problem, 502 when the plan route gave none */
    const char *status = json_string_value(json_object_get(g, "status"));
    const char *reason = json_string_value(json_object_get(g, "reason"));
    bool refused = status && !strcmp(status, "refused");
    api__json(r, !refused ? 201 : reason && !strcmp(reason, "model") ? 502 : 422, g);
}

void api__goals_get(Req *r)
{
    long long limit = PAGE_DEFAULT;
    if (!int_arg(r, "limit", 1, PAGE_MAX, &limit))
        return;
    Err err = { 0 };
    Store *rd = api__reader(r->srv, &err);
    json_t *list = NULL;
    const char *id = arg(r, "id");
    int rc = !rd ? ERR_STORE
           : id  ? flow_goal_get(rd, id, &list, &err)
                 : flow_goals_list(rd, limit, &list, &err);
    if (rc < 0)
        flow_problem(r, rc, &err);
    else
        api__json(r, 200, id ? list : json_pack("{s:o}", "items", list));
}
