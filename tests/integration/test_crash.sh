#!/usr/bin/env bash
# Crash test: `bureau ingest --bulk --json` fed by an endless generator is
# killed with SIGKILL after ~2000 acknowledgements (read line by line from a
# FIFO). Every acknowledged event must be stored exactly once, seqs dense,
# the chain intact, and re-ingesting what was acknowledged must only yield
# duplicates. Then: 4 processes appending into one data dir at once.
# `bureau init` appends one event (the operator token's): input line i is
# stored at seq H0 + i, H0 being the number of events init left.
. "$(dirname "$0")/lib.sh"

ACKS_BEFORE_KILL=2000
# gen PREFIX FROM TO: events PREFIX-i for i in FROM..TO, data {"i":i};
# gen_list PREFIX: the same for each i read from stdin.
GEN_AWK='function ev(i) {
  printf "{\"type\":\"crash.tick\",\"source\":\"gen-%s\",\"idempotency_key\":\"%s-%d\",\"data\":{\"i\":%d,\"pad\":\"%s\"}}\n", p, p, i, i, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
}'
gen() { awk -v p="$1" -v a="$2" -v b="$3" "$GEN_AWK"' BEGIN { for (i = a; i <= b; i++) ev(i) }'; }
gen_list() { awk -v p="$1" "$GEN_AWK"' { ev($1) }'; }
same() { # same NAME FILE-GOT FILE-WANT: ok when equal, else the first differences
  if cmp -s "$2" "$3"; then ok "$1"; else not_ok "$1" "$(diff "$2" "$3" | head -n 4 | paste -sd' ')"; fi
}
summary() { sqlite3 "$1/bureau.db" 'SELECT count(*), coalesce(min(seq), 0), coalesce(max(seq), 0) FROM events'; }

crash_case() { # crash_case LABEL [YAML]
  local label=$1 yaml=${2:-} D=$TMP/$1 in=$TMP/$1.in out=$TMP/$1.out acks=$TMP/$1.acks
  local genpid pid line count=0 status n
  bureau --data "$D" init >/dev/null
  local H0
  H0=$(sqlite3 "$D/bureau.db" 'SELECT count(*) FROM events')
  expect_eq "$label: init left one event, the operator token's" \
    "$(sqlite3 "$D/bureau.db" "SELECT group_concat(seq||'/'||type) FROM events")" "1/operator.token.created"
  [ -n "$yaml" ] && printf '%s\n' "$yaml" >"$D/bureau.yaml"
  mkfifo "$in" "$out"
  gen "$label" 1 2000000 >"$in" &
  genpid=$!
  "$BUREAU" --data "$D" ingest --bulk --json <"$in" >"$out" 2>"$TMP/$label.err" &
  pid=$!
  exec 3<"$out"
  : >"$acks"
  while [ "$count" -lt "$ACKS_BEFORE_KILL" ] && IFS= read -r -t 120 line <&3; do
    printf '%s\n' "$line" >>"$acks"
    count=$((count + 1))
  done
  expect_eq "$label: the process killed is bureau" "$(readlink "/proc/$pid/exe")" "$(readlink -f "$BUREAU")"
  exec 9>&2 2>/dev/null # not the shell's "Killed" notice
  kill -9 "$pid"
  cat <&3 >>"$acks" # what it printed before it died was acknowledged too
  exec 3<&-
  wait "$pid"
  status=$?
  wait "$genpid"
  exec 2>&9 9>&-
  expect_eq "$label: ingest was killed mid-stream by SIGKILL (status 137)" "$status" 137
  n=$(wc -l <"$acks")
  check "$label: at least $ACKS_BEFORE_KILL events acknowledged ($n)" test "$n" -ge "$ACKS_BEFORE_KILL"

  # After the crash: open the data dir again.
  jl "$acks" "json_extract(value,'\$.seq')||' '||json_extract(value,'\$.id')||' '||json_extract(value,'\$.line')" \
    | sort >"$TMP/$label.acked"
  expect_eq "$label: every acknowledgement is a whole JSON line, not a duplicate" \
    "$(wc -l <"$TMP/$label.acked")/$(jl "$acks" "json_extract(value,'\$.duplicate')" | sort -u)" "$n/0"
  bureau --data "$D" events --json >"$TMP/$label.events"
  jl "$TMP/$label.events" "json_extract(value,'\$.seq')||' '||json_extract(value,'\$.id')||' '||json_extract(value,'\$.data.i')" \
    | sort >"$TMP/$label.stored"
  expect_eq "$label: every acknowledged seq/id is stored (with its own data)" \
    "$(comm -23 "$TMP/$label.acked" "$TMP/$label.stored" | head -n 3)" ""
  expect_eq "$label: no event is stored twice" \
    "$(sqlite3 "$D/bureau.db" "SELECT count(*) - count(DISTINCT json_extract(data,'\$.i')) FROM events WHERE type = 'crash.tick'")" 0
  local stored
  stored=$(sqlite3 "$D/bureau.db" 'SELECT count(*) FROM events')
  expect_eq "$label: seqs are dense 1..N" "$(summary "$D")" "$stored|1|$stored"
  expect_eq "$label: the stored events are init's, then input lines 1..N in order" \
    "$(sqlite3 "$D/bureau.db" "SELECT count(*) FROM events WHERE CASE WHEN seq <= $H0 THEN type != 'operator.token.created' ELSE type != 'crash.tick' OR json_extract(data,'\$.i') IS NOT seq - $H0 END")" 0
  run bureau --data "$D" audit verify
  expect_eq "$label: the chain verifies" "$RC/$OUT" "0/ok: $stored events"
  run bureau --data "$D" replay --check
  expect_eq "$label: the projections match the log (replay --check)" "$RC" 0

  # Re-ingest exactly what was acknowledged: only duplicates, naming the originals.
  cut -d' ' -f3 "$TMP/$label.acked" | sort -n | gen_list "$label" >"$TMP/$label.again"
  run bureau --data "$D" ingest --bulk --json --file "$TMP/$label.again"
  expect_eq "$label: re-ingesting the acknowledged events exits 0" "$RC" 0
  printf '%s\n' "$OUT" >"$TMP/$label.again.out"
  expect_eq "$label: re-ingesting the acknowledged events gives only duplicates" \
    "$(jl "$TMP/$label.again.out" "json_extract(value,'\$.duplicate')" | sort | uniq -c | tr -s ' ')" " $n 1"
  jl "$TMP/$label.again.out" "json_extract(value,'\$.seq')||' '||json_extract(value,'\$.id')" | sort >"$TMP/$label.got"
  cut -d' ' -f1,2 "$TMP/$label.acked" >"$TMP/$label.want"
  same "$label: each duplicate names the original seq and id" "$TMP/$label.got" "$TMP/$label.want"
  expect_eq "$label: re-ingesting stored nothing" "$(summary "$D")" "$stored|1|$stored"
  # Everything the generator produced up to the crash point, and beyond it:
  local lines=$((stored - H0)) # input lines stored
  gen "$label" 1 $((lines + 10)) >"$TMP/$label.all"
  run bureau --data "$D" ingest --bulk --json --file "$TMP/$label.all"
  printf '%s\n' "$OUT" >"$TMP/$label.all.out"
  expect_eq "$label: after restart, the stored events are duplicates and 10 new ones append" \
    "$RC $(jl "$TMP/$label.all.out" "json_extract(value,'\$.duplicate')" | sort | uniq -c | tr -s ' ' | paste -sd,)" \
    "0  10 0, $lines 1"
  run bureau --data "$D" audit verify
  expect_eq "$label: the chain verifies after the restart" "$RC/$OUT" "0/ok: $((stored + 10)) events"
}

