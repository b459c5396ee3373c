#!/usr/bin/env bash
# Workflows end to end through the CLI: every step kind, conditions, needs
# fan-out/fan-in, retries with backoff, waits on a duration and on events
# (before the wait starts, and two in quick succession), concurrency keys,
# schedules missed while down, task.start, the causal depth limit, operator
# actions on the inbox, validation errors, and replay --check.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
bureau --data "$D" init >/dev/null
mkdir -p "$D/workflows" "$D/agents"

ingest() { printf '%s\n' "$1" | bureau --data "$D" ingest >/dev/null; }
idle() { bureau --data "$D" run --until-idle --timeout 60 "$@"; }
# q SQL: one value from the database
q() { sqlite3 "$D/bureau.db" "$1"; }
# task_of WORKFLOW: the newest task of WORKFLOW
task_of() { q "SELECT id FROM tasks WHERE workflow = '$1' ORDER BY created_seq DESC LIMIT 1"; }
step_status() { q "SELECT status FROM task_steps WHERE task_id = '$1' AND step_id = '$2'"; }

# --- emit, lua, templates, conditions, fan-out / fan-in -----------------------
cat >"$D/agents/score.lua" <<'EOF'
-- scores a lead from its budget
local b = event.data.budget or 0
return { score = b // 100, tier = (b >= 1000) and "high" or "low", args = args,
         r = task.random, now = task.now, has_os = os ~= nil }
EOF
cat >"$D/workflows/leads.yaml" <<'EOF'
name: leads
on:
  event: lead.created
  where: event.data.email ~= nil
steps:
  - id: score
    do: lua
    with:
      script: score
      args: { source: "{{ event.source }}" }
  - id: high
    do: emit
    needs: score
    if: steps.score.output.tier == "high"
    with:
      type: lead.hot
      data: { email: "{{ event.data.email }}", score: "{{ steps.score.output.score }}" }
  - id: low
    do: emit
    needs: score
    if: steps.score.output.tier == "low"
    with:
      type: lead.cold
      data: { email: "{{ event.data.email }}" }
  - id: after_high
    do: emit
    needs: high
    with: { type: lead.followed, data: { via: high } }
  - id: join
    do: emit
    needs: [high, low]
    if: "true"
    with:
      type: lead.scored
      data: { email: "{{ event.data.email }}", tier: "{{ steps.score.output.tier }}" }
EOF
ingest '{"type":"lead.created","source":"site","data":{"email":"ann@example.com","budget":2500}}'
ingest '{"type":"lead.created","source":"site","data":{"name":"no email"}}'
check "run --until-idle exits 0" idle
T=$(task_of leads)
expect_eq "one task per matching event (where filtered the other)" \
  "$(q "SELECT count(*) FROM tasks WHERE workflow = 'leads'")" 1
expect_eq "the task succeeded" "$(q "SELECT status FROM tasks WHERE id = '$T'")" succeeded
expect_eq "lua output feeds a template, keeping its type" \
  "$(q "SELECT json_extract(data, '\$.score') FROM events WHERE type = 'lead.hot'")" 25
expect_eq "lua saw its args, rendered" \
  "$(q "SELECT json_extract(output, '\$.args.source') FROM task_steps WHERE task_id = '$T' AND step_id = 'score'")" site
expect_eq "randomness and time come from the task and are recorded" \
  "$(q "SELECT json_extract(s.output, '\$.r') = json_extract(e.data, '\$.random_u32') / 4294967296.0 AND json_extract(s.output, '\$.now') = json_extract(e.data, '\$.started_at') AND json_extract(s.output, '\$.has_os') = 0 FROM task_steps s JOIN events e ON e.type = 'step.completed' AND json_extract(e.data, '\$.task') = s.task_id AND json_extract(e.data, '\$.step') = s.step_id WHERE s.task_id = '$T' AND s.step_id = 'score'")" 1
