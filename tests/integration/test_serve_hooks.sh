#!/usr/bin/env bash
# bureau serve's push connectors, driven with curl on loopback: POST
# /hooks/NAME for kind webhook (HMAC-SHA256 in hex or base64, with or without
# sha256=, timestamp tolerance, type_field, key_header / key_field / body
# hash), kind stripe (Stripe-Signature vectors computed with openssl from
# Stripe's documented scheme: t=TS,v1=HMAC(secret, "TS.BODY"), rotation,
# tolerance edges, mapping, one payment one payment.succeeded) and kind form
# (urlencoded, multipart with a file, honeypot, redirect, rate limit,
# consent). Signed, unsigned, stale, oversized and malformed requests get the
# right status and problem, the rejects are counted in /metrics, and the
# ledger holds exactly the accepted events.
. "$(dirname "$0")/lib.sh"

D=$TMP/data
export BUREAU_IT_HOOK_SECRET="hook-secret-$$-é"
export BUREAU_IT_TS_SECRET="ts-secret-$$"
export BUREAU_IT_STRIPE_SECRET="whsec_it_$$"
GH_SECRET="inline gh secret"
bureau --data "$D" init >/dev/null
cat >"$D/bureau.yaml" <<EOF
server:
  max_body_bytes: 2048
  max_file_bytes: 4096
connectors:
  - name: hook
    kind: webhook
    secret_env: BUREAU_IT_HOOK_SECRET
    type_field: event.kind
    key_header: X-Delivery
    source: site
    consent: transactional
  - name: gh
    kind: webhook
    secret: "$GH_SECRET"
    signature_header: X-Hub-Signature-256
    type: repo.pushed
  - name: ts
    kind: webhook
    secret_env: BUREAU_IT_TS_SECRET
    signature_header: X-Sig
    timestamp_header: X-Timestamp
    tolerance_s: 60
    type: lead.created
    key_field: lead.id
  - name: stripe
    kind: stripe
    secret_env: BUREAU_IT_STRIPE_SECRET
    consent: transactional
  - name: contact
    kind: form
    form: contact-us
    honeypot: website
    consent_field: newsletter
  - name: thanks
    kind: form
    redirect: https://example.com/thanks
  - name: limited
    kind: form
    rate_limit: 3
EOF
serve_start "$D" --listen 127.0.0.1:0
check "serve with connectors: starts" test -n "$SRV_ADDR"

acked=$TMP/acked # "seq id" of every new event acknowledged with a body
: >"$acked"
hmac_hex() { printf '%s' "$2" | openssl dgst -sha256 -hmac "$1" | awk '{print $NF}'; }
hmac_b64() { printf '%s' "$2" | openssl dgst -sha256 -hmac "$1" -binary | base64 -w0; }
hook() { # hook NAME BODY [CURL-ARGS...]: POST the exact BODY to /hooks/NAME
  local name=$1
  printf '%s' "$2" >"$TMP/hook.body"
  shift 2
  http POST "/hooks/$name" -H 'Content-Type: application/json' --data-binary "@$TMP/hook.body" "$@"
  if [ "$CODE" = 201 ] && [ -n "$(jget "$BODY" '$.seq')" ]; then
    echo "$(jget "$BODY" '$.seq') $(jget "$BODY" '$.id')" >>"$acked"
  fi
}
problem() { # problem NAME STATUS DETAIL-NEEDLE
  expect_eq "$1: status $2" "$CODE" "$2"
  expect_eq "$1: application/problem+json" "$CTYPE" application/problem+json
  check "$1: the problem has a title and \"status\":$2" \
    test -n "$(jget "$BODY" '$.title')" -a "$(jget "$BODY" '$.status')" = "$2"
  expect_contains "$1: the detail names the problem" "$(jget "$BODY" '$.detail')" "$3"
}
db() { sqlite3 "$D/bureau.db" "$1"; }
count() { db "SELECT count(*) FROM events WHERE $1"; }

# ---- kind: webhook ----
S=$BUREAU_IT_HOOK_SECRET
b1='{"event":{"kind":"lead.created"},"name":"Ada","n":1}'
hook hook "$b1" -H "X-Signature: $(hmac_hex "$S" "$b1")" -H 'X-Delivery: d-1'
expect_eq "webhook, hex signature: 201" "$CODE" 201
seq1=$(jget "$BODY" '$.seq')
id1=$(jget "$BODY" '$.id')
expect_eq "webhook: type from type_field (a dotted path), source and consent from the connector" \
  "$(db "SELECT type||' '||source||' '||consent||' '||json_extract(data,'\$.name') FROM events WHERE seq = ${seq1:-0}")" \
  "lead.created site transactional Ada"
