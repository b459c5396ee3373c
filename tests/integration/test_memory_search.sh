#!/usr/bin/env bash
# Memory items and hybrid search (the "items" projection, memory search):
# emails, forms and notes about three contacts become items with a
# full-text index; a keyword finds the exact item, a paraphrase finds its
# item through the vectors, --subject keeps one contact's, FTS syntax in a
# query is only words, the API answers the same, and replay --check and the
# audit chain hold.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
bureau --data "$D" init >/dev/null 2>&1
# the items below occurred in March 2026: kept searchable for ten years
# (the default TTL of 30 days is checked at the end)
printf 'memory:\n  email_ttl_days: 3650\n  form_ttl_days: 3650\n  note_ttl_days: 3650\n' >"$D/bureau.yaml"
q() { sqlite3 "$D/bureau.db" "$1"; }
ITEMS="$(dirname "$0")/../data/retrieval/items.jsonl"
cat >"$TMP/events.ndjson" <<'NDJSON'
{"type":"email.received","source":"imap","occurred_at":"2026-03-02T09:15:00Z","data":{"from":{"email":"dana@harborfinch.example","name":"Dana Reyes"},"to":[{"email":"me@studio.example"}],"subject":"Spring menu launch date","text":"Hi! Quick one: the spring menu now launches on 14 March, so the Shopify theme needs to be live by the 10th. Can we keep the cold brew hero banner? — Dana","message_id":"<a1@harborfinch>"}}
{"type":"email.received","source":"imap","occurred_at":"2026-03-05T14:02:00Z","data":{"from":{"email":"priya@lumendental.example","name":"Priya Raman"},"to":[{"email":"me@studio.example"}],"subject":"Booking widget and Dentrix","text":"Beth tested the booking widget on the staging site: appointments show up in Dentrix within a minute. The second location still needs its own calendar.","message_id":"<b1@lumendental>"}}
{"type":"email.received","source":"imap","occurred_at":"2026-03-06T08:40:00Z","data":{"from":{"email":"raj@nimbus.example","name":"Raj Patel"},"to":[{"email":"me@studio.example"}],"subject":"Retainer hours for April","text":"Can we bump the retainer to 30 hours in April? The data room for the Series A opens on the 20th and the dashboards have to be right.","message_id":"<c1@nimbus>"}}
{"type":"email.received","source":"imap","occurred_at":"2026-03-09T17:30:00Z","data":{"from":{"email":"dana@harborfinch.example","name":"Dana Reyes"},"to":[{"email":"me@studio.example"}],"subject":"Checkout problem","text":"Customers tell us the payment screen freezes when they try to pay with their mobile. Lost three wholesale orders this week.","message_id":"<a2@harborfinch>"}}
{"type":"form.submitted","source":"site","occurred_at":"2026-03-10T11:00:00Z","data":{"form":"contact","fields":{"email":"priya@lumendental.example","name":"Priya Raman","company":"Lumen Dental","message":"Could you also translate the patient intake forms into Spanish? About 12 pages (solicitud de cita, historial médico)."}}}
{"type":"form.submitted","source":"site","occurred_at":"2026-03-11T10:20:00Z","data":{"form":"contact","fields":{"email":"raj@nimbus.example","name":"Raj Patel","message":"Our nightly BigQuery export failed again at 3am; the \"clickstream\" table is (partially) empty. Urgent?"}}}
NDJSON
# notes from the retrieval set, about the same three customers, spread over
# the first days of March (short-term memory: items live 30 days)
jq -c -s '
  map(select(.customer == "harbor-finch" or .customer == "lumen-dental" or .customer == "nimbus"))
  | to_entries[]
  | {type: "note.added", source: "notes",
     occurred_at: ("2026-03-" + ((1 + (.key % 9)) | tostring) + "T08:00:00Z" | sub("-(?<d>[1-9])T"; "-0\(.d)T")),
     data: {text: .value.text,
            contact: ({"harbor-finch": "dana@harborfinch.example",
                       "lumen-dental": "priya@lumendental.example",
                       "nimbus": "raj@nimbus.example"}[.value.customer])}}' "$ITEMS" >>"$TMP/events.ndjson"