expect_eq "the false branch was skipped" "$(step_status "$T" low)" skipped
expect_eq "a step after a taken branch ran" "$(step_status "$T" after_high)" succeeded
expect_eq "fan-in with its own if ran after both branches" "$(step_status "$T" join)" succeeded
expect_eq "fan-in ran after both of its needs settled" \
  "$(q "SELECT (SELECT seq FROM events WHERE type = 'lead.scored') > (SELECT seq FROM events WHERE type = 'lead.hot')")" 1
expect_eq "emitted events say which task caused them" \
  "$(q "SELECT json_extract(data, '\$.caused_by.task') || ' ' || source FROM events WHERE type = 'lead.scored'")" \
  "$T workflow:leads"
run bureau --data "$D" task show "$T" --json
expect_eq "task show --json has steps with status and attempts" \
  "$(jget "$OUT" '$.steps[0].id') $(jget "$OUT" '$.steps[0].status') $(jget "$OUT" '$.steps[0].attempts')" \
  "score succeeded 1"
run bureau --data "$D" tasks --json --workflow leads
expect_eq "tasks --json: id, workflow, status, trigger_seq" \
  "$(jget "$OUT" '$.workflow') $(jget "$OUT" '$.status') $(jget "$OUT" '$.trigger_seq')" \
  "leads succeeded $(q "SELECT min(seq) FROM events WHERE type = 'lead.created'")"
N0=$(q "SELECT count(*) FROM events")
check "a second run finds nothing to do" idle
expect_eq "and appends nothing" "$(q "SELECT count(*) FROM events")" "$N0"

# --- retries with backoff; on_error inbox, retry and skip ---------------------
cat >"$D/agents/flaky.lua" <<'EOF'
if task.attempt < 3 then error("not yet (attempt " .. task.attempt .. ")") end
return { attempt = task.attempt }
EOF
cat >"$D/agents/broken.lua" <<'EOF'
error("always broken")
EOF
cat >"$D/workflows/retry.yaml" <<'EOF'
name: retry
on: { event: job.flaky }
steps:
  - id: flaky
    do: lua
    with: { script: flaky }
    retry: { max: 3, backoff: 20ms, max_delay: 50ms }
EOF
cat >"$D/workflows/inbox.yaml" <<'EOF'
name: inbox
on: { event: job.broken }
steps:
  - id: broken
    do: lua
    with: { script: broken }
    on_error: inbox
  - id: after
    do: emit
    with: { type: job.after }
EOF
ingest '{"type":"job.flaky","source":"t","data":{}}'
check "retries run within --wait-timers" idle --wait-timers 10
T=$(task_of retry)
expect_eq "the step succeeded on its third attempt" \
  "$(step_status "$T" flaky) $(q "SELECT attempts FROM task_steps WHERE task_id = '$T'")" "succeeded 3"
expect_eq "two failures were recorded, each with its next attempt time" \
  "$(q "SELECT count(*) FROM events WHERE type = 'step.failed' AND json_extract(data, '\$.task') = '$T' AND json_extract(data, '\$.next_attempt_at') IS NOT NULL")" 2
expect_eq "the backoff grew (second delay >= 10 ms, the first's half)" \
  "$(q "SELECT (julianday(max(json_extract(data, '\$.next_attempt_at'))) - julianday(max(json_extract(data, '\$.finished_at')))) * 86400000 >= 10 FROM events WHERE type = 'step.failed' AND json_extract(data, '\$.task') = '$T' AND json_extract(data, '\$.attempt') = 2")" 1

ingest '{"type":"job.broken","source":"t","data":{}}'
check "a failing step goes to the inbox" idle
T=$(task_of inbox)
expect_eq "the task waits in the inbox" "$(q "SELECT status FROM tasks WHERE id = '$T'")" inbox
run bureau --data "$D" task show "$T" --json
expect_eq "the inbox shows the step's error, inputs and attempts" \
  "$(jget "$OUT" '$.steps[0].error') $(jget "$OUT" '$.steps[0].inputs.script') $(jget "$OUT" '$.steps[0].attempts')" \
  "agents/broken.lua:1: always broken broken 1"
