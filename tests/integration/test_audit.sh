#!/usr/bin/env bash
# bureau audit verify: an untouched log verifies; any stored change to an
# event (sqlite3 on DATA/bureau.db) fails naming the first bad seq.
. "$(dirname "$0")/lib.sh"

BASE=$TMP/base
N=20
bureau --data "$BASE" init >/dev/null
for i in $(seq 1 $N); do # odd seqs have a subject, even ones none
  subject=""
  [ $((i % 2)) -eq 1 ] && subject="\"subject\":\"contact:c$i\","
  printf '{"type":"note.added","source":"audit",%s"consent":"transactional","idempotency_key":"k%d","data":{"i":%d,"text":"hello %d"}}\n' \
    "$subject" "$i" "$i" "$i"
done | bureau --data "$BASE" ingest --bulk >/dev/null

run bureau --data "$BASE" audit verify
expect_eq "untouched log: exit 0" "$RC" 0
expect_eq "untouched log: says 'ok: N events'" "$OUT" "ok: $N events"
run bureau --data "$BASE" --json audit verify
expect_eq "untouched log --json" "$OUT" "{\"ok\":true,\"events\":$N}"
E=$TMP/empty
bureau --data "$E" init >/dev/null
run bureau --data "$E" audit verify
expect_eq "empty log verifies (ok: 0 events)" "$RC/$OUT" "0/ok: 0 events"

n=0
# tamper NAME SEQ SQL: on a fresh copy, SQL must make verify fail naming SEQ first.
tamper() {
  local name=$1 want=$2 sql=$3 d first
  n=$((n + 1))
  d=$TMP/t$n
  cp -a "$BASE" "$d"
  if [ "$(sqlite3 "$d/bureau.db" "$sql; SELECT total_changes() > 0")" != 1 ]; then
    not_ok "$name: tamper" "sqlite3 changed nothing: $sql"
    return
  fi
  run bureau --data "$d" audit verify
  expect_eq "$name: exit 1" "$RC" 1
  first=$(printf '%s\n%s\n' "$OUT" "$ERR" | grep -oE 'seq [0-9]+' | head -n 1)
  expect_eq "$name: names seq $want first" "$first" "seq $want"
  rm -rf "$d"
}
K=7
flip() { # an expression that changes the last character of column $1
  echo "substr($1,1,length($1)-1) || (CASE substr($1,-1) WHEN 'a' THEN 'b' ELSE 'a' END)"
}

tamper "one byte of data of seq $K" $K "UPDATE events SET data=replace(data,'hello $K','hellp $K') WHERE seq=$K"
tamper "one byte of data of seq 1" 1 "UPDATE events SET data=replace(data,'hello 1\"','hellp 1\"') WHERE seq=1"
tamper "one byte of data of the last seq" $N "UPDATE events SET data=replace(data,'hello $N','hellp $N') WHERE seq=$N"
tamper "data of seq $K reformatted (same JSON, other bytes)" $K "UPDATE events SET data=' '||data WHERE seq=$K"
tamper "type of seq $K" $K "UPDATE events SET type='note.removed' WHERE seq=$K"
for col in id source subject occurred_at received_at consent idempotency_key trace_id data_hash prev_hash hash; do
  tamper "$col of seq $K changed" $K "UPDATE events SET $col=$(flip $col) WHERE seq=$K"
done
tamper "subject of seq $K removed (NULL)" $K "UPDATE events SET subject=NULL WHERE seq=$K"
tamper "consent of seq $K set to another valid value" $K "UPDATE events SET consent='marketing' WHERE seq=$K"
tamper "hash of the last seq" $N "UPDATE events SET hash=$(flip hash) WHERE seq=$N"
tamper "data and data_hash of seq $K replaced consistently" $K \
  "UPDATE events SET data='{\"i\":0}', data_hash='$(printf '%s' '{"i":0}' | sha256sum | cut -d' ' -f1)' WHERE seq=$K"
tamper "row $K deleted (middle)" $K "DELETE FROM events WHERE seq=$K"
tamper "first row deleted" 1 "DELETE FROM events WHERE seq=1"
tamper "last row deleted" $N "DELETE FROM events WHERE seq=$N"
tamper "every row deleted" 1 "DELETE FROM events"
tamper "data of rows $K and 12 swapped" $K \
  "UPDATE events SET data=CASE seq WHEN $K THEN (SELECT data FROM events WHERE seq=12) ELSE (SELECT data FROM events WHERE seq=$K) END WHERE seq IN ($K,12)"
tamper "rows $K and $((K + 1)) swapped (reordered)" $K \
  "UPDATE events SET seq=-1 WHERE seq=$K; UPDATE events SET seq=$K WHERE seq=$((K + 1)); UPDATE events SET seq=$((K + 1)) WHERE seq=-1"
tamper "a forged row appended after the last" $((N + 1)) \
  "INSERT INTO events SELECT $((N + 1)),'01ARZ3NDEKTSV4RRFFQ69G5FAV',type,source,subject,occurred_at,received_at,consent,NULL,trace_id,data,data_hash,hash,hash FROM events WHERE seq=$N"
# NULL and '' are different stored values: the second shows up as "subject":"".
tamper "subject of seq $((K + 1)) set from NULL to ''" $((K + 1)) \
  "UPDATE events SET subject='' WHERE seq=$((K + 1)) AND subject IS NULL"

d=$TMP/json
cp -a "$BASE" "$d"
sqlite3 "$d/bureau.db" "UPDATE events SET type='note.removed' WHERE seq=$K"
run bureau --data "$d" --json audit verify
expect_eq "tampered log --json: exit 1" "$RC" 1
expect_contains "tampered log --json: names bad_seq" "$OUT" "\"ok\":false,\"bad_seq\":$K,"

sanitizer_check "no sanitizer reports"
