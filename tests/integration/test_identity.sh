#!/usr/bin/env bash
# Identity (the "identity" projection): contacts, identities and
# organisations from emails, forms, payments, calendars and imports; free
# mail gets no organisation; a person under two addresses is one contact
# after `memory merge`, and `unmerge` undoes it; replay gives the same.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
bureau --data "$D" init >/dev/null 2>&1
q() { sqlite3 "$D/bureau.db" "$1"; }
cat >"$TMP/events.ndjson" <<'NDJSON'
{"type":"email.received","source":"imap","data":{"from":{"email":"Ann.Smith@Acme.example","name":"Ann Smith"},"to":[{"email":"me@studio.example","name":"Me"}],"cc":[{"email":"cfo@acme.example"}],"subject":"Quote","text":"Hi","message_id":"<1@acme>"}}
{"type":"form.submitted","source":"site","data":{"form":"contact","fields":{"email":"ann@gmail.com","name":"Ann Smith","phone":"+41 79 123 45 67","company":"Acme"}}}
{"type":"payment.succeeded","source":"stripe","data":{"amount":5000,"currency":"eur","customer":{"id":"cus_ann","email":"ANN@gmail.com","name":"Ann Smith"},"provider_id":"pi_1"}}
{"type":"calendar.event.created","source":"ics","data":{"uid":"u1","summary":"Kick-off","start":"2027-01-05T10:00:00Z","end":"2027-01-05T11:00:00Z","organizer":{"email":"me@studio.example"},"attendees":[{"email":"ann.smith@acme.example","name":"Ann"},{"email":"dev@partner.example","name":"Dev Partner"}]}}
{"type":"contact.imported","source":"csv","data":{"email":"zoe@yahoo.fr","name":"Zoé Martin","company":"Freelance"}}
{"type":"form.submitted","source":"site","data":{"form":"contact","fields":{"message":"no address here"}}}
NDJSON
check "the events go in" bureau --data "$D" ingest --bulk --file "$TMP/events.ndjson"
contact() { bureau --data "$D" --json memory profile "$1" 2>/dev/null; }
run contact ann.smith@acme.example
A1=$(jget "$OUT" '$.id')
expect_eq "an email sender becomes a contact, named, with the domain's organisation" \
  "$(jget "$OUT" '$.name') $(jget "$OUT" '$.org.domain')" "Ann Smith acme.example"
expect_eq "the calendar attendee with the same address (other case) is the same contact" \
  "$(jget "$OUT" '$.events')" 2
run contact ann@gmail.com
A2=$(jget "$OUT" '$.id')
expect_eq "the form and the payment under the free-mail address are one contact, with no organisation" \
  "$(jget "$OUT" '$.org') $(jget "$OUT" '$.phone')" " +41791234567"
expect_eq "the payment customer id is one of its identities" "$(jget "$(contact cus_ann)" '$.id')" "$A2"
check "two contacts before the merge" test "$A1" != "$A2"
expect_eq "recipients and cc are contacts too; a CC at the same company shares the organisation" \
  "$(jget "$(contact cfo@acme.example)" '$.org.domain')" "acme.example"
expect_eq "free mail: no organisation for yahoo.fr" "$(jget "$(contact zoe@yahoo.fr)" '$.org')" ""
expect_eq "no organisation row for any free-mail domain" \
  "$(q "SELECT count(*) FROM orgs WHERE domain IN ('gmail.com', 'yahoo.fr')")" 0
expect_eq "a form without an address names nobody" "$(q "SELECT count(*) FROM contacts")" 6
run bureau --data "$D" memory merge nobody@nowhere.example "$A2"
expect_eq "merging an unknown contact: exit 1 naming it" \
  "$RC $(grep -c 'nobody@nowhere.example' <<<"$ERR")" "1 1"
run bureau --data "$D" memory merge "$A1" "$A1"
expect_eq "merging a contact into itself: refused" "$RC" 1
check "merge the free-mail contact into the work one" bureau --data "$D" memory merge ann.smith@acme.example cus_ann
run contact ann@gmail.com
expect_eq "after the merge every identity names the work contact" \
  "$(jget "$OUT" '$.id') $(jget "$(contact +41791234567)" '$.id') $(jget "$(contact cus_ann)" '$.id')" \
  "$A1 $A1 $A1"
