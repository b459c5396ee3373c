#!/usr/bin/env bash
# The remote model providers over loopback: model_call (one provider call)
# against fake_llm (tests/tools), which plays an OpenAI-compatible and an
# Anthropic-compatible API from a script, one model name per case. Covers
# text, structured output in json_schema and json_object modes, the one
# repair round (its request carries the broken text and the instruction),
# broken twice -> bad_output, 429 with Retry-After in seconds and as an
# HTTP-date, 500 and 529 -> retry, a slow answer -> timeout, an oversize
# answer -> too_large, 401 -> failed without the key, embeddings, classify,
# the key in the right header for each API, a missing key variable and a
# closed port.
. "$(dirname "$0")/lib.sh"

BUILD=${BUILD:-$(dirname "$BUREAU")}
FAKE=$BUILD/fake_llm
CALL=$BUILD/model_call
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
export NO_PROXY='*' no_proxy='*'

export LLM_KEY="sk-it-$$-Zq9SECRET"
export LC_ALL=C

SCHEMA=$TMP/person.json
cat >"$SCHEMA" <<'EOF'
{"type": "object",
 "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
 "required": ["name", "age"], "additionalProperties": false}
EOF

# An HTTP-date two minutes from now (IMF-fixdate).
LATER=$(date -u -d "@$(($(date +%s) + 120))" '+%a, %d %b %Y %H:%M:%S GMT')

SCRIPT=$TMP/script.json
cat >"$SCRIPT" <<EOF
[
 {"model": "text", "content": "Hello, Zoë."},
 {"model": "nousage", "content": "12345678", "usage": false},
 {"model": "native", "content": "{\"name\": \"Zoë\", \"age\": 42}"},
 {"model": "object", "content": "\`\`\`json\n{\"name\": \"Ann\", \"age\": 7}\n\`\`\`"},
 {"model": "repair", "broken": true},
 {"model": "repair", "content": "{\"name\": \"Bo\", \"age\": 3}"},
 {"model": "mismatch", "content": "{\"name\": \"Cy\"}"},
 {"model": "mismatch", "content": "{\"name\": \"Cy\", \"age\": 5}"},
 {"model": "broken2", "broken": true, "repeat": 2},
 {"model": "limited", "status": 429, "retry_after": "7"},
 {"model": "limited-date", "status": 429, "retry_after": "$LATER"},
 {"model": "down", "status": 500},
 {"model": "slow", "delay_ms": 20000, "content": "too late"},
 {"model": "huge", "oversize": 300000},
 {"model": "denied", "status": 401,
  "body": {"error": {"message": "Incorrect API key provided: $LLM_KEY", "type": "invalid_request_error"}}},
 {"model": "bad-request", "status": 400, "body": {"error": {"message": "model not found"}}},
 {"path": "/embeddings", "model": "embedder", "embedding": [0.5, -1, 0.25]},
 {"model": "judge", "content": "{\"label\": \"ham\", \"confidence\": 0.9, \"why\": \"x\"}"},
 {"model": "judge", "content": "{\"label\": \"ham\", \"confidence\": 0.9}"},
 {"path": "/messages", "model": "claude", "content": "Hi from Claude"},
 {"path": "/messages", "model": "claude-json", "content": "{\"name\": \"Di\", \"age\": 30}"},
 {"path": "/messages", "model": "claude-repair", "broken": true},
 {"path": "/messages", "model": "claude-repair", "content": "{\"name\": \"Ed\", \"age\": 1}"},
 {"path": "/messages", "model": "claude-busy", "status": 529,
  "body": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}},
 {"default": true, "status": 404, "body": {"error": {"message": "no such case"}}}
]
EOF

fifo=$TMP/fake.out
mkfifo "$fifo"
LOG=$TMP/fake.log
"$FAKE" --port-file "$TMP/fake.port" --log "$LOG" --script "$SCRIPT" --key "$LLM_KEY" \
  >"$fifo" 2>"$TMP/fake.err" &
FAKE_PID=$!
bg_track "$FAKE_PID"
exec {FAKE_FD}<"$fifo"
line=""
IFS= read -r -t 30 line <&"$FAKE_FD"
BASE=http://127.0.0.1:$(cat "$TMP/fake.port" 2>/dev/null)
URL=$BASE/v1
[[ $line == "listening on ${BASE#http://}" ]] || {
  not_ok "fake_llm starts" "line '$line', $(cat "$TMP/fake.err")"
  exit 1
}

