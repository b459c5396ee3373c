#!/usr/bin/env bash
# Goals end to end (docs/goals.md): `bureau goal` and POST /v1/goals plan
# through the plan route. The local tier matches phrasings to the built-in
# workflows by similarity (and refuses what matches nothing); a remote
# model (fake_llm, an OpenAI-compatible server on loopback) composes a new
# graph, which is validated, proposed, approved and run to completion; a
# broken graph is refused with the validator's problems and nothing runs;
# no task.created exists before the approval; a rejected goal starts
# nothing; an approved match starts its workflow with the goal as trigger
# data; goal.* events cannot be posted from outside; replay --check and
# audit verify pass on every data directory. No sleeps: the engine runs
# with `run --until-idle`, the server is polled with a bound.
. "$(dirname "$0")/lib.sh"

BUILD=${BUILD:-$(dirname "$BUREAU")}
FAKE=$BUILD/fake_llm
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
export NO_PROXY='*' no_proxy='*'
export LC_ALL=C

q() { sqlite3 "$1/bureau.db" "$2"; }
idle() { bureau --data "$1" run --until-idle --timeout 60 >/dev/null 2>"$TMP/idle.err"; }
DIRS=()

# ---- the local tier: phrasings to built-in workflows ---------------------------

L=$TMP/local
bureau --data "$L" init >/dev/null 2>&1
DIRS+=("$L")
while IFS='|' read -r want goal; do
  run bureau --data "$L" goal "$goal" --json
  got=$(jget "$OUT" '$.workflow')
  if [ "$RC" = 0 ] && [ "$got" = "$want" ] && [ "$(jget "$OUT" '$.status')" = proposed ]; then
    ok "local match: '$goal' -> $want"
  else
    not_ok "local match: '$goal' -> $want" "rc $RC, got '$got': $OUT $ERR"
  fi
done <<'CASES_END'
renewal-watch|send renewal reminders to customers whose retainer ends soon
renewal-watch|which retainers end this month
renewal-draft|draft a renewal note for Acme
support-reply|reply to support requests from customers
onboarding|welcome new paying customers
feedback-digest|give me a weekly summary of what customers say
lead-intake|answer the lead ann@example.com who asked for a proposal
lead-from-form|turn website form submissions into leads
email-triage|sort my incoming email
content-pipeline|publish an article from my idea
content-pipeline|write a blog post about our new pricing
CASES_END

run bureau --data "$L" goal "bake a chocolate cake" --json
expect_eq "no match: exit 1" "$RC" 1
expect_eq "no match: refused" "$(jget "$OUT" '$.status')" refused
expect_contains "no match: says so" "$ERR" "no workflow matches this goal"
for g in "what is the weather in Paris" "book a flight to Berlin"; do
  run bureau --data "$L" goal "$g" --json
  expect_eq "no match: '$g' refused" "$RC $(jget "$OUT" '$.status')" "1 refused"
done
run bureau --data "$L" goal "   "
expect_eq "empty goal: exit 1" "$RC" 1
expect_contains "empty goal: named" "$ERR" "text: empty"
run bureau --data "$L" goal $'caf\xe9 \xff'
expect_contains "a goal that is not UTF-8: refused, named" "$ERR" "text: not valid UTF-8"
run bureau --data "$L" goal "$(head -c 2500 /dev/zero | tr '\0' x)"
expect_contains "oversize goal: refused with the limit" "$ERR" "more than 2000"

expect_eq "a match whose trigger condition fails on the goal's data says so" \
  "$(q "$L" "SELECT json_extract(a.preview, '$.warning') IS NOT NULL FROM goals g JOIN approvals a ON a.id = g.approval_id WHERE g.text LIKE 'reply to support%'")" 1
expect_eq "a match whose condition holds (the goal gives the address) has no warning" \
  "$(q "$L" "SELECT json_extract(a.preview, '$.warning') IS NULL FROM goals g JOIN approvals a ON a.id = g.approval_id WHERE g.text LIKE 'answer the lead%'")" 1
