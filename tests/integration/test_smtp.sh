#!/usr/bin/env bash
# email.send delivery against a real SMTP server on loopback (lib_smtp.sh:
# python3-aiosmtpd): plain, STARTTLS, smtps, refusals and a closed port,
# through tests/tools/smtp_send (mail_build + mail_send). Received messages
# are decoded with Python's email package, a parser independent of ours.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_smtp.sh"

BUILD=${BUILD:-$(dirname "$BUREAU")}
SEND=$BUILD/smtp_send
if [ ! -x "$SEND" ]; then
  not_ok "smtp_send is built" "$SEND missing (configure with -Dtests=enabled)"
  exit 1
fi
FROM='Bureau Bot <bot@example.com>'

# send [ARGS...] PAYLOAD: one delivery; sets RES (result), CODE, DETAIL, MID.
send() {
  run "$SEND" --from "$FROM" --timeout 20 "$@"
  RES=$(jget "$OUT" '$.result'); CODE=$(jget "$OUT" '$.code')
  DETAIL=$(jget "$OUT" '$.detail'); MID=$(jget "$OUT" '$.message_id')
  [ "$RC" -eq 0 ] || echo "# smtp_send exit $RC: $ERR"
}
# decoded FILE WHAT: what Python's email package reads in a message:
# subject, to, cc, from, message-id, bcc (count), body (text part, repr).
decoded() {
  "$SMTP_PY" - "$1" "$2" <<'PY'
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
w = sys.argv[2]
if w == "body":
    print(repr(m.get_body(("plain",)).get_content()))
elif w == "bcc":
    print(len(m.get_all("bcc", [])))
elif w in ("to", "cc", "from"):
    print(" | ".join("%s/%s" % (a.display_name, a.addr_spec) for a in m[w].addresses))
else:
    print(m[w])
PY
}

P=$TMP/mail.json
cat >"$P" <<'EOF'
{"to": ["Zoë Ångström <zoe@example.com>", "b@example.org"],
 "cc": ["Doe, John <john@example.net>", "ZOE@example.com"],
 "subject": "Réunion: the agenda — and a subject long enough to be folded over two lines",
 "text": "Bonjour,\n.\nFrom the agenda:\n  1. café = 2€   \nend"}
EOF

# ---- plain SMTP ----
smtp_start || { not_ok "smtp sink starts" "see $TMP"; exit 1; }
send --url "$SMTP_URL" --starttls never --key effect-1 "$P"
expect_eq "plain: delivered with 250" "$RES/$CODE" "delivered/250"
expect_contains "plain: detail is the server's reply" "$DETAIL" "250 OK queued as"
expect_eq "plain: one message arrived" "$(smtp_count)" 1
expect_eq "plain: MAIL FROM is the From address" "$(smtp_env 1 '$.mail_from')" "bot@example.com"
expect_eq "plain: RCPT TO each to and cc address once (case-insensitively)" \
  "$(smtp_env 1 '$.rcpt_to')" '["zoe@example.com","b@example.org","john@example.net"]'
M=$(smtp_msg 1)
expect_eq "plain: Subject decodes back" "$(decoded "$M" subject)" \
  "Réunion: the agenda — and a subject long enough to be folded over two lines"
expect_eq "plain: To decodes back" "$(decoded "$M" to)" \
  "Zoë Ångström/zoe@example.com | /b@example.org"
expect_eq "plain: Cc decodes back" "$(decoded "$M" cc)" \
  "Doe, John/john@example.net | /ZOE@example.com"
expect_eq "plain: From" "$(decoded "$M" from)" "Bureau Bot/bot@example.com"
expect_eq "plain: Message-ID is the one for the key" "$(decoded "$M" message-id)" "$MID"
expect_eq "plain: no Bcc header" "$(decoded "$M" bcc)" 0
# (Python's text decoding turns the CRLF line breaks into \n.)
expect_eq "plain: the body decodes back" "$(decoded "$M" body)" \
  "'Bonjour,\\n.\\nFrom the agenda:\\n  1. café = 2€   \\nend'"
expect_eq "plain: the session was not encrypted" "$(smtp_env 1 '$.tls')" 0
check "plain: every line ends in CRLF and is at most 78 columns" \
  awk 'BEGIN { RS = "\n" } !/\r$/ || length($0) > 79 { bad = 1 } END { exit bad }' "$M"

FIRST_MID=$MID
send --url "$SMTP_URL" --starttls never --key effect-1 "$P"
expect_eq "retry of the same effect: same Message-ID" "$(decoded "$(smtp_msg 2)" message-id)" "$FIRST_MID"
send --url "$SMTP_URL" --starttls never --key effect-2 "$P"
check "another effect: another Message-ID" [ "$MID" != "$FIRST_MID" ]

send --url "$SMTP_URL" "$P"
expect_eq "STARTTLS required, server without it: not delivered, RETRY" "$RES" "retry"
expect_contains "  detail says STARTTLS is not supported" "$DETAIL" "STARTTLS"
expect_eq "  nothing more arrived" "$(smtp_count)" 3
send --url "$SMTP_URL" --starttls try "$P"
expect_eq "STARTTLS try, server without it: delivered in plain text" \
  "$RES/$(smtp_env 4 '$.tls')" "delivered/0"
