#!/usr/bin/env bash
# The model router end to end: router_drive (tests/tools: one router, a
# script of calls, threads) and the CLI against fake_llm (tests/tools),
# which plays an OpenAI-compatible API from a script, one model name per
# case, so that its log tells which case reached it. Each case has its own
# data directory whose bureau.yaml points providers at the fake server.
# Covers: success, model.called (tokens, cost = price x tokens) and `bureau
# spend` by route, provider, workflow, customer and day; structured output;
# a broken JSON answer repaired; 429 + Retry-After (fallback, passed over
# until then); the circuit breaker (3 failures open it, the provider is no
# longer contacted); a timeout, a slow answer beyond the route's SLA and a
# provider slower than the SLA on average; an oversize answer; budgets under
# concurrent calls (degrade and park), per customer and per workflow, and
# the worst case of a call that needs a repair round; the cache (a hit, and
# `cache: false`); the batch window (models call, --now, a workflow step
# that waits, bureau batch run); the local tier learning from `bureau
# label`, and its failures (free text, unknown labels) never opening its
# breaker; the model step kinds in a workflow; replay --check and audit
# verify of every data directory. No sleeps: the delays are the fake
# server's, bounded by the timeouts under test.
. "$(dirname "$0")/lib.sh"

BUILD=${BUILD:-$(dirname "$BUREAU")}
FAKE=$BUILD/fake_llm
DRIVE=$BUILD/router_drive
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
export NO_PROXY='*' no_proxy='*'
export LC_ALL=C

# ---- the fake server ---------------------------------------------------------

FSCRIPT=$TMP/fake.json
cat >"$FSCRIPT" <<'EOF'
[
 {"model": "ok-a", "content": "fine", "repeat": 100},
 {"model": "ok-b", "content": "fine too", "repeat": 100},
 {"model": "fixer", "broken": true},
 {"model": "fixer", "content": "{\"label\": \"ham\", \"confidence\": 0.8}"},
 {"model": "limited", "status": 429, "retry_after": "120"},
 {"model": "backup", "content": "from backup", "repeat": 1000},
 {"model": "down", "status": 500, "repeat": 100},
 {"model": "hang", "delay_ms": 20000, "content": "late", "repeat": 10},
 {"model": "lag", "delay_ms": 300, "content": "lagging", "repeat": 10},
 {"model": "slow", "delay_ms": 20000, "content": "slow", "repeat": 10},
 {"model": "huge", "oversize": 5000000, "repeat": 10},
 {"model": "budget", "content": "priced", "repeat": 1000},
 {"model": "budget-park", "content": "priced", "repeat": 1000},
 {"model": "scoped", "content": "scoped", "repeat": 100},
 {"model": "fixer-budget", "broken": true},
 {"model": "fixer-budget", "content": "{\"label\": \"ham\", \"confidence\": 0.8}"},
 {"model": "fixer-budget", "broken": true},
 {"model": "fixer-budget", "content": "{\"label\": \"ham\", \"confidence\": 0.8}"},
 {"model": "cache-m", "content": "cached answer", "repeat": 10},
 {"model": "nocache-m", "content": "uncached", "repeat": 10},
 {"model": "night", "content": "{\"label\": \"urgent\", \"confidence\": 0.9}", "repeat": 10},
 {"model": "structured", "content": "{\"name\": \"Zoë\", \"age\": 42}", "repeat": 10},
 {"model": "drafter", "content": "Hi Ann, thanks for asking about pricing: \"we need 3 seats\" [1].", "repeat": 10},
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
# mkdata NAME: D=$TMP/NAME, a new data directory whose bureau.yaml ends
# with stdin (a models: section).
mkdata() {
  D=$TMP/$1
  bureau --data "$D" init >/dev/null 2>&1
  cat >>"$D/bureau.yaml"
  DIRS+=("$D")
}
# jx JSON EXPR: the SQLite expression EXPR over `value`, the JSON
jx() { sqlite3 :memory: "SELECT $2 FROM (SELECT '${1//\'/\'\'}' AS value)" 2>/dev/null; }
# prov NAME MODEL [IN OUT [EXTRA]]: a provider entry on the fake server
# (USD per million tokens; EXTRA: more keys, one line, indented).
prov() {
  printf '    - name: %s\n      kind: openai\n      base_url: %s\n      model: %s\n' "$1" "$URL" "$2"
  printf '      price: {input_per_mtok: %s, output_per_mtok: %s}\n' "${3:-0}" "${4:-0}"
  [ -n "${5:-}" ] && printf '      %s\n' "$5"
  return 0
}
# drive DIR NAME JSON: router_drive over the script JSON; its lines in
# $TMP/NAME.out (the last one is the health), its exit status in RC.
drive() {
  printf '%s\n' "$3" >"$TMP/$2.script"
  "$DRIVE" --data "$1" "$TMP/$2.script" >"$TMP/$2.out" 2>"$TMP/$2.err"
  RC=$?
  grep -v '^{"health"' "$TMP/$2.out" >"$TMP/$2.calls"
  grep '^{"health"' "$TMP/$2.out" | tail -n 1 >"$TMP/$2.health"
}
# calls NAME EXPR: EXPR (SQLite over `value`, a call's line) for each call, one a line
calls() { jl "$TMP/$1.calls" "$2"; }
# health NAME PROVIDER EXPR: EXPR over PROVIDER's entry of the last health line
health() {
  sqlite3 :memory: "SELECT $3 FROM json_each(json_extract(readfile('$TMP/$1.health'), '\$.health'))
    WHERE json_extract(value, '\$.name') = '$2'"
}
# q DIR SQL: one value from DIR's database
q() { sqlite3 "$1/bureau.db" "$2"; }
# nreq MODEL: requests the fake server logged for MODEL
nreq() {
  { printf '['; paste -sd, "$LOG"; printf ']'; } >"$LOG.arr"
  sqlite3 :memory: "SELECT count(*) FROM json_each(readfile('$LOG.arr'))
    WHERE json_extract(value, '\$.model') = '$1'"
}
# called DIR EXPR [WHERE]: EXPR over the data of DIR's model.called events, one a line
called() {
  q "$1" "SELECT $2 FROM events WHERE type = 'model.called' ${3:+AND $3} ORDER BY seq"
}
idle() { bureau --data "$1" run --until-idle --timeout 60 >/dev/null 2>"$TMP/idle.err"; }
TODAY=$(date -u +%Y-%m-%d)

# ---- success, model.called, spend --------------------------------------------

mkdata spend <<EOF
models:
  providers:
$(prov pa ok-a 1000 2000)
$(prov pb ok-b 500 500)
  routes:
    complete: {candidates: [pa]}
    extract: {candidates: [pb]}
EOF
drive "$D" spend '[
 {"route": "complete", "text": "one", "workflow": "wf1", "customer": "contact:c1"},
 {"route": "complete", "text": "two", "workflow": "wf2", "customer": "contact:c2"},
 {"route": "extract", "task": "complete", "text": "three", "workflow": "wf1", "customer": "contact:c1"}]'
