#!/usr/bin/env bash
# The dashboard, over HTTP and in a real browser: `bureau serve` on loopback
# with a seeded data dir (two drafted mails waiting for approval, a failed
# task in the inbox, a customer with facts, some model spend), then
# - curl: the embedded page with its ETag and CSP, login/logout, the session
#   cookie, CSRF (a cookie-only POST without the token is 403), the stream;
# - tests/browser/dashboard.js in headless Debian chromium (playwright-core
#   from npm, installed by tests/browser/setup.sh): log in, approve an edited
#   draft and see the captured effect, reject one, retry a failure, a
#   customer's facts with sources, spend charts, a CSRF-less POST refused,
#   log out; then, restarted with an undo window for mail, approve one with
#   the `a` key and undo it within the window. Screenshots go to $BUILD/screenshots/.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
bureau --data "$D" init >/dev/null 2>&1
TOKEN=$(bureau --data "$D" token create --name web 2>/dev/null)
q() { sqlite3 "$D/bureau.db" "$1"; }
ingest() { printf '%s' "$1" | bureau --data "$D" ingest >/dev/null 2>&1; }

# ---- the seed ----
cat >>"$D/bureau.yaml" <<YAML
connectors:
  - name: cal
    kind: ics
    path: $ROOT/tests/data/ics/0001-recurring.ics
    interval_s: 3600
models:
  providers:
    - {name: big, kind: openai, base_url: "http://127.0.0.1:9/v1", model: m1}
  routes:
    draft:
      candidates: [local]
      canary: {candidate: big, percent: 10, min_sample: 50}
  budgets:
    daily_usd: 0.05
    per_customer: {daily_usd: 0.03}
YAML
ingest '{"type":"contact.imported","source":"crm","data":{"email":"ann@acme.example","name":"Ann Archer","company":"Acme Ltd","phone":"+15551230000"}}'
CID=$(q "SELECT contact_id FROM identities WHERE value = 'ann@acme.example'" 2>/dev/null)
expect_eq "the seeded customer exists" "${#CID}" 26
IMPORT_SEQ=$(q "SELECT max(seq) FROM events WHERE type = 'contact.imported'")
mkdir -p "$D/workflows" "$D/agents"
cat >"$D/workflows/reply.yaml" <<YAML
name: reply
on: {event: lead.created}
steps:
  - id: send
    do: email.send
    with:
      to: "{{ event.data.email }}"
      subject: "Re: {{ event.data.topic }}"
      text: "Hello {{ event.data.name }},\n\nThanks for asking about {{ event.data.topic }}. Our rate is 900 EUR a day.\n\nBest"
    approval:
      policy: always
      confidence: 0.82
      confidence_source: "local classifier"
      model: "local \"nb\"\tv2"
      cost: 0.0012
      deadline: 1d
      sources: [{seq: $IMPORT_SEQ, snippet: "Ann Archer, Acme Ltd (CRM import)", subject: "contact:$CID"}]
YAML
cat >"$D/agents/broken.lua" <<'LUA'
error("the invoice service is down")
LUA
cat >"$D/workflows/invoice.yaml" <<'YAML'
name: invoice
on: {event: job.invoice}
steps:
  - id: prepare
    do: emit
    with: {type: invoice.prepared}
  - id: create
    do: lua
    with: {script: broken}
    on_error: inbox
  - id: notify
    do: emit
    with: {type: invoice.created}
