/* Human in the loop and side effects: the approval inbox, the effect
 * outbox, the install's mode, compensation and traces (docs/effects.md,
 * docs/internals/effects.md).
 *
 * Everything here is read from the "effects" and "tasks" projections and
 * changed only by appending events: approval.decided, effect.resolved,
 * effect.canceled, operator.mode.changed, task.action. */
#ifndef BUREAU_FLOW_EFFECTS_H
#define BUREAU_FLOW_EFFECTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "ledger/ledger.h"

#define FLOW_MODE_MAX 16

/* The install's mode: "sandbox" (a new install: effects are captured, never
 * sent) or "production". */
int flow_mode_get(Store *rd, char out[FLOW_MODE_MAX], Err *err);
/* Records operator.mode.changed (by names who: "cli", "token:NAME").
 * *changed is false when the mode already was that (nothing is recorded). */
int flow_mode_set(Ledger *l, Store *rd, const char *mode, const char *by, bool *changed,
                  Err *err);

/* The inbox: pending approvals (of live tasks, and correction drafts of
 * compensations), then tasks waiting in the inbox after a failure, then
 * effects that failed for good or whose delivery is uncertain. Each item:
 * id, kind (approval | failure), task, step, workflow, preview, sources,
 * confidence, confidence_source, model, cost, deadline, escalated,
 * created_at, and for failures error and effect. */
int flow_inbox_list(Store *rd, json_t **ret, Err *err);
/* The same list written as a JSON array onto out (what the API answers). */
int flow_inbox_write(Store *rd, Buf *out, Err *err);

/* Decides approval id: decision "approve", "edit" (payload: the whole edited
 * payload; the diff against the preview is kept) or "reject" (reason
 * required). ERR_NOTFOUND for an unknown approval, ERR_EXISTS when it was
 * decided already or its task has ended, ERR_INVAL for a bad payload (named
 * by field). *ret (may be NULL) gets {approval, decision, task, step, seq}. */
int flow_approval_decide(Ledger *l, Store *rd, const char *id, const char *decision,
                         const json_t *payload, const char *reason, const char *by,
                         json_t **ret, Err *err);

/* Effects newest first; status and task may be NULL. Each: id, kind,
 * status, task, step, payload, purpose, mode, delivery_key, deliveries,
 * code, detail, message_id, compensates, hold_until, requested_at,
 * updated_at. */
int flow_effects_list(Store *rd, const char *status, const char *task, int64_t limit,
                      json_t **ret, Err *err);
/* The operator on one effect: "cancel" (requested, held, failed or
 * uncertain, and not being delivered), "sent" (an uncertain or failed
 * effect was delivered after all), "resend" (deliver it again).
 * ERR_NOTFOUND / ERR_EXISTS (does not apply to its status, message says). */
int flow_effect_action(Ledger *l, Store *rd, const char *id, const char *action,
                       const char *reason, const char *by, Err *err);

/* A mail with Message-ID message_id (angle brackets optional) was seen in
 * the operator's Sent folder: every uncertain email.send effect that would
 * have carried that Message-ID (mail_message_id() of its delivery key and
 * from, the smtp.from address) is settled as delivered, as `effects resolve
 * ID --sent` does, by `by`. *ret_settled (may be NULL) counts them. */
int flow_effect_sent_seen(Ledger *l, Store *rd, const char *from, const char *message_id,
                          const char *by, int *ret_settled, Err *err);

/* For /metrics: how many effects are in each state (FLOW_EFFECT_STATUSES,
 * in the order of flow_effect_statuses), and how many approvals wait. */
#define FLOW_EFFECT_STATUSES 8
extern const char *const flow_effect_statuses[FLOW_EFFECT_STATUSES + 1];
int flow_effects_summary(Store *rd, int64_t counts[FLOW_EFFECT_STATUSES],
                         int64_t *pending_approvals, Err *err);

/* The lineage of a task, from the ledger: {task, trigger, steps: [{id, kind,
 * status, events}], approvals, effects, events: [every event of the task in
 * order, each {seq, type, received_at, data}]}. ERR_NOTFOUND when unknown. */
int flow_task_trace(Store *rd, const char *task, json_t **ret, Err *err);

#endif
