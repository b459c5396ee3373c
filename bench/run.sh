#!/usr/bin/env bash
# Runs every benchmark built in BUILD_DIR (meson -Dbench=true; `make bench`
# uses build-bench) and prints their output. Exit status 1 when a benchmark
# is missing or fails. Environment knobs are passed through (see the top of
# each bench/*.c, e.g. BENCH_SECONDS, BENCH_DIR, BENCH_TASKS).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: bench/run.sh BUILD_DIR" >&2
  exit 2
fi
BUILD=$1
BENCHES=(bench_ledger bench_flow bench_models bench_memory bench_pull)

status=0
for b in "${BENCHES[@]}"; do
  exe="$BUILD/$b"
  if [ ! -x "$exe" ]; then
    echo "bench/run.sh: $exe is missing (configure with -Dbench=true and run ninja -C $BUILD)" >&2
    status=1
    continue
  fi
  echo "== $b"
  if ! "$exe"; then
    echo "bench/run.sh: $b failed" >&2
    status=1
  fi
  echo
done
echo "== http (bench/http.sh)"
if ! "$(dirname "$0")/http.sh" "$BUILD"; then
  echo "bench/run.sh: http failed" >&2
  status=1
fi
echo
echo "== http ceiling (bench/http_ceiling.sh: libmicrohttpd alone, and a bare fsync group commit)"
if ! BENCH_ROUNDS=${BENCH_ROUNDS:-1} "$(dirname "$0")/http_ceiling.sh" "$BUILD"; then
  echo "bench/run.sh: http ceiling failed" >&2
  status=1
fi
echo
echo "== inbox (bench/inbox.sh)"
if ! "$(dirname "$0")/inbox.sh" "$BUILD"; then
  echo "bench/run.sh: inbox failed" >&2
  status=1
fi
exit $status
