#!/usr/bin/env bash
# bureau audit verify: an untouched log verifies; any stored change to an
# event (sqlite3 on DATA/bureau.db) fails naming the first bad seq.
# `bureau init` appends one event (the operator token's, seq 1): the N events
# ingested here follow it, and every tampered seq is looked up, not assumed.
. "$(dirname "$0")/lib.sh"

BASE=$TMP/base
N=20
bureau --data "$BASE" init >/dev/null
H0=$(sqlite3 "$BASE/bureau.db" 'SELECT count(*) FROM events') # init's events
for i in $(seq 1 $N); do # odd i have a subject, even ones none
  subject=""
  [ $((i % 2)) -eq 1 ] && subject="\"subject\":\"contact:c$i\","
  printf '{"type":"note.added","source":"audit",%s"consent":"transactional","idempotency_key":"k%d","data":{"i":%d,"text":"hello %d"}}\n' \
    "$subject" "$i" "$i" "$i"
done | bureau --data "$BASE" ingest --bulk >/dev/null
at() { # at I: the seq of the ingested event with data.i = I
  sqlite3 "$BASE/bureau.db" "SELECT seq FROM events WHERE type='note.added' AND json_extract(data,'\$.i')=$1"
}
expect_eq "the $N events follow init's $H0 in input order" \
  "$(sqlite3 "$BASE/bureau.db" "SELECT count(*), min(seq), max(seq), sum(json_extract(data,'\$.i') IS NOT seq - $H0) FROM events WHERE type='note.added'")" \
  "$N|$((H0 + 1))|$((H0 + N))|0"
expect_eq "the events before them are init's token event" \
  "$(sqlite3 "$BASE/bureau.db" "SELECT group_concat(type||'/'||source) FROM events WHERE seq <= $H0")" \
  "operator.token.created/cli"
TOTAL=$((H0 + N))

run bureau --data "$BASE" audit verify
expect_eq "untouched log: exit 0" "$RC" 0
expect_eq "untouched log: says 'ok: N events'" "$OUT" "ok: $TOTAL events"
run bureau --data "$BASE" --json audit verify
expect_eq "untouched log --json" "$OUT" "{\"ok\":true,\"events\":$TOTAL}"
E=$TMP/empty
bureau --data "$E" init >/dev/null
run bureau --data "$E" audit verify
expect_eq "a fresh log (init's token event alone) verifies (ok: 1 events)" "$RC/$OUT" "0/ok: 1 events"

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
K=$(at 7)    # a user event with a subject, in the middle
K1=$(at 8)   # the next one, without a subject
K12=$(at 12)
F=$(at 1)    # the first user event
LAST=$(at $N)
check "the tampered rows: 7 and 8 adjacent, $N the last ($K $K1 $LAST)" \
  test "$K1" = "$((K + 1))" -a "$LAST" = "$TOTAL"
flip() { # an expression that changes the last character of column $1
  echo "substr($1,1,length($1)-1) || (CASE substr($1,-1) WHEN 'a' THEN 'b' ELSE 'a' END)"
}

tamper "one byte of data of seq $K" "$K" "UPDATE events SET data=replace(data,'hello 7','hellp 7') WHERE seq=$K"
tamper "one byte of data of seq 1 (init's token event)" 1 \
  "UPDATE events SET data=replace(data,'\"name\":\"operator\"','\"name\":\"operatos\"') WHERE seq=1"
tamper "token_sha256 of init's token event replaced (seq 1)" 1 \
  "UPDATE events SET data=json_set(data,'\$.token_sha256','$(printf '%s' bur_forged | sha256sum | cut -d' ' -f1)') WHERE seq=1"
tamper "one byte of data of the first user event (seq $F)" "$F" "UPDATE events SET data=replace(data,'hello 1\"','hellp 1\"') WHERE seq=$F"
tamper "one byte of data of the last seq" "$LAST" "UPDATE events SET data=replace(data,'hello $N','hellp $N') WHERE seq=$LAST"
tamper "data of seq $K reformatted (same JSON, other bytes)" "$K" "UPDATE events SET data=' '||data WHERE seq=$K"
tamper "type of seq $K" "$K" "UPDATE events SET type='note.removed' WHERE seq=$K"
for col in id source subject occurred_at received_at consent idempotency_key trace_id data_hash prev_hash hash; do
  tamper "$col of seq $K changed" "$K" "UPDATE events SET $col=$(flip $col) WHERE seq=$K"
done
tamper "subject of seq $K removed (NULL)" "$K" "UPDATE events SET subject=NULL WHERE seq=$K"
tamper "consent of seq $K set to another valid value" "$K" "UPDATE events SET consent='marketing' WHERE seq=$K"
tamper "hash of the last seq" "$LAST" "UPDATE events SET hash=$(flip hash) WHERE seq=$LAST"
tamper "data and data_hash of seq $K replaced consistently" "$K" \
  "UPDATE events SET data='{\"i\":0}', data_hash='$(printf '%s' '{"i":0}' | sha256sum | cut -d' ' -f1)' WHERE seq=$K"
tamper "row $K deleted (middle)" "$K" "DELETE FROM events WHERE seq=$K"
tamper "first row deleted (init's token event)" 1 "DELETE FROM events WHERE seq=1"
tamper "first user event's row deleted (seq $F)" "$F" "DELETE FROM events WHERE seq=$F"
tamper "last row deleted" "$LAST" "DELETE FROM events WHERE seq=$LAST"
tamper "every row deleted" 1 "DELETE FROM events"
tamper "data of rows $K and $K12 swapped" "$K" \
  "UPDATE events SET data=CASE seq WHEN $K THEN (SELECT data FROM events WHERE seq=$K12) ELSE (SELECT data FROM events WHERE seq=$K) END WHERE seq IN ($K,$K12)"
tamper "rows $K and $K1 swapped (reordered)" "$K" \
  "UPDATE events SET seq=-1 WHERE seq=$K; UPDATE events SET seq=$K WHERE seq=$K1; UPDATE events SET seq=$K1 WHERE seq=-1"
tamper "a forged row appended after the last" $((LAST + 1)) \
  "INSERT INTO events SELECT $((LAST + 1)),'01ARZ3NDEKTSV4RRFFQ69G5FAV',type,source,subject,occurred_at,received_at,consent,NULL,trace_id,data,data_hash,hash,hash FROM events WHERE seq=$LAST"
# NULL and '' are different stored values: the second shows up as "subject":"".
tamper "subject of seq $K1 set from NULL to ''" "$K1" \
  "UPDATE events SET subject='' WHERE seq=$K1 AND subject IS NULL"

d=$TMP/json
cp -a "$BASE" "$d"
sqlite3 "$d/bureau.db" "UPDATE events SET type='note.removed' WHERE seq=$K"
run bureau --data "$d" --json audit verify
expect_eq "tampered log --json: exit 1" "$RC" 1
expect_contains "tampered log --json: names bad_seq" "$OUT" "\"ok\":false,\"bad_seq\":$K,"

sanitizer_check "no sanitizer reports"
