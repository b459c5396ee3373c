#!/usr/bin/env bash
# Pull connectors end to end: `bureau serve` polls a real IMAP server
# (dovecot-imapd on loopback, lib_imap.sh), then the imports.
#  1 every message lands once (the fixtures of tests/data/pull: quoted-
#    printable, base64, ISO-8859-1 and UTF-8 headers, multipart/alternative,
#    HTML only, attachments, no Message-ID, a malformed part, one over
#    max_message_bytes; and 2,500 more),
#    while the IMAP server is restarted in the middle of the poll
#  2 a second poll adds nothing; new mail is picked up
#  3 a message in the Sent folder settles the uncertain mail it is
#  4 bureau connectors --json, /metrics; replay from 0 re-reads, adds nothing
#  5 the failure of a poll is logged once, and recovery too; a new
#    UIDVALIDITY reads the folder again and adds nothing
#  6 mbox import of 3,000 messages, twice: the count does not change
#  7 contacts CSV import: bad rows named by line, a second run adds nothing
#  8 replay --check and audit verify
# Waits read the server's log lines as they come (tail -F through a FIFO,
# bounded by read -t): no sleeps.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_imap.sh"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
export NO_PROXY='*' no_proxy='*'
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
FIX=$ROOT/tests/data/pull

D=$TMP/d
q() { sqlite3 "$D/bureau.db" "$1"; }
n_mail() { q "SELECT count(*) FROM events WHERE type = 'email.received'"; }
n_ids() { q "SELECT count(DISTINCT json_extract(data, '$.message_id')) FROM events WHERE type = 'email.received'"; }

# wait_count N: until the ledger holds N email.received (checked after
# every poll the server reports)
wait_count() {
  local deadline=$((SECONDS + 120))
  while [ "$(n_mail)" -lt "$1" ]; do
    [ $SECONDS -lt $deadline ] || return 1
    log_wait '"msg":"(connector polled|imap batch)"' $((deadline - SECONDS)) || return 1
  done
}

gen_mail() { # gen_mail N FILE: one plain message with Message-ID <gen-N@example.com>
  printf 'From: Sender %s <sender%s@example.com>\r\nTo: ops@example.com\r\nSubject: message %s\r\nDate: Mon, 20 Nov 2023 10:00:00 +0000\r\nMessage-ID: <gen-%s@example.com>\r\n\r\nBody of message %s.\r\n' \
    "$1" "$(($1 % 50))" "$1" "$1" "$1" >"$2"
}

