#!/usr/bin/env bash
# The built-in onboarding workflow, from Stripe-signed webhooks through
# `bureau serve` to the captured mails (sandbox): a first payment starts it;
# the welcome, the tips and the check-in each wait for approval; a second
# payment (a renewal) starts nothing; a full refund before the next mail
# stops it. The shipped file runs as is except its waits (3d and 11d become
# 1s, by a copy in DATA/workflows that replaces the built-in).
. "$(dirname "$0")/lib.sh"

D=$TMP/data
bureau --data "$D" init >/dev/null 2>&1
export BUREAU_IT_STRIPE_SECRET="whsec_it_$$"
cat >>"$D/bureau.yaml" <<'YAML'
flow:
  lease_ms: 1000
connectors:
  - name: stripe
    kind: stripe
    secret_env: BUREAU_IT_STRIPE_SECRET
    consent: transactional
YAML
mkdir -p "$D/workflows"
sed -e 's/duration: 3d/duration: 1s/' -e 's/duration: 11d/duration: 1s/' \
  "$(dirname "$0")/../../workflows/onboarding.yaml" >"$D/workflows/onboarding.yaml"
expect_eq "the copy differs from the built-in only in its two waits" \
  "$(diff "$(dirname "$0")/../../workflows/onboarding.yaml" "$D/workflows/onboarding.yaml" | grep -c '^>')" 2
b() { bureau --data "$D" "$@"; }
q() { sqlite3 "$D/bureau.db" "$1"; }
hmac_hex() { printf '%s' "$2" | openssl dgst -sha256 -hmac "$1" | awk '{print $NF}'; }
stripe() { # stripe BODY: POST it to /hooks/stripe, signed now
  local t
  t=$(date +%s)
  printf '%s' "$1" >"$TMP/hook.body"
  http POST /hooks/stripe -H 'Content-Type: application/json' \
    -H "Stripe-Signature: t=$t,v1=$(hmac_hex "$BUREAU_IT_STRIPE_SECRET" "$t.$1")" \
    --data-binary "@$TMP/hook.body"
}
paid() { # paid EVT PI AMOUNT CUSTOMER EMAIL NAME
  printf '{"id":"%s","object":"event","created":%s,"type":"payment_intent.succeeded","data":{"object":{"id":"%s","object":"payment_intent","amount":%s,"amount_received":%s,"currency":"eur","customer":"%s","receipt_email":"%s","shipping":{"name":"%s"},"status":"succeeded"}}}' \
    "$1" "$(date +%s)" "$2" "$3" "$3" "$4" "$5" "$6"
}
refunded() { # refunded EVT PI AMOUNT CUSTOMER EMAIL
  printf '{"id":"%s","object":"event","created":%s,"type":"charge.refunded","data":{"object":{"id":"ch_%s","object":"charge","amount":%s,"amount_refunded":%s,"currency":"eur","customer":"%s","payment_intent":"%s","billing_details":{"email":"%s"}}}}' \
    "$1" "$(date +%s)" "$2" "$3" "$3" "$4" "$2" "$5"
}
# until CMD...: polls CMD (a cheap query) until it succeeds, at most 60 s
until_true() {
  local deadline=$((SECONDS + 60))
  until "$@"; do [ $SECONDS -ge $deadline ] && return 1; q "SELECT 1" >/dev/null; done
}
pending_of() { q "SELECT a.id FROM approvals a JOIN tasks t ON t.id = a.task_id WHERE t.workflow = 'onboarding' AND a.status = 'pending' AND json_extract(a.preview, '\$.to') = '$1' AND a.step_id = '$2'"; }
has_pending() { [ -n "$(pending_of "$1" "$2")" ]; }
step_is() { [ "$(q "SELECT s.status FROM task_steps s JOIN tasks t ON t.id = s.task_id WHERE t.workflow = 'onboarding' AND t.id = '$1' AND s.step_id = '$2'")" = "$3" ]; }

