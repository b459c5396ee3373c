/* Private to the flow module: shared by the projection, the engine and the
 * step kinds. */
#ifndef BUREAU_FLOW_ENGINE_INT_H
#define BUREAU_FLOW_ENGINE_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"
#include "flow/engine.h"
#include "flow/flow_lua.h"
#include "flow/workflow.h"
#include "ledger/ledger.h"
#include "ledger/projection.h"
#include "model/router.h"

static inline bool flow__status_terminal(const char *s)
{
    return !strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "skipped") ||
           !strcmp(s, "canceled");
}

/* What a step kind's handler decided. */
typedef enum FlowOutcome { FLOW_DONE, FLOW_WAIT, FLOW_FAIL, FLOW_SKIP } FlowOutcome;

typedef struct FlowStepRun {
    /* in */
    const char *data_dir;
    const char *task_id;
    const FlowWorkflow *wf;
    const FlowStepDef *step;
    int attempt;
    int depth_max;           /* flow.depth_max: task.start stops there too */
    char key[CORE_ULID_LEN + FLOW_NAME_MAX + 2]; /* "TASK:STEP": for effects' idempotency */
    int depth;
    const char *subject;     /* the trigger event's subject, or NULL */
    json_t *inputs;          /* rendered `with` (borrowed) */
    json_t *env;             /* event, steps, task (borrowed) */
    FlowLua *lua;
    Store *rd;               /* the worker's read connection */
    const FlowCatalog *catalog;
    const EventLimits *limits;
    const Config *cfg;
    ModelRouter *router;     /* model.* steps */
    int64_t now_ms;
    bool resume;             /* the approval or effect it waited for has an outcome */
    /* out */
    FlowOutcome outcome;
    json_t *output;          /* FLOW_DONE: new reference, may be NULL */
    Event **emit;            /* events to append before step.completed */
    size_t n_emit;
    char error[512];         /* FLOW_FAIL */
    bool retryable;
    const char *wait_kind;   /* FLOW_WAIT: "duration" or "event" */
    int64_t wait_until_ms;   /* 0: none */
    char *wait_event;        /* owned */
    char *wait_where;        /* owned */
    bool force_inbox;        /* FLOW_FAIL: to the inbox whatever on_error says (but continue) */
    const char *skip;        /* FLOW_SKIP: "rejected" or "operator" */
    char skip_goto[FLOW_NAME_MAX + 1]; /* FLOW_SKIP: the step a rejection goes to, or "" */
    const char *then_action; /* after the step's own event: task.action "cancel" or "compensate" */
    json_t *compensation;    /* effect steps: the rendered `compensate`, owned */
} FlowStepRun;

/* A handler's failure: sets outcome, retryable and error; returns 0. */
int flow__step_fail(FlowStepRun *r, bool retryable, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Adds ev (ownership passes) to the events the step appends. */
void flow__step_emit(FlowStepRun *r, Event *ev);

/* The handler of approval, email.send and webhook.post (flow/gates.c). */
int flow__step_gate(FlowStepRun *run);
/* The handler of memory.resolve and memory.record_fact (flow/steps_memory.c). */
int flow__step_memory(FlowStepRun *run);
/* The handler of the model.* kinds (flow/steps_model.c). */
int flow__step_model(FlowStepRun *run);
/* Registers the "effects" projection (flow/proj_effects.c). */
void flow__effects_projection_register(void);
/* A deterministic id for an approval or an effect: prefix + 25 hex digits
 * of SHA-256(key). */
void flow__gate_id(char prefix, const char *key, char out[CORE_ULID_LEN + 1]);

typedef int (*FlowStepHandler)(FlowStepRun *run);
FlowStepHandler flow__step_handler(const char *kind);

/* Frees what a handler left in run (output, emitted events, wait strings). */
void flow__step_run_done(FlowStepRun *run);

/* A task.created event for wf. key is the idempotency key; input and
 * subject may be NULL. The definition goes in only when with_definition
 * (its version is not stored yet). */
int flow__task_event(const FlowWorkflow *wf, const char *task_id, int64_t trigger_seq, int depth,
                     const char *concurrency_key, const json_t *input, const char *subject,
                     const char *key, bool with_definition, const EventLimits *lim, Event **ret,
                     Err *err);
/* Whether the definition of version is stored (rd: any read connection). */
bool flow__version_stored(Store *rd, const char *version);

/* A text column as a JSON string, or null; a JSON text column parsed, or
 * null. */
json_t *flow__col_text(StoreStmt *st, int col);
json_t *flow__col_json(StoreStmt *st, int col);

/* Goals (flow/goals.c). The name of a goal's composed workflow:
 * "goal-" + the goal's id in lower case. */
void flow__goal_workflow_name(const char *goal, char out[FLOW_NAME_MAX + 1]);
/* A composed graph ({description?, steps}) as a workflow named for the goal,
 * triggered by goal.approved, through the workflow validator; with data_dir
 * or cat also its references. ERR_INVAL with every problem, one a line,
 * "plan: steps[N].KEY: message". */
int flow__goal_compose(const char *goal, const char *text, const json_t *graph,
                       const char *data_dir, const FlowCatalog *cat, FlowWorkflow **ret,
                       Err *err);
/* What a composed graph may not hold, whatever the validator accepts: an
 * effect or approval step whose policy is not always, a `compensate` (it
 * is sent after the approval without asking again), task.start and emit
 * (they start workflows whose gates the operator did not see). ERR_INVAL
 * with every problem, one a line, "plan: steps[N].KEY: message". Run when
 * the graph is proposed, approved and planned. */
int flow__goal_graph_check(const FlowWorkflow *w, Err *err);
/* The goal.approved event of an approved (payload: the preview) or edited
 * proposal; ERR_INVAL naming the payload's field when it does not hold. */
int flow__goal_approved_event(const char *goal, const char *approval, const json_t *payload,
                              const char *by, const EventLimits *lim, Event **ret, Err *err);
/* Registers the "goals" projection. */
void flow__goals_projection_register(void);

/* The source of events a workflow appends: "workflow:NAME". */
void flow__source(const char *workflow, char out[FLOW_NAME_MAX + 16]);

#endif
