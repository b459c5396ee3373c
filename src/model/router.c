/* The model router (router.h). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/log.h"
#include "flow/flow_cron.h"
#include "model/model_int.h"
#include "model/quality.h"
#include "model/router.h"

#define BREAKER_FAILURES 3          /* consecutive failures that open it */
#define BREAKER_OPEN_MS 30000       /* first open period; doubles, capped */
#define BREAKER_OPEN_MAX_MS 600000
#define EWMA_ALPHA 0.3
#define SLA_MIN_SAMPLES 3           /* the EWMA judges a provider after this many calls */
#define DEFAULT_MAX_RESPONSE (4 * 1024 * 1024)
#define PROMPT_MAX_BYTES (1024 * 1024)

typedef enum { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN } Breaker;

typedef struct Prov {
    ModelProvider *p;
    pthread_mutex_t mu;
    double ewma_ms;
    int64_t samples, calls;
    int failures;          /* in a row */
    Breaker breaker;
    int64_t open_until;    /* BREAKER_OPEN: a probe may go after this */
    int64_t open_ms;       /* the current open period */
    bool probing;          /* BREAKER_HALF_OPEN: the probe is out */
    int64_t limited_until; /* a 429 said: not before */
} Prov;

/* A call's worst case, held against the budgets until its model.called is
 * durable (then the spend shows in the projection). */
typedef struct Reservation {
    double usd;
    char route[33];
    char workflow[65];
    char customer[129];
    struct Reservation *next;
} Reservation;

struct ModelRouter {
    Ledger *l;
    Config cfg;
    Prov *provs;
    size_t n;
    pthread_mutex_t budget_mu;
    Reservation *reserved;
};

void model_result_done(ModelResult *r)
{
    json_decref(r->output);
    json_decref(r->attempts);
    r->output = r->attempts = NULL;
}

#define outcome_name model_status_name

/* ---- construction ---- */

static int provider_make(ModelRouter *r, const ModelProviderConfig *pc, ModelProvider **ret,
                         Err *err)
{
    if (!strcmp(pc->kind, "local"))
        return model_local_new(pc, &r->cfg, r->l, ret, err);
    if (!strcmp(pc->kind, "openai"))
        return model_openai_new(pc, ret, err);
    if (!strcmp(pc->kind, "anthropic"))
        return model_anthropic_new(pc, ret, err);
    return err_set(err, ERR_CONFIG, "models.providers: %s: unknown kind '%s'", pc->name, pc->kind);
}

int model_router_new(Ledger *l, const Config *cfg, ModelRouter **ret, Err *err)
{
    ModelRouter *r = xcalloc(1, sizeof *r);
    r->l = l;
    r->cfg = *cfg;
    r->cfg.connectors = NULL;
    r->cfg.n_connectors = 0;
    pthread_mutex_init(&r->budget_mu, NULL);
    bool has_local = false;
    for (size_t i = 0; i < cfg->n_model_providers; i++)
        has_local |= !strcmp(cfg->model_providers[i].name, "local");
    size_t n = cfg->n_model_providers + !has_local;
    r->provs = xcalloc(n, sizeof *r->provs);
    for (size_t i = 0; i < n; i++) {
        ModelProviderConfig implicit = { .name = "local", .kind = "local", .timeout_ms = 30000 };
        const ModelProviderConfig *pc = i < cfg->n_model_providers ? &cfg->model_providers[i]
                                                                   : &implicit;
        int rc = provider_make(r, pc, &r->provs[i].p, err);
        if (rc < 0) {
            r->n = i;
            model_router_free(r);
            return rc;
        }
        pthread_mutex_init(&r->provs[i].mu, NULL);
        r->provs[i].open_ms = BREAKER_OPEN_MS;
        r->n = i + 1;
    }
    *ret = r;
    return 0;
}

void model_router_free(ModelRouter *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        r->provs[i].p->ops->free(r->provs[i].p);
        pthread_mutex_destroy(&r->provs[i].mu);
    }
    free(r->provs);
    /* every reservation was released by its append's acknowledgement:
     * ledger_close (or ledger_sync) ran before */
    while (r->reserved) {
        Reservation *x = r->reserved;
        r->reserved = x->next;
        free(x);
    }
    pthread_mutex_destroy(&r->budget_mu);
    free(r);
}