expect_eq "its profile lists the identities from email, form and payment" \
  "$(printf '%s' "$OUT" >"$TMP/p.json"; sqlite3 :memory: "SELECT group_concat(value ->> '\$.kind' || ':' || (value ->> '\$.value'), ' ') FROM json_each(readfile('$TMP/p.json'), '\$.identities')")" \
  "email:ann.smith@acme.example email:ann@gmail.com phone:+41791234567 payment:cus_ann"
run bureau --data "$D" --json memory contacts
expect_eq "the merged-away contact is no longer listed" "$(grep -c "$A2" <<<"$OUT")" 0
echo '{"type":"payment.succeeded","source":"stripe","data":{"amount":700,"currency":"eur","customer":{"id":"cus_ann"},"provider_id":"pi_3"}}' |
  bureau --data "$D" ingest >/dev/null 2>&1
expect_eq "a later payment by the customer id lands on the merged contact" \
  "$(q "SELECT contact_id FROM identities WHERE value = 'cus_ann'")" "$A1"
before=$(q "SELECT group_concat(id || '|' || coalesce(merged_into, '') || '|' || coalesce(org_id, ''), ',') FROM (SELECT * FROM contacts ORDER BY id)")
check "replay --check: the contacts are a function of the log" bureau --data "$D" replay --check
check "a full rebuild" bureau --data "$D" replay --projection identity --full
expect_eq "the rebuild gives the same contacts, ids and merges" \
  "$(q "SELECT group_concat(id || '|' || coalesce(merged_into, '') || '|' || coalesce(org_id, ''), ',') FROM (SELECT * FROM contacts ORDER BY id)")" "$before"
check "unmerge" bureau --data "$D" memory unmerge "$A2"
expect_eq "after the unmerge the free-mail identities are its own again" \
  "$(jget "$(contact ann@gmail.com)" '$.id') $(jget "$(contact cus_ann)" '$.id') $(jget "$(contact ann.smith@acme.example)" '$.id')" \
  "$A2 $A2 $A1"
run bureau --data "$D" memory unmerge "$A2"
expect_eq "unmerging twice: refused" "$RC" 1
run bureau --data "$D" events --type memory.merged --json
expect_eq "the merge is an event that names who did it" "$(jget "$OUT" '$.data.by')" cli
# ---- facts ----
fact() { # fact CONTACT KEY [--history]: value:source:current:conflict of KEY's facts, oldest first
  bureau --data "$D" --json memory facts "$1" ${3:+--history} 2>/dev/null | paste -sd, | sed 's/^/[/; s/$/]/' >"$TMP/fa.json"
  sqlite3 :memory: "SELECT group_concat((value -> '\$.value') || ':' || json_extract(value, '\$.source') || ':' || json_extract(value, '\$.current') || ':' || json_extract(value, '\$.conflict'), ' ') FROM json_each(readfile('$TMP/fa.json')) WHERE json_extract(value, '\$.key') = '$2'"
}
expect_eq "facts from the form: the phone, with its source" "$(fact ann@gmail.com phone)" '"+41791234567":form:1:0'
expect_eq "payments: the total while merged is the work contact's (5000 + 700)" \
  "$(fact ann.smith@acme.example payment_total)" '{"eur":5700}:payment:1:0'
expect_eq "after the unmerge the free-mail contact has its own total again" \
  "$(fact ann@gmail.com payment_total)" '{"eur":5000}:payment:1:0'
printf '%s\n' '{"type":"form.submitted","source":"site","data":{"form":"c","fields":{"email":"ann@gmail.com","name":"Ann S."}}}' \
  '{"type":"payment.succeeded","source":"stripe","data":{"amount":1,"currency":"eur","customer":{"id":"cus_ann","name":"A. Smith"},"provider_id":"pi_9"}}' |
  bureau --data "$D" ingest --bulk >/dev/null 2>&1
