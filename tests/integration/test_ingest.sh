#!/usr/bin/env bash
# bureau init, ingest (single, --bulk, --strict), validation of bad input,
# events / event show, the CLI's usage contract and bureau.yaml errors.
# `bureau init` appends one event, the operator token's (seq 1): the events
# ingested into a fresh data dir follow it.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
nevents() { sqlite3 "$1/bureau.db" 'SELECT count(*) FROM events'; }
ev() { # ev TYPE SOURCE DATA [KEY]: one event as a JSON line
  local key=""
  [ $# -ge 4 ] && key=",\"idempotency_key\":\"$4\""
  printf '{"type":"%s","source":"%s"%s,"data":%s}\n' "$1" "$2" "$key" "$3"
}
keys() { # keys JSON: the object's keys, sorted, comma-separated
  sqlite3 :memory: "SELECT group_concat(key) FROM (SELECT key FROM json_each('${1//\'/\'\'}') ORDER BY key)"
}
ULID_RE='[0-9A-HJKMNP-TV-Z]{26}'
# token_kept LABEL DIR TOKEN TOKEN_ID: seq 1 of DIR's log is init's event for
# TOKEN, holding its SHA-256 and never the token; the tokens projection has it.
token_kept() {
  local label=$1 dir=$2 tok=$3 id=$4 sha hex
  sha=$(printf '%s' "$tok" | sha256sum | cut -d' ' -f1)
  hex=${tok#bur_}
  expect_eq "$label: seq 1 is operator.token.created from cli" \
    "$(sqlite3 "$dir/bureau.db" "SELECT type||'/'||source FROM events WHERE seq=1")" "operator.token.created/cli"
  expect_eq "$label: its data is {name: operator, token_id, token_sha256: the token's SHA-256}" \
    "$(sqlite3 "$dir/bureau.db" 'SELECT data FROM events WHERE seq=1')" \
    "{\"name\":\"operator\",\"token_id\":\"$id\",\"token_sha256\":\"$sha\"}"
  expect_eq "$label: the tokens projection holds its id, name and SHA-256 (live)" \
    "$(sqlite3 "$dir/bureau.db" "SELECT group_concat(id||'/'||name||'/'||token_hash||'/'||coalesce(revoked_at,'live')) FROM api_tokens")" \
    "$id/operator/$sha/live"
  expect_eq "$label: no table of the database holds the token" \
    "$(sqlite3 "$dir/bureau.db" .dump | grep -cF "${hex:-none}")" 0
  expect_eq "$label: no file in the data dir holds the token" "$(grep -rlF "${hex:-none}" "$dir")" ""
}

# ---- init ----
run bureau --data "$D/nested/dir" init
expect_eq "init: creates a nested data dir (exit 0)" "$RC" 0
D=$D/nested/dir
# The operator's first API token: printed once, after "initialised: DIR".
expect_eq "init: prints 'initialised: DIR', then the operator token's notice" \
  "$(sed -n 1,2p <<<"$OUT")" "initialised: $D"$'\n'"operator API token (shown only this once; keep it safe):"
tok=$(sed -n 3p <<<"$OUT")
check "init: the third line is the token alone, bur_ and 48 hex digits ($tok)" grep -Eqx 'bur_[0-9a-f]{48}' <<<"$tok"
expect_eq "init: stdout is those three lines" "$(printf '%s\n' "$OUT" | wc -l)" 3
expect_eq "init: the token is not on stderr" "$(grep -cF "${tok:-none}" <<<"$ERR")" 0
expect_eq "init: appends one event" "$(nevents "$D")" 1
tok_id=$(sqlite3 "$D/bureau.db" "SELECT json_extract(data,'\$.token_id') FROM events WHERE seq=1")
check "init: the token's id is a ULID ($tok_id)" grep -Eqx "$ULID_RE" <<<"$tok_id"
token_kept "init" "$D" "$tok" "$tok_id"
check "init: creates bureau.db" test -s "$D/bureau.db"
check "init: creates bureau.yaml" test -f "$D/bureau.yaml"
expect_eq "init: every line of bureau.yaml is blank or a comment" \
  "$(grep -Ev '^[[:space:]]*(#|$)' "$D/bureau.yaml")" ""
for s in store ledger log; do
  expect_contains "init: bureau.yaml has the section '$s' commented out" \
    "$(cat "$D/bureau.yaml")" "# $s:"
done
yaml_sum=$(sha256sum <"$D/bureau.yaml")
run bureau --data "$D" ingest <<<"$(ev note.added cli '{"n":0}')"
run bureau --data "$D" --json init
expect_eq "init: a second run exits 0" "$RC" 0
expect_contains "init: a second run reports the database as existing" "$OUT" '"created_database":false'
expect_eq "init: a second run leaves bureau.yaml as it was" "$(sha256sum <"$D/bureau.yaml")" "$yaml_sum"
expect_eq "init: a second run keeps the events (init's and the one ingested)" "$(nevents "$D")" 2
expect_eq "init --json, second run: no token, no token_id" "$(keys "$OUT")" "created_config,created_database,data_dir"
run bureau --data "$D" init
expect_eq "init: a third run exits 0" "$RC" 0
expect_eq "init: a third run prints 'up to date: DIR' alone, no token" "$OUT" "up to date: $D"
expect_eq "init: the later runs append no event and create no token" \
  "$(nevents "$D")/$(sqlite3 "$D/bureau.db" 'SELECT count(*) FROM api_tokens')" "2/1"
token_kept "init, after two more runs" "$D" "$tok" "$tok_id"
J=$TMP/json-init
run bureau --data "$J" --json init
expect_eq "init --json: exit 0" "$RC" 0
expect_eq "init --json: one line" "$(printf '%s\n' "$OUT" | wc -l)" 1
expect_eq "init --json: {created_config, created_database, data_dir, token, token_id}" \
  "$(keys "$OUT")" "created_config,created_database,data_dir,token,token_id"
expect_eq "init --json: data_dir, created_database and created_config" \
  "$(jget "$OUT" '$.data_dir')/$(jget "$OUT" '$.created_database')/$(jget "$OUT" '$.created_config')" "$J/1/1"
jtok=$(jget "$OUT" '$.token')
jtok_id=$(jget "$OUT" '$.token_id')
check "init --json: token is bur_ and 48 hex digits ($jtok)" grep -Eqx 'bur_[0-9a-f]{48}' <<<"$jtok"
check "init --json: token_id is a ULID ($jtok_id)" grep -Eqx "$ULID_RE" <<<"$jtok_id"
check "init --json: another install, another token" test "$jtok" != "$tok" -a "$jtok_id" != "$tok_id"
expect_eq "init --json: appends one event" "$(nevents "$J")" 1
token_kept "init --json" "$J" "$jtok" "$jtok_id"
run bureau --data "$J" --json init
expect_eq "init --json, second run: created_database false, no token, no token_id" \
  "$(jget "$OUT" '$.created_database')/$(keys "$OUT")" "0/created_config,created_database,data_dir"
expect_eq "init --json, second run: no event appended" "$(nevents "$J")" 1

# ---- single ingest ----
k1=$(($(nevents "$D") + 1)) # the seq the next append gets
run bureau --data "$D" --json ingest <<<"$(ev note.added cli '{"n":1}' key-1)"
expect_eq "ingest: exit 0" "$RC" 0
if [[ $OUT =~ ^\{\"seq\":$k1,\"id\":\"([0-9A-HJKMNP-TV-Z]{26})\",\"duplicate\":false\}$ ]]; then
  ok "ingest --json: prints {\"seq\",\"id\",\"duplicate\":false}"
  first_id=${BASH_REMATCH[1]}
else
  not_ok "ingest --json: prints {\"seq\",\"id\",\"duplicate\":false}" "got '$OUT'"
  first_id=none
fi
expect_eq "ingest: stdout is only the JSON line, stderr is quiet" "$ERR" ""
run bureau --data "$D" --json ingest <<<"$(ev note.added cli '{"n":1}' key-1)"
expect_eq "ingest: the same event again exits 0" "$RC" 0
expect_eq "ingest: the same idempotency_key again answers the first seq, duplicate" \
  "$OUT" "{\"seq\":$k1,\"id\":\"$first_id\",\"duplicate\":true}"
run bureau --data "$D" --json ingest <<<"$(ev note.added other '{"n":"different data"}' key-1)"
expect_contains "ingest: the key alone decides: other content, same key is a duplicate" \
  "$OUT" "\"seq\":$k1,"
expect_eq "ingest: an event with the same idempotency_key is stored once" \
  "$(sqlite3 "$D/bureau.db" "SELECT count(*) FROM events WHERE json_extract(data,'\$.n')=1")" 1
expect_eq "ingest: the idempotency_key is stored as its SHA-256" \
  "$(sqlite3 "$D/bureau.db" "SELECT idempotency_key FROM events WHERE seq=$k1")" \
  "$(printf '%s' key-1 | sha256sum | cut -d' ' -f1)"
run bureau --data "$D" --json ingest <<<"$(ev note.added cli '{"n":2}')"
a=$OUT
run bureau --data "$D" --json ingest <<<"$(ev note.added cli '{"n":2}')"
s1=$(sed -n 's/^{"seq":\([0-9]*\),.*"duplicate":false}$/\1/p' <<<"$a")
s2=$(sed -n 's/^{"seq":\([0-9]*\),.*"duplicate":false}$/\1/p' <<<"$OUT")
expect_eq "ingest: without idempotency_key the second append is new (next seq)" \
  "$s1 $s2" "$s1 $((${s1:-0} + 1))"
expect_eq "ingest: without idempotency_key the same event is stored twice" \
  "$(sqlite3 "$D/bureau.db" "SELECT count(*) FROM events WHERE json_extract(data,'\$.n')=2")" 2
ev note.added file '{"n":3}' >"$TMP/one.json"
run bureau --data "$D" ingest --file "$TMP/one.json" --json
expect_eq "ingest --file: reads the event from the file" \
  "$RC $(sqlite3 "$D/bureau.db" "SELECT count(*) FROM events WHERE source='file' AND json_extract(data,'\$.n')=3")" "0 1"
ev payment.succeeded stripe \
  '{"amount":1200,"currency":"eur","customer":{"email":"a@b.example"},"provider_id":"pi_1","extra":{"k":[1,2]}}' \
  >"$TMP/pay.json"
run bureau --data "$D" --json ingest --file "$TMP/pay.json"
expect_eq "ingest: a valid shared-type event is accepted" "$RC" 0
expect_eq "ingest: extra data fields of a shared type are kept" \
  "$(sqlite3 "$D/bureau.db" "SELECT json_extract(data,'\$.extra.k[1]') FROM events WHERE type='payment.succeeded'")" 2

# The canonical event: header fields normalised, data canonical and hashed.
H=$TMP/header
bureau --data "$H" init >/dev/null
hs=$(($(nevents "$H") + 1)) # after init's event
bureau --data "$H" ingest >/dev/null <<<'{"type":"a.b","source":"s","occurred_at":"2026-01-02T03:04:05+02:00","trace_id":"0123456789abcdef0123456789abcdef","data":{"b":1,"a":[1.5,"x"]}}'
expect_eq "event: stored after init's event" "$(sqlite3 "$H/bureau.db" "SELECT type FROM events WHERE seq=$hs")" a.b
row() { sqlite3 "$H/bureau.db" "SELECT $1 FROM events WHERE seq=$hs"; }
expect_eq "event: occurred_at is stored as RFC 3339 UTC with milliseconds" "$(row occurred_at)" "2026-01-02T01:04:05.000Z"
check "event: received_at is RFC 3339 UTC with milliseconds" \
  grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$' <<<"$(row received_at)"
expect_eq "event: consent defaults to none" "$(row consent)" none
expect_eq "event: a given trace_id is kept" "$(row trace_id)" 0123456789abcdef0123456789abcdef
expect_eq "event: data is stored canonical (sorted keys, compact)" "$(row data)" '{"a":[1.5,"x"],"b":1}'
expect_eq "event: data_hash is the SHA-256 of data" "$(row data_hash)" \
  "$(printf '%s' '{"a":[1.5,"x"],"b":1}' | sha256sum | cut -d' ' -f1)"
expect_eq "event: no idempotency_key given, none stored" "$(row "coalesce(idempotency_key, 'NULL')")" NULL

# ---- --bulk ----
B=$TMP/bulk
bureau --data "$B" init >/dev/null
b0=$(nevents "$B") # init's events
{
  ev a.b bulk '{"i":1}'
  printf '{"type":"a.b","source":"bulk","data":\n'
  ev a.b bulk '{"i":3}'
  ev a.b bulk '{"i":4}'
  ev a.b bulk '{"i":5}'
} >"$TMP/bulk.ndjson"
run bureau --data "$B" ingest --bulk --json --file "$TMP/bulk.ndjson"
expect_eq "ingest --bulk: a bad line makes the exit status 1" "$RC" 1
expect_contains "ingest --bulk: stderr names the bad line ('line 2:')" "$ERR" "line 2:"
expect_contains "ingest --bulk: stderr gives the reason of the bad line" "$ERR" "line 2: malformed JSON"
expect_eq "ingest --bulk: only the bad line is reported" "$(grep -c 'line [0-9]*:' <<<"$ERR")" 1
expect_eq "ingest --bulk: the good lines are stored" \
  "$(sqlite3 "$B/bureau.db" "SELECT group_concat(json_extract(data,'\$.i')) FROM events WHERE seq > $b0")" "1,3,4,5"
printf '%s\n' "$OUT" >"$TMP/bulk.out"
expect_eq "ingest --bulk --json: one object per good line, naming its line" \
  "$(jl "$TMP/bulk.out" "json_extract(value,'\$.line') || ':' || json_extract(value,'\$.seq')" | paste -sd' ')" \
  "1:$((b0 + 1)) 3:$((b0 + 2)) 4:$((b0 + 3)) 5:$((b0 + 4))"
{ ev a.b bulk '{"i":6}'; echo; echo '   '; ev A.b bulk '{"i":8}'; } >"$TMP/bulk2.ndjson"
run bureau --data "$B" ingest --bulk --file "$TMP/bulk2.ndjson"
expect_contains "ingest --bulk: blank lines are skipped but counted" "$ERR" "line 4: field 'type'"
{ ev x.y strict '{"i":1}'; ev x.y strict '{"i":2}'; ev x.y strict '[]'; ev x.y strict '{"i":4}'; } \
  >"$TMP/strict.ndjson"
n0=$(nevents "$B")
run bureau --data "$B" ingest --bulk --strict --json --file "$TMP/strict.ndjson"
expect_eq "ingest --bulk --strict: a bad line makes the exit status 1" "$RC" 1
expect_contains "ingest --bulk --strict: the bad line is named" "$ERR" "line 3:"
expect_eq "ingest --bulk --strict: nothing is written" "$(nevents "$B")" "$n0"
expect_eq "ingest --bulk --strict: nothing is acknowledged on stdout" "$OUT" ""
{ ev x.y strict '{"i":1}' s1; ev x.y strict '{"i":2}' s1; ev x.y strict '{"i":3}'; } >"$TMP/strict2.ndjson"
run bureau --data "$B" ingest --bulk --strict --json --file "$TMP/strict2.ndjson"
expect_eq "ingest --bulk --strict: all good lines are written (exit 0)" "$RC" 0
expect_eq "ingest --bulk --strict: a repeated key inside the batch is a duplicate" \
  "$(printf '%s\n' "$OUT" | sed -n 2p | grep -o '"duplicate":true')" '"duplicate":true'
expect_eq "ingest --bulk --strict: two new events stored" "$(nevents "$B")" $((n0 + 2))

# ---- bad input: exit 1, a message naming the field/position, nothing written ----
bad() { # bad NAME EXPECTED-IN-STDERR: the event is on stdin
  local name=$1 want=$2 n
  n=$(nevents "$D")
  run bureau --data "$D" --json ingest
  expect_eq "bad input ($name): exit 1" "$RC" 1
  expect_contains "bad input ($name): the message names it" "$ERR" "$want"
  expect_eq "bad input ($name): nothing written, nothing on stdout" "$(nevents "$D")/$OUT" "$n/"
}
bad "malformed JSON" "malformed JSON at line 1, column 27 (byte 27)" \
  < <(printf '%s' '{"type":"a.b","source":"s",')
bad "malformed JSON on line 4" "line 4, column 8 (byte 43)" \
  < <(printf '{\n  "type": "a.b",\n  "source": "s"\n  "data": {}\n}\n')
bad "empty input" "malformed JSON" </dev/null
bad "two documents" "malformed JSON at line 2" < <(ev a.b s '{}'; ev a.b s '{}')
bad "duplicate key" "duplicate object key" <<<'{"type":"a.b","source":"s","data":{},"data":{}}'
bad "not an object" "must be a JSON object" <<<'[1,2]'
bad "missing type" "field 'type': required" <<<'{"source":"s","data":{}}'
bad "type not a string" "field 'type': must be a string" <<<'{"type":7,"source":"s","data":{}}'
bad "type Email.Received" "field 'type': 'Email.Received'" <<<"$(ev Email.Received s '{}')"
bad "type noperiod" "field 'type': 'noperiod'" <<<"$(ev noperiod s '{}')"
bad "type with an empty segment" "field 'type'" <<<"$(ev a..b s '{}')"
bad "missing source" "field 'source': required" <<<'{"type":"a.b","data":{}}'
bad "unknown consent" "field 'consent'" <<<'{"type":"a.b","source":"s","consent":"maybe","data":{}}'
bad "bad occurred_at" "field 'occurred_at'" <<<'{"type":"a.b","source":"s","occurred_at":"yesterday","data":{}}'
bad "empty idempotency_key" "field 'idempotency_key'" <<<"$(ev a.b s '{}' '')"
bad "missing data" "field 'data': required" <<<'{"type":"a.b","source":"s"}'
bad "data an array" "field 'data': must be an object" <<<"$(ev a.b s '[1]')"
bad "data a string" "field 'data': must be an object" <<<"$(ev a.b s '"x"')"
bad "unknown top-level field" "field 'colour': unknown" <<<'{"type":"a.b","source":"s","colour":1,"data":{}}'
bad "ledger-assigned field seq" "field 'seq'" <<<'{"type":"a.b","source":"s","seq":1,"data":{}}'
bad "payment amount as a string" "data.amount" \
  <<<"$(ev payment.succeeded s '{"amount":"12","currency":"eur","customer":{},"provider_id":"p"}')"
bad "payment amount negative" "data.amount" \
  <<<"$(ev payment.refunded s '{"amount":-1,"currency":"eur","customer":{},"provider_id":"p"}')"
bad "payment currency EUR" "data.currency" \
  <<<"$(ev invoice.paid s '{"amount":12,"currency":"EUR","customer":{},"provider_id":"p"}')"
bad "payment without provider_id" "data.provider_id" \
  <<<"$(ev payment.succeeded s '{"amount":12,"currency":"eur","customer":{}}')"
bad "email without from.email" "data.from.email" \
  <<<"$(ev email.received s '{"from":{"name":"A"},"to":[],"subject":"","text":"","message_id":"m"}')"
bad "email with a bad to[1].email" "data.to[1].email" \
  <<<"$(ev email.received s '{"from":{"email":"a@b.c"},"to":[{"email":"x@y.z"},{"email":"nope"}],"subject":"","text":"","message_id":"m"}')"
bad "subscription with a bad current_period_end" "data.current_period_end" \
  <<<"$(ev subscription.created s '{"customer":{},"plan":"p","amount":1,"currency":"usd","interval":"month","status":"active","current_period_end":"soon"}')"
bad "contact without email" "data.email" <<<"$(ev contact.imported s '{"name":"A"}')"

L=$TMP/limit
bureau --data "$L" init >/dev/null
l0=$(nevents "$L") # init's events
printf 'ledger: {max_data_bytes: 2048}\n' >"$L/bureau.yaml"
big=$(head -c 4096 /dev/zero | tr '\0' x)
run bureau --data "$L" ingest <<<"$(ev a.b s "{\"x\":\"$big\"}")"
expect_eq "bad input (data over max_data_bytes): exit 1" "$RC" 1
expect_contains "bad input (data over max_data_bytes): the message names data and the limit" \
  "$ERR" "field 'data': larger than the limit of 2048"
expect_eq "bad input (data over max_data_bytes): nothing written" "$(nevents "$L")" "$l0"
run bureau --data "$L" ingest <<<"$(ev a.b s '{"x":"small"}')"
expect_eq "ingest: data under max_data_bytes is accepted" "$RC/$(nevents "$L")" "0/$((l0 + 1))"
run bureau --data "$L" ingest --bulk <<<"$(ev a.b s "{\"x\":\"$big\"}"; ev a.b s '{"x":"ok"}')"
expect_contains "ingest --bulk: an oversized line is reported with its number" "$ERR" "line 1:"
expect_eq "ingest --bulk: the line after an oversized one is kept" "$RC/$(nevents "$L")" "1/$((l0 + 2))"

# ---- events, event show ----
E=$TMP/events
bureau --data "$E" init >/dev/null
e0=$(nevents "$E") # init's events: event i below is stored at seq e0 + i
at() { local i r=""; for i in "$@"; do r="$r${r:+ }$((e0 + i))"; done; echo "$r"; }
for i in 1 2 3 4 5 6 7 8 9 10; do
  if [ $((i % 3)) -eq 0 ]; then ev b.two s2 "{\"i\":$i}"; else ev a.one s1 "{\"i\":$i}"; fi
done >"$TMP/ten.ndjson"
bureau --data "$E" ingest --bulk --file "$TMP/ten.ndjson" >/dev/null
seqs() { # seqs ARGS...: the seqs `events --json ARGS` lists
  bureau --data "$E" events --json "$@" >"$TMP/ev.out" && jl "$TMP/ev.out" "json_extract(value,'\$.seq')" | paste -sd' '
}
expect_eq "events --type" "$(seqs --type b.two)" "$(at 3 6 9)"
expect_eq "events --source" "$(seqs --source s1)" "$(at 1 2 4 5 7 8 10)"
expect_eq "events --source cli: init's token event alone" "$(seqs --source cli)" "1"
expect_eq "events --since" "$(seqs --since "$(at 7)")" "$(at 8 9 10)"
expect_eq "events --limit" "$(seqs --limit 3)" "1 2 3"
expect_eq "events --since --limit" "$(seqs --since 2 --limit 2)" "3 4"
expect_eq "events --type --source --since --limit together" \
  "$(seqs --type a.one --source s1 --since "$(at 4)" --limit 2)" "$(at 5 7)"
expect_eq "events --type with no match lists nothing" "$(seqs --type c.three)" ""
bureau --data "$E" events --json >"$TMP/all.out"
expect_eq "events --json: one JSON object per line" \
  "$(jl "$TMP/all.out" "json_type(value)" | sort | uniq -c | tr -s ' ')" " $((e0 + 10)) object"
expect_eq "events --json: each object carries the event's fields" \
  "$(jl "$TMP/all.out" "json_extract(value,'\$.type')||'/'||json_extract(value,'\$.source')||'/'||json_extract(value,'\$.data.i')||'/'||length(json_extract(value,'\$.hash'))" | sed -n "$(at 3)p")" \
  "b.two/s2/3/64"
expect_eq "events: ids (ULIDs) increase with seq" \
  "$(sqlite3 "$E/bureau.db" 'SELECT count(*) FROM events a JOIN events b ON b.seq = a.seq + 1 WHERE b.id <= a.id')" 0
run bureau --data "$E" events
expect_eq "events (text): a header and one line per event" "$(printf '%s\n' "$OUT" | wc -l)" "$((e0 + 11))"
run bureau --data "$E" events --limit 0
expect_eq "events --limit 0 is a usage error (exit 2)" "$RC" 2
run bureau --data "$E" events --since abc
expect_eq "events --since abc is a usage error (exit 2)" "$RC" 2
id4=$(sqlite3 "$E/bureau.db" 'SELECT id FROM events WHERE seq=4')
run bureau --data "$E" --json event show 4
expect_eq "event show SEQ: exit 0" "$RC" 0
expect_contains "event show SEQ: shows that event" "$OUT" "\"seq\":4,\"id\":\"$id4\""
by_seq=$OUT
run bureau --data "$E" --json event show "$id4"
expect_eq "event show ID: shows the same event" "$OUT" "$by_seq"
run bureau --data "$E" event show 4
expect_contains "event show (text): prints the hashes" "$OUT" '"prev_hash"'
run bureau --data "$E" event show 99
expect_eq "event show of a missing seq: exit 1" "$RC" 1
expect_contains "event show of a missing seq: says so" "$ERR" "99"
run bureau --data "$E" event show 01ARZ3NDEKTSV4RRFFQ69G5FAV
expect_eq "event show of an unknown id: exit 1" "$RC" 1
run bureau --data "$E" event show x-y
expect_eq "event show of neither seq nor id: exit 2" "$RC" 2

# ---- usage contract ----
run bureau --data "$E" frobnicate
expect_eq "unknown command: exit 2" "$RC" 2
expect_contains "unknown command: named on stderr" "$ERR" "unknown command 'frobnicate'"
expect_eq "unknown command: nothing on stdout" "$OUT" ""
run bureau --data "$E" events --frob
expect_eq "unknown option: exit 2" "$RC" 2
expect_contains "unknown option: named on stderr" "$ERR" "--frob"
run bureau --data "$E" -x events
expect_eq "unknown short option: exit 2" "$RC" 2
run bureau --data "$E" ingest --strict </dev/null
expect_eq "ingest --strict without --bulk: exit 2" "$RC" 2
run bureau --data "$E" events --limit
expect_eq "an option without its value: exit 2" "$RC" 2
run bureau --data "$E" backup
expect_eq "a missing argument: exit 2" "$RC" 2
run bureau --data "$E" version extra
expect_eq "an extra argument: exit 2" "$RC" 2
run bureau
expect_eq "no command: exit 2" "$RC" 2
run bureau --help
expect_eq "bureau --help: exit 0" "$RC" 0
expect_contains "bureau --help: usage on stdout" "$OUT" "usage: bureau"
for c in init ingest events "event show" replay "audit verify" backup restore version; do
  # shellcheck disable=SC2086
  run bureau $c --help
  expect_eq "$c --help: exit 0" "$RC" 0
  expect_contains "$c --help: prints its usage on stdout" "$OUT" "usage: bureau $c"
done
run bureau --data "$TMP/none" events
expect_eq "a data dir that was not initialised: exit 1" "$RC" 1
expect_contains "a data dir that was not initialised: says bureau init" "$ERR" "bureau init"
check "a read command does not create the data dir" test ! -e "$TMP/none"
run bureau version
expect_eq "version: exit 0" "$RC" 0
run bureau version --json
expect_contains "version --json: one JSON object" "$OUT" '{"version":'

# ---- global options before and after the command; BUREAU_DATA ----
want=$(bureau --data "$E" --json events --limit 2)
expect_eq "global options after the command" "$(bureau events --limit 2 --json --data "$E")" "$want"
expect_eq "global options on both sides" "$(bureau --json events --data "$E" --limit 2)" "$want"
expect_eq "--data=DIR form" "$(bureau --data="$E" events --json --limit=2)" "$want"
expect_eq "--log-level before the command" "$(bureau --log-level error --data "$E" --json events --limit 2)" "$want"
expect_eq "BUREAU_DATA is honoured" "$(BUREAU_DATA=$E bureau events --json --limit 2)" "$want"
expect_eq "--data wins over BUREAU_DATA" "$(BUREAU_DATA=$TMP/none bureau events --json --limit 2 --data "$E")" "$want"
mkdir -p "$TMP/cwd"
(cd "$TMP/cwd" && env -u BUREAU_DATA "$BUREAU" init >/dev/null)
check "the default data dir is ./bureau-data" test -s "$TMP/cwd/bureau-data/bureau.db"
mkdir -p "$TMP/cwd2"
(cd "$TMP/cwd2" && run bureau --data "" init && echo "$RC" >"$TMP/rc")
check "--data '' is refused (exit 1 or 2)" grep -qx '[12]' "$TMP/rc"
sanitizer_check "--data '': no sanitizer report"
run bureau --data "$E" --log-level loud events
expect_eq "--log-level with a bad value: exit 2" "$RC" 2

# ---- bureau.yaml errors: refused, naming file:line:col ----
C=$TMP/conf
bureau --data "$C" init >/dev/null
c0=$(nevents "$C") # init's events
conf() { # conf NAME YAML WANT
  printf "$2" >"$C/bureau.yaml"
  run bureau --data "$C" events
  expect_eq "bureau.yaml ($1): refused (exit 1)" "$RC" 1
  expect_contains "bureau.yaml ($1): names file:line:col and the problem" "$ERR" "$3"
}
conf "unknown section" 'bogus:\n  x: 1\n' "$C/bureau.yaml:1:1: unknown section 'bogus'"
conf "unknown key" 'ledger:\n  nope: 3\n' "$C/bureau.yaml:2:3: unknown key 'ledger.nope'"
conf "bad enum value" 'store:\n  durability: fast\n' "$C/bureau.yaml:2:15: 'store.durability'"
conf "integer out of range" '# x\nledger:\n  max_data_bytes: 12\n' "$C/bureau.yaml:3:19: 'ledger.max_data_bytes'"
conf "not an integer" 'ledger: {group_commit_max: many}\n' "$C/bureau.yaml:1:28: 'ledger.group_commit_max'"
conf "YAML syntax error" 'store: {durability: full]\n' "$C/bureau.yaml:1:25:"
sanitizer_check "bureau.yaml syntax error: no sanitizer report (leaks)"
printf 'store:\n  durability: fast\n' >"$C/bureau.yaml"
run bureau --data "$C" ingest <<<"$(ev a.b s '{}')"
expect_eq "bureau.yaml refused: ingest writes nothing" "$RC/$(nevents "$C")" "1/$c0"
printf 'store:\n  durability: normal\n  busy_timeout_ms: 5000\nledger:\n  group_commit_max: 64\nlog:\n  level: warn\n' >"$C/bureau.yaml"
run bureau --data "$C" ingest <<<"$(ev a.b s '{}')"
expect_eq "bureau.yaml with valid settings is accepted" "$RC/$(nevents "$C")" "0/$((c0 + 1))"

sanitizer_check "no sanitizer reports"
