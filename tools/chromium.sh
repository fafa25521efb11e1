#!/usr/bin/env bash
# Prints the path of Debian's Chromium, which the browser tests drive through playwright-core,
# installing the `chromium` package first when it is missing. Progress goes to stderr, the path
# alone to stdout. The browser always comes from Debian's packages: never `playwright install`
# or any other download of a browser build (machines here cannot fetch one, and it would not be
# pinned by anything the project controls).
set -euo pipefail
exe=/usr/bin/chromium

if [ ! -x "$exe" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "herald: Chromium is not installed and this user cannot install it (not root, no passwordless sudo)." >&2
    echo "herald: install it once with:  sudo apt-get update && sudo apt-get install -y chromium" >&2
    exit 1
  fi
  echo "herald: installing Debian's chromium package (once; about a minute)" >&2
  # Wait for a dpkg lock held by another install rather than failing at once.
  apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
  if ! "${apt[@]}" update >&2 ||
    ! "${apt[@]}" install -y --no-install-recommends -o Dpkg::Use-Pty=0 chromium >&2; then
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
