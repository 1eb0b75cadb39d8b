#!/usr/bin/env bash
# Builds a local Kubernetes control plane — kube-apiserver and etcd — from Go modules, for
# the tests and scripts/cluster.sh, and the node components of `scripts/cluster.sh up --node`
# (kubelet, kube-proxy, kube-scheduler, kube-controller-manager) from the same
# k8s.io/kubernetes module. scripts/tools.sh calls it (once; the binaries are cached in
# ~/.cache/aosm-artifact-operator/kube/<k8s-version>/), so there is rarely a reason to run it
# by hand.
#
# Usage: scripts/kube/build.sh build DEST [NAME]...
#            build the named binaries (default: kube-apiserver and etcd) into DEST,
#            atomically; NAME is one of kube-apiserver etcd kubelet kube-proxy
#            kube-scheduler kube-controller-manager
#        scripts/kube/build.sh node-binaries
#            print the node components' names (what `scripts/tools.sh` builds for --node)
#        scripts/kube/build.sh versions
#            print "<k8s-version> <etcd-version>" as pinned by the go.mod files here
#        scripts/kube/build.sh bump K8S_VERSION ETCD_VERSION     e.g. v1.35.4 v3.6.16
#            rewrite apiserver/go.mod and etcd/go.mod (+ go.sum) for other versions
#
# The versions are pinned by the wrapper modules next to this script, committed tidy:
# - apiserver/: requires k8s.io/kubernetes and replaces every `=> ./staging/...` module of
#   kubernetes' go.mod with the published k8s.io/<x> v0.<minor>.<patch> (a module outside
#   the kubernetes repository cannot use its relative replaces); main.go is a copy of
#   cmd/kube-apiserver's main.
# - etcd/: requires go.etcd.io/etcd/server/v3; main.go calls etcdmain.Main like etcd's own.
# Builds use the local Go toolchain (GOTOOLCHAIN=local), -mod=readonly (the committed go.sum
# is the truth), CGO_ENABLED=0 and -trimpath like the upstream release binaries. A cold
# kube-apiserver build takes ~7 minutes on 2 cores and peaks at ~2.2 GB of memory; etcd ~1.
# With the Go cache warm from kube-apiserver the node components add about 3 minutes
# (kubelet most of it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS="-trimpath -buildvcs=false -mod=readonly"
export CGO_ENABLED=0
# Every core for the compiler (the machine does nothing else while tools.sh builds).
GOMAXPROCS=${GOMAXPROCS:-$(nproc)}
export GOMAXPROCS

log() { printf '[kube-build] %s\n' "$*" >&2; }
die() {
  printf '[kube-build] ERROR: %s\n' "$*" >&2
  exit 1
}

# gomod_version GO_MOD MODULE: the version MODULE is required at in GO_MOD.
gomod_version() {
  awk -v m="$2" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' "$1"
}

k8s_version() { gomod_version "$HERE/apiserver/go.mod" k8s.io/kubernetes; }
etcd_version() { gomod_version "$HERE/etcd/go.mod" go.etcd.io/etcd/server/v3; }

# The node components of `scripts/cluster.sh up --node`, in their build order.
NODE_BINARIES=(kube-scheduler kube-proxy kube-controller-manager kubelet)

build_one() { # NAME DEST_DIR
  local name=$1 dest=$2 dir pkg=. ldflags kv minor tmp start
  case "$name" in
    kube-apiserver | kubelet | kube-proxy | kube-scheduler | kube-controller-manager)
      dir=$HERE/apiserver
      [[ "$name" == kube-apiserver ]] || pkg=./node/$name
      kv=$(k8s_version)
      minor=$(cut -d. -f2 <<<"$kv")
      # What `<name> --version` reports; the components also derive their binary (and
      # so their default emulation) version from it, and the kubelet reports it as the
      # node's kubeletVersion.
      local p=k8s.io/component-base/version
      ldflags="-s -w -X $p.gitVersion=$kv -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
      ;;
    etcd)
      dir=$HERE/etcd
      ldflags="-s -w"
      ;;
    *) die "unknown binary '$name' (kube-apiserver, etcd, ${NODE_BINARIES[*]})" ;;
  esac
  command -v go >/dev/null || die "go is not installed (needed to build $name)"
  mkdir -p "$dest"
  tmp=$(mktemp "$dest/.$name.XXXXXX")
  start=$(date +%s)
  log "go build $name ($(go version | awk '{print $3}'), GOMAXPROCS=$GOMAXPROCS) -> $dest/$name"
  # nice: the machine may be shared (CI, other checkouts); the build only needs to finish.
  if ! (cd "$dir" && nice -n 10 go build -ldflags "$ldflags" -o "$tmp" "$pkg"); then
    rm -f "$tmp"
    die "go build of $name failed (module $dir)"
  fi
  chmod 0755 "$tmp"
  mv -f "$tmp" "$dest/$name"
  log "built $name in $(($(date +%s) - start))s"
}

bump() { # K8S_VERSION ETCD_VERSION
  local kv=$1 ev=$2 sv gomod
  [[ "$kv" =~ ^v1\.[0-9]+\.[0-9]+$ ]] || die "K8S_VERSION must look like v1.35.4, got '$kv'"
  [[ "$ev" =~ ^v3\.[0-9]+\.[0-9]+$ ]] || die "ETCD_VERSION must look like v3.6.16, got '$ev'"
  sv=v0.${kv#v1.}
  export GOFLAGS=
  cd "$HERE/apiserver"
  gomod=$(go mod download -json "k8s.io/kubernetes@$kv" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [[ -f "$gomod" ]] || die "cannot download k8s.io/kubernetes@$kv"
  {
    echo "module aosm-artifact-operator/scripts/kube/apiserver"
    echo
    grep -E '^go ' "$gomod"
    grep -E '^godebug ' "$gomod" || true
    echo
    echo "require k8s.io/kubernetes $kv"
    echo
    echo "replace ("
    grep -E '=> ./staging/' "$gomod" | awk -v v="$sv" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >go.mod
  go mod tidy
  cd "$HERE/etcd"
  printf 'module aosm-artifact-operator/scripts/kube/etcd\n\ngo 1.25.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ev" >go.mod
  go mod tidy
  log "pinned k8s.io/kubernetes $kv (staging modules $sv) and etcd $ev; commit scripts/kube/*/go.{mod,sum}"
}

case "${1:-}" in
  build)
    [[ $# -ge 2 ]] || die "usage: $0 build DEST [NAME]..."
    dest=$2
    shift 2
    (($#)) || set -- kube-apiserver etcd
    for name in "$@"; do
      build_one "$name" "$dest"
    done
    ;;
  versions) echo "$(k8s_version) $(etcd_version)" ;;
  node-binaries) echo "${NODE_BINARIES[*]}" ;;
  bump)
    [[ $# -eq 3 ]] || die "usage: $0 bump K8S_VERSION ETCD_VERSION"
    bump "$2" "$3"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
