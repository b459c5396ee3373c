/* The model router: every model call goes through here (docs/models.md).
 *
 * A call names a route (a task class: classify, extract, draft, summarize,
 * plan, embed, complete, or any route of models.routes). The router tries
 * the route's candidates in order, passing over a provider whose circuit
 * breaker is open, that is rate limited, slower than the route's SLA
 * (EWMA of its latencies), or whose worst case would exceed the route's
 * max_cost_usd or a budget; it answers from the cache when it can; and it
 * records every attempt as a model.called event, so spend is derived from
 * the ledger. Thread-safe. */
#ifndef BUREAU_MODEL_ROUTER_H
#define BUREAU_MODEL_ROUTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/crypto.h"
#include "ledger/ledger.h"
#include "model/provider.h"

typedef struct ModelRouter ModelRouter;

/* A provider's instance for the local tier (model/local.c): made by the
 * router for every provider of kind local, and for the implicit "local". */
int model_local_new(const ModelProviderConfig *cfg, const Config *all, Ledger *l,
                    ModelProvider **ret, Err *err);

typedef struct ModelCall {
    const char *route;      /* a route name (task class) */
    const char *workflow;   /* for budgets and spend; NULL when none */
    const char *customer;   /* the subject (contact:ID): per-customer budgets; may be NULL */
    const char *task_id;    /* recorded in model.called; may be NULL */
    const char *step_id;
    const char *template_name; /* model.draft: the template (and its version) that made the prompt */
    ModelRequest req;       /* req.task defaults to the route's name */
    bool force;             /* run now even when the route defers to the batch window */
    const char *cache_scope; /* part of the cache key when set: answers are reused only
                              * within it (an embedding only from the same model) */
    /* A shadow run (model/quality.c): only this provider is tried, with no
     * cache and no fallback; a budget that would be exceeded parks the call;
     * the answer is recorded in model.called (role shadow). NULL: a call. */
    const char *shadow_provider;
} ModelCall;

typedef enum ModelCallStatus {
    MODEL_CALL_OK,
    MODEL_CALL_DEFERRED, /* the route defers to the batch window: call again then */
    MODEL_CALL_PARKED,   /* a budget would be exceeded and the route parks (on_budget: park) */
    MODEL_CALL_FAILED,   /* every candidate failed or was passed over */
} ModelCallStatus;

typedef struct ModelResult {
    ModelCallStatus status;
    json_t *output;          /* owned; MODEL_CALL_OK */
    char provider[65];
    char model[128];
    double cost_usd;         /* what the answer cost (0 for a cache hit) */
    double saved_usd;        /* a cache hit: what the call it reused cost */
    int64_t latency_ms;
    int64_t tokens_in, tokens_out;
    bool cached;
    int64_t deferred_until_ms; /* MODEL_CALL_DEFERRED: the next window's start */
    json_t *attempts;        /* owned: [{provider, outcome, latency_ms, error}] */
    char error[512];
} ModelResult;

void model_result_done(ModelResult *r);

/* l: where model.called goes (NULL: nothing is recorded, for a dry run);
 * cfg is copied. */
int model_router_new(Ledger *l, const Config *cfg, ModelRouter **ret, Err *err);
void model_router_free(ModelRouter *r);

/* One call. rd: a read connection (the cache, spend so far). Returns 0 with
 * res->status saying how it went (<0 only when nothing could be tried: a
 * bad request or a store error). */
int model_router_call(ModelRouter *r, Store *rd, const ModelCall *call, ModelResult *res,
                      Err *err);

/* The cache key of a call: SHA-256 (hex) of its canonical request. */
void model_router_request_key(const ModelRouter *r, const ModelCall *call,
                              char out[CORE_SHA256_HEX + 1]);

/* The providers as the router sees them: [{name, kind, model, breaker
 * (closed|open|half-open), failures, latency_ewma_ms, calls, rate_limited_until}]. */
json_t *model_router_health(ModelRouter *r);

/* The start of the next batch window after now (ms), and whether now is
 * inside one. */
int64_t model_batch_next(const Config *cfg, int64_t now_ms, bool *inside);

/* Spend from the ledger (the "models" projection): rows grouped by `by`
 * (route, provider, workflow, customer or day) since the UTC day `since`
 * (YYYY-MM-DD, NULL: all), each {key, calls, failures, cache_hits,
 * tokens_in, tokens_out, cost_usd, saved_usd, latency_ms_mean}. */
int model_spend(Store *rd, const char *by, const char *since, json_t **ret, Err *err);

/* The text a person reads in an event's data (subject, text, form fields;
 * else the data as JSON), at most 64 KiB of whole UTF-8 characters: what
 * the local classifier learns from. Caller frees. */
#define MODEL_LABEL_TEXT_MAX (64 * 1024)
char *model_event_text(const json_t *data, const char *raw, size_t raw_len);

/* Registers the "models" projection (call before ledger_open). */
void model_projections_register(void);

#endif