expect_eq "webhook: the idempotency key is webhook:NAME:KEY (stored hashed)" \
  "$(db "SELECT idempotency_key FROM events WHERE seq = ${seq1:-0}")" \
  "$(printf '%s' 'webhook:hook:d-1' | sha256sum | cut -d' ' -f1)"
b2='{"event":{"kind":"lead.created"},"n":2}'
hook hook "$b2" -H "X-Signature: sha256=$(hmac_hex "$S" "$b2")" -H 'X-Delivery: d-2'
expect_eq "webhook, sha256=HEX: 201" "$CODE" 201
b3='{"event":{"kind":"lead.updated"},"n":3}'
hook hook "$b3" -H "X-Signature: $(hmac_b64 "$S" "$b3")" -H 'X-Delivery: d-3'
expect_eq "webhook, base64 signature: 201" "$CODE" 201
b4='{"event":{"kind":"lead.updated"},"n":4}'
hook hook "$b4" -H "X-Signature: sha256=$(hmac_b64 "$S" "$b4")" -H 'X-Delivery: d-4'
expect_eq "webhook, sha256=BASE64: 201" "$CODE" 201
b5='{"event":{"kind":"lead.updated"},"n":5}'
hook hook "$b5" -H "X-Signature: $(hmac_hex "$S" "$b5" | tr a-f A-F)" -H 'X-Delivery: d-5'
expect_eq "webhook, upper-case hex: 201" "$CODE" 201
hook hook "$b1" -H "X-Signature: $(hmac_hex "$S" "$b1")" -H 'X-Delivery: d-1'
expect_eq "webhook, the same delivery again: 200 duplicate of the first" \
  "$CODE $BODY" "200 {\"seq\":$seq1,\"id\":\"$id1\",\"duplicate\":true}"
b1b='{"event":{"kind":"lead.created"},"name":"Ada","n":1,"retry":true}'
hook hook "$b1b" -H "X-Signature: $(hmac_hex "$S" "$b1b")" -H 'X-Delivery: d-1'
expect_eq "webhook, same key_header value, other body: 200 duplicate" "$CODE/$(jget "$BODY" '$.seq')" "200/$seq1"
expect_eq "webhook: a delivery is stored once" "$(count "json_extract(data,'\$.n') = 1 AND source = 'site'")" 1

n_site=$(count "source = 'site'")
hook hook "$b1" -H 'X-Delivery: u-1'
problem "webhook, unsigned" 401 "X-Signature"
hook hook "$b1" -H "X-Signature: $(hmac_hex wrong-secret "$b1")" -H 'X-Delivery: u-2'
problem "webhook, signed with another secret" 401 "signature"
hook hook "${b1/Ada/Eve}" -H "X-Signature: $(hmac_hex "$S" "$b1")" -H 'X-Delivery: u-3'
problem "webhook, body altered after signing" 401 "signature"
hook hook "$b1" -H "X-Signature: sha256=$(hmac_hex "$S" "$b1" | cut -c1-63)" -H 'X-Delivery: u-4'
problem "webhook, a truncated signature" 401 "signature"
hook hook "$b1" -H "X-Signature: not a signature" -H 'X-Delivery: u-5'
problem "webhook, a garbled signature" 401 "signature"
hook hook "$b1" -H "X-Signature: sha1=$(printf '%s' "$b1" | openssl dgst -sha1 -hmac "$S" | awk '{print $NF}')" -H 'X-Delivery: u-6'
problem "webhook, a sha1= signature" 401 "signature"
expect_eq "webhook: unsigned or badly signed requests stored nothing" "$(count "source = 'site'")" "$n_site"
arr='[{"event":{"kind":"lead.created"}}]'
hook hook "$arr" -H "X-Signature: $(hmac_hex "$S" "$arr")" -H 'X-Delivery: x-1'
problem "webhook, a signed JSON array" 400 "object"
bad='{"event":{"kind":"lead.created"},'
hook hook "$bad" -H "X-Signature: $(hmac_hex "$S" "$bad")" -H 'X-Delivery: x-2'
problem "webhook, signed malformed JSON" 400 "line 1, column"
nt='{"event":{},"n":9}'
hook hook "$nt" -H "X-Signature: $(hmac_hex "$S" "$nt")" -H 'X-Delivery: x-3'
problem "webhook, the type_field missing" 400 "event.kind"
bt='{"event":{"kind":"Not A Type"}}'
hook hook "$bt" -H "X-Signature: $(hmac_hex "$S" "$bt")" -H 'X-Delivery: x-4'
problem "webhook, the type_field not an event type" 400 "event.kind"
hook hook "$b2" -H "X-Signature: $(hmac_hex "$S" "$b2")"
problem "webhook, the key_header missing" 400 "X-Delivery"
big="{\"event\":{\"kind\":\"lead.created\"},\"x\":\"$(head -c 4096 /dev/zero | tr '\0' x)\"}"
hook hook "$big" -H "X-Signature: $(hmac_hex "$S" "$big")" -H 'X-Delivery: x-5'
problem "webhook, a 4 KB body over max_body_bytes 2048" 413 "2048"
expect_eq "webhook: refused bodies stored nothing" "$(count "source = 'site'")" "$n_site"
hook nope "$b1" -H "X-Signature: $(hmac_hex "$S" "$b1")" -H 'X-Delivery: n-1'
problem "POST /hooks/nope (an unknown connector)" 404 "nope"
http GET /hooks/hook
problem "GET /hooks/hook" 405 "POST"
hook 'hook/../hook' "$b2" -H "X-Signature: $(hmac_hex "$S" "$b2")" -H 'X-Delivery: n-2' --path-as-is
expect_eq "POST /hooks/hook/../hook is not the connector (404)" "$CODE" 404