# a note about someone not known yet: no subject, now or after a rebuild
echo '{"type":"note.added","source":"cli","occurred_at":"2026-03-01T07:00:00Z","data":{"text":"Met Lea at the meetup, she will write","contact":"lea@later.example"}}' >>"$TMP/events.ndjson"
echo '{"type":"email.received","source":"imap","occurred_at":"2026-03-12T08:00:00Z","data":{"from":{"email":"lea@later.example"},"to":[{"email":"me@studio.example"}],"subject":"Hello from Lea","text":"As promised at the meetup.","message_id":"<l1@later>"}}' >>"$TMP/events.ndjson"
echo '{"type":"note.added","source":"cli","occurred_at":"2026-03-12T09:00:00Z","data":{"subject":"Café","text":"Ideas for the studio: a café-style portfolio page, and NOT using AND/OR in client copy."}}' >>"$TMP/events.ndjson"
check "the events go in" bureau --data "$D" ingest --bulk --file "$TMP/events.ndjson"
N=$(wc -l <"$TMP/events.ndjson")
expect_eq "every email, form and note is an item" "$(q "SELECT count(*) FROM items")" "$N"
expect_eq "the FTS index holds them all" "$(q "SELECT count(*) FROM items_fts")" "$N"
DANA=$(jget "$(bureau --data "$D" --json memory profile dana@harborfinch.example 2>/dev/null)" '$.id')
expect_eq "an email's item is about its sender; a note's about data.contact" \
  "$(q "SELECT count(DISTINCT kind) FROM items WHERE contact_id = '$DANA'")" 2
expect_eq "an item expires 30 days after it occurred" \
  "$(q "SELECT expires_at FROM items WHERE text LIKE 'Spring menu%'")" "2026-04-01T09:15:00.000Z"
expect_eq "a note without a contact, or about someone not known yet: no subject" \
  "$(q "SELECT count(*) FROM items WHERE kind = 'note' AND contact_id IS NULL")" 2

search() { bureau --data "$D" --json memory search "$@" 2>"$TMP/search.err" >"$TMP/hits"; }
first() { jl "$TMP/hits" "json_extract(value, '$1')" | head -n 1; }
# keyword
search "hero banner" --k 5
expect_eq "a keyword search finds the exact item first" \
  "$(first "\$.snippet" | grep -c "hero banner")" 1
expect_eq "each hit has score, snippet, seq, event_id, subject, kind, at, ranks" \
  "$(jl "$TMP/hits" "count(*)" ) $(jl "$TMP/hits" "sum(json_type(value, '\$.score') = 'real' AND json_type(value, '\$.seq') = 'integer' AND json_type(value, '\$.event_id') = 'text' AND json_type(value, '\$.kind') = 'text' AND json_type(value, '\$.at') = 'text' AND json_type(value, '\$.ranks') = 'object' AND json_type(value, '\$.snippet') = 'text')")" "5 5"
SEQ=$(q "SELECT id FROM items WHERE text LIKE 'Spring menu%'")
expect_eq "the top hit's seq is that email's event" "$(first '$.seq')" "$SEQ"
# a paraphrase: none of its words is in the item, the vectors find it
search "customer payments freezing" --k 3
TARGET=$(q "SELECT id FROM items WHERE text LIKE 'Checkout problem%'")
expect_eq "a paraphrase (no word of it in the item) finds the item through the vectors" \
  "$(jl "$TMP/hits" "json_extract(value, '\$.seq') || ':' || coalesce(json_extract(value, '\$.ranks.bm25'), 'none') || ':' || (json_extract(value, '\$.ranks.vector') > 0)" | grep "^$TARGET:")" "$TARGET:none:1"
# --subject
search "Dentrix booking" --subject priya@lumendental.example --k 20
PRIYA=$(jget "$(bureau --data "$D" --json memory profile priya@lumendental.example 2>/dev/null)" '$.id')
expect_eq "--subject EMAIL keeps that contact's items only" \
  "$(jl "$TMP/hits" "count(*) > 0 AND sum(json_extract(value, '\$.subject') = '$PRIYA') = count(*)")" 1
