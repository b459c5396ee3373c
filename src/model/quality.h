/* Model quality from the operator's own decisions (docs/models.md,
 * "Quality"): the "quality" projection joins each approval to the
 * model.draft call that produced what it showed, and records what the
 * operator did with it (approved unchanged, edited — with a normalised edit
 * distance — or rejected); stats over it with Wilson intervals; the canary
 * rule that promotes a route's challenger or rolls it back; shadow runs.
 * Everything is derived from the ledger: the router's effective route order
 * comes from the model.canary.* events, bureau.yaml is never rewritten. */
#ifndef BUREAU_MODEL_QUALITY_H
#define BUREAU_MODEL_QUALITY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "ledger/ledger.h"
#include "model/router.h"

#define MODEL_QUALITY_TEXT_MAX (16 * 1024) /* bytes of a body kept per outcome */
#define MODEL_EDIT_CELLS (1024 * 1024) /* DP cells one distance computes at most */
#define MODEL_EDIT_WINDOW 1024         /* code points of each long middle compared */

/* The Levenshtein distance between two UTF-8 texts (code points; a byte
 * that is not UTF-8 counts as one), divided by the longer text's length: 0
 * for equal texts (two empty ones too), 1 for texts with nothing in common.
 * After the common prefix and suffix are set aside, the differing middles
 * are compared exactly when the product of their lengths is at most
 * MODEL_EDIT_CELLS; else the shorter whole if it has at most
 * MODEL_EDIT_WINDOW code points and the longer up to MODEL_EDIT_CELLS / that,
 * or MODEL_EDIT_WINDOW of each; beyond, the rest counts as wholly different
 * (an upper bound). One distance costs at most MODEL_EDIT_CELLS cells (a few
 * ms): it runs in the writer's transaction. */
double model_edit_distance(const char *a, size_t alen, const char *b, size_t blen);

/* The Wilson score interval (95%) of k successes in n trials; [0, 1] when
 * n is 0. */
void model_wilson(int64_t k, int64_t n, double *ret_low, double *ret_high);

/* The text a person reads in a payload: the payload itself when it is a
 * string, else its first string field of text, body, message, content,
 * html, else the payload as canonical JSON; at most MODEL_QUALITY_TEXT_MAX
 * bytes of whole UTF-8 characters. Caller frees. */
char *model_body_text(const json_t *payload);

/* Registers the "quality" projection (call before ledger_open). */
void model_quality_register(void);

typedef enum ModelCanaryState {
    MODEL_CANARY_NONE,        /* the route has no canary */
    MODEL_CANARY_ACTIVE,      /* it takes its share of the calls */
    MODEL_CANARY_PROMOTED,    /* it is the route's first candidate */
    MODEL_CANARY_ROLLED_BACK, /* it takes no more calls */
} ModelCanaryState;

const char *model_canary_state_name(ModelCanaryState s);

/* The state of route's configured canary from the ledger (the projection);
 * *ret_since (may be NULL): the seq of the route's last canary decision (0:
 * none), after which outcomes count for the current trial. When the state
 * cannot be read (no reader, a store error), logs it and returns NONE: the
 * route's configured order, so a rolled-back canary never takes calls
 * again by mistake. */
ModelCanaryState model_canary_state(Store *rd, const ModelRouteConfig *route,
                                    int64_t *ret_since);

/* Applies the canary rule of every route with an active canary: once
 * min_sample decided outcomes exist for the canary and for the incumbent
 * (since the route's last decision), appends model.canary.rolled_back when
 * the canary's edit or reject rate exceeds the incumbent's by more than
 * allowed or its mean cost per draft exceeds max_cost_usd, else
 * model.canary.promoted. *ret (may be NULL): the decisions appended, an
 * array. */
int model_canary_evaluate(Ledger *l, Store *rd, const Config *cfg, json_t **ret, Err *err);

/* The operator's decision on route's canary: promote or roll back now.
 * ERR_NOTFOUND: no such route or no canary; ERR_EXISTS: decided already. */
int model_canary_decide(Ledger *l, Store *rd, const Config *cfg, const char *route, bool promote,
                        const char *by, const char *reason, json_t **ret, Err *err);

/* Runs the shadow candidate of each route on the requests of drafts the
 * operator approved (or edited) that it has not answered yet, at most max
 * calls, each through the router's budgets: the first that a budget
 * refuses stops the pass (the rest wait for the next one). The answers are
 * recorded as model.called role shadow and never used. Holds the lease
 * "model.shadows"; waits until what it recorded is in the projection.
 * *ret (may be NULL): {ran, ok, failed, stopped (a reason or null)}. */
int model_shadow_run(ModelRouter *r, Ledger *l, Store *rd, const Config *cfg, int max,
                     json_t **ret, Err *err);

/* The quality table (docs/models.md): per route, per provider, model and
 * role (and, with by "template" or "workflow", per template version or
 * workflow), the outcomes with rates and Wilson intervals, edit distance,
 * cost and latency; the shadows; the canary; the marginal value between
 * candidates. route, since (a UTC day YYYY-MM-DD, on decided_at) and by may
 * be NULL. */
int model_quality_stats(Store *rd, const Config *cfg, const char *route, const char *since,
                        const char *by, json_t **ret, Err *err);

/* Starts a thread that runs shadow passes while the batch window is open
 * (woken by new events); NULL-safe stop. */
typedef struct ModelShadowRunner ModelShadowRunner;
int model_shadow_runner_start(Ledger *l, const Config *cfg, ModelRouter *r,
                              ModelShadowRunner **ret, Err *err);
void model_shadow_runner_stop(ModelShadowRunner *s);

#endif
