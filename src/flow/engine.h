/* The workflow engine: the planner, which turns events into tasks, and the
 * runner, which drives tasks' steps through a pool of workers. Both run in
 * one process at a time (each holds a lease in the database); every
 * transition is an event, and the "tasks" projection is the state machine
 * (docs/internals/flow_engine.md). */
#ifndef BUREAU_FLOW_ENGINE_H
#define BUREAU_FLOW_ENGINE_H

#include <jansson.h>
#include <stdbool.h>

#include "core/config.h"
#include "ledger/ledger.h"
#include "model/router.h"

/* Registers the "tasks" projection (call before ledger_open). */
void flow_projections_register(void);

typedef struct FlowEngine FlowEngine;

/* Starts the planner and the runner on l for data_dir (workflows in
 * DATA/workflows, scripts in DATA/agents). cfg is copied. */
int flow_engine_start(Ledger *l, const char *data_dir, const Config *cfg, FlowEngine **ret,
                      Err *err);
/* Stops both (in-flight steps finish and are recorded first). NULL is fine. */
void flow_engine_stop(FlowEngine *e);
/* Blocks until the engine is idle: the planner has seen every event and no
 * step is ready, running or due. Waits and timers (retries, wait steps,
 * schedules) due more than horizon_ms from now do not count; with
 * horizon_ms 0 only those due already do. ERR_TIMEOUT after timeout_ms
 * (< 0: no limit). */
int flow_engine_wait_idle(FlowEngine *e, int timeout_ms, int64_t horizon_ms, Err *err);
/* Makes flow_engine_wait_idle() return ERR_CLOSED at once (a signal came);
 * safe from any thread. */
void flow_engine_interrupt(FlowEngine *e);

/* Operator actions. action is "retry", "skip" (a task in the inbox) or
 * "cancel" (any task not finished). ERR_NOTFOUND for an unknown task,
 * ERR_EXISTS when the action does not apply to the task's state (the
 * message says why). The action is recorded as a task.action event. */
int flow_task_action(Ledger *l, Store *rd, const char *task_id, const char *action, Err *err);

/* Records workflow.enabled / workflow.disabled for a workflow of the
 * catalog of data_dir (ERR_NOTFOUND otherwise). */
int flow_workflow_set_enabled(Ledger *l, const char *data_dir, const char *name, bool on,
                              Err *err);
/* Whether a workflow is enabled: the operator's last choice, else the file's
 * `enabled` for a file in DATA/workflows, else false for a built-in. */
int flow_workflow_enabled(Store *rd, const char *name, bool file_enabled, bool builtin,
                          bool *ret, Err *err);

/* Reading, for the CLI and the API. Tasks newest first; status and
 * workflow may be NULL. Each task: id, workflow, version, status,
 * trigger_seq, depth, concurrency_key, created_at, updated_at,
 * finished_at, error, input. */
int flow_tasks_list(Store *rd, const char *status, const char *workflow, int64_t limit,
                    json_t **ret, Err *err);
/* One task with "steps": id, kind, status, attempts, needs, output, error,
 * started_at, finished_at, wake_at, wait. ERR_NOTFOUND when unknown. */
int flow_task_get(Store *rd, const char *id, json_t **ret, Err *err);
/* Counts for the dashboard: {tasks: {status: n}, steps: {status: n} (of
 * unfinished tasks), workflows: {"NAME:status": n} (unfinished and failed),
 * last_day: {event type: n} (step/task/effect outcomes and model calls in
 * the 24 hours before now_ms), since}. */
int flow_status(Store *rd, int64_t now_ms, json_t **ret, Err *err);
/* The engine's model router (borrowed; it lives until flow_engine_stop):
 * for the HTTP API's goals, so that breakers and budgets are shared. */
ModelRouter *flow_engine_router(FlowEngine *e);
/* The model router's view of its providers (model_router_health), or an
 * empty list when the engine runs none. Returns a new reference. */
json_t *flow_engine_models_health(void *engine);

#endif
