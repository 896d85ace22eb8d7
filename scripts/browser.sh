#!/usr/bin/env bash
# The headless browser the panel's tests drive: Debian's chromium (Playwright's own download cannot
# work on these machines). Installed once when missing; prints its path.
set -euo pipefail

for candidate in "${CARINA_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then
    echo "$candidate"
    exit 0
  fi
done
[ "$(id -u)" = 0 ] || { echo "browser.sh: chromium is missing and installing it needs root" >&2; exit 1; }
echo "browser.sh: installing Debian's chromium" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
command -v chromium
