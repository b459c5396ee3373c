#!/usr/bin/env bash
# Model quality from the operator's decisions (docs/models.md, "Quality"),
# end to end against fake_llm (tests/tools), which plays models of different
# quality by the request's "model": a good one, a middling one and a bad
# one. A scripted operator judges each draft by what it says (never by who
# wrote it) through the real CLI and HTTP decision paths:
#  - a good canary is promoted, a bad one (and one above its cost ceiling)
#    rolled back, each by the rule as soon as both sides have the minimum
#    sample; later drafts follow the ledger's route order; decisions by
#    hand (CLI, API) and their refusals; the config's checks;
#  - a shadow answers approved drafts in `batch run` (and in `serve` while
#    the batch window is open), never reaches an approval or an effect, and
#    stops at the budget;
#  - `models stats` (and GET /v1/models/stats) against a table computed here
#    from a seeded ledger: Wilson intervals, Levenshtein distances, cost per
#    approved draft, latency median and mean, the marginal value, --by.
# No sleeps: every wait is `run --until-idle` or a read bounded by -t on the
# server's event stream.
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
 {"model": "slow-m", "content": "$CHEAP", "delay_ms": 5000},
 {"model": "slow-m", "content": "$CHEAP", "repeat": 1000},
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
# A batch window that is shut while the test runs: `run` would otherwise
# answer approved drafts' shadows itself between 02:00 and 05:00 UTC (the
# default window), before the `batch run` the cases below count on.
hour=$((10#$(date -u +%H)))
SHUT=$(printf '%02d:00-%02d:00' $(((hour + 6) % 24)) $(((hour + 7) % 24)))
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
# the first 16 inquiries again: the incumbent's answers come from the cache,
# the rolled-back canary's are never served again (mid answers afresh)
ni=$(q "$D" "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.role') = 'incumbent' AND seq < (SELECT seq FROM events WHERE type = 'model.canary.rolled_back')")
nb=$(q "$D" "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.role') = 'canary'")
mark=$(q "$D" "SELECT max(seq) FROM events")
before_mid=$(nreq mid-m)
inquiries "$D" 1 16
check "bad: the same inquiries again" idle "$D"
expect_eq "bad: cached answers of the incumbent reused, the canary's replaced by fresh ones from mid" \
  "$(q "$D" "SELECT sum(json_extract(data, '\$.cache_hit')) || ' ' || group_concat(DISTINCT json_extract(data, '\$.provider')) FROM events WHERE type = 'model.called' AND seq > $mark") $(($(nreq mid-m) - before_mid)) $(q "$D" "SELECT count(*) FROM approvals WHERE status = 'pending' AND json_extract(preview, '\$.text') = '$BAD'")" \
  "$ni mid $nb 0"

# ---- a canary as good but dearer than its cost ceiling is rolled back ------

# pricey answers as well as mid, at $1000/Mtok: 18 tokens, $0.018 a draft,
# above max_cost_usd $0.01
mkdata pricey <<EOF
models:
  providers:
$(prov mid mid-m 1 1)
$(prov pricey good-m 1000 1000)
  routes:
    draft:
      candidates: [mid]
      canary: {candidate: pricey, percent: 50, min_sample: 2, max_cost_usd: 0.01}
EOF
workflow "$D"
inquiries "$D" 1 10
check "pricey: run --until-idle exits 0" idle "$D"
while IFS=$'\t' read -r id text; do
  run bureau --data "$D" approve "$id"
  [ "$RC" -eq 0 ] || not_ok "pricey: approve" "$ERR"
done < <(pending "$D")
ev=$(q "$D" "SELECT data FROM events WHERE type LIKE 'model.canary.%'")
expect_eq "pricey: every draft approved, yet rolled back for its cost" \
  "$(q "$D" "SELECT group_concat(type) FROM events WHERE type LIKE 'model.canary.%'") $(jget "$ev" '$.canary.edit_rate') $(jget "$ev" '$.canary.reject_rate') $(printf '%.3f' "$(jget "$ev" '$.canary.cost_per_draft_usd')")" \
  "model.canary.rolled_back 0.0 0.0 0.018"
expect_contains "pricey: the reason names the ceiling" "$(jget "$ev" '$.reason')" "cost per draft \$0.018000 > max_cost_usd \$0.010000"

# ---- the canary is no fallback, and the incumbent is the first candidate --

# good is the canary and also listed after inc, whose model is down (the fake
# answers 404): a request picked for the canary goes to good, any other one
# is inc's alone and fails: good never answers it as the incumbent
mkdata fallback <<EOF
models:
  providers:
$(prov inc down-m 0 0)
$(prov good good-m 0 0)
  routes:
    draft:
      candidates: [inc, good]
      canary: {candidate: good, percent: 50}
EOF
before_good=$(nreq good-m)
nfail=0
for i in $(seq 1 8); do
  run bureau --data "$D" models call draft --text "question number $i" --json
  [ "$RC" -ne 0 ] && nfail=$((nfail + 1))
done
expect_eq "fallback: the canary answered only the requests picked for it, each as the canary" \
  "$(q "$D" "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.provider') = 'good' AND json_extract(data, '\$.role') = 'canary'") $(q "$D" "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.provider') = 'good' AND json_extract(data, '\$.role') IS NOT 'canary'")" \
  "$((8 - nfail)) 0"
if [ "$nfail" -ge 1 ] && [ "$nfail" -le 7 ]; then ok "fallback: the others ($nfail of 8) were inc's alone and failed"; else
  not_ok "fallback: both sides had requests" "$nfail of 8 failed"; fi
run bureau --data "$D" models canary draft --rollback --reason "testing"
expect_eq "fallback: rolled back by hand" "$RC" 0
before_good=$(nreq good-m)
for i in $(seq 1 8); do run bureau --data "$D" models call draft --text "question number $i" --json; done
expect_eq "fallback: a rolled-back canary listed in candidates takes no more calls" "$(($(nreq good-m) - before_good))" 0
run bureau --data "$D" models stats --route draft --json
expect_eq "fallback: the effective candidates leave the rolled-back canary out" "$(jget "$OUT" '$.routes[0].candidates')" '["inc"]'

# the incumbent side of the rule is the route's first candidate: outcomes of
# a fallback to another provider (here the canary's) do not count for it
mkdata sides <<EOF
models:
  providers:
$(prov inc mid-m 0 0)
$(prov good good-m 0 0)
  routes:
    draft:
      candidates: [inc, good]
      canary: {candidate: good, percent: 50, min_sample: 50}
EOF
: >"$TMP/sides.ndjson"
side() { # N PROVIDER ROLE DECISION
  printf '{"type":"model.called","source":"test","data":{"route":"draft","provider":"%s","model":"m","outcome":"ok","cost_usd":0,"latency_ms":5,"task":"D%d","step":"draft","template":"reply@abc","workflow":"reply","role":"%s","request":"d%d"}}\n' "$2" "$1" "$3" "$1"
  printf '{"type":"approval.requested","source":"test","data":{"approval":"DA%d","task":"D%d","step":"send","attempt":1,"kind":"email.send","preview":{"text":"x"}}}\n' "$1" "$1"
  printf '{"type":"approval.decided","source":"test","data":{"approval":"DA%d","task":"D%d","step":"send","attempt":1,"decision":"%s","by":"cli"}}\n' "$1" "$1" "$4"
} >>"$TMP/sides.ndjson"
side 1 good canary approve; side 2 good canary approve
side 3 inc incumbent approve; side 4 inc incumbent approve
side 5 good incumbent reject; side 6 good incumbent reject
run bureau --data "$D" ingest --bulk --strict --file "$TMP/sides.ndjson"
run bureau --data "$D" models canary draft --promote
ev=$(q "$D" "SELECT data FROM events WHERE type = 'model.canary.promoted'")
expect_eq "sides: the incumbent's figures are inc's alone (2 approved), not the fallbacks to good" \
  "$(jget "$ev" '$.incumbent') $(jget "$ev" '$.incumbent_outcomes.n') $(jget "$ev" '$.incumbent_outcomes.reject_rate') $(jget "$ev" '$.canary.n')" \
  "inc 2 0.0 2"

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

# ---- shadows: run on approved drafts, never used, inside the budget --------

# the shadow's worst case is 8 output tokens at $1000/Mtok ($0.008); the fake
# answers 7 ($0.007): with $0.02 a day, two shadow runs fit and the third
# would exceed it ($0.014 + $0.008)
mkdata shadow <<EOF
models:
  providers:
$(prov inc mid-m 0 0)
$(prov cheap cheap-m 0 1000)
  routes:
    draft:
      candidates: [inc]
      max_output_tokens: 8
      shadow: {candidate: cheap}
  budgets: {daily_usd: 0.02}
  batch: {window: "$SHUT", timezone: UTC}
EOF
workflow "$D"
inquiries "$D" 1 4
check "shadow: run --until-idle exits 0" idle "$D"
expect_eq "shadow: nothing reaches the shadow while drafting" "$(nreq cheap-m)" 0
expect_eq "shadow: the drafts keep their request for the shadow" \
  "$(q "$D" "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.prompt') LIKE 'Hi Person%'")" 4
n=0
SENT=()
while IFS=$'\t' read -r id text; do
  n=$((n + 1))
  case $n in
  1) run bureau --data "$D" approve "$id"; SENT+=("$MID") ;;
  2) edit_file "$D" "$id" "$GOOD"; run bureau --data "$D" approve "$id" --edit "$TMP/edit.json"; SENT+=("$GOOD") ;;
  3) run bureau --data "$D" approve "$id"; SENT+=("$MID") ;;
  4) run bureau --data "$D" reject "$id" --reason "not now" ;;
  esac
  [ "$RC" -eq 0 ] || not_ok "shadow: decision $n" "$ERR"