run bureau --data "$D" tasks --status inbox --json
expect_contains "tasks --status inbox lists it" "$OUT" "$T"
run bureau --data "$D" task cancel NOSUCHTASK
expect_eq "an unknown task is an error" "$RC" 1
check "task retry" bureau --data "$D" task retry "$T"
check "the retried step fails again" idle
expect_eq "back in the inbox after attempt 2" \
  "$(q "SELECT status FROM tasks WHERE id = '$T'") $(q "SELECT attempts FROM task_steps WHERE task_id = '$T' AND step_id = 'broken'")" \
  "inbox 2"
check "task skip" bureau --data "$D" task skip "$T"
check "the task goes on" idle
expect_eq "after a skip the next step runs and the task ends" \
  "$(step_status "$T" broken) $(step_status "$T" after) $(q "SELECT status FROM tasks WHERE id = '$T'")" \
  "skipped succeeded succeeded"
run bureau --data "$D" task skip "$T"
expect_contains "skip on a finished task is refused" "$RC $ERR" "1 "

# --- waits: a duration, and events (before the wait, after it, two at once) ---
cat >"$D/workflows/waits.yaml" <<'EOF'
name: waits
on: { event: order.placed }
steps:
  - id: pause
    do: wait
    with: { duration: 300ms }
  - id: reply
    do: wait
    with:
      event: order.paid
      where: e.data.order == event.data.order
      timeout: 1h
  - id: done
    do: emit
    with: { type: order.closed, data: { paid_by: "{{ steps.reply.output.event.seq }}" } }
EOF
# order 1: paid before the wait even begins
ingest '{"type":"order.placed","source":"t","data":{"order":1}}'
ingest '{"type":"order.paid","source":"t","data":{"order":1}}'
check "a duration wait ends within --wait-timers" idle --wait-timers 10
T1=$(task_of waits)
P1=$(q "SELECT max(seq) FROM events WHERE type = 'order.paid'")
expect_eq "an event that came before the wait began counts" \
  "$(step_status "$T1" reply) $(q "SELECT json_extract(data, '\$.paid_by') FROM events WHERE type = 'order.closed'")" \
  "succeeded $P1"
expect_eq "the duration wait waited (finished >= started + 300 ms)" \
  "$(q "SELECT (julianday(finished_at) - julianday(started_at)) * 86400000 >= 299 FROM task_steps WHERE task_id = '$T1' AND step_id = 'pause'")" 1
# order 2: the wait starts first; then two matching events in quick succession
ingest '{"type":"order.placed","source":"t","data":{"order":2}}'
check "the wait starts" idle --wait-timers 10
T2=$(task_of waits)
expect_eq "the task waits for its event" "$(step_status "$T2" reply)" waiting
printf '%s\n%s\n%s\n' '{"type":"order.paid","source":"t","data":{"order":3}}' \
  '{"type":"order.paid","source":"t","data":{"order":2}}' \
  '{"type":"order.paid","source":"t","data":{"order":2}}' | bureau --data "$D" ingest --bulk >/dev/null
check "the event wakes the wait" idle
FIRST=$(q "SELECT min(seq) FROM events WHERE type = 'order.paid' AND json_extract(data, '\$.order') = 2")
expect_eq "the first matching event (not the other order's) completed the wait, once" \
  "$(step_status "$T2" reply) $(q "SELECT json_extract(output, '\$.event.seq') FROM task_steps WHERE task_id = '$T2' AND step_id = 'reply'") $(q "SELECT count(*) FROM events WHERE type = 'step.completed' AND json_extract(data, '\$.task') = '$T2' AND json_extract(data, '\$.step') = 'reply'")" \
  "succeeded $FIRST 1"

