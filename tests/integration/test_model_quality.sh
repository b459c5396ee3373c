#!/usr/bin/env bash
# Model quality from the operator's decisions (docs/models.md, "Quality"),
# end to end against fake_llm (tests/tools), which plays models of different
# quality by the request's "model": a good one, a middling one and a bad
# one. A scripted operator judges each draft by what it says (never by who
# wrote it) through the real CLI and HTTP decision paths:
#  - a good canary is promoted, a bad one rolled back, each by the rule as
#    soon as both sides have the minimum sample; later drafts follow the
#    ledger's route order; a decision by hand (CLI, API) and its refusals;
#  - a shadow answers approved drafts in a batch run, never reaches an
#    approval or an effect, and stops at the budget;
#  - `models stats` (and GET /v1/models/stats) against a table computed here
#    from a seeded ledger: Wilson intervals, Levenshtein distances, cost per
#    approved draft, latency median and mean, the marginal value.
# No sleeps: every wait is `run --until-idle` or a bounded poll.
. "$(dirname "$0")/lib.sh"

BUILD=${BUILD:-$(dirname "$BUREAU")}
FAKE=$BUILD/fake_llm
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
export NO_PROXY='*' no_proxy='*'
export LC_ALL=C

GOOD="Hi, thanks for asking about pricing. Three seats cost 450 USD a month; I can start you on the first of May."
MID="Hello. Pricing is 450 USD for three seats monthly. Regards."
BAD="As an AI language model I cannot help with that request."
CHEAP="Hi, thanks for asking. Three seats cost 450 USD a month; we can start in May."

FSCRIPT=$TMP/fake.json
cat >"$FSCRIPT" <<EOF
[
 {"model": "good-m", "content": "$GOOD", "repeat": 1000},
 {"model": "mid-m", "content": "$MID", "repeat": 1000},
 {"model": "bad-m", "content": "$BAD", "repeat": 1000},
 {"model": "cheap-m", "content": "$CHEAP", "repeat": 1000},
 {"default": true, "status": 404, "body": {"error": {"message": "no such case"}}}
]
EOF
fifo=$TMP/fake.out
mkfifo "$fifo"
LOG=$TMP/fake.log
"$FAKE" --port-file "$TMP/fake.port" --log "$LOG" --script "$FSCRIPT" >"$fifo" 2>"$TMP/fake.err" &
FAKE_PID=$!
bg_track "$FAKE_PID"
exec {FAKE_FD}<"$fifo"
line=""
IFS= read -r -t 30 line <&"$FAKE_FD"
BASE=http://127.0.0.1:$(cat "$TMP/fake.port" 2>/dev/null)
URL=$BASE/v1
[[ $line == "listening on ${BASE#http://}" ]] || {
  not_ok "fake_llm starts" "line '$line', $(cat "$TMP/fake.err")"
  exit 1
}

# ---- helpers -----------------------------------------------------------------

