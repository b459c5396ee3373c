#!/usr/bin/env bash
# bureau replay: 100,000 mixed events, replay --check, a tampered projection
# table found and repaired, snapshots, and the counts projection's totals.
# `bureau init` appends one event (the operator token's, seq 1), which the
# tokens projection applies: the log holds H0 + N events.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
N=100000
bureau --data "$D" init >/dev/null
H0=$(sqlite3 "$D/bureau.db" 'SELECT count(*) FROM events') # init's events
expect_eq "init left one event, the operator token's" \
  "$(sqlite3 "$D/bureau.db" "SELECT group_concat(seq||'/'||type) FROM events")" "1/operator.token.created"
# Mixed events: five types (four with shared data shapes), seven sources,
# every third with an idempotency key, some with a subject.
mixed() { # mixed FROM TO
  awk -v a="$1" -v b="$2" 'BEGIN {
    split("note.added email.received payment.succeeded form.submitted contact.imported", T, " ")
    for (i = a; i <= b; i++) {
      t = T[i % 5 + 1]; s = "src" (i % 7)
      if (t == "note.added") d = "{\"n\":" i "}"
      else if (t == "email.received") d = "{\"from\":{\"email\":\"a" i "@x.example\"},\"to\":[{\"email\":\"me@x.example\"}],\"subject\":\"s\",\"text\":\"t\",\"message_id\":\"m" i "\"}"
      else if (t == "payment.succeeded") d = "{\"amount\":" i ",\"currency\":\"eur\",\"customer\":{\"id\":\"c" i "\"},\"provider_id\":\"p" i "\"}"
      else if (t == "form.submitted") d = "{\"form\":\"f\",\"fields\":{\"x\":\"" i "\"}}"
      else d = "{\"email\":\"c" i "@x.example\",\"tags\":[\"t\"]}"
      key = i % 3 == 0 ? ",\"idempotency_key\":\"r" i "\"" : ""
      subj = i % 4 == 0 ? ",\"subject\":\"contact:c" i % 100 "\"" : ""
      printf "{\"type\":\"%s\",\"source\":\"%s\"%s%s,\"data\":%s}\n", t, s, key, subj, d
    }
  }'
}
mixed 1 $N >"$TMP/events.ndjson"
run bureau --data "$D" ingest --bulk --file "$TMP/events.ndjson"
expect_eq "100,000 mixed events ingested in one bulk (exit 0)" "$RC" 0
nev() { sqlite3 "$D/bureau.db" 'SELECT count(*) FROM events'; }
expect_eq "100,000 events stored after init's" "$(nev)" $((H0 + N))

# The counts projection equals what the log says, per type, source and day.
totals_match() { # totals_match LABEL: three cases
  local db=$D/bureau.db
  expect_eq "$1: event_counts sums to the number of events" \
    "$(sqlite3 "$db" 'SELECT coalesce(sum(n), 0) FROM event_counts')" "$(nev)"
  expect_eq "$1: event_counts per type and source equal the log" \
    "$(sqlite3 "$db" 'SELECT type, source, sum(n) FROM event_counts GROUP BY 1, 2 ORDER BY 1, 2')" \
    "$(sqlite3 "$db" 'SELECT type, source, count(*) FROM events GROUP BY 1, 2 ORDER BY 1, 2')"
  expect_eq "$1: event_counts per day equal the log's received_at days" \
    "$(sqlite3 "$db" 'SELECT day, sum(n) FROM event_counts GROUP BY 1 ORDER BY 1')" \
    "$(sqlite3 "$db" 'SELECT substr(received_at, 1, 10), count(*) FROM events GROUP BY 1 ORDER BY 1')"
  expect_eq "$1: api_tokens holds the tokens the log created" \
    "$(sqlite3 "$db" "SELECT id, name, token_hash, created_at, revoked_at IS NULL FROM api_tokens ORDER BY id")" \
    "$(sqlite3 "$db" "SELECT json_extract(data, '\$.token_id'), json_extract(data, '\$.name'), json_extract(data, '\$.token_sha256'), received_at, 1 FROM events WHERE type = 'operator.token.created' ORDER BY 1")"
}
totals_match "after ingest"

check_ok() { # check_ok LABEL
  run bureau --data "$D" replay --check
  expect_eq "$1: replay --check exits 0" "$RC" 0
  expect_contains "$1: replay --check says ok" "$OUT" "counts               ok"
  expect_eq "$1: replay --check lists every projection, all ok" \
    "$(awk '{ print $1, $2 }' <<<"$OUT" | paste -sd,)" "counts ok,tokens ok,tasks ok,effects ok,goals ok,models ok,quality ok,content ok,identity ok,items ok,connectors ok,calendar ok"
}
check_ok "after 100,000 events"

run bureau --data "$D" replay
expect_eq "replay: exit 0" "$RC" 0
expect_eq "replay: applies every event (once, though every projection reads it)" "$OUT" "replayed: $((H0 + N)) events applied"
check_ok "after replay"
totals_match "after replay"

