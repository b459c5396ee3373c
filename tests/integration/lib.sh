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
# Background processes registered with bg_track (children of this shell) and
# their children are killed, by pid, when the script ends, however it ends;
# a TERM/INT (tests/run.sh's timeout) ends it too.
# KEEP_TMP=1 keeps $TMP (logs, answers) for a look after a failure.
BG_PIDS=""
bg_track() { BG_PIDS="$BG_PIDS $*"; }
_lib_exit() {
  local p IFS=$' \t\n' # the trap may interrupt an `IFS= read`
  for p in $BG_PIDS; do
    # only while it is still this shell's child (a pid may be reused)
    [ "$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')" = "$$" ] || continue
    # shellcheck disable=SC2046 # with its children (a loader's curl)
    kill -KILL $(ps -o pid= --ppid "$p" 2>/dev/null) "$p" 2>/dev/null
  done
  if [ -n "${KEEP_TMP:-}" ]; then echo "# kept $TMP"; else rm -rf "$TMP"; fi
}
trap _lib_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

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

# For `bureau serve` (test_serve*.sh):
#   serve_start DATA [ARGS...]  starts `bureau --data DATA serve ARGS` in the
#                         background (tracked) and waits for its first stdout
#                         line, "listening on ADDR", read through a FIFO; sets
#                         SRV_PID, SRV_LINE, SRV_ADDR (HOST:PORT), SRV_URL and
#                         SRV_LOG (its stderr). Fails when it did not start.
#   serve_stop [SIG]      sends SIG (default TERM; 0 when already signalled),
#                         waits at most 60 s for the server to exit (EOF on
#                         its stdout), SIGKILLs it if not; sets SRV_RC (its
#                         exit status; 137 after a kill)
#   http METHOD PATH [CURL-ARGS...]  one request to $SRV_URL (loopback, no
#                         proxy, bounded); sets CODE, BODY, CTYPE and HDRS
#   jget JSON PATH        json_extract(JSON, PATH), e.g. jget "$BODY" '$.seq'
#   log_open              follows the server's log (SRV_LOG) from its start
#   log_wait PATTERN [S]  reads that log from where the last wait stopped until
#                         a line matches the regex (it is then in LOG_LINE);
#                         1 after S seconds (default 60). No sleeps.
SRV_N=0
serve_start() {
  local data=$1 fifo
  shift
  SRV_N=$((SRV_N + 1))
  fifo=$TMP/serve.$SRV_N.out
  SRV_LOG=$TMP/serve.$SRV_N.log
  mkfifo "$fifo"
  "$BUREAU" --data "$data" serve "$@" >"$fifo" 2>"$SRV_LOG" &
  SRV_PID=$!
  bg_track "$SRV_PID"
  exec {SRV_FD}<"$fifo"
  SRV_LINE=""
  IFS= read -r -t 60 SRV_LINE <&"$SRV_FD"
  SRV_ADDR=${SRV_LINE#listening on }
  SRV_URL=http://$SRV_ADDR
  [[ $SRV_LINE =~ ^listening\ on\ [^[:space:]]+:[0-9]+$ ]]
}
serve_stop() {
  local r
  kill -"${1:-TERM}" "$SRV_PID" 2>/dev/null
  while :; do
    IFS= read -r -t 60 _ <&"$SRV_FD"
    r=$?
    [ "$r" -eq 0 ] || break
  done
  [ "$r" -gt 128 ] && kill -KILL "$SRV_PID" 2>/dev/null
  wait "$SRV_PID"
  SRV_RC=$?
  exec {SRV_FD}<&-
}
http() {
  local method=$1 path=$2
  shift 2
  rm -f "$TMP/.http.body" "$TMP/.http.hdrs"
  CODE=$(curl -sS --noproxy '*' --connect-timeout 10 --max-time 60 -X "$method" \
    -o "$TMP/.http.body" -D "$TMP/.http.hdrs" -w '%{http_code}' "$@" "$SRV_URL$path" \
    2>"$TMP/.http.err")
  BODY=$(cat "$TMP/.http.body" 2>/dev/null)
  HDRS=$(tr -d '\r' <"$TMP/.http.hdrs" 2>/dev/null)
  CTYPE=$(printf '%s\n' "$HDRS" | sed -n 's/^[Cc]ontent-[Tt]ype: *//p' | tail -n 1)
}
jget() {
  sqlite3 :memory: "SELECT json_extract('${1//\'/\'\'}', '${2//\'/\'\'}')" 2>/dev/null
}
log_open() {
  exec {LOGFD}< <(tail -n +1 -F "$SRV_LOG" 2>/dev/null)
  bg_track $!
}
log_wait() {
  local pat=$1 deadline=$((SECONDS + ${2:-60})) left
  while :; do
    left=$((deadline - SECONDS))
    [ "$left" -gt 0 ] || return 1
    IFS= read -r -t "$left" LOG_LINE <&"$LOGFD" || return 1
    [[ $LOG_LINE =~ $pat ]] && return 0
  done
}
