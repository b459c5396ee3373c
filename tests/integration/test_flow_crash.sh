#!/usr/bin/env bash
# Crash test of the runner: `bureau run` working through 300 five-step tasks
# is killed with SIGKILL after 150 step outcomes were recorded (read from its
# debug log through a FIFO). After a restart every task finishes, no step
# completes twice, no emitted event is doubled, the projection equals a
# rebuild from the log, and the chain verifies.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
TASKS=300
bureau --data "$D" init >/dev/null
mkdir -p "$D/workflows" "$D/agents"
cat >>"$D/bureau.yaml" <<'EOF'
flow:
  lease_ms: 1000
EOF
cat >"$D/agents/double.lua" <<'EOF'
return { n = (args.n or 0) * 2 }
EOF
cat >"$D/workflows/crashy.yaml" <<'EOF'
name: crashy
on: { event: work.item }
steps:
  - id: a
    do: lua
    with: { script: double, args: { n: "{{ event.data.n }}" } }
  - id: b
    do: emit
    with: { type: work.half, data: { n: "{{ steps.a.output.n }}" } }
  - id: c
    do: lua
    with: { script: double, args: { n: "{{ steps.a.output.n }}" } }
  - id: d
    do: emit
    with: { type: work.done, data: { n: "{{ steps.c.output.n }}" } }
  - id: e
    do: lua
    with: { script: double, args: { n: "{{ steps.c.output.n }}" } }
EOF
q() { sqlite3 "$D/bureau.db" "$1"; }
awk -v n=$TASKS 'BEGIN { for (i = 1; i <= n; i++) printf "{\"type\":\"work.item\",\"source\":\"t\",\"data\":{\"n\":%d}}\n", i }' \
  >"$TMP/items.ndjson"
check "ingest $TASKS triggers" bureau --data "$D" ingest --bulk --file "$TMP/items.ndjson"

mkfifo "$TMP/log"
"$BUREAU" --data "$D" --log-level debug run 2>"$TMP/log" &
PID=$!
bg_track "$PID"
exec {LOG}<"$TMP/log"
seen=0
while [ "$seen" -lt 150 ] && IFS= read -r -t 120 line <&"$LOG"; do
  case "$line" in *'"step recorded"'*) seen=$((seen + 1)) ;; esac
done
kill -KILL "$PID"
wait "$PID" 2>/dev/null
exec {LOG}<&-
expect_eq "the runner recorded 150 outcomes before it was killed" "$seen" 150
DONE=$(q "SELECT count(*) FROM tasks WHERE status = 'succeeded'")
if [ "$DONE" -lt "$TASKS" ]; then ok "it was killed mid-work ($DONE of $TASKS tasks done)"; else
  not_ok "it was killed mid-work" "all $TASKS tasks were already done"; fi

check "a restarted runner finishes the work" \
  bureau --data "$D" --log-level warn run --until-idle --timeout 180
expect_eq "every task succeeded" "$(q "SELECT count(*) FROM tasks WHERE status = 'succeeded'")" "$TASKS"
expect_eq "one task per trigger" "$(q "SELECT count(*) FROM tasks")" "$TASKS"
expect_eq "every step completed exactly once" \
  "$(q "SELECT count(*) || ' ' || count(DISTINCT json_extract(data, '\$.task') || '/' || json_extract(data, '\$.step')) FROM events WHERE type = 'step.completed'")" \
  "$((TASKS * 5)) $((TASKS * 5))"
expect_eq "no emitted event was doubled" \
  "$(q "SELECT count(*) FROM events WHERE type IN ('work.half', 'work.done')")" "$((TASKS * 2))"
expect_eq "results are right (n * 8 for the last step)" \
  "$(q "SELECT count(*) FROM task_steps s JOIN tasks t ON t.id = s.task_id JOIN events e ON e.seq = t.trigger_seq WHERE s.step_id = 'e' AND json_extract(s.output, '\$.n') = 8 * json_extract(e.data, '\$.n')")" \
  "$TASKS"
check "replay --check passes" bureau --data "$D" replay --check
check "the chain verifies" bureau --data "$D" audit verify
sanitizer_check "no sanitizer reports"