# call [ARGS...] KIND MODEL TASK PROMPT: one model_call against $URL; sets
# OUT, RC, STATUS, OUTPUT (canonical JSON: keys sorted), ERROR, REPAIRS, HTTP.
call() {
  local n=$#
  local kind=${*:n-3:1} model=${*:n-2:1} task=${*:n-1:1} prompt=${*:n:1}
  run "$CALL" --key-env LLM_KEY "${@:1:n-4}" "$kind" "$URL" "$model" "$task" "$prompt"
  STATUS=$(jget "$OUT" '$.status')
  OUTPUT=$(jget "$OUT" '$.output')
  ERROR=$(jget "$OUT" '$.error')
  REPAIRS=$(jget "$OUT" '$.repairs')
  HTTP=$(jget "$OUT" '$.http_status')
}
# req MODEL EXPR [N]: EXPR (SQLite, over `value`, the log line) for the
# N-th (default 1st) request logged for MODEL.
req() {
  { printf '['; paste -sd, "$LOG"; printf ']'; } >"$LOG.arr"
  sqlite3 :memory: "SELECT $2 FROM json_each(readfile('$LOG.arr'))
    WHERE json_extract(value, '\$.model') = '$1' LIMIT 1 OFFSET $((${3:-1} - 1))"
}
nreq() {
  { printf '['; paste -sd, "$LOG"; printf ']'; } >"$LOG.arr"
  sqlite3 :memory: "SELECT count(*) FROM json_each(readfile('$LOG.arr'))
    WHERE json_extract(value, '\$.model') = '$1'"
}

# ---- OpenAI-compatible: text --------------------------------------------

call --max-tokens 64 --system "Be brief." openai text complete "Say hello"
expect_eq "text: ok" "$STATUS/$HTTP" "ok/200"
expect_eq "text: the answer as a string" "$OUTPUT" "Hello, Zoë."
expect_eq "text: usage as reported" "$(jget "$OUT" '$.tokens_in')/$(jget "$OUT" '$.tokens_out')" "11/7"
expect_eq "text: the model that answered" "$(jget "$OUT" '$.model')" "text"
expect_eq "text: path" "$(req text "json_extract(value, '\$.path')")" "/v1/chat/completions"
expect_eq "text: Bearer key sent" "$(req text "json_extract(value, '\$.authorization')")" "ok"
expect_eq "text: no x-api-key" "$(req text "json_extract(value, '\$.x_api_key')")" "none"
expect_eq "text: messages system + user" \
  "$(req text "json_extract(value, '\$.body.messages[0].role') || ',' || json_extract(value, '\$.body.messages[0].content') || ',' || json_extract(value, '\$.body.messages[1].role') || ',' || json_extract(value, '\$.body.messages[1].content')")" \
  "system,Be brief.,user,Say hello"
expect_eq "text: temperature 0, max_tokens, no response_format" \
  "$(req text "json_extract(value, '\$.body.temperature') || ',' || json_extract(value, '\$.body.max_tokens') || ',' || ifnull(json_extract(value, '\$.body.response_format'), 'none')")" \
  "0,64,none"

call openai nousage complete "0123456789abcdef"
expect_eq "no usage: estimated as bytes / 4" \
  "$STATUS $(jget "$OUT" '$.tokens_in')/$(jget "$OUT" '$.tokens_out')" "ok 4/2"

# ---- structured output ---------------------------------------------------

call --schema "$SCHEMA" --json-schema openai native extract "Zoë is 42"
expect_eq "json_schema: ok, the parsed object" "$STATUS $OUTPUT" 'ok {"age":42,"name":"Zoë"}'
expect_eq "json_schema: response_format" \
  "$(req native "json_extract(value, '\$.body.response_format.type') || ',' || json_extract(value, '\$.body.response_format.json_schema.name') || ',' || json_extract(value, '\$.body.response_format.json_schema.strict')")" \
  "json_schema,output,1"
expect_eq "json_schema: the schema sent as given" \
  "$(req native "json_extract(value, '\$.body.response_format.json_schema.schema')")" \
  "$(sqlite3 :memory: "SELECT json(readfile('$SCHEMA'))")"
