#!/usr/bin/env bash
# bureau backup while a bulk ingest runs, bureau restore (verified, refusing
# a tampered copy), and a database newer than the binary.
. "$(dirname "$0")/lib.sh"

gen() { # gen FROM TO
  awk -v a="$1" -v b="$2" 'BEGIN {
    for (i = a; i <= b; i++)
      printf "{\"type\":\"backup.tick\",\"source\":\"gen\",\"idempotency_key\":\"b%d\",\"data\":{\"i\":%d}}\n", i, i
  }'
}
nev() { sqlite3 "$1/bureau.db" 'SELECT count(*) FROM events'; }
state() { # everything a data dir's database holds
  sqlite3 "$1/bureau.db" .dump | sha256sum
}

# ---- backups taken while a bulk ingest appends ----
# `bureau init` appends one event (the operator token's): the ingested events
# follow the H0 events init left, so the log ends at seq H0 + TOTAL.
D=$TMP/live
TOTAL=30000
bureau --data "$D" init >/dev/null
H0=$(nev "$D")
expect_eq "init left one event, the operator token's" \
  "$(sqlite3 "$D/bureau.db" "SELECT group_concat(seq||'/'||type) FROM events")" "1/operator.token.created"
mkfifo "$TMP/in" "$TMP/out"
"$BUREAU" --data "$D" ingest --bulk --json <"$TMP/in" >"$TMP/out" 2>"$TMP/ingest.err" &
ingest=$!
exec 4>"$TMP/in" # the ingest runs until this closes
gen 1 "$TOTAL" >&4 &
genpid=$!
exec 3<"$TMP/out"
IFS= read -r -t 120 first <&3
expect_contains "ingest is running: its first event is acknowledged" "$first" "\"seq\":$((H0 + 1)),"
cat <&3 >"$TMP/acks" 4>&- &
drain=$!
counts=()
for b in 1 2 3; do
  run bureau --data "$D" backup "$TMP/backup$b.db"
  expect_eq "backup $b during the ingest: exit 0" "$RC" 0
  expect_contains "backup $b during the ingest: reports the file" "$OUT" "backup written: $TMP/backup$b.db ("
  counts+=("$(sed -n 's/.*(\([0-9]*\) events)$/\1/p' <<<"$OUT")")
done
wait "$genpid"
exec 4>&-
wait "$ingest"
expect_eq "the concurrent ingest exits 0" "$?" 0
wait "$drain"
exec 3<&-
expect_eq "the concurrent ingest stored every event" "$(nev "$D")" "$((H0 + TOTAL))"
expect_eq "the concurrent ingest stored input line i at seq H0 + i" \
  "$(sqlite3 "$D/bureau.db" "SELECT count(*) FROM events WHERE type = 'backup.tick' AND json_extract(data, '\$.i') = seq - $H0")" \
  "$TOTAL"
echo "# events in the backups: ${counts[*]} of $((H0 + TOTAL))"
for b in 1 2 3; do
  f=$TMP/backup$b.db m=${counts[$((b - 1))]:-0}
  check "backup $b holds some ingested events, no more than the log ($m)" \
    test "$m" -ge "$((H0 + 1))" -a "$m" -le "$((H0 + TOTAL))"
  expect_eq "backup $b: SQLite integrity_check" "$(sqlite3 "$f" 'PRAGMA integrity_check')" ok
  O=$TMP/other$b
  bureau --data "$O" init >/dev/null
  run bureau --data "$O" restore "$f"
  expect_eq "backup $b restores into a fresh data dir (exit 0)" "$RC" 0
  expect_contains "backup $b restore: says the chain was verified" "$OUT" "($m events, chain verified)"
  run bureau --data "$O" audit verify
  expect_eq "backup $b restored: audit verify ok" "$RC/$OUT" "0/ok: $m events"
  expect_eq "backup $b restored: the same chain as the live log at seq $m" \
    "$(sqlite3 "$O/bureau.db" "SELECT hash FROM events WHERE seq = $m")" \
    "$(sqlite3 "$D/bureau.db" "SELECT hash FROM events WHERE seq = $m")"
  run bureau --data "$O" replay --check
  expect_eq "backup $b restored: its projections match its log" "$RC" 0
done
run bureau --data "$TMP/other1" --json ingest <<<'{"type":"a.b","source":"after","data":{}}'
expect_contains "a restored data dir takes new events after its last seq" "$OUT" "\"seq\":$((${counts[0]:-0} + 1)),"
run bureau --data "$TMP/other1" audit verify
expect_eq "a restored data dir still verifies after an append" "$RC" 0

