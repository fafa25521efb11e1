#!/usr/bin/env bash
# Prints the path of Debian's `podman` (pinned version), installing the package first when it is
# missing. `make image-test` uses it to check that `podman load` accepts the images `make image`
# writes, with its own storage in a temporary directory (nothing under /var/lib/containers). The
# binary always comes from Debian's packages, never from a prebuilt download. Progress goes to
# stderr, the path alone to stdout.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
version=4.3.1+ds1-8+deb12u1+b3
bin=/usr/bin/podman

installed() { dpkg-query -W -f='${db:Status-Status} ${Version}' podman 2>/dev/null || true; }

have=$(installed)
if [ "$have" = "installed $version" ] && [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
if [ "${have%% *}" = installed ]; then
  echo "herald: Debian's podman ${have#* } is installed, but Herald is pinned to $version." >&2
  echo "herald: install the pinned one with:  apt-get install -y --allow-downgrades podman=$version" >&2
  echo "herald: (or update the pin in tools/image-podman.sh after checking that 'make image-test' passes on it)" >&2
  exit 1
fi

as_root true || {
  echo "herald: install podman once with:  sudo apt-get update && sudo apt-get install -y --no-install-recommends podman=$version" >&2
  exit 1
}

available() { apt-cache madison podman 2>/dev/null | awk -F' *\\| *' '{print $2}' | grep -qxF "$version"; }
if ! available; then
  echo "herald: refreshing apt's package lists to find podman $version" >&2
  apt_get -qq update || true
  if ! available; then
    echo "herald: apt offers no podman $version (it has: $(apt-cache madison podman 2>/dev/null | awk -F' *\\| *' '{print $2}' | tr '\n' ' '))." >&2
    echo "herald: Herald pins Debian 12 (bookworm)'s podman; on another release, update the pin in" >&2
    echo "herald: tools/image-podman.sh after checking that 'make image-test' passes with the new version." >&2
    exit 1
  fi
fi

# The package ships units (podman.socket, podman-restart); none may start during the install:
# exit status 101 of /usr/sbin/policy-rc.d means "action forbidden" (see tools/prometheus.sh).
policy=/usr/sbin/policy-rc.d
ours=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# herald: tools/image-podman.sh is installing podman; no service starts meanwhile.\nexit 101\n' |
    as_root tee "$policy" >/dev/null
  as_root chmod 0755 "$policy"
  ours=1
fi
cleanup() { if [ "$ours" = 1 ]; then as_root rm -f "$policy"; fi; }
trap cleanup EXIT

# --no-install-recommends: loading an image needs neither buildah, slirp4netns nor fuse-overlayfs.
echo "herald: installing Debian's podman $version (once; make image-test checks that podman load accepts the images)" >&2
if ! apt_get -qq install -y --no-install-recommends -o Dpkg::Use-Pty=0 "podman=$version"; then
  echo "herald: could not install podman with apt-get; check that apt can reach Debian's package mirrors," >&2
  echo "herald: then run:  apt-get update && apt-get install -y --no-install-recommends podman=$version" >&2
  exit 1
fi
cleanup
ours=0

if [ "$(installed)" != "installed $version" ] || [ ! -x "$bin" ]; then
  echo "herald: apt-get installed podman but $bin is missing; is this Debian?" >&2
  exit 1
fi
echo "$bin"
