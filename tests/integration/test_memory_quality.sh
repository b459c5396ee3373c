#!/usr/bin/env bash
# Retrieval quality on the labelled set shipped with the tests
# (tests/data/retrieval: 504 items about 40 customers and the operator's
# own admin, 64 queries with their relevant items marked). Every item goes
# in as a note about its customer, through the real ingest path; each query
# is run by `bureau memory search` three ways (--mode bm25, vector, hybrid)
# and recall@10 and MRR@10 are computed from the hits. Hybrid must beat
# BM25 alone and the vectors alone on both. All items occur at the same
# instant, so the recency half-life ranks nothing (it is the same factor
# for every hit) and the three modes are compared on relevance alone.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
bureau --data "$D" init >/dev/null 2>&1
SET="$(dirname "$0")/../data/retrieval"
AT=$(date -u -d '-1 day' +%Y-%m-%dT%H:%M:%SZ)
# each customer is a contact (imported), then the notes are appended in the
# file's order, so the N-th item by seq is item N of the set
jq -c -s --arg at "$AT" '
  map(select(.customer != "admin") | .customer) | unique[]
  | {type: "contact.imported", source: "import", occurred_at: $at,
     data: {email: (. + "@customers.example"), name: .}}' "$SET/items.jsonl" >"$TMP/events.ndjson"
jq -c --arg at "$AT" '
  {type: "note.added", source: "notes", occurred_at: $at,
   data: ({text: .text} + (if .customer == "admin" then {}
                           else {contact: (.customer + "@customers.example")} end))}' \
  "$SET/items.jsonl" >>"$TMP/events.ndjson"
check "the retrieval set goes in" bureau --data "$D" ingest --bulk --file "$TMP/events.ndjson" >/dev/null
sqlite3 "$D/bureau.db" "SELECT id, row_number() OVER (ORDER BY id) FROM items ORDER BY id" >"$TMP/map"
expect_eq "every item is there" "$(wc -l <"$TMP/map")" "$(wc -l <"$SET/items.jsonl")"

n=0
while IFS= read -r line; do
  n=$((n + 1))
  query=$(jq -r .query <<<"$line")
  for mode in bm25 vector hybrid; do
    bureau --data "$D" --json memory search "$query" --k 10 --mode "$mode" \
      >"$TMP/hits.$mode.$n" 2>>"$TMP/search.err"
  done
done <"$SET/queries.jsonl"
expect_eq "every query answered in every mode" \
  "$(ls "$TMP"/hits.hybrid.* | wc -l) $(wc -c <"$TMP/search.err")" "$(wc -l <"$SET/queries.jsonl") 0"

python3 - "$SET/queries.jsonl" "$TMP" >"$TMP/scores" <<'PY'
import json, sys
qfile, tmp = sys.argv[1], sys.argv[2]
seq_to_item = dict(l.strip().split('|') for l in open(tmp + '/map') if l.strip())
queries = [json.loads(l) for l in open(qfile)]
for mode in ('bm25', 'vector', 'hybrid'):
    recall = mrr = 0.0
    for n, q in enumerate(queries, 1):
        rel = set(q['relevant'])
        got = []
        for l in open('%s/hits.%s.%d' % (tmp, mode, n)):
            l = l.strip()
            if l:
                got.append(int(seq_to_item[str(json.loads(l)['seq'])]))
        found = [i for i in got[:10] if i in rel]
        recall += len(found) / len(rel)
        mrr += next((1.0 / (r + 1) for r, i in enumerate(got[:10]) if i in rel), 0.0)
    print(mode, '%.3f' % (recall / len(queries)), '%.3f' % (mrr / len(queries)))
PY
sed 's/^/# recall@10 MRR@10: /' "$TMP/scores"
read -r _ BR BM <<<"$(grep '^bm25' "$TMP/scores")"
read -r _ VR VM <<<"$(grep '^vector' "$TMP/scores")"
read -r _ HR HM <<<"$(grep '^hybrid' "$TMP/scores")"
gt() { python3 -c "import sys; sys.exit(0 if float('$1') > float('$2') else 1)"; }
check "hybrid's recall@10 ($HR) beats BM25's ($BR)" gt "$HR" "$BR"
check "hybrid's recall@10 ($HR) beats the vectors' ($VR)" gt "$HR" "$VR"
check "hybrid's MRR@10 ($HM) beats BM25's ($BM)" gt "$HM" "$BM"
check "hybrid's MRR@10 ($HM) beats the vectors' ($VM)" gt "$HM" "$VM"
sanitizer_check "no sanitizer report"