expect_eq "a newer form's name supersedes the older form's; the payment's differs: a conflict, both kept" \
  "$(fact ann@gmail.com name)" '"Ann S.":form:1:1 "A. Smith":payment:1:1'
expect_eq "with --history the superseded name is there too, not current" \
  "$(fact ann@gmail.com name --history)" '"Ann Smith":form:0:0 "Ann S.":form:1:1 "A. Smith":payment:1:1'
check "the operator records the name" bureau --data "$D" memory fact ann@gmail.com name '"Ann Smith"'
expect_eq "the operator's fact supersedes every other: the conflict is resolved" \
  "$(fact ann@gmail.com name)" '"Ann Smith":operator:1:0'
run bureau --data "$D" memory fact ann@gmail.com "Bad Key" x
expect_eq "a bad key is refused, named" "$RC $(grep -c 'key:' <<<"$ERR")" "1 1"
check "merge again" bureau --data "$D" memory merge ann.smith@acme.example ann@gmail.com
expect_eq "the merged contact's facts follow it" "$(fact ann.smith@acme.example phone)" '"+41791234567":form:1:0'
check "replay --check with facts" bureau --data "$D" replay --check
# ---- the memory step kinds ----
mkdir -p "$D/workflows"
cat >"$D/workflows/tag-lead.yaml" <<'YAML'
name: tag-lead
on: {event: lead.tagged}
steps:
  - id: who
    do: memory.resolve
    with: {who: "{{ event.data.email }}"}
  - id: remember
    if: steps.who.output.found
    do: memory.record_fact
    with: {who: "{{ steps.who.output.id }}", key: stage, value: "{{ event.data.stage }}", confidence: 0.9}
YAML
printf '%s\n' '{"type":"lead.tagged","source":"t","data":{"email":"Ann.Smith@acme.example","stage":"qualified"}}' \
  '{"type":"lead.tagged","source":"t","data":{"email":"nobody@nowhere.example","stage":"x"}}' |
  bureau --data "$D" ingest --bulk >/dev/null 2>&1
check "the workflow runs" bureau --data "$D" run --until-idle --timeout 60
expect_eq "memory.resolve found the contact; memory.record_fact recorded a step's fact" \
  "$(fact ann.smith@acme.example stage)" '"qualified":step:1:0'
expect_eq "an unknown person: resolve says not found, and nothing is recorded" \
  "$(sqlite3 "$D/bureau.db" "SELECT group_concat(s.step_id || '=' || s.status, ' ') FROM (SELECT s.step_id, s.status FROM task_steps s JOIN tasks t ON t.id = s.task_id JOIN events e ON e.seq = t.trigger_seq WHERE json_extract(e.data, '$.email') = 'nobody@nowhere.example' ORDER BY s.pos) s")" \
  "who=succeeded remember=skipped"
# ---- export ----
check "export to a file" bureau --data "$D" memory export ann.smith@acme.example --out "$TMP/ann.json"
expect_eq "the export holds the profile, the facts with history and every event naming them" \
  "$(sqlite3 :memory: "SELECT json_extract(readfile('$TMP/ann.json'), '\$.profile.id') || ' ' || (json_array_length(readfile('$TMP/ann.json'), '\$.events') >= 5) || ' ' || (SELECT count(*) FROM json_each(readfile('$TMP/ann.json'), '\$.facts') WHERE value ->> '\$.key' = 'name')")" \
  "$A1 1 6"
expect_eq "the export's events include the calendar invitation and the later payment" \
  "$(sqlite3 :memory: "SELECT group_concat(DISTINCT value ->> '\$.type') FROM (SELECT value FROM json_each(readfile('$TMP/ann.json'), '\$.events') ORDER BY value ->> '\$.type')")" \
  "calendar.event.created,email.received,form.submitted,lead.tagged,payment.succeeded,step.completed"
run bureau --data "$D" memory export ann.smith@acme.example --out "$TMP/ann.json"
expect_eq "export never overwrites a file" "$RC" 1

