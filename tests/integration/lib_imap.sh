# A real IMAP server for integration tests: Debian's dovecot-imapd on
# 127.0.0.1 with a Maildir in $TMP (its own config, runtime and state dirs;
# no system service is touched). Source after lib.sh.
#   imap_start        starts it on a free port (again on the same port and
#                     Maildir after imap_stop); sets IMAP_PORT, IMAP_URL,
#                     IMAP_MAIL (the user's Maildir). User test, password secret.
#                     With IMAP_TLS=1 it also speaks TLS: a self-signed
#                     certificate for 127.0.0.1 (IMAP_CA, PEM), implicit TLS
#                     on IMAPS_PORT (IMAPS_URL) and STARTTLS on IMAP_PORT,
#                     and no login before TLS.
#   imap_stop         stops it and cuts every connection
#   imap_drop FILE [FOLDER]  delivers FILE into the Maildir (FOLDER: a
#                     subfolder such as Sent; default INBOX)
IMAP_DIR=$TMP/imap
IMAP_PORT=""

imap_start() {
  local d=$IMAP_DIR
  chmod 711 "$TMP" # dovecot's auth and mail processes run as other users
  mkdir -p "$d/run" "$d/state" "$d/mail/test/Maildir"/{cur,new,tmp}
  if [ -z "$IMAP_PORT" ]; then
    IMAP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  fi
  local ssl="ssl = no" imaps="port = 0"
  if [ "${IMAP_TLS:-0}" = 1 ]; then
    if [ -z "${IMAPS_PORT:-}" ]; then
      IMAPS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    fi
    IMAP_CA=$d/cert.pem
    [ -f "$IMAP_CA" ] || openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      -keyout "$d/key.pem" -out "$IMAP_CA" >/dev/null 2>&1 || return 1
    ssl="ssl = required
ssl_cert = <$IMAP_CA
ssl_key = <$d/key.pem"
    imaps="address = 127.0.0.1
    port = $IMAPS_PORT"
    IMAPS_URL=imaps://127.0.0.1:$IMAPS_PORT
  fi
  printf 'test:{PLAIN}secret:5000:5000::%s/mail/test\n' "$d" >"$d/passwd"
  cat >"$d/dovecot.conf" <<CONF
protocols = imap
listen = 127.0.0.1
base_dir = $d/run
state_dir = $d/state
log_path = $d/dovecot.log
$ssl
disable_plaintext_auth = no
first_valid_uid = 5000
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = $d/passwd
}
userdb {
  driver = passwd-file
  args = $d/passwd
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    $imaps
  }
}
CONF
  chown -R 5000:5000 "$d/mail"
  IMAP_MAIL=$d/mail/test/Maildir
  IMAP_URL=imap://127.0.0.1:$IMAP_PORT
  /usr/sbin/dovecot -c "$d/dovecot.conf" || return 1
  # ready once the listener answers (dovecot forks and returns at once)
  local i
  for i in $(seq 1 200); do
    if exec {IMAP_PROBE}<>"/dev/tcp/127.0.0.1/$IMAP_PORT" 2>/dev/null; then
      exec {IMAP_PROBE}<&-
      return 0
    fi
    read -r -t 0.05 <> <(:) 2>/dev/null # a bounded wait for the listener
  done
  return 1
}

imap_stop() {
  # doveadm stop ends the master; a session already logged in would live on,
  # so this server's own processes (the master's children) are killed too
  local master kids
  master=$(cat "$IMAP_DIR/run/master.pid" 2>/dev/null)
  kids=$([ -n "$master" ] && ps -o pid= --ppid "$master" 2>/dev/null)
  doveadm -c "$IMAP_DIR/dovecot.conf" stop 2>/dev/null
  # shellcheck disable=SC2086
  [ -n "$kids" ] && kill -KILL $kids 2>/dev/null
  return 0
}

IMAP_SEQ=0
imap_drop() {
  local f=$1 folder=${2:-} dir
  dir=$IMAP_MAIL
  [ -n "$folder" ] && dir=$IMAP_MAIL/.$folder
  mkdir -p "$dir"/{cur,new,tmp}
  IMAP_SEQ=$((IMAP_SEQ + 1))
  cp "$f" "$dir/tmp/$IMAP_SEQ.$$.bureau" &&
    mv "$dir/tmp/$IMAP_SEQ.$$.bureau" "$dir/new/$(date +%s).$IMAP_SEQ.$$.bureau"
  chown -R 5000:5000 "$dir"
}
