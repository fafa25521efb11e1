#!/usr/bin/env bash
# Prints the directory holding the pinned helm, building it first with `go install` from the Go
# module proxy when it is not cached (no prebuilt downloads here; a few minutes the first time).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
version=v3.22.0
# helm's Makefile sets these; without them `helm version` says v3.x-unreleased-ish defaults.
go_install_cached helm "helm.sh/helm/v3/cmd/helm@$version" \
  "-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
