#!/usr/bin/env bash
# Prints the directory holding `traefik`, the Gateway API data plane of the one-node cluster
# (packages/testkit/src/cluster.ts), built once from its Go module at a pinned version (no
# prebuilt downloads). Progress goes to stderr, the directory alone to stdout.
#
# `go install github.com/traefik/traefik/v3/cmd/traefik@v` is refused because Traefik's go.mod
# has replace directives; a wrapper module that requires it and carries the same replace and
# exclude lines, taken from the downloaded go.mod, builds it instead (replaces of a dependency
# are otherwise ignored). The first build takes 10-15 minutes on 2 CPUs; Go's module and build
# caches keep a rebuild short.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# v3.7.x cannot be built from the Go module proxy: one of its replaces points at a nested module
# the proxy does not serve.
version=v3.6.12
module=github.com/traefik/traefik/v3
dir="$HERALD_TOOLS/traefik-$version"

die() {
  echo "herald: $*" >&2
  exit 1
}

if [ ! -x "$dir/traefik" ]; then
  command -v go >/dev/null || die "Go is needed to build traefik; install Go (https://go.dev) first"
  echo "herald: building traefik $version from its Go module (once; 10-15 minutes on 2 CPUs)" >&2
  mkdir -p "$HERALD_TOOLS"
  tmp=$(mktemp -d "$HERALD_TOOLS/traefik-build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  info=$(go mod download -json "$module@$version" 2>&1) ||
    die "go mod download $module@$version failed; check that the Go module proxy is reachable:
$info"
  gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$info" | head -n1)
  # The release time, for the version's build date: in the .info file (`-json` leaves Time out
  # when the module was already cached).
  when=$(sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' "$(sed -n 's/^[[:space:]]*"Info": "\(.*\)",\{0,1\}$/\1/p' <<<"$info" | head -n1)")
  [ -n "$when" ] || die "no release time for $module@$version in go mod download's .info file"
  [ -f "$gomod" ] || die "go mod download gave no go.mod for $module@$version"
  # The go directive and every replace and exclude line, single or in a block. A replace that
  # points at a directory (./x, ../x, /x) cannot work outside Traefik's own tree: say so.
  awk '
    /^go / { print; next }
    /^(replace|exclude) \($/ { block = $1; print; next }
    block && /^\)$/ { block = ""; print; next }
    block { print; next }
    /^(replace|exclude) / { print }
  ' "$gomod" >"$tmp/directives"
  if awk '/=>/ { split($0, s, "=>"); sub(/^[ \t]+/, "", s[2]); if (s[2] ~ /^(\.\.?\/|\/)/) { print; bad = 1 } } END { exit !bad }' "$tmp/directives" >&2; then
    die "traefik $version replaces a module with a directory (above); the wrapper cannot build it"
  fi
  grep -q '=>' "$tmp/directives" || die "found no replace lines in $gomod; check how traefik $version is built"
  {
    echo 'module herald.local/traefik-build'
    echo
    cat "$tmp/directives"
    echo
    echo "require $module $version"
  } >"$tmp/go.mod"
  ldflags="-s -w -X $module/pkg/version.Version=$version"
  ldflags+=" -X $module/pkg/version.BuildDate=$(date -u -d "$when" +%Y-%m-%dT%H:%M:%SZ)"
  (
    cd "$tmp"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$tmp/traefik" \
      "$module/cmd/traefik" >&2
  ) || die "building traefik $version failed (see above; wrapper go.mod: $tmp/go.mod)"
  "$tmp/traefik" version 2>/dev/null | grep -q "$version" ||
    die "the traefik built does not report version $version: $("$tmp/traefik" version 2>&1 | head -n3)"
  mkdir -p "$dir"
  mv "$tmp/traefik" "$dir/traefik"
fi
echo "$dir"
