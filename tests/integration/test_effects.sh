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
