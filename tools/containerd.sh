#!/usr/bin/env bash
# What a real node runs besides the Kubernetes binaries, from Debian's packages at pinned
# versions: containerd (with ctr and containerd-shim-runc-v2), runc, the CNI plugins (bridge,
# host-local, portmap, loopback), iptables and conntrack. Installs what is missing, then prints a
# directory of links to exactly those programs (and `cni`, the plugin directory), so that the
# one-node cluster of packages/testkit/src/cluster.ts puts that one directory first on its PATH.
# Progress goes to stderr, the directory alone to stdout. Never a prebuilt download.
#
# The containerd package ships a service; this script never leaves it running: services are
# blocked from starting while it installs (policy-rc.d), and on a machine booted with systemd the
# unit is also stopped and disabled. The cluster runs containerd itself, with its own config,
# root, state and socket.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Debian 12 (bookworm). Change a pin only after `make cluster` passes with the new version.
pins=(
  containerd=1.6.20~ds1-1+deb12u3
  runc=1.1.5+ds1-1+deb12u1
  containernetworking-plugins=1.1.1+ds1-3+b5
  iptables=1.8.9-2
  conntrack=1:1.4.7-1+b2
)
# What the cluster runs, and where the packages put it.
programs=(
  /usr/bin/containerd
  /usr/bin/containerd-shim-runc-v2
  /usr/bin/ctr
  /usr/sbin/runc
  /usr/sbin/iptables
  /usr/sbin/iptables-save
  /usr/sbin/iptables-restore
  /usr/sbin/ip6tables
  /usr/sbin/ip6tables-save
  /usr/sbin/ip6tables-restore
  /usr/sbin/conntrack
)
cni=/usr/lib/cni
cni_plugins=(bridge host-local portmap loopback)

# The directory's name changes with the pins, so a stale one is never used.
key=$(printf '%s\n' "${pins[@]}" | sha256sum | cut -c1-12)
dir="$HERALD_TOOLS/cluster-debian-$key"

die() {
  echo "herald: $*" >&2
  exit 1
}
status_of() { dpkg-query -W -f='${db:Status-Status} ${Version}' "$1" 2>/dev/null || true; }

# Packages not installed at their pin; a different installed version stops the script (it is
# someone else's, and Herald does not downgrade or upgrade it behind their back).
missing=()
for pin in "${pins[@]}"; do
  pkg=${pin%%=*}
  want=${pin#*=}
  have=$(status_of "$pkg")
  if [ "$have" = "installed $want" ]; then continue; fi
  if [ "${have%% *}" = installed ]; then
    echo "herald: Debian's $pkg ${have#* } is installed, but Herald is pinned to $want." >&2
    echo "herald: install the pinned one with:  apt-get install -y --allow-downgrades $pkg=$want" >&2
    die "(or update the pin in tools/containerd.sh after checking that 'make cluster' passes on it)"
  fi
  missing+=("$pin")
done

if [ ${#missing[@]} -gt 0 ]; then
  as_root true || die "install the cluster's packages once with:  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
  offered() { apt-cache madison "${1%%=*}" 2>/dev/null | awk -F' *\\| *' '{print $2}' | grep -qxF "${1#*=}"; }
  unavailable() {
    local p
    for p in "${missing[@]}"; do offered "$p" || { echo "$p"; return 0; }; done
    return 1
  }
  if gone=$(unavailable); then
    echo "herald: refreshing apt's package lists to find ${missing[*]}" >&2
    apt_get -qq update || true
    if gone=$(unavailable); then
      pkg=${gone%%=*}
      echo "herald: apt offers no $gone (it has: $(apt-cache madison "$pkg" 2>/dev/null | awk -F' *\\| *' '{print $2}' | tr '\n' ' '))." >&2
      echo "herald: Herald pins Debian 12 (bookworm)'s packages; on another release, update the pins in" >&2
      die "tools/containerd.sh after checking that 'make cluster' passes with the new versions."
    fi
  fi

  # Keep containerd's service from starting during the install (see tools/prometheus.sh): exit
  # status 101 of /usr/sbin/policy-rc.d means "action forbidden". One already in place is left.
  policy=/usr/sbin/policy-rc.d
  ours=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# herald: tools/containerd.sh is installing packages; no service starts meanwhile.\nexit 101\n' |
      as_root tee "$policy" >/dev/null
    as_root chmod 0755 "$policy"
    ours=1
  fi
  cleanup() { if [ "$ours" = 1 ]; then as_root rm -f "$policy"; fi; }
  trap cleanup EXIT

  echo "herald: installing Debian's ${missing[*]} (once; the one-node cluster's runtime and network)" >&2
  apt_get -qq install -y --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" ||
    die "could not install ${missing[*]} with apt-get; check that apt can reach Debian's mirrors, then run:  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  cleanup
  ours=0
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    as_root systemctl disable --now containerd.service >&2 2>/dev/null || true
  fi
  for pin in "${pins[@]}"; do
    [ "$(status_of "${pin%%=*}")" = "installed ${pin#*=}" ] || die "apt-get did not install $pin; is this Debian 12?"
  done
fi

if [ ! -f "$dir/.complete" ]; then
  for p in "${programs[@]}"; do [ -x "$p" ] || die "$p is missing although its package is installed"; done
  for p in "${cni_plugins[@]}"; do [ -x "$cni/$p" ] || die "$cni/$p is missing although containernetworking-plugins is installed"; done
  mkdir -p "$HERALD_TOOLS"
  tmp=$(mktemp -d "$HERALD_TOOLS/cluster-debian.XXXXXX")
  chmod 755 "$tmp"
  for p in "${programs[@]}"; do ln -s "$p" "$tmp/${p##*/}"; done
  ln -s "$cni" "$tmp/cni"
  printf '%s\n' "${pins[@]}" >"$tmp/pins"
  touch "$tmp/.complete"
  rm -rf "$dir"
  mv "$tmp" "$dir"
fi
echo "$dir"
