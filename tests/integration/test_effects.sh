#!/usr/bin/env bash
# Approvals, the effect outbox, sagas and the mode, end to end through the
# CLI against real peers on loopback: the SMTP sink (lib_smtp.sh, aiosmtpd)
# and the webhook receiver (hook_sink). Each case has its own data dir:
#  1 sandbox: an approved mail is captured, nothing sent
#  2 production: sent once (headers, body, envelope), not again; the trace
#  3 approve --edit: the edited mail leaves; the diff is kept
#  4 reject: on_reject cancel; on_reject STEP (and not taken when approved)
#  5 auto approval: above min_confidence sent, below asked; sandbox asks
#  6 deadlines: escalate, remind
#  7 the undo window: canceled (the effect, or its task); delivered after it
#  8 sagas: a failed task's webhooks undone newest first (also an approved
#    one, and after a rejection with on_reject: compensate); a sent mail's
#    correction draft
#  9 webhook retries (one key, one body); a permanent failure resolved as
#    sent is not sent again on a retry; a canceled compensation
# 10 a crash mid-delivery: uncertain, resolved --sent and --resend
# 11 consent for marketing mail
# 12 replay --check and audit verify on every data dir
# Timers are waited for with run --until-idle --wait-timers, processes with
# FIFOs: no sleeps.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_smtp.sh"

BUILD=${BUILD:-$(dirname "$BUREAU")}
HOOK_SINK=$BUILD/hook_sink
# loopback only: no proxy from the environment
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
export NO_PROXY='*' no_proxy='*'
FROM='Bureau Bot <bot@example.com>'
DIRS="" # every data dir, checked by replay and audit at the end

# setup NAME [YAML...]: a fresh data dir D=$TMP/NAME whose smtp: points at
# the current sink, with a 1 s lease (a crashed process is taken over soon)
# and short outbox backoffs; extra lines go under smtp: (e.g. undo_window_s).
setup() {
  local name=$1 line
  shift
  D=$TMP/$name
  bureau --data "$D" init >/dev/null || { not_ok "$name: init" "failed"; return 1; }
  mkdir -p "$D/workflows" "$D/agents"
  {
    printf 'flow:\n  lease_ms: 1000\n'
    printf 'smtp:\n  url: %s\n  from: %s\n  starttls: never\n  timeout_s: 20\n' \
      "${SMTP_URL:-smtp://127.0.0.1:9}" "$FROM"
    for line in "$@"; do printf '  %s\n' "$line"; done
    printf 'outbox:\n  backoff_ms: 50\n  max_delay_ms: 200\n  webhook_timeout_s: 10\n'
  } >>"$D/bureau.yaml"
  DIRS="$DIRS $D"
}
b() { bureau --data "$D" "$@"; }
bq() { bureau --data "$D" "$@" >/dev/null; }
ingest() { printf '%s\n' "$1" | bureau --data "$D" ingest >/dev/null; }
idle() { bureau --data "$D" run --until-idle --timeout 60 "$@"; }
q() { sqlite3 "$D/bureau.db" "$1"; }
task_of() { q "SELECT id FROM tasks WHERE workflow = '$1' ORDER BY created_seq DESC LIMIT 1"; }
task_status() { q "SELECT status FROM tasks WHERE id = '$1'"; }
step_status() { q "SELECT status FROM task_steps WHERE task_id = '$1' AND step_id = '$2'"; }
# the pending approval of a task (the newest)
approval_of() {
  q "SELECT id FROM approvals WHERE task_id = '$1' AND status = 'pending' ORDER BY requested_seq DESC LIMIT 1"
}
# effect FIELD [TASK]: a field of the newest effect (of TASK) from `effects --json`
effect() {
  local line
  if [ -n "${2:-}" ]; then line=$(b effects --json --task "$2" | head -n 1)
  else line=$(b effects --json | head -n 1); fi
  jget "$line" "\$.$1"
}
count_events() { q "SELECT count(*) FROM events WHERE type = '$1'${2:+ AND $2}"; }
# decoded N WHAT: message N as Python's email package reads it: subject, to,
# from, message-id, in-reply-to, body (the text part)
decoded() {
  "$SMTP_PY" - "$(smtp_msg "$1")" "$2" <<'PY'
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
w = sys.argv[2]
if w == "body":
    sys.stdout.write(m.get_body(("plain",)).get_content())
elif w in ("to", "from"):
    print(" | ".join("%s/%s" % (a.display_name, a.addr_spec) for a in m[w].addresses))
else:
    print(m[w])
PY
}

# A mail per lead, gated by the default policy (always).
mail_workflow() {
  cat >"$D/workflows/welcome.yaml" <<'EOF'
name: welcome
on: { event: lead.created }
steps:
  - id: send
    do: email.send
    with:
      to: "{{ event.data.name }} <{{ event.data.email }}>"
      subject: "Welcome, {{ event.data.name }}"
      text: "Hello {{ event.data.name }},\nthanks for writing.\n"
  - id: after
    do: emit
    needs: send
    with: { type: lead.welcomed, data: { email: "{{ event.data.email }}" } }
EOF
}
LEAD='{"type":"lead.created","source":"site","data":{"name":"Ann","email":"ann@example.com"}}'

smtp_start || { not_ok "smtp sink starts" "$(cat "$TMP"/smtp.*/log)"; exit 1; }

# ---- 1. sandbox: captured, nothing sent ----------------------------------------

setup sandbox
mail_workflow
expect_eq "sandbox: a new install is in sandbox mode" "$(b mode)" sandbox
ingest "$LEAD"
check "sandbox: run" idle
T=$(task_of welcome)
A=$(approval_of "$T")
expect_eq "sandbox: the mail waits for approval" "$(step_status "$T" send) ${A:0:1}" "waiting a"
check "sandbox: approve" bq approve "$A"
check "sandbox: run after the approval" idle
expect_eq "sandbox: effect captured" "$(effect status "$T")" captured
expect_eq "sandbox: the captured payload is there" "$(effect payload.subject "$T")" "Welcome, Ann"
expect_eq "sandbox: one effect.captured event" "$(count_events effect.captured)" 1
expect_eq "sandbox: no effect.started" "$(count_events effect.started)" 0
expect_eq "sandbox: the task succeeded" "$(task_status "$T")" succeeded
expect_eq "sandbox: the SMTP sink received nothing" "$(smtp_count)" 0