YAML
ingest '{"type":"lead.created","source":"site","data":{"email":"ann@acme.example","name":"Ann","topic":"a workshop"}}'
ingest '{"type":"lead.created","source":"site","data":{"email":"bob@example.com","name":"Bob","topic":"pricing"}}'
ingest '{"type":"lead.created","source":"site","data":{"email":"cid@example.com","name":"Cid","topic":"a retainer"}}'
ingest '{"type":"job.invoice","source":"t","data":{}}'
# a published piece and the engagement reported for it (the Content page)
ingest '{"type":"content.published","source":"workflow:content-pipeline","data":{"piece":"01JPIECE00000000000000WEB1","title":"Skip the app","idea_seq":1}}'
ingest '{"type":"content.engagement","source":"stats","data":{"piece":"01JPIECE00000000000000WEB1","metric":"views","value":120}}'
ingest '{"type":"content.engagement","source":"stats","data":{"piece":"01JPIECE00000000000000WEB1","metric":"views","value":30}}'
for c in 0.012 0.021 0.004; do
  ingest "{\"type\":\"model.called\",\"source\":\"test\",\"data\":{\"route\":\"draft\",\"provider\":\"big\",\"model\":\"m1\",\"workflow\":\"reply\",\"customer\":\"contact:$CID\",\"tokens_in\":900,\"tokens_out\":200,\"cost_usd\":$c,\"latency_ms\":800,\"outcome\":\"ok\"}}"
done
ingest '{"type":"model.called","source":"test","data":{"route":"classify","provider":"local","model":"nb","workflow":"triage","tokens_in":50,"tokens_out":1,"cost_usd":0,"latency_ms":2,"outcome":"ok"}}'
check "the seed runs to its approvals and failure" bureau --data "$D" run --until-idle --timeout 60
expect_eq "three approvals and a failure wait" \
  "$(q "SELECT count(*) FROM approvals WHERE status = 'pending'") $(q "SELECT count(*) FROM tasks WHERE status = 'inbox'")" "3 1"

serve_start "$D" --listen 127.0.0.1:0 || not_ok "serve starts" "$SRV_LINE"

# ---- serving ----
http GET /
expect_eq "GET /: the page, 200 text/html" "$CODE $CTYPE" "200 text/html; charset=utf-8"
expect_contains "the page loads app.js from the same origin" "$BODY" '<script src="/app.js"'
expect_contains "CSP: default-src 'self'" "$HDRS" "Content-Security-Policy: default-src 'self'"
ETAG=$(printf '%s\n' "$HDRS" | sed -n 's/^ETag: *//p')
expect_contains "an ETag (content hash)" "$ETAG" '"'
http GET / -H "If-None-Match: $ETAG"
expect_eq "the same ETag: 304" "$CODE" 304
total=0
for f in / /app.js /app.css; do
  http GET "$f"
  total=$((total + $(stat -c %s "$TMP/.http.body")))
done
if [ "$total" -lt 153600 ]; then ok "the first load is under 150 KB ($total bytes)"; else not_ok "first load" "$total bytes"; fi
http GET /nosuch.js
expect_eq "an unknown file: 404 problem+json" "$CODE $CTYPE" "404 application/problem+json"
http POST /
expect_eq "POST /: 405" "$CODE" 405

# ---- login, session, CSRF ----
http POST /login -d "token=bur_nope"
expect_eq "login with a bad token: 401 naming the field" \
  "$CODE $(jget "$BODY" '$.detail' | grep -c '^token')" "401 1"
http POST /login -H 'Accept: text/html' -d "token=bur_nope"
expect_eq "a browser's bad login goes back to the form" "$CODE $(printf '%s\n' "$HDRS" | sed -n 's/^Location: *//p')" "303 /?login=failed"
head -c 5000 /dev/zero | tr '\0' a >"$TMP/big.form"
http POST /login --data-binary "@$TMP/big.form"
expect_eq "a login body over 4 KiB: 413 problem+json" "$CODE $CTYPE" "413 application/problem+json"
http GET /login
expect_eq "GET /login: 405 (a link never logs in)" "$CODE" 405
http POST /login --data-urlencode "token=$TOKEN"
COOKIE=$(printf '%s\n' "$HDRS" | sed -n 's/^Set-Cookie: *//p')
expect_eq "login: 303 to /" "$CODE $(printf '%s\n' "$HDRS" | sed -n 's/^Location: *//p')" "303 /"
expect_contains "the cookie is HttpOnly" "$COOKIE" "HttpOnly"
expect_contains "the cookie is SameSite=Strict" "$COOKIE" "SameSite=Strict"
SID=$(printf '%s' "$COOKIE" | sed -n 's/^bureau_session=\([0-9a-f]*\);.*/\1/p')
CK=(-b "bureau_session=$SID")
http GET /v1/session "${CK[@]}"
CSRF=$(jget "$BODY" '$.csrf')
expect_eq "GET /v1/session: the CSRF token" "$CODE ${#CSRF}" "200 64"
http GET /v1/inbox "${CK[@]}"
expect_eq "the cookie reads the API" "$CODE" 200
http POST /v1/mode "${CK[@]}" -H 'Content-Type: application/json' -d '{"mode":"sandbox"}'
expect_eq "a cookie-only POST without the CSRF token: 403 naming the header" \
  "$CODE $CTYPE $(jget "$BODY" '$.detail' | grep -c '^X-CSRF-Token')" "403 application/problem+json 1"