done < <(pending "$D")
check "shadow: the approved drafts are sent" idle "$D"
appr=$(q "$D" "SELECT count(*) FROM approvals"); effs=$(q "$D" "SELECT count(*) FROM effects")
bseq=$(q "$D" "SELECT max(seq) FROM events")
run bureau --data "$D" batch run
expect_contains "shadow: batch run runs two shadows and stops at the budget" "$OUT" \
  "shadow runs: 2 (2 answered, 0 failed); stopped: parked: a budget would be exceeded"
expect_eq "shadow: two requests reached the shadow model" "$(nreq cheap-m)" 2
expect_eq "shadow: recorded as model.called role shadow, with the draft's task and step" \
  "$(q "$D" "SELECT count(*) || ' ' || group_concat(DISTINCT json_extract(data, '\$.step')) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.role') = 'shadow'")" "2 draft"
check "shadow: run after the batch run" idle "$D"
expect_eq "shadow: no approval, no effect, no task from a shadow" \
  "$(q "$D" "SELECT count(*) FROM approvals") $(q "$D" "SELECT count(*) FROM effects") $(q "$D" "SELECT count(*) FROM events WHERE seq > $bseq AND (type LIKE 'approval.%' OR type LIKE 'effect.%' OR type LIKE 'task.%' OR type LIKE 'step.%')")" \
  "$appr $effs 0"
