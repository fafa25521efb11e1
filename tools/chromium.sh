#!/usr/bin/env bash
# Prints the path of Debian's Chromium, which the browser tests drive through playwright-core,
# installing the `chromium` package first when it is missing. Progress goes to stderr, the path
# alone to stdout. The browser always comes from Debian's packages: never `playwright install`
# or any other download of a browser build (machines here cannot fetch one, and it would not be
# pinned by anything the project controls).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exe=/usr/bin/chromium

if [ ! -x "$exe" ]; then
  echo "herald: installing Debian's chromium package (once; about a minute)" >&2
  if ! apt_install chromium; then
    echo "herald: could not install the chromium package with apt-get; check that apt can reach" >&2
    echo "herald: Debian's package mirrors, then run:  apt-get update && apt-get install -y chromium" >&2
    exit 1
  fi
  if [ ! -x "$exe" ]; then
    echo "herald: apt-get installed chromium but $exe is missing; is this a Debian-based machine?" >&2
    exit 1
  fi
fi
echo "$exe"