expect_contains "a match with an effect that does not ask (content-pipeline's publish): the preview warns" \
  "$(q "$L" "SELECT json_extract(a.preview, '$.warning') FROM goals g JOIN approvals a ON a.id = g.approval_id WHERE g.text LIKE 'publish an article%'")" \
  "publish (webhook.post, policy never)"
expect_eq "a match shows its effect steps' policies" \
  "$(q "$L" "SELECT json_extract(a.preview, '$.approvals[0].step') || ' ' || json_extract(a.preview, '$.approvals[0].policy') FROM goals g JOIN approvals a ON a.id = g.approval_id WHERE g.text LIKE 'answer the lead%'")" \
  "reply always"
expect_eq "eleven proposals wait in the inbox" \
  "$(bureau --data "$L" inbox --json | grep -c '"effect_kind":"goal"')" 11
expect_eq "no task.created before an approval" \
  "$(q "$L" "SELECT count(*) FROM events WHERE type = 'task.created'")" 0
idle "$L"
expect_eq "no task after the engine ran either" \
  "$(q "$L" "SELECT count(*) FROM tasks")" 0
expect_eq "every plan call is a model.called on the plan route" \
  "$(q "$L" "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '$.route') = 'plan'")" 14

# goal -> approval id, by the text's prefix
goal_of() { q "$1" "SELECT id FROM goals WHERE text LIKE '$2%' ORDER BY submitted_seq DESC LIMIT 1"; }
approval_of() { q "$1" "SELECT approval_id FROM goals WHERE id = '$2'"; }

# reject: nothing runs
G=$(goal_of "$L" "draft a renewal note")
run bureau --data "$L" reject "$(approval_of "$L" "$G")"
expect_eq "reject without a reason: a usage error" "$RC" 2
run bureau --data "$L" reject "$(approval_of "$L" "$G")" --reason "not now"
expect_eq "reject: exit 0" "$RC" 0
idle "$L"
expect_eq "rejected goal: status" "$(q "$L" "SELECT status FROM goals WHERE id = '$G'")" rejected
expect_eq "rejected goal: no task, no goal.approved" \
  "$(q "$L" "SELECT count(*) FROM events WHERE type IN ('task.created', 'goal.approved')")" 0
run bureau --data "$L" approve "$(approval_of "$L" "$G")"
expect_eq "a rejected goal cannot be approved after" "$RC" 1

# a rejection and an approval racing: both read the approval pending, the
# rejection is appended first. Its approval.decided (with no approval id, so
# the inbox still reads pending: what the approving request saw) takes the
# key; the approval must answer an error and start nothing.
G=$(goal_of "$L" "welcome new paying customers")
A=$(approval_of "$L" "$G")
printf '{"type":"approval.decided","source":"race","idempotency_key":"approval.decided:%s","data":{"goal":"%s","decision":"reject","by":"racer","reason":"race"}}' "$A" "$G" |
  bureau --data "$L" ingest >/dev/null 2>&1
expect_eq "race: the goal is rejected" "$(q "$L" "SELECT status FROM goals WHERE id = '$G'")" rejected
run bureau --data "$L" approve "$A"
expect_eq "race: the losing approval is an error, not a success" "$RC" 1
expect_contains "race: says it was decided already" "$ERR" "decided already"
idle "$L"
expect_eq "race: no task for the rejected goal" \
  "$(q "$L" "SELECT count(*) FROM events WHERE type = 'task.created' AND json_extract(data, '$.trigger_seq') IN (SELECT seq FROM events WHERE type = 'goal.approved' AND json_extract(data, '$.goal') = '$G')")" 0
expect_eq "race: the goal stays rejected" "$(q "$L" "SELECT status FROM goals WHERE id = '$G'")" rejected

# approve a scheduled workflow: it runs now, not enabled, as the operator chose
G=$(goal_of "$L" "send renewal reminders")
run bureau --data "$L" approve "$(approval_of "$L" "$G")"
expect_eq "approve renewal-watch goal: exit 0" "$RC" 0
idle "$L"
expect_eq "approved goal: started" "$(q "$L" "SELECT status FROM goals WHERE id = '$G'")" started
T=$(q "$L" "SELECT task_id FROM goals WHERE id = '$G'")
expect_eq "its task: renewal-watch, succeeded" \
  "$(q "$L" "SELECT workflow || ' ' || status FROM tasks WHERE id = '$T'")" "renewal-watch succeeded"