expect_eq "success: the driver ran" "$RC" 0
expect_eq "success: every call answered by its route's provider" \
  "$(calls spend "json_extract(value, '\$.status') || ' ' || json_extract(value, '\$.provider') || ' ' || json_extract(value, '\$.output')" | paste -sd,)" \
  "ok pa fine,ok pa fine,ok pb fine too"
expect_eq "success: cost = price x tokens" \
  "$(calls spend "printf('%.6f', json_extract(value, '\$.cost_usd'))" | paste -sd,)" \
  "0.025000,0.025000,0.009000"
expect_eq "success: model.called has tokens, cost, outcome, workflow, customer" \
  "$(called "$D" "json_extract(data, '\$.provider') || ' ' || json_extract(data, '\$.model') || ' ' || json_extract(data, '\$.tokens_in') || '/' || json_extract(data, '\$.tokens_out') || ' ' || printf('%.6f', json_extract(data, '\$.cost_usd')) || ' ' || json_extract(data, '\$.outcome') || ' ' || json_extract(data, '\$.workflow') || ' ' || json_extract(data, '\$.customer')" | paste -sd,)" \
  "pa ok-a 11/7 0.025000 ok wf1 contact:c1,pa ok-a 11/7 0.025000 ok wf2 contact:c2,pb ok-b 11/7 0.009000 ok wf1 contact:c1"
run bureau --data "$D" models call complete --text "four" --json
expect_eq "models call: ok through the router" \
  "$RC $(jget "$OUT" '$.provider') $(jget "$OUT" '$.output') $(jx "$OUT" "printf('%.6f', json_extract(value, '\$.cost_usd'))")" \
  "0 pa fine 0.025000"
expect_eq "models call: recorded" "$(called "$D" "count(*)")" 4
# spend_rows BY: "key cost calls" per row of bureau spend --by BY --json
spend_rows() {
  bureau --data "$D" spend --by "$1" --json >"$TMP/spend.$1" 2>/dev/null
  jl "$TMP/spend.$1" "json_extract(value, '\$.key') || '=' || printf('%.3f', json_extract(value, '\$.cost_usd')) || '/' || json_extract(value, '\$.calls')" | paste -sd' '
}
expect_eq "spend by route" "$(spend_rows route)" "complete=0.075/3 extract=0.009/1"
expect_eq "spend by provider" "$(spend_rows provider)" "pa=0.075/3 pb=0.009/1"
expect_eq "spend by workflow" "$(spend_rows workflow)" "wf1=0.034/2 =0.025/1 wf2=0.025/1"
expect_eq "spend by customer" "$(spend_rows customer)" "contact:c1=0.034/2 =0.025/1 contact:c2=0.025/1"
expect_eq "spend by day" "$(spend_rows day)" "$TODAY=0.084/4"
expect_eq "spend --json: tokens summed" \
  "$(jl "$TMP/spend.day" "json_extract(value, '\$.tokens_in') || '/' || json_extract(value, '\$.tokens_out')")" "44/28"
run bureau --data "$D" spend --by provider
expect_contains "spend (text): a total line" "$OUT" "0.0840"
expect_contains "spend (text): a row per provider" "$OUT" "pa "
run bureau --data "$D" spend --by nonsense
expect_eq "spend --by nonsense: refused" "$RC" 1

# ---- a broken JSON answer repaired -------------------------------------------

mkdata repair <<EOF
models:
  providers:
