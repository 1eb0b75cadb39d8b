#!/usr/bin/env bash
# `make transfer-example`: `aosm-artifact-operator transfer -f` against the local AOSM
# emulator, end to end, with real parts only:
#
#  1. installs/caches the pinned tools and builds the CLI and aosm-emulator (release);
#  2. starts a plain local registry holding an image made by crane, and the emulator
#     (Entra + ARM + ACR token server + a real token-auth registry) seeded with a publisher,
#     an ACR-backed artifact store and a manifest listing two artifacts;
#  3. renders examples/emulator/transfer.yaml.tmpl and runs `transfer -f` on it with
#     --mark-uploaded: an image and an ARM template (from a ConfigMap) go into the store,
#     then the manifest is set to Uploaded;
#  4. checks the pushed image's digest in the store with oras, using the manifest's own
#     scoped credential, and stops everything (KEEP=1 keeps it running).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_NAME=transfer-example
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
lib_init

tools_path "$ROOT"
CLI=$(find_cli "$ROOT")
log "building aosm-emulator: cargo build --release -p aosm-emulator"
(cd "$ROOT" && cargo build --release --quiet -p aosm-emulator) >&2 || die "cargo build -p aosm-emulator failed"
EMULATOR=$ROOT/target/release/aosm-emulator

lib_tmpdir WORK
export DOCKER_CONFIG=$WORK/docker
export ORAS_CACHE=$WORK/oras-cache

start_registry source "$WORK/source/storage"
SOURCE_IMAGE=$REGISTRY_ADDR/contoso/cnf:1.0.0
head -c 4000000 /dev/urandom >"$WORK/app.bin"
tar -C "$WORK" -cf "$WORK/layer.tar" app.bin
crane append --insecure -f "$WORK/layer.tar" -t "$SOURCE_IMAGE" >/dev/null 2>&1 || die "crane append failed"
SOURCE_DIGEST=$(crane digest --insecure "$SOURCE_IMAGE")
log "source image $SOURCE_IMAGE ($SOURCE_DIGEST)"

start_emulator "$EMULATOR" "$WORK/emulator" "$ROOT/examples/emulator/seed.json"
ARM_ENDPOINT=$(emulator_field armEndpoint) TENANT_ID=$(emulator_field tenantId) CLIENT_ID=$(emulator_field clientId)
CA_FILE=$(emulator_field caFile) STORE_REGISTRY=$(emulator_field registry)
log "emulator: ARM $ARM_ENDPOINT, store registry $STORE_REGISTRY"

export ARM_ENDPOINT TENANT_ID CLIENT_ID CLIENT_SECRET SOURCE_IMAGE
python3 - "$ROOT/examples/emulator/transfer.yaml.tmpl" >"$WORK/transfer.yaml" <<'PY'
import os, string, sys
print(string.Template(open(sys.argv[1]).read()).safe_substitute(os.environ))
PY
chmod 600 "$WORK/transfer.yaml"

log "aosm-artifact-operator transfer -f transfer.yaml --mark-uploaded"
SSL_CERT_FILE=$CA_FILE "$CLI" transfer -f "$WORK/transfer.yaml" --mark-uploaded -o json >"$WORK/status.json" \
  || { cat "$WORK/status.json"; die "transfer failed"; }
python3 - "$WORK/status.json" <<'PY'
import json, sys
for doc in json.load(open(sys.argv[1])):
    st = doc.get("status", {})
    ready = next((c for c in st.get("conditions", []) if c["type"] == "Ready"), {})
    print(f"  {doc['metadata']['name']:24} Ready={ready.get('status')} {st.get('destinationRef')} {st.get('digest')}")
PY

# Check with an independent tool, through the manifest's own scoped credential.
TOKEN=$(arm_token)
MANIFEST=/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/contoso-rg/providers/Microsoft.HybridNetwork/publishers/contoso/artifactStores/contoso-cnf-store/artifactManifests/contoso-cnf-manifest
list_credential "$TOKEN" "$MANIFEST" "$WORK/cred.json"
STATE=$(curl -s --cacert "$CA_FILE" -H "Authorization: Bearer $TOKEN" "$ARM_ENDPOINT$MANIFEST?api-version=2023-09-01" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["properties"]["artifactManifestState"])')
CRED_USER=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["username"])' "$WORK/cred.json")
# crane refuses token realms on private addresses, so oras checks the store here.
STORE_DIGEST=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["acrToken"])' "$WORK/cred.json" \
  | oras resolve --ca-file "$CA_FILE" -u "$CRED_USER" --password-stdin "$STORE_REGISTRY/contoso-cnf-container:1.0.0")
[[ "$STORE_DIGEST" == "$SOURCE_DIGEST" ]] || die "digest in the store $STORE_DIGEST != source $SOURCE_DIGEST"
log "oras resolve in the store (scoped credential): $STORE_DIGEST = source digest"
log "artifact manifest state: $STATE"
[[ "$STATE" == "Uploaded" ]] || die "manifest state is $STATE, expected Uploaded"
if grep -qF "$CLIENT_SECRET" "$WORK/status.json" "$WORK/emulator.log"; then die "the client secret leaked into output"; fi
log "done"
if [[ "${KEEP:-}" == 1 ]]; then
  log "KEEP=1: files in $WORK; emulator pid $EMULATOR_PID"
fi