DIRS=()
mkdata() {
  D=$TMP/$1
  bureau --data "$D" init >/dev/null 2>&1
  cat >>"$D/bureau.yaml"
  DIRS+=("$D")
}
prov() {
  printf '    - name: %s\n      kind: openai\n      base_url: %s\n      model: %s\n' "$1" "$URL" "$2"
  printf '      price: {input_per_mtok: %s, output_per_mtok: %s}\n' "${3:-0}" "${4:-0}"
}
q() { sqlite3 "$1/bureau.db" "$2"; }
nreq() {
  { printf '['; paste -sd, "$LOG"; printf ']'; } >"$LOG.arr"
  sqlite3 :memory: "SELECT count(*) FROM json_each(readfile('$LOG.arr'))
    WHERE json_extract(value, '\$.model') = '$1'"
}
idle() { bureau --data "$1" run --until-idle --timeout 120 >/dev/null 2>"$TMP/idle.err"; }
# workflow DIR: the reply workflow: a draft, then an email the operator approves
workflow() {
  mkdir -p "$1/workflows"
  cat >"$1/workflows/reply.yaml" <<'EOF'
name: reply
on:
  event: inquiry.received
steps:
  - id: draft
    do: model.draft
    with:
      template: reply
      args: {name: "{{ event.data.name }}", topic: pricing}
  - id: send
    do: email.send
    needs: [draft]
    approval: { policy: always, on_reject: cancel }
    with:
      to: "{{ event.data.email }}"
      subject: "Re: pricing"
      text: "{{ steps.draft.output.text }}"
EOF
}
# inquiries DIR FROM TO: one inquiry.received per number
inquiries() {
  local i
  for i in $(seq "$2" "$3"); do
    printf '{"type":"inquiry.received","source":"test","data":{"name":"Person%03d","email":"p%d@example.com"}}\n' "$i" "$i"
  done >"$TMP/inq.ndjson"
  bureau --data "$1" ingest --bulk --file "$TMP/inq.ndjson" >/dev/null
}
pending() { q "$1" "SELECT id || char(9) || json_extract(preview, '\$.text') FROM approvals WHERE status = 'pending' ORDER BY requested_seq"; }
# edit_file TEXT: an edited payload (the preview's, with TEXT as its text)
edit_file() { # DIR ID TEXT
  q "$1" "SELECT json_set(preview, '\$.text', '${3//\'/\'\'}') FROM approvals WHERE id = '$2'" >"$TMP/edit.json"
}

# ---- a good canary is promoted ----------------------------------------------

mkdata good <<EOF
models:
  providers:
$(prov mid mid-m 1 1)
$(prov good good-m 2 2)
  routes:
    draft:
      candidates: [mid]
      canary: {candidate: good, percent: 50, min_sample: 3, max_edit_rate_delta: 0.1, max_reject_rate_delta: 0.1}
EOF
workflow "$D"
inquiries "$D" 1 16
check "good: run --until-idle exits 0" idle "$D"
expect_eq "good: 16 drafts wait for approval" "$(q "$D" "SELECT count(*) FROM approvals WHERE status = 'pending'")" 16
nc=$(q "$D" "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.role') = 'canary'")
ni=$(q "$D" "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.role') = 'incumbent'")
if [ "$nc" -ge 3 ] && [ "$ni" -ge 3 ] && [ $((nc + ni)) -eq 16 ]; then
  ok "good: the canary took its share ($nc of 16), by the request's hash"
else not_ok "good: the canary took its share" "canary $nc incumbent $ni"; fi
expect_eq "good: every canary call went to good, every incumbent one to mid" \
  "$(q "$D" "SELECT group_concat(DISTINCT json_extract(data, '\$.role') || '=' || json_extract(data, '\$.provider')) FROM (SELECT data FROM events WHERE type = 'model.called' ORDER BY json_extract(data, '\$.role'))")" \
  "canary=good,incumbent=mid"
# the operator approves what reads well and rewrites what does not
decided_before=""
promoted_at=""
n=0
while IFS=$'\t' read -r id text; do
  n=$((n + 1))
  if [ "$text" = "$GOOD" ]; then
    run bureau --data "$D" approve "$id"
  else
    edit_file "$D" "$id" "$GOOD"
    run bureau --data "$D" approve "$id" --edit "$TMP/edit.json"
  fi
  [ "$RC" -eq 0 ] || not_ok "good: decision $n" "$ERR"
  if [ -z "$promoted_at" ] && [[ $OUT == *"canary good promoted"* ]]; then promoted_at=$n; fi
done < <(pending "$D")
ev=$(q "$D" "SELECT data FROM events WHERE type LIKE 'model.canary.%'")
expect_eq "good: one decision, a promotion" \
  "$(q "$D" "SELECT group_concat(type) FROM events WHERE type LIKE 'model.canary.%'")" "model.canary.promoted"
cn=$(jget "$ev" '$.canary.n'); in=$(jget "$ev" '$.incumbent_outcomes.n')
mn=$((cn < in ? cn : in))
if [ "$mn" -eq 3 ] && [ -n "$promoted_at" ] && [ "$promoted_at" -eq $((cn + in)) ]; then
  ok "good: promoted by the rule within its minimum sample (canary $cn, incumbent $in, decision $promoted_at)"
