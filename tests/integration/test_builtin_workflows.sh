#!/usr/bin/env bash
# The built-in workflows email-triage, lead-intake and support-reply, end to
# end in sandbox mode: emails are sorted by the classify route (seeded by
# models.local.rules), a lead gets a drafted reply with a proposal outline
# that cites what memory holds on the person, it waits in the inbox until
# approved, the approved text is what the outbox captures, and the lead's
# answer ends the task without a follow-up; a support request gets a cited
# draft that the operator rejects. Built-ins ship disabled.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
bureau --data "$D" init >/dev/null 2>&1
cat >>"$D/bureau.yaml" <<'YAML'
models:
  local:
    rules:
      lead: [quote, proposal, pricing, estimate, budget, website, project]
      support: [broken, error, bug, crash, "not working", fix]
      feedback: [feedback, love, suggestion, confusing, idea]
      other: [newsletter, unsubscribe, receipt]
YAML
b() { bureau --data "$D" "$@"; }
q() { sqlite3 "$D/bureau.db" "$1"; }
idle() { bureau --data "$D" run --until-idle --timeout 60 >/dev/null 2>&1; }
ingest() { printf '%s\n' "$1" | bureau --data "$D" ingest >/dev/null 2>&1; }
task_of() { q "SELECT id FROM tasks WHERE workflow = '$1' ORDER BY created_seq DESC LIMIT 1"; }

b --json workflows list >"$TMP/wf" 2>/dev/null
expect_eq "the built-ins are listed, and disabled in a new data dir" \
  "$(jl "$TMP/wf" "group_concat(json_extract(value, '\$.name') || ':' || json_extract(value, '\$.enabled'), ' ') FILTER (WHERE json_extract(value, '\$.name') IN ('email-triage', 'lead-intake', 'support-reply'))")" \
  "email-triage:0 lead-intake:0 support-reply:0"
for w in email-triage lead-intake support-reply; do b workflows enable "$w" >/dev/null 2>&1; done

# what memory knows of Dana before she writes
ingest '{"type":"contact.imported","source":"import","data":{"email":"dana@harborfinch.example","name":"Dana Reyes","company":"Harbor Finch"}}'
ingest '{"type":"note.added","source":"cli","data":{"text":"Dana runs Harbor Finch, a coffee roaster; wants a wholesale portal for cafés, budget around 5k.","contact":"dana@harborfinch.example"}}'
LEAD='{"type":"email.received","source":"imap","data":{"from":{"email":"dana@harborfinch.example","name":"Dana Reyes"},"to":[{"email":"me@studio.example"}],"subject":"Wholesale portal quote","text":"Hi! Could you send a quote for the wholesale portal project we talked about? Budget is flexible.","message_id":"<lead1@harborfinch.example>"}}'
ingest "$LEAD"
idle
expect_eq "triage: the email is a lead, handed on as lead.captured with its sender" \
  "$(q "SELECT json_extract(data, '\$.email') || ' ' || json_extract(data, '\$.message_id') FROM events WHERE type = 'lead.captured'")" \
  "dana@harborfinch.example <lead1@harborfinch.example>"
T=$(task_of lead-intake)
A=$(q "SELECT id FROM approvals WHERE task_id = '$T' AND status = 'pending'")
expect_eq "lead-intake: the drafted reply waits in the inbox" "$(q "SELECT status FROM tasks WHERE id = '$T'") $([ -n "$A" ] && echo pending)" "running pending"
b --json inbox >"$TMP/inbox" 2>/dev/null
jl "$TMP/inbox" "value" | grep "\"$A\"" >"$TMP/card"
expect_contains "the card shows the exact mail: to, subject, the proposal outline" \
  "$(cat "$TMP/card")" "Re: Wholesale portal quote"
expect_contains "with the outline" "$(cat "$TMP/card")" "Discovery"
expect_contains "and cites what memory holds on her (the note about her budget)" \
  "$(jq -r '.sources | map(.snippet) | join(" | ")' "$TMP/card")" "wholesale portal"
NOTE=$(q "SELECT seq FROM events WHERE type = 'note.added'")
expect_eq "each source names its event" \
  "$(jq -r "[.sources[] | select(.seq == $NOTE)] | length" "$TMP/card")" 1