# GitHub style: X-Hub-Signature-256: sha256=HEX, a fixed type, the key from the body's hash
g1='{"ref":"refs/heads/main","after":"abc"}'
hook gh "$g1" -H "X-Hub-Signature-256: sha256=$(hmac_hex "$GH_SECRET" "$g1")"
expect_eq "webhook (GitHub style, inline secret): 201" "$CODE" 201
gseq=$(jget "$BODY" '$.seq')
expect_eq "webhook: the fixed type; source defaults to the name; consent to none" \
  "$(db "SELECT type||' '||source||' '||consent FROM events WHERE seq = ${gseq:-0}")" "repo.pushed gh none"
hook gh "$g1" -H "X-Hub-Signature-256: sha256=$(hmac_hex "$GH_SECRET" "$g1")"
expect_eq "webhook without key settings: the same body again is a duplicate (body hash)" \
  "$CODE/$(jget "$BODY" '$.seq')/$(jget "$BODY" '$.duplicate')" "200/$gseq/1"
expect_eq "webhook: its key is webhook:gh:SHA256(body)" \
  "$(db "SELECT idempotency_key FROM events WHERE seq = ${gseq:-0}")" \
  "$(printf 'webhook:gh:%s' "$(printf '%s' "$g1" | sha256sum | cut -d' ' -f1)" | sha256sum | cut -d' ' -f1)"
hook gh "$g1" -H "X-Signature: sha256=$(hmac_hex "$GH_SECRET" "$g1")"
problem "webhook: the signature in another header than signature_header" 401 "X-Hub-Signature-256"

# timestamp_header: signed text "TS.BODY", tolerance_s 60
T=$BUREAU_IT_TS_SECRET
tsig() { hmac_hex "$T" "$1.$2"; }
l1='{"lead":{"id":41},"email":"a@example.com"}'
now=$(date +%s)
hook ts "$l1" -H "X-Timestamp: $now" -H "X-Sig: $(tsig "$now" "$l1")"
expect_eq "webhook with timestamp: fresh and signed, 201" "$CODE" 201
lseq=$(jget "$BODY" '$.seq')
expect_eq "webhook: key_field (a dotted path to an integer) gives the key webhook:ts:41" \
  "$(db "SELECT idempotency_key FROM events WHERE seq = ${lseq:-0}")" \
  "$(printf '%s' 'webhook:ts:41' | sha256sum | cut -d' ' -f1)"
l2='{"lead":{"id":"42"}}'
t=$(($(date +%s) - 50))
hook ts "$l2" -H "X-Timestamp: $t" -H "X-Sig: $(tsig "$t" "$l2")"
expect_eq "webhook: a timestamp 50 s old (tolerance 60) is accepted" "$CODE" 201
l3='{"lead":{"id":"43"}}'
t=$(($(date +%s) - 120))
hook ts "$l3" -H "X-Timestamp: $t" -H "X-Sig: $(tsig "$t" "$l3")"
problem "webhook: a correctly signed timestamp 120 s old is stale" 401 "tolerance"
t=$(($(date +%s) + 120))
hook ts "$l3" -H "X-Timestamp: $t" -H "X-Sig: $(tsig "$t" "$l3")"
problem "webhook: a timestamp 120 s in the future is stale" 401 "tolerance"
t=$(date +%s)
hook ts "$l3" -H "X-Timestamp: $t" -H "X-Sig: $(hmac_hex "$T" "$l3")"
problem "webhook: the body signed without the timestamp" 401 "signature"
hook ts "$l3" -H "X-Timestamp: $t" -H "X-Sig: $(tsig $((t - 1)) "$l3")"
problem "webhook: the signature of another timestamp" 401 "signature"
hook ts "$l3" -H "X-Sig: $(tsig "$t" "$l3")"
problem "webhook: the timestamp header missing" 401 "X-Timestamp"
hook ts "$l3" -H "X-Timestamp: yesterday" -H "X-Sig: $(tsig yesterday "$l3")"
problem "webhook: a timestamp that is not Unix seconds" 401 "timestamp"
expect_eq "webhook: stale and unsigned leads stored nothing" "$(count "source = 'ts'")" 2

