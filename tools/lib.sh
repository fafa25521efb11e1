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