expect_eq "shadow: its answer is in no approval and no effect" \
  "$(q "$D" "SELECT count(*) FROM approvals WHERE preview LIKE '%we can start in May%'") $(q "$D" "SELECT count(*) FROM effects WHERE payload LIKE '%we can start in May%'")" "0 0"
spend=$(q "$D" "SELECT printf('%.6f', sum(cost_usd)) FROM model_spend")
expect_eq "shadow: the spend stays inside the budget (2 x \$0.007)" "$spend" "0.014000"
run bureau --data "$D" batch run
expect_contains "shadow: a second batch run is still held by the budget" "$OUT" "shadow runs: 0 (0 answered"
expect_eq "shadow: and nothing more reached the model" "$(nreq cheap-m)" 2
# the disagreement: Levenshtein distance to the sent text / the longer text
lev() {
  awk -v a="$1" -v b="$2" 'BEGIN { m = length(a); n = length(b)
    for (j = 0; j <= n; j++) p[j] = j
    for (i = 1; i <= m; i++) { c[0] = i
      for (j = 1; j <= n; j++) { x = p[j - 1] + (substr(a, i, 1) != substr(b, j, 1))
        if (p[j] + 1 < x) x = p[j] + 1; if (c[j - 1] + 1 < x) x = c[j - 1] + 1; c[j] = x }
      for (j = 0; j <= n; j++) p[j] = c[j] }
    l = m > n ? m : n; printf "%.10f\n", l ? p[n] / l : 0 }'
}
want=$(awk -v x="$(lev "$CHEAP" "${SENT[0]}")" -v y="$(lev "$CHEAP" "${SENT[1]}")" 'BEGIN { printf "%.6f", (x + y) / 2 }')
run bureau --data "$D" models stats --json
expect_eq "shadow: stats show 2 runs, their mean disagreement and cost" \
  "$(jget "$OUT" '$.routes[0].shadows[0].provider') $(jget "$OUT" '$.routes[0].shadows[0].n') $(jget "$OUT" '$.routes[0].shadows[0].compared') $(printf '%.6f' "$(jget "$OUT" '$.routes[0].shadows[0].mean_disagreement')") $(printf '%.6f' "$(jget "$OUT" '$.routes[0].shadows[0].cost_usd')")" \
  "cheap 2 2 $want 0.014000"

