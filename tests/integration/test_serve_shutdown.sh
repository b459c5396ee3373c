#!/usr/bin/env bash
# SIGTERM during a load of concurrent POSTs: 8 curl loops post events with
# unique keys (each at most 300; four open a connection per request, four
# keep one connection alive) and report each answer through a FIFO; after
# the 200th acknowledgement the server gets SIGTERM. It must take no new
# requests, exit 0, and after it `bureau audit verify` passes, every request
# answered 2xx is in the ledger under the acknowledged seq and id, nothing
# was stored that was not posted, and a restarted server knows the keys.
. "$(dirname "$0")/lib.sh"

LOADERS=8
PER_LOADER=300
ACKS_BEFORE_STOP=200
D=$TMP/data
run bureau --data "$D" --json init
TOK=$(jget "$OUT" '$.token')
serve_start "$D" --listen 127.0.0.1:0
check "serve: started" test -n "$SRV_ADDR"

event() { # event K I: the JSON of event load-K-I
  printf '{"type":"load.tick","source":"load","idempotency_key":"load-%s-%s","data":{"k":%s,"i":%s}}' "$1" "$2" "$1" "$2"
}
# loader K (odd K): posts load-K-1.. load-K-PER_LOADER, one curl (a new
# connection) each; appends "KEY HTTP-CODE CURL-EXIT BODY" to load.K and the
# code to fd 4; stops at the first request that gets no answer.
loader() {
  local k=$1 i out rc code body
  for ((i = 1; i <= PER_LOADER; i++)); do
    out=$(curl -sS --noproxy '*' --connect-timeout 5 --max-time 60 -w '\n%{http_code}' \
      -H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' \
      --data-binary "$(event "$k" "$i")" "$SRV_URL/v1/events" 2>/dev/null)
    rc=$?
    code=${out##*$'\n'}
    body=${out%$'\n'*}
    [ "$body" = "$out" ] && body=""
    body=${body%$'\n'}
    printf '%s %s %s %s\n' "load-$k-$i" "${code:-000}" "$rc" "$body" >>"$TMP/load.$k"
    printf '%s\n' "${code:-000}" >&4
    [ "${code:-000}" = 000 ] && break
  done
}
# keepalive_loader K (even K): the same events from one curl process on a
# keep-alive connection, from the config file curl.K (one transfer per event,
# each body to its own file, written before the load starts); each answer's
# code goes to fd 4 as it comes.
keepalive_config() { # keepalive_config K: writes curl.K
  mkdir -p "$TMP/body.$1"
  awk -v k="$1" -v n="$PER_LOADER" -v url="$SRV_URL/v1/events" -v tok="$TOK" -v dir="$TMP/body.$1" 'BEGIN {
    for (i = 1; i <= n; i++) {
      if (i > 1) print "next"
      printf "url = \"%s\"\nsilent\nnoproxy = \"*\"\nmax-time = 60\n", url
      printf "header = \"Authorization: Bearer %s\"\nheader = \"Content-Type: application/json\"\n", tok
      printf "data-binary = \"{\\\"type\\\":\\\"load.tick\\\",\\\"source\\\":\\\"load\\\",\\\"idempotency_key\\\":\\\"load-%d-%d\\\",\\\"data\\\":{\\\"k\\\":%d,\\\"i\\\":%d}}\"\n", k, i, k, i
      printf "output = \"%s/%d\"\nwrite-out = \"load-%d-%d %%{http_code} %%{exitcode}\\n\"\n", dir, i, k, i
    }
  }' >"$TMP/curl.$1"
}
keepalive_loader() {
  stdbuf -oL curl -K "$TMP/curl.$1" 2>/dev/null | while read -r key code rc; do
    printf '%s %s %s\n' "$key" "$code" "$rc" >>"$TMP/load.$1"
    printf '%s\n' "$code" >&4
  done
}
with_bodies() { # with_bodies K: load.K of a keep-alive loader with each answer's body
  awk -v dir="$TMP/body.$1" '{
    n = split($1, part, "-"); f = dir "/" part[n]; body = ""
    if ((getline line < f) > 0) body = line
    close(f)
    print $1, $2, $3, body
  }' "$TMP/load.$1"
}
mkfifo "$TMP/answers"
for k in $(seq 2 2 "$LOADERS"); do keepalive_config "$k"; done
pids=""
for k in $(seq 1 "$LOADERS"); do
  : >"$TMP/load.$k"
  if [ $((k % 2)) = 1 ]; then
    loader "$k" 4>"$TMP/answers" </dev/null >/dev/null 2>&1 &
  else
    keepalive_loader "$k" 4>"$TMP/answers" </dev/null >/dev/null 2>&1 &
  fi
  pids="$pids $!"
done
bg_track $pids
exec 3<"$TMP/answers"
acks=0
while [ "$acks" -lt "$ACKS_BEFORE_STOP" ] && IFS= read -r -t 60 code <&3; do
  case $code in 2??) acks=$((acks + 1)) ;; esac
