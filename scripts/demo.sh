#!/usr/bin/env bash
# `make demo`: the operator end to end on this machine, with real parts only.
#
#  1. installs/caches the pinned tools (scripts/tools.sh: helm, kubectl, crane, skopeo,
#     docker-registry, kube-apiserver + etcd built from source) and builds the operator and
#     aosm-emulator (release);
#  2. starts a local Kubernetes control plane (scripts/cluster.sh: real kube-apiserver +
#     etcd; no nodes, so the controller runs out of cluster with the kubeconfig);
#  3. starts, at the fixed loopback addresses examples/publish/ names: a plain-HTTP
#     registry (127.0.0.1:15000) holding an image made by crane, a Helm HTTP repository
#     (127.0.0.1:18879) holding a chart made by `helm package`, and the AOSM emulator
#     (Entra ID + ARM + ACR token server, https://127.0.0.1:18443) seeded from
#     examples/emulator/seed.json, in front of its own token-auth registry;
#  4. `helm install`s charts/aosm-artifact-operator (CRDs, RBAC, ...; its Deployment cannot
#     start without nodes), creates the store's Secret and starts the controller;
#  5. `kubectl apply -k examples/publish/`, waits until every transfer is Ready, prints
#     `kubectl get aosm -A` and the digests, and checks the image's digest in the store with
#     skopeo using the manifest's own scoped credential;
#  6. stops everything (KEEP=1 keeps it running and prints how to use and stop it).
#
# NODE=1 (`make demo NODE=1`, root): the same with the controller as a pod, as users run
# it: a single-node cluster (`scripts/cluster.sh up --node`) instead of the bare control
# plane; the registry, the Helm repository and the emulator listen on the node's bridge
# address (10.88.0.1) so pods reach them; the shipped image (`scripts/image.sh`, the musl
# build) is pushed to the registry and `helm install`ed with the emulator's CA
# (`caBundle.secret`) and its blob-storage host (`hostAliases`); examples/publish/ is
# applied with its 127.0.0.1 addresses turned into the bridge's.
#
# Environment: KEEP=1; NODE=1; AOSM_BIN=path to use an existing operator binary.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_NAME=demo
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
lib_init
STARTED=$(date +%s.%N)
elapsed() { python3 -c "import time; print(f'{time.time() - $STARTED:.1f}')"; }

REGISTRY_PORT=15000 HELM_PORT=18879 EMULATOR_PORT=18443
NODE=${NODE:-0}
if [[ "$NODE" == 1 ]]; then
  [[ $EUID -eq 0 ]] || die "NODE=1 needs root (the node's bridge, iptables rules and containerd); run it as root"
else
  for p in $REGISTRY_PORT $HELM_PORT $EMULATOR_PORT; do
    port_free "$p" || die "port 127.0.0.1:$p is in use; examples/publish/ expects the demo stack there (is another demo running? KEEP=1 leaves one running)"
  done
fi

tools_path "$ROOT"
# In a pod the controller is the image's binary (NODE=1 builds it with scripts/image.sh).
[[ "$NODE" == 1 ]] || CLI=$(find_cli "$ROOT")
log "building aosm-emulator: cargo build --release -p aosm-emulator"
(cd "$ROOT" && cargo build --release --quiet -p aosm-emulator) >&2 || die "cargo build -p aosm-emulator failed"
EMULATOR=${CARGO_TARGET_DIR:-$ROOT/target}/release/aosm-emulator
BUILT=$(elapsed)

lib_tmpdir WORK
export DOCKER_CONFIG=$WORK/docker HELM_CONFIG_HOME=$WORK/helm/config HELM_CACHE_HOME=$WORK/helm/cache HELM_DATA_HOME=$WORK/helm/data

# --- control plane ------------------------------------------------------------------
BIND=127.0.0.1
if [[ "$NODE" == 1 ]]; then
  log "starting a single-node cluster (scripts/cluster.sh up --node)"
  LIB_HOOKS+=("bash '$ROOT/scripts/cluster.sh' down '$WORK/cluster' >/dev/null 2>&1")
  bash "$ROOT/scripts/cluster.sh" up --node "$WORK/cluster" >"$WORK/cluster.out" 2>&1 || { cat "$WORK/cluster.out" >&2; die "cluster.sh up --node failed"; }
  BIND=$(sed -n 's/^NODE_IP=//p' "$WORK/cluster/node/env")
  [[ -n "$BIND" ]] || die "no NODE_IP in $WORK/cluster/node/env"
  export REGISTRY_BIND=$BIND
else
  log "starting kube-apiserver + etcd (scripts/cluster.sh)"
  bash "$ROOT/scripts/cluster.sh" up "$WORK/cluster" >"$WORK/cluster.out" 2>&1 || { cat "$WORK/cluster.out" >&2; die "cluster.sh up failed"; }
  LIB_HOOKS+=("bash '$ROOT/scripts/cluster.sh' down '$WORK/cluster' >/dev/null 2>&1")
fi
export KUBECONFIG=$WORK/cluster/kubeconfig

