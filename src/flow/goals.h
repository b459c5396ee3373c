/* Goals: the operator states an outcome in words ("send renewal reminders
 * to customers whose retainer ends soon"); the planner turns it into a task
 * graph through the model router's `plan` route, and the proposal waits in
 * the operator's inbox as an approval. Nothing runs before it is approved
 * (docs/goals.md).
 *
 * The local tier matches the goal to a workflow of the catalog by
 * similarity; a remote model on the route may instead compose a new graph
 * of the known step kinds, which the workflow validator checks like a file
 * (an invalid graph is refused with the validator's problems). Every step
 * is an event: goal.submitted, goal.proposed or goal.refused with
 * approval.requested, then approval.decided and goal.approved, from which
 * the planner starts the task (task.created, its definition in the ledger
 * for a composed graph). The "goals" projection keeps each goal's state. */
#ifndef BUREAU_FLOW_GOALS_H
#define BUREAU_FLOW_GOALS_H

#include <jansson.h>

#include "core/err.h"
#include "ledger/ledger.h"
#include "model/router.h"

#define FLOW_GOAL_TEXT_MAX 2000   /* bytes of a goal's text */
#define FLOW_GOAL_INPUT_MAX 32    /* keys of a matched workflow's input */

/* Records the goal (goal.submitted, by: "cli", "token:ID"), asks the plan
 * route (router, data_dir's catalog) and records the outcome: a proposal
 * (goal.proposed and its approval.requested, appended together) or a
 * refusal (goal.refused: no workflow matches, the model's graph is
 * invalid, the model failed). Returns 0 with *ret = the goal as
 * flow_goal_get() shows it (status "proposed" or "refused", error says
 * why); <0 when nothing was recorded: ERR_INVAL for a bad text (empty,
 * longer than FLOW_GOAL_TEXT_MAX, not UTF-8), or a store/ledger error. */
int flow_goal_submit(Ledger *l, Store *rd, ModelRouter *router, const char *data_dir,
                     const char *text, const char *by, json_t **ret, Err *err);

/* Goals newest first: {id, text, status, kind, workflow, version, score,
 * provider, model, cost_usd, approval, task, task_status, error, by,
 * decided_by, submitted_at, updated_at}. */
int flow_goals_list(Store *rd, int64_t limit, json_t **ret, Err *err);
/* One goal (as in the list) with its proposal (the approval's preview)
 * and, once decided, the decided payload. ERR_NOTFOUND when unknown. */
int flow_goal_get(Store *rd, const char *id, json_t **ret, Err *err);

#endif
