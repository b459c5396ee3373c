#!/usr/bin/env bash
# bureau serve, driven with curl on loopback: start-up (readiness from the
# first stdout line, --listen 127.0.0.1:0 and a fixed port), API tokens
# (init, token create|list|revoke, 401 problems, never logged), POST and GET
# /v1/events (201/200 duplicate, Idempotency-Key, 400 naming the problem,
# 413, 415, NDJSON batches stored atomically, cursor paging), 404/405,
# /healthz, /metrics, the access log, SIGTERM → exit 0, and the ledger
# holding exactly the accepted events.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
ULID='[0-9A-HJKMNP-TV-Z]{26}'

# ---- tokens from the CLI ----
run bureau --data "$D" --json init
expect_eq "init --json: exit 0" "$RC" 0
TOK=$(jget "$OUT" '$.token')
TOK_ID=$(jget "$OUT" '$.token_id')
check "init --json: prints a new operator token" test -n "$TOK"
check "init --json: prints the token's id" test -n "$TOK_ID"
run bureau --data "$D" --json init
expect_eq "init --json again: no second token" "$(jget "$OUT" '$.token')" ""
run bureau --data "$D" token create --name x
expect_eq "token create: exit 0" "$RC" 0
expect_eq "token create: stdout is one line" "$(printf '%s\n' "$OUT" | wc -l)" 1
check "token create: the line is the token alone (one word)" grep -Eqx '[[:graph:]]{20,}' <<<"$OUT"
TOKX=$OUT
check "token create: a new token each time" test "$TOKX" != "$TOK"
run bureau --data "$D" token create --name victim
TOKV=$OUT
run bureau --data "$D" --json token create --name y
TOKY=$(jget "$OUT" '$.token')
check "token create --json: {\"token\",\"id\"}" test -n "$TOKY" -a -n "$(jget "$OUT" '$.id')"
run bureau --data "$D" token list
expect_eq "token list: exit 0" "$RC" 0
expect_eq "token list: a header and one line per token" "$(printf '%s\n' "$OUT" | wc -l)" 5
expect_contains "token list: shows the ids" "$OUT" "$TOK_ID"
expect_contains "token list: shows the names" "$OUT" " victim "
list=$OUT
run bureau --data "$D" --json token list
list="$list$OUT"
leaked=""
for t in "$TOK" "$TOKX" "$TOKV" "$TOKY"; do
  case "$list" in *"$t"*) leaked="$leaked $t" ;; esac
done
expect_eq "token list (text and --json): never shows a token" "$leaked" ""
vid=$(printf '%s\n' "$OUT" | sed -n 's/.*"id":"\([^"]*\)","name":"victim".*/\1/p')
check "token list --json: one object per token with id and name" test -n "$vid"
expect_eq "only the tokens' hashes are stored in the data dir" \
  "$(grep -rlF -e "$TOK" -e "$TOKX" -e "$TOKV" "$D" | head -n 3)" ""
expect_eq "the token's SHA-256 is stored" \
  "$(sqlite3 "$D/bureau.db" "SELECT count(*) FROM api_tokens WHERE token_hash = '$(printf '%s' "$TOKX" | sha256sum | cut -d' ' -f1)'")" 1

printf 'server:\n  max_body_bytes: 2048\n  timeout_s: 2\n' >"$D/bureau.yaml"

# ---- start-up: port 0, then a fixed port ----
serve_start "$D" --listen 127.0.0.1:0
check "serve --listen 127.0.0.1:0: prints 'listening on 127.0.0.1:PORT' first ($SRV_LINE)" \
  grep -Eqx 'listening on 127\.0\.0\.1:[1-9][0-9]*' <<<"$SRV_LINE"
