#!/usr/bin/env bash
# Runs every test: the Criterion unit tests built in BUILD, then each
# tests/integration/*.sh (against BUILD/bureau). Ends with the line
# "N passed, N failed". Exit status 0 only when nothing failed.
set -u
BUILD=${1:-build-test}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
passed=0
failed=0
failures=()

# Sanitizer reports go to files, so that none is lost in a captured stderr:
# any report fails the test binary or script that produced it.
SANDIR=$(mktemp -d /tmp/bureau-san.XXXXXX)
trap 'rm -rf "$SANDIR"' EXIT
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:log_path=$SANDIR/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$SANDIR/ubsan"

# Prints and removes the sanitizer reports; returns 1 when there were any.
sanitizer_reports() {
  local any=0 f
  for f in "$SANDIR"/*; do
    [ -e "$f" ] || continue
    any=1
    echo "--- sanitizer report $(basename "$f"):"
    head -n 40 "$f"
    rm -f "$f"
  done
  return $any
}

for t in "$BUILD"/test_*; do
  [ -f "$t" ] && [ -x "$t" ] || continue
  name=$(basename "$t")
  out=$(timeout 600 "$t" --jobs 2 2>&1)
  rc=$?
  line=$(printf '%s\n' "$out" | grep 'Synthesis:' | tail -n 1)
  if [ -z "$line" ]; then
    printf '%s\n' "$out" | tail -n 30
    echo "not ok - $name: no Criterion summary (exit $rc)"
    failed=$((failed + 1)); failures+=("$name")
    continue
  fi
  p=$(printf '%s' "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
  f=$(printf '%s' "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
  c=$(printf '%s' "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
  # A sanitizer report in a test's child process fails the binary even when
  # Criterion counted every assertion as passing.
  san=0
  sanitizer_reports || san=1
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -gt 0 ] || [ "$rc" -ne 0 ] || [ "$san" -gt 0 ]; then
    printf '%s\n' "$out" | grep -v '^\[----\] *$' | tail -n 60
    failures+=("$name")
    [ "$f" -eq 0 ] && failed=$((failed + 1))
  fi
  echo "$name: $p passed, $f failed ($c crashed)"
done

for s in "$ROOT"/tests/integration/test_*.sh; do
  [ -f "$s" ] || continue
  name=$(basename "$s" .sh)
  out=$(BUREAU="$BUILD/bureau" BUILD="$BUILD" ROOT="$ROOT" timeout 900 bash "$s" 2>&1)
  rc=$?
  p=$(printf '%s\n' "$out" | grep -c '^ok - ')
  f=$(printf '%s\n' "$out" | grep -c '^not ok - ')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1
    out="$out"$'\n'"not ok - $name exited with status $rc"
  fi
  if ! sanitizer_reports; then
    out="$out"$'\n'"not ok - $name: sanitizer report (above)"
    f=$((f + 1))
  fi
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -gt 0 ]; then
    printf '%s\n' "$out" | tail -n 40
    failures+=("$name")
  fi
  echo "$name: $p passed, $f failed"
done

[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