# --- concurrency keys -----------------------------------------------------------
cat >"$D/workflows/percustomer.yaml" <<'EOF'
name: percustomer
on: { event: ticket.opened }
concurrency: event.data.customer
steps:
  - id: a
    do: emit
    with: { type: ticket.a }
  - id: b
    do: emit
    with: { type: ticket.b }
  - id: c
    do: emit
    with: { type: ticket.c }
EOF
printf '%s\n' '{"type":"ticket.opened","source":"t","data":{"customer":"x","n":1}}' \
  '{"type":"ticket.opened","source":"t","data":{"customer":"x","n":2}}' \
  '{"type":"ticket.opened","source":"t","data":{"customer":"y","n":3}}' | bureau --data "$D" ingest --bulk >/dev/null
check "concurrency: run" idle
expect_eq "all three tasks succeeded" \
  "$(q "SELECT count(*) FROM tasks WHERE workflow = 'percustomer' AND status = 'succeeded'")" 3
X1=$(q "SELECT id FROM tasks WHERE workflow = 'percustomer' AND concurrency_key = 'percustomer:x' ORDER BY created_seq LIMIT 1")
X2=$(q "SELECT id FROM tasks WHERE workflow = 'percustomer' AND concurrency_key = 'percustomer:x' ORDER BY created_seq DESC LIMIT 1")
expect_eq "tasks of one key ran one after the other" \
  "$(q "SELECT (SELECT max(seq) FROM events WHERE type LIKE 'step.%' AND json_extract(data, '\$.task') = '$X1') < (SELECT min(seq) FROM events WHERE type LIKE 'step.%' AND json_extract(data, '\$.task') = '$X2')")" 1

# --- task.start and the causal depth limit ---------------------------------------
cat >"$D/workflows/parent.yaml" <<'EOF'
name: parent
on: { event: parent.go }
steps:
  - id: spawn
    do: task.start
    with: { workflow: child, input: { n: "{{ event.data.n }}" } }
EOF
cat >"$D/workflows/child.yaml" <<'EOF'
name: child
on: { event: never.happens }
steps:
  - id: say
    do: emit
    with: { type: child.said, data: { n: "{{ task.input.n }}" } }
EOF
cat >"$D/workflows/loop.yaml" <<'EOF'
name: loop
on: { event: loop.tick }
steps:
  - id: again
    do: emit
    with: { type: loop.tick }
EOF
ingest '{"type":"parent.go","source":"t","data":{"n":7}}'
ingest '{"type":"loop.tick","source":"t","data":{}}'
check "task.start and the loop: run" idle
expect_eq "task.start started the child with its input" \
  "$(q "SELECT json_extract(data, '\$.n') FROM events WHERE type = 'child.said'")" 7
expect_eq "a self-triggering workflow stops at the depth limit (8)" \
  "$(q "SELECT count(*) FROM tasks WHERE workflow = 'loop'") $(q "SELECT max(depth) FROM tasks WHERE workflow = 'loop'")" "8 8"

# --- schedules: a slot missed while down fires once -----------------------------
cat >"$D/workflows/nightly.yaml" <<'EOF'
name: nightly
on: { schedule: "0 0 * * *", timezone: UTC }
steps:
  - id: note
    do: emit
    with: { type: nightly.ran }
EOF
OLD=$(date -u -d '3 days ago' +%Y-%m-%dT00:00:00.000Z)
ingest "{\"type\":\"schedule.fired\",\"source\":\"test\",\"data\":{\"workflow\":\"nightly\",\"slot\":\"$OLD\"}}"
check "schedules: run" idle
TODAY=$(date -u +%Y-%m-%dT00:00:00.000Z)
expect_eq "three missed nights fire once, for the last slot" \
  "$(q "SELECT count(*) || ' ' || max(json_extract(data, '\$.slot')) FROM events WHERE type = 'schedule.fired' AND source = 'scheduler'")" \
  "1 $TODAY"
