#!/usr/bin/env bash
# Approvals, the effect outbox, sagas and the mode, end to end through the
# CLI against real peers on loopback: the SMTP sink (lib_smtp.sh, aiosmtpd)
# and the webhook receiver (hook_sink). Each case has its own data dir.
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
inbox_json() { b inbox --json; }
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
expect_eq "auto: the high one arrived" "$(smtp_count) $(decoded 3 subject)" "3 Re: ticket 1"
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
expect_eq "auto sandbox: nothing sent" "$(smtp_count)" 3

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
expect_eq "deadline: remind: approval.reminded" \
  "$(q "SELECT count(*) >= 1 FROM events WHERE type = 'approval.reminded' AND json_extract(data, '$.task') = '$TR'")" 1
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
expect_contains "undo: held until about 30 s from now" "$(effect hold_until "$T")" "T"
check "undo: effects cancel" bq effects cancel "$E"
check "undo: run after the cancel" idle
expect_eq "undo: the effect is canceled" "$(effect status "$T")" canceled
expect_eq "undo: the step is skipped by the operator, the task goes on and succeeds" \
  "$(q "SELECT status || ' ' || skip_reason FROM task_steps WHERE task_id = '$T' AND step_id = 'send'") $(step_status "$T" after) $(task_status "$T")" \
  "skipped operator succeeded succeeded"
expect_eq "undo: nothing arrived" "$(smtp_count)" 3
run b effects cancel "$E"
expect_contains "undo: a canceled effect cannot be canceled again" "$RC $ERR" "1 "

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
expect_eq "undo 1 s: it arrived" "$(smtp_count)" 4
expect_eq "undo 1 s: not before the window ended" \
  "$(q "SELECT (SELECT received_at FROM events WHERE type = 'effect.started') >= json_extract(data, '$.hold_until') FROM events WHERE type = 'effect.requested'")" 1