$(prov fx fixer 1000 1000)
  routes:
    classify: {candidates: [fx]}
EOF
drive "$D" repair '[{"route": "classify", "text": "hello friend", "labels": ["spam", "ham"]}]'
expect_eq "repair: ok with the repaired answer" \
  "$(calls repair "json_extract(value, '\$.status') || ' ' || json_extract(value, '\$.output.label') || ' ' || json_extract(value, '\$.output.confidence')")" \
  "ok ham 0.8"
expect_eq "repair: two requests to the provider" "$(nreq fixer)" 2
expect_eq "repair: recorded with repairs 1 and both rounds' tokens and cost" \
  "$(called "$D" "json_extract(data, '\$.repairs') || ' ' || json_extract(data, '\$.tokens_in') || '/' || json_extract(data, '\$.tokens_out') || ' ' || printf('%.6f', json_extract(data, '\$.cost_usd')) || ' ' || json_extract(data, '\$.label')")" \
  "1 22/14 0.036000 ham"

# ---- 429 with Retry-After ----------------------------------------------------

mkdata limited <<EOF
models:
  providers:
$(prov lim limited)
$(prov bk backup)
  routes:
    complete: {candidates: [lim, bk], cache: false}
EOF
before=$(date +%s%3N)
drive "$D" limited '[{"route": "complete", "text": "x", "repeat": 3}]'
expect_eq "429: every call answered by the next candidate" \
  "$(calls limited "json_extract(value, '\$.status') || ' ' || json_extract(value, '\$.provider')" | sort | uniq -c | tr -s ' ')" \
  " 3 ok bk"
expect_eq "429: the first call tried it (rate_limited), the next ones passed it over" \
  "$(calls limited "json_extract(value, '\$.attempts[0].outcome')" | paste -sd,)" \
  "rate_limited,skipped,skipped"
expect_contains "429: passed over as rate limited" \
  "$(calls limited "json_extract(value, '\$.attempts[0].error')" | sed -n 2p)" "rate limited for"
expect_eq "429: the provider was contacted once" "$(nreq limited)" 1
until_ms=$(sqlite3 :memory: "SELECT CAST(round((julianday('$(health limited lim "json_extract(value, '\$.rate_limited_until')")') - 2440587.5) * 86400000) AS INTEGER)")
if [ -n "$until_ms" ] && [ $((until_ms - before)) -ge 110000 ] && [ $((until_ms - before)) -le 125000 ]; then
  ok "429: health says rate limited until Retry-After (120 s)"
else not_ok "429: health says rate limited until Retry-After (120 s)" "$(cat "$TMP/limited.health")"; fi
expect_eq "429: recorded as rate_limited with its HTTP status" \
  "$(called "$D" "json_extract(data, '\$.outcome') || ' ' || json_extract(data, '\$.http_status')" "json_extract(data, '\$.provider') = 'lim'")" \
  "rate_limited 429"

# ---- the circuit breaker -----------------------------------------------------

mkdata breaker <<EOF
models:
  providers:
$(prov dn down)
$(prov bk backup)
  routes:
    complete: {candidates: [dn, bk], cache: false}
EOF
drive "$D" breaker '[{"route": "complete", "text": "x", "repeat": 3}, {"health": true},
  {"route": "complete", "text": "x", "repeat": 3}]'
expect_eq "breaker: every call answered by the fallback" \
  "$(calls breaker "json_extract(value, '\$.status') || ' ' || json_extract(value, '\$.provider')" | sort | uniq -c | tr -s ' ')" \
  " 6 ok bk"
expect_eq "breaker: 3 failures (500: retry), then passed over" \
  "$(calls breaker "json_extract(value, '\$.attempts[0].outcome')" | paste -sd,)" \
  "retry,retry,retry,skipped,skipped,skipped"
expect_contains "breaker: says it is open" \
  "$(calls breaker "json_extract(value, '\$.attempts[0].error')" | tail -n 1)" "circuit breaker open"
expect_eq "breaker: the server saw 3 requests, no more" "$(nreq down)" 3
expect_eq "breaker: health shows it open after 3 failures" \
  "$(health breaker dn "json_extract(value, '\$.breaker') || ' ' || json_extract(value, '\$.failures') || ' ' || json_extract(value, '\$.calls')")" \
  "open 3 3"
expect_eq "breaker: the fallback's is closed" "$(health breaker bk "json_extract(value, '\$.breaker')")" closed
expect_eq "breaker: 3 failed attempts recorded" \
  "$(called "$D" "count(*)" "json_extract(data, '\$.provider') = 'dn' AND json_extract(data, '\$.outcome') = 'retry'")" 3
run bureau --data "$D" models
expect_contains "bureau models: lists the providers and the route" "$OUT" "complete     dn > bk"
run bureau --data "$D" spend --by provider --json
expect_eq "breaker: spend counts the failures" \
  "$(printf '%s\n' "$OUT" >"$TMP/b.spend"; jl "$TMP/b.spend" "json_extract(value, '\$.key') || ':' || json_extract(value, '\$.failures') || '/' || json_extract(value, '\$.calls')" | sort | paste -sd' ')" \
  "bk:0/6 dn:3/3"

# ---- a timeout, the SLA, an oversize answer ----------------------------------

