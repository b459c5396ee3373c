#!/usr/bin/env bash
# Installs the Debian 12 packages Bureau builds, tests and benchmarks with.
# Usage: scripts/deps.sh [fuzz]
# Idempotent: quiet when nothing is missing; runs `apt-get update` only when
# something must be installed.
set -euo pipefail

PKGS=(
  build-essential pkg-config meson ninja-build
  libsqlite3-dev sqlite3 libpq-dev
  libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libfyaml-dev
  liblua5.4-dev libgmime-3.0-dev libical-dev libssl-dev tzdata
  libcriterion-dev
  curl wrk openssl sqlite3 coreutils jq
  python3 python3-aiosmtpd dovecot-imapd
  chromium nodejs
)

# The browser tests (tests/browser/) drive Debian's chromium with
# playwright-core from npm. npm is part of some nodejs builds; Debian's
# nodejs needs its npm package as well.
if ! command -v npm >/dev/null 2>&1; then
  PKGS+=(npm)
fi

# `deps.sh fuzz` adds what `make fuzz` needs: clang and its libFuzzer runtime.
if [ "${1:-}" = fuzz ]; then
  PKGS+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