# ---- 2. production: delivered once, traced -----------------------------------------

smtp_stop; smtp_start || exit 1
setup production
mail_workflow
check "production: switch the mode" bq mode production
expect_eq "production: the switch is an event by cli" \
  "$(q "SELECT json_extract(data, '$.mode') || ' ' || json_extract(data, '$.by') FROM events WHERE type = 'operator.mode.changed'")" \
  "production cli"
ingest "$LEAD"
check "production: run" idle
T=$(task_of welcome)
A=$(approval_of "$T")
run b inbox --json
expect_eq "production: the inbox holds the approval" \
  "$(jget "$OUT" '$.id') $(jget "$OUT" '$.kind') $(jget "$OUT" '$.task') $(jget "$OUT" '$.preview.subject')" \
  "$A approval $T Welcome, Ann"
expect_eq "production: nothing sent before the approval" "$(smtp_count)" 0
check "production: approve" bq approve "$A"
check "production: run after the approval" idle
expect_eq "production: effect delivered, once" \
  "$(effect status "$T") $(effect deliveries "$T") $(effect code "$T")" "delivered 1 250"
expect_eq "production: one mail arrived" "$(smtp_count)" 1
MID=$(effect message_id "$T")
expect_eq "production: From" "$(decoded 1 from)" "Bureau Bot/bot@example.com"
expect_eq "production: To" "$(decoded 1 to)" "Ann/ann@example.com"
expect_eq "production: Subject" "$(decoded 1 subject)" "Welcome, Ann"
expect_eq "production: Message-ID is the effect's" "$(decoded 1 message-id)" "$MID"
expect_contains "production: Message-ID on the From domain" "$MID" "@example.com>"
expect_eq "production: body" "$(decoded 1 body)" "$(printf 'Hello Ann,\nthanks for writing.')"
expect_eq "production: envelope" "$(smtp_env 1 '$.mail_from') $(smtp_env 1 '$.rcpt_to')" \
  'bot@example.com ["ann@example.com"]'
expect_eq "production: the task succeeded (the step after the mail ran)" \
  "$(task_status "$T") $(step_status "$T" after)" "succeeded succeeded"
N0=$(q "SELECT count(*) FROM events")
check "production: a second run" idle
expect_eq "production: the second run sends nothing more" "$(smtp_count)" 1
expect_eq "production: and appends nothing" "$(q "SELECT count(*) FROM events")" "$N0"
run b trace "$T"
expect_eq "production: trace exits 0" "$RC" 0
expect_contains "production: trace shows the trigger" "$OUT" "lead.created from site"
expect_contains "production: trace shows the approval decided by cli" "$OUT" "$A: approve by cli"
expect_contains "production: trace shows the delivery" "$OUT" "effect.delivered"
run b trace "$T" --json
echo "$OUT" >"$TMP/trace.json"
expect_eq "production: trace --json: trigger, decision, effect" \
  "$(jget "$OUT" '$.trigger.type') $(jget "$OUT" '$.approvals[0].status') $(jget "$OUT" '$.approvals[0].decided_by') $(jget "$OUT" '$.effects[0].status')" \
  "lead.created approved cli delivered"
expect_eq "production: trace --json: the gate's events in order" \
  "$(sqlite3 :memory: "SELECT group_concat(t, ',') FROM (SELECT json_extract(value, '$.type') AS t FROM json_each(json_extract(readfile('$TMP/trace.json'), '$.events')) WHERE t LIKE 'approval.%' OR t LIKE 'effect.%' ORDER BY key)")" \
  "approval.requested,approval.decided,effect.requested,effect.started,effect.delivered"

# ---- 3. approve --edit: the edited mail is what leaves -------------------------------

setup edit
mail_workflow
bq mode production
ingest "$LEAD"
check "edit: run" idle
T=$(task_of welcome)
A=$(approval_of "$T")
cat >"$TMP/edited.json" <<'EOF'
{"to": "Ann <ann@example.com>", "subject": "Welcome aboard, Ann",
 "text": "Hello Ann,\nan edited text.\n"}
EOF
check "edit: approve --edit" bq approve "$A" --edit "$TMP/edited.json"
check "edit: run after the edit" idle
expect_eq "edit: delivered" "$(effect status "$T")" delivered
expect_eq "edit: the effect carries the edited payload" "$(effect payload.subject "$T")" "Welcome aboard, Ann"
expect_eq "edit: one more mail arrived" "$(smtp_count)" 2
expect_eq "edit: the edited subject arrived" "$(decoded 2 subject)" "Welcome aboard, Ann"
expect_eq "edit: the edited text arrived" "$(decoded 2 body)" "$(printf 'Hello Ann,\nan edited text.')"
run b trace "$T" --json
expect_eq "edit: trace --json: decided as edited by cli" \
  "$(jget "$OUT" '$.approvals[0].status') $(jget "$OUT" '$.approvals[0].decided_by')" "edited cli"
expect_eq "edit: trace --json: the diff holds the subject, from and to" \
  "$(jget "$OUT" '$.approvals[0].diff.subject.from') -> $(jget "$OUT" '$.approvals[0].diff.subject.to')" \
  "Welcome, Ann -> Welcome aboard, Ann"
expect_eq "edit: trace --json: the diff holds the text" \
  "$(jget "$OUT" '$.approvals[0].diff.text.to')" "$(printf 'Hello Ann,\nan edited text.\n')"
expect_eq "edit: trace --json: the diff leaves out what did not change" \
  "$(jget "$OUT" '$.approvals[0].diff.to')" ""