# ---- a shadow the router always skips stops the pass ---------------------

# the shadow's worst case ($0.008: 8 output tokens at $1000/Mtok) is above the
# route's max_cost_usd: the router skips it without calling it, 20 approved
# drafts or not; the pass stops at the first, says why, and counts no run
mkdata skipped <<EOF
models:
  providers:
$(prov inc mid-m 0 0)
$(prov cheap cheap-m 0 1000)
  routes:
    draft:
      candidates: [inc]
      max_output_tokens: 8
      max_cost_usd: 0.001
      shadow: {candidate: cheap}
  batch: {window: "$SHUT", timezone: UTC}
EOF
: >"$TMP/skip.ndjson"
for i in $(seq 1 20); do
  printf '{"type":"model.called","source":"test","data":{"route":"draft","provider":"inc","model":"mid-m","outcome":"ok","cost_usd":0,"latency_ms":5,"task":"S%d","step":"draft","template":"reply@abc","workflow":"reply","role":"incumbent","request":"s%d","prompt":"Hi Person%d","max_output_tokens":8}}\n' "$i" "$i" "$i"
  printf '{"type":"approval.requested","source":"test","data":{"approval":"SA%d","task":"S%d","step":"send","attempt":1,"kind":"email.send","preview":{"text":"%s"}}}\n' "$i" "$i" "$MID"
  printf '{"type":"approval.decided","source":"test","data":{"approval":"SA%d","task":"S%d","step":"send","attempt":1,"decision":"approve","by":"cli"}}\n' "$i" "$i"
done >"$TMP/skip.ndjson"
run bureau --data "$D" ingest --bulk --strict --file "$TMP/skip.ndjson"
expect_eq "skipped: 20 approved drafts with their requests" \
  "$RC $(q "$D" "SELECT count(*) FROM model_outcomes o JOIN model_drafts d ON d.task_id = o.task_id AND d.step_id = o.draft_step WHERE o.decision = 'approve' AND d.prompt IS NOT NULL")" "0 20"
before_cheap=$(nreq cheap-m)
run timeout 60 "$BUREAU" --data "$D" batch run
expect_contains "skipped: batch run ends, counts no run and says why the shadows stopped" "$RC $OUT" \
  "0 batch run recorded"
expect_contains "skipped: the reason is the route's max_cost_usd" "$OUT" \
  "shadow runs: 0 (0 answered, 0 failed); stopped: the shadow cheap was not called: may cost up to \$0.0080, more than the route's max_cost_usd \$0.0010"
expect_eq "skipped: no request reached the shadow, no model.called for it" \
  "$(($(nreq cheap-m) - before_cheap)) $(q "$D" "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.role') = 'shadow'")" "0 0"

# ---- a shadow pass that cannot read its jobs fails, saying why ------------

mkdata broken <<EOF
models:
  providers:
$(prov inc mid-m 0 0)
$(prov cheap cheap-m 0 0)
  routes:
    draft:
      candidates: [inc]
      shadow: {candidate: cheap}
  batch: {window: "$SHUT", timezone: UTC}
EOF
q "$D" "ALTER TABLE model_shadows RENAME TO model_shadows_gone"
run bureau --data "$D" batch run
if [ "$RC" -ne 0 ] && [[ $ERR == *"no such table: model_shadows"* ]]; then ok "broken: batch run fails with the read error, not '0 shadow runs'"; else
  not_ok "broken: batch run fails with the read error" "rc $RC: $OUT $ERR"; fi
DIRS=("${DIRS[@]:0:${#DIRS[@]}-1}")

# ---- a pass that lost its lease stops before its next call ---------------

# the first shadow answer takes 5 s; meanwhile another holder takes the lease
# "model.shadows" (as if it had expired): the pass renews the lease before
# each call, finds it taken, and stops after the one call under way
mkdata lease <<EOF
models:
  providers:
