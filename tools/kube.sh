#!/usr/bin/env bash
# A Kubernetes control plane for tests (etcd + kube-apiserver, no kubelet), built from the Go
# module proxy (no prebuilt downloads here).
#
#   bash tools/kube.sh        prints the directory holding `etcd` and `kube-apiserver`
#   bash tools/kube.sh crds   prints the directory holding the CRD manifests the chart needs
#                             (Gateway API standard channel; ServiceMonitor, PrometheusRule)
#   bash tools/kube.sh node   prints the directory holding what a real node and its control plane
#                             add: kubelet, kube-proxy, kube-controller-manager, kube-scheduler and
#                             kubectl (the one-node cluster of packages/testkit/src/cluster.ts)
#
# Binaries are built once into ~/.cache/herald/kube-<versions>/ and kube-node-<version>/ (the first
# kube-apiserver build takes many minutes on 2 CPUs; Go's own module and build caches keep later
# rebuilds short). Every Kubernetes binary comes from the same wrapper module and version ldflags.
# Progress goes to stderr; stdout is only the path.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
kube_version=v1.36.3 # Kubernetes 1.36; staging modules are k8s.io/* v0.36.3
etcd_version=v3.6.8  # what Kubernetes v1.36.3 pins (go.mod, build/dependencies.yaml)
gateway_version=v1.6.3
promop_version=v0.85.0
cache="${XDG_CACHE_HOME:-$HOME/.cache}/herald"
dir="$cache/kube-$kube_version-etcd-$etcd_version"
node_dir="$cache/kube-node-$kube_version"
node_cmds=(kubelet kube-proxy kube-controller-manager kube-scheduler kubectl)
crds="$cache/crds-gateway-api-$gateway_version-prometheus-operator-$promop_version"

die() {
  echo "herald: $*" >&2
  exit 1
}
need_go() {
  command -v go >/dev/null || die "Go is needed to build $1; install Go (https://go.dev) first"
}
scratch() {
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/$1.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
}
# The value of one string field of `go mod download -json` output on stdin.
json_field() { sed -n "s/^[[:space:]]*\"$1\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p" | head -n1; }
download() {
  local out
  out=$(go mod download -json "$1" 2>&1) || die "go mod download $1 failed; check that the Go module proxy is reachable:
$out"
  printf '%s\n' "$out"
}