done
kill -TERM "$SRV_PID"
t_term=$(date +%s%N)
check "the server got SIGTERM after $ACKS_BEFORE_STOP acknowledgements ($acks)" test "$acks" -ge "$ACKS_BEFORE_STOP"
# Every loader ends at its first unanswered request (or after PER_LOADER).
timeout 120 cat <&3 >/dev/null
exec 3<&-
for p in $pids; do wait "$p"; done
serve_stop 0 # already signalled: only wait for it
t_stop=$(( ($(date +%s%N) - t_term) / 1000000 ))
check "SIGTERM under load: the server stopped within 10 s (${t_stop} ms)" test "$t_stop" -lt 10000
expect_eq "SIGTERM under load: the server exits with status 0" "$SRV_RC" 0
expect_contains "SIGTERM under load: the log says stopped" "$(tail -n 3 "$SRV_LOG")" '"msg":"stopped"'
after=$(sed -n '/"msg":"stopping"/,$p' "$SRV_LOG" | grep '"msg":"request"' | grep -c '"status":2')
check "after SIGTERM at most the $LOADERS requests in flight are answered 2xx, no new ones ($after)" \
  test "$after" -le "$LOADERS"

for k in $(seq 1 "$LOADERS"); do
  if [ $((k % 2)) = 1 ]; then cat "$TMP/load.$k"; else with_bodies "$k"; fi
done >"$TMP/answers.all"
total=$(wc -l <"$TMP/answers.all")
ok2xx=$(awk '$2 ~ /^2/' "$TMP/answers.all" | wc -l)
unanswered=$(awk '$2 == "000"' "$TMP/answers.all" | wc -l)
summary=$(awk '{ n[$2 "/" $3]++ } END { for (k in n) printf "%s:%d ", k, n[k] }' "$TMP/answers.all")
check "the load was still running at SIGTERM: requests went unanswered ($total requests, status/curl-exit: $summary)" \
  test "$unanswered" -ge 1 -a "$total" -lt $((LOADERS * PER_LOADER))
# (a 503 may refuse a request that came after SIGTERM; nothing else may fail)
expect_eq "no request was answered 5xx other than 503 while stopping" \
  "$(awk '$2 ~ /^5/ && $2 != 503' "$TMP/answers.all" | head -n 3)" ""
expect_eq "every 2xx was a 201 (the keys are unique)" "$(awk '$2 ~ /^2/ && $2 != 201' "$TMP/answers.all" | head -n 3)" ""

run bureau --data "$D" audit verify
expect_eq "after the stop: bureau audit verify passes ($OUT)" "$RC" 0
awk '$2 ~ /^2/ { print $4 }' "$TMP/answers.all" >"$TMP/acked.json"
jl "$TMP/acked.json" "json_extract(value,'\$.seq')||' '||json_extract(value,'\$.id')" | sort >"$TMP/acked"
expect_eq "every 2xx answer carried a seq and an id" "$(grep -vc '^[0-9][0-9]* [0-9A-Z]\{26\}$' "$TMP/acked")" 0
bureau --data "$D" events --json --source load >"$TMP/events.json"
jl "$TMP/events.json" "json_extract(value,'\$.seq')||' '||json_extract(value,'\$.id')" | sort >"$TMP/stored"
stored=$(wc -l <"$TMP/stored")
expect_eq "every request answered 2xx is in the ledger with the acknowledged seq and id" \
  "$(comm -23 "$TMP/acked" "$TMP/stored" | head -n 5 | paste -sd' ')" ""
check "stored events ($stored) >= 2xx answers ($ok2xx)" test "$stored" -ge "$ok2xx"
jl "$TMP/events.json" "'load-'||json_extract(value,'\$.data.k')||'-'||json_extract(value,'\$.data.i')" | sort >"$TMP/stored.keys"
awk '{ print $1 }' "$TMP/answers.all" | sort >"$TMP/posted.keys"
expect_eq "only posted events are stored, each once" \
  "$(comm -23 "$TMP/stored.keys" "$TMP/posted.keys" | head -n 3) $(uniq -d "$TMP/stored.keys" | head -n 3)" " "

# Restart: the acknowledged events answer as duplicates with their seq.
serve_start "$D" --listen 127.0.0.1:0
check "restart after the stop: serving again" test -n "$SRV_ADDR"
read -r key code _ body < <(awk '$2 == 201' "$TMP/answers.all" | tail -n 1)
k=${key#load-}
http POST /v1/events -H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' \
  --data-binary "{\"type\":\"load.tick\",\"source\":\"load\",\"idempotency_key\":\"$key\",\"data\":{\"k\":${k%-*},\"i\":${k#*-}}}"
expect_eq "after the restart, an acknowledged key is a duplicate of its seq" \
  "$CODE $(jget "$BODY" '$.seq') $(jget "$BODY" '$.duplicate')" "200 $(jget "$body" '$.seq') 1"
http GET /healthz
expect_eq "after the restart: /healthz head is the ledger's head" \
  "$(jget "$BODY" '$.head')" "$(sqlite3 "$D/bureau.db" 'SELECT max(seq) FROM events')"
serve_stop
expect_eq "restarted server: SIGTERM → exit 0" "$SRV_RC" 0

sanitizer_check "no sanitizer reports"
