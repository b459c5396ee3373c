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
check "sandbox: approve" b approve "$A"
check "sandbox: run after the approval" idle
expect_eq "sandbox: effect captured" "$(effect status "$T")" captured
expect_eq "sandbox: the captured payload is there" "$(effect payload.subject "$T")" "Welcome, Ann"
expect_eq "sandbox: one effect.captured event" "$(count_events effect.captured)" 1
expect_eq "sandbox: no effect.started" "$(count_events effect.started)" 0
expect_eq "sandbox: the task succeeded" "$(task_status "$T")" succeeded
expect_eq "sandbox: the SMTP sink received nothing" "$(smtp_count)" 0