# --- source registry with an image ------------------------------------------------------
start_registry source "$WORK/source/storage" "" "$REGISTRY_PORT"
if [[ "$NODE" == 1 ]]; then
  # containerd pulls the operator's image from it over plain HTTP.
  mkdir -p "$WORK/cluster/node/containerd/certs.d/$REGISTRY_ADDR"
  printf 'server = "http://%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' \
    "$REGISTRY_ADDR" "$REGISTRY_ADDR" >"$WORK/cluster/node/containerd/certs.d/$REGISTRY_ADDR/hosts.toml"
fi
SOURCE_IMAGE=$REGISTRY_ADDR/contoso/cnf:1.0.0
head -c 2000000 /dev/urandom >"$WORK/app.bin"
tar -C "$WORK" -cf "$WORK/layer.tar" app.bin
crane append --insecure --oci-empty-base -f "$WORK/layer.tar" -t "$SOURCE_IMAGE" >/dev/null 2>&1 || die "crane append failed"
crane mutate --insecure --set-platform linux/amd64 "$SOURCE_IMAGE" -t "$SOURCE_IMAGE" >/dev/null 2>&1 || die "crane mutate failed"
IMAGE_DIGEST=$(crane digest --insecure "$SOURCE_IMAGE")
log "source image $SOURCE_IMAGE ($IMAGE_DIGEST)"

# --- Helm HTTP repository with a chart ------------------------------------------------
mkdir -p "$WORK/helm-root/charts"
helm create "$WORK/contoso-chart" >/dev/null
helm package "$WORK/contoso-chart" --version 1.0.0 -d "$WORK/helm-root/charts" >/dev/null
helm repo index "$WORK/helm-root/charts" --url "http://$BIND:$HELM_PORT/charts"
spawn "$WORK/helm-repo.log" python3 -m http.server "$HELM_PORT" --bind "$BIND" --directory "$WORK/helm-root"
wait_http "http://$BIND:$HELM_PORT/charts/index.yaml" "$SPAWNED_PID" 15 || die "the Helm repository did not start"
log "Helm repository http://$BIND:$HELM_PORT/charts (contoso-chart 1.0.0)"

# --- AOSM emulator --------------------------------------------------------------------
if [[ "$NODE" == 1 ]]; then
  # Pods reach it on the bridge; blob GETs are redirected to a storage host of another
  # name (as ACR's go to a storage account), which the chart's hostAliases resolves.
  start_emulator "$EMULATOR" "$WORK/emulator" "$ROOT/examples/emulator/seed.json" \
    --listen "$BIND:$EMULATOR_PORT" --registry-listen "$BIND:0" --hostname "$BIND" \
    --storage-hostname aosm-storage.test
else
  start_emulator "$EMULATOR" "$WORK/emulator" "$ROOT/examples/emulator/seed.json" --listen "127.0.0.1:$EMULATOR_PORT"
fi
ARM_ENDPOINT=$(emulator_field armEndpoint) TENANT_ID=$(emulator_field tenantId) CLIENT_ID=$(emulator_field clientId)
CA_FILE=$(emulator_field caFile) STORE_REGISTRY=$(emulator_field registry)
log "AOSM emulator: ARM $ARM_ENDPOINT, store registry $STORE_REGISTRY"

# --- the operator -----------------------------------------------------------------------
if [[ "$NODE" == 1 ]]; then
  IMAGE=$REGISTRY_ADDR/aosm-artifact-operator:demo
  log "building and pushing the image: scripts/image.sh $IMAGE"
  INSECURE=1 bash "$ROOT/scripts/image.sh" "$IMAGE" >"$WORK/image.log" 2>&1 || { tail -n 30 "$WORK/image.log" >&2; die "scripts/image.sh failed"; }
  kubectl create namespace aosm-system >/dev/null
  kubectl create secret generic emulator-ca -n aosm-system --from-file=ca.crt="$CA_FILE" >/dev/null
  kubectl create secret generic contoso-sp -n aosm-system \
    --from-literal=tenantId="$TENANT_ID" --from-literal=clientId="$CLIENT_ID" \
    --from-literal=clientSecret="$CLIENT_SECRET" >/dev/null
  log "helm install aosm-artifact-operator charts/aosm-artifact-operator --wait (the controller as a pod)"
  helm install aosm-artifact-operator "$ROOT/charts/aosm-artifact-operator" --namespace aosm-system \
    --set image.repository="${IMAGE%:*}" --set image.tag=demo --set caBundle.secret=emulator-ca \
    --set "hostAliases[0].ip=$BIND" --set "hostAliases[0].hostnames[0]=aosm-storage.test" \
    --wait --timeout 5m >"$WORK/helm-install.log" 2>&1 || { cat "$WORK/helm-install.log" >&2; kubectl get pods -A >&2; die "helm install failed"; }
  kubectl get pods -n aosm-system -o wide >&2