# ---- kind: stripe ----
SS=$BUREAU_IT_STRIPE_SECRET
ssig() { hmac_hex "$SS" "$1.$2"; }  # ssig TS BODY: Stripe's v1
stripe() { # stripe BODY HEADER: POST to /hooks/stripe with Stripe-Signature: HEADER
  hook stripe "$1" -H "Stripe-Signature: $2"
}
now=$(date +%s)
pi_event() { # pi_event EVT_ID PI_ID AMOUNT: a payment_intent.succeeded event
  printf '{"id":"%s","object":"event","api_version":"2024-06-20","created":%s,"livemode":false,"type":"payment_intent.succeeded","data":{"object":{"id":"%s","object":"payment_intent","amount":%s,"amount_received":%s,"currency":"eur","customer":"cus_jane","receipt_email":"jane@example.com","description":"Order 7","shipping":{"name":"Jane Doe"},"status":"succeeded"}}}' \
    "$1" "$now" "$2" "$3" "$3"
}
e1=$(pi_event evt_1 pi_A 2500)
stripe "$e1" "t=$now,v1=$(ssig "$now" "$e1")"
check "stripe payment_intent.succeeded: 2xx ($CODE)" grep -q '^2' <<<"$CODE"
expect_eq "stripe: one payment.succeeded with amount, currency, customer email and name, provider_id" \
  "$(db "SELECT count(*)||' '||json_extract(data,'\$.amount')||' '||json_extract(data,'\$.currency')||' '||json_extract(data,'\$.customer.email')||' '||json_extract(data,'\$.customer.name')||' '||json_extract(data,'\$.provider_id')||' '||source||' '||consent FROM events WHERE type = 'payment.succeeded'")" \
  "1 2500 eur jane@example.com Jane Doe pi_A stripe transactional"
expect_eq "stripe: keyed by the payment intent (stripe:pi:pi_A)" \
  "$(db "SELECT idempotency_key FROM events WHERE type = 'payment.succeeded'")" \
  "$(printf '%s' 'stripe:pi:pi_A' | sha256sum | cut -d' ' -f1)"
expect_eq "stripe: occurred_at is the Stripe event's created" \
  "$(db "SELECT occurred_at FROM events WHERE type = 'payment.succeeded'")" \
  "$(date -u -d "@$now" +%Y-%m-%dT%H:%M:%S.000Z)"
t=$(date +%s)
stripe "$e1" "t=$t,v1=$(ssig "$t" "$e1")"
expect_eq "stripe: the same event redelivered (new t): 200 duplicate" "$CODE/$(jget "$BODY" '$.duplicate')" "200/1"
e2=$(pi_event evt_2 pi_A 2500)
stripe "$e2" "t=$t,v1=$(ssig "$t" "$e2")"
expect_eq "stripe: another event (evt_2) for the same payment intent: 200 duplicate" "$CODE/$(jget "$BODY" '$.duplicate')" "200/1"
ch='{"id":"evt_3","object":"event","created":'$t',"type":"charge.succeeded","data":{"object":{"id":"ch_1","object":"charge","amount":2500,"currency":"eur","payment_intent":"pi_A"}}}'
stripe "$ch" "t=$t,v1=$(ssig "$t" "$ch")"
check "stripe: charge.succeeded for the same payment: 2xx ($CODE)" grep -q '^2' <<<"$CODE"
expect_eq "stripe: one payment, one payment.succeeded" "$(count "type = 'payment.succeeded'")" 1
expect_eq "stripe: an unmapped charge.succeeded is kept as stripe.charge.succeeded" "$(count "type = 'stripe.charge.succeeded'")" 1