WRONG=${CSRF%?}$([ "${CSRF: -1}" = 0 ] && echo 1 || echo 0) # one digit changed
http POST /v1/mode "${CK[@]}" -H "X-CSRF-Token: $WRONG" -H 'Content-Type: application/json' -d '{"mode":"sandbox"}'
expect_eq "a wrong CSRF token: 403" "$CODE" 403
http POST /v1/mode "${CK[@]}" -H "X-CSRF-Token: $CSRF" -H 'Content-Type: application/json' -d '{"mode":"sandbox"}'
expect_eq "with the CSRF token: 200" "$CODE" 200
http GET /v1/session -b "bureau_session=$(printf '0%.0s' $(seq 64))"
expect_eq "an unknown session: 401" "$CODE" 401
http GET /v1/inbox "${CK[@]}"
printf '%s' "$BODY" >"$TMP/inbox.json"
expect_eq "the inbox is JSON, its text escaped (a quote and a tab in the model)" \
  "$(sqlite3 :memory: "SELECT count(*), min(value ->> '\$.model') = 'local \"nb\"' || char(9) || 'v2' FROM json_each(readfile('$TMP/inbox.json'), '\$.items') WHERE value ->> '\$.kind' = 'approval'")" "3|1"
http GET "/v1/events?order=desc&limit=2&type=lead.created" "${CK[@]}"
d1=$(jget "$BODY" '$.events[0].seq') d2=$(jget "$BODY" '$.events[1].seq') cur=$(jget "$BODY" '$.next_cursor')
http GET "/v1/events?order=desc&limit=2&type=lead.created&before=$cur" "${CK[@]}"
expect_eq "GET /v1/events?order=desc: newest first, paged by before" \
  "$([ "$d1" -gt "$d2" ] && echo desc) $cur $(jget "$BODY" '$.events[0].seq' | grep -c .) $(jget "$BODY" '$.next_cursor')" "desc $d2 1 "
http GET "/v1/events?order=sideways" "${CK[@]}"
expect_eq "an unknown order: 400 naming it" "$CODE $(jget "$BODY" '$.detail' | grep -c "'order'")" "400 1"
http GET /v1/status "${CK[@]}"
expect_eq "GET /v1/status: tasks by state, approvals, the mode" \
  "$CODE $(jget "$BODY" '$.tasks.inbox') $(jget "$BODY" '$.approvals_pending') $(jget "$BODY" '$.mode') $(jget "$BODY" '$.models[0].breaker')" \
  "200 1 3 sandbox closed"
http GET /v1/audit "${CK[@]}"
expect_eq "GET /v1/audit: the chain verifies" "$CODE $(jget "$BODY" '$.ok')" "200 1"

# ---- the stream ----
http GET /healthz
HEAD=$(jget "$BODY" '$.head')
# grep ends at the first match; curl (bounded) is left to its --max-time
line=$(timeout 20 grep -m1 "^id: $HEAD\$" < <(curl -s -N --noproxy '*' --max-time 20 "${CK[@]}" \
  "$SRV_URL/v1/stream?since=$((HEAD - 1))" 2>/dev/null))