static Prov *prov_find(ModelRouter *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->provs[i].p->cfg.name, name))
            return &r->provs[i];
    return NULL;
}

static const ModelRouteConfig *route_find(const ModelRouter *r, const char *name)
{
    for (size_t i = 0; i < r->cfg.n_model_routes; i++)
        if (!strcmp(r->cfg.model_routes[i].name, name))
            return &r->cfg.model_routes[i];
    return NULL;
}

/* ---- health ---- */

/* Whether p may be tried now; why not in why. Takes the half-open probe. */
static bool prov_admit(Prov *p, int64_t now, const ModelRouteConfig *route, char *why,
                       size_t size)
{
    bool ok = true;
    pthread_mutex_lock(&p->mu);
    if (p->limited_until > now) {
        snprintf(why, size, "rate limited for %lld ms more", (long long)(p->limited_until - now));
        ok = false;
    } else if (p->breaker == BREAKER_OPEN && now < p->open_until) {
        snprintf(why, size, "circuit breaker open (%d failures in a row)", p->failures);
        ok = false;
    } else if (p->breaker == BREAKER_OPEN || (p->breaker == BREAKER_HALF_OPEN && !p->probing)) {
        p->breaker = BREAKER_HALF_OPEN; /* this call is the probe */
        p->probing = true;
    } else if (p->breaker == BREAKER_HALF_OPEN) {
        snprintf(why, size, "circuit breaker half-open: a probe is out");
        ok = false;
    } else if (route && route->max_latency_ms > 0 && p->samples >= SLA_MIN_SAMPLES &&
               p->ewma_ms > route->max_latency_ms) {
        snprintf(why, size, "slower than the route's SLA (%.0f ms on average > %d ms)",
                 p->ewma_ms, route->max_latency_ms);
        ok = false;
    }
    pthread_mutex_unlock(&p->mu);
    return ok;
}

static void prov_settle(Prov *p, const ModelResponse *resp, int64_t latency_ms, int64_t now)
{
    pthread_mutex_lock(&p->mu);
    p->calls++;
    p->ewma_ms = p->samples == 0 ? (double)latency_ms
                                 : EWMA_ALPHA * (double)latency_ms + (1 - EWMA_ALPHA) * p->ewma_ms;
    p->samples++;
    /* the local tier runs in this process: its failures are the request's
     * (a task it does not do, labels it does not know), never its health,
     * so they never open its breaker for the calls it can answer */
    bool failed = resp->status != MODEL_OK && resp->status != MODEL_BAD_OUTPUT &&
                  strcmp(p->p->cfg.kind, "local");
    if (resp->status == MODEL_RATE_LIMITED)
        p->limited_until = now + (resp->retry_after_ms > 0 ? resp->retry_after_ms : 1000);
    if (!failed) {
        p->failures = 0;
        p->breaker = BREAKER_CLOSED;
        p->open_ms = BREAKER_OPEN_MS;
    } else if (resp->status != MODEL_RATE_LIMITED) {
        p->failures++;
        if (p->breaker == BREAKER_HALF_OPEN || p->failures >= BREAKER_FAILURES) {
            if (p->breaker == BREAKER_HALF_OPEN)
                p->open_ms = p->open_ms * 2 > BREAKER_OPEN_MAX_MS ? BREAKER_OPEN_MAX_MS
                                                                  : p->open_ms * 2;
            if (p->breaker != BREAKER_OPEN)
                log_warn("model provider breaker open",
                         json_pack("{s:s, s:i, s:I}", "provider", p->p->cfg.name, "failures",
                                   p->failures, "open_ms", (json_int_t)p->open_ms));
            p->breaker = BREAKER_OPEN;
            p->open_until = now + p->open_ms;
        }
    }
    p->probing = false;
    pthread_mutex_unlock(&p->mu);
}