expect_eq "its trigger is the goal.approved event" \
  "$(q "$L" "SELECT e.type || ' ' || json_extract(e.data, '$.goal') FROM tasks t JOIN events e ON e.seq = t.trigger_seq WHERE t.id = '$T'")" \
  "goal.approved $G"
expect_eq "renewal-watch stays disabled" \
  "$(bureau --data "$L" workflows list --json | grep '"renewal-watch"' | grep -c '"enabled":false')" 1

# approve a lead goal: the email in the goal becomes the trigger's data
G=$(goal_of "$L" "answer the lead ann@example.com")
run bureau --data "$L" approve "$(approval_of "$L" "$G")"
idle "$L"
T=$(q "$L" "SELECT task_id FROM goals WHERE id = '$G'")
expect_eq "lead goal: lead-intake task" "$(q "$L" "SELECT workflow FROM tasks WHERE id = '$T'")" lead-intake
expect_eq "lead goal: its reply waits for approval, to the address in the goal" \
  "$(q "$L" "SELECT json_extract(preview, '$.to') FROM approvals WHERE task_id = '$T' AND step_id = 'reply'")" \
  "ann@example.com"
run bureau --data "$L" goals --json
expect_eq "goals --json: one line per recorded goal (not the empty or oversize ones)" \
  "$(printf '%s\n' "$OUT" | grep -c '"id"')" 14
expect_contains "goals: the started goal shows its task's state" "$OUT" '"task_status":"running"'

# a workflow of the operator's on goal events starts nothing: not before
# the approval (goal.submitted, goal.proposed), nor beside the goal's task
W2=$TMP/ontrig
bureau --data "$W2" init >/dev/null 2>&1
mkdir -p "$W2/workflows"
DIRS+=("$W2")
for pat in goal.submitted 'goal.*'; do
  n=$(printf '%s' "$pat" | tr -c 'a-z\n' x)
  printf 'name: echo-%s\non:\n  event: "%s"\nsteps:\n  - id: e\n    do: emit\n    with: {type: echo.seen}\n' "$n" "$pat" >"$W2/workflows/echo-$n.yaml"
done
run bureau --data "$W2" goal "send renewal reminders to customers whose retainer ends soon" --json
expect_eq "goal events: proposed" "$(jget "$OUT" '$.status')" proposed
idle "$W2"
expect_eq "a workflow on goal.submitted / goal.*: no task before the approval" \
  "$(q "$W2" "SELECT count(*) FROM tasks")" 0
run bureau --data "$W2" approve "$(jget "$OUT" '$.approval')"
idle "$W2"
expect_eq "after the approval: only the goal's task" \
  "$(q "$W2" "SELECT group_concat(workflow) FROM tasks")" renewal-watch

# ---- a remote model composes graphs ----------------------------------------------