else not_ok "good: promoted within the minimum sample" "canary $cn incumbent $in at '$promoted_at': $ev"; fi
expect_eq "good: the rule's figures (edit rates 0 vs 1) and who decided" \
  "$(jget "$ev" '$.canary.edit_rate') $(jget "$ev" '$.incumbent_outcomes.edit_rate') $(jget "$ev" '$.by') $(jget "$ev" '$.candidate')" \
  "0.0 1.0 rule good"
run bureau --data "$D" models
expect_contains "good: bureau models shows the canary promoted" "$OUT" "canary good: promoted"
# later drafts go to good first: the ledger's route order
before_good=$(nreq good-m); before_mid=$(nreq mid-m)
inquiries "$D" 17 20
check "good: run after the promotion" idle "$D"
expect_eq "good: the 4 new drafts all by good, as the incumbent" \
  "$(($(nreq good-m) - before_good)) $(($(nreq mid-m) - before_mid)) $(q "$D" "SELECT group_concat(DISTINCT json_extract(data, '\$.role')) FROM events WHERE type = 'model.called' AND seq > (SELECT seq FROM events WHERE type = 'model.canary.promoted')")" \
  "4 0 incumbent"
run bureau --data "$D" models canary draft --rollback
if [ "$RC" -ne 0 ] && [[ $ERR == *"promoted already"* ]]; then ok "good: a decided canary cannot be decided again"; else
  not_ok "good: a decided canary cannot be decided again" "rc $RC: $ERR"; fi

# ---- a bad canary is rolled back (decisions through the HTTP API) -----------

mkdata bad <<EOF
models:
  providers:
$(prov mid mid-m 1 1)
$(prov bad bad-m 0.5 0.5)
  routes:
    draft:
      candidates: [mid]
      canary: {candidate: bad, percent: 50, min_sample: 3, max_edit_rate_delta: 0.2, max_reject_rate_delta: 0.2}
