#!/usr/bin/env bash
# The email workflows from a real mailbox: MIME mails in a dovecot-imapd
# Maildir on loopback, polled by `bureau serve`'s IMAP connector and parsed
# by GMime, go through email-triage to lead-intake and support-reply; the
# drafts cite what memory holds on the sender, wait for approval and, once
# approved, are captured (sandbox) threaded to the mail they answer; the
# lead's reply, arriving by IMAP too, ends the lead's task.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_imap.sh"

D=$TMP/data
check "dovecot starts" imap_start
export TEST_IMAP_PASSWORD=secret
bureau --data "$D" init >/dev/null 2>&1
cat >>"$D/bureau.yaml" <<YAML
flow:
  lease_ms: 1000
models:
  local:
    rules:
      lead: [quote, proposal, pricing, estimate, budget]
      support: [broken, error, bug, "not working", fix]
      other: [newsletter, unsubscribe, receipt, webinar, promotion]
connectors:
  - name: mail
    kind: imap
    url: $IMAP_URL
    user: test
    password_env: TEST_IMAP_PASSWORD
    starttls: off
    interval_s: 1
YAML
b() { bureau --data "$D" "$@"; }
q() { sqlite3 "$D/bureau.db" "$1"; }
until_true() { local deadline=$((SECONDS + 90)); until "$@"; do [ $SECONDS -ge $deadline ] && return 1; q "SELECT 1" >/dev/null; done; }
pending() { q "SELECT a.id FROM approvals a JOIN tasks t ON t.id = a.task_id WHERE t.workflow = '$1' AND a.status = 'pending' LIMIT 1"; }
has_pending() { [ -n "$(pending "$1")" ]; }
task_done() { [ "$(q "SELECT status FROM tasks WHERE id = '$1'")" = succeeded ]; }
for w in email-triage lead-intake support-reply; do b workflows enable "$w" >/dev/null 2>&1; done
# what memory knows of Dana before she writes
printf '%s\n%s\n' \
  '{"type":"contact.imported","source":"import","data":{"email":"dana@harborfinch.example","name":"Dana Reyes"}}' \
  '{"type":"note.added","source":"cli","data":{"text":"Dana wants a wholesale portal for cafes, budget around 5k.","contact":"dana@harborfinch.example"}}' \
  >"$TMP/memory.ndjson"
b ingest --bulk --file "$TMP/memory.ndjson" >/dev/null 2>&1
mime() { # mime FILE FROM SUBJECT MSGID IN_REPLY_TO BODY (quoted-printable)
  {
    printf 'From: %s\r\nTo: me@studio.example\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s>\r\n' \
      "$2" "$3" "$(date -u -R)" "$4"
    [ -n "$5" ] && printf 'In-Reply-To: <%s>\r\n' "$5"
    printf 'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n%s\r\n' "$6"
  } >"$1"
}
mime "$TMP/lead.eml" "Dana Reyes <dana@harborfinch.example>" "=?ISO-8859-1?Q?Devis_pour_le_portail_caf=E9?=" \
  "lead1@harborfinch.example" "" "Hi! Could you send a quote for the wholesale portal? Budget is flexible.=0D=0A=0D=0ABest,=0D=0ADana Reyes=0D=0AFounder, Harbor Finch Coffee"
mime "$TMP/support.eml" "Priya Raman <priya@lumendental.example>" "Booking page broken" \
  "s1@lumendental.example" "" "The booking page shows an error and patients cannot book. Can you fix it?"
imap_drop "$TMP/lead.eml"
imap_drop "$TMP/support.eml"
serve_start "$D" --listen 127.0.0.1:0 || not_ok "serve starts" "$SRV_LINE"
check "the lead's draft waits for approval" until_true has_pending lead-intake
check "the support draft waits for approval" until_true has_pending support-reply
expect_eq "both mails came by IMAP, the subject decoded from RFC 2047" \
  "$(q "SELECT count(*) FROM events WHERE type = 'email.received' AND source = 'mail'") $(q "SELECT json_extract(data, '\$.subject') FROM events WHERE type = 'lead.captured'")" \
  "2 Devis pour le portail café"
A=$(pending lead-intake)
expect_contains "the lead's draft cites the note about her budget" \
  "$(q "SELECT sources FROM approvals WHERE id = '$A'")" "budget around 5k"
check "approve the lead's draft" b approve "$A"
T=$(q "SELECT task_id FROM approvals WHERE id = '$A'")
cap() { [ "$(q "SELECT status FROM effects WHERE task_id = '$T'")" = captured ]; }
check "captured (sandbox)" until_true cap
expect_eq "threaded to her mail" "$(q "SELECT json_extract(payload, '\$.in_reply_to') FROM effects WHERE task_id = '$T'")" "<lead1@harborfinch.example>"
mime "$TMP/reply.eml" "Dana Reyes <dana@harborfinch.example>" "Re: Devis" "lead2@harborfinch.example" \
  "lead1@harborfinch.example" "Thursday works."
imap_drop "$TMP/reply.eml"
check "her reply, polled by IMAP, ends the lead's task" until_true task_done "$T"
expect_eq "a reply is not a new lead" "$(q "SELECT count(*) FROM events WHERE type = 'lead.captured'")" 1
serve_stop
expect_eq "serve stops cleanly" "$SRV_RC" 0
imap_stop
sanitizer_check "no sanitizer report"
