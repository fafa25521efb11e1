# Shared by the tools/*.sh installers (sourced, not run). Everything they print goes to stderr.

# Runs a command as root: directly, or through passwordless sudo. Fails, saying so, otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    echo "herald: '$*' needs root and this user is not root and has no passwordless sudo; run it once as root." >&2
    return 1
  fi
}

# apt-get as root, non-interactive, waiting for a dpkg lock held by another install rather than
# failing at once.
apt_get() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@" >&2
}

# Installs Debian packages, refreshing the package lists first: a fresh machine has none.
apt_install() {
  apt_get -qq update && apt_get -qq install -y --no-install-recommends -o Dpkg::Use-Pty=0 "$@"
}

# Herald's tool cache.
HERALD_TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/herald"

# go_install_cached NAME PACKAGE@VERSION [LDFLAGS]: builds the command with `go install` from the Go
# module proxy into $HERALD_TOOLS/NAME-VERSION/ unless it is there already, and prints that
# directory. No prebuilt downloads: the first build takes minutes, later calls are a file check.
go_install_cached() {
  local name=$1 pkg=$2 ldflags=${3:-} version=${2##*@}
  local dir="$HERALD_TOOLS/$name-$version"
  if [ ! -x "$dir/$name" ]; then
    command -v go >/dev/null || { echo "herald: Go is needed to build $name; install Go (https://go.dev) first" >&2; return 1; }
    echo "herald: building $name $version with go install (once)" >&2
    mkdir -p "$HERALD_TOOLS"
    local tmp
    tmp=$(mktemp -d "$HERALD_TOOLS/$name-build.XXXXXX")
    if ! GOBIN="$tmp" GOFLAGS=-mod=mod go install -trimpath -ldflags "$ldflags" "$pkg" >&2; then
      rm -rf "$tmp"
      echo "herald: go install $pkg failed; check that the Go module proxy is reachable" >&2
      return 1
    fi
    mkdir -p "$dir"
    mv "$tmp/$name" "$dir/$name"
    rm -rf "$tmp"
  fi
  echo "$dir"
}
