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
# Environment: KEEP=1; AOSM_BIN=path to use an existing operator binary.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_NAME=demo
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
lib_init
STARTED=$(date +%s.%N)
elapsed() { python3 -c "import time; print(f'{time.time() - $STARTED:.1f}')"; }

REGISTRY_PORT=15000 HELM_PORT=18879 EMULATOR_PORT=18443
for p in $REGISTRY_PORT $HELM_PORT $EMULATOR_PORT; do
  port_free "$p" || die "port 127.0.0.1:$p is in use; examples/publish/ expects the demo stack there (is another demo running? KEEP=1 leaves one running)"
done

tools_path "$ROOT"
CLI=$(find_cli "$ROOT")
log "building aosm-emulator: cargo build --release -p aosm-emulator"
(cd "$ROOT" && cargo build --release --quiet -p aosm-emulator) >&2 || die "cargo build -p aosm-emulator failed"
EMULATOR=$ROOT/target/release/aosm-emulator
BUILT=$(elapsed)

lib_tmpdir WORK
export DOCKER_CONFIG=$WORK/docker HELM_CONFIG_HOME=$WORK/helm/config HELM_CACHE_HOME=$WORK/helm/cache HELM_DATA_HOME=$WORK/helm/data

# --- control plane ------------------------------------------------------------------
log "starting kube-apiserver + etcd (scripts/cluster.sh)"
bash "$ROOT/scripts/cluster.sh" up "$WORK/cluster" >"$WORK/cluster.out" 2>&1 || { cat "$WORK/cluster.out" >&2; die "cluster.sh up failed"; }
LIB_HOOKS+=("bash '$ROOT/scripts/cluster.sh' down '$WORK/cluster' >/dev/null 2>&1")
export KUBECONFIG=$WORK/cluster/kubeconfig

# --- source registry with an image ------------------------------------------------------
start_registry source "$WORK/source/storage" "" "$REGISTRY_PORT"
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
helm repo index "$WORK/helm-root/charts" --url "http://127.0.0.1:$HELM_PORT/charts"
spawn "$WORK/helm-repo.log" python3 -m http.server "$HELM_PORT" --bind 127.0.0.1 --directory "$WORK/helm-root"
wait_http "http://127.0.0.1:$HELM_PORT/charts/index.yaml" "$SPAWNED_PID" 15 || die "the Helm repository did not start"
log "Helm repository http://127.0.0.1:$HELM_PORT/charts (contoso-chart 1.0.0)"

# --- AOSM emulator --------------------------------------------------------------------
start_emulator "$EMULATOR" "$WORK/emulator" "$ROOT/examples/emulator/seed.json" --listen "127.0.0.1:$EMULATOR_PORT"
ARM_ENDPOINT=$(emulator_field armEndpoint) TENANT_ID=$(emulator_field tenantId) CLIENT_ID=$(emulator_field clientId)
CA_FILE=$(emulator_field caFile) STORE_REGISTRY=$(emulator_field registry)
log "AOSM emulator: ARM $ARM_ENDPOINT, store registry $STORE_REGISTRY"

# --- the operator -----------------------------------------------------------------------
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

# --- publish ------------------------------------------------------------------------------
log "kubectl apply -k examples/publish/"
kubectl apply -k "$ROOT/examples/publish/" >&2
if ! kubectl wait --for=condition=Ready artifacttransfers --all -n contoso-publish --timeout=180s >&2; then
  kubectl get artifacttransfers -n contoso-publish -o yaml >&2 || true
  tail -n 30 "$WORK/controller.log" >&2 || true
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

if [[ "${KEEP:-0}" == 1 ]]; then
  cat >&2 <<MSG
[demo] KEEP=1: the stack keeps running.
  export KUBECONFIG=$KUBECONFIG
  kubectl get aosm -A; kubectl describe artifacttransfer -n contoso-publish
  controller log: $WORK/controller.log   metrics: curl http://127.0.0.1:$METRICS_PORT/metrics
  stop: kill ${LIB_PIDS[*]}; bash $ROOT/scripts/cluster.sh down $WORK/cluster; rm -rf $WORK
MSG
fi
