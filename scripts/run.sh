#!/usr/bin/env bash
# `make run`: initialise the data directory when needed, then serve.
set -euo pipefail
BIN=$1 DATA=$2 LISTEN=$3
if [ ! -f "$DATA/bureau.db" ]; then
  "$BIN" --data "$DATA" init
fi
echo "dashboard: http://$LISTEN/ (log in with an API token: the one init printed, or \`$BIN --data $DATA token create\`)" >&2
exec "$BIN" --data "$DATA" serve --listen "$LISTEN"
