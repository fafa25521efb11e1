#!/usr/bin/env bash
# Prints the path of the pinned nats-server, building it first with `go install` from the Go
# module proxy when it is not cached (no prebuilt downloads here; about a minute the first time).
set -euo pipefail
version=v2.12.15
cache="${XDG_CACHE_HOME:-$HOME/.cache}/herald"
bin="$cache/nats-server-$version/nats-server"
if [ ! -x "$bin" ]; then
  command -v go >/dev/null || { echo "herald: Go is needed to build nats-server; install Go (https://go.dev) first" >&2; exit 1; }
  echo "herald: building nats-server $version with go install (once)" >&2
  tmp=$(mktemp -d "$cache/nats-build.XXXXXX" 2>/dev/null || { mkdir -p "$cache"; mktemp -d "$cache/nats-build.XXXXXX"; })
  trap 'rm -rf "$tmp"' EXIT
  if ! GOBIN="$tmp" GOFLAGS=-mod=mod go install "github.com/nats-io/nats-server/v2@$version" >&2; then
    echo "herald: go install github.com/nats-io/nats-server/v2@$version failed; check that the Go module proxy is reachable" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$bin")"
  mv "$tmp/nats-server" "$bin"
fi
echo "$bin"