json_t *model_router_health(ModelRouter *r)
{
    json_t *list = json_array();
    int64_t now = core_time_now_ms();
    for (size_t i = 0; i < r->n; i++) {
        Prov *p = &r->provs[i];
        pthread_mutex_lock(&p->mu);
        const char *b = p->breaker == BREAKER_CLOSED                          ? "closed"
                      : p->breaker == BREAKER_HALF_OPEN || now >= p->open_until ? "half-open"
                                                                              : "open";
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:I}", "name", p->p->cfg.name,
                              "kind", p->p->cfg.kind, "model", p->p->cfg.model, "breaker", b,
                              "failures", p->failures, "calls", (json_int_t)p->calls, "samples",
                              (json_int_t)p->samples);
        json_object_set_new(o, "latency_ewma_ms",
                            p->samples ? json_real(round(p->ewma_ms * 10) / 10) : json_null());
        if (p->limited_until > now) {
            char t[CORE_TIME_LEN + 1];
            core_time_format(p->limited_until, t);
            json_object_set_new(o, "rate_limited_until", json_string(t));
        }
        pthread_mutex_unlock(&p->mu);
        json_array_append_new(list, o);
    }
    return list;
}

/* ---- budgets ---- */

static void day_and_month(int64_t now, char day[11], char month_start[11])
{
    char t[CORE_TIME_LEN + 1];
    core_time_format(now, t);
    snprintf(day, 11, "%.10s", t);
    snprintf(month_start, 11, "%.8s01", t);
}

/* Spend recorded since `since` (a UTC day), where column = value (column
 * NULL: all). */
static double spent(Store *rd, const char *since, const char *column, const char *value)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT coalesce(sum(cost_usd), 0) FROM model_spend WHERE day >= ?1%s%s%s",
             column ? " AND " : "", column ? column : "", column ? " = ?2" : "");
    StoreStmt *st;
    Err err = { 0 };
    double v = 0;
    if (store_prepare(rd, sql, &st, &err) < 0)
        return INFINITY; /* unknown: no budget can be trusted */
    store_bind_text(st, 1, since, strlen(since));
    if (column)
        store_bind_text(st, 2, value, strlen(value));
    if (store_step(st, &err) == STORE_ROW)
        v = store_col_real(st, 0);
    store_stmt_done(st);
    return v;
}

static double reserved(const ModelRouter *r, int scope, const char *value)
{
    double sum = 0;
    for (const Reservation *x = r->reserved; x; x = x->next)
        if (scope == 0 || (scope == 1 && !strcmp(x->route, value)) ||
            (scope == 2 && !strcmp(x->workflow, value)) ||
            (scope == 3 && !strcmp(x->customer, value)))
            sum += x->usd;
    return sum;
}

/* Reserves usd against every budget that applies, or says which one it
 * would exceed. Budgets of 0 are none. */
static Reservation *reserve(ModelRouter *r, Store *rd, const ModelCall *call,
                            const ModelRouteConfig *route, double usd, char *why, size_t size)
{
    char day[11], month[11];
    day_and_month(core_time_now_ms(), day, month);
    double wf_daily = 0, wf_monthly = 0;
    for (size_t i = 0; call->workflow && i < r->cfg.n_workflow_budgets; i++)
        if (!strcmp(r->cfg.workflow_budgets[i].name, call->workflow)) {
            wf_daily = r->cfg.workflow_budgets[i].daily_usd;
            wf_monthly = r->cfg.workflow_budgets[i].monthly_usd;
        }
    struct {
        const char *what, *column, *value;
        int scope;
        double limit;
        bool monthly;
    } checks[] = {
        { "the daily budget", NULL, NULL, 0, r->cfg.budget_daily_usd, false },
        { "the monthly budget", NULL, NULL, 0, r->cfg.budget_monthly_usd, true },
        { "the route's daily budget", "route", call->route, 1, route ? route->daily_usd : 0, false },
        { "the route's monthly budget", "route", call->route, 1, route ? route->monthly_usd : 0,
          true },
        { "the workflow's daily budget", "workflow", call->workflow, 2, wf_daily, false },
        { "the workflow's monthly budget", "workflow", call->workflow, 2, wf_monthly, true },
        { "the customer's daily budget", "customer", call->customer, 3,
          r->cfg.budget_customer_daily_usd, false },
        { "the customer's monthly budget", "customer", call->customer, 3,
          r->cfg.budget_customer_monthly_usd, true },
    };
    pthread_mutex_lock(&r->budget_mu);
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        if (checks[i].limit <= 0 || (checks[i].column && !checks[i].value))
            continue;
        double s = spent(rd, checks[i].monthly ? month : day, checks[i].column, checks[i].value) +
                   reserved(r, checks[i].scope, checks[i].value);
        if (s + usd > checks[i].limit + 1e-12) {
            snprintf(why, size, "%s ($%.4f) would be exceeded: $%.4f spent or reserved, this call "
                                "may cost up to $%.4f",
                     checks[i].what, checks[i].limit, s, usd);
            pthread_mutex_unlock(&r->budget_mu);
            return NULL;
        }
    }
    Reservation *x = xcalloc(1, sizeof *x);
    x->usd = usd;
    snprintf(x->route, sizeof x->route, "%s", call->route);
    snprintf(x->workflow, sizeof x->workflow, "%s", call->workflow ? call->workflow : "");
    snprintf(x->customer, sizeof x->customer, "%s", call->customer ? call->customer : "");
    x->next = r->reserved;
    r->reserved = x;
    pthread_mutex_unlock(&r->budget_mu);
    return x;
}