$(prov inc mid-m 0 0)
$(prov slow slow-m 0 0)
  routes:
    draft:
      candidates: [inc]
      shadow: {candidate: slow}
  batch: {window: "$SHUT", timezone: UTC}
EOF
sed -e 's/"S\([0-9]*\)"/"L\1"/g' -e 's/"SA\([0-9]*\)"/"LA\1"/g' "$TMP/skip.ndjson" | head -n 9 >"$TMP/lease.ndjson"
run bureau --data "$D" ingest --bulk --strict --file "$TMP/lease.ndjson"
expect_eq "lease: 3 approved drafts" "$RC $(q "$D" "SELECT count(*) FROM model_outcomes WHERE decision = 'approve'")" "0 3"
exec {FLOG}< <(tail -n 0 -F "$LOG" 2>/dev/null)
bg_track $!
"$BUREAU" --data "$D" batch run >"$TMP/lease.out" 2>"$TMP/lease.err" &
BR_PID=$!
bg_track "$BR_PID"
got_call=""
deadline=$((SECONDS + 60))
while [ -z "$got_call" ] && [ $SECONDS -lt $deadline ] && IFS= read -r -t 60 fl <&"$FLOG"; do
  [[ $fl == *'"model":"slow-m"'* ]] && got_call=1
done
# the lease as another process would take it once this one's had expired
q "$D" "UPDATE leases SET holder = 'another-process', expires_ms = 9999999999999 WHERE name = 'model.shadows'"
wait "$BR_PID"
BR_RC=$?
exec {FLOG}<&-
expect_eq "lease: the first shadow call was under way when the lease was taken" "$got_call" 1
expect_contains "lease: batch run made that one call and stopped: the lease was taken" "$BR_RC $(cat "$TMP/lease.out")" \
  "shadow runs: 1 (1 answered, 0 failed); stopped: the lease model.shadows was taken by another process"
expect_eq "lease: one request reached the shadow, one model.called for it; the lease is the other's still" \
  "$(jl "$LOG" "count(*) FILTER (WHERE json_extract(value, '\$.model') = 'slow-m')") $(q "$D" "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.role') = 'shadow'") $(q "$D" "SELECT holder FROM leases WHERE name = 'model.shadows'")" \
  "1 1 another-process"

# ---- shadows in serve, while the batch window is open ----------------------