expect_eq "edit: trace --json: the preview is kept beside the edit" \
  "$(jget "$OUT" '$.approvals[0].preview.subject') / $(jget "$OUT" '$.approvals[0].payload.subject')" \
  "Welcome, Ann / Welcome aboard, Ann"
expect_eq "edit: the approval.decided event holds the diff and the edit" \
  "$(q "SELECT json_extract(data, '$.decision') || ' ' || json_extract(data, '$.payload.subject') || ' ' || json_extract(data, '$.diff.subject.to') FROM events WHERE type = 'approval.decided'")" \
  "edit Welcome aboard, Ann Welcome aboard, Ann"

# ---- 4. reject: on_reject cancel, on_reject STEP ------------------------------------

setup reject
bq mode production
cat >"$D/workflows/offer.yaml" <<'EOF'
name: offer
on: { event: offer.made }
steps:
  - id: send
    do: email.send
    approval: { policy: always, on_reject: cancel }
    with: { to: "{{ event.data.email }}", subject: "An offer", text: "Our offer." }
  - id: after
    do: emit
    needs: send
    with: { type: offer.sent }
EOF
cat >"$D/workflows/quote.yaml" <<'EOF'
name: quote
on: { event: quote.asked }
steps:
  - id: send
    do: email.send
    approval: { on_reject: fallback }
    with: { to: "{{ event.data.email }}", subject: "A quote", text: "Our quote." }
  - id: after
    do: emit
    needs: send
    with: { type: quote.sent }
  - id: log
    do: emit
    needs: send
    with: { type: quote.logged }
  - id: fallback
    do: emit
    needs: send
    with: { type: quote.declined, data: { reason: "{{ steps.send.output.reason }}" } }
EOF
ingest '{"type":"offer.made","source":"t","data":{"email":"bob@example.com"}}'
ingest '{"type":"quote.asked","source":"t","data":{"email":"cy@example.com"}}'
check "reject: run" idle
T1=$(task_of offer)
T2=$(task_of quote)
A1=$(approval_of "$T1")
A2=$(approval_of "$T2")
run b reject "$A1"
expect_eq "reject: --reason is required" "$RC" 2
check "reject: reject the offer" bq reject "$A1" --reason "not this customer"
check "reject: reject the quote" bq reject "$A2" --reason "too cheap"
check "reject: run after the rejections" idle
expect_eq "reject cancel: the task is canceled" "$(task_status "$T1")" canceled
expect_eq "reject cancel: the gated step and the one after it were canceled with it" \
  "$(step_status "$T1" send) $(step_status "$T1" after) $(count_events offer.sent)" "canceled canceled 0"
expect_eq "reject cancel: no effect requested" \
  "$(count_events effect.requested "json_extract(data, '$.task') = '$T1'")" 0
expect_eq "reject cancel: the task.action says why" \
  "$(q "SELECT json_extract(data, '$.action') || ' ' || json_extract(data, '$.by') || ' ' || json_extract(data, '$.output.reason') FROM events WHERE type = 'task.action' AND json_extract(data, '$.task') = '$T1'")" \
  "cancel approval not this customer"
expect_eq "reject goto: the named step ran, with the reason" \
  "$(step_status "$T2" fallback) $(q "SELECT json_extract(data, '$.reason') FROM events WHERE type = 'quote.declined'")" \
  "succeeded too cheap"
expect_eq "reject goto: the other steps needing the gated one were skipped" \
  "$(step_status "$T2" after) $(step_status "$T2" log) $(count_events quote.sent) $(count_events quote.logged)" \
  "skipped skipped 0 0"
expect_eq "reject goto: the task succeeded, no effect requested" \
  "$(task_status "$T2") $(count_events effect.requested)" "succeeded 0"
expect_eq "reject: nothing sent" "$(smtp_count)" 2
# approved, the rejection branch is not taken
ingest '{"type":"quote.asked","source":"t","data":{"email":"dee@example.com"}}'
check "reject goto, approved: run" idle
T3=$(task_of quote)
check "reject goto, approved: approve" bq approve "$(approval_of "$T3")"
check "reject goto, approved: run after the approval" idle
expect_eq "reject goto, approved: sent, the steps after it ran, the rejection branch skipped" \
  "$(effect status "$T3") $(step_status "$T3" after) $(step_status "$T3" log) $(step_status "$T3" fallback) $(task_status "$T3")" \
  "delivered succeeded succeeded skipped succeeded"
expect_eq "reject goto, approved: no quote.declined for it" \
  "$(count_events quote.declined "json_extract(data, '$.caused_by.task') = '$T3'") $(smtp_count)" "0 3"
run b approve "$A1"
expect_contains "reject: a decided approval cannot be decided again" "$RC $ERR" "1 "
expect_eq "reject: the inbox is empty" "$(b inbox --json | wc -l)" 0

# ---- 5. auto approval: above min_confidence sent, below asked; sandbox asks ---------

auto_workflow() {
  cat >"$D/workflows/reply.yaml" <<'EOF'
name: reply
on: { event: ticket.opened }
steps:
  - id: send
    do: email.send
    approval:
      policy: auto
      min_confidence: 0.8
      confidence: "{{ event.data.confidence }}"
      confidence_source: classifier
      model: test-model
      cost: 0.0012
      sources: [{ ticket: "{{ event.data.n }}" }]
    with: { to: "{{ event.data.email }}", subject: "Re: ticket {{ event.data.n }}", text: "Answer." }
EOF
}
setup auto
auto_workflow
bq mode production
ingest '{"type":"ticket.opened","source":"t","data":{"email":"hi@example.com","n":1,"confidence":0.95}}'
check "auto: run (high confidence)" idle
TH=$(task_of reply)
ingest '{"type":"ticket.opened","source":"t","data":{"email":"lo@example.com","n":2,"confidence":0.5}}'
check "auto: run (low confidence)" idle
TL=$(task_of reply)
expect_eq "auto: high confidence delivered without the operator" \
  "$(task_status "$TH") $(effect status "$TH")" "succeeded delivered"