PORT=${SRV_ADDR##*:}
http GET /healthz
expect_eq "serve on port 0: /healthz answers 200" "$CODE" 200
serve_stop
expect_eq "serve on port 0: SIGTERM → exit 0" "$SRV_RC" 0
expect_contains "serve: logs 'listening' as JSON on stderr" "$(cat "$SRV_LOG")" '"address":"127.0.0.1:'"$PORT"'"'
expect_eq "serve: a clean start and stop log no warning" "$(grep -v '"level":"info"' "$SRV_LOG" | head -n 3)" ""

serve_start "$D" --listen "127.0.0.1:$PORT"
expect_eq "serve --listen 127.0.0.1:PORT: ready, on that port" "$SRV_LINE" "listening on 127.0.0.1:$PORT"
LOG1=$SRV_LOG

# The counters below are compared with /metrics at the end.
acked=$TMP/acked       # "seq id" of every new event the server acknowledged
: >"$acked"
n_acc=0 n_dup=0 n_401=0 n_413=0 n_400=0 n_201=0
ack() { # ack: counts the answer (one event or a batch); new events go to $acked
  local s i d
  if [ -n "$(jget "$BODY" '$.events')" ]; then
    while read -r s i d; do
      if [ "$d" = 1 ]; then n_dup=$((n_dup + 1)); else n_acc=$((n_acc + 1)); echo "$s $i" >>"$acked"; fi
    done < <(sqlite3 -separator ' ' :memory: "SELECT json_extract(value,'\$.seq'), json_extract(value,'\$.id'),
               json_extract(value,'\$.duplicate') FROM json_each('${BODY//\'/\'\'}', '\$.events')")
  elif [ "$(jget "$BODY" '$.duplicate')" = 1 ]; then
    n_dup=$((n_dup + 1))
  elif [ -n "$(jget "$BODY" '$.seq')" ]; then
    n_acc=$((n_acc + 1))
    echo "$(jget "$BODY" '$.seq') $(jget "$BODY" '$.id')" >>"$acked"
  fi
  [ "$CODE" = 201 ] && n_201=$((n_201 + 1))
}
post() { # post BODY [CURL-ARGS...]: POST /v1/events as application/json with the token
  local body=$1
  shift
  http POST /v1/events -H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' \
    --data-binary "$body" "$@"
  case $CODE in
    2*) ack ;;
    400) n_400=$((n_400 + 1)) ;;
    401) n_401=$((n_401 + 1)) ;;
    413) n_413=$((n_413 + 1)) ;;
  esac
}
post_nd() { # post_nd FILE [CURL-ARGS...]: an NDJSON batch
  local f=$1
  shift
  http POST /v1/events -H "Authorization: Bearer $TOK" -H 'Content-Type: application/x-ndjson' \
    --data-binary "@$f" "$@"
  case $CODE in
    2*) ack ;;
    400) n_400=$((n_400 + 1)) ;;
    413) n_413=$((n_413 + 1)) ;;
  esac
}
problem() { # problem NAME STATUS DETAIL-NEEDLE: the last answer is STATUS, problem+json naming it
  local title detail
  expect_eq "$1: status $2" "$CODE" "$2"
  expect_eq "$1: Content-Type application/problem+json" "$CTYPE" application/problem+json
  title=$(jget "$BODY" '$.title')
  detail=$(jget "$BODY" '$.detail')
  check "$1: the problem has a title ('$title') and \"status\":$2" \
    test -n "$title" -a "$(jget "$BODY" '$.status')" = "$2"
  expect_contains "$1: the detail names the problem" "$detail" "$3"
}
ev() { # ev N [KEY]: one event of source "it" with data {"n":N}
  if [ $# -ge 2 ]; then
    printf '{"type":"it.tested","source":"it","idempotency_key":"%s","data":{"n":%s}}' "$2" "$1"
  else
    printf '{"type":"it.tested","source":"it","data":{"n":%s}}' "$1"
  fi
}
nstored() { sqlite3 "$D/bureau.db" "SELECT count(*) FROM events WHERE source = 'it'"; }

# ---- authentication ----
unauth() { # unauth NAME CURL-ARGS...: GET /v1/events answered 401 with a problem
  local name=$1
  shift
  http GET /v1/events "$@"
  problem "$name" 401 "token"
  n_401=$((n_401 + 1))
}
unauth "no Authorization header" 
unauth "Authorization: Basic" -H "Authorization: Basic $(printf 'a:b' | base64)"
unauth "Authorization: Bearer with no token" -H "Authorization: Bearer "
unauth "a garbled bearer token" -H "Authorization: Bearer not-a-token"
unauth "a token with one character changed" -H "Authorization: Bearer ${TOK%?}$([ "${TOK: -1}" = 0 ] && echo 1 || echo 0)"
unauth "a token with a character appended" -H "Authorization: Bearer ${TOK}0"
http POST /v1/events -H 'Content-Type: application/json' --data-binary "$(ev 0)"
problem "POST without a token" 401 "token"
n_401=$((n_401 + 1))
http GET /v1/events -H "Authorization: Bearer $TOKV"
expect_eq "a live token (victim) is accepted" "$CODE" 200
run bureau --data "$D" token revoke "$vid"
expect_eq "token revoke ID (while serving): exit 0" "$RC" 0
unauth "a revoked token is refused by the running server" -H "Authorization: Bearer $TOKV"
run bureau --data "$D" token list
expect_contains "token list: shows the revoked token as revoked" "$(grep victim <<<"$OUT")" revoked
http GET /v1/events -H "Authorization: Bearer $TOKX"
expect_eq "another live token still works after a revoke" "$CODE" 200
expect_eq "no event stored by refused requests" "$(nstored)" 0

# ---- POST /v1/events: one event ----
post "$(ev 1 key-1)"
expect_eq "POST one event: 201" "$CODE" 201
check "POST one event: body {\"seq\",\"id\"} ($BODY)" grep -Eqx "\{\"seq\":[0-9]+,\"id\":\"$ULID\"\}" <<<"$BODY"
expect_eq "POST one event: Content-Type application/json" "$CTYPE" application/json
seq1=$(jget "$BODY" '$.seq')
id1=$(jget "$BODY" '$.id')
post "$(ev 1 key-1)"
expect_eq "the same idempotency_key again: 200" "$CODE" 200
expect_eq "the same idempotency_key again: the first seq and id, duplicate:true" \
  "$BODY" "{\"seq\":$seq1,\"id\":\"$id1\",\"duplicate\":true}"
post "$(ev 99 key-1)"
expect_eq "the same key with other data: still the first event (200)" "$CODE/$(jget "$BODY" '$.seq')" "200/$seq1"
expect_eq "an event with the same key is stored once" "$(nstored)" 1
stored=$(sqlite3 "$D/bureau.db" "SELECT type||' '||json_extract(data,'\$.n')||' '||id FROM events WHERE seq = $seq1")
expect_eq "the event is stored as posted, under the acknowledged seq and id" "$stored" "it.tested 1 $id1"

post "$(ev 2)" -H 'Idempotency-Key: hk-1'
expect_eq "Idempotency-Key header: 201" "$CODE" 201
seqh=$(jget "$BODY" '$.seq')
post "$(ev 3)" -H 'Idempotency-Key: hk-1'
expect_eq "Idempotency-Key header again (other body): 200 duplicate of the first" \
  "$CODE/$(jget "$BODY" '$.seq')/$(jget "$BODY" '$.duplicate')" "200/$seqh/1"
post "$(ev 2 hk-1)"
expect_eq "a field idempotency_key equal to an earlier header key: duplicate" "$CODE/$(jget "$BODY" '$.seq')" "200/$seqh"
post "$(ev 4 field-key)" -H 'Idempotency-Key: header-key'
problem "Idempotency-Key header and idempotency_key field differ" 400 "Idempotency-Key"
post "$(ev 5 same-key)" -H 'Idempotency-Key: same-key'
expect_eq "Idempotency-Key header equal to the field: accepted" "$CODE" 201
post "$(ev 6)"
expect_eq "no key: 201" "$CODE" 201
post "$(ev 6)"
expect_eq "no key: the same event again is new (201)" "$CODE" 201
http POST /v1/events -H "Authorization: Bearer $TOK" --data-binary "$(ev 7)" -H 'Content-Type:'
case $CODE in 2*) ack ;; esac
expect_eq "no Content-Type: taken as one JSON event (201)" "$CODE" 201
post "$(ev 8)" -H 'Content-Type: application/json; charset=utf-8'
expect_eq "Content-Type application/json; charset=utf-8: 201" "$CODE" 201