PLAIN_PORT=$SMTP_PORT
smtp_stop

# ---- STARTTLS ----
smtp_start --starttls || { not_ok "starttls sink starts" "see $TMP"; exit 1; }
send --url "$SMTP_URL" --ca-file "$TMP/tls/ca.pem" "$P"
expect_eq "STARTTLS with the CA file: delivered" "$RES/$CODE" "delivered/250"
expect_eq "  the session was encrypted" "$(smtp_env 1 '$.tls')" 1
send --url "$SMTP_URL" "$P"
expect_eq "STARTTLS, certificate from an unknown CA: not delivered, RETRY" \
  "$RES/$(smtp_count)" "retry/1"
expect_contains "  detail names the certificate problem" "$DETAIL" "certificate"
smtp_stop

# ---- AUTH (after STARTTLS), the password from the environment ----
smtp_start --starttls --auth bot 'pa ss:w0rd' || { not_ok "auth sink starts" "see $TMP"; exit 1; }
export SMTP_TEST_PW='pa ss:w0rd'
send --url "$SMTP_URL" --ca-file "$TMP/tls/ca.pem" --user bot --password-env SMTP_TEST_PW "$P"
expect_eq "AUTH with the password from smtp.password_env: delivered" \
  "$RES/$(smtp_count)" "delivered/1"
export SMTP_TEST_PW='wrong-secret-xyz'
send --url "$SMTP_URL" --ca-file "$TMP/tls/ca.pem" --user bot --password-env SMTP_TEST_PW "$P"
expect_eq "AUTH with a wrong password: PERMANENT 535" "$RES/$CODE/$(smtp_count)" "permanent/535/1"
expect_eq "  the password is not in the outcome" "$(printf '%s' "$OUT$ERR" | grep -c wrong-secret)" 0
unset SMTP_TEST_PW
send --url "$SMTP_URL" --ca-file "$TMP/tls/ca.pem" --user bot --password-env SMTP_TEST_PW "$P"
expect_eq "AUTH, the variable unset: PERMANENT before connecting" "$RES/$CODE" "permanent/0"
expect_contains "  detail names the variable" "$DETAIL" "SMTP_TEST_PW"
smtp_stop

# ---- smtps ----
smtp_start --smtps || { not_ok "smtps sink starts" "see $TMP"; exit 1; }
send --url "$SMTP_URL" --ca-file "$TMP/tls/ca.pem" "$P"
expect_eq "smtps:// with the CA file: delivered" "$RES/$CODE/$(smtp_count)" "delivered/250/1"
expect_eq "  the session was encrypted" "$(smtp_env 1 '$.tls')" 1
smtp_stop

# ---- refusals ----
smtp_start --fail-first 1 451 || { not_ok "sink starts" "see $TMP"; exit 1; }
send --url "$SMTP_URL" --starttls never "$P"
expect_eq "451 to RCPT: RETRY with the code" "$RES/$CODE" "retry/451"
expect_contains "  detail has the server's words" "$DETAIL" "451 test sink: temporary failure"
expect_eq "  not delivered" "$(smtp_count)/$(smtp_failed)" "0/1"
send --url "$SMTP_URL" --starttls never "$P"
expect_eq "  the retry is delivered" "$RES/$(smtp_count)" "delivered/1"
smtp_stop

smtp_start --fail-first 1 554 --fail-at data || { not_ok "sink starts" "see $TMP"; exit 1; }
send --url "$SMTP_URL" --starttls never "$P"
expect_eq "554 to DATA: PERMANENT with the code" "$RES/$CODE" "permanent/554"
expect_contains "  detail has the server's words" "$DETAIL" "554 test sink: permanent failure"
expect_eq "  not delivered" "$(smtp_count)/$(smtp_failed)" "0/1"
smtp_stop

smtp_start --fail-first 1 550 || { not_ok "sink starts" "see $TMP"; exit 1; }
send --url "$SMTP_URL" --starttls never "$P"
expect_eq "550 to RCPT: PERMANENT with the code" "$RES/$CODE/$(smtp_count)" "permanent/550/0"
smtp_stop

# ---- no server, bad settings ----
# The plain sink has exited: nothing listens on its port any more.
send --url "smtp://127.0.0.1:$PLAIN_PORT" --starttls never "$P"
expect_eq "closed port: RETRY, no code" "$RES/$CODE" "retry/0"
expect_contains "  detail says it could not connect" "$DETAIL" "connect"
send --url "smtp://127.0.0.1:99999" --starttls never "$P"
expect_eq "invalid URL (port 99999): PERMANENT" "$RES" "permanent"
send --url "" "$P"
expect_eq "no URL: PERMANENT" "$RES/$DETAIL" "permanent/smtp.url is not set"
printf '{"to": "not an address", "subject": "s", "text": "t"}' >"$TMP/bad.json"
send --url "smtp://127.0.0.1:$PLAIN_PORT" "$TMP/bad.json"
expect_eq "invalid payload: PERMANENT, the field named" "$RES/$DETAIL" \
  "permanent/to: 'not an address' is not an email address"

sanitizer_check "no sanitizer reports"