FSCRIPT=$TMP/fake.json
GOOD='{"description": "Summarise the goal and record a note.", "steps": [{"id": "sum", "do": "model.summarize", "with": {"text": "{{ event.data.text }}", "max_chars": 80}}, {"id": "note", "do": "lua", "needs": ["sum"], "with": {"script": "note", "args": {"summary": "{{ steps.sum.output.summary }}", "goal": "{{ event.data.goal }}"}}}]}'
# graphs that would get around the operator's approval of each effect
EMIT='{"steps": [{"id": "sum", "do": "model.summarize", "with": {"text": "{{ event.data.text }}"}}, {"id": "fake", "do": "emit", "with": {"type": "form.submitted", "data": {"email": "x@example.com"}}}]}'
START='{"steps": [{"id": "go", "do": "task.start", "with": {"workflow": "content-pipeline"}}]}'
COMP='{"steps": [{"id": "hook", "do": "webhook.post", "with": {"url": "https://example.com/a", "body": {}}, "compensate": {"do": "webhook.post", "with": {"url": "https://evil.example.com/b", "body": {}}}}]}'
BAD='{"description": "Broken.", "steps": [{"id": "a", "do": "send_mail", "with": {"to": "x@example.com"}}, {"id": "b", "do": "emit", "needs": ["c"], "with": {"type": "x.y"}}, {"id": "c", "do": "emit", "needs": ["b"], "with": {"type": "x.z"}}]}'
SNEAKY='{"steps": [{"id": "mail", "do": "email.send", "with": {"to": "all@example.com", "subject": "Hi", "text": "Buy now"}, "approval": {"policy": "never"}}]}'
jstr() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
cat >"$FSCRIPT" <<EOF
[
 {"model": "planner-ok", "content": "$(jstr "$GOOD")", "repeat": 10},
 {"model": "planner-bad", "content": "$(jstr "$BAD")", "repeat": 10},
 {"model": "planner-sneaky", "content": "$(jstr "$SNEAKY")", "repeat": 10},
 {"model": "planner-empty", "content": "{}", "repeat": 10},
 {"model": "planner-mine", "content": "{\"workflow\": \"mine\"}", "repeat": 10},
 {"model": "planner-brittle", "content": "{\"workflow\": \"brittle\"}", "repeat": 10},
 {"model": "planner-slow", "status": 404, "delay_ms": 10000, "body": {"error": {"message": "slow and gone"}}},
 {"model": "planner-emit", "content": "$(jstr "$EMIT")", "repeat": 10},
 {"model": "planner-start", "content": "$(jstr "$START")", "repeat": 10},
 {"model": "planner-comp", "content": "$(jstr "$COMP")", "repeat": 10},
 {"model": "planner-ghost", "content": "{\"workflow\": \"no-such-flow\"}", "repeat": 10},
 {"model": "planner-pick", "content": "{\"workflow\": \"lead-intake\", \"confidence\": 7, \"input\": {\"email\": \"bo@example.com\", \"name\": \"Bo\", \"goal\": \"spoof\"}}", "repeat": 10},
 {"default": true, "status": 404, "body": {"error": {"message": "no such case"}}}
]
EOF
fifo=$TMP/fake.out
mkfifo "$fifo"
"$FAKE" --port-file "$TMP/fake.port" --log "$TMP/fake.log" --script "$FSCRIPT" >"$fifo" 2>"$TMP/fake.err" &
FAKE_PID=$!
bg_track "$FAKE_PID"
exec {FAKE_FD}<"$fifo"
line=""
IFS= read -r -t 30 line <&"$FAKE_FD"
URL=http://127.0.0.1:$(cat "$TMP/fake.port" 2>/dev/null)/v1
[[ $line == listening* ]] || { not_ok "fake_llm starts" "$line $(cat "$TMP/fake.err")"; exit 1; }

# mkremote NAME MODEL: a data dir whose plan route goes to MODEL on fake_llm
mkremote() {
  D=$TMP/$1
  bureau --data "$D" init >/dev/null 2>&1
  cat >>"$D/bureau.yaml" <<EOF
models:
  providers:
    - name: big
      kind: openai
      base_url: $URL
      model: $2
      price: {input_per_mtok: 1, output_per_mtok: 2}
  routes:
    plan: {candidates: [big]}
EOF
  DIRS+=("$D")
}

mkremote composed planner-ok
mkdir -p "$D/agents"
printf 'return { summary = args.summary, goal = args.goal }\n' >"$D/agents/note.lua"
run bureau --data "$D" goal "note down what I want" --json
expect_eq "composed: proposed" "$(jget "$OUT" '$.status')" proposed
expect_eq "composed: kind" "$(jget "$OUT" '$.kind')" composed
G=$(jget "$OUT" '$.id')
W=$(jget "$OUT" '$.workflow')
expect_eq "composed: named for the goal" "$W" "goal-$(printf '%s' "$G" | tr 'A-Z' 'a-z')"
expect_eq "composed: planned by the remote model" "$(jget "$OUT" '$.provider')/$(jget "$OUT" '$.model')" "big/planner-ok"
expect_eq "composed: the proposal shows the steps" "$(jget "$OUT" '$.proposal.steps[1].do')" lua
expect_contains "composed: the prompt lists the step kinds and their inputs" \
  "$(grep -m1 planner-ok "$TMP/fake.log")" "memory.renewals: announce retainers"