expect_eq "auto: decided by auto, with the reason" \
  "$(q "SELECT json_extract(data, '$.by') || ' / ' || json_extract(data, '$.reason') FROM events WHERE type = 'approval.decided' AND json_extract(data, '$.task') = '$TH'")" \
  "auto / confidence 0.950 >= 0.800"
expect_eq "auto: the high one arrived" "$(smtp_count) $(decoded 4 subject)" "4 Re: ticket 1"
run b inbox --json
expect_eq "auto: only the low one is in the inbox" "$(printf '%s\n' "$OUT" | grep -c .) $(jget "$OUT" '$.task')" "1 $TL"
expect_eq "auto: the inbox item shows confidence, its source, model, cost and sources" \
  "$(jget "$OUT" '$.confidence') $(jget "$OUT" '$.confidence_source') $(jget "$OUT" '$.model') $(jget "$OUT" '$.cost') $(jget "$OUT" '$.sources[0].ticket')" \
  "0.5 classifier test-model 0.0012 2"
expect_eq "auto: the low one waits" "$(step_status "$TL" send) $(count_events effect.requested "json_extract(data, '$.task') = '$TL'")" "waiting 0"
setup auto_sandbox
auto_workflow
ingest '{"type":"ticket.opened","source":"t","data":{"email":"hi@example.com","n":3,"confidence":0.99}}'
check "auto sandbox: run" idle
T=$(task_of reply)
expect_eq "auto sandbox: even a high confidence asks" \
  "$(step_status "$T" send) $(q "SELECT status || ' ' || policy FROM approvals WHERE task_id = '$T'")" \
  "waiting pending auto"
expect_eq "auto sandbox: nothing sent" "$(smtp_count)" 4

# ---- 6. deadlines: escalate, remind ---------------------------------------------

setup deadline
for how in escalate remind; do
  cat >"$D/workflows/late_$how.yaml" <<EOF
name: late_$how
on: { event: late.go }
steps:
  - id: ok
    do: approval
    approval: { deadline: 1s, on_deadline: $how }
    with: { title: "Go ahead?", payload: { n: "{{ event.data.n }}" } }
EOF
done
ingest '{"type":"late.go","source":"t","data":{"n":1}}'
check "deadline: run" idle
TE=$(task_of late_escalate)
TR=$(task_of late_remind)
expect_eq "deadline: both wait, with a deadline" \
  "$(q "SELECT count(*) FROM approvals WHERE status = 'pending' AND deadline IS NOT NULL")" 2
check "deadline: run --wait-timers 3" idle --wait-timers 3
expect_eq "deadline: escalate: approval.escalated" \
  "$(count_events approval.escalated "json_extract(data, '$.task') = '$TE'")" 1
expect_eq "deadline: remind: approval.reminded, again every second (not 1, 2, 4 s...)" \
  "$(q "SELECT count(*) >= 2 AND max((julianday(json_extract(data, '$.next_at')) - julianday(received_at)) * 86400) < 1.5 FROM events WHERE type = 'approval.reminded' AND json_extract(data, '$.task') = '$TR'")" 1
run b inbox --json
expect_eq "deadline: the escalated item comes first, marked" \
  "$(L=$(printf '%s\n' "$OUT" | head -n 1); echo "$(jget "$L" '$.task') $(jget "$L" '$.escalated')")" \
  "$TE 1"
expect_eq "deadline: both still wait" "$(task_status "$TE") $(task_status "$TR")" "running running"

# ---- 7. the undo window: held, canceled; and delivered after it ----------------------

setup undo "undo_window_s: 30"
mail_workflow
bq mode production
ingest "$LEAD"
check "undo: run" idle
T=$(task_of welcome)
bq approve "$(approval_of "$T")"
check "undo: run after the approval" idle
E=$(effect id "$T")
expect_eq "undo: the approved mail is held" "$(effect status "$T")" held
expect_eq "undo: held for 30 s" \
  "$(q "SELECT abs((julianday(hold_until) - julianday(requested_at)) * 86400 - 30) < 2 FROM effects WHERE id = '$E'")" 1
check "undo: effects cancel" bq effects cancel "$E"
check "undo: run after the cancel" idle
expect_eq "undo: the effect is canceled" "$(effect status "$T")" canceled
expect_eq "undo: the step is skipped by the operator, the task goes on and succeeds" \
  "$(q "SELECT status || ' ' || skip_reason FROM task_steps WHERE task_id = '$T' AND step_id = 'send'") $(step_status "$T" after) $(task_status "$T")" \
  "skipped operator succeeded succeeded"
expect_eq "undo: nothing arrived" "$(smtp_count)" 4
run b effects cancel "$E"
expect_contains "undo: a canceled effect cannot be canceled again" "$RC $ERR" "1 "
# the task canceled while its mail is held: the mail does not go
ingest "$LEAD"
check "undo, task canceled: run" idle
T=$(task_of welcome)
bq approve "$(approval_of "$T")"
check "undo, task canceled: run after the approval" idle
expect_eq "undo, task canceled: held" "$(effect status "$T")" held
check "undo, task canceled: task cancel" bq task cancel "$T"
check "undo, task canceled: run after the cancel" idle
expect_eq "undo, task canceled: the effect is canceled with its task" \
  "$(effect status "$T") $(task_status "$T") $(effect detail "$T")" \
  "canceled canceled its task ended (canceled or failed) before it was sent"
expect_eq "undo, task canceled: nothing arrived" "$(smtp_count)" 4

setup undo_short "undo_window_s: 1"
mail_workflow
bq mode production
ingest "$LEAD"
check "undo 1 s: run" idle
T=$(task_of welcome)
bq approve "$(approval_of "$T")"
check "undo 1 s: run --wait-timers 5" idle --wait-timers 5
expect_eq "undo 1 s: delivered after the window" "$(effect status "$T") $(task_status "$T")" \
  "delivered succeeded"