# signatures: rotation, schemes, tolerance edges
e4=$(pi_event evt_4 pi_B 100)
wrong=$(hmac_hex "whsec_old" "$t.$e4")
stripe "$e4" "t=$t,v1=$wrong,v1=$(ssig "$t" "$e4")"
check "stripe rotation: two v1, the first wrong: accepted ($CODE)" grep -q '^2' <<<"$CODE"
e5=$(pi_event evt_5 pi_C 200)
stripe "$e5" "t=$t, v1=$(ssig "$t" "$e5"), v1=$(hmac_hex whsec_old "$t.$e5"), v0=$(hmac_hex whsec_old "$t.$e5")"
check "stripe rotation: two v1, the second wrong, a v0, spaces: accepted ($CODE)" grep -q '^2' <<<"$CODE"
e6=$(pi_event evt_6 pi_D 300)
stripe "$e6" "t=$t,v1=$wrong,v1=$(hmac_hex whsec_older "$t.$e6")"
problem "stripe: no v1 matches" 401 "signature"
stripe "$e6" "t=$t,v0=$(ssig "$t" "$e6")"
problem "stripe: only a v0 (the right HMAC under another scheme)" 401 "v1"
stripe "$e6" "t=$t,v1=$(hmac_hex "$SS" "$e6")"
problem "stripe: v1 over the body without 't.'" 401 "signature"
stripe "${e6/300/3000}" "t=$t,v1=$(ssig "$t" "$e6")"
problem "stripe: body altered after signing" 401 "signature"
stripe "$e6" "v1=$(ssig "$t" "$e6")"
problem "stripe: no t=" 401 "t="
hook stripe "$e6"
problem "stripe: no Stripe-Signature header" 401 "Stripe-Signature"
t=$(($(date +%s) - 310))
stripe "$e6" "t=$t,v1=$(ssig "$t" "$e6")"
problem "stripe: correctly signed, t = now-310 (tolerance 300): stale" 401 "tolerance"
t=$(($(date +%s) + 310))
stripe "$e6" "t=$t,v1=$(ssig "$t" "$e6")"
problem "stripe: correctly signed, t = now+310: stale" 401 "tolerance"
expect_eq "stripe: refused events stored nothing" "$(count "json_extract(data,'\$.provider_id') = 'pi_D'")" 0
t=$(($(date +%s) - 290))
stripe "$e6" "t=$t,v1=$(ssig "$t" "$e6")"
check "stripe: t = now-290 is within the tolerance: accepted ($CODE)" grep -q '^2' <<<"$CODE"
e7=$(pi_event evt_7 pi_E 400)
t=$(($(date +%s) + 290))
stripe "$e7" "t=$t,v1=$(ssig "$t" "$e7")"
check "stripe: t = now+290 is within the tolerance: accepted ($CODE)" grep -q '^2' <<<"$CODE"

# mapping
t=$(date +%s)
sub='{"id":"evt_sub","object":"event","created":'$t',"type":"customer.subscription.deleted","data":{"object":{"id":"sub_1","object":"subscription","customer":"cus_jane","status":"canceled","cancel_at_period_end":false,"current_period_end":1767225600,"items":{"object":"list","data":[{"id":"si_1","quantity":1,"price":{"id":"price_pro","unit_amount":1500,"currency":"usd","recurring":{"interval":"month"}}}]}}}}'
stripe "$sub" "t=$t,v1=$(ssig "$t" "$sub")"
check "stripe customer.subscription.deleted: 2xx ($CODE)" grep -q '^2' <<<"$CODE"
expect_eq "stripe: customer.subscription.deleted → subscription.canceled with plan, amount, interval, status" \
  "$(db "SELECT type||' '||json_extract(data,'\$.plan')||' '||json_extract(data,'\$.amount')||' '||json_extract(data,'\$.currency')||' '||json_extract(data,'\$.interval')||' '||json_extract(data,'\$.status')||' '||json_extract(data,'\$.customer.id') FROM events WHERE json_extract(data,'\$.stripe_event_id') = 'evt_sub'")" \
  "subscription.canceled price_pro 1500 usd month canceled cus_jane"
cc='{"id":"evt_cus","object":"event","created":'$t',"type":"customer.created","data":{"object":{"id":"cus_jane","object":"customer","email":"jane@example.com","name":"Jane Doe"}}}'
stripe "$cc" "t=$t,v1=$(ssig "$t" "$cc")"
check "stripe customer.created: 2xx ($CODE)" grep -q '^2' <<<"$CODE"
expect_eq "stripe: an unmapped customer.created → stripe.customer.created, data = data.object" \
  "$(db "SELECT json_extract(data,'\$.id')||' '||json_extract(data,'\$.email') FROM events WHERE type = 'stripe.customer.created'")" \
  "cus_jane jane@example.com"
