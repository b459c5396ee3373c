#!/usr/bin/env bash
# Consolidation: expired items (past their kind's TTL) fold, per contact
# and month, into summaries made by the summarize route (the local tier,
# offline); the items leave short-term memory, the summary is an item of
# its own that search and context packs use; a late item of a summarised
# month makes version 2, which replaces version 1 (still in the ledger);
# replay gives the same; `bureau serve` makes up a missed night at start;
# forgetting the person removes their summaries too.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
bureau --data "$D" init >/dev/null 2>&1
q() { sqlite3 "$D/bureau.db" "$1"; }
RECENT=$(date -u -d '-2 day' +%Y-%m-%dT%H:%M:%SZ)
cat >"$TMP/events.ndjson" <<NDJSON
{"type":"email.received","source":"imap","occurred_at":"2026-03-02T09:15:00Z","data":{"from":{"email":"dana@harborfinch.example","name":"Dana Reyes"},"to":[{"email":"me@studio.example"}],"subject":"Spring menu launch date","text":"The spring menu now launches on 14 March, so the Shopify theme needs to be live by the 10th. Keep the cold brew hero banner.","message_id":"<a1@harborfinch>"}}
{"type":"email.received","source":"imap","occurred_at":"2026-03-09T17:30:00Z","data":{"from":{"email":"dana@harborfinch.example","name":"Dana Reyes"},"to":[{"email":"me@studio.example"}],"subject":"Checkout problem","text":"Customers tell us the payment screen freezes when they pay with their mobile. Lost three wholesale orders this week.","message_id":"<a2@harborfinch>"}}
{"type":"email.received","source":"imap","occurred_at":"2026-04-20T10:00:00Z","data":{"from":{"email":"dana@harborfinch.example","name":"Dana Reyes"},"to":[{"email":"me@studio.example"}],"subject":"April invoice","text":"Paid the April invoice for the wholesale portal, thanks.","message_id":"<a3@harborfinch>"}}
{"type":"email.received","source":"imap","occurred_at":"2026-03-05T14:02:00Z","data":{"from":{"email":"priya@lumendental.example","name":"Priya Raman"},"to":[{"email":"me@studio.example"}],"subject":"Booking widget","text":"Appointments from the booking widget show up in Dentrix within a minute.","message_id":"<b1@lumendental>"}}
{"type":"note.added","source":"cli","occurred_at":"2026-03-12T09:00:00Z","data":{"text":"Studio idea: a café-style portfolio page."}}
{"type":"note.added","source":"cli","occurred_at":"$RECENT","data":{"text":"Dana wants a call about the summer menu.","contact":"dana@harborfinch.example"}}
NDJSON
bureau --data "$D" ingest --bulk --file "$TMP/events.ndjson" >/dev/null 2>&1
DANA=$(jget "$(bureau --data "$D" --json memory profile dana@harborfinch.example 2>/dev/null)" '$.id')
HEAD0=$(q "SELECT max(seq) FROM events")

run bureau --data "$D" --json memory consolidate --dry-run
expect_eq "a dry run lists each contact's months with expired items, and changes nothing" \
  "$RC $(jget "$OUT" '$.items') $(jget "$OUT" '$.summaries') $(jget "$OUT" '$.dry_run') $(jq '.groups | length' <<<"$OUT") $(q "SELECT max(seq) FROM events")" \
  "0 5 0 1 4 $HEAD0"

# another process (a serve elsewhere) holds the run's lease: nothing is done
q "INSERT INTO leases(name, holder, expires_ms) VALUES ('memory.consolidate', 'elsewhere', $(( $(date +%s) * 1000 + 600000 )))"
run bureau --data "$D" --json memory consolidate
expect_eq "while another process holds the lease, consolidate refuses and writes nothing" \
  "$RC $(q "SELECT max(seq) FROM events")" "1 $HEAD0"
expect_contains "... saying another process is at it" "$ERR" "another process is consolidating memory"
q "DELETE FROM leases WHERE name = 'memory.consolidate'"

run bureau --data "$D" --json memory consolidate
expect_eq "the lease is released after a run" \
  "$(q "SELECT count(*) FROM leases WHERE name = 'memory.consolidate'")" 0
expect_eq "consolidate: four summaries (Dana March and April, Priya March, the note about no one)" \
  "$RC $(jget "$OUT" '$.summaries') $(jget "$OUT" '$.failed')" "0 4 0"
expect_eq "the expired items left short-term memory; the recent note stays" \
  "$(q "SELECT group_concat(kind) FROM (SELECT kind FROM items ORDER BY id)")" "note,summary,summary,summary,summary"
expect_eq "each summary is a memory.consolidated event, version 1, listing its items" \
  "$(q "SELECT group_concat(json_extract(data, '\$.version') || ':' || json_array_length(data, '\$.items'), ' ') FROM events WHERE type = 'memory.consolidated' ORDER BY seq")" \
  "1:1 1:2 1:1 1:1"
expect_eq "Dana's March summary is about her, made by the local summarize route" \
  "$(q "SELECT subject || ' ' || json_extract(data, '\$.route') || ' ' || json_extract(data, '\$.provider') FROM events WHERE type = 'memory.consolidated' AND json_extract(data, '\$.period') = '2026-03' AND subject = 'contact:$DANA'")" \
  "contact:$DANA summarize local"