check "dovecot starts" imap_start
for f in "$FIX"/*.eml; do imap_drop "$f"; done
# enough mail for the poll to last a while (the restart lands in it)
GEN=2500
python3 - "$IMAP_MAIL/new" "$GEN" <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(1, n + 1):
    with open(f"{d}/1700000000.gen{i}.bureau", "w") as f:
        f.write(f"From: Sender {i} <sender{i % 50}@example.com>\r\nTo: ops@example.com\r\n"
                f"Subject: message {i}\r\nDate: Mon, 20 Nov 2023 10:00:00 +0000\r\n"
                f"Message-ID: <gen-{i}@example.com>\r\n\r\nBody of message {i}.\r\n")
PY
# one message over the connector's max_message_bytes: only its header is read
{
  printf 'From: big@example.com\r\nTo: ops@example.com\r\nSubject: A big one\r\nMessage-ID: <big-1@example.com>\r\n\r\n'
  for i in $(seq 1 3000); do printf 'line %05d of a long body that goes on and on and on and on\r\n' "$i"; done
} >"$TMP/big.eml"
BIG_SIZE=$(stat -c %s "$TMP/big.eml")
imap_drop "$TMP/big.eml"
mkdir -p "$IMAP_MAIL/.Sent"/{cur,new,tmp}
chown -R 5000:5000 "$IMAP_MAIL"
TOTAL=$((GEN + 8))

bureau --data "$D" init >/dev/null
cat >>"$D/bureau.yaml" <<EOF
smtp:
  from: Bureau Bot <bot@example.com>
connectors:
  - name: mail
    kind: imap
    url: $IMAP_URL
    user: test
    password_env: TEST_IMAP_PASSWORD
    folders: [INBOX]
    sent_folder: Sent
    starttls: off
    interval_s: 1
    max_message_bytes: 65536
EOF

# an uncertain mail (as a crash mid-delivery leaves it), whose Message-ID is
# mail_message_id("T1:send", the smtp.from)
printf '%s\n' '{"type":"effect.requested","source":"test","data":{"effect":"E1","task":"T1","step":"send","attempt":1,"kind":"email.send","delivery_key":"T1:send","payload":{"to":"ann@example.com","subject":"Quote","text":"Hi"},"mode":"production"}}' \
  '{"type":"effect.uncertain","source":"test","data":{"effect":"E1","task":"T1","step":"send","kind":"email.send"}}' |
  bureau --data "$D" ingest --bulk >/dev/null
expect_eq "the effect is uncertain" "$(q "SELECT status FROM effects WHERE id = 'E1'")" uncertain

# ---- 1: every message once, across a server restart mid-poll ----
run bureau --data "$D" serve --listen 127.0.0.1:0
expect_contains "serve refuses an unset password_env" "$ERR" "TEST_IMAP_PASSWORD is not set"
export TEST_IMAP_PASSWORD=secret
check "serve starts" serve_start "$D" --listen 127.0.0.1:0 --log-level debug
log_open
if log_wait '"msg":"imap batch"' 60; then ok "a first batch is appended"; else not_ok "a first batch is appended" "no batch in the log"; fi
imap_stop
AT_STOP=$(n_mail)
[ "$AT_STOP" -lt "$TOTAL" ] && ok "the server stops in the middle of the poll ($AT_STOP of $TOTAL in)" ||
  not_ok "the server stops in the middle of the poll" "all $AT_STOP were in already"
check "dovecot restarts on the same Maildir" imap_start
check "all $TOTAL messages arrive" wait_count $TOTAL
expect_eq "each message once" "$(n_mail)" $TOTAL
expect_eq "distinct Message-IDs" "$(n_ids)" $TOTAL
expect_eq "no duplicate ledger keys" \
  "$(q "SELECT count(*) - count(DISTINCT idempotency_key) FROM events WHERE type = 'email.received'")" 0

mail_q() { q "SELECT json_extract(data, '$1') FROM events WHERE type = 'email.received' AND json_extract(data, '$.message_id') = '$2'"; }
expect_eq "ISO-8859-1 encoded words decoded" "$(mail_q '$.subject' qp-1@example.fr)" "Café crème"
expect_eq "quoted-printable body in UTF-8" "$(mail_q '$.text' qp-1@example.fr)" \
  "Bonjour, le café est prêt. Suite sur la même ligne."
expect_eq "UTF-8 encoded words and base64" "$(mail_q '$.from.name' b64-2@example.de)" "Jürgen Müller"
expect_eq "alternative: the plain part" "$(mail_q '$.text' alt-3@example.com)" "Plain version: can you quote a new site?"
expect_contains "HTML only: readable text" "$(mail_q '$.text' html-4@example.org)" "First & second"
expect_eq "the folder is recorded" "$(mail_q '$.folder' alt-3@example.com)" INBOX
ATT=$(mail_q '$.attachments[0].sha256' att-5@example.com)
check "the attachment is stored by its hash" test -s "$D/files/$ATT"
RAW=$(mail_q '$.raw_sha256' att-5@example.com)
check "the raw message is kept by its hash" test -s "$D/files/$RAW"
expect_contains "the malformed message is kept, with a warning" \
  "$(mail_q '$.warnings' mal-7@example.com)" "truncated message"
expect_eq "no Message-ID: keyed by the raw hash" \
  "$(q "SELECT count(*) FROM events WHERE type = 'email.received' AND json_extract(data, '$.message_id_missing')")" 1
expect_eq "a message over max_message_bytes: its header" "$(mail_q '$.subject' big-1@example.com)" "A big one"
expect_eq "... and its full size" "$(mail_q '$.raw_size' big-1@example.com)" "$BIG_SIZE"
expect_contains "... with a warning" "$(mail_q '$.warnings' big-1@example.com)" "larger than the limit"
expect_eq "the Date is occurred_at" \
  "$(q "SELECT occurred_at FROM events WHERE json_extract(data, '$.message_id') = 'b64-2@example.de'")" \
  "2023-11-15T08:30:00.000Z"

# ---- 2: a second poll adds nothing; new mail is picked up ----
log_wait '"msg":"connector polled","connector":"mail","events":0' 30 &&
  ok "a later poll finds nothing new" || not_ok "a later poll finds nothing new" "no such poll"
expect_eq "the count is unchanged" "$(n_mail)" $TOTAL
FAILS=$(grep -c '"msg":"connector failing"' "$SRV_LOG")
RECOV=$(grep -c '"msg":"connector recovered"' "$SRV_LOG")
expect_eq "the outage: logged once when it failed, once when it recovered" "$FAILS $RECOV" "1 1"
gen_mail 9001 "$TMP/new.eml"
imap_drop "$TMP/new.eml"
check "new mail is picked up" wait_count $((TOTAL + 1))
expect_eq "exactly once" "$(q "SELECT count(*) FROM events WHERE json_extract(data, '$.message_id') = 'gen-9001@example.com'")" 1

# ---- 3: the Sent folder settles the uncertain mail ----
MID="$(printf 'bureau-mail:T1:send' | sha256sum | cut -c1-32)@example.com"
printf 'From: bot@example.com\r\nTo: ann@example.com\r\nSubject: Quote\r\nMessage-ID: <%s>\r\n\r\nHi\r\n' "$MID" >"$TMP/sent.eml"
imap_drop "$TMP/sent.eml" Sent
if log_wait '"msg":"uncertain mail found in the Sent folder' 60; then ok "the Sent folder is read"; else not_ok "the Sent folder is read" "no log line"; fi
expect_eq "the uncertain effect is delivered" "$(q "SELECT status FROM effects WHERE id = 'E1'")" delivered
expect_eq "resolved by the connector" \
  "$(q "SELECT json_extract(data, '$.by') || ' ' || json_extract(data, '$.as') FROM events WHERE type = 'effect.resolved'")" \
  "connector:sent delivered"

# ---- 4: status, metrics, replay ----
run bureau --data "$D" connectors --json
expect_eq "connectors --json: one line" "$(printf '%s\n' "$OUT" | wc -l)" 1
expect_eq "name and kind" "$(jget "$OUT" '$.name') $(jget "$OUT" '$.kind')" "mail imap"
expect_eq "the cursor: the last INBOX UID" "$(jget "$OUT" '$.cursor.folders.INBOX.uid')" $((TOTAL + 1))
expect_eq "the Sent folder's cursor" "$(jget "$OUT" '$.cursor.folders.Sent.uid')" 1
check "last_success is set" test -n "$(jget "$OUT" '$.last_success')"
expect_eq "no last_error" "$(jget "$OUT" '$.last_error')" ""
expect_eq "events today" "$(jget "$OUT" '$.events_today')" $((TOTAL + 2))
run bureau --data "$D" connectors
expect_contains "connectors: a table" "$OUT" "mail                 imap"
http GET /metrics
expect_contains "metrics: events" "$BODY" "bureau_connector_events_total{connector=\"mail\",kind=\"imap\"} $((TOTAL + 2))"
expect_contains "metrics: not failing" "$BODY" "bureau_connector_failing{connector=\"mail\",kind=\"imap\"} 0"
expect_contains "metrics: last success" "$BODY" "bureau_connector_last_success_timestamp_seconds{connector=\"mail\""
http POST /hooks/mail -d '{}'
expect_eq "a pull connector takes no posts" "$CODE" 404
run bureau --data "$D" connectors replay mail --from 0
expect_eq "replay from 0" "$RC" 0
if log_wait "\"msg\":\"imap batch\",\"connector\":\"mail\",\"folder\":\"INBOX\",\"messages\":[0-9]+,\"uid\":$((TOTAL + 1))" 120; then
  ok "the replay reads the folder again"
else
  not_ok "the replay reads the folder again" "no batch up to the last UID"
fi
expect_eq "the replay adds nothing" "$(n_mail)" $((TOTAL + 2))
run bureau --data "$D" connectors replay mail --from '{"folders":{"INBOX":"x"}}'
expect_eq "a bad cursor is refused" "$RC" 1
run bureau --data "$D" connectors replay nope --from 0
expect_contains "an unknown connector is refused" "$ERR" "no pull connector named 'nope'"

# ---- 5: a failing server, logged once ----
imap_stop
log_wait '"msg":"connector failing"' 60 && ok "the outage is logged" || not_ok "the outage is logged" "no line"
log_wait '"msg":"connector polled"' 5 && not_ok "no poll succeeds while down" "$LOG_LINE" ||
  ok "no poll succeeds while down"
run bureau --data "$D" connectors --json
expect_eq "connectors: failing" "$(jget "$OUT" '$.failing')" 1
expect_contains "connectors: the last error" "$(jget "$OUT" '$.last_error')" "imap:"
N=$(grep -c '"msg":"connector failing"' "$SRV_LOG")
# while it is down, the server forgets its UIDs: INBOX gets a new UIDVALIDITY
OLD_UV=$(jget "$OUT" '$.cursor.folders.INBOX.uidvalidity')
rm -f "$IMAP_MAIL"/dovecot-uidlist "$IMAP_MAIL"/dovecot.index*
check "dovecot starts again" imap_start
log_wait '"msg":"connector recovered"' 60 && ok "recovery is logged" || not_ok "recovery is logged" "no line"
expect_eq "several failed polls, one more failing line" "$(grep -c '"msg":"connector failing"' "$SRV_LOG")" "$N"
check "a new UIDVALIDITY is noticed" grep -q '"msg":"imap uidvalidity changed' "$SRV_LOG"
run bureau --data "$D" connectors --json
[ "$(jget "$OUT" '$.cursor.folders.INBOX.uidvalidity')" != "$OLD_UV" ] &&
  ok "the cursor has the new UIDVALIDITY" || not_ok "the cursor has the new UIDVALIDITY" "$OUT"
expect_eq "the folder read again adds nothing" "$(n_mail)" $((TOTAL + 2))
expect_eq "and counts nothing twice" "$(jget "$OUT" '$.events')" $((TOTAL + 2))
serve_stop
expect_eq "serve stops cleanly" "$SRV_RC" 0
imap_stop

# ---- 6: mbox import, twice ----
python3 - "$TMP/big.mbox" <<'PY'
import sys
with open(sys.argv[1], 'w') as f:
    for i in range(3000):
        f.write(f"From sender{i % 97}@example.com Mon Nov 20 10:00:00 2023\n")
        f.write(f"From: Sender {i} <sender{i % 97}@example.com>\nTo: ops@example.com\n")
        f.write(f"Subject: imported {i}\nMessage-ID: <mbox-{i}@example.com>\n")
        f.write("Date: Mon, 20 Nov 2023 10:00:00 +0000\n\n")
        f.write(f"Body {i}\n>From a quoted line\n\n")
PY
BEFORE=$(n_mail)
run bureau --data "$D" import mbox "$TMP/big.mbox"
expect_eq "import mbox exits 0" "$RC" 0
expect_contains "the summary" "$OUT" "3000 messages: 3000 added, 0 already there"
expect_eq "3,000 more email.received" "$(n_mail)" $((BEFORE + 3000))
run bureau --data "$D" --json import mbox "$TMP/big.mbox"
expect_eq "again: nothing added" "$(jget "$OUT" '$.added') $(jget "$OUT" '$.duplicates')" "0 3000"
expect_eq "the count does not change" "$(n_mail)" $((BEFORE + 3000))
expect_eq "the >From line is unescaped" \
  "$(q "SELECT json_extract(data, '$.text') FROM events WHERE json_extract(data, '$.message_id') = 'mbox-7@example.com'")" \
  "Body 7
From a quoted line"
printf 'not an mbox\n' >"$TMP/bad.mbox"
run bureau --data "$D" import mbox "$TMP/bad.mbox"
expect_contains "a file that is not an mbox" "$ERR" "line 1: not an mbox file"

# ---- 7: contacts ----
printf 'Email,Name,Company,Tags\nann@example.com,Ann Lee,Acme,vip;lead\nbroken,Bob,,\nbob@example.com,Bob Roe,"Roe, Inc.",\n' >"$TMP/c.csv"
run bureau --data "$D" import contacts "$TMP/c.csv"
expect_eq "a bad row: exit 1" "$RC" 1
expect_contains "the bad row is named by its line" "$ERR" "line 3: no valid email address ('broken')"
expect_contains "the summary" "$OUT" "3 rows: 2 added, 0 already there, 1 refused"
expect_eq "contact.imported events" "$(q "SELECT count(*) FROM events WHERE type = 'contact.imported'")" 2
expect_eq "a quoted comma" "$(q "SELECT json_extract(data, '$.company') FROM events WHERE json_extract(data, '$.email') = 'bob@example.com'")" "Roe, Inc."
run bureau --data "$D" import contacts "$TMP/c.csv"
expect_contains "again: nothing added" "$OUT" "3 rows: 0 added, 2 already there, 1 refused"
run bureau --data "$D" memory profile ann@example.com --json
expect_contains "the import feeds the contacts" "$OUT" "Acme"

# ---- 8 ----
check "replay --check" bureau --data "$D" replay --check
check "audit verify" bureau --data "$D" audit verify
sanitizer_check "no sanitizer report"