stripe "$cc" "t=$t,v1=$(ssig "$t" "$cc")"
expect_eq "stripe: customer.created redelivered: 200 duplicate" "$CODE/$(jget "$BODY" '$.duplicate')" "200/1"
co='{"id":"evt_co","object":"event","created":'$t',"type":"checkout.session.completed","data":{"object":{"id":"cs_1","object":"checkout.session","amount_total":2500,"currency":"eur","customer":"cus_jane","customer_details":{"email":"jane@example.com","name":"Jane Doe"},"mode":"payment","payment_intent":"pi_A","payment_status":"paid"}}}'
stripe "$co" "t=$t,v1=$(ssig "$t" "$co")"
check "stripe checkout.session.completed: 2xx ($CODE)" grep -q '^2' <<<"$CODE"
expect_eq "stripe: checkout.session.completed → checkout.completed, not a second payment" \
  "$(count "type = 'checkout.completed'") $(count "type = 'payment.succeeded' AND json_extract(data,'\$.provider_id') = 'pi_A'")" "1 1"
ns='{"id":"evt_x","object":"event","created":'$t',"type":"payment_intent.succeeded","data":{"object":{"id":"pi_X","currency":"eur"}}}'
stripe "$ns" "t=$t,v1=$(ssig "$t" "$ns")"
problem "stripe: a signed payment_intent.succeeded without an amount" 400 "amount"
na='["evt"]'
stripe "$na" "t=$t,v1=$(ssig "$t" "$na")"
problem "stripe: a signed body that is not an object" 400 "object"

# ---- kind: form ----
IP=10 # each form post below comes from its own 127.0.0.N unless it tests the rate limit
form() { # form NAME [CURL-ARGS...]: a form post from a fresh client address
  local name=$1
  shift
  IP=$((IP + 1))
  http POST "/hooks/$name" --interface "127.0.0.$IP" "$@"
  if [ "$CODE" = 201 ] && [ -n "$(jget "$BODY" '$.seq')" ]; then
    echo "$(jget "$BODY" '$.seq') $(jget "$BODY" '$.id')" >>"$acked"
  fi
}
form contact --data-urlencode 'name=Jane Doe' --data-urlencode 'email=jane@example.com' \
  --data-urlencode 'message=Hello & goodbye, 100% sure' -d 'website=' -d 'tag=a' -d 'tag=b'
expect_eq "form, urlencoded: 201" "$CODE" 201
fseq=$(jget "$BODY" '$.seq')
row=$(db "SELECT type||'|'||source||'|'||consent||'|'||json_extract(data,'\$.form')||'|'||json_extract(data,'\$.fields.name')||'|'||json_extract(data,'\$.fields.message')||'|'||json_extract(data,'\$.fields.tag')||'|'||json_array_length(data,'\$.files')||'|'||coalesce(json_type(data,'\$.fields.website'),'no honeypot') FROM events WHERE seq = ${fseq:-0}")
expect_eq "form, urlencoded: form.submitted with the form name, fields (a repeated one a list), no files" \
  "$row" "form.submitted|contact|none|contact-us|Jane Doe|Hello & goodbye, 100% sure|[\"a\",\"b\"]|0|no honeypot"
form contact --data-urlencode 'name=Jane Doe' --data-urlencode 'email=jane@example.com' \
  --data-urlencode 'message=Hello & goodbye, 100% sure' -d 'website=' -d 'tag=a' -d 'tag=b'
expect_eq "form: a double submission is stored once (200 duplicate)" "$CODE/$(jget "$BODY" '$.seq')/$(jget "$BODY" '$.duplicate')" "200/$fseq/1"

head -c 3000 /dev/urandom >"$TMP/cv.pdf"
printf '%%PDF' | dd of="$TMP/cv.pdf" conv=notrunc 2>/dev/null
want_sha=$(sha256sum <"$TMP/cv.pdf" | cut -d' ' -f1)
form contact -F 'name=Jane' -F 'email=jane@example.com' -F 'newsletter=on' -F 'website=' \
  -F "file=@$TMP/cv.pdf;type=application/pdf" -A 'Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0' \
  -H 'Origin: http://127.0.0.1' -H 'Accept: text/html,application/xhtml+xml'
expect_eq "form, multipart with a file: 201" "$CODE" 201
mseq=$(jget "$BODY" '$.seq')
expect_eq "form, multipart: one form.submitted with the fields" \
  "$(db "SELECT count(*)||' '||json_extract(data,'\$.fields.name') FROM events WHERE seq = ${mseq:-0} AND type = 'form.submitted'")" "1 Jane"