mkdata slow <<EOF
models:
  providers:
$(prov hg hang 0 0 "timeout_ms: 300")
$(prov lg lag)
$(prov sl slow)
$(prov hu huge)
$(prov bk backup)
  routes:
    hung: {candidates: [hg, bk], cache: false}
    free: {candidates: [lg], cache: false}
    fast: {candidates: [lg, bk], max_latency_ms: 250, cache: false}
    tight: {candidates: [sl, bk], max_latency_ms: 300, cache: false}
    big: {candidates: [hu, bk], cache: false}
EOF
start=$(date +%s%3N)
drive "$D" slowone '[{"route": "hung", "text": "x"}]'
took=$(($(date +%s%3N) - start))
expect_eq "timeout: falls back" \
  "$(calls slowone "json_extract(value, '\$.attempts[0].outcome') || ' ' || json_extract(value, '\$.status') || ' ' || json_extract(value, '\$.provider')")" \
  "timeout ok bk"
if [ "$took" -lt 5000 ]; then ok "timeout: given up after the provider's timeout_ms"; else
  not_ok "timeout: given up after the provider's timeout_ms" "took $took ms"; fi
start=$(date +%s%3N)
drive "$D" tight '[{"route": "tight", "text": "x"}]'
took=$(($(date +%s%3N) - start))
expect_eq "SLA: an answer slower than max_latency_ms times out and falls back" \
  "$(calls tight "json_extract(value, '\$.attempts[0].outcome') || ' ' || json_extract(value, '\$.status') || ' ' || json_extract(value, '\$.provider')")" \
  "timeout ok bk"
if [ "$took" -lt 5000 ]; then ok "SLA: the call was bounded by max_latency_ms"; else
  not_ok "SLA: the call was bounded by max_latency_ms" "took $took ms"; fi
drive "$D" sla '[{"route": "free", "text": "x", "repeat": 3}, {"route": "fast", "text": "x", "repeat": 2}]'
expect_eq "SLA: 3 slow answers on a route without one" \
  "$(calls sla "json_extract(value, '\$.status') || ' ' || json_extract(value, '\$.provider')" | head -n 3 | paste -sd,)" \
  "ok lg,ok lg,ok lg"
expect_eq "SLA: then passed over on the route whose SLA it misses on average" \
  "$(calls sla "json_extract(value, '\$.attempts[0].outcome') || ' ' || json_extract(value, '\$.provider')" | tail -n 2 | paste -sd,)" \
  "skipped bk,skipped bk"
expect_contains "SLA: says why" "$(calls sla "json_extract(value, '\$.attempts[0].error')" | tail -n 1)" \
  "slower than the route's SLA"
expect_eq "SLA: the slow provider got only the 3 calls" "$(nreq lag)" 3
drive "$D" huge '[{"route": "big", "text": "x"}]'
expect_eq "oversize: too_large, falls back" \
  "$(calls huge "json_extract(value, '\$.attempts[0].outcome') || ' ' || json_extract(value, '\$.status') || ' ' || json_extract(value, '\$.provider')")" \
  "too_large ok bk"
expect_contains "oversize: says the cap" "$(calls huge "json_extract(value, '\$.attempts[0].error')")" \
  "larger than 4194304 bytes"

# ---- budgets -----------------------------------------------------------------

# The worst case of a call of the "draft" route below: (12 bytes + 16) tokens
# in at $1000/Mtok + 16 out at $2000/Mtok = $0.06; each answer costs
# 11 x 1000 + 7 x 2000 = $0.025. A daily budget of $0.2 leaves room for a
# few; 8 threads x 4 calls at once must never together go over it.
budget_yaml() {
  cat <<EOF
models:
  providers:
$(prov pr "$1" 1000 2000)
  routes:
    draft: {candidates: [pr, local], max_output_tokens: 16, cache: false, on_budget: $2}
  budgets:
    daily_usd: 0.2
EOF
}
mkdata budget < <(budget_yaml budget degrade)
drive "$D" budget '[{"route": "draft", "text": "hello budget", "threads": 8, "repeat": 4}]'
expect_eq "budget (degrade): 32 calls, all answered" \
  "$(calls budget "json_extract(value, '\$.status')" | sort | uniq -c | tr -s ' ')" " 32 ok"
spent=$(q "$D" "SELECT printf('%.6f', sum(cost_usd)) FROM model_spend")
if sqlite3 :memory: "SELECT $spent <= 0.2 AND $spent > 0" | grep -qx 1; then
  ok "budget (degrade): the recorded spend ($spent) is within the daily budget"
else not_ok "budget (degrade): the recorded spend is within the daily budget" "spent $spent"; fi
expect_eq "budget (degrade): model_spend equals the sum of model.called" \
  "$(q "$D" "SELECT printf('%.6f', sum(json_extract(data, '\$.cost_usd'))) FROM events WHERE type = 'model.called'")" "$spent"
npr=$(calls budget "json_extract(value, '\$.provider')" | grep -cx pr)
nlo=$(calls budget "json_extract(value, '\$.provider')" | grep -cx local)
if [ "$npr" -ge 1 ] && [ "$npr" -le 8 ] && [ $((npr + nlo)) -eq 32 ]; then
  ok "budget (degrade): $npr priced calls, the other $nlo degraded to local"