static void release(ModelRouter *r, Reservation *x)
{
    if (!x)
        return;
    pthread_mutex_lock(&r->budget_mu);
    for (Reservation **p = &r->reserved; *p; p = &(*p)->next)
        if (*p == x) {
            *p = x->next;
            break;
        }
    pthread_mutex_unlock(&r->budget_mu);
    free(x);
}

/* ---- recording ---- */

typedef struct Pending {
    ModelRouter *r;
    Reservation *res;
} Pending;

static void recorded(void *ctx, int rc, const Err *err, const LedgerAppendResult *res, size_t n)
{
    Pending *p = ctx;
    if (rc < 0)
        log_error("model.called not recorded", json_pack("{s:s}", "error", err->msg));
    release(p->r, p->res); /* its spend is in the projection now (or never will be) */
    free(p);
    (void)res;
    (void)n;
}

/* Appends model.called (data stolen); the reservation (may be NULL) is
 * released once it is durable. */
static void record(ModelRouter *r, json_t *data, Reservation *res)
{
    if (!r->l) {
        json_decref(data);
        release(r, res);
        return;
    }
    Event *ev = NULL;
    Err err = { 0 };
    int rc = ledger_event_new("model.called", "router", NULL, data, NULL, ledger_limits(r->l), &ev,
                              &err);
    if (rc < 0) { /* too large with its output: keep the record without it */
        json_object_del(data, "output");
        json_object_del(data, "prompt");
        json_object_del(data, "system");
        rc = ledger_event_new("model.called", "router", NULL, data, NULL, ledger_limits(r->l), &ev,
                              &err);
    }
    json_decref(data);
    if (rc < 0) {
        log_error("model.called not recorded", json_pack("{s:s}", "error", err.msg));
        release(r, res);
        return;
    }
    Pending *p = xcalloc(1, sizeof *p);
    p->r = r;
    p->res = res;
    if (ledger_append_async(r->l, &ev, 1, recorded, p, &err) < 0) {
        Err copy = err;
        recorded(p, copy.code, &copy, NULL, 0);
    }
}

static json_t *call_data(const ModelCall *call, const char *provider, const char *model,
                         const char *outcome, int64_t latency_ms, const char *key,
                         const char *role)
{
    json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "route", call->route, "provider",
                          provider, "model", model, "outcome", outcome, "latency_ms",
                          (json_int_t)latency_ms, "request", key);
    if (role)
        json_object_set_new(d, "role", json_string(role));
    if (call->workflow)
        json_object_set_new(d, "workflow", json_string(call->workflow));
    if (call->customer)
        json_object_set_new(d, "customer", json_string(call->customer));
    if (call->task_id)
        json_object_set_new(d, "task", json_string(call->task_id));
    if (call->step_id)
        json_object_set_new(d, "step", json_string(call->step_id));
    if (call->template_name)
        json_object_set_new(d, "template", json_string(call->template_name));
    return d;
}

/* ---- the cache ---- */

