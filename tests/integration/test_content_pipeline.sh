#!/usr/bin/env bash
# The built-in content-pipeline: an idea mailed to a +idea address (handed
# on by email-triage) or given on the command line becomes an outline and a
# draft that wait for review; what the operator edits and approves is what
# the publishing webhook carries (captured in sandbox), and
# content.published records the piece. Engagement reported later through a
# signed webhook attaches to the piece (bureau content, /v1/content).
. "$(dirname "$0")/lib.sh"

D=$TMP/data
bureau --data "$D" init >/dev/null 2>&1
cat >>"$D/bureau.yaml" <<'YAML'
models:
  local:
    rules:
      lead: [quote, proposal, pricing]
      other: [idea, article, newsletter]
connectors:
  - name: stats
    kind: webhook
    secret: engagement-secret
    signature_header: X-Signature
    type: content.engagement
    key_header: X-Delivery
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

# ---- engagement reported later, through a signed webhook ----
serve_start "$D" --listen 127.0.0.1:0
check "serve starts" test -n "$SRV_ADDR"
hmac_hex() { printf '%s' "$2" | openssl dgst -sha256 -hmac "$1" | awk '{print $NF}'; }
stat() { # stat DELIVERY BODY
  printf '%s' "$2" >"$TMP/hook.body"
  http POST /hooks/stats -H 'Content-Type: application/json' -H "X-Delivery: $1" \
    -H "X-Signature: $(hmac_hex engagement-secret "$2")" --data-binary "@$TMP/hook.body"
}
stat d1 "{\"piece\":\"$T\",\"metric\":\"views\",\"value\":120}"
expect_eq "an engagement report is accepted" "$CODE" 201
stat d2 "{\"piece\":\"$T\",\"metric\":\"views\",\"value\":30}"
stat d3 "{\"piece\":\"$T\",\"metric\":\"replies\"}"
stat d3 "{\"piece\":\"$T\",\"metric\":\"replies\"}" # a redelivery
stat d4 '{"piece":"01NOSUCHPIECE0000000000000","metric":"views","value":5}'
stat d5 "{\"piece\":\"$T\",\"metric\":\"Bad Metric!\",\"count\":2}"
TOKEN=$(bureau --data "$D" token create --name content 2>/dev/null)
http GET /v1/content -H "Authorization: Bearer $TOKEN"
expect_eq "GET /v1/content: the published piece with its engagement summed per metric (a redelivery once; a bad metric name counts under the event's type)" \
  "$CODE $(jq -c '[.pieces[] | {piece, title, engagement, events}]' <<<"$BODY")" \
  "200 [{\"piece\":\"$T\",\"title\":\"Skip the app\",\"engagement\":{\"content.engagement\":2,\"replies\":1,\"views\":150},\"events\":4}]"
http GET "/v1/content/$T" -H "Authorization: Bearer $TOKEN"
expect_eq "GET /v1/content/{piece}: its recent engagement, newest first" \
  "$CODE $(jq -c '[.recent[] | .metric + "=" + (.value | tostring)]' <<<"$BODY") $(jq -r '.idea_seq | type' <<<"$BODY")" \
  '200 ["content.engagement=2","replies=1","views=30","views=120"] number'
http GET /v1/content/01NOSUCHPIECE0000000000000 -H "Authorization: Bearer $TOKEN"
expect_eq "a piece never published is 404, though engagement named it" "$CODE" 404
http GET /v1/content
expect_eq "/v1/content needs a token" "$CODE" 401
serve_stop
run b content
expect_contains "bureau content lists the piece with its engagement" "$OUT" "views 150"
run b --json content show "$T"
expect_eq "bureau content show --json" "$RC $(jq -c .engagement <<<"$OUT")" \
  '0 {"content.engagement":2,"replies":1,"views":150}'
run b replay --check
expect_eq "replay rebuilds the same content tables" "$RC" 0
sanitizer_check "no sanitizer report"
