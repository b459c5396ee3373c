#!/usr/bin/env bash
# Approvals, effects and the mode over HTTP (bureau serve, curl on loopback):
# GET /v1/inbox, POST /v1/approvals/{id}/decision (approve, edit, reject;
# bad input named; a GET never decides), GET /v1/effects, POST
# /v1/effects/{id}/cancel, GET /v1/tasks/{id}/trace, GET|POST /v1/mode.
# The pending approvals are made with `bureau run --until-idle` before the
# server starts, so nothing here waits on the server's runner.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
bureau --data "$D" init >/dev/null 2>&1
TOKEN=$(bureau --data "$D" token create --name effects-api 2>/dev/null)
TOKEN_ID=$(sqlite3 "$D/bureau.db" "SELECT id FROM api_tokens WHERE name = 'effects-api'")
AUTH=(-H "Authorization: Bearer $TOKEN")
JSON=(-H 'Content-Type: application/json')
mkdir -p "$D/workflows"
cat >"$D/workflows/reply.yaml" <<'YAML'
name: reply
on: {event: lead.created}
steps:
  - id: send
    do: email.send
    with:
      to: "{{ event.data.email }}"
      subject: "Hello {{ event.data.name }}"
      text: "Thanks for writing."
    approval:
      policy: always
      confidence: 0.42
      confidence_source: "test"
      sources: [{seq: 1, snippet: "the lead"}]
YAML
q() { sqlite3 "$D/bureau.db" "$1"; }
jlen() { sqlite3 :memory: "SELECT json_array_length('${1//\'/\'\'}', '$2')"; }
for who in ann bob cid dee; do
  printf '{"type":"lead.created","source":"site","data":{"email":"%s@example.com","name":"%s"}}' \
    "$who" "$who" | bureau --data "$D" ingest >/dev/null 2>&1
done
check "four tasks reach their approval" bureau --data "$D" run --until-idle --timeout 60
appr() { q "SELECT a.id FROM approvals a JOIN tasks t ON t.id = a.task_id JOIN events e ON e.seq = t.trigger_seq WHERE json_extract(e.data, '$.name') = '$1'"; }
A_ANN=$(appr ann) A_BOB=$(appr bob) A_CID=$(appr cid) A_DEE=$(appr dee)

serve_start "$D" --listen 127.0.0.1:0 || not_ok "serve starts" "$SRV_LINE"

# ---- the mode ----
http GET /v1/mode "${AUTH[@]}"
expect_eq "GET /v1/mode: sandbox on a new install" "$CODE $(jget "$BODY" '$.mode')" "200 sandbox"
http GET /v1/mode
expect_eq "GET /v1/mode without a token: 401" "$CODE" 401
http POST /v1/mode "${AUTH[@]}" "${JSON[@]}" -d '{"mode":"live"}'
expect_eq "POST /v1/mode with a bad mode: 400 naming it" \
  "$CODE $(jget "$BODY" '$.detail' | grep -c '^mode:')" "400 1"

# ---- the inbox ----
http GET /v1/inbox "${AUTH[@]}"
expect_eq "GET /v1/inbox: the four approvals" "$CODE $(jlen "$BODY" '$.items')" "200 4"
# the workers ask in any order: take ann's item by its id
printf '%s' "$BODY" >"$TMP/inbox.json"
ann_item=$(sqlite3 :memory: "SELECT value FROM json_each(readfile('$TMP/inbox.json'), '\$.items') WHERE value ->> '\$.id' = '$A_ANN'")
expect_eq "an item has the preview, sources and confidence" \
  "$(jget "$ann_item" '$.kind') $(jget "$ann_item" '$.preview.subject') $(jget "$ann_item" '$.sources[0].snippet') $(jget "$ann_item" '$.confidence')" \
  "approval Hello ann the lead 0.42"
http GET /v1/inbox
expect_eq "GET /v1/inbox without a token: 401" "$CODE" 401