else not_ok "budget (degrade): a few priced calls, the others degraded to local" "pr $npr local $nlo"; fi
expect_eq "budget (degrade): the server saw only the priced calls" "$(nreq budget)" "$npr"
expect_contains "budget (degrade): the degraded calls say which budget" \
  "$(calls budget "json_extract(value, '\$.attempts[0].error')" | grep -m1 budget)" \
  "the daily budget (\$0.2000) would be exceeded"

mkdata budget-park < <(budget_yaml budget-park park)
drive "$D" park '[{"route": "draft", "text": "hello budget", "threads": 8, "repeat": 4}]'
npr=$(calls park "json_extract(value, '\$.status')" | grep -cx ok)
npk=$(calls park "json_extract(value, '\$.status')" | grep -cx parked)
if [ "$npr" -ge 1 ] && [ "$npr" -le 8 ] && [ $((npr + npk)) -eq 32 ]; then
  ok "budget (park): $npr calls answered, the other $npk parked"
else not_ok "budget (park): a few answered, the others parked" "ok $npr parked $npk"; fi
expect_eq "budget (park): none went to local" \
  "$(calls park "json_extract(value, '\$.provider')" | grep -cx local)" 0
spent=$(q "$D" "SELECT printf('%.6f', sum(cost_usd)) FROM model_spend")
if sqlite3 :memory: "SELECT $spent <= 0.2" | grep -qx 1; then
  ok "budget (park): the recorded spend ($spent) is within the daily budget"
else not_ok "budget (park): the recorded spend is within the daily budget" "spent $spent"; fi
expect_contains "budget (park): parked says why" \
  "$(calls park "json_extract(value, '\$.error')" | grep -m1 parked)" "parked: a budget would be exceeded"
expect_eq "budget (park): the server saw only the answered calls" "$(nreq budget-park)" "$npr"

# Per customer and per workflow: worst case (2 + 16) x 1000 + 16 x 2000 =
# $0.05, an answer $0.025; each customer and workflow may spend $0.06.
mkdata scopes <<EOF
models:
  providers:
$(prov pr scoped 1000 2000)
  routes:
    draft: {candidates: [pr, local], max_output_tokens: 16, cache: false}
  budgets:
    per_customer: {daily_usd: 0.06}
    workflows:
      wfx: {daily_usd: 0.06}
EOF
drive "$D" scopes '[
 {"route": "draft", "text": "q1", "customer": "contact:c1"},
 {"route": "draft", "text": "q2", "customer": "contact:c1"},
 {"route": "draft", "text": "q3", "customer": "contact:c2"},
 {"route": "draft", "text": "q4", "workflow": "wfx"},
 {"route": "draft", "text": "q5", "workflow": "wfx"},
 {"route": "draft", "text": "q6", "workflow": "wfy"}]'
expect_eq "budget per customer and per workflow: the second call of each degrades" \
  "$(calls scopes "json_extract(value, '\$.provider')" | paste -sd,)" "pr,local,pr,pr,local,pr"
expect_contains "budget per customer: says so" \
  "$(calls scopes "json_extract(value, '\$.attempts[0].error')" | sed -n 2p)" "the customer's daily budget"
expect_contains "budget per workflow: says so" \
  "$(calls scopes "json_extract(value, '\$.attempts[0].error')" | sed -n 5p)" "the workflow's daily budget"

# A classify call may take a repair round: two requests, each with the
# schema in its system prompt. Its worst case must cover both, or one call
# admitted by the budget may spend more than the budget left.
mkdata budget-repair <<EOF
models:
  providers:
$(prov fx fixer-budget 1000 1000)
  routes:
    classify: {candidates: [fx, local], max_output_tokens: 8, cache: false}
  budgets:
    daily_usd: 0.03
  local:
    rules: {spam: [buy], ham: [hello]}
EOF
drive "$D" brepair '[{"route": "classify", "text": "x", "labels": ["spam", "ham"], "repeat": 2}]'
spent=$(q "$D" "SELECT printf('%.6f', coalesce(sum(cost_usd), 0)) FROM model_spend")
if sqlite3 :memory: "SELECT $spent <= 0.03" | grep -qx 1; then
  ok "budget: a call that may need a repair round is reserved at its worst case ($spent <= 0.03)"
else not_ok "budget: a call that may need a repair round is reserved at its worst case" \
  "spent $spent > 0.03: $(calls brepair "json_extract(value, '\$.provider') || ' ' || json_extract(value, '\$.cost_usd')" | paste -sd,)"; fi
expect_eq "budget: the classify calls still answered (local)" \
  "$(calls brepair "json_extract(value, '\$.status') || ' ' || json_extract(value, '\$.provider')" | paste -sd,)" \
  "ok local,ok local"

# ---- the cache ---------------------------------------------------------------

mkdata cache <<EOF
models:
  providers:
$(prov pc cache-m 1000 2000)
$(prov pn nocache-m 1000 2000)
  routes:
    complete: {candidates: [pc]}
    plain: {candidates: [pn], cache: false}
EOF
run bureau --data "$D" models call complete --text "same question" --json
first=$OUT
run bureau --data "$D" models call complete --text "same question" --json
expect_eq "cache: the first call pays" \
  "$(jget "$first" '$.cached') $(jx "$first" "printf('%.6f', json_extract(value, '\$.cost_usd'))")" "0 0.025000"