expect_contains "composed: the plan asks for 2000 output tokens (not the route's default 512)" \
  "$(grep -m1 planner-ok "$TMP/fake.log" | tr -d ' ')" '"max_tokens":2000'
expect_contains "composed: the prompt lists the workflows" \
  "$(grep -m1 planner-ok "$TMP/fake.log")" "renewal-watch:"
expect_eq "composed: its definition is in goal.proposed" \
  "$(q "$D" "SELECT json_extract(data, '$.definition.steps[0].do') FROM events WHERE type = 'goal.proposed'")" \
  model.summarize
idle "$D"
expect_eq "composed: no task before the approval" "$(q "$D" "SELECT count(*) FROM tasks")" 0
run bureau --data "$D" approve "$(jget "$OUT" '$.approval')"
expect_eq "composed: approve exit 0" "$RC" 0
idle "$D"
T=$(q "$D" "SELECT task_id FROM goals WHERE id = '$G'")
expect_eq "composed: the task succeeded" "$(q "$D" "SELECT status FROM tasks WHERE id = '$T'")" succeeded
expect_eq "composed: both steps succeeded" \
  "$(q "$D" "SELECT group_concat(step_id || ':' || status, ' ') FROM (SELECT * FROM task_steps WHERE task_id = '$T' ORDER BY step_id)")" \
  "note:succeeded sum:succeeded"
expect_eq "composed: the note step got the summary" \
  "$(q "$D" "SELECT json_extract(output, '$.summary') FROM task_steps WHERE task_id = '$T' AND step_id = 'note'")" \
  "note down what I want"
expect_eq "composed: the definition is stored once, by version" \
  "$(q "$D" "SELECT count(*) FROM task_definitions WHERE workflow = '$W'")" 1
expect_eq "composed: task.created carries the definition" \
  "$(q "$D" "SELECT json_extract(data, '$.definition.name') FROM events WHERE type = 'task.created'")" "$W"

# an edit: a broken graph is refused at approval, a good one runs
run bureau --data "$D" goal "note it again" --json
A2=$(jget "$OUT" '$.approval')
G2=$(jget "$OUT" '$.id')
printf '%s' "$BAD" | sed 's/^{/{"kind": "composed", "goal": "'"$G2"'", "text": "x", /' >"$TMP/bad-edit.json"
run bureau --data "$D" approve "$A2" --edit "$TMP/bad-edit.json"
expect_eq "edit to a broken graph: refused" "$RC" 1
expect_contains "edit to a broken graph: the validator's problem" "$ERR" "steps[0].do: unknown step kind 'send_mail'"
expect_eq "edit to a broken graph: still pending" \
  "$(q "$D" "SELECT status FROM approvals WHERE id = '$A2'")" pending
run bureau --data "$D" reject "$A2" --reason "changed my mind"
idle "$D"
expect_eq "composed: only the approved goal has a task" "$(q "$D" "SELECT count(*) FROM tasks")" 1

mkremote broken planner-bad
run bureau --data "$D" goal "do something clever" --json
expect_eq "broken graph: exit 1" "$RC" 1
expect_eq "broken graph: refused" "$(jget "$OUT" '$.status')" refused
expect_contains "broken graph: unknown kind named" "$ERR" "plan: steps[0].do: unknown step kind 'send_mail'"
expect_contains "broken graph: the cycle named" "$ERR" "needs form a cycle"
expect_eq "broken graph: no approval, no task, no definition" \
  "$(q "$D" "SELECT (SELECT count(*) FROM approvals) || (SELECT count(*) FROM tasks) || (SELECT count(*) FROM events WHERE type IN ('goal.proposed', 'task.created'))")" 000
