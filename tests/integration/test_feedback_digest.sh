#!/usr/bin/env bash
# The built-in feedback-digest: a seeded week of feedback, written around
# three themes (exports, the mobile app, invoices and pricing) in different
# words, comes back as those three themes, each with its count and quotes
# that link to their events; feedback older than 7 days is left out; the
# digest is one inbox item; nothing leaves. `workflows run` fires it now.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
bureau --data "$D" init >/dev/null 2>&1
b() { bureau --data "$D" "$@"; }
q() { sqlite3 "$D/bureau.db" "$1"; }
NOW=$(date -u +%s)
at() { date -u -d "@$((NOW - $1 * 86400))" +%Y-%m-%dT%H:%M:%SZ; }
fb() { # fb THEME DAYS_AGO EMAIL TEXT
  jq -nc --arg theme "$1" --arg at "$(at "$2")" --arg email "$3" --arg text "$4" \
    '{type: "feedback.received", source: "triage", occurred_at: $at, idempotency_key: ("fb-" + $email + $at + $text[0:12]),
      data: {email: $email, message: $text, subject: "Feedback", theme_seeded: $theme}}'
}
{
  fb export 1 ann@a.example "The CSV export drops the last column when I export invoices."
  fb export 2 bob@b.example "Exporting to CSV is slow and the export file has broken columns."
  fb export 3 cy@c.example "Could the export include a CSV with all columns, not just the visible ones?"
  fb export 5 di@d.example "CSV export: columns come out in the wrong order in the exported file."
  fb mobile 1 ed@e.example "The mobile app crashes when I open it on my Android phone."
  fb mobile 2 fe@f.example "Mobile app keeps crashing on login, Android 14."
  fb mobile 4 gu@g.example "On my phone the mobile app crashes right after the login screen."
  fb mobile 6 ha@h.example "Android mobile app: crashes every time after login."
  fb pricing 2 io@i.example "The pricing page does not say whether the invoice includes VAT."
  fb pricing 3 ju@j.example "Invoice totals and the pricing page disagree on VAT."
  fb pricing 4 ka@k.example "Please show VAT on the pricing page; my invoice surprised me."
  fb pricing 5 lu@l.example "The invoice added VAT that the pricing page never mentioned."
  fb old 12 mo@m.example "An old note about the CSV export from two weeks ago."
} >"$TMP/fb.ndjson"
b ingest --bulk --file "$TMP/fb.ndjson" >/dev/null 2>&1
expect_eq "the feedback is in" "$(q "SELECT count(*) FROM events WHERE type = 'feedback.received'")" 13
b workflows enable feedback-digest >/dev/null 2>&1
run b workflows run feedback-digest
expect_contains "workflows run fires the schedule now" "$RC $OUT" "0 feedback-digest: fired now"
run b workflows run lead-intake
expect_contains "an event-started workflow cannot be run so" "$RC $ERR" "not a scheduled workflow"
b run --until-idle --timeout 60 >/dev/null 2>&1
T=$(q "SELECT id FROM tasks WHERE workflow = 'feedback-digest'")
q "SELECT output FROM task_steps WHERE task_id = '$T' AND step_id = 'themes'" >"$TMP/themes.json"
expect_eq "12 messages of the last 7 days (the older one is left out), in 3 themes" \
  "$(jq -r '"\(.total) \(.themes | length)"' "$TMP/themes.json")" "12 3"
# each theme holds exactly the messages seeded for one theme
seeded() { q "SELECT json_extract(data, '\$.theme_seeded') FROM events WHERE seq = $1"; }
groups=""
for i in 0 1 2; do
  g=$(for s in $(jq -r ".themes[$i].seqs[]" "$TMP/themes.json"); do seeded "$s"; done | sort | uniq -c | awk '{print $2 "x" $1}' | paste -sd+)
  groups="$groups $g"
done
expect_eq "the themes are the seeded ones, four messages each, none mixed" \
  "$(echo $groups | tr ' ' '\n' | sort | paste -sd' ')" "exportx4 mobilex4 pricingx4"
expect_eq "each is named by its words" \
  "$(jq -r '[.themes[].label] | map(if test("export|csv") then "export" elif test("mobile|crash|android") then "mobile" elif test("vat|pricing|invoice") then "pricing" else . end) | sort | join(" ")' "$TMP/themes.json")" \
  "export mobile pricing"
expect_eq "with counts and three quotes each, linked to their events and people" \
  "$(jq -r '[.themes[] | "\(.count):\(.quotes | length):\([.quotes[] | select(.seq > 0 and (.who | test("@")))] | length)"] | join(" ")' "$TMP/themes.json")" \
  "4:3:3 4:3:3 4:3:3"
A=$(q "SELECT id FROM approvals WHERE task_id = '$T' AND status = 'pending'")
expect_contains "one inbox item holds the digest" \
  "$(q "SELECT json_extract(preview, '\$.text') FROM approvals WHERE id = '$A'")" "12 messages since"
check "approving files it" b approve "$A"
b run --until-idle --timeout 60 >/dev/null 2>&1
expect_eq "nothing left: the task is done, no effect" \
  "$(q "SELECT status FROM tasks WHERE id = '$T'") $(q "SELECT count(*) FROM effects")" "succeeded 0"
sanitizer_check "no sanitizer report"