# ---- bad input: 400 naming it, nothing stored ----
n0=$(nstored)
post '{"type":"it.tested","source":"it",'
problem "malformed JSON" 400 "line 1, column"
post "$(printf '{\n  "type": "it.tested",\n  "source": "it"\n  "data": {}\n}\n')"
problem "malformed JSON on line 4" 400 "line 4, column"
post '{"type":"it.tested","data":{}}'
problem "missing field source" 400 "field 'source'"
post '{"source":"it","data":{}}'
problem "missing field type" 400 "field 'type'"
post '{"type":"it.tested","source":"it"}'
problem "missing field data" 400 "field 'data'"
post '{"type":"payment.succeeded","source":"it","data":{"amount":"12","currency":"eur","customer":{},"provider_id":"p"}}'
problem "a mistyped nested field" 400 "data.amount"
post '[1,2]'
problem "not an object" 400 "object"
post ''
problem "an empty body" 400 "JSON"
http POST /v1/events -H "Authorization: Bearer $TOK" -H 'Content-Type: text/plain' --data-binary "$(ev 9)"
problem "Content-Type text/plain" 415 "application/json"
http POST /v1/events -H "Authorization: Bearer $TOK" -F "x=$(ev 9)"
problem "Content-Type multipart/form-data" 415 "application/json"
http POST /v1/events -H "Authorization: Bearer $TOK" --data-binary "$(ev 9)" -H 'Idempotency-Key;'
case $CODE in 2*) ack ;; 400) n_400=$((n_400 + 1)) ;; esac
expect_eq "an empty Idempotency-Key header is refused (400)" "$CODE" 400