serve_start "$D" --listen 127.0.0.1:0 || not_ok "serve starts" "$SRV_LINE"

# Jane: the whole sequence
stripe "$(paid evt_1 pi_J1 9900 cus_jane jane@example.com "Jane Doe")"
expect_eq "a signed payment is accepted" "$CODE" 201
check "her welcome waits for approval" until_true has_pending jane@example.com welcome
A=$(pending_of jane@example.com welcome)
expect_contains "addressed to her by name" "$(q "SELECT json_extract(preview, '\$.text') FROM approvals WHERE id = '$A'")" "Hi Jane,"
check "approve the welcome" b approve "$A"
check "day 3: the tips wait for approval" until_true has_pending jane@example.com tips
b approve "$(pending_of jane@example.com tips)" >/dev/null 2>&1
check "day 14: the check-in waits for approval" until_true has_pending jane@example.com checkin
b approve "$(pending_of jane@example.com checkin)" >/dev/null 2>&1
TJ=$(q "SELECT id FROM tasks WHERE workflow = 'onboarding' ORDER BY created_seq LIMIT 1")
check "her task ends" until_true step_is "$TJ" checkin succeeded
expect_eq "three mails captured for her, in order" \
  "$(q "SELECT group_concat(json_extract(payload, '\$.subject'), ' | ') FROM (SELECT payload FROM effects WHERE task_id = '$TJ' ORDER BY rowid)")" \
  "Welcome aboard | Three tips for the first weeks | How is it going?"
expect_eq "the fact onboarding=started is recorded on her" \
  "$(b --json memory facts jane@example.com 2>/dev/null | jq -r 'select(.key == "onboarding") | .value')" started

# a renewal: a second payment starts nothing
stripe "$(paid evt_2 pi_J2 9900 cus_jane jane@example.com "Jane Doe")"
TJ2=$(q "SELECT id FROM tasks WHERE workflow = 'onboarding' ORDER BY created_seq DESC LIMIT 1")
until_true step_is "$(q "SELECT id FROM tasks WHERE workflow = 'onboarding' ORDER BY created_seq DESC LIMIT 1")" checkin skipped
TJ2=$(q "SELECT id FROM tasks WHERE workflow = 'onboarding' ORDER BY created_seq DESC LIMIT 1")
expect_eq "a second payment: a task that skips everything, no new approval" \
  "$([ "$TJ2" != "$TJ" ] && echo new) $(q "SELECT status FROM task_steps WHERE task_id = '$TJ2' AND step_id = 'welcome'") $(q "SELECT count(*) FROM approvals WHERE task_id = '$TJ2'")" \
  "new skipped 0"

# Omar: refunded in full before day 3
stripe "$(paid evt_3 pi_O1 5000 cus_omar omar@example.com "Omar Haddad")"
check "his welcome waits for approval" until_true has_pending omar@example.com welcome
stripe "$(refunded evt_4 pi_O1 5000 cus_omar omar@example.com)"
expect_eq "the refund is accepted" "$CODE" 201
b approve "$(pending_of omar@example.com welcome)" >/dev/null 2>&1
TO=$(q "SELECT id FROM tasks WHERE workflow = 'onboarding' AND json_extract(input, '\$.customer.email') = 'omar@example.com' LIMIT 1" 2>/dev/null)
[ -n "$TO" ] || TO=$(q "SELECT task_id FROM approvals WHERE json_extract(preview, '\$.to') = 'omar@example.com' LIMIT 1")
check "after the refund the tips are skipped" until_true step_is "$TO" tips skipped
expect_eq "and so is the check-in; only the welcome left" \
  "$(q "SELECT status FROM task_steps WHERE task_id = '$TO' AND step_id = 'checkin'") $(q "SELECT count(*) FROM effects WHERE task_id = '$TO'")" \
  "skipped 1"
serve_stop
expect_eq "serve stops cleanly" "$SRV_RC" 0
check "the chain verifies" b audit verify
sanitizer_check "no sanitizer report"
