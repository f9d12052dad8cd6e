#!/usr/bin/env bash
# Make sure the browser check (make check-html) has a Chromium to drive.
# Uses $CHROMIUM, or chromium / chromium-browser / google-chrome on the PATH; when none is
# there and apt-get is, installs Debian's chromium package (as root, or with sudo).
set -euo pipefail

for browser in "${CHROMIUM:-}" chromium chromium-browser google-chrome; do
  if [ -n "$browser" ] && command -v "$browser" >/dev/null 2>&1; then
    exit 0
  fi
done

if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "install_chromium: no Chromium found; installing Debian's chromium with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
  exit 0
fi

cat >&2 <<'MSG'
install_chromium: no Chromium found and no apt-get to install one.
Install Chromium or Chrome and put it on the PATH (or set CHROMIUM=/path/to/browser),
or let Playwright fetch its own build:  .venv/bin/python -m playwright install chromium
MSG
# Playwright's own build is used when it is there.
exit 0