expect_eq "json_schema: no system prompt added" \
  "$(req native "json_array_length(value, '\$.body.messages')")" 1

call --schema "$SCHEMA" openai object extract "Ann is 7"
expect_eq "json_object: ok (a fenced answer is read)" "$STATUS $OUTPUT" 'ok {"age":7,"name":"Ann"}'
expect_eq "json_object: response_format" \
  "$(req object "json_extract(value, '\$.body.response_format.type')")" "json_object"
expect_contains "json_object: the schema stated in the system prompt" \
  "$(req object "json_extract(value, '\$.body.messages[0].content')")" \
  'follow this JSON schema:
{"type":"object"'

# ---- the repair round ----------------------------------------------------

call --schema "$SCHEMA" openai repair extract "Bo is 3"
expect_eq "repair: ok after one repair" "$STATUS $REPAIRS $OUTPUT" 'ok 1 {"age":3,"name":"Bo"}'
expect_eq "repair: two requests" "$(nreq repair)" 2
expect_eq "repair: the broken text goes back as the assistant's turn" \
  "$(req repair "json_extract(value, '\$.body.messages[2].role') || ':' || json_extract(value, '\$.body.messages[2].content')" 2)" \
  'assistant:{"label": "spam", "confidence": oops'
expect_contains "repair: the second request carries the instruction" \
  "$(req repair "json_extract(value, '\$.body.messages[3].content')" 2)" \
  "Your previous answer is not valid JSON for the required schema"
expect_eq "repair: usage of both rounds" \
  "$(jget "$OUT" '$.tokens_in')/$(jget "$OUT" '$.tokens_out')" "22/14"

call --schema "$SCHEMA" openai mismatch extract "Cy is 5"
expect_eq "schema mismatch (a required key missing): repaired" "$STATUS $REPAIRS" "ok 1"
expect_contains "schema mismatch: the instruction says what is wrong" \
  "$(req mismatch "json_extract(value, '\$.body.messages[3].content')" 2)" "the key 'age' is missing"

call --schema "$SCHEMA" openai broken2 extract "x"
expect_eq "broken twice: bad_output after one repair" "$STATUS $REPAIRS" "bad_output 1"
expect_eq "broken twice: no output" "$OUTPUT" ""
expect_eq "broken twice: two requests, no third" "$(nreq broken2)" 2

# ---- statuses ------------------------------------------------------------

call openai limited complete "x"
expect_eq "429 Retry-After seconds: rate_limited" \
  "$STATUS $HTTP $(jget "$OUT" '$.retry_after_ms')" "rate_limited 429 7000"

call openai limited-date complete "x"
ra=$(jget "$OUT" '$.retry_after_ms')
if [ "$STATUS" = rate_limited ] && [ "${ra:-0}" -ge 100000 ] && [ "$ra" -le 121000 ]; then
  ok "429 Retry-After HTTP-date: rate_limited in about 120 s"
else not_ok "429 Retry-After HTTP-date: rate_limited in about 120 s" "$OUT"; fi

call openai down complete "x"
expect_eq "500: retry" "$STATUS/$HTTP" "retry/500"
expect_contains "500: the API's message" "$ERROR" "fake_llm answers 500"

start=$(date +%s%N)
call --timeout 700 openai slow complete "x"
took=$((($(date +%s%N) - start) / 1000000))
expect_eq "slow answer: timeout" "$STATUS" "timeout"
if [ "$took" -lt 5000 ]; then ok "slow answer: gave up in time"; else
  not_ok "slow answer: gave up in time" "took $took ms"; fi

call --max-bytes 65536 openai huge complete "x"
expect_eq "oversize answer: too_large" "$STATUS" "too_large"
expect_contains "oversize answer: says the cap" "$ERROR" "larger than 65536 bytes"

call openai denied complete "x"
expect_eq "401: failed" "$STATUS/$HTTP" "failed/401"
expect_contains "401: the API's message" "$ERROR" "Incorrect API key provided"
case "$OUT" in *"$LLM_KEY"*) not_ok "401: the key is not in the answer" "$OUT" ;;
  *) ok "401: the key is not in the answer" ;; esac