# A tampered projection table is found, left alone by --check, and repaired.
tampered() { # tampered LABEL SQL
  local label=$1 before
  sqlite3 "$D/bureau.db" "$2"
  before=$(sqlite3 "$D/bureau.db" 'SELECT * FROM event_counts ORDER BY 1, 2, 3')
  run bureau --data "$D" replay --check
  expect_eq "$label: replay --check exits 1" "$RC" 1
  expect_contains "$label: replay --check says MISMATCH" "$OUT" "counts               MISMATCH"
  expect_contains "$label: replay --check: the tokens projection is still ok" "$OUT" "tokens               ok"
  expect_contains "$label: replay --check explains on stderr" "$ERR" "differ"
  expect_eq "$label: replay --check leaves the live table as it was" \
    "$(sqlite3 "$D/bureau.db" 'SELECT * FROM event_counts ORDER BY 1, 2, 3')" "$before"
  run bureau --data "$D" replay
  expect_eq "$label: replay repairs it (exit 0)" "$RC" 0
  check_ok "$label, repaired"
}
tampered "n+1 on one row" \
  "UPDATE event_counts SET n = n + 1 WHERE (day, type, source) IN (SELECT day, type, source FROM event_counts LIMIT 1)"
totals_match "after the repair"
run bureau --data "$D" replay --snapshot
expect_eq "replay --snapshot: at the head" "$RC/$OUT" "0/snapshot at seq $((H0 + N))"
run bureau --data "$D" replay
expect_eq "replay after a snapshot at the head applies nothing" "$RC/$OUT" "0/replayed: 0 events applied"
check_ok "after 100,000 events, snapshot, replay"
totals_match "after snapshot and replay"

# The rest on a smaller log (5,000 events), to keep the run short.
D=$TMP/small
N=5000
bureau --data "$D" init >/dev/null
H0=$(nev) # init's events
mixed 1 $N | bureau --data "$D" ingest --bulk >/dev/null
run bureau --data "$D" --json replay --check
expect_contains "replay --check --json says ok" "$OUT" '{"ok":true,"projections":[{"projection":"counts","equal":true'
expect_eq "replay --check --json: every projection, all equal" \
  "$(sqlite3 :memory: "SELECT group_concat(json_extract(value, '\$.projection')||'='||json_extract(value, '\$.equal')) FROM json_each(json_extract('${OUT//\'/\'\'}', '\$.projections'))")" \
  "counts=1,tokens=1,tasks=1,effects=1,goals=1,models=1,quality=1,content=1,identity=1,items=1,connectors=1,calendar=1"
tampered "one row deleted" \
  "DELETE FROM event_counts WHERE (day, type, source) IN (SELECT day, type, source FROM event_counts LIMIT 1 OFFSET 3)"
tampered "a row added" "INSERT INTO event_counts VALUES ('1999-01-01', 'x.y', 'nowhere', 1)"
tampered "two counts moved (same total)" \
  "UPDATE event_counts SET n = n + CASE WHEN source = 'src0' THEN 1 ELSE -1 END WHERE type = 'note.added' AND source IN ('src0', 'src1')"
totals_match "after the repairs"

run bureau --data "$D" replay --projection counts --check
expect_eq "replay --projection counts --check: exit 0" "$RC" 0
expect_eq "replay --projection counts --check: lists counts alone" "$(awk '{ print $1, $2 }' <<<"$OUT")" "counts ok"
run bureau --data "$D" replay --projection tokens --check
expect_eq "replay --projection tokens --check: tokens alone, ok (exit 0)" \
  "$RC/$(awk '{ print $1, $2 }' <<<"$OUT")" "0/tokens ok"
run bureau --data "$D" replay --projection nope
expect_eq "replay --projection of an unknown name: exit 1" "$RC" 1
expect_contains "replay --projection of an unknown name: names it" "$ERR" "nope"
run bureau --data "$D" replay --check --snapshot
expect_eq "replay --check --snapshot: usage error (exit 2)" "$RC" 2

# Snapshots: a rebuild starts at the snapshot.
run bureau --data "$D" replay --snapshot
expect_eq "replay --snapshot of 5,000 events: exit 0" "$RC/$OUT" "0/snapshot at seq $((H0 + N))"
mixed $((N + 1)) $((N + 500)) | bureau --data "$D" ingest --bulk >/dev/null
run bureau --data "$D" replay
expect_eq "replay after a snapshot: applies only the events after it" "$RC/$OUT" "0/replayed: 500 events applied"
check_ok "snapshot, 500 more events, replay"
totals_match "after replay from a snapshot"
sqlite3 "$D/bureau.db" \
  "UPDATE event_counts SET n = n + 5 WHERE (day, type, source) IN (SELECT day, type, source FROM event_counts LIMIT 1)"
run bureau --data "$D" replay
expect_eq "replay from a snapshot repairs a tampered table" "$RC/$OUT" "0/replayed: 500 events applied"
check_ok "tampered, replay from a snapshot"
run bureau --data "$D" replay --full
expect_eq "replay --full ignores the snapshot" "$RC/$OUT" "0/replayed: $((H0 + N + 500)) events applied"
check_ok "after replay --full"
sqlite3 "$D/bureau.db" "UPDATE projection_snapshots SET state = replace(state, '"src0"', '"srcX"')"
run bureau --data "$D" replay
expect_eq "replay from a damaged snapshot: refused (exit 1)" "$RC" 1
expect_contains "replay from a damaged snapshot: says so" "$ERR" "damaged"
run bureau --data "$D" replay --full
expect_eq "replay --full works despite a damaged snapshot" "$RC" 0
check_ok "after replay --full past a damaged snapshot"
totals_match "at the end"

sanitizer_check "no sanitizer reports"
