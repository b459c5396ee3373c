# A real SMTP server for integration tests: tests/tools/smtp_sink.py
# (python3-aiosmtpd) on 127.0.0.1, one free port per start. Source after
# lib.sh (it uses $TMP and bg_track). A message is on disk before the server
# answers 250 to its DATA, so no test ever waits for a delivery.
#   smtp_start [--starttls|--smtps] [--fail-first N CODE] [--fail-at rcpt|data]
#              [--auth USER PASS] [--hang-after-data FIFO]
#                     starts a sink with an empty mail dir; sets SMTP_PID,
#                     SMTP_PORT, SMTP_DIR and SMTP_URL (smtp:// or smtps://
#                     127.0.0.1:PORT). Fails when it did not start.
#   smtp_stop         stops it (TERM, then waits)
#   smtp_count        how many messages it accepted
#   smtp_failed       how many transactions it refused (--fail-first)
#   smtp_msg N        path of the Nth accepted message (1-based)
#   smtp_env N EXPR   json_extract(envelope of message N, EXPR), e.g. '$.rcpt_to'
#   smtp_header N NAME  the (unfolded) value of header NAME of message N
#   smtp_tls_setup    makes a throwaway CA and a server certificate for
#                     127.0.0.1 / localhost in $TMP/tls (ca.pem, cert.pem,
#                     key.pem); smtp_start calls it when it needs TLS
SMTP_PY=/usr/bin/python3 # Debian's, which has aiosmtpd (not a pyenv shim's)
SMTP_SINK=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd)/smtp_sink.py
SMTP_N=0

smtp_tls_setup() {
  local d=$TMP/tls
  [ -f "$d/cert.pem" ] && return 0
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Bureau test CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
    2>"$d/openssl.log" || return 1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$d/key.pem" -out "$d/cert.csr" 2>>"$d/openssl.log" || return 1
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    "basicConstraints=CA:FALSE" "extendedKeyUsage=serverAuth" >"$d/ext.cnf"
  openssl x509 -req -in "$d/cert.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
    -CAcreateserial -days 2 -extfile "$d/ext.cnf" -out "$d/cert.pem" 2>>"$d/openssl.log"
}

smtp_start() {
  local args=() scheme=smtp fifo line
  while [ $# -gt 0 ]; do
    case $1 in
      --starttls) smtp_tls_setup || return 1
                  args+=(--starttls "$TMP/tls/cert.pem" "$TMP/tls/key.pem") ;;
      --smtps)    smtp_tls_setup || return 1
                  args+=(--smtps "$TMP/tls/cert.pem" "$TMP/tls/key.pem"); scheme=smtps ;;
      --fail-first) args+=(--fail-first "$2" "$3"); shift 2 ;;
      --fail-at)  args+=(--fail-at "$2"); shift ;;
      --auth)     args+=(--auth "$2" "$3"); shift 2 ;;
      --hang-after-data) args+=(--hang-after-data "$2"); shift ;;
      *) echo "smtp_start: unknown option $1" >&2; return 1 ;;
    esac
    shift
  done
  SMTP_N=$((SMTP_N + 1))
  SMTP_DIR=$TMP/smtp.$SMTP_N
  mkdir -p "$SMTP_DIR"
  fifo=$SMTP_DIR/stdout
  mkfifo "$fifo"
  "$SMTP_PY" "$SMTP_SINK" --dir "$SMTP_DIR" "${args[@]}" >"$fifo" 2>"$SMTP_DIR/log" &
  SMTP_PID=$!
  bg_track "$SMTP_PID"
  exec {SMTP_FD}<"$fifo"
  line=""
  IFS= read -r -t 30 line <&"$SMTP_FD"
  SMTP_PORT=${line#listening on }
  SMTP_URL=$scheme://127.0.0.1:$SMTP_PORT
  [[ $line =~ ^listening\ on\ [0-9]+$ ]] || { cat "$SMTP_DIR/log" >&2; return 1; }
}

smtp_stop() {
  kill -TERM "$SMTP_PID" 2>/dev/null
  # EOF on its stdout: it has exited (bounded by tests/run.sh's timeout).
  while IFS= read -r -t 30 _ <&"$SMTP_FD"; do :; done
  wait "$SMTP_PID" 2>/dev/null
  exec {SMTP_FD}<&-
}

smtp_count() { find "$SMTP_DIR/new" -name '*.eml' 2>/dev/null | wc -l; }
smtp_failed() { cat "$SMTP_DIR/failed" 2>/dev/null || echo 0; }
smtp_msg() { printf '%s/new/%06d.eml' "$SMTP_DIR" "$1"; }
smtp_env() {
  sqlite3 :memory: "SELECT json_extract(readfile('$(printf '%s/env/%06d.json' "$SMTP_DIR" "$1")'), '$2')"
}
smtp_header() {
  # The header section only; continuation lines joined to their header.
  sed -e 's/\r$//' -e '/^$/q' "$(smtp_msg "$1")" |
    awk -v want="$(printf '%s' "$2" | tr 'A-Z' 'a-z')" '
      /^[ \t]/ { if (cur == want) val = val $0; next }
      { split($0, kv, ":"); cur = tolower(kv[1]);
        if (cur == want) { val = substr($0, length(kv[1]) + 2); sub(/^[ \t]+/, "", val) } }
      END { print val }'
}