expect_eq "undo 1 s: it arrived" "$(smtp_count)" 5
expect_eq "undo 1 s: not before the window ended" \
  "$(q "SELECT (SELECT received_at FROM events WHERE type = 'effect.started') >= json_extract(data, '$.hold_until') FROM events WHERE type = 'effect.requested'")" 1

# ---- 8. sagas: a failed task's webhooks undone newest first; a sent mail corrected ---

# hook_start NAME [ARGS...]: hook_sink (tracked) on a free port; sets HOOK_URL,
# HOOK_LOG, HOOK_PID (its "listening on" line read through a FIFO)
hook_start() {
  local name=$1 line fifo
  shift
  fifo=$TMP/$name.out
  HOOK_LOG=$TMP/$name.log
  mkfifo "$fifo"
  "$HOOK_SINK" --port-file "$TMP/$name.port" --log "$HOOK_LOG" "$@" >"$fifo" 2>"$TMP/$name.err" &
  HOOK_PID=$!
  bg_track "$HOOK_PID"
  exec {HOOK_FD}<"$fifo"
  line=""
  IFS= read -r -t 30 line <&"$HOOK_FD"
  HOOK_URL=http://127.0.0.1:$(cat "$TMP/$name.port" 2>/dev/null)
  [[ $line == "listening on ${HOOK_URL#http://}" ]] || {
    not_ok "$name starts" "line '$line', $(cat "$TMP/$name.err")"
    return 1
  }
}
hook_stop() {
  kill -TERM "$HOOK_PID" 2>/dev/null
  wait "$HOOK_PID"
  exec {HOOK_FD}<&-
}
hook_lines() { if [ -f "$HOOK_LOG" ]; then wc -l <"$HOOK_LOG" | tr -d ' '; else echo 0; fi; }

hook_start saga || exit 1
setup saga
bq mode production
cat >"$D/workflows/order.yaml" <<EOF
name: order
on: { event: order.placed }
steps:
  - id: reserve
    do: webhook.post
    approval: never
    with: { url: "$HOOK_URL/reserve", body: { op: reserve, order: "{{ event.data.order }}" } }
    compensate:
      do: webhook.post
      with: { url: "$HOOK_URL/reserve", body: { undo: reserve, order: "{{ event.data.order }}" } }
  - id: charge
    do: webhook.post
    needs: reserve
    approval: never
    with: { url: "$HOOK_URL/charge", body: { op: charge, order: "{{ event.data.order }}" } }
    compensate:
      do: webhook.post
      with: { url: "$HOOK_URL/charge", body: { undo: charge, order: "{{ event.data.order }}" } }
  - id: boom
    do: emit
    needs: charge
    with: { type: task.created }
EOF
ingest '{"type":"order.placed","source":"t","data":{"order":"O-7"}}'
check "saga: run" idle --wait-timers 10
T=$(task_of order)
expect_eq "saga: the task failed on its third step" \
  "$(task_status "$T") $(step_status "$T" boom)" "failed failed"
expect_eq "saga: four calls: reserve, charge, then undo charge, undo reserve" \
  "$(jl "$HOOK_LOG" "json_extract(value, '\$.path') || ':' || coalesce(json_extract(value, '\$.body.op'), 'undo ' || json_extract(value, '\$.body.undo'))" | paste -sd,)" \
  "/reserve:reserve,/charge:charge,/charge:undo charge,/reserve:undo reserve"
expect_eq "saga: the compensations carry the order (rendered when the step ran)" \
  "$(jl "$HOOK_LOG" "json_extract(value, '\$.body.order')" | sort -u)" "O-7"
expect_eq "saga: each call has its own Idempotency-Key" \
  "$(jl "$HOOK_LOG" "json_extract(value, '\$.key')" | sort -u | wc -l)" 4
expect_eq "saga: both effects end compensated" \
  "$(q "SELECT group_concat(step_id || '=' || status, ',') FROM (SELECT step_id, status FROM effects WHERE task_id = '$T' AND compensates IS NULL ORDER BY requested_seq)")" \
  "reserve=compensated,charge=compensated"
expect_eq "saga: the compensating calls were delivered" \
  "$(q "SELECT group_concat(step_id || '=' || status, ',') FROM (SELECT step_id, status FROM effects WHERE task_id = '$T' AND compensates IS NOT NULL ORDER BY requested_seq)")" \
  "compensate:charge=delivered,compensate:reserve=delivered"
expect_eq "saga: task.compensated, compensation done" \
  "$(count_events task.compensated "json_extract(data, '$.task') = '$T'") $(q "SELECT compensation FROM tasks WHERE id = '$T'")" \
  "1 done"
expect_eq "saga: compensated in reverse order (events)" \
  "$(q "SELECT group_concat(json_extract(data, '$.step'), ',') FROM (SELECT data FROM events WHERE type = 'effect.compensated' ORDER BY seq)")" \
  "charge,reserve"
N0=$(hook_lines)
check "saga: run again" idle
expect_eq "saga: nothing is undone twice" "$(hook_lines)" "$N0"

# an approved webhook is undone too; a rejection with on_reject: compensate
cat >"$D/workflows/booking.yaml" <<EOF
name: booking
on: { event: booking.asked }
steps:
  - id: hold
    do: webhook.post
    with: { url: "$HOOK_URL/hold", body: { op: hold, room: "{{ event.data.room }}" } }
    compensate:
      do: webhook.post
      with: { url: "$HOOK_URL/hold", body: { undo: hold, room: "{{ event.data.room }}" } }
  - id: pay
    do: webhook.post
    needs: hold
    approval: { on_reject: compensate }
    with: { url: "$HOOK_URL/pay", body: { op: pay } }
EOF
ingest '{"type":"booking.asked","source":"t","data":{"room":"R2"}}'
check "saga reject: run" idle
T=$(task_of booking)
check "saga reject: approve the hold" bq approve "$(approval_of "$T")"
check "saga reject: run after the approval" idle
expect_eq "saga reject: the hold was delivered, the payment waits" \
  "$(effect status "$T") $(step_status "$T" pay)" "delivered waiting"
