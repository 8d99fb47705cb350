#!/usr/bin/env bash
# The browser tests drive Debian's headless Chromium (never a browser downloaded by Playwright).
# Installs it when missing; fails loudly when that is impossible, so the browser tests never skip silently.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "Chromium is missing; installing Debian's chromium package"
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "ensure_browser: not root and no sudo: install chromium (apt-get install chromium) by hand" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver fonts-noto-cjk; }; then
  echo "ensure_browser: installing chromium failed; the browser tests cannot run" >&2
  exit 1
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "ensure_browser: chromium installed but /usr/bin/chromium is missing" >&2
  exit 1
fi
/usr/bin/chromium --version