b approve "$A" >/dev/null 2>&1
idle
expect_eq "approved: the outbox captured the mail (sandbox), threaded to hers" \
  "$(q "SELECT status || ' ' || json_extract(payload, '\$.to') || ' ' || json_extract(payload, '\$.in_reply_to') FROM effects WHERE task_id = '$T'")" \
  "captured dana@harborfinch.example <lead1@harborfinch.example>"
expect_eq "the text that left is the draft that was approved" \
  "$(q "SELECT json_extract(e.payload, '\$.text') = json_extract(a.payload, '\$.text') FROM effects e JOIN approvals a ON a.task_id = e.task_id WHERE e.task_id = '$T'")" 1
expect_eq "then the task waits for her answer" \
  "$(q "SELECT status FROM task_steps WHERE task_id = '$T' AND step_id = 'answer'")" waiting
ingest '{"type":"email.received","source":"imap","data":{"from":{"email":"Dana@HarborFinch.example"},"to":[{"email":"me@studio.example"}],"subject":"Re: Wholesale portal quote","text":"Thursday 10am works.","message_id":"<lead2@harborfinch.example>","in_reply_to":"<lead1@harborfinch.example>"}}'
idle
expect_eq "her answer ends the task; no follow-up is drafted; the reply is no new lead" \
  "$(q "SELECT status FROM tasks WHERE id = '$T'") $(q "SELECT status FROM task_steps WHERE task_id = '$T' AND step_id = 'nudge_draft'") $(q "SELECT count(*) FROM events WHERE type = 'lead.captured'")" \
  "succeeded skipped 1"

# support: cited draft, rejected
ingest '{"type":"note.added","source":"cli","data":{"text":"Fixed the checkout error for Lumen: the payment screen froze on mobile Safari because of the cart drawer.","contact":"priya@lumendental.example"}}'
ingest '{"type":"email.received","source":"imap","data":{"from":{"email":"priya@lumendental.example","name":"Priya Raman"},"to":[{"email":"me@studio.example"}],"subject":"Booking page broken","text":"The booking page shows an error and patients cannot book. Can you fix it?","message_id":"<s1@lumendental.example>"}}'
idle
S=$(task_of support-reply)
SA=$(q "SELECT id FROM approvals WHERE task_id = '$S' AND status = 'pending'")
expect_eq "support: triage hands it to support-reply, whose draft waits for approval" \
  "$(q "SELECT count(*) FROM events WHERE type = 'support.requested'") $([ -n "$SA" ] && echo pending)" "1 pending"
expect_eq "the similar past answer was searched" \
  "$(q "SELECT json_array_length(output, '\$.hits') > 0 FROM task_steps WHERE task_id = '$S' AND step_id = 'similar'")" 1
expect_eq "its card: the reply to her mail, escalated if left 4 hours" \
  "$(q "SELECT json_extract(preview, '\$.subject') || ' ' || on_deadline || ' ' || ((julianday(deadline) - julianday('now')) * 24 BETWEEN 3.9 AND 4.01) FROM approvals WHERE id = '$SA'")" \
  "Re: Booking page broken escalate 1"
b reject "$SA" --reason "I will call her instead" >/dev/null 2>&1
idle
expect_eq "rejected: nothing leaves, the task is canceled" \
  "$(q "SELECT count(*) FROM effects WHERE task_id = '$S'") $(q "SELECT status FROM tasks WHERE id = '$S'")" "0 canceled"

# feedback is handed on; other mail is left alone
ingest '{"type":"email.received","source":"imap","data":{"from":{"email":"raj@nimbus.example"},"to":[{"email":"me@studio.example"}],"subject":"Feedback on the dashboard","text":"Love the new dashboard, one suggestion: the export is confusing.","message_id":"<f1@nimbus.example>"}}'
ingest '{"type":"email.received","source":"imap","data":{"from":{"email":"news@vendor.example"},"to":[{"email":"me@studio.example"}],"subject":"Our newsletter","text":"Unsubscribe at any time. Your receipt is attached.","message_id":"<n1@vendor.example>"}}'
idle
expect_eq "feedback becomes feedback.received; a newsletter nothing" \
  "$(q "SELECT count(*) FROM events WHERE type = 'feedback.received'") $(q "SELECT count(*) FROM events WHERE type IN ('lead.captured', 'support.requested', 'feedback.received') AND json_extract(data, '\$.email') = 'news@vendor.example'")" \
  "1 0"
check "the chain verifies" bureau --data "$D" audit verify
sanitizer_check "no sanitizer report"