call openai bad-request complete "x"
expect_eq "400: failed with the message" "$STATUS/$HTTP $ERROR" \
  "failed/400 HTTP 400 from $BASE: model not found"

# ---- embeddings and classify ---------------------------------------------

call --embed-model embedder openai chat-model embed "some text"
expect_eq "embed: the vector" "$STATUS $OUTPUT" "ok [0.5,-1.0,0.25]"
expect_eq "embed: path and model" \
  "$(req embedder "json_extract(value, '\$.path') || ' ' || json_extract(value, '\$.body.input')")" \
  "/v1/embeddings some text"

call --labels spam,ham openai judge classify "Buy now"
expect_eq "classify: {label, confidence} (an extra key was repaired)" \
  "$STATUS $REPAIRS $OUTPUT" 'ok 1 {"confidence":0.9,"label":"ham"}'
expect_contains "classify: the labels in the schema" \
  "$(req judge "json_extract(value, '\$.body.messages[0].content')")" '"enum":["spam","ham"]'

# ---- Anthropic -----------------------------------------------------------

call anthropic claude complete "Hello"
expect_eq "anthropic: ok" "$STATUS $OUTPUT $(jget "$OUT" '$.tokens_in')/$(jget "$OUT" '$.tokens_out')" \
  "ok Hi from Claude 11/7"
expect_eq "anthropic: path, x-api-key, no Authorization, version" \
  "$(req claude "json_extract(value, '\$.path') || ' ' || json_extract(value, '\$.x_api_key') || ' ' || json_extract(value, '\$.authorization') || ' ' || json_extract(value, '\$.anthropic_version')")" \
  "/v1/messages ok none 2023-06-01"
expect_eq "anthropic: max_tokens defaults to 1024, no system" \
  "$(req claude "json_extract(value, '\$.body.max_tokens') || ' ' || ifnull(json_extract(value, '\$.body.system'), 'none') || ' ' || json_extract(value, '\$.body.messages[0].role')")" \
  "1024 none user"

call --schema "$SCHEMA" anthropic claude-json extract "Di is 30"
expect_eq "anthropic structured: ok" "$STATUS $OUTPUT" 'ok {"age":30,"name":"Di"}'
expect_contains "anthropic structured: the schema in the system prompt" \
  "$(req claude-json "json_extract(value, '\$.body.system')")" 'follow this JSON schema:'

call --schema "$SCHEMA" anthropic claude-repair extract "Ed is 1"
expect_eq "anthropic repair: ok after one" "$STATUS $REPAIRS" "ok 1"
expect_contains "anthropic repair: the instruction in the last turn" \
  "$(req claude-repair "json_extract(value, '\$.body.messages[2].role') || json_extract(value, '\$.body.messages[2].content')" 2)" \
  "userYour previous answer is not valid JSON"

call anthropic claude-busy complete "x"
expect_eq "anthropic 529: retry" "$STATUS/$HTTP" "retry/529"
expect_contains "anthropic 529: the API's message" "$ERROR" "Overloaded"

before=$(wc -l <"$LOG")
call anthropic claude embed "x"
expect_eq "anthropic embed: failed, nothing sent" "$STATUS $ERROR $(($(wc -l <"$LOG") - before))" \
  "failed embeddings are not offered by the anthropic provider 0"

# ---- configuration and transport -----------------------------------------

run "$CALL" --key-env LLM_KEY_UNSET openai "$URL" text complete "x"
expect_eq "missing key variable: refused at creation" \
  "$RC $(jget "$OUT" '$.status') $(jget "$OUT" '$.error')" \
  "1 config provider 'test': the environment variable LLM_KEY_UNSET (api_key_env) is not set"

run "$CALL" openai "$URL" text-nokey complete "x"
expect_eq "no key configured: no Authorization" \
  "$(req text-nokey "json_extract(value, '\$.authorization')")" "none"

kill -TERM "$FAKE_PID"
wait "$FAKE_PID"
expect_eq "fake_llm exits 0 on SIGTERM" "$?" 0
exec {FAKE_FD}<&-

call openai text complete "x"
expect_eq "closed port: retry" "$STATUS/$HTTP" "retry/0"
expect_contains "closed port: says so" "$ERROR" "cannot connect to $BASE"

sanitizer_check "no sanitizer reports"