idle "$D"
expect_eq "broken graph: nothing ran" "$(q "$D" "SELECT count(*) FROM tasks")" 0
expect_eq "broken graph: the refusal keeps the graph" \
  "$(q "$D" "SELECT json_extract(data, '$.graph.steps[0].do') FROM events WHERE type = 'goal.refused'")" send_mail

mkremote sneaky planner-sneaky
run bureau --data "$D" goal "mail everyone" --json
expect_eq "a graph that turns an approval off: refused" "$(jget "$OUT" '$.status')" refused
expect_contains "a graph that turns an approval off: named" "$ERR" "plan: steps[0].approval.policy: 'never'"
expect_eq "a graph that turns an approval off: nothing proposed" \
  "$(q "$D" "SELECT count(*) FROM approvals")" 0

for c in "emit|1|fake|emit" "start|0|go|task.start"; do
  IFS='|' read -r m i sid kind <<<"$c"
  mkremote "graph-$m" "planner-$m"
  run bureau --data "$D" goal "do it quietly" --json
  expect_eq "a graph with $kind: refused" "$RC $(jget "$OUT" '$.status')" "1 refused"
  expect_contains "a graph with $kind: the step named" "$ERR" "plan: steps[$i].do: '$kind' (step '$sid')"
  expect_eq "a graph with $kind: nothing proposed" "$(q "$D" "SELECT count(*) FROM approvals")" 0
done
mkremote graph-comp planner-comp
run bureau --data "$D" goal "post it" --json
expect_eq "a graph with a compensation: refused" "$RC $(jget "$OUT" '$.status')" "1 refused"
expect_contains "a graph with a compensation: named" "$ERR" "plan: steps[0].compensate (step 'hook')"
expect_eq "the prompt leaves out task.start and emit" \
  "$(grep -m1 planner-comp "$TMP/fake.log" | grep -c -e '- task.start:' -e '- emit:')" 0

# the operator approves the version the proposal showed: a workflow file
# changed in between is not run in its place
mkremote changed planner-mine
mkdir -p "$D/workflows"
printf 'name: mine\ndescription: first\non: {event: mine.go}\nsteps:\n  - id: a\n    do: emit\n    with: {type: mine.done}\n' >"$D/workflows/mine.yaml"
run bureau --data "$D" goal "do mine" --json
expect_eq "changed: proposed" "$(jget "$OUT" '$.status') $(jget "$OUT" '$.workflow')" "proposed mine"
CG=$(jget "$OUT" '$.id')
sed -i 's/first/second/' "$D/workflows/mine.yaml"
run bureau --data "$D" approve "$(jget "$OUT" '$.approval')"
idle "$D"
expect_eq "a workflow changed since the proposal: no task" "$(q "$D" "SELECT count(*) FROM tasks")" 0
expect_eq "a workflow changed since the proposal: the goal failed" \
  "$(q "$D" "SELECT status FROM goals WHERE id = '$CG'")" failed
expect_contains "a workflow changed since the proposal: says so" \
  "$(q "$D" "SELECT error FROM goals WHERE id = '$CG'")" "changed since it was proposed"

# an approved goal whose task cannot be made (its concurrency key fails)
# is failed, not left approved
mkremote brittle planner-brittle
mkdir -p "$D/workflows"
printf 'name: brittle\ndescription: breaks\non: {event: brittle.go}\nconcurrency: event.data.nope.deeper\nsteps:\n  - id: a\n    do: emit\n    with: {type: brittle.done}\n' >"$D/workflows/brittle.yaml"
run bureau --data "$D" goal "do brittle" --json
BG=$(jget "$OUT" '$.id')
run bureau --data "$D" approve "$(jget "$OUT" '$.approval')"
idle "$D"
expect_eq "no task could be made: the goal failed" "$(q "$D" "SELECT status FROM goals WHERE id = '$BG'")" failed
expect_contains "no task could be made: says why" \
  "$(q "$D" "SELECT error FROM goals WHERE id = '$BG'")" "concurrency key failed"