check "saga reject: reject the payment" bq reject "$(approval_of "$T")" --reason "no card"
check "saga reject: run after the rejection" idle --wait-timers 10
expect_eq "saga reject: the approved hold was undone with its reverse call, the payment never made" \
  "$(tail -n +$((N0 + 1)) "$HOOK_LOG" >"$TMP/booking.log"; jl "$TMP/booking.log" "json_extract(value, '\$.path') || ':' || coalesce(json_extract(value, '\$.body.op'), 'undo ' || json_extract(value, '\$.body.undo')) || ':' || json_extract(value, '\$.body.room')" | paste -sd,)" \
  "/hold:hold:R2,/hold:undo hold:R2"
expect_eq "saga reject: the task is canceled and compensated" \
  "$(task_status "$T") $(q "SELECT compensation FROM tasks WHERE id = '$T'") $(q "SELECT status FROM effects WHERE task_id = '$T' AND step_id = 'hold'")" \
  "canceled done compensated"
hook_stop

# a succeeded task's sent mail: a correction draft, in its thread, sent once approved
setup correct
mail_workflow
bq mode production
ingest "$LEAD"
check "correct: run" idle
T=$(task_of welcome)
bq approve "$(approval_of "$T")"
check "correct: run after the approval" idle
expect_eq "correct: the mail was sent, the task succeeded" \
  "$(effect status "$T") $(task_status "$T")" "delivered succeeded"
MID=$(effect message_id "$T")
N=$(smtp_count)
check "correct: task compensate" bq task compensate "$T"
check "correct: run after task compensate" idle
run b inbox --json
expect_eq "correct: a correction draft is in the inbox" \
  "$(jget "$OUT" '$.kind') $(jget "$OUT" '$.task') $(jget "$OUT" '$.step') $(jget "$OUT" '$.effect_kind')" \
  "approval $T compensate:send email.send"
expect_eq "correct: its subject starts with Correction:" "$(jget "$OUT" '$.preview.subject')" \
  "Correction: Welcome, Ann"
expect_eq "correct: in reply to the sent Message-ID, to the same people" \
  "$(jget "$OUT" '$.preview.in_reply_to') $(jget "$OUT" '$.preview.to')" "$MID Ann <ann@example.com>"
expect_eq "correct: nothing sent before the approval" "$(smtp_count)" "$N"
C=$(jget "$OUT" '$.id')
check "correct: approve the correction" bq approve "$C"
check "correct: run after approving the correction" idle
expect_eq "correct: the correction arrived" "$(smtp_count)" "$((N + 1))"
expect_eq "correct: its subject and In-Reply-To" \
  "$(decoded "$((N + 1))" subject) / $(decoded "$((N + 1))" in-reply-to)" "Correction: Welcome, Ann / $MID"
expect_eq "correct: a new Message-ID" \
  "$([ "$(decoded "$((N + 1))" message-id)" != "$MID" ] && echo new)" new
expect_eq "correct: the mail is compensated, the task's compensation done" \
  "$(q "SELECT status FROM effects WHERE task_id = '$T' AND compensates IS NULL") $(q "SELECT compensation FROM tasks WHERE id = '$T'") $(count_events task.compensated)" \
  "compensated done 1"
expect_eq "correct: the task stays succeeded" "$(task_status "$T")" succeeded

# ---- 9. webhook retries: one key, one body, delivered on the third request -----------

hook_start flaky --fail 2 || exit 1
setup retries
bq mode production
cat >"$D/workflows/notify.yaml" <<EOF
name: notify
on: { event: lead.created }
steps:
  - id: notify
    do: webhook.post
    approval: never
    with: { url: "$HOOK_URL/hook", body: { lead: "{{ event.data.email }}", n: 42 } }
EOF
ingest "$LEAD"
check "retries: run --wait-timers 10" idle --wait-timers 10
T=$(task_of notify)
expect_eq "retries: three requests" "$(hook_lines)" 3
expect_eq "retries: statuses 500, 500, 200" \
  "$(jl "$HOOK_LOG" "json_extract(value, '\$.status')" | paste -sd,)" "500,500,200"
expect_eq "retries: one Idempotency-Key, the effect's delivery key" \
  "$(jl "$HOOK_LOG" "json_extract(value, '\$.key')" | sort -u)" "$(effect delivery_key "$T")"
expect_eq "retries: one body" \
  "$(jl "$HOOK_LOG" "json_extract(value, '\$.body')" | sort -u)" '{"lead":"ann@example.com","n":42}'
expect_eq "retries: delivered after 3 deliveries, the task succeeded" \
  "$(effect status "$T") $(effect deliveries "$T") $(effect code "$T") $(task_status "$T")" \
  "delivered 3 200 succeeded"
expect_eq "retries: two effect.failed (not permanent), each with its next time" \
  "$(count_events effect.failed "json_extract(data, '$.permanent') = 0 AND json_extract(data, '$.next_at') IS NOT NULL")" 2
hook_stop

# a permanent failure in the inbox, resolved as sent: a retry does not send again
hook_start gone --status 404 || exit 1
setup resolved
bq mode production
cat >"$D/workflows/notify.yaml" <<EOF
name: notify
on: { event: lead.created }
steps:
  - id: notify
    do: webhook.post
    approval: never
    with: { url: "$HOOK_URL/hook", body: { lead: "{{ event.data.email }}" } }
  - id: after
    do: emit
    with: { type: lead.notified }
EOF
ingest "$LEAD"
check "resolved: run" idle
T=$(task_of notify)
E=$(effect id "$T")
expect_eq "resolved: 404 is permanent: the effect failed, the task is in the inbox" \
  "$(effect status "$T") $(effect code "$T") $(task_status "$T") $(hook_lines)" "failed 404 inbox 1"