static void request_key(const ModelCall *call, const char *task, char out[CORE_SHA256_HEX + 1])
{
    json_t *k = json_pack("{s:s, s:s, s:s, s:s, s:i}", "route", call->route, "task", task,
                          "system", call->req.system ? call->req.system : "", "prompt",
                          call->req.prompt ? call->req.prompt : "", "max_output_tokens",
                          call->req.max_output_tokens);
    if (call->req.schema)
        json_object_set(k, "schema", (json_t *)call->req.schema);
    if (call->req.labels)
        json_object_set(k, "labels", (json_t *)call->req.labels);
    if (call->cache_scope)
        json_object_set_new(k, "scope", json_string(call->cache_scope));
    Buf b;
    buf_init(&b, 0);
    core_json_canonical(k, &b);
    core_sha256_hex(b.ptr, b.len, out);
    buf_done(&b);
    json_decref(k);
}

void model_router_request_key(const ModelRouter *r, const ModelCall *call,
                              char out[CORE_SHA256_HEX + 1])
{
    const ModelRouteConfig *route = route_find(r, call->route);
    ModelCall c = *call;
    if (!c.req.task)
        c.req.task = c.route;
    if (c.req.max_output_tokens <= 0)
        c.req.max_output_tokens = route && route->max_output_tokens > 0 ? route->max_output_tokens
                                                                        : 512;
    request_key(&c, c.req.task, out);
}

static bool cache_get(Store *rd, const char *key, ModelResult *res)
{
    StoreStmt *st;
    Err err = { 0 };
    char now[CORE_TIME_LEN + 1];
    core_time_format(core_time_now_ms(), now);
    if (store_prepare(rd,
                      "SELECT provider, model, output, cost_usd FROM model_cache"
                      " WHERE key = ?1 AND expires_at > ?2",
                      &st, &err) < 0)
        return false;
    store_bind_text(st, 1, key, strlen(key));
    store_bind_text(st, 2, now, strlen(now));
    bool hit = false;
    if (store_step(st, &err) == STORE_ROW) {
        size_t len;
        const char *o = store_col_text(st, 2, &len);
        json_t *out = NULL;
        if (o && core_json_parse(o, len, &out, &err) == 0) {
            hit = true;
            res->output = out;
            snprintf(res->provider, sizeof res->provider, "%s", store_col_text(st, 0, NULL));
            snprintf(res->model, sizeof res->model, "%s", store_col_text(st, 1, NULL));
            res->saved_usd = store_col_real(st, 3);
        }
    }
    store_stmt_done(st);
    return hit;
}

/* ---- the batch window ---- */

int64_t model_batch_next(const Config *cfg, int64_t now_ms, bool *inside)
{
    /* the window's ends as daily crons in its timezone (DST included) */
    int h1 = 2, m1 = 0, h2 = 5, m2 = 0;
    sscanf(cfg->batch_window, "%d:%d-%d:%d", &h1, &m1, &h2, &m2);
    char e1[32], e2[32];
    snprintf(e1, sizeof e1, "%d %d * * *", m1, h1);
    snprintf(e2, sizeof e2, "%d %d * * *", m2, h2);
    const char *tz = cfg->batch_timezone[0] ? cfg->batch_timezone : "UTC";
    FlowCron start, end;
    Err err = { 0 };
    int64_t next = now_ms + 86400000, last_start = 0, last_end = 0;
    if (flow_cron_parse(e1, tz, &start, NULL, &err) < 0 ||
        flow_cron_parse(e2, tz, &end, NULL, &err) < 0 ||
        flow_cron_next(&start, now_ms, &next, &err) < 0 ||
        flow_cron_prev(&start, now_ms, &last_start, &err) < 0 ||
        flow_cron_prev(&end, now_ms, &last_end, &err) < 0) {
        log_warn("batch window", json_pack("{s:s, s:s}", "window", cfg->batch_window, "error",
                                           err.msg));
        if (inside)
            *inside = false;
        return next;
    }
    if (inside) /* inside: the window opened since it last closed */
        *inside = last_start > last_end;
    return next;
}

/* ---- the call ---- */

static double price(const ModelProviderConfig *pc, int64_t in, int64_t out)
{
    return ((double)in * pc->price_in_per_mtok + (double)out * pc->price_out_per_mtok) / 1e6;
}

