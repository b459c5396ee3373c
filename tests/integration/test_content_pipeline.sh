#!/usr/bin/env bash
# The built-in content-pipeline: an idea mailed to a +idea address (handed
# on by email-triage) or given on the command line becomes an outline and a
# draft that wait for review; what the operator edits and approves is what
# the publishing webhook carries (captured in sandbox), and
# content.published records the piece.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
bureau --data "$D" init >/dev/null 2>&1
cat >>"$D/bureau.yaml" <<'YAML'
models:
  local:
    rules:
      lead: [quote, proposal, pricing]
      other: [idea, article, newsletter]
YAML
b() { bureau --data "$D" "$@"; }
q() { sqlite3 "$D/bureau.db" "$1"; }
ingest() { printf '%s\n' "$1" | bureau --data "$D" ingest >/dev/null 2>&1; }
idle() { bureau --data "$D" run --until-idle --timeout 60 >/dev/null 2>&1; }
for w in email-triage content-pipeline lead-intake; do b workflows enable "$w" >/dev/null 2>&1; done
ingest '{"type":"email.received","source":"imap","data":{"from":{"email":"me@studio.example"},"to":[{"email":"me+idea@studio.example"}],"subject":"Why small shops should skip the custom app","text":"Most of my clients ask for an app when a good mobile site and a booking widget would do. Pricing, upkeep, app store reviews.","message_id":"<idea1@studio.example>"}}'
idle
expect_eq "a mail to +idea is an idea (content.idea), not a lead, though it says pricing" \
  "$(q "SELECT count(*) FROM events WHERE type = 'content.idea'") $(q "SELECT count(*) FROM events WHERE type = 'lead.captured'")" "1 0"
T=$(q "SELECT id FROM tasks WHERE workflow = 'content-pipeline'")
A=$(q "SELECT id FROM approvals WHERE task_id = '$T' AND status = 'pending'")
q "SELECT preview FROM approvals WHERE id = '$A'" >"$TMP/preview.json"
expect_eq "outline, then draft: the draft waits for review under its working title" \
  "$(jq -r .title "$TMP/preview.json")" "Why small shops should skip the custom app"
expect_contains "the draft follows the outline's headings" "$(jq -r .body "$TMP/preview.json")" "## What we do instead"
jq '.body = "# Skip the app\n\nA mobile site and a booking widget do the job." | .title = "Skip the app"' "$TMP/preview.json" >"$TMP/edited.json"
check "edit and approve" b approve "$A" --edit "$TMP/edited.json"
idle
expect_eq "what was approved is what the publishing webhook carries (captured in sandbox)" \
  "$(q "SELECT status || ' ' || json_extract(payload, '\$.body.title') || ' ' || json_extract(payload, '\$.body.piece') FROM effects WHERE task_id = '$T'")" \
  "captured Skip the app $T"
expect_eq "content.published records the piece, and the task is done" \
  "$(q "SELECT json_extract(data, '\$.piece') || ' ' || json_extract(data, '\$.title') FROM events WHERE type = 'content.published'") $(q "SELECT status FROM tasks WHERE id = '$T'")" \
  "$T Skip the app succeeded"
ingest '{"type":"content.idea","source":"cli","data":{"idea":"A checklist for moving a shop to Shopify without losing SEO."}}'
idle
expect_eq "an idea from the command line takes the same path" \
  "$(q "SELECT count(*) FROM approvals a JOIN tasks t ON t.id = a.task_id WHERE t.workflow = 'content-pipeline' AND a.status = 'pending'")" 1
sanitizer_check "no sanitizer report"