expect_contains "resolved: the inbox names the failure" "$(b inbox --json)" "effect $E failed"
check "resolved: effects resolve --sent" bq effects resolve "$E" --sent
check "resolved: task retry" bq task retry "$T"
check "resolved: run after the retry" idle
expect_eq "resolved: the retried step settles on the resolved effect, nothing sent again" \
  "$(task_status "$T") $(step_status "$T" after) $(hook_lines) $(q "SELECT count(*) FROM effects")" \
  "succeeded succeeded 1 1"

# a compensation that fails for good, canceled by the operator: the saga goes on
GONE_URL=$HOOK_URL GONE_PID=$HOOK_PID GONE_FD=$HOOK_FD
hook_start undo_ok || exit 1
setup saga_cancel
bq mode production
cat >"$D/workflows/order.yaml" <<EOF
name: order
on: { event: order.placed }
steps:
  - id: a
    do: webhook.post
    approval: never
    with: { url: "$HOOK_URL/a", body: { op: a } }
    compensate: { do: webhook.post, with: { url: "$HOOK_URL/a", body: { undo: a } } }
  - id: b
    do: webhook.post
    needs: a
    approval: never
    with: { url: "$HOOK_URL/b", body: { op: b } }
    compensate: { do: webhook.post, with: { url: "$GONE_URL/b", body: { undo: b } } }
  - id: boom
    do: emit
    needs: b
    with: { type: task.created }
EOF
ingest '{"type":"order.placed","source":"t","data":{}}'
check "saga cancel: run" idle --wait-timers 10
T=$(task_of order)
C=$(q "SELECT id FROM effects WHERE step_id = 'compensate:b'")
expect_eq "saga cancel: the reverse call of b failed for good, the saga waits" \
  "$(q "SELECT status FROM effects WHERE id = '$C'") $(q "SELECT compensation FROM tasks WHERE id = '$T'") $(q "SELECT status FROM effects WHERE step_id = 'a'")" \
  "failed running delivered"
expect_contains "saga cancel: the failed compensation is in the inbox" "$(b inbox --json)" "\"effect\":\"$C\""
check "saga cancel: effects cancel the compensation" bq effects cancel "$C"
check "saga cancel: run after the cancel" idle --wait-timers 10
expect_eq "saga cancel: b's compensation declined, a undone, the saga done" \
  "$(q "SELECT json_extract(data, '$.declined') FROM events WHERE type = 'effect.compensated' AND json_extract(data, '$.step') = 'b'") $(q "SELECT group_concat(status, ',') FROM (SELECT status FROM effects WHERE task_id = '$T' AND compensates IS NULL ORDER BY requested_seq)") $(q "SELECT compensation FROM tasks WHERE id = '$T'")" \
  "1 compensated,compensated done"
expect_eq "saga cancel: the calls" \
  "$(jl "$HOOK_LOG" "json_extract(value, '\$.path') || ':' || coalesce(json_extract(value, '\$.body.op'), 'undo ' || json_extract(value, '\$.body.undo'))" | paste -sd,)" \
  "/a:a,/b:b,/a:undo a"
hook_stop
HOOK_PID=$GONE_PID HOOK_FD=$GONE_FD
hook_stop

# ---- 10. a crash mid-delivery: uncertain, resolved by the operator -------------------

# crash NAME: a production data dir whose mail delivery hangs after DATA (the
# message is stored, no 250 comes); the bureau delivering it is killed -9
# there, and a new run finds the effect uncertain. Sets T and E.
crash() {
  local fifo=$TMP/$1.hang line
  mkfifo "$fifo"
  exec {HANG_FD}<>"$fifo" # read-write: opening does not wait for the writer
  smtp_start --hang-after-data "$fifo" || return 1
  setup "$1"
  cat >"$D/workflows/welcome.yaml" <<'EOF'
name: welcome
on: { event: lead.created }
steps:
  - id: send
    do: email.send
    approval: never
    with: { to: "{{ event.data.email }}", subject: "Welcome", text: "Hello." }
  - id: after
    do: emit
    needs: send
    with: { type: lead.welcomed }
EOF
  bq mode production
  ingest "$LEAD"
  # the binary itself, not the bureau() function: $! must be its pid
  "$BUREAU" --data "$D" run --until-idle --timeout 60 >"$TMP/$1.run.out" 2>"$TMP/$1.run.err" &
  local pid=$!
  bg_track "$pid"
  line=""
  IFS= read -r -t 60 line <&"$HANG_FD"
  expect_eq "$1: the sink stored the message and holds back its 250" "$line" "stored 000001"
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null
  exec {HANG_FD}<&-
  T=$(task_of welcome)
  E=$(effect id "$T")
  expect_eq "$1: killed between effect.started and its outcome" \
    "$(q "SELECT status || ' ' || in_flight FROM effects WHERE id = '$E'") $(count_events effect.delivered)" \
    "requested 1 0"
  check "$1: a new run (waits for the dead holder's lease)" idle
  expect_eq "$1: the effect is uncertain" "$(effect status "$T") $(effect deliveries "$T")" "uncertain 1"
  run b inbox --json
  expect_eq "$1: in the inbox as a failure naming the effect" \
    "$(jget "$OUT" '$.kind') $(jget "$OUT" '$.effect') $(jget "$OUT" '$.effect_status') $(jget "$OUT" '$.task')" \
    "failure $E uncertain $T"
  expect_contains "$1: the inbox says it may have arrived" "$(jget "$OUT" '$.error')" \
    "may or may not have been delivered"
  expect_eq "$1: the step still waits, the mail arrived once" \
    "$(step_status "$T" send) $(smtp_count)" "waiting 1"
}