#define CHAT_OVERHEAD_TOKENS 16 /* a round's message framing */
#define REPAIR_WHY_MAX 256      /* remote.c's why[] in the repair instruction */

/* A call's worst case in tokens (a token is at least a byte): everything a
 * remote provider sends, the system prompt as it builds it (the schema
 * stated in it when the answer must be JSON) and the prompt, and the whole
 * output budget. An answer that must be JSON may take a repair round
 * (remote.c): everything again, plus the broken answer (at most the output
 * budget) and the instruction, and the output budget once more. */
static void worst_tokens(const ModelRequest *req, int64_t *in, int64_t *out)
{
    json_t *owned = NULL;
    const json_t *schema = req->schema;
    if (!schema && req->labels && req->task && !strcmp(req->task, "classify"))
        schema = owned = model__classify_schema(req->labels); /* NULL: refused unsent */
    Buf sys, rep;
    buf_init(&sys, 0);
    buf_init(&rep, 0);
    model__system_build(req->system, schema, &sys);
    int64_t first = (int64_t)(strlen(req->prompt) + sys.len) + CHAT_OVERHEAD_TOKENS;
    *in = first;
    *out = req->max_output_tokens;
    if (schema) {
        model__repair_build(schema, "", &rep);
        *in += first + req->max_output_tokens + (int64_t)(rep.len + REPAIR_WHY_MAX) +
               CHAT_OVERHEAD_TOKENS;
        *out += req->max_output_tokens;
    }
    buf_done(&sys);
    buf_done(&rep);
    json_decref(owned);
}

/* A request key's share bucket, 0..99: its first 32 bits modulo 100. */
static int bucket(const char *key)
{
    char h[9];
    memcpy(h, key, 8);
    h[8] = '\0';
    return (int)(strtoul(h, NULL, 16) % 100);
}

