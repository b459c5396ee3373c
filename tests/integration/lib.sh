# Helpers for integration tests. Source this file; it sets up a temporary
# directory (removed on exit) and these functions:
#   ok NAME / not_ok NAME REASON   report one case ("ok - NAME" lines are counted)
#   check NAME CMD...              runs CMD; ok when it exits 0
#   expect_eq NAME GOT WANT        ok when the strings are equal
#   expect_contains NAME HAYSTACK NEEDLE
#   bureau ARGS...                 the bureau binary under test ($BUREAU)
# Every test runs bounded in time (tests/run.sh wraps each script in timeout).
set -u
: "${BUREAU:?BUREAU must point at the bureau binary}"
TMP=$(mktemp -d /tmp/bureau-it.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

bureau() { "$BUREAU" "$@"; }
ok() { echo "ok - $1"; }
not_ok() { echo "not ok - $1: ${2:-}"; }
check() {
  local name=$1; shift
  if "$@"; then ok "$name"; else not_ok "$name" "command failed: $*"; fi
}
expect_eq() {
  if [ "$2" == "$3" ]; then ok "$1"; else not_ok "$1" "got '$2', want '$3'"; fi
}
expect_contains() {
  case "$2" in
    *"$3"*) ok "$1" ;;
    *) not_ok "$1" "'$3' not in: $(printf '%s' "$2" | head -c 400)" ;;
  esac
}

# Shared by several scripts:
#   run CMD...            runs CMD (feed stdin with a redirect, not a pipe);
#                         sets OUT (stdout), ERR (stderr) and RC
#   jl FILE EXPR          prints the SQLite expression EXPR (over `value`) for each
#                         line of the NDJSON FILE; fails when a line is not JSON
#   sanitizer_check NAME  ok when no process wrote a sanitizer report since the
#                         last check (reports go to $TMP/san.PID, not stderr)
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}:log_path=$TMP/san"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}:log_path=$TMP/san"
run() {
  "$@" >"$TMP/.out" 2>"$TMP/.err"; RC=$?
  OUT=$(cat "$TMP/.out"); ERR=$(cat "$TMP/.err")
}
jl() {
  { printf '['; paste -sd, "$1"; printf ']'; } >"$1.arr"
  sqlite3 :memory: "SELECT $2 FROM json_each(readfile('$1.arr'))"
}
sanitizer_check() {
  local f reports
  reports=$(ls "$TMP"/san.* 2>/dev/null)
  if [ -z "$reports" ]; then ok "$1"; return; fi
  not_ok "$1" "sanitizer reports: $(echo $reports)"
  for f in $reports; do head -n 12 "$f" | sed 's/^/# /'; rm -f "$f"; done
}