expect_eq "the model calls are recorded and counted as the consolidation's spend" \
  "$(q "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.workflow') = 'memory-consolidation'")" 4

bureau --data "$D" --json memory search "payment screen freezes" --k 3 >"$TMP/hits" 2>/dev/null
expect_eq "search finds the summary that holds the expired email" \
  "$(jl "$TMP/hits" "json_extract(value, '\$.kind') || ':' || json_extract(value, '\$.subject')" | head -n 1)" "summary:$DANA"
run bureau --data "$D" --json memory context dana@harborfinch.example --budget 2000
expect_eq "the context pack holds her summaries, cited" \
  "$(printf '%s' "$OUT" >"$TMP/ctx.json"; sqlite3 :memory: "SELECT count(*) FROM json_each(readfile('$TMP/ctx.json'), '\$.parts') WHERE value ->> '\$.kind' = 'summary' AND value ->> '\$.seq' IS NOT NULL")" 2

run bureau --data "$D" --json memory consolidate
expect_eq "a second run finds nothing to do" "$RC $(jget "$OUT" '$.items')" "0 0"

# a late email of March: version 2 of Dana's March summary replaces version 1
echo '{"type":"email.received","source":"imap","occurred_at":"2026-03-20T08:00:00Z","data":{"from":{"email":"dana@harborfinch.example"},"to":[{"email":"me@studio.example"}],"subject":"Easter opening hours","text":"We open at 7 on Easter Monday; please update the banner.","message_id":"<a4@harborfinch>"}}' >"$TMP/late.ndjson"
bureau --data "$D" ingest --bulk --file "$TMP/late.ndjson" >/dev/null 2>&1
V1=$(q "SELECT seq FROM events WHERE type = 'memory.consolidated' AND subject = 'contact:$DANA' AND json_extract(data, '\$.period') = '2026-03'")
run bureau --data "$D" --json memory consolidate
expect_eq "the late item makes version 2, which replaces version 1" \
  "$RC $(q "SELECT json_extract(data, '\$.version') || ' ' || json_extract(data, '\$.replaces') FROM events WHERE type = 'memory.consolidated' ORDER BY seq DESC LIMIT 1")" \
  "0 2 $V1"
expect_eq "one summary item per month stands: version 1's item is gone, its event stays" \
  "$(q "SELECT count(*) FROM items WHERE kind = 'summary' AND contact_id = '$DANA'") $(q "SELECT count(*) FROM items WHERE id = $V1") $(q "SELECT count(*) FROM events WHERE seq = $V1")" \
  "2 0 1"
expect_contains "version 2 was made from version 1 and the late email" \
  "$(q "SELECT text FROM items WHERE kind = 'summary' AND contact_id = '$DANA' ORDER BY id DESC LIMIT 1")" "Easter"

check "replay --check: the items (and their summaries) rebuild the same" bureau --data "$D" replay --check
check "the chain verifies" bureau --data "$D" audit verify

# the API: a contact's summaries and timeline
serve_start "$D" --listen 127.0.0.1:0 || not_ok "serve starts" "$SRV_LINE"
TOKEN=$(bureau --data "$D" token create --name t 2>/dev/null | tail -n 1)
http GET "/v1/contacts/$DANA" -H "Authorization: Bearer $TOKEN"
expect_eq "GET /v1/contacts/ID: the profile with its summaries and timeline" \
  "$CODE $(jq '.summaries | length' <<<"$BODY") $(jq -r '[.summaries[].version] | sort | join(",")' <<<"$BODY") $(jq -r '.timeline[0].type' <<<"$BODY")" \
  "200 2 1,2 memory.consolidated"
serve_stop

# serve makes up a missed night at start: expired items wait, serve folds them
D2=$TMP/data2
bureau --data "$D2" init >/dev/null 2>&1
bureau --data "$D2" ingest --bulk --file "$TMP/events.ndjson" >/dev/null 2>&1
serve_start "$D2" --listen 127.0.0.1:0 || not_ok "serve starts" "$SRV_LINE"
deadline=$((SECONDS + 60))
until [ "$(sqlite3 "$D2/bureau.db" "SELECT count(*) FROM items WHERE kind = 'summary'")" = 4 ] || [ $SECONDS -ge $deadline ]; do
  bureau --data "$D2" events --type memory.consolidated --json >/dev/null 2>&1 # a pause that does work
done
expect_eq "serve consolidates at start when expired items wait" \
  "$(sqlite3 "$D2/bureau.db" "SELECT count(*) FROM items WHERE kind = 'summary'")" 4
serve_stop
expect_eq "and stops cleanly" "$SRV_RC" 0
printf 'memory:\n  consolidate_schedule: "61 * * * *"\n' >"$D2/bureau.yaml"
run bureau --data "$D2" serve --listen 127.0.0.1:0
expect_contains "a schedule that does not parse stops serve with its key" "$RC $ERR" "memory.consolidate_schedule"

# forget: the person's summaries go with the rest
check "forget Dana" bureau --data "$D" memory forget dana@harborfinch.example
expect_eq "no summary or item of hers is left" \
  "$(q "SELECT count(*) FROM items WHERE contact_id = '$DANA'")" 0
expect_eq "her name is in no summary" "$(q "SELECT count(*) FROM items WHERE text LIKE '%Dana%'")" 0
check "the chain still verifies" bureau --data "$D" audit verify
sanitizer_check "no sanitizer report"