int model_router_call(ModelRouter *r, Store *rd, const ModelCall *call, ModelResult *res,
                      Err *err)
{
    memset(res, 0, sizeof *res);
    res->attempts = json_array();
    if (!call->route || !*call->route)
        return err_set(err, ERR_INVAL, "route: required");
    if (!call->req.prompt)
        return err_set(err, ERR_INVAL, "prompt: required");
    size_t plen = strlen(call->req.prompt) + (call->req.system ? strlen(call->req.system) : 0);
    if (plen > PROMPT_MAX_BYTES)
        return err_set(err, ERR_TOOBIG, "prompt: %zu bytes, more than %d", plen, PROMPT_MAX_BYTES);
    const ModelRouteConfig *route = route_find(r, call->route);
    static const ModelRouteConfig local_only = { .candidates = { "local" }, .n_candidates = 1,
                                                 .max_output_tokens = 512 };
    if (!route)
        route = &local_only;
    ModelRequest req = call->req;
    if (!req.task)
        req.task = call->route;
    if (req.max_output_tokens <= 0)
        req.max_output_tokens = route->max_output_tokens > 0 ? route->max_output_tokens : 512;
    if (req.max_response_bytes == 0)
        req.max_response_bytes = DEFAULT_MAX_RESPONSE;
    int64_t now = core_time_now_ms();
    if (route->defer_batch && !call->force) {
        bool inside = false;
        int64_t next = model_batch_next(&r->cfg, now, &inside);
        if (!inside) {
            res->status = MODEL_CALL_DEFERRED;
            res->deferred_until_ms = next;
            snprintf(res->error, sizeof res->error, "deferred to the batch window (%s)",
                     r->cfg.batch_window);
            return 0;
        }
    }
    char key[CORE_SHA256_HEX + 1];
    ModelCall c = *call;
    c.req = req;
    request_key(&c, req.task, key);
    ModelRouteConfig eff; /* the route as the ledger's canary decisions make it */
    const char *canary = NULL, *shadow = call->shadow_provider;
    ModelCanaryState cs = MODEL_CANARY_NONE;
    if (shadow) {
        eff = *route;
        snprintf(eff.candidates[0], sizeof eff.candidates[0], "%s", shadow);
        eff.n_candidates = 1;
        eff.on_budget_park = true; /* a shadow never degrades to another model */
        route = &eff;
    } else if (route->canary[0]) {
        cs = model_canary_state(rd, route, NULL);
        /* the same request always lands on the same side: a replay agrees */
        bool pick = cs == MODEL_CANARY_ACTIVE && bucket(key) < route->canary_percent;
        bool first = cs == MODEL_CANARY_PROMOTED || pick;
        if (cs != MODEL_CANARY_NONE) {
            /* the canary first when promoted or picked; else it is no
             * fallback either (a request not picked for it is the
             * incumbent's, a rolled-back canary takes no more calls) */
            eff = *route;
            eff.n_candidates = 0;
            if (first)
                snprintf(eff.candidates[eff.n_candidates++], sizeof eff.candidates[0], "%s",
                         route->canary);
            for (int i = 0; i < route->n_candidates && eff.n_candidates <
                                                           CONFIG_MAX_ROUTE_CANDIDATES; i++)
                if (strcmp(route->candidates[i], route->canary))
                    snprintf(eff.candidates[eff.n_candidates++], sizeof eff.candidates[0], "%s",
                             route->candidates[i]);
            route = &eff;
            canary = pick ? eff.candidates[0] : NULL;
        }
    }
    bool cacheable = !route->no_cache && r->cfg.model_cache_ttl_s > 0 && !shadow;
    bool hit = cacheable && cache_get(rd, key, res);
    if (hit && cs == MODEL_CANARY_ROLLED_BACK && !strcmp(res->provider, route->canary)) {
        /* a rolled-back canary's answers are not served again: the fresh
         * answer replaces it in the cache */
        json_decref(res->output);
        res->output = NULL;
        res->provider[0] = res->model[0] = '\0';
        res->saved_usd = 0;
        hit = false;
    }
    if (hit) {
        res->status = MODEL_CALL_OK;
        res->cached = true;
        /* the cached answer's side: the same request always takes the same one */
        const char *role = canary && !strcmp(res->provider, canary) ? "canary"
                         : call->template_name || route->canary[0] ? "incumbent"
                                                                   : NULL;
        json_t *d = call_data(call, res->provider, res->model, "ok", 0, key, role);
        json_object_set_new(d, "cache_hit", json_true());
        json_object_set_new(d, "cost_usd", json_real(0));
        json_object_set_new(d, "saved_usd", json_real(res->saved_usd));
        record(r, d, NULL);
        return 0;
    }
    int64_t worst_in, worst_out;
    worst_tokens(&req, &worst_in, &worst_out);
    bool parked = false;
    for (int i = 0; i < route->n_candidates; i++) {
        Prov *p = prov_find(r, route->candidates[i]);
        char why[600] = "";
        if (!p) {
            json_array_append_new(res->attempts,
                                  json_pack("{s:s, s:s, s:s}", "provider", route->candidates[i],
                                            "outcome", "skipped", "error", "no such provider"));
            continue;
        }
        const ModelProviderConfig *pc = &p->p->cfg;
        now = core_time_now_ms();
        double worst = price(pc, worst_in, worst_out);
        if (route->max_cost_usd > 0 && worst > route->max_cost_usd)
            snprintf(why, sizeof why, "may cost up to $%.4f, more than the route's max_cost_usd "
                                      "$%.4f", worst, route->max_cost_usd);
        Reservation *resv = NULL;
        if (!why[0] && worst > 0 && !(resv = reserve(r, rd, call, route, worst, why, sizeof why)) &&
            route->on_budget_park) {
            parked = true;
        }
        if (!why[0] && !prov_admit(p, now, route, why, sizeof why)) {
            release(r, resv);
            resv = NULL;
        }
        if (why[0]) {
            json_array_append_new(res->attempts, json_pack("{s:s, s:s, s:s}", "provider", pc->name,
                                                           "outcome", "skipped", "error", why));
            if (parked)
                break;
            continue;
        }
        ModelRequest pr = req;
        int timeout = pc->timeout_ms > 0 ? pc->timeout_ms : 30000;
        if (req.timeout_ms > 0 && req.timeout_ms < timeout)
            timeout = req.timeout_ms;
        if (route->max_latency_ms > 0 && route->max_latency_ms < timeout)
            timeout = route->max_latency_ms; /* the SLA bounds the call */
        pr.timeout_ms = timeout;
        ModelResponse resp;
        memset(&resp, 0, sizeof resp);
        int64_t t0 = core_time_mono_ns();
        p->p->ops->call(p->p, &pr, &resp);
        int64_t latency = (core_time_mono_ns() - t0) / 1000000;
        prov_settle(p, &resp, latency, core_time_now_ms());
        double cost = price(pc, resp.tokens_in, resp.tokens_out);
        const char *model = resp.model[0] ? resp.model : pc->model[0] ? pc->model : pc->kind;
        const char *role = shadow ? "shadow"
                         : canary && !strcmp(pc->name, canary) ? "canary"
                         : call->template_name || route->canary[0] ? "incumbent"
                                                                   : NULL;
        json_t *d = call_data(call, pc->name, model, outcome_name(resp.status), latency, key, role);
        if (!shadow && route->shadow[0] && call->template_name && call->task_id) {
            /* the request, for the route's shadow to answer later */
            json_object_set_new(d, "prompt", json_string(req.prompt));
            if (req.system)
                json_object_set_new(d, "system", json_string(req.system));
            json_object_set_new(d, "max_output_tokens", json_integer(req.max_output_tokens));
        }
        json_object_set_new(d, "kind", json_string(pc->kind));
        json_object_set_new(d, "tokens_in", json_integer(resp.tokens_in));
        json_object_set_new(d, "tokens_out", json_integer(resp.tokens_out));
        json_object_set_new(d, "cost_usd", json_real(cost));
        json_object_set_new(d, "cache_hit", json_false());
        json_object_set_new(d, "attempt", json_integer(i + 1));
        if (resp.repairs)
            json_object_set_new(d, "repairs", json_integer(resp.repairs));
        if (resp.http_status)
            json_object_set_new(d, "http_status", json_integer(resp.http_status));
        if (resp.status != MODEL_OK)
            json_object_set_new(d, "error", json_string(resp.error));
        const json_t *lab = json_object_get(resp.output, "label");
        if (json_is_string(lab)) /* for quality tracking later */
            json_object_set(d, "label", (json_t *)lab);
        if (resp.status == MODEL_OK && cacheable && strcmp(pc->kind, "local")) {
            json_object_set(d, "output", resp.output);
            json_object_set_new(d, "cache_ttl_s", json_integer(r->cfg.model_cache_ttl_s));
        } else if (resp.status == MODEL_OK && shadow) {
            json_object_set(d, "output", resp.output); /* what the shadow said, never used */
        }
        json_array_append_new(res->attempts,
                              json_pack("{s:s, s:s, s:I, s:s}", "provider", pc->name, "outcome",
                                        outcome_name(resp.status), "latency_ms",
                                        (json_int_t)latency, "error", resp.error));
        record(r, d, resv);
        if (resp.status == MODEL_OK) {
            res->status = MODEL_CALL_OK;
            res->output = resp.output;
            resp.output = NULL;
            snprintf(res->provider, sizeof res->provider, "%s", pc->name);
            snprintf(res->model, sizeof res->model, "%s", model);
            res->cost_usd = cost;
            res->latency_ms = latency;
            res->tokens_in = resp.tokens_in;
            res->tokens_out = resp.tokens_out;
            model_response_done(&resp);
            return 0;
        }
        model_response_done(&resp);
    }
    res->status = parked ? MODEL_CALL_PARKED : MODEL_CALL_FAILED;
    Buf b;
    buf_init(&b, 0);
    size_t i;
    json_t *a;
    json_array_foreach(res->attempts, i, a)
        buf_printf(&b, "%s%s: %s (%s)", i ? "; " : "",
                   json_string_value(json_object_get(a, "provider")),
                   json_string_value(json_object_get(a, "outcome")),
                   json_string_value(json_object_get(a, "error")));
    snprintf(res->error, sizeof res->error, "%s%s",
             parked ? "parked: a budget would be exceeded: " : "no candidate answered: ",
             b.len ? buf_cstr(&b) : "no candidates");
    buf_done(&b);
    return 0;
}