expect_eq "form, multipart: files[0] has the field, name, type, size and sha256 of the upload" \
  "$(db "SELECT json_extract(data,'\$.files[0].field')||' '||json_extract(data,'\$.files[0].name')||' '||json_extract(data,'\$.files[0].type')||' '||json_extract(data,'\$.files[0].size')||' '||json_extract(data,'\$.files[0].sha256')||' '||json_array_length(data,'\$.files') FROM events WHERE seq = ${mseq:-0}")" \
  "file cv.pdf application/pdf 3000 $want_sha 1"
check "form, multipart: DATA/files/SHA256 holds the same bytes" cmp -s "$TMP/cv.pdf" "$D/files/$want_sha"
expect_eq "form, multipart: nothing else left in DATA/files (no temporary upload)" "$(ls -A "$D/files")" "$want_sha"
expect_eq "form: consent_field checked (on) → consent marketing" \
  "$(db "SELECT consent FROM events WHERE seq = ${mseq:-0}")" marketing
for v in yes TRUE 1; do
  form contact -d "name=C-$v" -d "newsletter=$v"
  expect_eq "form: consent_field '$v' → marketing" "$CODE/$(db "SELECT consent FROM events WHERE seq = $(jget "$BODY" '$.seq')")" 201/marketing
done
form contact -d 'name=C-no' -d 'newsletter=no'
expect_eq "form: consent_field 'no' → the connector's consent (none)" "$CODE/$(db "SELECT consent FROM events WHERE seq = $(jget "$BODY" '$.seq')")" 201/none

n_forms=$(count "type = 'form.submitted'")
form contact -d 'name=Bot' -d 'website=http://spam.example'
check "form, honeypot filled: a success-looking answer ($CODE)" grep -q '^2' <<<"$CODE"
check "form, honeypot filled: not a problem ($CTYPE)" test "$CTYPE" != application/problem+json
form contact -F 'name=Bot2' -F 'website=x' -F "file=@$TMP/cv.pdf"
check "form, honeypot filled (multipart): a success-looking answer ($CODE)" grep -q '^2' <<<"$CODE"
expect_eq "form, honeypot filled: nothing stored" "$(count "type = 'form.submitted'")" "$n_forms"

form thanks -d 'name=Redirected' -d 'email=r@example.com'
expect_eq "form with redirect: 303" "$CODE" 303
expect_eq "form with redirect: Location is the configured URL" \
  "$(printf '%s\n' "$HDRS" | sed -n 's/^[Ll]ocation: *//p')" "https://example.com/thanks"
expect_eq "form with redirect: the event is stored" "$(count "source = 'thanks' AND json_extract(data,'\$.fields.name') = 'Redirected'")" 1
form thanks -d 'name=Redirected' -d 'email=r@example.com'
expect_eq "form with redirect: a double submission also 303" "$CODE" 303
expect_eq "form with redirect: a double submission is stored once" "$(count "source = 'thanks'")" 1

http POST /hooks/contact --interface 127.0.0.99 -H 'Content-Type: application/json' --data-binary '{"name":"x"}'
problem "form: a JSON body" 415 "multipart/form-data"
head -c 8192 /dev/urandom >"$TMP/big.bin"
form contact -F 'name=Big' -F "file=@$TMP/big.bin"
problem "form: a file over max_file_bytes (4096)" 413 "file"
expect_eq "form: a refused upload stores no event" "$(count "json_extract(data,'\$.fields.name') = 'Big'")" 0
expect_eq "form: a refused upload leaves no file behind" "$(ls -A "$D/files")" "$want_sha"

# rate_limit: 3 a minute per client. Keep the posts inside one minute.
[ "$(date +%S | sed 's/^0//')" -ge 56 ] && sleep 5
n_lim_ok=0 n_lim_429=0
limited() { # limited N ADDRESS: one post to the rate-limited form
  http POST /hooks/limited --interface "$2" -d "n=$1"
  case $CODE in
    201) n_lim_ok=$((n_lim_ok + 1)); echo "$(jget "$BODY" '$.seq') $(jget "$BODY" '$.id')" >>"$acked" ;;
    429) n_lim_429=$((n_lim_429 + 1)) ;;
  esac
}
codes=""
for i in 1 2 3 4; do
  limited "$i" 127.0.0.200
  codes="$codes $CODE"
