#!/usr/bin/env bash
# The ceiling for bench/http.sh on this machine: the same wrk load (POST,
# keep-alive, 16 connections, wrk -t2) against bench/http_ceiling.c in its
# three modes (plain, handoff, durable: a group commit that only writes and
# fdatasyncs), then against `bureau serve`, ROUNDS times in turn so that
# the machine's load is shared alike. Prints requests/s, p50, p99 and the
# server's CPU per request for each, and bureau as a share of durable.
# Usage: bench/http_ceiling.sh BUILD   (BENCH_HTTP_SECONDS, default 5;
# BENCH_ROUNDS, default 2)
set -euo pipefail
BUILD=${1:?usage: bench/http_ceiling.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUR=${BENCH_HTTP_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-2}
CONNS=16
THREADS=$(nproc)
command -v wrk >/dev/null || { echo "bench/http_ceiling.sh: wrk is not installed" >&2; exit 1; }
[ -x "$BUILD/http_ceiling" ] && [ -x "$BUILD/bureau" ] ||
  { echo "bench/http_ceiling.sh: build $BUILD with -Dbench=true" >&2; exit 1; }

DIR=$(mktemp -d /tmp/bureau-ceiling.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
hz=$(getconf CLK_TCK)

# run NAME TOKEN CMD...: starts CMD (prints "listening on ADDR"), drives it
run() {
  local name=$1 token=$2
  shift 2
  rm -f "$DIR/out"
  mkfifo "$DIR/out"
  "$@" >"$DIR/out" 2>"$DIR/err" &
  PID=$!
  local line
  exec 3<"$DIR/out"
  read -r line <&3
  exec 3<&-
  local addr=${line#listening on }
  local t0 t1
  t0=$(awk '{print $14 + $15}' "/proc/$PID/stat")
  BUREAU_TOKEN=$token wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -s "$ROOT/bench/post_event.lua" \
    "http://$addr" >"$DIR/wrk" 2>&1
  t1=$(awk '{print $14 + $15}' "/proc/$PID/stat")
  kill -TERM "$PID"
  wait "$PID" || true
  PID=
  awk -v name="$name" -v t=$((t1 - t0)) -v hz="$hz" '
    /Requests\/sec/ {rps = $2} $1 == "50%" {p50 = $2} $1 == "99%" {p99 = $2}
    /requests in/ {n = $1} /Non-2xx/ {bad = $NF}
    END { printf "%-9s %10.0f %9s %9s %8.0f us %7d\n", name, rps, p50, p99,
          n ? t / hz * 1e6 / n : 0, bad + 0 }' "$DIR/wrk" | tee -a "$DIR/rows"
}

echo "POST /v1/events-shaped load: keep-alive, $CONNS connections, ${DUR} s, wrk -t2, $THREADS HTTP threads"
echo "machine : nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %10s %9s %9s %11s %7s\n' "server" "req/s" "p50" "p99" "CPU/req" "non-2xx"
for round in $(seq "$ROUNDS"); do
  for m in plain handoff durable; do
    mkdir -p "$DIR/$m"
    run "$m" x "$BUILD/http_ceiling" "$m" "$THREADS" "$DIR/$m"
  done
  rm -rf "$DIR/data"
  token=$("$BUILD/bureau" --data "$DIR/data" init --json | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  run bureau "$token" "$BUILD/bureau" --data "$DIR/data" --log-level warn serve --listen 127.0.0.1:0
done
awk '$1 == "durable" {d += $2} $1 == "bureau" {b += $2}
     END { if (d > 0) printf "bureau / durable ceiling: %.0f%% of the requests/s\n", 100 * b / d }' "$DIR/rows"