# a catalog that cannot be read: the goal is not recorded (not left submitted)
mkremote nocat planner-mine
rmdir "$D/workflows" 2>/dev/null; rm -rf "$D/workflows"
printf 'x' >"$D/workflows"
run bureau --data "$D" goal "do mine" --json
expect_eq "unreadable catalog: an error" "$RC" 1
expect_eq "unreadable catalog: no goal recorded" "$(q "$D" "SELECT count(*) FROM goals")" 0

mkremote ghost planner-ghost
run bureau --data "$D" goal "run the ghost" --json
expect_eq "unknown workflow named by the model: refused" "$(jget "$OUT" '$.status')" refused
expect_contains "unknown workflow: named" "$ERR" "no-such-flow"

mkremote empty planner-empty
run bureau --data "$D" goal "anything" --json
expect_eq "a plan with neither a workflow nor steps: refused" "$RC $(jget "$OUT" '$.status')" "1 refused"
expect_contains "a plan with neither: says so" "$ERR" "names neither a workflow nor steps"

mkremote pick planner-pick
run bureau --data "$D" goal "get back to Bo" --json
expect_eq "model picks a workflow: proposed" "$(jget "$OUT" '$.workflow')" lead-intake
expect_eq "model's input: kept" "$(jget "$OUT" '$.proposal.input.email')" bo@example.com
PG=$(jget "$OUT" '$.id')
expect_eq "a model's confidence of 7 is clamped to 1" "$(q "$D" "SELECT score FROM goals WHERE id = '$PG'")" 1.0
run bureau --data "$D" approve "$(jget "$OUT" '$.approval')"
idle "$D"
expect_eq "model's input: the trigger's data, reserved keys kept" \
  "$(q "$D" "SELECT json_extract(e.data, '$.email') || ' ' || json_extract(e.data, '$.goal') FROM tasks t JOIN events e ON e.seq = t.trigger_seq")" \
  "bo@example.com $PG"

# ---- the HTTP API ----------------------------------------------------------------