expect_eq "cache: the same request again (another process) is a hit: cost 0, saved the first's" \
  "$RC $(jget "$OUT" '$.cached') $(jx "$OUT" "printf('%.6f', json_extract(value, '\$.cost_usd'))") $(jx "$OUT" "printf('%.6f', json_extract(value, '\$.saved_usd'))") $(jget "$OUT" '$.output')" \
  "0 1 0.000000 0.025000 cached answer"
expect_eq "cache: the provider was contacted once" "$(nreq cache-m)" 1
expect_eq "cache: the hit is recorded (cache_hit, saved_usd)" \
  "$(called "$D" "json_extract(data, '\$.cache_hit') || ' ' || printf('%.6f', json_extract(data, '\$.saved_usd'))" "json_extract(data, '\$.cache_hit') = 1")" \
  "1 0.025000"
drive "$D" cache '[{"route": "complete", "text": "same question"}, {"route": "complete", "text": "another question"},
  {"route": "plain", "text": "same again", "repeat": 2}]'
expect_eq "cache: in one router too; another prompt misses; cache: false never hits" \
  "$(calls cache "json_extract(value, '\$.cached') || ' ' || json_extract(value, '\$.provider')" | paste -sd,)" \
  "1 pc,0 pc,0 pn,0 pn"
expect_eq "cache: false: the provider answered both" "$(nreq nocache-m)" 2
expect_eq "cache: spend counts the hits and what they saved" \
  "$(q "$D" "SELECT sum(cache_hits) || ' ' || printf('%.3f', sum(saved_usd)) FROM model_spend")" "2 0.050"

# ---- the batch window --------------------------------------------------------

