#!/usr/bin/env bash
# Builds the GitOps tools the tests run, from Go modules: Flux's source-controller and
# kustomize-controller (unmodified; out of cluster in tests/gitops_flux.rs) with their
# CRDs, and argocd-lua-check (argocd-lua/main.go: the Argo CD resource customizations in
# gitops/argocd/ through Argo CD's own Lua code, for tests/gitops.rs). scripts/tools.sh
# calls it once per version and caches the result, so there is rarely a reason to run it
# by hand.
#
# Usage: scripts/gitops/build.sh build DEST    # DEST/bin/{source-controller,
#                                              #   kustomize-controller,argocd-lua-check},
#                                              # DEST/flux-crds/*.yaml; atomically
#        scripts/gitops/build.sh version       # "<flux controllers> <argo-cd>", as pinned
#
# The versions are pinned by the wrapper modules next to this script, committed with
# their go.sum: each requires its upstream module and repeats the upstream go.mod's
# `replace` directives (which `go install module@version` refuses). The Flux wrappers
# name the controller as a `tool` and build its main package from the module cache.
# Builds use the local Go toolchain (GOTOOLCHAIN=local), -mod=readonly, CGO_ENABLED=0
# and -trimpath. Cold: ~3 minutes per Flux controller on 2 cores, ~2 for the Argo CD
# harness.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS="-trimpath -buildvcs=false -mod=readonly"
export CGO_ENABLED=0

log() { printf '[gitops-build] %s\n' "$*" >&2; }
die() {
  printf '[gitops-build] ERROR: %s\n' "$*" >&2
  exit 1
}

# required MODULE_DIR MODULE: the version MODULE is required at in MODULE_DIR/go.mod.
required() {
  awk -v m="$2" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' "$1/go.mod"
}

flux_version() {
  local sc kc
  sc=$(required "$HERE/flux/source-controller" github.com/fluxcd/source-controller)
  kc=$(required "$HERE/flux/kustomize-controller" github.com/fluxcd/kustomize-controller)
  [[ "$sc" == "$kc" ]] || die "source-controller $sc and kustomize-controller $kc: pin one Flux version"
  echo "$sc"
}
argocd_version() { required "$HERE/argocd-lua" github.com/argoproj/argo-cd/v3; }

build() {
  local dest=$1 tmp flux module start
  flux=$(flux_version)
  mkdir -p "$(dirname "$dest")"
  tmp=$(mktemp -d "$dest.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/bin" "$tmp/flux-crds"
  for name in source-controller kustomize-controller; do
    module=github.com/fluxcd/$name
    start=$SECONDS
    log "go build $module@$flux"
    go build -C "$HERE/flux/$name" -ldflags "-s -w" -o "$tmp/bin/$name" "$module" \
      || die "go build $module failed"
    log "$name built in $((SECONDS - start)) s"
    local src
    src=$(go list -C "$HERE/flux/$name" -m -f '{{.Dir}}' "$module") || die "go list -m $module failed"
    cp "$src"/config/crd/bases/*.yaml "$tmp/flux-crds/"
  done
  chmod u+w "$tmp"/flux-crds/*.yaml
  start=$SECONDS
  log "go build argocd-lua-check (argo-cd $(argocd_version))"
  go build -C "$HERE/argocd-lua" -ldflags "-s -w" -o "$tmp/bin/argocd-lua-check" . \
    || die "go build argocd-lua-check failed"
  log "argocd-lua-check built in $((SECONDS - start)) s"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  trap - EXIT
}

case "${1:-}" in
  build)
    [[ -n "${2:-}" ]] || die "usage: $0 build DEST"
    build "$2"
    ;;
  version) echo "$(flux_version) $(argocd_version)" ;;
  *) die "usage: $0 build DEST | version" ;;
esac