# oversized: server.max_body_bytes = 2048
big=$(head -c 4096 /dev/zero | tr '\0' x)
post "{\"type\":\"it.tested\",\"source\":\"it\",\"data\":{\"x\":\"$big\"}}"
problem "a 4 KB event over max_body_bytes 2048" 413 "2048"
post "{\"type\":\"it.tested\",\"source\":\"it\",\"data\":{\"x\":\"$big\"}}" -H 'Transfer-Encoding: chunked'
[ "$CODE" = 413 ] || n_413=$((n_413 + 1)) # refused either way (counted as too_large), see below
problem "a 4 KB chunked event (no Content-Length) over max_body_bytes" 413 "2048"
post "{\"type\":\"it.tested\",\"source\":\"it\",\"data\":{\"x\":\"${big:0:1800}\"}}"
expect_eq "an event just under max_body_bytes: 201" "$CODE" 201
expect_eq "refused requests stored nothing" "$(nstored)" $((n0 + 1))

# ---- NDJSON batches ----
{ ev 10; echo; ev 11 b-11; echo; ev 12; echo; } >"$TMP/b1.ndjson"
post_nd "$TMP/b1.ndjson"
expect_eq "NDJSON batch of 3: 201" "$CODE" 201
expect_eq "NDJSON batch: one {seq,id,duplicate:false} per line, in order" \
  "$(sqlite3 :memory: "SELECT count(*), sum(json_extract(value,'\$.duplicate')), max(json_extract(value,'\$.seq')) - min(json_extract(value,'\$.seq')) FROM json_each('$BODY','\$.events')")" \
  "3|0|2"
