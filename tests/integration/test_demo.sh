#!/usr/bin/env bash
# bureau demo: a demo consultancy built through the real importers and
# connectors, its workflows run until idle: contacts, mail, payments and a
# calendar are in; the inbox holds drafts of several workflows; it refuses
# a data directory that exists; the chain verifies and replay agrees. Then
# `bureau serve` on it keeps polling its ICS connector: a changed calendar
# file becomes calendar.event.updated, a broken one changes nothing.
. "$(dirname "$0")/lib.sh"

D=$TMP/demo
run bureau --data "$D" --json demo
expect_eq "bureau demo exits 0 once its workflows are idle" "$RC" 0
q() { sqlite3 "$D/bureau.db" "$1"; }
expect_eq "the built-ins are listed, the six of issue 10 among them" \
  "$(bureau --data "$D" --json workflows list 2>/dev/null | jq -r 'select(.builtin and .enabled) | .name' | grep -cE '^(lead-intake|support-reply|onboarding|feedback-digest|renewal-watch|content-pipeline)$')" 6
expect_eq "about 40 contacts; hundreds of emails over three months" \
  "$(q "SELECT count(*) >= 35 FROM contacts WHERE merged_into IS NULL") $(q "SELECT count(*) >= 250 FROM events WHERE type = 'email.received' AND source = 'import'") $(q "SELECT julianday(max(occurred_at)) - julianday(min(occurred_at)) > 80 FROM events WHERE type = 'email.received'")" \
  "1 1 1"
expect_eq "payments and subscriptions came through the Stripe connector (its mapping), the calendar through the ICS connector" \
  "$(q "SELECT count(*) > 20 FROM events WHERE type = 'payment.succeeded' AND source = 'stripe'") $(q "SELECT count(*) FROM events WHERE type LIKE 'subscription.%'") $(q "SELECT count(*) > 10 FROM events WHERE type = 'calendar.event.created' AND source = 'calendar'")" \
  "1 6 1"
expect_eq "the inbox holds drafts of lead-intake, support-reply, onboarding, renewal-draft and the digest" \
  "$(q "SELECT group_concat(DISTINCT t.workflow) FROM approvals a JOIN tasks t ON t.id = a.task_id WHERE a.status = 'pending' ORDER BY 1" | tr ',' '\n' | sort | paste -sd,)" \
  "feedback-digest,lead-intake,onboarding,renewal-draft,support-reply"
expect_eq "a goal in words waits as a proposal: feedback-digest, no task yet" \
  "$(q "SELECT g.status || ' ' || g.workflow || ' ' || a.status || ' ' || (g.task_id IS NULL) FROM goals g JOIN approvals a ON a.id = g.approval_id")" \
  "proposed feedback-digest pending 1"
expect_eq "no task failed; nothing left (sandbox)" \
  "$(q "SELECT count(*) FROM tasks WHERE status = 'failed'") $(q "SELECT count(*) FROM effects WHERE status = 'delivered'")" "0 0"
expect_eq "the mail older than 30 days is in monthly summaries" \
  "$(q "SELECT count(*) > 10 FROM items WHERE kind = 'summary'")" 1
run bureau --data "$D" demo
expect_contains "a second demo in the same directory is refused" "$RC $ERR" "already holds a data directory"
check "the chain verifies" bureau --data "$D" audit verify
check "replay --check agrees" bureau --data "$D" replay --check

# serve keeps polling the calendar: an edit, then a broken file
printf 'connectors:\n  - name: calendar\n    kind: ics\n    path: %s/demo/calendar.ics\n    interval_s: 1\n    horizon_days: 30\n' "$D" >"$TMP/cal.yaml"
sed -i '/^connectors:/,$d' "$D/bureau.yaml"
cat "$TMP/cal.yaml" >>"$D/bureau.yaml"
UPD=$(q "SELECT count(*) FROM events WHERE type = 'calendar.event.updated'")
# a call next week (inside the connector's window) gets a new title
sed -i '/UID:demo-call-22@/,/END:VEVENT/s/SUMMARY:Call with/SUMMARY:Moved: call with/' "$D/demo/calendar.ics"
serve_start "$D" --listen 127.0.0.1:0 || not_ok "serve starts" "$SRV_LINE"
deadline=$((SECONDS + 60))
until [ "$(q "SELECT count(*) FROM events WHERE type = 'calendar.event.updated'")" -gt "$UPD" ] || [ $SECONDS -ge $deadline ]; do
  q "SELECT 1" >/dev/null
done
expect_eq "an edited calendar file becomes calendar.event.updated, naming what changed" \
  "$(q "SELECT json_extract(data, '\$.changes') FROM events WHERE type = 'calendar.event.updated' ORDER BY seq DESC LIMIT 1" | jq -c .)" '["summary"]'
N=$(q "SELECT count(*) FROM events WHERE type LIKE 'calendar.%'")
printf 'BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:x\nDTSTART:not-a-date\nEND:VEVENT\nEND:VCALENDAR\n' >"$D/demo/calendar.ics"
deadline=$((SECONDS + 60))
until bureau --data "$D" --json connectors 2>/dev/null | jq -e 'select(.name == "calendar") | .last_error != null' >/dev/null || [ $SECONDS -ge $deadline ]; do
  q "SELECT 1" >/dev/null
done
expect_contains "a broken file: the connector reports the error with its line" \
  "$(bureau --data "$D" --json connectors 2>/dev/null | jq -r 'select(.name == "calendar") | .last_error')" "line"
expect_eq "and nothing changed in the calendar" "$(q "SELECT count(*) FROM events WHERE type LIKE 'calendar.%'")" "$N"
serve_stop
expect_eq "serve stops cleanly" "$SRV_RC" 0
sanitizer_check "no sanitizer report"