h=$((10#$(date -u +%H)))
WIN=$(printf '%02d:00-%02d:00' $(((h + 23) % 24)) $(((h + 2) % 24)))
# the skipped shadow in serve: the runner stops its pass, logs why once and
# makes no call (it used to count each skip as a run and loop at once)
mkdata skipsrv <<EOF
models:
  providers:
$(prov inc mid-m 0 0)
$(prov cheap cheap-m 0 1000)
  routes:
    draft:
      candidates: [inc]
      max_output_tokens: 8
      max_cost_usd: 0.001
      shadow: {candidate: cheap}
  batch: {window: "$WIN", timezone: UTC}
EOF
run bureau --data "$D" ingest --bulk --strict --file "$TMP/skip.ndjson"
before_cheap=$(nreq cheap-m)
if serve_start "$D" --listen 127.0.0.1:0; then ok "skipsrv: serve starts (batch window $WIN)"; else not_ok "skipsrv: serve starts" "$(cat "$SRV_LOG")"; fi
log_open
if log_wait '"shadow runs stopped".*the shadow cheap was not called: may cost up to' 60; then
  ok "skipsrv: the runner stopped its pass and said why"; else not_ok "skipsrv: the runner stopped its pass" "$(tail -c 600 "$SRV_LOG")"; fi
serve_stop
expect_eq "skipsrv: serve stops cleanly, logged the stop once, called no shadow" \
  "$SRV_RC $(grep -c '"shadow runs stopped"' "$SRV_LOG") $(($(nreq cheap-m) - before_cheap)) $(q "$D" "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.role') = 'shadow'")" \
  "0 1 0 0"

mkdata shadowsrv <<EOF
models:
  providers:
$(prov inc mid-m 0 0)
$(prov cheap cheap-m 0 1000)
  routes:
    draft:
      candidates: [inc]
      shadow: {candidate: cheap}
  batch: {window: "$WIN", timezone: UTC}
EOF
workflow "$D"
inquiries "$D" 1 2
check "shadowsrv: run --until-idle exits 0" idle "$D"
before_cheap=$(nreq cheap-m)
TOKEN=$(bureau --data "$D" token create --name shadow 2>/dev/null)
if serve_start "$D" --listen 127.0.0.1:0; then ok "shadowsrv: serve starts (batch window $WIN)"; else not_ok "shadowsrv: serve starts" "$(cat "$SRV_LOG")"; fi
AUTH=(-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json')
head=$(q "$D" "SELECT max(seq) FROM events")
sfifo=$TMP/stream.out
mkfifo "$sfifo"
curl -sS -N --noproxy '*' --max-time 120 -H "Authorization: Bearer $TOKEN" "$SRV_URL/v1/stream?since=$head" >"$sfifo" 2>/dev/null &
bg_track $!
exec {SFD}<"$sfifo"
while IFS=$'\t' read -r id text; do
  http POST "/v1/approvals/$id/decision" "${AUTH[@]}" -d '{"decision":"approve"}'
  [ "$CODE" = 200 ] || not_ok "shadowsrv: approve" "$CODE $BODY"
done < <(pending "$D")
# the server's shadow runner answers both approved drafts: wait on the stream
seen=0
while [ "$seen" -lt 2 ] && IFS= read -r -t 60 sl <&"$SFD"; do
  [[ $sl == data:*'"type":"model.called"'* ]] && seen=$((seen + 1))
done
exec {SFD}<&-
expect_eq "shadowsrv: serve ran the shadow on both approved drafts in the window" \
  "$seen $(($(nreq cheap-m) - before_cheap)) $(q "$D" "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.role') = 'shadow'")" "2 2 2"
serve_stop
expect_eq "shadowsrv: serve stops cleanly" "$SRV_RC" 0
expect_eq "shadowsrv: the shadows are compared with what was sent" \
  "$(q "$D" "SELECT count(*) FROM model_shadows WHERE disagreement IS NOT NULL")" 2

# ---- stats against a hand-computed table (a seeded ledger) ----------------

mkdata seeded <<EOF
models:
  providers:
$(prov small s-m 1 1)
$(prov large l-m 4 4)
  routes:
    draft: {candidates: [small, large]}
EOF
# provider cost latency decision drafted sent (| separated; the first draft
# also had a failed attempt costing 0.0005)
SEED=(
  "small|0.001|100|approve|Thanks, see you Monday.|"
  "small|0.001|300|approve|Our price is 40 USD.|"
  "small|0.001|200|edit|Our price is 40 USD.|Our price is 45 USD per seat."
  "small|0.001|500|edit|Hello there|Hello there, Ann"
  "small|0.001|400|reject|Nonsense, really.|"
  "small|0.001|600|approve|Fine.|"
  "large|0.004|900|approve|We would be glad to help.|"
  "large|0.004|700|approve|Here is the quote you asked for.|"
  "large|0.004|800|approve|See the attached schedule.|"
  "large|0.004|1000|edit|Kind regards, Bob|Best regards, Bob"
)
: >"$TMP/seed.ndjson"
ev() { printf '{"type":"%s","source":"test","data":%s}\n' "$1" "$2" >>"$TMP/seed.ndjson"; }
called() { # TASK PROVIDER MODEL COST LATENCY OUTCOME [TEMPLATE]
  ev model.called "{\"route\":\"draft\",\"provider\":\"$2\",\"model\":\"$3\",\"outcome\":\"$6\",\"cost_usd\":$4,\"latency_ms\":$5,\"task\":\"$1\",\"step\":\"draft\",\"template\":\"${7:-reply@abc}\",\"workflow\":\"reply\",\"role\":\"incumbent\",\"request\":\"k$1\"}"
}
i=0
for row in "${SEED[@]}"; do
  i=$((i + 1))
  IFS='|' read -r p c l dec dr se <<<"$row"
  t=T$i
  [ "$i" -eq 1 ] && called "$t" "$p" "${p:0:1}-m" 0.0005 50 failed
  tpl=reply@abc
  [ "$i" -ge 5 ] && [ "$i" -le 6 ] && tpl=reply@v2 # a second template version
  called "$t" "$p" "${p:0:1}-m" "$c" "$l" ok "$tpl"
  ev approval.requested "{\"approval\":\"A$i\",\"task\":\"$t\",\"step\":\"send\",\"attempt\":1,\"kind\":\"email.send\",\"preview\":{\"to\":\"a@example.com\",\"subject\":\"Re\",\"text\":\"$dr\"}}"
  case $dec in
  approve) ev approval.decided "{\"approval\":\"A$i\",\"task\":\"$t\",\"step\":\"send\",\"attempt\":1,\"decision\":\"approve\",\"by\":\"cli\"}" ;;
  edit) ev approval.decided "{\"approval\":\"A$i\",\"task\":\"$t\",\"step\":\"send\",\"attempt\":1,\"decision\":\"edit\",\"by\":\"cli\",\"payload\":{\"to\":\"a@example.com\",\"subject\":\"Re\",\"text\":\"$se\"}}" ;;
  reject) ev approval.decided "{\"approval\":\"A$i\",\"task\":\"$t\",\"step\":\"send\",\"attempt\":1,\"decision\":\"reject\",\"by\":\"cli\",\"reason\":\"wrong facts\"}" ;;
  esac
