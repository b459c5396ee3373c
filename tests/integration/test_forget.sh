#!/usr/bin/env bash
# bureau memory forget: every event naming a person is redacted in the
# ledger (the chain still verifies), the projections are rebuilt without
# them, and after the vacuum their address appears nowhere in the data
# directory; other people stay. --dry-run changes nothing.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
bureau --data "$D" init >/dev/null 2>&1
q() { sqlite3 "$D/bureau.db" "$1"; }
mkdir -p "$D/workflows"
cat >"$D/workflows/reply.yaml" <<'YAML'
name: reply
on: {event: email.received}
steps:
  - id: send
    do: email.send
    approval: never
    with: {to: "{{ event.data.from.email }}", subject: "Re: {{ event.data.subject }}", text: "Thanks!"}
YAML
cat >"$TMP/events.ndjson" <<'NDJSON'
{"type":"email.received","source":"imap","data":{"from":{"email":"Forget.Me@Example-Corp.test","name":"Fiona Gone"},"to":[{"email":"me@studio.test"}],"subject":"Secret project","text":"Call me on +44 20 7946 0958","message_id":"<f1@x>"}}
{"type":"form.submitted","source":"site","data":{"form":"contact","fields":{"email":"forget.me@example-corp.test","phone":"+44 20 7946 0958","message":"about the secret project"}}}
{"type":"payment.succeeded","source":"stripe","data":{"amount":4200,"currency":"gbp","customer":{"id":"cus_fiona","email":"forget.me@example-corp.test","name":"Fiona Gone"},"provider_id":"pi_f"}}
{"type":"email.received","source":"imap","data":{"from":{"email":"keep.me@other.test","name":"Kim Kept"},"to":[{"email":"me@studio.test"}],"subject":"Hello","text":"Just saying hi","message_id":"<k1@x>"}}
NDJSON
bureau --data "$D" ingest --bulk --file "$TMP/events.ndjson" >/dev/null 2>&1
printf '%s\n' '{"type":"note.added","source":"cli","data":{"text":"Fiona (forget.me@example-corp.test) wants the secret project by May","contact":"forget.me@example-corp.test"}}' |
  bureau --data "$D" ingest >/dev/null 2>&1
check "the workflow runs (its mails captured in sandbox)" bureau --data "$D" run --until-idle --timeout 60
check "label one of her mails" bureau --data "$D" label 2 lead
check "a fact about her" bureau --data "$D" memory fact forget.me@example-corp.test stage '"won"'
check "she is known" bureau --data "$D" memory profile forget.me@example-corp.test
present() { grep -rlai -- "$1" "$D" 2>/dev/null | wc -l; }
check "before: her address is in the data directory" test "$(present forget.me@example-corp.test)" -gt 0

run bureau --data "$D" --json memory forget forget.me@example-corp.test --dry-run
expect_eq "--dry-run lists the events that name her (emails, form, payment, step, effect, label...)" \
  "$(jget "$OUT" '$.dry_run') $(sqlite3 :memory: "SELECT json_array_length(json('${OUT//\'/\'\'}'), '\$.events') >= 6")" "1 1"
check "--dry-run changed nothing: she is still known" bureau --data "$D" memory profile forget.me@example-corp.test
N0=$(q "SELECT count(*) FROM events")

run bureau --data "$D" memory forget forget.me@example-corp.test
expect_eq "forget: exit 0" "$RC" 0
expect_contains "forget says how many events were redacted" "$OUT" "events redacted"
run bureau --data "$D" memory profile forget.me@example-corp.test
expect_eq "she is no longer known" "$RC" 1
expect_eq "no event was removed: one was added (ledger.redacted)" \
  "$(q "SELECT count(*) FROM events") $(q "SELECT count(*) FROM events WHERE type = 'ledger.redacted'")" \
  "$((N0 + 1)) 1"
expect_eq "her events' data is the redaction marker, one per seq the ledger.redacted names" \
  "$(q "SELECT count(*) FROM events WHERE data = '{\"redacted\":true}'")" \
  "$(q "SELECT json_array_length(data, '\$.seqs') FROM events WHERE type = 'ledger.redacted'")"
run bureau --data "$D" --json memory search "secret project"
expect_eq "her emails, form and note are no longer memory items" "$(grep -c 'secret' <<<"$OUT")" 0
check "the chain verifies" bureau --data "$D" audit verify
check "replay --check: the projections are what the log now says" bureau --data "$D" replay --check
expect_eq "after the vacuum her address appears in no file of the data directory" \
  "$(present forget.me@example-corp.test)" 0
expect_eq "nor her phone, her name or her customer id" \
  "$(present '7946 0958') $(present 'Fiona Gone') $(present cus_fiona)" "0 0 0"
expect_eq "the other person stays" "$(jget "$(bureau --data "$D" --json memory profile keep.me@other.test 2>/dev/null)" '$.name')" "Kim Kept"
expect_eq "the ledger.redacted event names no one but the contact id" \
  "$(q "SELECT count(*) FROM events WHERE type = 'ledger.redacted' AND data LIKE '%@%'")" 0
run sh -c "echo '{\"type\":\"ledger.redacted\",\"source\":\"cli\",\"data\":{\"seqs\":[5]}}' | \"$BUREAU\" --data \"$D\" ingest"
expect_eq "ledger.* events are the ledger's alone: even bureau ingest refuses them" \
  "$RC $(grep -c 'ledger' <<<"$ERR")" "1 1"
echo '{"type":"ledger.redacted","source":"api","data":{"seqs":[5]}}' >"$TMP/forged.json"
TOKEN=$(bureau --data "$D" token create 2>/dev/null)
serve_start "$D" --listen 127.0.0.1:0 || not_ok "serve starts" "$SRV_LINE"
http POST /v1/events -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' --data-binary @"$TMP/forged.json"
expect_eq "ledger.* is Bureau's own: the API refuses to append it" "$CODE" 400
serve_stop
# tampering with a row that was not redacted is still caught
q "UPDATE events SET data = '{\"redacted\":true}' WHERE seq = (SELECT max(seq) FROM events WHERE type = 'email.received')"
run bureau --data "$D" audit verify
expect_eq "a row made to look redacted without a ledger.redacted naming it fails the audit" "$RC" 1
sanitizer_check "no sanitizer reports"