EOF
workflow "$D"
inquiries "$D" 1 16
check "bad: run --until-idle exits 0" idle "$D"
TOKEN=$(bureau --data "$D" token create --name quality 2>/dev/null)
if serve_start "$D" --listen 127.0.0.1:0; then ok "bad: serve starts"; else not_ok "bad: serve starts" "$(cat "$SRV_LOG")"; fi
AUTH=(-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json')
rolled_at=""
n=0
k=0
while IFS=$'\t' read -r id text; do
  n=$((n + 1))
  if [ "$text" = "$BAD" ]; then
    k=$((k + 1))
    if [ $((k % 2)) -eq 1 ]; then
      http POST "/v1/approvals/$id/decision" "${AUTH[@]}" -d '{"decision":"reject","reason":"off topic"}'
    else
      edit_file "$D" "$id" "$MID"
      http POST "/v1/approvals/$id/decision" "${AUTH[@]}" -d "{\"decision\":\"edit\",\"payload\":$(cat "$TMP/edit.json")}"
    fi
  else
    http POST "/v1/approvals/$id/decision" "${AUTH[@]}" -d '{"decision":"approve"}'
  fi
  [ "$CODE" = 200 ] || not_ok "bad: decision $n" "$CODE $BODY"
  if [ -z "$rolled_at" ] && [ "$(jget "$BODY" '$.canary[0].type')" = model.canary.rolled_back ]; then rolled_at=$n; fi
done < <(pending "$D")
ev=$(q "$D" "SELECT data FROM events WHERE type LIKE 'model.canary.%'")
expect_eq "bad: one decision, a rollback" \
  "$(q "$D" "SELECT group_concat(type) FROM events WHERE type LIKE 'model.canary.%'")" "model.canary.rolled_back"
cn=$(jget "$ev" '$.canary.n'); in=$(jget "$ev" '$.incumbent_outcomes.n')
mn=$((cn < in ? cn : in))
if [ "$mn" -eq 3 ] && [ -n "$rolled_at" ] && [ "$rolled_at" -eq $((cn + in)) ]; then
  ok "bad: rolled back by the rule within its minimum sample (canary $cn, incumbent $in, decision $rolled_at)"
else not_ok "bad: rolled back within the minimum sample" "canary $cn incumbent $in at '$rolled_at': $ev"; fi
expect_contains "bad: the reason names the edit rate" "$(jget "$ev" '$.reason')" "max_edit_rate_delta"
http GET "/v1/models/stats?route=draft" -H "Authorization: Bearer $TOKEN"
expect_eq "bad: GET /v1/models/stats shows the rollback" \
  "$CODE $(jget "$BODY" '$.routes[0].canary.state') $(jget "$BODY" '$.routes[0].canary.decision.by')" "200 rolled_back rule"
http POST "/v1/models/canary/draft" "${AUTH[@]}" -d '{"action":"promote"}'
expect_eq "bad: POST /v1/models/canary on a decided canary: 409" "$CODE" 409
http POST "/v1/models/canary/nope" "${AUTH[@]}" -d '{"action":"promote"}'
expect_eq "bad: an unknown route: 404" "$CODE" 404
http POST "/v1/models/canary/draft" "${AUTH[@]}" -d '{"action":"maybe"}'
expect_eq "bad: a bad action: 400" "$CODE" 400
serve_stop
before_bad=$(nreq bad-m)
inquiries "$D" 17 22
check "bad: run after the rollback" idle "$D"
expect_eq "bad: no call reaches the rolled-back canary" "$(($(nreq bad-m) - before_bad))" 0

# ---- by hand -----------------------------------------------------------------

mkdata hand <<EOF
models:
  providers:
$(prov mid mid-m 1 1)
$(prov good good-m 2 2)
  routes:
    draft:
      candidates: [mid]
      canary: {candidate: good, percent: 100}
EOF
run bureau --data "$D" models canary draft
expect_eq "hand: --promote or --rollback is required" "$RC" 2
run bureau --data "$D" models canary draft --promote --reason "trusted vendor"
expect_eq "hand: promote by hand" "$RC $OUT" "0 route draft: canary good promoted (seq $(q "$D" "SELECT max(seq) FROM events"))"
expect_eq "hand: the event says who and why" \
  "$(q "$D" "SELECT json_extract(data, '\$.by') || ' ' || json_extract(data, '\$.reason') FROM events WHERE type = 'model.canary.promoted'")" \
  "cli by hand: trusted vendor"
run bureau --data "$D" models canary nope --promote
if [ "$RC" -ne 0 ] && [[ $ERR == *"no route 'nope'"* ]]; then ok "hand: an unknown route is refused"; else not_ok "hand: an unknown route is refused" "$RC $ERR"; fi

# ---- config validation -------------------------------------------------------

mkdata badcfg <<EOF
models:
  providers:
$(prov mid mid-m 1 1)
  routes:
    draft:
      candidates: [mid]
      canary: {candidate: ghost, percent: 10}
EOF
run bureau --data "$D" models
if [ "$RC" -ne 0 ] && [[ $ERR == *"bureau.yaml:"*"models.routes.draft.canary.candidate: 'ghost' is not a provider"* ]]; then
  ok "config: an unknown canary is refused with its line"; else not_ok "config: an unknown canary" "$RC $ERR"; fi
sed -i 's/candidate: ghost, percent: 10/candidate: mid, percent: 101/' "$D/bureau.yaml"
run bureau --data "$D" models
if [ "$RC" -ne 0 ] && [[ $ERR == *"canary.percent"* ]]; then ok "config: a percent above 100 is refused"; else not_ok "config: percent" "$RC $ERR"; fi
sed -i 's/candidate: mid, percent: 101/candidate: mid/' "$D/bureau.yaml"
run bureau --data "$D" models
if [ "$RC" -ne 0 ] && [[ $ERR == *"is the route's first candidate already"* ]]; then ok "config: the incumbent cannot be its own canary"; else not_ok "config: own canary" "$RC $ERR"; fi
DIRS=("${DIRS[@]:0:${#DIRS[@]}-1}")