expect_eq "NDJSON batch: the lines are stored in order" \
  "$(sqlite3 "$D/bureau.db" "SELECT group_concat(json_extract(data,'\$.n')) FROM (SELECT data FROM events WHERE source='it' ORDER BY seq DESC LIMIT 3 ) ")" "12,11,10"
{ ev 11 b-11; echo; ev 13 b-13; echo; } >"$TMP/b2.ndjson"
post_nd "$TMP/b2.ndjson"
expect_eq "NDJSON batch with one repeated key: 201, the first line a duplicate" \
  "$CODE/$(jget "$BODY" '$.events[0].duplicate')/$(jget "$BODY" '$.events[1].duplicate')" "201/1/0"
{ ev 11 b-11; echo; ev 13 b-13; echo; } >"$TMP/b3.ndjson"
post_nd "$TMP/b3.ndjson"
expect_eq "NDJSON batch of duplicates only: 200" "$CODE" 200
{ ev 14; echo; ev 15; echo; } >"$TMP/b4.ndjson"
post_nd "$TMP/b4.ndjson" -H 'Idempotency-Key: batch-k'
expect_eq "NDJSON batch with an Idempotency-Key header: 201" "$CODE" 201
post "$(ev 16 batch-k:2)"
expect_eq "NDJSON + Idempotency-Key K: line 2 is keyed K:2" "$CODE/$(jget "$BODY" '$.duplicate')" 200/1
post_nd "$TMP/b4.ndjson" -H 'Idempotency-Key: batch-k'
expect_eq "NDJSON batch with the same Idempotency-Key again: 200, all duplicates" \
  "$CODE/$(jget "$BODY" '$.events[0].duplicate')$(jget "$BODY" '$.events[1].duplicate')" "200/11"
n0=$(nstored)
{ ev 20; echo; ev 21; echo; printf '{"type":"it.tested","source":"it","data":{"n":22}\n'; ev 23; echo; } >"$TMP/bad3.ndjson"
post_nd "$TMP/bad3.ndjson"
problem "NDJSON batch with a malformed line 3" 400 "line 3"
{ ev 20; echo; ev 21; echo; echo '{"type":"it.tested","data":{}}'; ev 23; echo; } >"$TMP/bad3b.ndjson"
post_nd "$TMP/bad3b.ndjson"
problem "NDJSON batch whose line 3 lacks a field" 400 "line 3: field 'source'"
expect_eq "NDJSON batch with a bad line: nothing stored" "$(nstored)" "$n0"
{ ev 30 "bigbatch"; echo; printf '{"type":"it.tested","source":"it","data":{"x":"%s"}}\n' "$big"; } >"$TMP/big.ndjson"
post_nd "$TMP/big.ndjson"
expect_eq "NDJSON: a 4 KB line is under max_batch_bytes (201)" "$CODE" 201
printf '\n\n' >"$TMP/empty.ndjson"
post_nd "$TMP/empty.ndjson"
expect_eq "NDJSON batch with no event: 400" "$CODE" 400

# ---- GET /v1/events: paging ----
total=$(nstored)
cursor=""
pages=0
: >"$TMP/paged"
while [ "$pages" -lt 100 ]; do
  http GET "/v1/events?source=it&limit=3${cursor:+&cursor=$cursor}" -H "Authorization: Bearer $TOKX"
  [ "$CODE" = 200 ] || break
  pages=$((pages + 1))
  sqlite3 :memory: "SELECT json_extract(value,'\$.seq')||' '||json_extract(value,'\$.id') FROM json_each('${BODY//\'/\'\'}','\$.events')" >>"$TMP/paged"
  cursor=$(jget "$BODY" '$.next_cursor')
  [ -n "$cursor" ] || break
done
expect_eq "GET /v1/events paging: every page 200" "$CODE" 200
expect_eq "GET /v1/events?source=it&limit=3 paged with next_cursor: all $total events" \
  "$(wc -l <"$TMP/paged")" "$total"
expect_eq "GET /v1/events paging: every event once, in seq order, with its id" \
  "$(cat "$TMP/paged")" "$(sqlite3 "$D/bureau.db" "SELECT seq||' '||id FROM events WHERE source='it' ORDER BY seq")"
expect_eq "GET /v1/events paging: next_cursor is null on the last page" \
  "$(sqlite3 :memory: "SELECT json_type('${BODY//\'/\'\'}', '\$.next_cursor')")" null
http GET "/v1/events?limit=2" -H "Authorization: Bearer $TOK"
expect_eq "GET /v1/events?limit=2: two events and next_cursor \"2\"" \
  "$(sqlite3 :memory: "SELECT json_array_length('$BODY','\$.events'), json_type('$BODY','\$.next_cursor'), json_extract('$BODY','\$.next_cursor')")" \
  "2|text|2"