done
expect_eq "form with rate_limit 3: the 4th post in a minute from one client is 429" "$codes" " 201 201 201 429"
problem "form, rate limited" 429 "3"
limited 5 127.0.0.201
expect_eq "form, rate limited: another client address is still served" "$CODE" 201
# a client's posts to one form do not count against another form's limit
for i in 1 2 3; do
  http POST /hooks/contact --interface 127.0.0.202 -d "name=Rate-$i"
  [ "$CODE" = 201 ] && echo "$(jget "$BODY" '$.seq') $(jget "$BODY" '$.id')" >>"$acked"
done
limited 6 127.0.0.202
expect_eq "form rate limit is per form: 3 posts to contact leave the client its 3 on limited" "$CODE" 201

# ---- /metrics ----
http GET /metrics
M=$BODY
metric() { # metric NAME{LABELS}
  local v
  v=$(printf '%s\n' "$M" | grep -F "$1 " | grep -v '^#' | head -n 1 | awk '{print $NF}')
  printf '%s' "${v:-missing}"
}
rej() { metric "bureau_requests_rejected_total{connector=\"$1\",reason=\"$2\"}"; }
expect_eq "metrics: hook accepted / duplicate" \
  "$(metric 'bureau_events_accepted_total{connector="hook"}') $(metric 'bureau_events_duplicate_total{connector="hook"}')" "5 2"
expect_eq "metrics: hook rejected missing_signature / bad_signature / bad_body / too_large" \
  "$(rej hook missing_signature) $(rej hook bad_signature) $(rej hook bad_body) $(rej hook too_large)" "1 5 5 1"
expect_eq "metrics: gh accepted / duplicate / missing_signature" \
  "$(metric 'bureau_events_accepted_total{connector="gh"}') $(metric 'bureau_events_duplicate_total{connector="gh"}') $(rej gh missing_signature)" "1 1 1"
expect_eq "metrics: ts accepted / stale / bad_signature / missing_signature" \
  "$(metric 'bureau_events_accepted_total{connector="ts"}') $(rej ts stale) $(rej ts bad_signature) $(rej ts missing_signature)" "2 2 3 1"
expect_eq "metrics: stripe stale / bad_signature / missing_signature / bad_body" \
  "$(rej stripe stale) $(rej stripe bad_signature) $(rej stripe missing_signature) $(rej stripe bad_body)" "2 4 2 2"
expect_eq "metrics: stripe accepted / duplicate" \
  "$(metric 'bureau_events_accepted_total{connector="stripe"}') $(metric 'bureau_events_duplicate_total{connector="stripe"}')" "9 3"
expect_eq "metrics: form honeypot / too_large / rate_limited (as answered)" \
  "$(rej contact honeypot) $(rej contact too_large) $(rej limited rate_limited)" "2 1 $n_lim_429"
expect_eq "metrics: form accepted (contact, thanks, limited) / duplicate" \
  "$(metric 'bureau_events_accepted_total{connector="contact"}') $(metric 'bureau_events_accepted_total{connector="thanks"}') $(metric 'bureau_events_accepted_total{connector="limited"}') $(metric 'bureau_events_duplicate_total{connector="contact"}')" \
  "9 1 $n_lim_ok 1"

# ---- stop; the ledger holds exactly the accepted events ----
serve_stop
expect_eq "SIGTERM: exit status 0" "$SRV_RC" 0
log=$(cat "$SRV_LOG")
leaked=""
for s in "$BUREAU_IT_HOOK_SECRET" "$BUREAU_IT_TS_SECRET" "$BUREAU_IT_STRIPE_SECRET" "$GH_SECRET" Jane jane@example; do
  case "$log" in *"$s"*) leaked="$leaked '$s'" ;; esac
done
expect_eq "the server's log holds no secret and no body content" "$leaked" ""
bureau --data "$D" events --json >"$TMP/events.json"
jl "$TMP/events.json" "CASE WHEN json_extract(value,'\$.type') <> 'operator.token.created' AND json_extract(value,'\$.source') <> 'thanks' THEN json_extract(value,'\$.seq')||' '||json_extract(value,'\$.id') END" \
  | sed '/^$/d' | sort -n >"$TMP/stored"
expect_eq "the ledger holds exactly the acknowledged events (bureau events --json)" \
  "$(diff <(sort -n "$acked") "$TMP/stored" | head -n 6)" ""
expect_eq "the ledger: $(wc -l <"$acked") acknowledged events + 1 redirected form" \
  "$(jl "$TMP/events.json" "json_extract(value,'\$.type')" | grep -vc '^operator\.token\.created$')" $(($(wc -l <"$acked") + 1))
run bureau --data "$D" audit verify
expect_eq "audit verify: ok" "$RC" 0

sanitizer_check "no sanitizer reports"
