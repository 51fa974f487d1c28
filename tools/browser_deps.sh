#!/usr/bin/env bash
# What the opt-in browser check needs besides .venv: Debian's Chromium (no browser download; installed
# with apt-get when missing and we are root) and playwright-python in .venv (it drives /usr/bin/chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MDT_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "browser check: installing Debian's chromium with apt-get"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  else
    echo "browser check: no /usr/bin/chromium; install Debian's chromium package (or set MDT_CHROMIUM)" >&2
    exit 1
  fi
fi
.venv/bin/python -c "import playwright" 2>/dev/null || .venv/bin/python -m pip install -q -e ".[browser]"