H=$((10#$(date -u +%H)))
WIN=$(printf '%02d:00-%02d:00' $(((H + 2) % 24)) $(((H + 3) % 24)))
mkdata batch <<EOF
models:
  providers:
$(prov nt night 1000 2000)
  routes:
    nightly: {candidates: [nt], defer: batch}
  batch: {window: "$WIN"}
EOF
run bureau --data "$D" models call nightly --text "later please" --json
expect_eq "batch: outside the window, models call says deferred" \
  "$RC $(jget "$OUT" '$.status')" "1 deferred"
expect_contains "batch: names the window" "$ERR" "deferred to the batch window ($WIN)"
expect_eq "batch: nothing was sent, nothing recorded" "$(nreq night) $(called "$D" "count(*)")" "0 0"
run bureau --data "$D" models call nightly --text "now please" --labels urgent,later --now --json
expect_eq "batch: --now runs it" "$RC $(jget "$OUT" '$.provider')" "0 nt"
mkdir -p "$D/workflows"
cat >"$D/workflows/triage.yaml" <<'EOF'
name: triage
on:
  event: ticket.opened
steps:
  - id: cls
    do: model.classify
    with:
      text: "{{ event.data.text }}"
      labels: [urgent, later]
      route: nightly
EOF
printf '%s\n' '{"type":"ticket.opened","source":"test","subject":"contact:t1","data":{"text":"server is down"}}' |
  bureau --data "$D" ingest >/dev/null
idle "$D"
expect_eq "batch: the classify step waits for the window" \
  "$(q "$D" "SELECT status || ' ' || wait_kind FROM task_steps WHERE step_id = 'cls'")" "waiting batch"
expect_eq "batch: the step has not called the provider" "$(nreq night)" 1
bureau --data "$D" batch run >/dev/null 2>&1
expect_eq "batch: bureau batch run is recorded" \
  "$(q "$D" "SELECT count(*) FROM events WHERE type = 'model.batch.run'")" 1
idle "$D"
expect_eq "batch: after batch run + run --until-idle the step is done" \
  "$(q "$D" "SELECT s.status || ' ' || t.status FROM task_steps s JOIN tasks t ON t.id = s.task_id WHERE s.step_id = 'cls'")" \
  "succeeded succeeded"
expect_eq "batch: its output carries label, confidence, provider, model, cost" \
  "$(q "$D" "SELECT json_extract(output, '\$.label') || ' ' || json_extract(output, '\$.confidence') || ' ' || json_extract(output, '\$.provider') || ' ' || json_extract(output, '\$.model') || ' ' || printf('%.6f', json_extract(output, '\$.cost_usd')) FROM task_steps WHERE step_id = 'cls'")" \
  "urgent 0.9 nt night 0.025000"
expect_eq "batch: model.called has the workflow, task, step and customer" \
  "$(called "$D" "json_extract(data, '\$.workflow') || ' ' || json_extract(data, '\$.step') || ' ' || json_extract(data, '\$.customer') || ' ' || (json_extract(data, '\$.task') IS NOT NULL)" "json_extract(data, '\$.workflow') IS NOT NULL")" \
  "triage cls contact:t1 1"

# ---- the local tier learns from bureau label ---------------------------------

mkdata local <<'EOF'
models:
  routes:
    classify: {candidates: [local]}
EOF
seqs=()
for t in "Invoice 1042 is wrong, please refund the extra charge" \
  "Where is my receipt for last month's invoice?" \
  "Your invoice charged me twice, I need a refund" \
  "I cannot log in, the password reset link is broken" \
  "Login fails with an error after the update" \
  "The app crashes when I open settings"; do
  run bureau --data "$D" ingest --json <<<"{\"type\":\"note.received\",\"source\":\"test\",\"data\":{\"subject\":\"help\",\"text\":\"$t\"}}"
  seqs+=("$(jget "$OUT" '$.seq')")
done
for i in 0 1 2; do bureau --data "$D" label "${seqs[$i]}" billing >/dev/null; done
for i in 3 4 5; do bureau --data "$D" label "${seqs[$i]}" support >/dev/null; done
expect_eq "label: six examples in the projection" \
  "$(q "$D" "SELECT group_concat(label) FROM (SELECT label FROM model_examples ORDER BY seq)")" \
  "billing,billing,billing,support,support,support"
run bureau --data "$D" models call classify --text "please refund my invoice" --labels billing,support --json
expect_eq "local: classify picks the learned label" \
  "$RC $(jget "$OUT" '$.label') $(jget "$OUT" '$.provider') $(jx "$OUT" "printf('%.1f', json_extract(value, '\$.cost_usd'))")" \
  "0 billing local 0.0"
run bureau --data "$D" models call classify --text "the login page crashes" --labels billing,support --json
expect_eq "local: and the other one" "$(jget "$OUT" '$.label')" support
conf=$(jget "$OUT" '$.confidence')
if sqlite3 :memory: "SELECT $conf > 0.5 AND $conf <= 1" | grep -qx 1; then
  ok "local: with a confidence ($conf)"
else not_ok "local: with a confidence" "$OUT"; fi
run bureau --data "$D" label "${seqs[0]}" "Not A Label"
expect_eq "label: a bad label is refused" "$RC" 2

# The local tier answers what it can; a request it cannot answer (free
# text, labels it does not know) is that request's failure, not the tier's:
# it never opens the local tier's breaker for the calls it can answer.
mkdata local-breaker <<'EOF'
models:
  routes:
    complete: {candidates: [local]}
  local:
    rules: {spam: [buy], ham: [hello]}
EOF
drive "$D" lbreaker '[{"route": "complete", "text": "write me a poem", "repeat": 4},
  {"route": "classify", "text": "unknown labels", "labels": ["red", "blue"], "repeat": 2},
  {"route": "classify", "text": "hello there", "labels": ["spam", "ham"]}]'
expect_eq "local: free text and unknown labels fail, each call on its own" \
  "$(calls lbreaker "json_extract(value, '\$.status') || ' ' || json_extract(value, '\$.attempts[0].outcome')" | head -n 6 | sort | uniq -c | tr -s ' ')" \
  " 6 failed failed"
expect_eq "local: a classify it can answer still goes through" \
  "$(calls lbreaker "json_extract(value, '\$.status') || ' ' || json_extract(value, '\$.provider') || ' ' || json_extract(value, '\$.output.label')" | tail -n 1)" \
  "ok local ham"
expect_eq "local: its breaker stays closed" "$(health lbreaker local "json_extract(value, '\$.breaker')")" closed

# ---- the model steps in a workflow -------------------------------------------

mkdata steps <<EOF
models:
  providers:
$(prov st structured 1000 2000)
$(prov dr drafter 1000 2000)
  routes:
    complete: {candidates: [st]}
    draft: {candidates: [dr, local]}
EOF
mkdir -p "$D/workflows"
cat >"$D/workflows/inquiry.yaml" <<'EOF'
name: inquiry
on:
  event: inquiry.received
steps:
  - id: ext
    do: model.extract
    with:
      text: "{{ event.data.text }}"
  - id: sum
    do: model.summarize
    with:
      text: "{{ event.data.text }}"
      max_chars: 120
  - id: person
    do: model.complete
    with:
      prompt: "Who wrote this? {{ event.data.text }}"
      schema:
        type: object
        properties:
          name: {type: string}
          age: {type: integer}
        required: [name, age]
  - id: reply
    do: model.draft
    needs: [ext]
    with:
      template: reply
      args: {name: "{{ event.data.from.name }}", topic: pricing}
      sources:
        - {seq: 1, snippet: "we need 3 seats"}
EOF
cat >"$TMP/inquiry.json" <<'EOF'
{"type":"inquiry.received","source":"test","subject":"contact:ann",
 "data":{"from":{"email":"ann@example.com","name":"Ann Lee"},"subject":"Pricing",
 "text":"Hello, we need 3 seats for our team. Our budget is $450 per month. We want to start on 2030-05-01. Please call me at +1 415 555 0100 or write to ann@example.com. Thanks, Ann Lee, Acme Corp"}}
EOF
bureau --data "$D" ingest --file "$TMP/inquiry.json" >/dev/null
check "steps: run --until-idle exits 0" idle "$D"
out() { q "$D" "SELECT json_extract(output, '$2') FROM task_steps WHERE step_id = '$1'"; }
expect_eq "steps: the task succeeded" \
  "$(q "$D" "SELECT status FROM tasks WHERE workflow = 'inquiry'")" succeeded
expect_eq "steps: every step succeeded" \
  "$(q "$D" "SELECT group_concat(step_id || '=' || status) FROM (SELECT step_id, status FROM task_steps ORDER BY pos)")" \
  "ext=succeeded,sum=succeeded,person=succeeded,reply=succeeded"
expect_eq "model.extract: the email and the money" \
  "$(out ext '$.emails[0]') $(out ext '$.money[0].amount_minor') $(out ext '$.money[0].currency')" \
  "ann@example.com 45000 USD"
expect_eq "model.extract: provider, model, cost, confidence present" \
  "$(q "$D" "SELECT json_extract(output, '\$.provider') || ' ' || json_extract(output, '\$.model') || ' ' || json_extract(output, '\$.cost_usd') || ' ' || json_type(output, '\$.confidence') FROM task_steps WHERE step_id = 'ext'")" \
  "local local 0.0 null"
sm=$(out sum '$.summary')
if [ -n "$sm" ] && [ "${#sm}" -le 120 ]; then ok "model.summarize: a summary within max_chars (${#sm})"; else
  not_ok "model.summarize: a summary within max_chars" "'$sm'"; fi
expect_eq "model.summarize: provider local, cost 0" "$(out sum '$.provider') $(out sum '$.cost_usd')" "local 0.0"
expect_eq "model.complete with a schema: the structured answer" \
  "$(out person '$.name') $(out person '$.age')" "Zoë 42"
expect_eq "model.complete: provider, model, cost" \
  "$(out person '$.provider') $(out person '$.model') $(q "$D" "SELECT printf('%.6f', json_extract(output, '\$.cost_usd')) FROM task_steps WHERE step_id = 'person'")" \
  "st structured 0.025000"
expect_eq "model.complete: the schema went to the provider" \
  "$( { printf '['; paste -sd, "$LOG"; printf ']'; } >"$LOG.arr"
      sqlite3 :memory: "SELECT json_extract(value, '\$.body.response_format.type') || ' ' || (instr(json_extract(value, '\$.body.messages[0].content'), '\"required\":[\"name\",\"age\"]') > 0) FROM json_each(readfile('$LOG.arr')) WHERE json_extract(value, '\$.model') = 'structured'")" \
  "json_object 1"
