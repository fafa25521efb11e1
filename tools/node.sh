#!/usr/bin/env bash
# Prints the bin directory of the pinned Node.js that every make target uses, installing it first
# when it is not cached. Node comes from the npm registry's `node` package (a real binary inside a
# registry package), because machines here start with an older Node and cannot download builds.
set -euo pipefail
version=24.21.0
# Not a HERALD_* variable: the gateway refuses those it does not know.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/herald"
dir="$cache/node-$version"
bin="$dir/node_modules/node/bin"
if [ ! -x "$bin/node" ] || [ "$("$bin/node" --version 2>/dev/null)" != "v$version" ]; then
  echo "herald: installing Node $version into $dir (once; about 20 s)" >&2
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/node-install.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo '{"private":true}' >"$tmp/package.json"
  if ! npm install --prefix "$tmp" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
    "node@$version" >&2; then
    echo "herald: could not install node@$version from the npm registry; check that npm can reach it" >&2
    exit 1
  fi
  "$tmp/node_modules/node/bin/node" --version >/dev/null
  rm -rf "$dir"
  mv "$tmp" "$dir"
  trap - EXIT
fi
echo "$bin"
