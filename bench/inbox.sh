#!/usr/bin/env bash
# Inbox benchmark: GET /v1/inbox through `bureau serve` with BENCH_INBOX
# (default 1000) pending approvals, each a drafted mail with its sources,
# driven by wrk on loopback (keep-alive, 1 connection, 5 s): the time the
# dashboard's inbox page waits for its data. Prints requests/s, p50, p99 and
# the answer's size. Usage: bench/inbox.sh BUILD
set -euo pipefail
BUILD=${1:?usage: bench/inbox.sh BUILD_DIR}
BIN="$BUILD/bureau"
N=${BENCH_INBOX:-1000}
DUR=${BENCH_INBOX_SECONDS:-5}
command -v wrk >/dev/null || { echo "bench/inbox.sh: wrk is not installed" >&2; exit 1; }

DIR=$(mktemp -d /tmp/bureau-inbox.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT

D=$DIR/data
TOKEN=$("$BIN" --data "$D" init --json | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
[ -n "$TOKEN" ] || { echo "bench/inbox.sh: no token from init" >&2; exit 1; }
mkdir -p "$D/workflows"
cat >"$D/workflows/reply.yaml" <<'YAML'
name: reply
on: {event: lead.created}
steps:
  - id: send
    do: email.send
    with:
      to: "{{ event.data.email }}"
      subject: "Re: {{ event.data.topic }}"
      text: "Hello {{ event.data.name }},\n\nThanks for asking about {{ event.data.topic }}. Here is what we can do, and when, with the price and the next steps.\n\nBest regards"
    approval:
      policy: always
      confidence: 0.8
      confidence_source: "local classifier"
      model: local
      cost: 0.001
      deadline: 3d
      sources: [{seq: 1, snippet: "an earlier mail from the same customer about the same topic"}]
YAML
for i in $(seq "$N"); do
  printf '{"type":"lead.created","source":"bench","data":{"email":"lead%d@example.com","name":"Lead %d","topic":"topic %d"}}\n' "$i" "$i" "$i"
done >"$DIR/leads.ndjson"
"$BIN" --data "$D" --log-level warn ingest --bulk <"$DIR/leads.ndjson" >/dev/null
"$BIN" --data "$D" --log-level warn run --until-idle --timeout 600 >/dev/null 2>&1

mkfifo "$DIR/out"
"$BIN" --data "$D" --log-level warn serve --listen 127.0.0.1:0 >"$DIR/out" 2>"$DIR/err" &
PID=$!
exec 3<"$DIR/out"
read -r line <&3
ADDR=${line#listening on }
items=$(curl -s --noproxy '*' -H "Authorization: Bearer $TOKEN" "http://$ADDR/v1/inbox" \
  | tee "$DIR/inbox.json" | grep -o '"kind":"approval"' | wc -l)
bytes=$(stat -c %s "$DIR/inbox.json")
wrk -t1 -c1 -d"${DUR}s" --latency -H "Authorization: Bearer $TOKEN" "http://$ADDR/v1/inbox" \
  >"$DIR/wrk" 2>&1
kill -TERM "$PID"
wait "$PID" || true
PID=
rps=$(awk '/Requests\/sec/ {print $2}' "$DIR/wrk")
p50=$(awk '$1 == "50%" {print $2}' "$DIR/wrk")
p99=$(awk '$1 == "99%" {print $2}' "$DIR/wrk")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$DIR/wrk")
echo "GET /v1/inbox with $items pending approvals ($bytes bytes), keep-alive, 1 connection, ${DUR} s"
echo "machine : nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
printf '%-22s %s\n' "requests/s" "$rps" "latency p50" "$p50" "latency p99" "$p99" "non-2xx" "${non2xx:-0}"
echo "goal    : p99 < 50 ms with 1,000 pending items"
[ "$items" -eq "$N" ] || { echo "bench/inbox.sh: $items items, want $N" >&2; exit 1; }