# ---- decisions ----
http GET "/v1/approvals/$A_ANN/decision" "${AUTH[@]}"
expect_eq "GET on a decision (a link preview): 405, nothing decided" \
  "$CODE $(q "SELECT status FROM approvals WHERE id = '$A_ANN'")" "405 pending"
http POST "/v1/approvals/$A_ANN/decision" "${JSON[@]}" -d '{"decision":"approve"}'
expect_eq "a decision without a token: 401, nothing decided" \
  "$CODE $(q "SELECT status FROM approvals WHERE id = '$A_ANN'")" "401 pending"
http POST "/v1/approvals/$A_ANN/decision" "${AUTH[@]}" "${JSON[@]}" -d '{"decision":"maybe"}'
expect_eq "an unknown decision: 400 naming the field" \
  "$CODE $(jget "$BODY" '$.detail' | grep -c '^decision:')" "400 1"
http POST "/v1/approvals/$A_ANN/decision" "${AUTH[@]}" "${JSON[@]}" -d '{"decision":"approve","extra":1}'
expect_eq "an unknown field: 400 naming it" "$CODE $(jget "$BODY" '$.detail' | grep -c '^extra:')" "400 1"
http POST "/v1/approvals/$A_ANN/decision" "${AUTH[@]}" "${JSON[@]}" -d 'not json'
expect_eq "a body that is not JSON: 400" "$CODE" 400
http POST "/v1/approvals/$A_ANN/decision" "${AUTH[@]}" "${JSON[@]}" -d '{"decision":"reject"}'
expect_eq "a rejection without a reason: 400 naming reason" \
  "$CODE $(jget "$BODY" '$.detail' | grep -c '^reason:')" "400 1"
http POST "/v1/approvals/$A_ANN/decision" "${AUTH[@]}" "${JSON[@]}" \
  -d '{"decision":"edit","payload":{"to":"not an address","subject":"x","text":"y"}}'
expect_eq "an edit with a bad address: 400 naming payload.to" \
  "$CODE $(jget "$BODY" '$.detail' | grep -c '^payload.to')" "400 1"
http POST /v1/approvals/NOSUCH/decision "${AUTH[@]}" "${JSON[@]}" -d '{"decision":"approve"}'
expect_eq "an unknown approval: 404" "$CODE" 404
http POST "/v1/approvals/$A_ANN/explode" "${AUTH[@]}" "${JSON[@]}" -d '{}'
expect_eq "an unknown action on an approval: 404" "$CODE" 404
expect_eq "none of those decided anything" "$(q "SELECT count(*) FROM approvals WHERE status != 'pending'")" 0

http POST "/v1/approvals/$A_ANN/decision" "${AUTH[@]}" "${JSON[@]}" -d '{"decision":"approve"}'
expect_eq "approve: 200 with the decision" "$CODE $(jget "$BODY" '$.decision')" "200 approve"
http POST "/v1/approvals/$A_ANN/decision" "${AUTH[@]}" "${JSON[@]}" -d '{"decision":"approve"}'
expect_eq "deciding twice: 409" "$CODE" 409
expect_eq "the decision names the token (its id), never the token" \
  "$(q "SELECT decided_by FROM approvals WHERE id = '$A_ANN'")" "token:$TOKEN_ID"
http POST "/v1/approvals/$A_BOB/decision" "${AUTH[@]}" "${JSON[@]}" \
  -d '{"decision":"edit","payload":{"to":"bob@example.com","subject":"Hi Bob, edited","text":"Better words."}}'
expect_eq "edit: 200" "$CODE $(jget "$BODY" '$.decision')" "200 edit"
expect_eq "the edit's diff is kept" \
  "$(q "SELECT json_extract(diff, '$.subject.from') || ' -> ' || json_extract(diff, '$.subject.to') FROM approvals WHERE id = '$A_BOB'")" \
  "Hello bob -> Hi Bob, edited"
http POST "/v1/approvals/$A_CID/decision" "${AUTH[@]}" "${JSON[@]}" -d '{"decision":"reject","reason":"not a fit"}'
expect_eq "reject: 200" "$CODE $(jget "$BODY" '$.decision')" "200 reject"
serve_stop
expect_eq "serve exits 0" "$SRV_RC" 0