# ---- restore refuses a tampered backup and leaves the live database alone ----
bureau --data "$D" backup "$TMP/good.db" >/dev/null
I=1234 # the event of input line I, at seq K
K=$(sqlite3 "$TMP/good.db" "SELECT seq FROM events WHERE type = 'backup.tick' AND json_extract(data, '\$.i') = $I")
LAST=$((H0 + TOTAL))
expect_eq "the backup ends at seq $LAST" "$(sqlite3 "$TMP/good.db" 'SELECT max(seq) FROM events')" "$LAST"
refused() { # refused NAME WANT-IN-STDERR SQL-ON-THE-COPY (or empty: FILE prepared)
  local name=$1 want=$2 sql=$3 f=$TMP/bad.db before
  if [ -n "$sql" ]; then
    cp "$TMP/good.db" "$f"
    sqlite3 "$f" "$sql"
  fi
  before=$(state "$D")
  run bureau --data "$D" restore "$f"
  expect_eq "restore of $name: refused (exit 1)" "$RC" 1
  expect_contains "restore of $name: says why" "$ERR" "$want"
  expect_eq "restore of $name: the live database is unchanged" "$(state "$D")" "$before"
}
refused "a backup with one byte of data changed" "seq $K" \
  "UPDATE events SET data = replace(data, '\"i\":$I', '\"i\":9$I') WHERE seq = $K"
refused "a backup with a row deleted" "seq $K" "DELETE FROM events WHERE seq = $K"
refused "a backup with the last row deleted" "seq $LAST" "DELETE FROM events WHERE seq = $LAST"
refused "a backup with init's token event changed" "seq 1" \
  "UPDATE events SET data = json_set(data, '\$.token_sha256', '$(printf '%s' bur_forged | sha256sum | cut -d' ' -f1)') WHERE seq = 1"
refused "a backup with a newer schema" "newer" \
  "INSERT INTO schema_migrations(version, name, applied_at) VALUES (999, 'future', '2099-01-01T00:00:00.000Z')"
head -c 100000 /dev/urandom >"$TMP/bad.db"
refused "a file that is not a database" "not a Bureau backup" ""
head -c 50000 "$TMP/good.db" >"$TMP/bad.db"
refused "a truncated backup" "restore" ""
run bureau --data "$D" audit verify
expect_eq "after the refusals the live log verifies" "$RC/$OUT" "0/ok: $LAST events"
run bureau --data "$D" restore "$TMP/no-such-file.db"
expect_eq "restore of a missing file: exit 1" "$RC" 1

# A good restore replaces the live database.
run bureau --data "$D" restore "$TMP/backup1.db"
expect_eq "restore of a good backup over a live data dir: exit 0" "$RC" 0
expect_eq "restore replaced the live events" "$(nev "$D")" "${counts[0]:-0}"
run bureau --data "$D" audit verify
expect_eq "the restored live data dir verifies" "$RC" 0

# ---- backup onto the live database itself ----
S=$TMP/self
bureau --data "$S" init >/dev/null
S0=$(nev "$S") # init's events
gen 1 100 | bureau --data "$S" ingest --bulk >/dev/null
before=$(state "$S")
run bureau --data "$S" backup "$S/bureau.db"
expect_eq "backup onto the live database file: refused (exit 1)" "$RC" 1
run bureau --data "$S" backup "$S/../self/bureau.db"
expect_eq "backup onto the live database file by another path: refused (exit 1)" "$RC" 1
expect_eq "backup onto the live database file: the database is unchanged" "$(state "$S")" "$before"
# ... while an ingest appends: every acknowledged event must survive.
mkfifo "$TMP/s.out"
gen 101 20000 >"$TMP/s.ndjson"
"$BUREAU" --data "$S" ingest --bulk --json --file "$TMP/s.ndjson" >"$TMP/s.out" 2>/dev/null &
sp=$!
exec 6<"$TMP/s.out"
IFS= read -r -t 120 first <&6
cat <&6 >"$TMP/s.acks" &
sdrain=$!
for b in 1 2 3 4 5; do bureau --data "$S" backup "$S/bureau.db" >/dev/null 2>&1; done
wait "$sp"
wait "$sdrain"
exec 6<&-
acked=$(( $(wc -l <"$TMP/s.acks") + 1 ))
expect_eq "backup onto the live database during an ingest: the $acked acknowledged events survive" \
  "$(sqlite3 "$S/bureau.db" 'SELECT count(*) FROM events' 2>&1)" "$((S0 + 100 + acked))"
run bureau --data "$S" audit verify
expect_eq "backup onto the live database during an ingest: the chain verifies" "$RC" 0

# ---- a database newer than the binary is refused ----
F=$TMP/future
cp -a "$TMP/other2" "$F"
sqlite3 "$F/bureau.db" \
  "INSERT INTO schema_migrations(version, name, applied_at) VALUES (999, 'future', '2099-01-01T00:00:00.000Z')"
n0=$(nev "$F")
newer() { # newer LABEL CMD-ARGS...: stdin may be given with a redirect
  local label=$1; shift
  run bureau --data "$F" "$@"
  expect_eq "newer schema, $label: refused (exit 1)" "$RC" 1
  expect_contains "newer schema, $label: a clear message" "$ERR" "schema version 999, newer than this bureau"
}
newer "events" events
newer "event show" event show 1
newer "audit verify" audit verify
newer "replay" replay
newer "replay --check" replay --check
newer "backup" backup "$TMP/future-backup.db"
newer "init" init
newer "ingest" ingest <<<'{"type":"a.b","source":"s","data":{}}'
expect_eq "newer schema: ingest wrote nothing" "$(nev "$F")" "$n0"
expect_eq "newer schema: the version row is left as it was" \
  "$(sqlite3 "$F/bureau.db" 'SELECT max(version) FROM schema_migrations')" 999

sanitizer_check "no sanitizer reports"
