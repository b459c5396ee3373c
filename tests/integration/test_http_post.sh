#!/usr/bin/env bash
# webhook.post over loopback: http_post_send (one http_post_deliver() call)
# against hook_sink (tests/tools). A receiver that fails twice sees three
# requests with one Idempotency-Key and one body (retry, retry, delivered);
# the signature verifies at the receiver (checked there with OpenSSL, not
# with Bureau's code) and is absent without a secret; 404 is permanent, 429
# retried, a 301 permanent and not followed; a receiver that never answers,
# a failed TLS handshake and a closed port are retried; a non-http URL is
# refused by the check.
. "$(dirname "$0")/lib.sh"

BUILD=${BUILD:-$(dirname "$BUREAU")}
SINK=$BUILD/hook_sink
SEND=$BUILD/http_post_send
# loopback only: no proxy from the environment
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
export NO_PROXY='*' no_proxy='*'

SECRET="whsec_it_$$_é"

# sink_start NAME [ARGS...]: starts hook_sink (tracked) with its port in
# $TMP/NAME.port and its log in SINK_LOG=$TMP/NAME.log; waits for its
# "listening on" line through a FIFO; sets SINK_PID, SINK_FD and SINK_URL.
sink_start() {
  local name=$1 line fifo
  shift
  fifo=$TMP/$name.out
  SINK_LOG=$TMP/$name.log
  mkfifo "$fifo"
  "$SINK" --port-file "$TMP/$name.port" --log "$SINK_LOG" "$@" >"$fifo" 2>"$TMP/$name.err" &
  SINK_PID=$!
  bg_track "$SINK_PID"
  exec {SINK_FD}<"$fifo"
  line=""
  IFS= read -r -t 30 line <&"$SINK_FD"
  SINK_URL=http://127.0.0.1:$(cat "$TMP/$name.port" 2>/dev/null)
  [[ $line == "listening on ${SINK_URL#http://}" ]] || {
    not_ok "$name starts" "line '$line', $(cat "$TMP/$name.err")"
    return 1
  }
}
# sink_stop: SIGTERM, then the exit status in SINK_RC.
sink_stop() {
  kill -TERM "$SINK_PID" 2>/dev/null
  wait "$SINK_PID"
  SINK_RC=$?
  exec {SINK_FD}<&-
}
# send URL [ARGS...]: one delivery of $BODY_FILE; sets OUT, RC, RESULT, HCODE, DETAIL.
send() {
  local url=$1
  shift
  run "$SEND" "$@" "$url" "$BODY_FILE" "${KEY:-key-1}"
  RESULT=$(jget "$OUT" '$.result')
  HCODE=$(jget "$OUT" '$.code')
  DETAIL=$(jget "$OUT" '$.detail')
}
lines() { if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }

BODY_FILE=$TMP/body.json
cat >"$BODY_FILE" <<'EOF'
{ "event": "lead.created",
  "lead": { "id": "L-1", "name": "Zoë", "tags": ["a", "b"] },
  "n": 42 }
EOF
WANT_BODY=$(sqlite3 :memory: "SELECT json(readfile('$BODY_FILE'))")

# ---- fails twice, then succeeds -------------------------------------------

sink_start flaky --fail 2 --secret "$SECRET" || exit 1
KEY=evt_01HX.notify
outcomes=""
for i in 1 2 3; do
  send "$SINK_URL/hook" --secret "$SECRET" --timeout 10
  outcomes="$outcomes $RESULT/$HCODE"
  [ "$i" = 1 ] && first_detail=$DETAIL
  # the line is in the log once the client has its answer
  expect_eq "flaky: attempt $i logged before the answer" "$(lines "$SINK_LOG")" "$i"
done
expect_eq "flaky: retry, retry, delivered" "$outcomes" " retry/500 retry/500 delivered/200"
expect_eq "flaky: one Idempotency-Key for all" \
  "$(jl "$SINK_LOG" "json_extract(value, '\$.key')" | sort -u)" "$KEY"
expect_eq "flaky: one body for all, the one sent" \
  "$(jl "$SINK_LOG" "json_extract(value, '\$.body')" | sort -u)" "$WANT_BODY"
expect_eq "flaky: signature verifies at the receiver" \
  "$(jl "$SINK_LOG" "json_extract(value, '\$.signature')" | sort -u)" "ok"
expect_eq "flaky: statuses answered" \
  "$(jl "$SINK_LOG" "json_extract(value, '\$.status')" | paste -sd,)" "500,500,200"
expect_eq "flaky: Content-Type" \
  "$(jl "$SINK_LOG" "json_extract(value, '\$.content_type')" | sort -u)" "application/json"
