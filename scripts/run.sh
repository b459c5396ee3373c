#!/usr/bin/env bash
# `make run`: the demo company in its own directory (built by `bureau demo`
# the first time; never an operator's data directory), then `bureau serve`
# on it, with the URL and the demo's token printed first.
set -euo pipefail
BIN=$1 DATA=$2 LISTEN=$3
if [ ! -f "$DATA/bureau.db" ]; then
  echo "building the demo company in $DATA (once)..." >&2
  "$BIN" --data "$DATA" demo >/dev/null
elif [ ! -f "$DATA/demo-token" ]; then
  echo "run.sh: $DATA holds a data directory that is not the demo's; use another DEMO=DIR" >&2
  exit 1
fi
echo "Bureau (demo company, sandbox: nothing leaves) on http://$LISTEN/"
echo "log in with the token: $(cat "$DATA/demo-token")"
echo "or from a shell: bureau --data $DATA inbox"
exec "$BIN" --data "$DATA" serve --listen "$LISTEN"
