#!/usr/bin/env bash
# Make sure the browser check (make check-html) has a Chromium to drive.
# Uses $CHROMIUM, or chromium / chromium-browser / google-chrome on the PATH, or Playwright's
# own build. When none is there and apt-get is, installs Debian's chromium package: at once
# as root (CI), after asking when a person is at the terminal (sudo), never by a silent sudo.
# Exits 1 with what to do when there is no browser and none was installed.
set -euo pipefail

for browser in "${CHROMIUM:-}" chromium chromium-browser google-chrome; do
  if [ -n "$browser" ] && command -v "$browser" >/dev/null 2>&1; then
    exit 0
  fi
done
if compgen -G "${PLAYWRIGHT_BROWSERS_PATH:-$HOME/.cache/ms-playwright}/chromium*" >/dev/null; then
  exit 0  # Playwright's own build
fi

how_else() {
  cat >&2 <<'MSG'
The browser check needs Chromium or Chrome. Any one of these works:
  - install Chromium or Chrome and put it on the PATH, or set CHROMIUM=/path/to/browser;
  - let Playwright fetch its own build:  .venv/bin/python -m playwright install chromium
  - skip the browser check explicitly:   make test SKIP_BROWSER=1
MSG
}

if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    sudo=""
  elif [ -t 0 ] && command -v sudo >/dev/null 2>&1; then
    read -r -p "install_chromium: no Chromium found. Install Debian's chromium with 'sudo apt-get install chromium'? [y/N] " answer
    case "$answer" in
      [yY]*) sudo="sudo" ;;
      *) echo "install_chromium: not installed." >&2; how_else; exit 1 ;;
    esac
  else
    echo "install_chromium: no Chromium found, and installing one needs sudo, which this script does not run unasked." >&2
    how_else
    exit 1
  fi
  echo "install_chromium: installing Debian's chromium with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
  exit 0
fi

echo "install_chromium: no Chromium found and no apt-get to install one." >&2
how_else
exit 1