check "schedules: run again" idle
expect_eq "and not again" \
  "$(q "SELECT count(*) FROM events WHERE type = 'schedule.fired' AND source = 'scheduler'")" 1
expect_eq "the fired schedule ran the workflow" \
  "$(q "SELECT count(*) >= 1 FROM events WHERE type = 'nightly.ran'")" 1

# --- enable / disable, built-ins off by default ---------------------------------
run bureau --data "$D" workflows list --json
expect_contains "the built-in is listed, disabled" "$OUT" '"name":"lead-from-form"'
expect_eq "built-ins start disabled" \
  "$(printf '%s\n' "$OUT" | grep '"lead-from-form"' | grep -c '"enabled":false')" 1
ingest '{"type":"form.submitted","source":"t","data":{"form":"contact","fields":{"email":"b@example.com"},"files":[]}}'
check "disabled: run" idle
expect_eq "a disabled built-in does nothing" \
  "$(q "SELECT count(*) FROM tasks WHERE workflow = 'lead-from-form'")" 0
check "workflows enable" bureau --data "$D" workflows enable lead-from-form
ingest '{"type":"form.submitted","source":"t","data":{"form":"contact","fields":{"email":"c@example.com"},"files":[]}}'
check "enabled: run" idle
expect_eq "once enabled it acts on new events" \
  "$(q "SELECT json_extract(data, '\$.email') FROM events WHERE type = 'lead.captured'")" c@example.com
run bureau --data "$D" workflows enable nosuch
expect_eq "enabling an unknown workflow fails" "$RC" 1

# --- validation ------------------------------------------------------------------
cat >"$TMP/bad.yaml" <<'EOF'
name: bad
on: { event: x.y }
steps:
  - id: a
    do: emit
    colour: red
    with: { type: x.z }
EOF
run bureau workflows validate "$TMP/bad.yaml"
expect_eq "validate fails" "$RC" 1
expect_contains "validate names file:line:col and the key" "$ERR" "$TMP/bad.yaml:6:5:"
run bureau --data "$D" workflows validate "$D/workflows/leads.yaml"
expect_eq "a good file validates (with its scripts)" "$RC" 0
rm "$D/agents/score.lua"
run bureau --data "$D" workflows validate "$D/workflows/leads.yaml"
expect_contains "with --data, a missing script is reported" "$RC $ERR" "score"

# --- review cases: bad outcomes, reserved types, keys, sequential waits ----------
cat >"$D/agents/huge.lua" <<'EOF'
return string.rep("x", 1100000)
EOF
cat >"$D/workflows/huge.yaml" <<'EOF'
name: huge
on: { event: job.huge }
steps:
  - id: big
    do: lua
    with: { script: huge }
    retry: { max: 3, backoff: 10ms, max_delay: 10ms }
EOF
cat >"$D/workflows/forger.yaml" <<'EOF'
name: forger
on: { event: job.forge }
steps:
  - id: forge
    do: emit
    with: { type: "{{ 'task' .. '.created' }}", data: {} }
EOF
ingest '{"type":"job.huge","source":"t","data":{}}'
ingest '{"type":"job.forge","source":"t","data":{}}'
check "bad outcomes: run" idle --wait-timers 10
T=$(task_of huge)
expect_eq "an output the ledger refuses fails the step for good (not retried)" \
  "$(q "SELECT status FROM tasks WHERE id = '$T'") $(q "SELECT attempts FROM task_steps WHERE task_id = '$T'")" "failed 1"
expect_contains "and says why" "$(q "SELECT error FROM task_steps WHERE task_id = '$T'")" "could not be recorded"
T=$(task_of forger)
expect_contains "an emit step may not forge Bureau's own events" \
  "$(q "SELECT status || ' ' || error FROM task_steps WHERE task_id = '$T'")" "failed with.type: 'task.created' is reserved"