done
# neither counts: a decision by policy (auto) and one still pending
called T11 large l-m 0.004 100 ok
ev approval.requested '{"approval":"A11","task":"T11","step":"send","attempt":1,"kind":"email.send","preview":{"text":"auto"}}'
ev approval.decided '{"approval":"A11","task":"T11","step":"send","attempt":1,"decision":"approve","by":"auto"}'
called T12 small s-m 0.001 100 ok
ev approval.requested '{"approval":"A12","task":"T12","step":"send","attempt":1,"kind":"email.send","preview":{"text":"pending"}}'
run bureau --data "$D" ingest --bulk --strict --file "$TMP/seed.ndjson"
expect_eq "seeded: the ledger is seeded" "$RC" 0
# the table, computed here from SEED
expected() { # PROVIDER -> one line of the figures compared below
  local p=$1 n=0 a=0 e=0 r=0 cost=0 dsum=0 dn=0 lats=() row c l dec dr se
  for row in "${SEED[@]}"; do
    IFS='|' read -r pp c l dec dr se <<<"$row"
    [ "$pp" = "$p" ] || continue
    n=$((n + 1)); lats+=("$l")
    cost=$(awk -v x="$cost" -v y="$c" 'BEGIN { printf "%.10f", x + y }')
    case $dec in
    approve) a=$((a + 1)); dn=$((dn + 1)) ;;
    edit) e=$((e + 1)); dn=$((dn + 1)); dsum=$(awk -v x="$dsum" -v y="$(lev "$dr" "$se")" 'BEGIN { printf "%.10f", x + y }') ;;
    reject) r=$((r + 1)) ;;
    esac
  done
  [ "$p" = small ] && cost=$(awk -v x="$cost" 'BEGIN { printf "%.10f", x + 0.0005 }')
  sorted=$(printf '%s\n' "${lats[@]}" | sort -n | paste -sd' ')
  awk -v n="$n" -v a="$a" -v e="$e" -v r="$r" -v cost="$cost" -v dsum="$dsum" -v dn="$dn" -v lats="$sorted" '
    function wilson(k, n,   p, z, d, c, h) { z = 1.959963984540054; p = k / n; d = 1 + z * z / n
      c = (p + z * z / (2 * n)) / d; h = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
      lo = c - h; hi = c + h; if (lo < 0) lo = 0; if (hi > 1) hi = 1
      return sprintf("%.6f %.6f %.6f", p, lo, hi) }
    BEGIN { k = split(lats, L, " "); s = 0; for (i = 1; i <= k; i++) s += L[i]
      med = k % 2 ? L[(k + 1) / 2] : (L[k / 2] + L[k / 2 + 1]) / 2
      printf "%d %d %d %d %s %s %s %.6f %.6f %.6f %.6f %.1f %.1f\n", n, a, e, r, wilson(a, n), wilson(e, n), wilson(r, n),
        dsum / dn, cost / n, cost / a, cost / (a + e), med, s / k }'
}
run bureau --data "$D" models stats --route draft --json
STATS=$OUT
got() { # PROVIDER
  local m="(SELECT value FROM json_each(json_extract('${STATS//\'/\'\'}', '\$.routes[0].models')) WHERE json_extract(value, '\$.provider') = '$1')"
  sqlite3 :memory: "SELECT json_extract(v, '\$.n') || ' ' || json_extract(v, '\$.approved.count') || ' ' || json_extract(v, '\$.edited.count') || ' ' || json_extract(v, '\$.rejected.count')
    || ' ' || printf('%.6f %.6f %.6f', json_extract(v, '\$.approved.rate'), json_extract(v, '\$.approved.low'), json_extract(v, '\$.approved.high'))
    || ' ' || printf('%.6f %.6f %.6f', json_extract(v, '\$.edited.rate'), json_extract(v, '\$.edited.low'), json_extract(v, '\$.edited.high'))
    || ' ' || printf('%.6f %.6f %.6f', json_extract(v, '\$.rejected.rate'), json_extract(v, '\$.rejected.low'), json_extract(v, '\$.rejected.high'))
    || ' ' || printf('%.6f %.6f %.6f %.6f %.1f %.1f', json_extract(v, '\$.mean_edit_distance'), json_extract(v, '\$.cost_per_draft_usd'), json_extract(v, '\$.cost_per_approved_usd'), json_extract(v, '\$.cost_per_accepted_usd'), json_extract(v, '\$.latency_ms_p50'), json_extract(v, '\$.latency_ms_mean'))
    FROM (SELECT $m AS v)"
}
expect_eq "seeded: small's row matches the table computed by hand" "$(got small)" "$(expected small)"
expect_eq "seeded: large's row matches the table computed by hand" "$(got large)" "$(expected large)"
expect_eq "seeded: only operator decisions count (10 of 12 approvals)" \
  "$(sqlite3 :memory: "SELECT sum(json_extract(value, '\$.n')) FROM json_each(json_extract('${STATS//\'/\'\'}', '\$.routes[0].models'))")" 10