expect_eq "GET /v1/events: events carry type, source, data, hash" \
  "$(jget "$BODY" '$.events[0].type')/$(jget "$BODY" '$.events[0].seq')/$(jget "$BODY" '$.events[0].hash' | wc -c)" \
  "operator.token.created/1/65"
http GET "/v1/events?since=$seq1&type=it.tested&limit=1" -H "Authorization: Bearer $TOK"
expect_eq "GET /v1/events?since=SEQ&type=T: the first matching event after SEQ" \
  "$(jget "$BODY" '$.events[0].type') $(( $(jget "$BODY" '$.events[0].seq') > seq1 ))" "it.tested 1"
http GET "/v1/events?limit=0" -H "Authorization: Bearer $TOK"
problem "GET /v1/events?limit=0" 400 "limit"
http GET "/v1/events?limit=1001" -H "Authorization: Bearer $TOK"
problem "GET /v1/events?limit=1001" 400 "limit"
http GET "/v1/events?cursor=abc" -H "Authorization: Bearer $TOK"
problem "GET /v1/events?cursor=abc" 400 "cursor"

# ---- other routes ----
http GET /v2/events
problem "an unknown route" 404 "/v2/events"
http GET /
expect_eq "GET /: the dashboard (test_web.sh tests it)" "$CODE $CTYPE" "200 text/html; charset=utf-8"
http GET /v1/nosuch
expect_eq "an unknown /v1 route: 404" "$CODE" 404
http DELETE /v1/events -H "Authorization: Bearer $TOK"
problem "DELETE /v1/events" 405 "GET or POST"
http PUT /v1/events -H "Authorization: Bearer $TOK" --data-binary "$(ev 1)"
expect_eq "PUT /v1/events: 405" "$CODE" 405
http POST /healthz --data-binary x
problem "POST /healthz" 405 "GET"
http POST /metrics --data-binary x
expect_eq "POST /metrics: 405" "$CODE" 405