STATE0=$(q "SELECT group_concat(task_id || step_id || status || attempts, ',') FROM task_steps")
printf '%s\n' '{"type":"step.failed","source":"x","data":{}}' | bureau --data "$D" ingest >/dev/null
expect_eq "a malformed internal event is stored (the writer does not crash)" "$?" 0
expect_eq "and changes no step" \
  "$(q "SELECT group_concat(task_id || step_id || status || attempts, ',') FROM task_steps")" "$STATE0"
run bureau --data "$D" tasks --status nonsense
expect_contains "an unknown status is an error" "$RC $ERR" "1 "

# cancel a queued task: the key stays with the running one
cat >"$D/workflows/keyed.yaml" <<'EOF'
name: keyed
on: { event: keyed.go }
concurrency: "'k'"
steps:
  - id: hold
    do: wait
    with: { event: keyed.release, where: e.data.n == event.data.n }
EOF
printf '%s\n' '{"type":"keyed.go","source":"t","data":{"n":1}}' \
  '{"type":"keyed.go","source":"t","data":{"n":2}}' \
  '{"type":"keyed.go","source":"t","data":{"n":3}}' | bureau --data "$D" ingest --bulk >/dev/null
check "keyed: run" idle
K2=$(q "SELECT id FROM tasks WHERE workflow = 'keyed' ORDER BY created_seq LIMIT 1 OFFSET 1")
check "cancel the second (queued) task" bureau --data "$D" task cancel "$K2"
expect_eq "the key stays with the first: one running, one queued" \
  "$(q "SELECT group_concat(status, ',') FROM (SELECT status FROM tasks WHERE workflow = 'keyed' ORDER BY created_seq)")" \
  "running,canceled,queued"

# two waits in a row on one event type take two events
cat >"$D/workflows/twowaits.yaml" <<'EOF'
name: twowaits
on: { event: chat.start }
steps:
  - id: first
    do: wait
    with: { event: chat.msg }
  - id: second
    do: wait
    with: { event: chat.msg }
EOF
ingest '{"type":"chat.start","source":"t","data":{}}'
ingest '{"type":"chat.msg","source":"t","data":{"n":1}}'
check "two waits: run" idle
T=$(task_of twowaits)
expect_eq "the second wait does not take the event the first took" \
  "$(step_status "$T" first) $(step_status "$T" second)" "succeeded waiting"
ingest '{"type":"chat.msg","source":"t","data":{"n":2}}'
check "two waits: run again" idle
expect_eq "it takes the next one" \
  "$(q "SELECT json_extract(output, '\$.event.data.n') FROM task_steps WHERE task_id = '$T' AND step_id = 'second'")" 2

# --- the HTTP API, with the engine inside `bureau serve` ------------------------
TOKEN=$(bureau --data "$D" token create --name flow-test)
AUTH=(-H "Authorization: Bearer $TOKEN")
serve_start "$D" --listen 127.0.0.1:0 --log-level debug || not_ok "serve starts" "$SRV_LINE"
http POST /v1/events "${AUTH[@]}" -H 'Content-Type: application/json' \
  -d '{"type":"job.broken","source":"api","data":{}}'
expect_eq "an event through the API" "$CODE" 201
http POST /v1/events "${AUTH[@]}" -H 'Content-Type: application/json' \
  -d '{"type":"task.action","source":"api","data":{"task":"x","action":"cancel"}}'
expect_eq "Bureau's own event types are refused from the API" \
  "$CODE $(jget "$BODY" '$.detail' | grep -c reserved)" "400 1"
# the runner inside serve records the failing step; its debug line says when
# (tail -f wakes on the write; bounded by timeout)
exec {TAIL}< <(exec tail -n +1 -f "$SRV_LOG")
TAIL_PID=$!
found=0
while IFS= read -r -t 60 line <&"$TAIL"; do
  case "$line" in *'"step recorded"'*) found=1; break ;; esac