else
log "helm install aosm-artifact-operator charts/aosm-artifact-operator (CRDs, RBAC, ...)"
helm install aosm-artifact-operator "$ROOT/charts/aosm-artifact-operator" \
  --namespace aosm-system --create-namespace >"$WORK/helm-install.log" 2>&1 || { cat "$WORK/helm-install.log" >&2; die "helm install failed"; }
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl create secret generic contoso-sp -n aosm-system \
  --from-literal=tenantId="$TENANT_ID" --from-literal=clientId="$CLIENT_ID" \
  --from-literal=clientSecret="$CLIENT_SECRET" >/dev/null
METRICS_PORT=$(free_port) HEALTH_PORT=$(free_port)
spawn "$WORK/controller.log" env SSL_CERT_FILE="$CA_FILE" POD_NAME=demo-controller \
  "$CLI" run --namespace aosm-system --log-format text \
  --metrics-addr "127.0.0.1:$METRICS_PORT" --health-addr "127.0.0.1:$HEALTH_PORT"
CONTROLLER_PID=$SPAWNED_PID
wait_http "http://127.0.0.1:$HEALTH_PORT/healthz" "$CONTROLLER_PID" 30 || { cat "$WORK/controller.log" >&2; die "the controller did not start"; }
log "controller running out of cluster (pid $CONTROLLER_PID, metrics http://127.0.0.1:$METRICS_PORT/metrics)"
fi

# --- publish ------------------------------------------------------------------------------
if [[ "$NODE" == 1 ]]; then
  log "kubectl apply -k examples/publish/ (its 127.0.0.1 addresses as $BIND)"
  kubectl kustomize "$ROOT/examples/publish/" | sed "s/127\.0\.0\.1/$BIND/g" | kubectl apply -f - >&2
else
  log "kubectl apply -k examples/publish/"
  kubectl apply -k "$ROOT/examples/publish/" >&2
fi
if ! kubectl wait --for=condition=Ready artifacttransfers --all -n contoso-publish --timeout=180s >&2; then
  kubectl get artifacttransfers -n contoso-publish -o yaml >&2 || true
  if [[ "$NODE" == 1 ]]; then
    kubectl logs -n aosm-system -l app.kubernetes.io/name=aosm-artifact-operator --tail=30 >&2 || true
  else
    tail -n 30 "$WORK/controller.log" >&2 || true
  fi
  die "the transfers did not become Ready"
fi
echo
kubectl get aosm -A
echo
kubectl get artifacttransfers -n contoso-publish \
  -o custom-columns='TRANSFER:.metadata.name,DESTINATION:.status.destinationRef,DIGEST:.status.digest'
echo

# Independent check: the store holds the image under the source's digest (skopeo, with the
# manifest's own scoped credential from listCredential).
MANIFEST=/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/contoso-rg/providers/Microsoft.HybridNetwork/publishers/contoso/artifactStores/contoso-cnf-store/artifactManifests/contoso-cnf-manifest
list_credential "$(arm_token)" "$MANIFEST" "$WORK/cred.json"
python3 - "$WORK/cred.json" "$STORE_REGISTRY" >"$WORK/store-auth.json" <<'PY'
import base64, json, sys
cred = json.load(open(sys.argv[1]))
auth = base64.b64encode(f"{cred['username']}:{cred['acrToken']}".encode()).decode()
print(json.dumps({"auths": {sys.argv[2]: {"auth": auth}}}))
PY
chmod 600 "$WORK/store-auth.json"
mkdir -p "$WORK/certs.d"
cp "$CA_FILE" "$WORK/certs.d/ca.crt"
STORE_DIGEST=$(skopeo inspect --raw --cert-dir "$WORK/certs.d" --authfile "$WORK/store-auth.json" \
  "docker://$STORE_REGISTRY/contoso-cnf-container:1.0.0" | sha256sum | cut -d' ' -f1)
[[ "sha256:$STORE_DIGEST" == "$IMAGE_DIGEST" ]] || die "skopeo reads sha256:$STORE_DIGEST from the store, the source has $IMAGE_DIGEST"
log "skopeo: the store holds contoso-cnf-container:1.0.0 as $IMAGE_DIGEST, the source image's digest"
log "demo finished in $(elapsed) s (of which $BUILT s tools and builds)"

if [[ "${KEEP:-0}" == 1 && "$NODE" == 1 ]]; then
  cat >&2 <<MSG
[demo] KEEP=1: the stack keeps running (the controller as pods in aosm-system).
  export KUBECONFIG=$KUBECONFIG
  kubectl get aosm -A; kubectl get pods -n aosm-system; kubectl logs -n aosm-system deploy/aosm-artifact-operator
  stop: kill ${LIB_PIDS[*]}; bash $ROOT/scripts/cluster.sh down $WORK/cluster; rm -rf $WORK
MSG
elif [[ "${KEEP:-0}" == 1 ]]; then
  cat >&2 <<MSG
[demo] KEEP=1: the stack keeps running.
  export KUBECONFIG=$KUBECONFIG
  kubectl get aosm -A; kubectl describe artifacttransfer -n contoso-publish
  controller log: $WORK/controller.log   metrics: curl http://127.0.0.1:$METRICS_PORT/metrics
  stop: kill ${LIB_PIDS[*]}; bash $ROOT/scripts/cluster.sh down $WORK/cluster; rm -rf $WORK
MSG
fi