expect_contains "flaky: User-Agent" \
  "$(jl "$SINK_LOG" "json_extract(value, '\$.user_agent')" | sort -u)" "bureau/"
expect_contains "flaky: the first detail quotes the answer" "$first_detail" \
  "HTTP 500 from $SINK_URL: {\"error\":\"hook_sink answers 500\"}"
sink_stop

# ---- signatures: none without a secret, bad with the wrong one ------------

sink_start signed --secret "$SECRET" || exit 1
KEY=unsigned send "$SINK_URL/hook"
expect_eq "unsigned: delivered" "$RESULT/$HCODE" "delivered/200"
KEY=wrong send "$SINK_URL/hook" --secret "not-the-secret"
KEY=fixed-ts send "$SINK_URL/hook" --secret "$SECRET" --ts 1700000000
expect_eq "signature: none without a secret, bad with another, ok at a fixed time" \
  "$(jl "$SINK_LOG" "json_extract(value, '\$.signature')" | paste -sd,)" "none,bad,ok"
sink_stop
expect_eq "sink exits 0 on SIGTERM" "$SINK_RC" 0

# ---- statuses -------------------------------------------------------------

sink_start gone --status 404 || exit 1
send "$SINK_URL/hook"
expect_eq "404: permanent" "$RESULT/$HCODE" "permanent/404"
expect_contains "404: detail quotes the answer" "$DETAIL" "hook_sink answers 404"
sink_stop

sink_start limited --status 429 || exit 1
send "$SINK_URL/hook"
expect_eq "429: retry" "$RESULT/$HCODE" "retry/429"
sink_stop

sink_start unavailable --status 503 || exit 1
send "$SINK_URL/hook"
expect_eq "503: retry" "$RESULT/$HCODE" "retry/503"
# TLS to a plain-HTTP listener: the handshake fails
send "https://${SINK_URL#http://}/hook" --timeout 5
expect_eq "TLS failure: retry" "$RESULT/$HCODE" "retry/0"
expect_contains "TLS failure: detail" "$DETAIL" "TLS with https://"
sink_stop

sink_start moved --status 301 || exit 1
send "$SINK_URL/hook"
expect_eq "301: permanent" "$RESULT/$HCODE" "permanent/301"
expect_contains "301: detail names the target" "$DETAIL" "redirect to $SINK_URL not followed"
expect_eq "301: not followed (one request)" "$(lines "$SINK_LOG")" 1
sink_stop

# ---- no answer, no listener -----------------------------------------------

sink_start hang --hang || exit 1
start=$SECONDS
send "$SINK_URL/hook" --timeout 1
expect_eq "hang: retry, no status" "$RESULT/$HCODE" "retry/0"
expect_contains "hang: detail says timeout" "$DETAIL" "within 1 s"
expect_eq "hang: the request reached the receiver" \
  "$(jl "$SINK_LOG" "json_extract(value, '\$.status')")" 0
if [ $((SECONDS - start)) -le 5 ]; then ok "hang: gave up in time"; else
  not_ok "hang: gave up in time" "took $((SECONDS - start)) s"; fi
sink_stop
expect_eq "hang: sink exits 0 on SIGTERM" "$SINK_RC" 0

sink_start closed || exit 1
closed_url=$SINK_URL
sink_stop
send "$closed_url/hook" --timeout 5
expect_eq "closed port: retry" "$RESULT/$HCODE" "retry/0"
expect_contains "closed port: detail" "$DETAIL" "cannot connect to $closed_url"

# ---- refused before sending -----------------------------------------------

send "ftp://127.0.0.1:21/hook"
expect_eq "ftp: refused by the check" "$RC/$RESULT" "1/refused"
expect_contains "ftp: the error names the field" "$(jget "$OUT" '$.error')" "with.url: must start with http"
send "http://user:pw@127.0.0.1:1/hook"
expect_contains "credentials: refused by the check" "$(jget "$OUT" '$.error')" "with.url: must not hold"
send "ftp://127.0.0.1:21/hook" --no-check
expect_eq "ftp unchecked: permanent" "$RC/$RESULT/$HCODE" "0/permanent/0"
expect_contains "ftp unchecked: malformed URL" "$DETAIL" "malformed URL"

# ---- the receiver's own limit ---------------------------------------------

sink_start big || exit 1
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' 'a' >"$TMP/big.txt"
code=$(curl -sS --noproxy '*' --max-time 30 -o /dev/null -w '%{http_code}' \
  -H 'Content-Type: application/json' --data-binary @"$TMP/big.txt" "$SINK_URL/hook")
expect_eq "sink: 413 for a body over 1 MiB" "$code" 413
sink_stop

sanitizer_check "no sanitizer reports"
