#!/usr/bin/env bash
# HTTP benchmark: durable POST /v1/events through `bureau serve`, driven by
# wrk on loopback (keep-alive, 16 connections, 10 s). Prints events/s, p50
# and p99 latency, time to ready, idle and peak RSS, and the CPU time the
# server and wrk spent per request (user + system, from /proc and
# getrusage): on 2 shared cores the sum bounds what any run can reach.
# Usage: bench/http.sh BUILD
set -euo pipefail
BUILD=${1:?usage: bench/http.sh BUILD_DIR}
BIN="$BUILD/bureau"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUR=${BENCH_HTTP_SECONDS:-10}
CONNS=${BENCH_HTTP_CONNECTIONS:-16}
command -v wrk >/dev/null || { echo "bench/http.sh: wrk is not installed" >&2; exit 1; }

DIR=$(mktemp -d /tmp/bureau-http.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT

TOKEN=$("$BIN" --data "$DIR/data" init --json | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
[ -n "$TOKEN" ] || { echo "bench/http.sh: no token from init" >&2; exit 1; }
mkfifo "$DIR/out"
start=$(date +%s%N)
"$BIN" --data "$DIR/data" --log-level warn serve --listen 127.0.0.1:0 >"$DIR/out" 2>"$DIR/err" &
PID=$!
exec 3<"$DIR/out"
read -r line <&3
ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
ADDR=${line#listening on }
idle_kb=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
ticks0=$(cpu_ticks)
wrk_cpu0=$(awk '{print $16 + $17}' /proc/$$/stat) # waited-for children: wrk
BUREAU_TOKEN=$TOKEN wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -s "$ROOT/bench/post_event.lua" \
  "http://$ADDR" >"$DIR/wrk" 2>&1
ticks1=$(cpu_ticks)
wrk_cpu1=$(awk '{print $16 + $17}' /proc/$$/stat)
peak_kb=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
kill -TERM "$PID"
wait "$PID" || true
PID=
stored=$("$BIN" --data "$DIR/data" audit verify | sed -n 's/^ok: \([0-9]*\) events/\1/p')

rps=$(awk '/Requests\/sec/ {print $2}' "$DIR/wrk")
p50=$(awk '$1 == "50%" {print $2}' "$DIR/wrk")
p99=$(awk '$1 == "99%" {print $2}' "$DIR/wrk")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$DIR/wrk")
reqs=$(awk '/requests in/ {print $1}' "$DIR/wrk")
hz=$(getconf CLK_TCK)
per_req() { awk -v t="$1" -v n="${reqs:-0}" -v hz="$hz" 'BEGIN { if (n > 0) printf "%.0f us", t / hz * 1e6 / n; else print "?" }'; }
srv_cpu=$(per_req $((ticks1 - ticks0)))
wrk_cpu=$(per_req $((wrk_cpu1 - wrk_cpu0)))
echo "POST /v1/events, durable (synchronous=FULL), keep-alive, $CONNS connections, ${DUR} s, wrk -t2"
echo "machine : nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
printf '%-22s %s\n' "events/s" "$rps" "latency p50" "$p50" "latency p99" "$p99" \
  "non-2xx" "${non2xx:-0}" "events stored" "${stored:-?} (chain verified)" \
  "server CPU/request" "$srv_cpu" "wrk CPU/request" "$wrk_cpu" \
  "ready after start" "${ready_ms} ms" "idle RSS" "$((idle_kb / 1024)) MB" \
  "peak RSS" "$((peak_kb / 1024)) MB"
echo "goal    : >= 20,000 events/s with p99 < 10 ms; idle RSS < 20 MB; ready < 100 ms"
