#!/usr/bin/env bash
# Stored item vectors from a remote embed route (docs/memory.md, "Vectors"),
# against fake_llm playing two embedding models: `bureau serve` embeds the
# items in the background and keeps each vector keyed by (model, item),
# outside the ledger; search uses them (the query embedded by the route);
# after a model swap `bureau memory reembed` embeds everything with the new
# model and drops the old vectors; replay --check ignores them; forget
# removes a person's vectors.
. "$(dirname "$0")/lib.sh"

BUILD=${BUILD:-$(dirname "$BUREAU")}
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
export NO_PROXY='*' no_proxy='*'
export LLM_KEY="sk-it-$$-vectors"

cat >"$TMP/script.json" <<'EOF2'
[
 {"path": "/embeddings", "model": "emb-a", "embedding": [0.6, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "repeat": 1000},
 {"path": "/embeddings", "model": "emb-b", "embedding": [0.1, 0.2, 0.3, 0.9, 0.0, 0.0, 0.0, 0.0, 0.1, 0.1, 0.1, 0.1], "repeat": 1000},
 {"default": true, "status": 404, "body": {"error": {"message": "no such case"}}}
]
EOF2
fifo=$TMP/fake.out
mkfifo "$fifo"
"$BUILD/fake_llm" --port-file "$TMP/fake.port" --log "$TMP/fake.log" --script "$TMP/script.json" \
  --key "$LLM_KEY" >"$fifo" 2>"$TMP/fake.err" &
bg_track $!
exec {FAKE_FD}<"$fifo"
IFS= read -r -t 30 line <&"$FAKE_FD"
URL=http://127.0.0.1:$(cat "$TMP/fake.port" 2>/dev/null)/v1
[[ $line == listening* ]] || { not_ok "fake_llm starts" "$line"; exit 1; }

D=$TMP/data
bureau --data "$D" init >/dev/null 2>&1
q() { sqlite3 "$D/bureau.db" "$1"; }
config() {
  cat >"$D/bureau.yaml" <<YAML
models:
  providers:
    - name: remote
      kind: openai
      base_url: $URL
      model: chat
      embed_model: $1
      api_key_env: LLM_KEY
  routes:
    embed:
      candidates: [remote]
YAML
}
config emb-a
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for i in 1 2 3 4 5; do
  echo "{\"type\":\"note.added\",\"source\":\"cli\",\"occurred_at\":\"$NOW\",\"data\":{\"text\":\"Note $i about the wholesale portal\",\"contact\":\"dana@harborfinch.example\"}}"
done >"$TMP/notes.ndjson"
echo "{\"type\":\"contact.imported\",\"source\":\"import\",\"data\":{\"email\":\"dana@harborfinch.example\",\"name\":\"Dana\"}}" |
  cat - "$TMP/notes.ndjson" >"$TMP/events.ndjson"
bureau --data "$D" ingest --bulk --file "$TMP/events.ndjson" >/dev/null 2>&1

serve_start "$D" --listen 127.0.0.1:0 || not_ok "serve starts" "$SRV_LINE"
deadline=$((SECONDS + 60))
until [ "$(q "SELECT count(*) FROM item_vectors")" = 5 ] || [ $SECONDS -ge $deadline ]; do
  q "SELECT count(*) FROM events" >/dev/null 2>&1 # a pause that reads
done
expect_eq "serve embeds every item in the background, each vector keyed by its model" \
  "$(q "SELECT group_concat(DISTINCT model) || ' ' || count(*) || ' ' || min(dim) FROM item_vectors")" \
  "remote/emb-a 5 8"
expect_eq "the vectors are outside the ledger: no event holds them, the calls are recorded" \
  "$(q "SELECT count(*) FROM events WHERE type = 'model.called' AND json_extract(data, '\$.workflow') = 'memory-vectors' AND json_extract(data, '\$.outcome') = 'ok'")" 5
serve_stop

run bureau --data "$D" --json memory search "wholesale portal" --mode vector --k 3
expect_eq "a vector search answers from the stored vectors (the query embedded by the route)" \
  "$RC $(printf '%s\n' "$OUT" | grep -c '"seq"')" "0 3"
expect_eq "the query's embedding was a call of the route" \
  "$(grep -c '"path":"/v1/embeddings"' "$TMP/fake.log")" 6

check "replay --check does not see the vectors" bureau --data "$D" replay --check

# a model swap: reembed with emb-b, the emb-a vectors go
config emb-b
run bureau --data "$D" --json memory reembed
expect_eq "reembed: every item with the new model, the old model's vectors dropped" \
  "$RC $(jget "$OUT" '$.model') $(jget "$OUT" '$.embedded') $(jget "$OUT" '$.dropped')" \
  "0 remote/emb-b 5 5"
expect_eq "only the new model's vectors are left, of its dimension" \
  "$(q "SELECT group_concat(DISTINCT model) || ' ' || count(*) || ' ' || min(dim) FROM item_vectors")" \
  "remote/emb-b 5 12"
run bureau --data "$D" --json memory reembed
expect_eq "a second reembed has nothing to do" "$RC $(jget "$OUT" '$.embedded') $(jget "$OUT" '$.dropped')" "0 0 0"

# the route down: reembed stops, keeps what it had, says so
config emb-missing
run bureau --data "$D" --json memory reembed
expect_eq "a failing route: exit 1, nothing dropped" \
  "$RC $(jget "$OUT" '$.failed') $(q "SELECT count(*) FROM item_vectors WHERE model = 'remote/emb-b'")" "1 1 5"

# the local tier stores nothing
rm "$D/bureau.yaml"
run bureau --data "$D" memory reembed
expect_contains "with the local embed route there is nothing to re-embed" "$RC $ERR" "local tier"

config emb-b
check "forget Dana" bureau --data "$D" memory forget dana@harborfinch.example
expect_eq "her items' vectors are gone" "$(q "SELECT count(*) FROM item_vectors")" 0
sanitizer_check "no sanitizer report"
