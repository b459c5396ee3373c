#!/usr/bin/env bash
# Installs playwright-core (pinned) into tests/browser/node_modules for the
# browser tests, once; later runs reuse it. It drives Debian's chromium
# (scripts/deps.sh installs it) and never downloads a browser of its own.
# Exit 0 when ready; 1 with a reason on stderr when it cannot be (no node,
# npm, chromium, or no registry): the caller then skips its browser tests.
set -u
PW_VERSION=1.65.1
DIR=$(cd "$(dirname "$0")" && pwd)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup.sh: $tool is not installed" >&2; exit 1; }
done
[ -x /usr/bin/chromium ] || { echo "setup.sh: /usr/bin/chromium is not installed (scripts/deps.sh)" >&2; exit 1; }
have=$(node -e "try{console.log(require('$DIR/node_modules/playwright-core/package.json').version)}catch(e){}" 2>/dev/null)
[ "$have" = "$PW_VERSION" ] && exit 0
cd "$DIR" || exit 1
# --no-save: nothing in the repository changes; the lock is npm's cache.
if ! timeout 300 npm install --no-save --no-audit --no-fund --ignore-scripts \
    --loglevel=error "playwright-core@$PW_VERSION" >"$DIR/.npm-install.log" 2>&1; then
  echo "setup.sh: npm install playwright-core@$PW_VERSION failed (registry unreachable?):" >&2
  tail -n 5 "$DIR/.npm-install.log" >&2
  exit 1
fi
exit 0
