#!/usr/bin/env bash
# Prints the directory holding `coredns`, the cluster DNS of the one-node cluster
# (packages/testkit/src/cluster.ts): the chart's gateway reaches NATS by Service name. Built once
# from CoreDNS's Go module at a pinned version with only the plugins the cluster uses, so the
# build skips the cloud providers' SDKs (no prebuilt downloads). Progress goes to stderr, the
# directory alone to stdout.
#
# CoreDNS picks its plugins with blank imports (core/plugin/zplugin.go, generated from
# plugin.cfg); a wrapper main package imports coremain and just the plugins below instead.
# core/dnsserver keeps the full directive order, which only matters for plugins that are there.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
version=v1.15.0
module=github.com/coredns/coredns
# kubernetes answers cluster names from the API server; cache, errors and log as usual; bind to
# listen on one address; health and ready for the harness to wait on.
plugins=(bind cache errors health kubernetes log ready)
dir="$HERALD_TOOLS/coredns-$version-$(printf '%s\n' "${plugins[@]}" | sha256sum | cut -c1-8)"

die() {
  echo "herald: $*" >&2
  exit 1
}

if [ ! -x "$dir/coredns" ]; then
  command -v go >/dev/null || die "Go is needed to build coredns; install Go (https://go.dev) first"
  echo "herald: building coredns $version with plugins ${plugins[*]} (once; a few minutes on 2 CPUs)" >&2
  mkdir -p "$HERALD_TOOLS"
  tmp=$(mktemp -d "$HERALD_TOOLS/coredns-build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  {
    echo 'package main'
    echo
    echo 'import ('
    echo "	\"$module/coremain\""
    for p in "${plugins[@]}"; do echo "	_ \"$module/plugin/$p\""; done
    echo ')'
    echo
    echo 'func main() { coremain.Run() }'
  } >"$tmp/main.go"
  # The wrapper's go directive is CoreDNS's own (a lower one would not build its packages).
  info=$(go mod download -json "$module@$version" 2>&1) ||
    die "go mod download $module@$version failed; check that the Go module proxy is reachable:
$info"
  gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$info" | head -n1)
  [ -f "$gomod" ] || die "go mod download gave no go.mod for $module@$version"
  {
    echo 'module herald.local/coredns-build'
    echo
    grep -m1 '^go ' "$gomod"
    echo
    echo "require $module $version"
  } >"$tmp/go.mod"
  (
    cd "$tmp"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "-s -w -X $module/coremain.gitTag=$version -X $module/coremain.GitCommit=$version" \
      -o "$tmp/coredns" . >&2
  ) || die "building coredns $version failed (see above); check that the Go module proxy is reachable"
  "$tmp/coredns" -plugins | grep -qw kubernetes ||
    die "the coredns built lacks the kubernetes plugin: $("$tmp/coredns" -plugins 2>&1 | tr '\n' ' ')"
  mkdir -p "$dir"
  mv "$tmp/coredns" "$dir/coredns"
fi
echo "$dir"