# keep-alive: several requests on one connection, each answered after its append
printf '%s' "$(ev 40 ka-1)" >"$TMP/ka.json"
out=$(curl -sS --noproxy '*' --max-time 30 -H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' \
  --data-binary "@$TMP/ka.json" -o /dev/null -o /dev/null -o /dev/null -w '%{http_code}:%{num_connects} ' \
  "$SRV_URL/v1/events" "$SRV_URL/v1/events" "$SRV_URL/v1/events")
expect_eq "keep-alive: three POSTs on one connection: 201 then two duplicates" "$out" "201:1 200:0 200:0 "
sqlite3 "$D/bureau.db" "SELECT seq||' '||id FROM events WHERE json_extract(data,'\$.n') = 40" >>"$acked"
n_acc=$((n_acc + 1)) n_dup=$((n_dup + 2)) n_201=$((n_201 + 1))

# limits on headers and slow clients (server.timeout_s: 2)
http GET /healthz -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' a)"
check "a 20 KB header (over max_header_bytes 16 KiB): 431 or 413 ($CODE)" grep -Eqx '431|413' <<<"$CODE"
idle() { # idle TEXT: sends TEXT on a new connection, then nothing; prints "EOF SECONDS" when closed
  local fd t0 r
  exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
  printf '%b' "$1" >&"$fd"
  t0=$(date +%s)
  while IFS= read -r -t 15 -u "$fd" _; do :; done
  r=$?
  exec {fd}<&-
  [ "$r" -gt 128 ] && echo "open after 15 s" || echo "EOF $(( $(date +%s) - t0 ))"
}
r=$(idle '')
check "an idle connection is closed after timeout_s 2 ($r)" grep -Eqx 'EOF [1-9]' <<<"$r"
r=$(idle "POST /v1/events HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer $TOK\\r\\nContent-Type: application/json\\r\\nContent-Length: 100\\r\\n\\r\\n{\"type\"")
check "a client that stops sending its body is disconnected after timeout_s 2 ($r)" grep -Eqx 'EOF [1-9]' <<<"$r"
http GET /healthz
expect_eq "the server still answers after all that" "$CODE" 200

http GET /healthz
head=$(sqlite3 "$D/bureau.db" 'SELECT max(seq) FROM events')
expect_eq "GET /healthz: 200 {\"status\":\"ok\",\"head\":SEQ}" "$CODE $(jget "$BODY" '$.status') $(jget "$BODY" '$.head')" "200 ok $head"

# ---- /metrics ----
metric() { # metric NAME{LABELS}: its value in $M
  local v
  v=$(printf '%s\n' "$M" | grep -F "$1 " | grep -v '^#' | head -n 1 | awk '{print $NF}')
  printf '%s' "${v:-missing}"
}
http GET /metrics
M=$BODY
expect_eq "GET /metrics: 200" "$CODE" 200
check "GET /metrics: Content-Type text/plain ($CTYPE)" grep -q '^text/plain' <<<"$CTYPE"
expect_eq "metrics: bureau_events_accepted_total{connector=\"api\"} counts the new events" \
  "$(metric 'bureau_events_accepted_total{connector="api"}')" "$n_acc"
expect_eq "metrics: bureau_events_duplicate_total{connector=\"api\"} counts the duplicates" \
  "$(metric 'bureau_events_duplicate_total{connector="api"}')" "$n_dup"
expect_eq "metrics: rejected{connector=\"api\",reason=\"unauthorized\"} counts the 401s" \
  "$(metric 'bureau_requests_rejected_total{connector="api",reason="unauthorized"}')" "$n_401"
expect_eq "metrics: rejected{connector=\"api\",reason=\"too_large\"} counts the 413s" \
  "$(metric 'bureau_requests_rejected_total{connector="api",reason="too_large"}')" "$n_413"
bad=$(metric 'bureau_requests_rejected_total{connector="api",reason="bad_body"}')
check "metrics: rejected{connector=\"api\",reason=\"bad_body\"} counts the $n_400 bad bodies (got $bad)" \
  test "$bad" != missing -a "${bad//[^0-9]/}" = "$bad" -a "${bad:-0}" -ge "$n_400"
for t in counter:bureau_events_accepted_total counter:bureau_requests_rejected_total \
  histogram:bureau_http_request_duration_seconds histogram:bureau_ledger_batch_size \
  gauge:process_resident_memory_bytes gauge:bureau_http_open_connections gauge:process_uptime_seconds; do
  expect_contains "metrics: # TYPE ${t#*:} ${t%%:*}" "$M" "# TYPE ${t#*:} ${t%%:*}"
done
c1=$(metric bureau_http_request_duration_seconds_count)
expect_eq "metrics: the latency histogram's +Inf bucket equals its count" \
  "$(metric 'bureau_http_request_duration_seconds_bucket{le="+Inf"}')" "$c1"
expect_eq "metrics: latency buckets never decrease" \
  "$(printf '%s\n' "$M" | grep '^bureau_http_request_duration_seconds_bucket' | awk '{ if ($NF < prev) bad = 1; prev = $NF } END { print bad + 0 }')" 0
check "metrics: a latency sum" grep -Eq '^bureau_http_request_duration_seconds_sum [0-9.]+$' <<<"$M"
bs=$(metric bureau_ledger_batch_size_sum)
check "metrics: bureau_ledger_batch_size counts this writer's events ($n_acc <= $bs <= $((n_acc + n_dup)))" \
  test "$bs" != missing -a "${bs:-0}" -ge "$n_acc" -a "${bs:-0}" -le $((n_acc + n_dup))
check "metrics: bureau_ledger_batch_size has buckets and a count" \
  test "$(metric 'bureau_ledger_batch_size_bucket{le="+Inf"}')" = "$(metric bureau_ledger_batch_size_count)" -a "$(metric bureau_ledger_batch_size_count)" != missing
expect_eq "metrics: bureau_ledger_head_seq" "$(metric bureau_ledger_head_seq)" "$head"
rss=$(metric process_resident_memory_bytes)
check "metrics: process_resident_memory_bytes is a plausible RSS ($rss)" \
  test "${rss//[^0-9]/}" = "$rss" -a "${rss:-0}" -gt 1000000
check "metrics: process_uptime_seconds" grep -Eq '^process_uptime_seconds [0-9.]+$' <<<"$M"
# Exactly the requests since then are counted: 3 + this /metrics request.
http GET /healthz; http GET /nope; http GET /v1/events
http GET /metrics
M=$BODY
expect_eq "metrics: every request counted once in the latency histogram" \
  "$(metric bureau_http_request_duration_seconds_count)" $((c1 + 4))
expect_eq "metrics: a 401 counted once more" \
  "$(metric 'bureau_requests_rejected_total{connector="api",reason="unauthorized"}')" $((n_401 + 1))

# ---- stop; the log; the ledger ----
serve_stop
expect_eq "SIGTERM: exit status 0" "$SRV_RC" 0
log=$(cat "$LOG1")
leaked=""
for t in "$TOK" "$TOKX" "$TOKV" "$TOKY"; do
  case "$log" in *"$t"*) leaked="$leaked $t" ;; esac