done
kill "$TAIL_PID" 2>/dev/null
exec {TAIL}<&-
expect_eq "serve's runner recorded the step" "$found" 1
TI=$(q "SELECT id FROM tasks WHERE workflow = 'inbox' AND status = 'inbox' LIMIT 1")
http GET "/v1/tasks?status=inbox" "${AUTH[@]}"
expect_eq "GET /v1/tasks?status=inbox lists the task" "$CODE $(jget "$BODY" '$.tasks[0].id')" "200 $TI"
http GET "/v1/tasks/$TI" "${AUTH[@]}"
expect_eq "GET /v1/tasks/ID has its steps" \
  "$CODE $(jget "$BODY" '$.steps[0].id') $(jget "$BODY" '$.steps[0].status')" "200 broken waiting"
http GET "/v1/tasks/$TI"
expect_eq "without a token: 401" "$CODE" 401
http GET /v1/tasks/NOSUCHTASK "${AUTH[@]}"
expect_eq "an unknown task: 404 problem" "$CODE $CTYPE" "404 application/problem+json"
http POST "/v1/tasks/$TI/explode" "${AUTH[@]}"
expect_eq "an unknown action: 404" "$CODE" 404
http GET "/v1/tasks/$TI/cancel" "${AUTH[@]}"
expect_eq "an action by GET: 405" "$CODE" 405
http POST "/v1/tasks/$TI/cancel" "${AUTH[@]}"
expect_eq "POST cancel: 202" "$CODE $(jget "$BODY" '$.action')" "202 cancel"
http POST "/v1/tasks/$TI/cancel" "${AUTH[@]}"
expect_eq "canceling again: 409" "$CODE" 409
serve_stop
expect_eq "serve exits 0" "$SRV_RC" 0
expect_eq "the task is canceled" "$(q "SELECT status FROM tasks WHERE id = '$TI'")" canceled

# --- the projection is a pure function of the log ---------------------------------
check "replay --check passes" bureau --data "$D" replay --check
check "the chain verifies" bureau --data "$D" audit verify
# --- a backlog far larger than the workers' queue -----------------------------------
# one worker queues at most 64 ready steps; 300 tasks of 2 steps must all run,
# each step once, with the runner topping the queue up as it drains
B=$TMP/backlog
bureau --data "$B" init >/dev/null
mkdir -p "$B/workflows"
printf 'flow:\n  workers: 1\n' >>"$B/bureau.yaml"
cat >"$B/workflows/many.yaml" <<'EOF'
name: many
on: { event: item.added }
steps:
  - id: first
    do: emit
    with: { type: item.seen, data: { n: "{{ event.data.n }}" } }
  - id: second
    do: lua
    with: { script: none, args: {} }
EOF
mkdir -p "$B/agents"
printf 'return { n = 1 }\n' >"$B/agents/none.lua"
bureau --data "$B" workflows enable many >/dev/null
for i in $(seq 1 300); do printf '{"type":"item.added","source":"t","data":{"n":%d}}\n' "$i"; done |
  bureau --data "$B" ingest --bulk >/dev/null
check "backlog: run --until-idle finishes 300 tasks with one worker" \
  bureau --data "$B" run --until-idle --timeout 300
expect_eq "backlog: every task and step succeeded, each step recorded once" \
  "$(sqlite3 "$B/bureau.db" "SELECT (SELECT count(*) FROM tasks WHERE status = 'succeeded') || ' ' || (SELECT count(*) FROM task_steps WHERE status = 'succeeded') || ' ' || (SELECT count(*) FROM events WHERE type = 'step.completed') || ' ' || (SELECT count(DISTINCT json_extract(data, '\$.task') || json_extract(data, '\$.step')) FROM events WHERE type = 'step.completed') || ' ' || (SELECT count(*) FROM events WHERE type = 'item.seen')")" \
  "300 600 600 600 300"
check "backlog: replay --check passes" bureau --data "$B" replay --check
sanitizer_check "no sanitizer reports"
