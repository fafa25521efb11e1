#!/usr/bin/env bash
# Prints the path of the pinned nats-server, building it first with `go install` from the Go
# module proxy when it is not cached (no prebuilt downloads here; about a minute the first time).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
version=v2.12.15
echo "$(go_install_cached nats-server "github.com/nats-io/nats-server/v2@$version")/nats-server"