done
expect_eq "the server's log never contains a token" "$leaked" ""
printf '%s\n' "$log" | grep '"msg":"request"' >"$TMP/reqlog"
expect_eq "log: every line is one JSON object" "$(jl "$LOG1" 'json_type(value)' 2>&1 | sort -u)" object
expect_eq "log: one line per 201 of POST /v1/events, each with the seq it stored" \
  "$(jl "$TMP/reqlog" "json_extract(value,'\$.method')||' '||json_extract(value,'\$.path')||' '||json_extract(value,'\$.status')||' '||typeof(json_extract(value,'\$.duration_ms'))||' '||typeof(json_extract(value,'\$.seq'))" | grep -c '^POST /v1/events 201 real integer$')" \
  "$n_201"
check "log: query strings are not logged" test "$(grep -c 'limit=' "$TMP/reqlog")" -eq 0
check "log: bodies are not logged" test "$(grep -c 'it.tested' "$LOG1")" -eq 0
check "log: the 401s are logged with their status" test "$(grep -c '"status":401' "$TMP/reqlog")" -ge "$n_401"

bureau --data "$D" events --json --source it >"$TMP/events.json"
jl "$TMP/events.json" "json_extract(value,'\$.seq')||' '||json_extract(value,'\$.id')" | sort -n >"$TMP/stored"
expect_eq "the ledger holds exactly the acknowledged events (bureau events --json)" \
  "$(diff <(sort -n "$acked") "$TMP/stored" | head -n 5)" ""
expect_eq "the acknowledged count matches ($n_acc)" "$(wc -l <"$TMP/stored")" "$n_acc"
run bureau --data "$D" audit verify
expect_eq "audit verify after serve: ok" "$RC" 0

# ---- start-up failures ----
serve_start "$D" --listen "127.0.0.1:$PORT"
# bounded: a second server that does start is stopped by timeout (status 124)
run timeout 10 "$BUREAU" --data "$D" serve --listen "127.0.0.1:$PORT"
expect_eq "a second server on a port in use: refused (exit 1)" "$RC" 1
check "a second server on a port in use: says why ('bureau serve: ...127.0.0.1:$PORT...')" \
  grep -q "^bureau serve: .*127\.0\.0\.1:$PORT" <<<"$ERR"
expect_eq "a second server on a port in use: nothing on stdout" "$OUT" ""
serve_stop INT
expect_eq "SIGINT: exit status 0" "$SRV_RC" 0
run bureau --data "$D" serve --listen nonsense
expect_eq "serve --listen nonsense: exit 1 or 2" "$(echo "$RC" | grep -cx '[12]')" 1
printf 'connectors:\n  - name: h\n    kind: webhook\n    secret_env: BUREAU_IT_UNSET_SECRET\n    type: a.b\n' >"$D/bureau.yaml"
run env -u BUREAU_IT_UNSET_SECRET "$BUREAU" --data "$D" serve --listen 127.0.0.1:0
expect_eq "serve with a connector whose secret_env is unset: exit 1" "$RC" 1
expect_contains "serve with an unset secret_env: names the variable" "$ERR" BUREAU_IT_UNSET_SECRET

sanitizer_check "no sanitizer reports"