search "Dentrix booking" --subject "$DANA"
expect_eq "another contact (by id): none of Priya's items" \
  "$(jl "$TMP/hits" "sum(json_extract(value, '\$.subject') = '$PRIYA')")" 0
run bureau --data "$D" memory search x --subject nobody@nowhere.example
expect_eq "an unknown subject: exit 1, named" "$RC $(grep -c nobody <<<"$ERR")" "1 1"
search "Dentrix" --kind email
expect_eq "--kind email: emails only" "$(jl "$TMP/hits" "group_concat(DISTINCT json_extract(value, '\$.kind'))")" email
search "Dentrix booking" --since 2026-03-08T00:00:00Z --k 50
expect_eq "--since: only items that occurred at or after it" \
  "$(jl "$TMP/hits" "count(*) > 0 AND sum(json_extract(value, '\$.at') >= '2026-03-08') = count(*)")" 1
run bureau --data "$D" memory search x --since yesterday
expect_eq "--since not a time: exit 1, named" "$RC $(grep -c since <<<"$ERR")" "1 1"
# FTS syntax is only words
for qq in '"clickstream" (partially)' 'AND OR NOT' 'NEAR(' 'export*' '"' '-' 'café' 'CAFE' 'médico' 'column:text' '^start' "O'Brien" '{text}: x'; do
  run bureau --data "$D" --json memory search "$qq"
  expect_eq "the query [$qq] is searched as words (exit 0)" "$RC" 0
done
run bureau --data "$D" --json memory search '"clickstream" (partially)'
expect_eq "quotes and parentheses: the form with those words" \
  "$(head -n1 <<<"$OUT" | grep -c 'BigQuery export')" 1
run bureau --data "$D" --json memory search 'AND/OR NOT'
expect_eq "AND, OR, NOT are words" "$(head -n1 <<<"$OUT" | grep -c 'AND/OR')" 1
run bureau --data "$D" --json memory search 'cafe'
expect_eq "diacritics are removed: cafe finds café" "$(grep -c 'portfolio page' <<<"$OUT")" 1
run bureau --data "$D" --json memory search 'historial médico'
expect_eq "unicode words" "$(head -n1 <<<"$OUT" | grep -c 'Spanish')" 1
run bureau --data "$D" memory search "hero banner"
expect_eq "the table lists the hits" "$RC $(grep -c 'hero banner' <<<"$OUT")" "0 1"
run bureau --data "$D" memory search "x" --k 0
expect_eq "--k 0: a usage error" "$RC" 2
# over HTTP
TOKEN=$(bureau --data "$D" token create --name search 2>/dev/null)
search "hero banner" --k 5
CLI=$(jl "$TMP/hits" "group_concat(json_extract(value, '\$.seq'))")
serve_start "$D" --listen 127.0.0.1:0 || not_ok "serve starts" "$SRV_LINE"
http GET "/v1/memory/search?q=hero%20banner&k=5" -H "Authorization: Bearer $TOKEN"
printf '%s' "$BODY" >"$TMP/api.json"
expect_eq "GET /v1/memory/search answers the same hits as the CLI" \
  "$CODE $(sqlite3 :memory: "SELECT group_concat(json_extract(value, '\$.seq')) FROM json_each(readfile('$TMP/api.json'), '\$.hits')")" \
  "200 $CLI"
http GET "/v1/memory/search?q=Dentrix&subject=priya%40lumendental.example" -H "Authorization: Bearer $TOKEN"
printf '%s' "$BODY" >"$TMP/api.json"
expect_eq "subject= restricts to the contact" \
  "$CODE $(sqlite3 :memory: "SELECT count(*) > 0 AND sum(json_extract(value, '\$.subject') = '$PRIYA') = count(*) FROM json_each(readfile('$TMP/api.json'), '\$.hits')")" "200 1"
