#!/bin/sh
# Builds train.jsonl and test.jsonl from the hand-written mails in src/*.tsv
# (label TAB text, "\n" for a line break): one JSON object per line.
set -e
cd "$(dirname "$0")/.."
for split in train test; do
  cat src/${split}_*.tsv | jq -R -c 'split("\t") | {label: .[0], text: (.[1] | gsub("\\\\n"; "\n"))}' > $split.jsonl
done