check "the decided tasks go on" bureau --data "$D" run --until-idle --timeout 60
task_of() { q "SELECT task_id FROM approvals WHERE id = '$1'"; }
T_ANN=$(task_of "$A_ANN") T_BOB=$(task_of "$A_BOB") T_CID=$(task_of "$A_CID") T_DEE=$(task_of "$A_DEE")
expect_eq "approved and edited: succeeded; rejected: canceled; undecided: running" \
  "$(q "SELECT group_concat(status, ' ') FROM (SELECT status FROM tasks WHERE id IN ('$T_ANN', '$T_BOB', '$T_CID', '$T_DEE') ORDER BY created_seq)")" \
  "succeeded succeeded canceled running"

serve_start "$D" --listen 127.0.0.1:0 || not_ok "serve starts again" "$SRV_LINE"
http GET "/v1/effects?status=captured" "${AUTH[@]}"
expect_eq "GET /v1/effects?status=captured: the two mails, captured in sandbox" \
  "$CODE $(jlen "$BODY" '$.effects')" "200 2"
http GET "/v1/effects?task=$T_BOB" "${AUTH[@]}"
expect_eq "the edited mail is what was captured" "$(jget "$BODY" '$.effects[0].payload.subject')" "Hi Bob, edited"
http GET "/v1/effects?status=nonsense" "${AUTH[@]}"
expect_eq "an unknown status: 400" "$CODE" 400
E_ANN=$(q "SELECT id FROM effects WHERE task_id = '$T_ANN'")
http POST "/v1/effects/$E_ANN/cancel" "${AUTH[@]}"
expect_eq "canceling a captured effect: 409" "$CODE" 409
http GET "/v1/effects/$E_ANN/cancel" "${AUTH[@]}"
expect_eq "an effect action by GET: 405" "$CODE" 405
http GET "/v1/tasks/$T_BOB/trace" "${AUTH[@]}"
expect_eq "GET /v1/tasks/ID/trace: the trigger, the edit with its diff, the captured effect" \
  "$CODE $(jget "$BODY" '$.trigger.type') $(jget "$BODY" '$.approvals[0].status') $(jget "$BODY" '$.approvals[0].diff.subject.to') $(jget "$BODY" '$.effects[0].status')" \
  "200 lead.created edited Hi Bob, edited captured"
expect_eq "the trace lists the task's events in order" \
  "$(printf '%s' "$BODY" >"$TMP/trace.json"; sqlite3 :memory: "SELECT group_concat(value ->> '$.type', ' ') FROM json_each(readfile('$TMP/trace.json'), '$.events')")" \
  "task.created approval.requested step.waiting approval.decided effect.requested step.waiting effect.captured step.completed"
http GET /metrics
expect_contains "/metrics: effects by state" "$BODY" 'bureau_effects{status="captured"} 2'
expect_contains "/metrics: approvals waiting" "$BODY" 'bureau_approvals_pending 1'
expect_contains "/metrics: the mode" "$BODY" 'bureau_mode{mode="sandbox"} 1'
http GET /v1/tasks/NOSUCH/trace "${AUTH[@]}"
expect_eq "the trace of an unknown task: 404" "$CODE" 404
http POST /v1/mode "${AUTH[@]}" "${JSON[@]}" -d '{"mode":"production"}'
expect_eq "POST /v1/mode production: recorded" "$CODE $(jget "$BODY" '$.changed')" "200 1"
expect_eq "operator.mode.changed names the token" \
  "$(q "SELECT json_extract(data, '$.by') FROM events WHERE type = 'operator.mode.changed'")" "token:$TOKEN_ID"
serve_stop
expect_eq "serve exits 0 again" "$SRV_RC" 0
expect_eq "the token never reached the server's log" "$(cat "$TMP"/serve.*.log | grep -c -F "$TOKEN")" 0

check "replay --check passes" bureau --data "$D" replay --check
check "the chain verifies" bureau --data "$D" audit verify
sanitizer_check "no sanitizer reports"