# ---- over HTTP ----
TOKEN=$(bureau --data "$D" token create --name identity 2>/dev/null)
serve_start "$D" --listen 127.0.0.1:0 || not_ok "serve starts" "$SRV_LINE"
http GET "/v1/contacts?q=acme" -H "Authorization: Bearer $TOKEN"
expect_eq "GET /v1/contacts?q=acme: the contacts of that organisation" \
  "$CODE $(jget "$BODY" '$.contacts[0].org')" "200 acme.example"
http GET "/v1/contacts/ann.smith@acme.example" -H "Authorization: Bearer $TOKEN"
expect_eq "GET /v1/contacts/EMAIL: the profile with its identities and current facts" \
  "$CODE $(jget "$BODY" '$.id') $(printf '%s' "$BODY" >"$TMP/c.json"; sqlite3 :memory: "SELECT count(*) FROM json_each(readfile('$TMP/c.json'), '\$.facts') WHERE value ->> '\$.key' = 'stage'")" \
  "200 $A1 1"
http GET /v1/contacts/nobody@nowhere.example -H "Authorization: Bearer $TOKEN"
expect_eq "an unknown contact: 404" "$CODE" 404
http GET /v1/contacts
expect_eq "without a token: 401" "$CODE" 401
serve_stop
# ---- facts from a signature, through the extract route ----
jq -nc '{type: "email.received", source: "imap", data: {from: {email: "dana@harborfinch.example", name: "Dana"},
  to: [{email: "me@studio.example"}], subject: "Thanks",
  text: "Hi,\n\nThanks for the call.\n\nBest,\nDana Reyes\nHead of Operations\nHarbor Finch Coffee Ltd\n+1 555 0100\n\n> On Monday Bob wrote:\n> Bob Stone\n> CTO, Other Corp",
  message_id: "<sig1@harborfinch>"}}' >"$TMP/sig.ndjson"
bureau --data "$D" ingest --bulk --file "$TMP/sig.ndjson" >/dev/null 2>&1
bureau --data "$D" run --until-idle --timeout 60 >/dev/null 2>&1
deadline=$((SECONDS + 60))
facts() { bureau --data "$D" --json memory facts dana@harborfinch.example 2>/dev/null; }
until facts | grep -q '"role"' || [ $SECONDS -ge $deadline ]; do
  bureau --data "$D" run --until-idle --timeout 10 >/dev/null 2>&1 # the reactor's next turn
done
facts >"$TMP/facts"
expect_eq "the signature's role, company and phone become facts from the extract route" \
  "$(jl "$TMP/facts" "group_concat(json_extract(value, '\$.key') || '=' || json_extract(value, '\$.value'), ';') FILTER (WHERE json_extract(value, '\$.source') = 'extract' AND json_extract(value, '\$.key') IN ('role', 'company', 'phone'))")" \
  "company=Harbor Finch Coffee Ltd;phone=+15550100;role=Head of Operations"
expect_eq "with the extraction's confidence; the quoted sender's title is not hers" \
  "$(jl "$TMP/facts" "count(*) FILTER (WHERE json_extract(value, '\$.source') = 'extract' AND json_extract(value, '\$.confidence') = 0.6)") $(grep -c 'CTO' "$TMP/facts")" \
  "4 0"
N=$(sqlite3 "$D/bureau.db" "SELECT count(*) FROM events WHERE type = 'memory.fact.recorded'")
bureau --data "$D" ingest --bulk --file <(jq -c '.data.message_id = "<sig2@harborfinch>"' "$TMP/sig.ndjson") >/dev/null 2>&1
bureau --data "$D" run --until-idle --timeout 60 >/dev/null 2>&1
until [ "$(sqlite3 "$D/bureau.db" "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.workflow') = 'memory-facts'")" -ge 2 ] || [ $SECONDS -ge $deadline ]; do
  bureau --data "$D" run --until-idle --timeout 10 >/dev/null 2>&1
done
expect_eq "the same signature again records nothing new" \
  "$(sqlite3 "$D/bureau.db" "SELECT count(*) FROM events WHERE type = 'memory.fact.recorded'")" "$N"
check "the chain verifies" bureau --data "$D" audit verify
sanitizer_check "no sanitizer reports"