build_crds() {
  [ -f "$crds/.complete" ] && return
  need_go "the CRD manifests"
  echo "herald: extracting CRDs (gateway-api $gateway_version, prometheus-operator $promop_version) from Go modules (once)" >&2
  scratch crds-build
  local gw po
  gw=$(download "sigs.k8s.io/gateway-api@$gateway_version" | json_field Dir)
  po=$(download "github.com/prometheus-operator/prometheus-operator@$promop_version" | json_field Dir)
  local n=0 f
  for f in "$gw"/config/crd/standard/*.yaml; do
    [ -f "$f" ] || continue
    cp "$f" "$tmp/"
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || die "no CRDs under $gw/config/crd/standard"
  for f in servicemonitors prometheusrules; do
    local src="$po/example/prometheus-operator-crd/monitoring.coreos.com_$f.yaml"
    [ -f "$src" ] || die "$src is missing from the prometheus-operator module"
    cp "$src" "$tmp/"
  done
  chmod 644 "$tmp"/*.yaml
  touch "$tmp/.complete"
  rm -rf "$crds"
  mv "$tmp" "$crds"
}

build_etcd() {
  [ -x "$dir/etcd" ] && return
  need_go etcd
  echo "herald: building etcd $etcd_version (once)" >&2
  scratch etcd-build
  # go.etcd.io/etcd/server/v3 has replace directives, so `go install mod@v` refuses it: build it
  # from a wrapper module instead (replaces in dependencies are ignored).
  (
    cd "$tmp"
    printf 'module herald.local/etcd-build\n\ngo 1.24\n' >go.mod
    go get "go.etcd.io/etcd/server/v3@$etcd_version" >&2
    go build -trimpath -o "$tmp/etcd" go.etcd.io/etcd/server/v3 >&2
  ) || die "building etcd $etcd_version failed (see above); check that the Go module proxy is reachable"
  mkdir -p "$dir"
  mv "$tmp/etcd" "$dir/etcd"
  rm -rf "$tmp"
}

# Writes the wrapper module for k8s.io/kubernetes into $tmp/go.mod and sets $ldflags.
kube_wrapper() {
  local info gomod when minor
  info=$(download "k8s.io/kubernetes@$kube_version")
  gomod=$(json_field GoMod <<<"$info")
  when=$(json_field Time <<<"$info")
  # `go mod download -json` leaves Time out when the module was already in the cache; the .info
  # file beside it always has it.
  [ -n "$when" ] || when=$(sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' "$(json_field Info <<<"$info")")
  [ -n "$when" ] || die "no release time for k8s.io/kubernetes@$kube_version (for the version's buildDate)"
  [ -f "$gomod" ] || die "go mod download gave no go.mod for k8s.io/kubernetes@$kube_version"
  minor=${kube_version#v1.}
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging;
  # a wrapper module points each at its published v0.<minor>.<patch> and copies go/godebug.
  {
    echo 'module herald.local/kube-build'
    echo
    awk '/^(go|toolchain) /{print} /^godebug \(/{b=1} b{print} b&&/^\)/{b=0} /^godebug [^(]/{print}' "$gomod"
    echo
    echo "require k8s.io/kubernetes $kube_version"
    echo
    echo 'replace ('
    awk -v v="v0.$minor" '
      /^require \(/ { r = 1; next }
      r && /^\)/ { r = 0; next }
      (r && $1 ~ /^k8s\.io\// && $2 == "v0.0.0") { print "\t" $1 " => " $1 " " v }
      (/^require k8s\.io\// && $3 == "v0.0.0") { print "\t" $2 " => " $2 " " v }
    ' "$gomod"
    echo ')'
  } >"$tmp/go.mod"
  grep -q '=> k8s.io/api ' "$tmp/go.mod" || die "found no v0.0.0 staging modules in $gomod"
  ldflags="-s -w"
  local key val kv
  for kv in "gitVersion=$kube_version" "gitMajor=1" "gitMinor=${minor%%.*}" "gitTreeState=clean" \
    "buildDate=$(date -u -d "$when" +%Y-%m-%dT%H:%M:%SZ)"; do
    key=${kv%%=*}
    val=${kv#*=}
    ldflags+=" -X k8s.io/component-base/version.$key=$val -X k8s.io/client-go/pkg/version.$key=$val"
  done
}

build_apiserver() {
  [ -x "$dir/kube-apiserver" ] && return
  need_go kube-apiserver
  echo "herald: building kube-apiserver $kube_version (once; many minutes on 2 CPUs)" >&2
  scratch kube-build
  local ldflags
  kube_wrapper
  (
    cd "$tmp"
    GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-apiserver" \
      k8s.io/kubernetes/cmd/kube-apiserver >&2
  ) || die "building kube-apiserver $kube_version failed (see above; wrapper go.mod: $tmp/go.mod)"
  mkdir -p "$dir"
  mv "$tmp/kube-apiserver" "$dir/kube-apiserver"
  rm -rf "$tmp"
}

# kubelet, kube-proxy, kube-controller-manager, kube-scheduler and kubectl: one `go build` of the
# five commands (they share most packages with kube-apiserver, whose build cache they reuse).
build_node() {
  local c missing=()
  for c in "${node_cmds[@]}"; do [ -x "$node_dir/$c" ] || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] && return
  need_go "${missing[*]}"
  echo "herald: building ${missing[*]} $kube_version (once; many minutes on 2 CPUs)" >&2
  scratch kube-node-build
  local ldflags pkgs=()
  kube_wrapper
  for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  mkdir "$tmp/bin"
  (
    cd "$tmp"
    GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$tmp/bin/" "${pkgs[@]}" >&2
  ) || die "building ${missing[*]} $kube_version failed (see above; wrapper go.mod: $tmp/go.mod)"
  mkdir -p "$node_dir"
  for c in "${missing[@]}"; do
    [ -x "$tmp/bin/$c" ] || die "go build left no $c in $tmp/bin"
    mv "$tmp/bin/$c" "$node_dir/$c"
  done
  rm -rf "$tmp"
}

# The test bed makes its certificates with openssl (Node's crypto cannot issue X.509 ones).
need_openssl() {
  command -v openssl >/dev/null && return
  echo "herald: installing Debian's openssl for the test bed's certificates" >&2
  apt_install openssl ||
    die "openssl is needed for the test bed's certificates; install it with: apt-get install openssl"
}

case "${1:-}" in
  '')
    need_openssl
    build_etcd
    build_apiserver
    echo "$dir"
    ;;
  crds)
    build_crds
    echo "$crds"
    ;;
  node)
    build_node
    echo "$node_dir"
    ;;
  *) die "usage: bash tools/kube.sh [crds|node]" ;;
esac