smtp_stop # each crash case has its own hanging sink
if crash crash_sent; then
  check "crash_sent: effects resolve --sent" bq effects resolve "$E" --sent
  check "crash_sent: run after the resolution" idle
  expect_eq "crash_sent: delivered, the task succeeded" \
    "$(effect status "$T") $(task_status "$T") $(step_status "$T" after)" \
    "delivered succeeded succeeded"
  expect_eq "crash_sent: still one mail" "$(smtp_count)" 1
  expect_eq "crash_sent: the inbox is empty" "$(b inbox --json | wc -l)" 0
  expect_eq "crash_sent: effect.resolved by cli as delivered" \
    "$(q "SELECT json_extract(data, '$.by') || ' ' || json_extract(data, '$.as') FROM events WHERE type = 'effect.resolved'")" \
    "cli delivered"
fi
smtp_stop

if crash crash_resend; then
  check "crash_resend: effects resolve --resend" bq effects resolve "$E" --resend
  check "crash_resend: run after the resolution" idle
  expect_eq "crash_resend: delivered on the second delivery, the task succeeded" \
    "$(effect status "$T") $(effect deliveries "$T") $(task_status "$T")" "delivered 2 succeeded"
  expect_eq "crash_resend: a second mail arrived" "$(smtp_count)" 2
  expect_eq "crash_resend: with the same Message-ID" \
    "$(decoded 2 message-id)" "$(decoded 1 message-id)"
  expect_eq "crash_resend: the effect's Message-ID" "$(decoded 2 message-id)" "$(effect message_id "$T")"
fi
smtp_stop

# ---- 11. consent: marketing mail needs marketing consent ------------------------------

smtp_start || exit 1
setup consent
bq mode production
cat >"$D/workflows/news.yaml" <<'EOF'
name: news
on: { event: lead.created }
steps:
  - id: send
    do: email.send
    purpose: marketing
    approval: never
    with: { to: "{{ event.data.name }} <{{ event.data.email }}>", subject: "News", text: "Our news." }
EOF
ingest '{"type":"lead.created","source":"site","data":{"name":"Ann","email":"Ann@Example.com"}}'
check "consent: run" idle
T=$(task_of news)
expect_eq "consent: the effect failed for good, nothing sent" \
  "$(effect status "$T") $(effect deliveries "$T") $(smtp_count)" "failed 0 0"
expect_eq "consent: the task waits in the inbox" "$(task_status "$T")" inbox
run b inbox --json
expect_eq "consent: the inbox item is the task's failure" \
  "$(jget "$OUT" '$.kind') $(jget "$OUT" '$.task') $(printf '%s\n' "$OUT" | grep -c .)" "failure $T 1"
expect_contains "consent: with the consent reason" "$(jget "$OUT" '$.error')" \
  "ann@example.com has not agreed to marketing mail (latest recorded consent: none)"
ingest '{"type":"consent.recorded","source":"site","data":{"email":"ann@example.com","consent":"marketing"}}'
check "consent: task retry" bq task retry "$T"
check "consent: run after the retry" idle
expect_eq "consent: delivered on the retry, the task succeeded" \
  "$(effect status "$T") $(task_status "$T")" "delivered succeeded"
expect_eq "consent: it arrived" "$(smtp_count) $(decoded 1 subject)" "1 News"
ingest '{"type":"consent.recorded","source":"site","data":{"email":"ann@example.com","consent":"none"}}'
ingest '{"type":"lead.created","source":"site","data":{"name":"Ann","email":"ann@example.com"}}'
check "consent: run after the withdrawal" idle
expect_eq "consent: withdrawn, the next marketing mail fails" \
  "$(effect status "$(task_of news)") $(smtp_count)" "failed 1"
smtp_stop

# ---- 11b. do: approval: its output is the approved (possibly edited) payload --------

setup gate
cat >"$D/workflows/quote.yaml" <<'YAML'
name: quote
on: {event: quote.asked}
steps:
  - id: gate
    do: approval
    with:
      title: "Quote for {{ event.data.name }}"
      payload: {amount: "{{ event.data.amount }}", note: "standard"}
  - id: sent
    do: emit
    with: {type: quote.sent, data: {amount: "{{ steps.gate.output.amount }}", note: "{{ steps.gate.output.note }}"}}
YAML
ingest '{"type":"quote.asked","source":"site","data":{"name":"Ann","amount":1200}}'
ingest '{"type":"quote.asked","source":"site","data":{"name":"Bob","amount":900}}'
check "gate: run" idle
run b inbox --json
expect_eq "gate: two approvals with their payloads, no effect" \
  "$(printf '%s\n' "$OUT" | grep -c '"effect_kind":"approval"') $(b effects --json | grep -c .)" "2 0"
A1=$(q "SELECT a.id FROM approvals a JOIN tasks t ON t.id = a.task_id WHERE json_extract(a.preview, '$.amount') = 1200")
A2=$(q "SELECT a.id FROM approvals a JOIN tasks t ON t.id = a.task_id WHERE json_extract(a.preview, '$.amount') = 900")
check "gate: approve one as it is" bq approve "$A1"
printf '{"amount": 850, "note": "friends rate"}\n' >"$TMP/quote-edit.json"
check "gate: approve the other edited" bq approve "$A2" --edit "$TMP/quote-edit.json"
check "gate: run after the decisions" idle
expect_eq "gate: the next step saw the approved payloads, the edit as edited" \
  "$(q "SELECT group_concat(json_extract(data, '$.amount') || ' ' || json_extract(data, '$.note'), ', ') FROM (SELECT data FROM events WHERE type = 'quote.sent' ORDER BY json_extract(data, '$.amount'))")" \
  "850 friends rate, 1200 standard"
expect_eq "gate: the edit's diff is in approval.decided" \
  "$(q "SELECT json_extract(data, '$.diff.amount.from') || ' -> ' || json_extract(data, '$.diff.amount.to') FROM events WHERE type = 'approval.decided' AND json_extract(data, '$.approval') = '$A2'")" \
  "900 -> 850"

# ---- 12. every data dir replays to the same state, and its chain verifies -----------

for d in $DIRS; do
  n=$(basename "$d")
  check "$n: replay --check" bureau --data "$d" replay --check >/dev/null
  check "$n: audit verify" bureau --data "$d" audit verify >/dev/null
done
sanitizer_check "no sanitizer reports"
