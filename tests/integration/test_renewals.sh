#!/usr/bin/env bash
# The built-in renewal-watch and renewal-draft: a retainer ending within 30
# days, a yearly subscription renewing and a subscription set to cancel are
# found (a monthly one, a canceled one and a retainer ending later are not),
# each announced once however often the watch runs, and each gets a note
# that cites the customer's own words and waits for approval.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
bureau --data "$D" init >/dev/null 2>&1
b() { bureau --data "$D" "$@"; }
q() { sqlite3 "$D/bureau.db" "$1"; }
ingest() { printf '%s\n' "$1" | bureau --data "$D" ingest >/dev/null 2>&1; }
day() { date -u -d "+$1 day" +%Y-%m-%d; }
ts() { date -u -d "+$1 day" +%Y-%m-%dT%H:%M:%SZ; }
for p in raj:Raj ann:Ann bo:Bo cy:Cy di:Di ed:Ed; do
  ingest "{\"type\":\"contact.imported\",\"source\":\"import\",\"data\":{\"email\":\"${p%%:*}@example.com\",\"name\":\"${p#*:} Example\"}}"
done
ingest '{"type":"note.added","source":"cli","data":{"text":"Raj: we will need more hours for the dashboards once the Series A closes.","contact":"raj@example.com"}}'
b memory fact raj@example.com retainer "{\"ends_at\": \"$(day 20)\", \"hours\": 20}" >/dev/null 2>&1
b memory fact ann@example.com retainer "{\"ends_at\": \"$(day 60)\", \"hours\": 10}" >/dev/null 2>&1
sub() { # sub EMAIL INTERVAL STATUS END [CANCEL_AT]
  ingest "{\"type\":\"subscription.updated\",\"source\":\"stripe\",\"data\":{\"subscription_id\":\"sub_$1\",\"customer\":{\"id\":\"cus_$1\",\"email\":\"$1@example.com\"},\"plan\":\"pro\",\"status\":\"$3\",\"interval\":\"$2\",\"current_period_end\":\"$4\"${5:+,\"cancel_at\":\"$5\"},\"amount\":900,\"currency\":\"eur\"}}"
}
sub bo year active "$(ts 10)"
sub cy month active "$(ts 12)"
sub di year canceled "$(ts 5)"
sub ed month active "$(ts 25)" "$(ts 14)"
expect_eq "the subscriptions are facts of their customers" \
  "$(q "SELECT count(*) FROM facts WHERE key = 'subscription' AND superseded_by IS NULL")" 4
for w in renewal-watch renewal-draft; do b workflows enable "$w" >/dev/null 2>&1; done
b workflows run renewal-watch >/dev/null 2>&1
b run --until-idle --timeout 60 >/dev/null 2>&1
expect_eq "due: Raj's retainer, Bo's yearly renewal, Ed's cancellation; not Ann, Cy or Di" \
  "$(q "SELECT group_concat(json_extract(data, '\$.email') || ':' || json_extract(data, '\$.kind') || ':' || json_extract(data, '\$.cancels'), ' ') FROM (SELECT data FROM events WHERE type = 'renewal.due' ORDER BY json_extract(data, '\$.email'))")" \
  "bo@example.com:subscription:0 ed@example.com:subscription:1 raj@example.com:retainer:0"
b workflows run renewal-watch >/dev/null 2>&1
b run --until-idle --timeout 60 >/dev/null 2>&1
expect_eq "the next day's run announces nothing again" \
  "$(q "SELECT count(*) FROM events WHERE type = 'renewal.due'") $(q "SELECT count(*) FROM tasks WHERE workflow = 'renewal-watch' AND status = 'succeeded'")" "3 2"
RA=$(q "SELECT a.id FROM approvals a WHERE json_extract(a.preview, '\$.to') = 'raj@example.com' AND a.status = 'pending'")
TEXT=$(q "SELECT json_extract(preview, '\$.text') FROM approvals WHERE id = '$RA'")
expect_contains "Raj's note names his retainer and its end" "$TEXT" "our retainer (20 hours a month) comes up for renewal on $(day 20)"
expect_contains "and suggests more hours from his own words, cited" "$TEXT" "more hours for the dashboards"
expect_eq "the approval shows that source" \
  "$(q "SELECT count(*) FROM json_each((SELECT sources FROM approvals WHERE id = '$RA')) WHERE value ->> '\$.snippet' LIKE '%more hours%'")" 1
expect_contains "Ed's note is about the cancellation" \
  "$(q "SELECT json_extract(preview, '\$.text') FROM approvals WHERE json_extract(preview, '\$.to') = 'ed@example.com'")" "is set to end on $(day 14)"
expect_contains "Bo's suggests the yearly plan's saving" \
  "$(q "SELECT json_extract(preview, '\$.text') FROM approvals WHERE json_extract(preview, '\$.to') = 'bo@example.com'")" "yearly plan"
check "approve Raj's" b approve "$RA"
b run --until-idle --timeout 60 >/dev/null 2>&1
expect_eq "captured as approved" \
  "$(q "SELECT status FROM effects WHERE json_extract(payload, '\$.to') = 'raj@example.com'")" captured
sanitizer_check "no sanitizer report"
