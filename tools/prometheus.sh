#!/usr/bin/env bash
# Prints the directory holding Debian's `prometheus` and `promtool` (pinned version), installing the
# `prometheus` package first when it is missing. Progress goes to stderr, the directory alone to
# stdout. The binaries always come from Debian's packages, never from a prebuilt download. The
# package ships a service; this script never leaves it running: services are blocked from starting
# while it installs (policy-rc.d), and on a machine booted with systemd the unit is also stopped and
# disabled, so only the tests start Prometheus, each on its own port and data directory.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
version=2.42.0+ds-5+deb12u1
dir=/usr/bin

installed() { dpkg-query -W -f='${db:Status-Status} ${Version}' prometheus 2>/dev/null || true; }

have=$(installed)
if [ "$have" = "installed $version" ] && [ -x "$dir/promtool" ] && [ -x "$dir/prometheus" ]; then
  echo "$dir"
  exit 0
fi
if [ "${have%% *}" = installed ]; then
  echo "herald: Debian's prometheus ${have#* } is installed, but Herald is pinned to $version." >&2
  echo "herald: install the pinned one with:  apt-get install -y --allow-downgrades prometheus=$version" >&2
  echo "herald: (or update the pin in tools/prometheus.sh after checking the rule tests pass on it)" >&2
  exit 1
fi

as_root true || {
  echo "herald: install promtool once with:  sudo apt-get update && sudo apt-get install -y --no-install-recommends prometheus=$version" >&2
  exit 1
}

available() { apt-cache madison prometheus 2>/dev/null | awk -F' *\\| *' '{print $2}' | grep -qxF "$version"; }
if ! available; then
  echo "herald: refreshing apt's package lists to find prometheus $version" >&2
  apt_get -qq update || true
  if ! available; then
    echo "herald: apt offers no prometheus $version (it has: $(apt-cache madison prometheus 2>/dev/null | awk -F' *\\| *' '{print $2}' | tr '\n' ' '))." >&2
    echo "herald: Herald pins Debian 12 (bookworm)'s prometheus $version; on another release, update the pin in" >&2
    echo "herald: tools/prometheus.sh after checking that 'make observability' passes with the new version." >&2
    exit 1
  fi
fi

# Keep the package's service from starting during the install: invoke-rc.d and deb-systemd-invoke
# both ask /usr/sbin/policy-rc.d, and exit status 101 means "action forbidden". A policy already
# in place (Docker images ship one) is left alone; ours is removed afterwards.
policy=/usr/sbin/policy-rc.d
ours=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# herald: tools/prometheus.sh is installing prometheus; no service starts meanwhile.\nexit 101\n' |
    as_root tee "$policy" >/dev/null
  as_root chmod 0755 "$policy"
  ours=1
fi
cleanup() { if [ "$ours" = 1 ]; then as_root rm -f "$policy"; fi; }
trap cleanup EXIT

echo "herald: installing Debian's prometheus $version (once; provides prometheus and promtool)" >&2
if ! apt_get -qq install -y --no-install-recommends -o Dpkg::Use-Pty=0 "prometheus=$version"; then
  echo "herald: could not install prometheus with apt-get; check that apt can reach Debian's package" >&2
  echo "herald: mirrors, then run:  apt-get update && apt-get install -y --no-install-recommends prometheus=$version" >&2
  exit 1
fi
cleanup
ours=0

# On a machine booted with systemd the unit is enabled by the package: stop it and keep it from
# starting at the next boot. In containers (no systemd as PID 1) there is nothing to stop.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  as_root systemctl disable --now prometheus.service >&2 2>/dev/null || true
fi

if [ "$(installed)" != "installed $version" ] || [ ! -x "$dir/promtool" ] || [ ! -x "$dir/prometheus" ]; then
  echo "herald: apt-get installed prometheus but $dir/promtool or $dir/prometheus is missing; is this Debian?" >&2
  exit 1
fi
echo "$dir"