crash_case crash-full
crash_case crash-normal 'store: {durability: normal}'

# ---- 4 processes appending into one data dir at once ----
C=$TMP/concurrent
bureau --data "$C" init >/dev/null
H0=$(sqlite3 "$C/bureau.db" 'SELECT count(*) FROM events') # init's events
pids=()
for p in 1 2 3 4; do
  mkfifo "$TMP/c$p.in"
  "$BUREAU" --data "$C" ingest --bulk --json <"$TMP/c$p.in" >"$TMP/c$p.acks" 2>"$TMP/c$p.err" &
  pids+=($!)
done
# Holding the FIFOs open keeps all four running until every event is fed;
# the events go in round-robin chunks (each fits in a pipe buffer).
exec 4>"$TMP/c1.in" 5>"$TMP/c2.in" 6>"$TMP/c3.in" 7>"$TMP/c4.in"
for chunk in 0 1 2 3; do
  for p in 1 2 3 4; do
    gen "p$p" $((chunk * 500 + 1)) $((chunk * 500 + 500)) >&$((p + 3))
  done
done
exec 4>&- 5>&- 6>&- 7>&-
for p in 1 2 3 4; do
  wait "${pids[$((p - 1))]}"
  expect_eq "concurrent: process $p exits 0" "$?" 0
  expect_eq "concurrent: process $p acknowledged its 2000 events" \
    "$(jl "$TMP/c$p.acks" "json_extract(value,'\$.duplicate')" | sort | uniq -c | tr -s ' ')" " 2000 0"
done
expect_eq "concurrent: 8000 events after init's with dense seqs" "$(summary "$C")" "$((H0 + 8000))|1|$((H0 + 8000))"
expect_eq "concurrent: the acknowledged seqs of the 4 processes are $((H0 + 1))..$((H0 + 8000)), each once" \
  "$(cat "$TMP"/c[1-4].acks >"$TMP/c.all"; jl "$TMP/c.all" "json_extract(value,'\$.seq')" | sort -n | uniq | awk -v b="$H0" 'NR + b != $1 { bad = 1 } END { print NR, bad + 0 }')" \
  "8000 0"
expect_eq "concurrent: every event stored once" \
  "$(sqlite3 "$C/bureau.db" "SELECT count(*)||'/'||count(DISTINCT source||json_extract(data,'\$.i')) FROM events WHERE type = 'crash.tick'")" 8000/8000
run bureau --data "$C" audit verify
expect_eq "concurrent: the chain verifies" "$RC/$OUT" "0/ok: $((H0 + 8000)) events"
run bureau --data "$C" replay --check
expect_eq "concurrent: replay --check ok" "$RC" 0

sanitizer_check "no sanitizer reports"
