#!/usr/bin/env bash
# Prints the directory holding the pinned helm, building it first with `go install` from the Go
# module proxy when it is not cached (no prebuilt downloads here; a few minutes the first time).
set -euo pipefail
version=v3.22.0
cache="${XDG_CACHE_HOME:-$HOME/.cache}/herald"
dir="$cache/helm-$version"
if [ ! -x "$dir/helm" ]; then
  command -v go >/dev/null || { echo "herald: Go is needed to build helm; install Go (https://go.dev) first" >&2; exit 1; }
  echo "herald: building helm $version with go install (once)" >&2
  tmp=$(mktemp -d "$cache/helm-build.XXXXXX" 2>/dev/null || { mkdir -p "$cache"; mktemp -d "$cache/helm-build.XXXXXX"; })
  trap 'rm -rf "$tmp"' EXIT
  # helm's Makefile sets these; without them `helm version` says v3.x-unreleased-ish defaults.
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  if ! GOBIN="$tmp" GOFLAGS=-mod=mod go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$version" >&2; then
    echo "herald: go install helm.sh/helm/v3/cmd/helm@$version failed; check that the Go module proxy is reachable" >&2
    exit 1
  fi
  mkdir -p "$dir"
  mv "$tmp/helm" "$dir/helm"
fi
echo "$dir"
