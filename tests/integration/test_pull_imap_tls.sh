#!/usr/bin/env bash
# The IMAP connector over TLS against a real server (dovecot-imapd on
# loopback with a self-signed certificate for 127.0.0.1, lib_imap.sh):
#  1 imaps:// trusting that certificate through ca_file: the mail lands
#  2 imap:// with STARTTLS (the default, required): the same
#  3 imaps:// against the system store: the certificate is refused, the
#    error says so, nothing lands and the password never leaves
#  4 tls_verify: false connects without checking
# Waits read the server's log lines as they come (log_wait): no sleeps.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_imap.sh"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
export NO_PROXY='*' no_proxy='*'
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
FIX=$ROOT/tests/data/pull
export TEST_IMAP_PASSWORD=secret

IMAP_TLS=1
check "dovecot starts with TLS" imap_start
n=0
for f in "$FIX"/*.eml; do
  imap_drop "$f"
  n=$((n + 1))
  [ "$n" -ge 3 ] && break
done

# poll_once NAME URL [KEY: VALUE LINES]: a new data dir with one imap
# connector, served until its first poll ends (polled or failing); sets D,
# POLL (the log line) and MAIL (email.received in the ledger)
poll_once() {
  local name=$1 url=$2
  shift 2
  D=$TMP/$name
  bureau --data "$D" init >/dev/null 2>&1
  {
    printf 'connectors:\n  - name: %s\n    kind: imap\n    url: %s\n    user: test\n' "$name" "$url"
    printf '    password_env: TEST_IMAP_PASSWORD\n    interval_s: 60\n'
    for kv in "$@"; do printf '    %s\n' "$kv"; done
  } >>"$D/bureau.yaml"
  serve_start "$D" --listen 127.0.0.1:0 --log-level debug
  log_open
  POLL=""
  if log_wait "\"msg\":\"connector (polled|failing)\".*\"connector\":\"$name\"" 60; then
    POLL=$LOG_LINE
  fi
  serve_stop
  exec {LOGFD}<&-
  MAIL=$(sqlite3 "$D/bureau.db" "SELECT count(*) FROM events WHERE type = 'email.received'")
}

poll_once tls "$IMAPS_URL" "ca_file: $IMAP_CA"
expect_eq "imaps:// with ca_file: the poll succeeds and the mail lands" \
  "$(jget "$POLL" '$.msg') $MAIL" "connector polled $n"

poll_once starttls "$IMAP_URL" "ca_file: $IMAP_CA"
expect_eq "imap:// upgraded with STARTTLS (required by default): the mail lands" \
  "$(jget "$POLL" '$.msg') $MAIL" "connector polled $n"

poll_once untrusted "$IMAPS_URL"
expect_eq "a self-signed certificate against the system store: the poll fails, nothing lands" \
  "$(jget "$POLL" '$.msg') $MAIL" "connector failing 0"
expect_contains "... and the error names the certificate problem" "$(jget "$POLL" '$.error')" "certificate"
if grep -q secret "$SRV_LOG"; then not_ok "the password is in no log line" "found"; else ok "the password is in no log line"; fi

poll_once noverify "$IMAPS_URL" "tls_verify: false"
expect_eq "tls_verify: false takes the self-signed certificate unchecked" \
  "$(jget "$POLL" '$.msg') $MAIL" "connector polled $n"

imap_stop
sanitizer_check "no sanitizer report"