expect_eq "GET /v1/stream: the events after since, as SSE" "$line" "id: $HEAD"

# ---- logout ----
http POST /logout -b "bureau_session=$SID"
expect_eq "logout without the CSRF token: 403" "$CODE" 403
http POST /logout -b "bureau_session=$SID" -H "X-CSRF-Token: $CSRF"
expect_eq "logout: 303 to /, the cookie cleared" \
  "$CODE $(printf '%s\n' "$HDRS" | grep -c '^Set-Cookie: bureau_session=;.*Max-Age=0')" "303 1"
http GET /v1/inbox -b "bureau_session=$SID"
expect_eq "the ended session no longer reads: 401" "$CODE" 401

# outcomes of drafts for the model quality page (approvals decided at
# once, so the inbox is as above): local (incumbent) has 2 of 3 approved as
# drafted, big (the canary) 1 of 3
i=0
for row in local:approve local:approve local:edit big:approve big:edit big:edit; do
  i=$((i + 1)); p=${row%%:*}; dec=${row#*:}
  role=incumbent; [ "$p" = big ] && role=canary
  ingest "$(printf '{"type":"model.called","source":"test","data":{"route":"draft","provider":"%s","model":"m-%s","outcome":"ok","cost_usd":0.002,"latency_ms":%d,"task":"Q%d","step":"draft","template":"reply@1","role":"%s"}}' "$p" "$p" $((i * 100)) "$i" "$role")"
  ingest "$(printf '{"type":"approval.requested","source":"test","data":{"approval":"QA%d","task":"Q%d","step":"send","attempt":1,"kind":"approval","preview":{"text":"Hello there"}}}' "$i" "$i")"
  payload=''; [ "$dec" = edit ] && payload=',"payload":{"text":"Hello there, Ann"}'
  ingest "$(printf '{"type":"approval.decided","source":"test","data":{"approval":"QA%d","task":"Q%d","step":"send","attempt":1,"decision":"%s","by":"cli"%s}}' "$i" "$i" "$dec" "$payload")"
done
expect_eq "the quality seed: six outcomes" "$(q "SELECT count(*) FROM model_outcomes WHERE decision IS NOT NULL")" 6

# ---- the browser ----
if ! setup_err=$("$ROOT/tests/browser/setup.sh" 2>&1); then
  printf '%s\n' "$setup_err" | sed '1s/^/# skip browser tests: /; 2,$s/^/#   /'
else
  browser_ok=1
  mkdir -p "$BUILD/screenshots"
  BUREAU_URL=$SRV_URL BUREAU_TOKEN=$TOKEN BUREAU_CUSTOMER=$CID SHOTS="$BUILD/screenshots" \
    PROFILE="$TMP/chromium" timeout 300 node "$ROOT/tests/browser/dashboard.js" 2>"$TMP/browser.err"
  rc=$?
  [ "$rc" -eq 0 ] || not_ok "the browser script ends cleanly" "exit $rc: $(tail -n 20 "$TMP/browser.err")"
  expect_eq "the edited mail was captured as edited" \
    "$(q "SELECT status || ' ' || json_extract(payload, '$.subject') FROM effects WHERE json_extract(payload, '$.to') LIKE '%ann@acme.example%'")" \
    "captured Re: a workshop (edited)"
  expect_eq "the rejection is recorded with its reason" \
    "$(q "SELECT status || ' ' || reason FROM approvals a WHERE status = 'rejected'" 2>/dev/null || q "SELECT status FROM approvals WHERE status = 'rejected'")" \
    "rejected not a fit"
  expect_eq "the goal approved in the browser ran its workflow" \
    "$(q "SELECT t.workflow || ' ' || t.status FROM goals g JOIN tasks t ON t.id = g.task_id")" \
    "renewal-watch succeeded"
  expect_eq "the cake goal was refused" "$(q "SELECT status FROM goals WHERE text LIKE 'bake%'")" refused
  expect_eq "the retried task tried again" "$(q "SELECT max(attempts) FROM task_steps s JOIN tasks t ON t.id = s.task_id WHERE t.workflow = 'invoice'")" 2
fi

serve_stop
expect_eq "serve exits 0" "$SRV_RC" 0

# ---- undo within a send's window (a second server, mail held for an hour) ----
cat >>"$D/bureau.yaml" <<'YAML'
smtp:
  # never reached: the one mail approved from here on is undone in its window
  url: smtp://127.0.0.1:9
  from: office@example.com
  undo_window_s: 3600
YAML
serve_start "$D" --listen 127.0.0.1:0 || not_ok "serve starts again" "$SRV_LINE"
if [ -n "${browser_ok:-}" ]; then
  BUREAU_URL=$SRV_URL BUREAU_TOKEN=$TOKEN SHOTS="$BUILD/screenshots" PHASE=undo \
    PROFILE="$TMP/chromium-undo" timeout 300 node "$ROOT/tests/browser/dashboard.js" 2>"$TMP/browser-undo.err"
  rc=$?
  [ "$rc" -eq 0 ] || not_ok "the browser's undo run ends cleanly" "exit $rc: $(tail -n 20 "$TMP/browser-undo.err")"
  expect_eq "the mail approved with 'a' was undone in its window" \
    "$(q "SELECT status FROM effects WHERE json_extract(payload, '$.to') LIKE '%cid@example.com%'")" canceled
fi
# ---- streams are bounded, and end at once on SIGTERM ----
FDS=()
opened=0
for i in $(seq 16); do
  exec {fd}< <(exec curl -s -N --noproxy '*' --max-time 120 -H "Authorization: Bearer $TOKEN" "$SRV_URL/v1/stream" 2>/dev/null)
  FDS+=("$fd")
  IFS= read -r -t 20 first <&"$fd" && [ "$first" = "retry: 3000" ] && opened=$((opened + 1))
done
expect_eq "16 streams open" "$opened" 16
http GET /metrics
expect_contains "/metrics counts the open streams" "$BODY" "bureau_http_streams_open 16"
# the browser's second login is live (none when the browser was skipped)
expect_contains "/metrics counts the live sessions" "$BODY" "bureau_sessions ${browser_ok:-0}"
http GET /v1/stream -H "Authorization: Bearer $TOKEN" --max-time 10
expect_eq "the 17th stream: 503 problem+json" "$CODE $CTYPE" "503 application/problem+json"

# ---- login attempts are rate limited (last: it locks this address out) ----
# 30 a minute per address, counted per calendar minute: 61 attempts in a row
# put at least 31 into one minute
first="" code=""
for i in $(seq 61); do
  http POST /login -d "token=bur_nope$i"
  [ -z "$first" ] && first=$CODE
  code=$CODE
  [ "$CODE" = 429 ] && break
done
expect_eq "login attempts: refused (401), then rate limited (429)" "$first $code" "401 429"

t0=$(date +%s%N)
serve_stop
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
expect_eq "serve exits 0 after the undo" "$SRV_RC" 0
if [ "$ms" -lt 10000 ]; then ok "SIGTERM with 16 open streams: stopped in $ms ms"; else not_ok "SIGTERM with open streams" "$ms ms"; fi
ended=0
for fd in "${FDS[@]}"; do
  # each stream reaches its end (EOF) rather than hanging until --max-time
  while :; do IFS= read -r -t 20 _ <&"$fd"; r=$?; [ "$r" -eq 0 ] || break; done
  [ "$r" -eq 1 ] && ended=$((ended + 1))
  exec {fd}<&-
done
expect_eq "every stream ended with the server" "$ended" 16
expect_eq "the token never reached the server's log" "$(cat "$TMP"/serve.*.log | grep -c -F "$TOKEN")" 0
expect_eq "no session id reached the server's log" "$(cat "$TMP"/serve.*.log | grep -c -F "$SID")" 0
sanitizer_check "no sanitizer report"