H=$TMP/http
bureau --data "$H" init >/dev/null 2>&1
DIRS+=("$H")
TJ=$(bureau --data "$H" token create --name goals --json 2>/dev/null)
TOKEN=$(jget "$TJ" '$.token')
if serve_start "$H" --listen 127.0.0.1:0; then ok "serve starts"; else not_ok "serve starts" "$SRV_LINE $(cat "$SRV_LOG")"; exit 1; fi
AUTH=(-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json')
http POST /v1/goals "${AUTH[@]}" --data '{"text": "send renewal reminders to customers whose retainer ends soon"}'
expect_eq "POST /v1/goals: 201" "$CODE" 201
expect_eq "POST /v1/goals: matched" "$(jget "$BODY" '$.workflow')" renewal-watch
HG=$(jget "$BODY" '$.id')
HA=$(jget "$BODY" '$.approval')
expect_eq "POST /v1/goals: recorded by the token" "$(jget "$BODY" '$.by')" "token:$(jget "$TJ" '$.id')"
http GET /v1/inbox "${AUTH[@]}"
expect_eq "the inbox holds the proposal" "$(jget "$BODY" '$.items[0].goal')" "$HG"
http POST /v1/goals "${AUTH[@]}" --data '{"text": "bake a chocolate cake"}'
expect_eq "POST /v1/goals, no match: 422" "$CODE" 422
expect_eq "POST /v1/goals, no match: refused" "$(jget "$BODY" '$.status')" refused
http POST /v1/goals "${AUTH[@]}" --data '{"text": ""}'
expect_eq "POST /v1/goals, empty: 400" "$CODE" 400
http POST /v1/goals "${AUTH[@]}" --data '{"goal": "x"}'
expect_eq "POST /v1/goals, unknown field: 400" "$CODE" 400
http POST /v1/goals "${AUTH[@]}" --data "{\"text\": \"$(head -c 20000 /dev/zero | tr '\0' x)\"}"
expect_eq "POST /v1/goals, body too large: 413" "$CODE" 413
http POST /v1/goals -H 'Content-Type: application/json' --data '{"text": "x"}'
expect_eq "POST /v1/goals without a token: 401" "$CODE" 401
http POST /v1/events "${AUTH[@]}" --data '{"type": "goal.approved", "source": "x", "data": {"goal": "G", "kind": "workflow", "workflow": "renewal-watch"}}'
expect_eq "goal.approved cannot be posted from outside" "$CODE" 400
http POST "/v1/approvals/$HA/decision" "${AUTH[@]}" --data '{"decision": "approve"}'
expect_eq "approve the goal over HTTP: 200" "$CODE" 200
expect_eq "approve over HTTP: names the goal" "$(jget "$BODY" '$.goal')" "$HG"
http GET /v1/goals "${AUTH[@]}"
expect_eq "GET /v1/goals lists both, newest first" "$(jget "$BODY" '$.items[1].id')" "$HG"
http GET "/v1/goals?id=$HG" "${AUTH[@]}"
expect_eq "GET /v1/goals?id: the goal with its proposal" "$(jget "$BODY" '$.proposal.workflow')" renewal-watch
serve_stop
expect_eq "serve exits 0" "$SRV_RC" 0
idle "$H"
expect_eq "the goal approved over HTTP ran" \
  "$(q "$H" "SELECT t.status FROM goals g JOIN tasks t ON t.id = g.task_id WHERE g.id = '$HG'")" succeeded

# one plan at a time over HTTP (a remote plan holds a worker thread), and a
# plan route that gives no plan is a 502, not a 422
mkremote hslow planner-slow
SD=$D
TJ=$(bureau --data "$SD" token create --name goals --json 2>/dev/null)
AUTH=(-H "Authorization: Bearer $(jget "$TJ" '$.token')" -H 'Content-Type: application/json')
if serve_start "$SD" --listen 127.0.0.1:0; then ok "serve (remote plan route) starts"; else not_ok "serve (remote plan route) starts" "$SRV_LINE $(cat "$SRV_LOG")"; exit 1; fi
curl -sS --noproxy '*' --max-time 60 -X POST "${AUTH[@]}" --data '{"text": "plan this slowly"}' \
  -o "$TMP/slow.body" -w '%{http_code}' "$SRV_URL/v1/goals" >"$TMP/slow.code" 2>/dev/null &
SLOW=$!
bg_track "$SLOW"
deadline=$((SECONDS + 30))
until [ "$(q "$SD" "SELECT count(*) FROM goals")" = 1 ] || [ $SECONDS -ge $deadline ]; do :; done
http POST /v1/goals "${AUTH[@]}" --data '{"text": "and this one at once"}'
expect_eq "a second POST /v1/goals while one plans: 503" "$CODE" 503
expect_contains "the 503 says when to retry" "$HDRS" "Retry-After: 5"
expect_eq "the refused second goal is not recorded" "$(q "$SD" "SELECT count(*) FROM goals")" 1
http GET /v1/goals "${AUTH[@]}"
expect_eq "other endpoints answer while a plan runs" "$CODE" 200
wait "$SLOW"
expect_eq "a plan route that gives no plan: 502" "$(cat "$TMP/slow.code")" 502
expect_eq "the 502 carries the refused goal, reason model" \
  "$(jget "$(cat "$TMP/slow.body")" '$.status') $(jget "$(cat "$TMP/slow.body")" '$.reason')" "refused model"
http POST /v1/goals "${AUTH[@]}" --data '{"text": "and now this one"}'
expect_eq "after the plan ended, the next one is planned (502: the model is still gone)" "$CODE" 502
serve_stop
expect_eq "serve (remote plan route) exits 0" "$SRV_RC" 0

# ---- replay and audit ------------------------------------------------------------

for d in "${DIRS[@]}"; do
  run bureau --data "$d" replay --check
  expect_eq "replay --check $(basename "$d")" "$RC" 0
  run bureau --data "$d" audit verify
  expect_eq "audit verify $(basename "$d")" "$RC" 0
done

kill -TERM "$FAKE_PID" 2>/dev/null
wait "$FAKE_PID"
exec {FAKE_FD}<&-
sanitizer_check "no sanitizer reports"