http GET "/v1/memory/search?q=%22%29%28NEAR*" -H "Authorization: Bearer $TOKEN"
expect_eq "FTS syntax over HTTP: 200" "$CODE" 200
echo '{"type":"note.added","source":"cli","occurred_at":"2026-03-12T10:00:00Z","data":{"text":"Zanzibar trip for the Nimbus offsite","contact":"raj@nimbus.example"}}' |
  bureau --data "$D" ingest >/dev/null 2>&1
http GET "/v1/memory/search?q=Zanzibar%20offsite&k=1" -H "Authorization: Bearer $TOKEN"
expect_eq "an item added while serving is found (the vectors are extended)" \
  "$CODE $(jget "$BODY" '$.hits[0].ranks.vector') $(jget "$BODY" '$.hits[0].ranks.bm25')" "200 1 1"
http GET "/v1/memory/search" -H "Authorization: Bearer $TOKEN"
expect_eq "no q: 400" "$CODE" 400
http GET "/v1/memory/search?q=x&k=1000" -H "Authorization: Bearer $TOKEN"
expect_eq "k out of range: 400" "$CODE" 400
http GET "/v1/memory/search?q=x"
expect_eq "without a token: 401" "$CODE" 401
serve_stop
# rebuilds
before=$(q "SELECT count(*), sum(id), group_concat(coalesce(contact_id, '-')) FROM items")
check "replay --check: items are a function of the log" bureau --data "$D" replay --check
check "a merge" bureau --data "$D" memory merge dana@harborfinch.example raj@nimbus.example
check "replay --check after a merge" bureau --data "$D" replay --check --projection items
search "retainer" --subject dana@harborfinch.example
expect_eq "after the merge Raj's items are searched as Dana's" \
  "$(jl "$TMP/hits" "count(*) > 0 AND sum(json_extract(value, '\$.subject') = '$DANA') = count(*)")" 1
check "a full rebuild of items" bureau --data "$D" replay --projection items --full
check "a full rebuild of everything" bureau --data "$D" replay --full
expect_eq "the rebuild gives the same items" \
  "$(q "SELECT count(*), sum(id), group_concat(coalesce(contact_id, '-')) FROM items" )" \
  "$(sed 's/\(.*\)/\1/' <<<"$before" | sed "s/^\([0-9]*\)|\([0-9]*\)|.*/\1|\2|/")$(q "SELECT group_concat(coalesce(contact_id, '-')) FROM items")"
expect_eq "the FTS index is equal to the table after the rebuild" \
  "$(q "INSERT INTO items_fts(items_fts) VALUES ('integrity-check'); SELECT count(*) FROM items_fts WHERE items_fts MATCH 'Dentrix'")" \
  "$(q "SELECT count(*) FROM items WHERE text LIKE '%Dentrix%'")"
check "a snapshot" bureau --data "$D" replay --snapshot
check "replay from the snapshot" bureau --data "$D" replay
expect_eq "the index still answers after a snapshot reload" \
  "$(q "INSERT INTO items_fts(items_fts) VALUES ('integrity-check'); SELECT count(*) FROM items_fts WHERE items_fts MATCH 'Zanzibar'")" 1
check "the chain verifies" bureau --data "$D" audit verify
# ---- context packs ----
run bureau --data "$D" --json memory context dana@harborfinch.example --query "payment freezes" --budget 120
expect_eq "memory context: the contact's profile first, then facts, then items, every part cited" \
  "$RC $(jget "$OUT" '$.contact') $(jget "$OUT" '$.parts[0].kind') $(printf '%s' "$OUT" >"$TMP/ctx.json"; sqlite3 :memory: "SELECT count(*) FROM json_each(readfile('$TMP/ctx.json'), '\$.parts') WHERE value ->> '\$.seq' IS NULL")" \
  "0 $DANA profile 0"
expect_eq "the budget is kept" \
  "$(sqlite3 :memory: "SELECT json_extract(readfile('$TMP/ctx.json'), '\$.used_tokens') <= 120")" 1