mv_want=$(awk 'BEGIN { cs = 0.0065 / 6; cl = 0.016 / 4; printf "small large %.6f %.6f %.6f", cl - cs, 3 / 4 - 3 / 6, (3 / 4 - 3 / 6) / (cl - cs) }')
expect_eq "seeded: the marginal value of large over small" \
  "$(jget "$STATS" '$.routes[0].marginal[0].from') $(jget "$STATS" '$.routes[0].marginal[0].to') $(printf '%.6f %.6f %.6f' "$(jget "$STATS" '$.routes[0].marginal[0].delta_cost_per_draft_usd')" "$(jget "$STATS" '$.routes[0].marginal[0].delta_approve_rate')" "$(jget "$STATS" '$.routes[0].marginal[0].approve_rate_per_usd')")" \
  "$mv_want"
run bureau --data "$D" models stats --route draft --by template --json
expect_eq "seeded: --by template splits small's drafts by template version" \
  "$(sqlite3 :memory: "SELECT group_concat(json_extract(value, '\$.provider') || ' ' || json_extract(value, '\$.template') || ' ' || json_extract(value, '\$.n') || ' ' || json_extract(value, '\$.approved.count') || ' ' || json_extract(value, '\$.rejected.count'), ', ') FROM json_each(json_extract('${OUT//\'/\'\'}', '\$.routes[0].models'))")" \
  "large reply@abc 4 3 0, small reply@abc 4 2 0, small reply@v2 2 1 1"
run bureau --data "$D" models stats --by day
if [ "$RC" -ne 0 ] && [[ $ERR == *"by: 'day' is not template or workflow"* ]]; then ok "seeded: a bad --by is refused"; else not_ok "seeded: bad --by" "$RC $ERR"; fi
run bureau --data "$D" models stats --since 2999-01-01 --json
expect_eq "seeded: --since after every decision: no rows" "$(jget "$OUT" '$.routes')" "[]"
run bureau --data "$D" models stats --since yesterday
if [ "$RC" -ne 0 ] && [[ $ERR == *"since: 'yesterday' is not a day"* ]]; then ok "seeded: a bad --since is refused"; else not_ok "seeded: bad --since" "$RC $ERR"; fi
run bureau --data "$D" models stats
expect_contains "seeded: the table prints" "$OUT" "small        s-m                  incumbent     6  50.0% ["

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

# ---- replay, the chain, the fake server, sanitizers ------------------------

for d in "${DIRS[@]}"; do
  run bureau --data "$d" replay --check
  [ "$RC" -eq 0 ] || not_ok "replay --check $(basename "$d")" "$OUT $ERR"
done
ok "replay --check rebuilds the quality projection equal in every data directory"
kill -TERM "$FAKE_PID"
wait "$FAKE_PID"
expect_eq "fake_llm exits 0" "$?" 0
sanitizer_check "no sanitizer reports"