expect_eq "model.draft: the provider's text" "$(out reply '$.text')" \
  'Hi Ann, thanks for asking about pricing: "we need 3 seats" [1].'
expect_eq "model.draft: the citations from the sources" \
  "$(out reply '$.citations[0].n') $(out reply '$.citations[0].seq') $(out reply '$.citations[0].snippet')" \
  "1 1 we need 3 seats"
expect_contains "model.draft: the template's text kept, with its mark" "$(out reply '$.template_text')" \
  'You mentioned: "we need 3 seats" [1]'
expect_eq "model.draft: subject, provider, model, cost, confidence" \
  "$(q "$D" "SELECT json_extract(output, '\$.subject') || ' ' || json_extract(output, '\$.provider') || ' ' || json_extract(output, '\$.model') || ' ' || printf('%.6f', json_extract(output, '\$.cost_usd')) || ' ' || json_type(output, '\$.confidence') FROM task_steps WHERE step_id = 'reply'")" \
  "Re: Pricing dr drafter 0.025000 null"
tpl=$(out reply '$.template')
if [[ $tpl =~ ^reply@[0-9a-f]{12}$ ]]; then ok "model.draft: the template and its version ($tpl)"; else
  not_ok "model.draft: the template and its version" "'$tpl'"; fi
expect_eq "model.draft: model.called names the template" \
  "$(called "$D" "json_extract(data, '\$.template')" "json_extract(data, '\$.step') = 'reply'")" "$tpl"
expect_contains "model.draft: the provider got the filled template" \
  "$( { printf '['; paste -sd, "$LOG"; printf ']'; } >"$LOG.arr"
      sqlite3 :memory: "SELECT json_extract(value, '\$.body.messages[1].content') FROM json_each(readfile('$LOG.arr')) WHERE json_extract(value, '\$.model') = 'drafter'")" \
  "Hi Ann,"
expect_eq "steps: four model.called, each with the workflow, task and step" \
  "$(called "$D" "json_extract(data, '\$.step')" "json_extract(data, '\$.workflow') = 'inquiry' AND json_extract(data, '\$.task') IS NOT NULL AND json_extract(data, '\$.customer') = 'contact:ann'" | sort | paste -sd,)" \
  "ext,person,reply,sum"
run bureau --data "$D" spend --by workflow --json
expect_eq "steps: spend by workflow" \
  "$(jx "$OUT" "json_extract(value, '\$.key') || ' ' || printf('%.3f', json_extract(value, '\$.cost_usd')) || ' ' || json_extract(value, '\$.calls')")" "inquiry 0.050 4"

# ---- the ledgers stay sound --------------------------------------------------

for d in "${DIRS[@]}"; do
  n=$(basename "$d")
  run bureau --data "$d" replay --check
  expect_eq "$n: replay --check" "$RC" 0
  run bureau --data "$d" audit verify
  expect_eq "$n: audit verify" "$RC" 0
done

kill -TERM "$FAKE_PID"
wait "$FAKE_PID"
expect_eq "fake_llm exits 0" "$?" 0
exec {FAKE_FD}<&-
sanitizer_check "no sanitizer reports"