expect_contains "the best item for the query is in, with its source for an approval" \
  "$(sqlite3 :memory: "SELECT group_concat(value ->> '\$.snippet', ' | ') FROM json_each(readfile('$TMP/ctx.json'), '\$.sources')")" "freezes"
run bureau --data "$D" --json memory context dana@harborfinch.example --budget 5
expect_eq "a tiny budget: only what fits (maybe nothing)" \
  "$(printf '%s' "$OUT" >"$TMP/ctx2.json"; sqlite3 :memory: "SELECT json_extract(readfile('$TMP/ctx2.json'), '\$.used_tokens') <= 5")" 1
run bureau --data "$D" memory context nobody@nowhere.example
expect_eq "an unknown contact: exit 1" "$RC" 1
mkdir -p "$D/workflows"
cat >"$D/workflows/ctx.yaml" <<'YAML'
name: ctx
on: {event: ctx.asked}
steps:
  - id: ctx
    do: memory.context
    with: {who: "{{ event.data.who }}", query: "{{ event.data.q }}", budget: 300}
YAML
echo '{"type":"ctx.asked","source":"t","data":{"who":"raj@nimbus.example","q":"retainer hours"}}' | bureau --data "$D" ingest >/dev/null 2>&1
check "a memory.context step runs" bureau --data "$D" run --until-idle --timeout 60
expect_eq "its output is the pack, with sources for an approval" \
  "$(q "SELECT json_extract(output, '\$.found') || ' ' || (json_array_length(output, '\$.sources') > 0) FROM task_steps WHERE step_id = 'ctx'")" "1 1"
cat >"$D/workflows/find.yaml" <<'YAML'
name: find
on: {event: find.asked}
steps:
  - id: find
    do: memory.search
    with: {query: "{{ event.data.q }}", subject: "{{ event.data.who }}", kinds: [email, form], k: 3}
YAML
echo '{"type":"find.asked","source":"t","data":{"who":"raj@nimbus.example","q":"BigQuery export retainer"}}' | bureau --data "$D" ingest >/dev/null 2>&1
echo '{"type":"find.asked","source":"t","data":{"who":"nobody@nowhere.example","q":"BigQuery"}}' | bureau --data "$D" ingest >/dev/null 2>&1
check "memory.search steps run" bureau --data "$D" run --until-idle --timeout 60
RAJ=$(jget "$(bureau --data "$D" --json memory profile raj@nimbus.example 2>/dev/null)" '$.id')
expect_eq "a memory.search step's hits: some, all that contact's emails and forms" \
  "$(q "SELECT (json_array_length(output, '\$.hits') > 0) || ' ' || ((SELECT count(*) FROM json_each(output, '\$.hits') WHERE value ->> '\$.kind' IN ('email', 'form') AND value ->> '\$.subject' = '$RAJ') - json_array_length(output, '\$.hits')) FROM task_steps WHERE step_id = 'find' ORDER BY task_id LIMIT 1")" \
  "1 0"
expect_eq "a subject not known yet finds nothing, and is no error" \
  "$(q "SELECT status || ' ' || json_array_length(output, '\$.hits') FROM task_steps WHERE step_id = 'find' ORDER BY task_id DESC LIMIT 1")" "succeeded 0"
run bureau --data "$D" memory search invoice --kind email,form,note,summary,email
expect_contains "more than four kinds is refused, not cut short" "$RC $ERR" "2 bureau: --kind: at most 4"
# ---- expiry: the TTL per kind ----
rm "$D/bureau.yaml"
search "hero banner" --k 5
expect_eq "with the default TTL (30 days) the March items have expired: none is searched" \
  "$(wc -l <"$TMP/hits")" 0
printf 'memory:\n  email_ttl_days: 3650\n' >"$D/bureau.yaml"
search "hero banner" --k 5
expect_eq "emails kept for ten years are found again, notes and forms are not" \
  "$(jl "$TMP/hits" "group_concat(DISTINCT json_extract(value, '\$.kind'))")" email
sanitizer_check "no sanitizer reports"
