#!/usr/bin/env bash
# `make store-example`: the manual AOSM routine of Microsoft's how-to (`az rest …
# listCredential`, `oras login`, `oras push|pull`, `az rest … updateState`) as one
# `aosm-artifact-operator store` command per step, against the local AOSM emulator:
#
#  1. installs/caches the pinned tools, builds the CLI and aosm-emulator;
#  2. starts the emulator seeded with examples/emulator/seed.json (a manifest listing an
#     image, an ARM template and a chart) and a plain local registry holding an image
#     (crane) and a chart (helm);
#  3. signs in as the emulator's service principal (AZURE_TENANT_ID, AZURE_CLIENT_ID,
#     AZURE_CLIENT_SECRET) and runs: store login → store push (a file, an image, a chart)
#     → store list → store pull -o DIR → store seal, printing each command and its output;
#  4. checks the pulled template is byte-exact and the manifest is Uploaded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_NAME=store-example
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
lib_init

tools_path "$ROOT"
CLI=$(find_cli "$ROOT")
if [[ -n "${AOSM_EMULATOR_BIN:-}" ]]; then
  EMULATOR=$AOSM_EMULATOR_BIN
else
  log "building aosm-emulator: cargo build --release -p aosm-emulator"
  (cd "$ROOT" && cargo build --release --quiet -p aosm-emulator) >&2 || die "cargo build -p aosm-emulator failed"
  EMULATOR=${CARGO_TARGET_DIR:-$ROOT/target}/release/aosm-emulator
fi

lib_tmpdir WORK
export DOCKER_CONFIG=$WORK/docker HELM_CONFIG_HOME=$WORK/helm HELM_CACHE_HOME=$WORK/helm-cache

start_registry source "$WORK/source/storage"
head -c 2000000 /dev/urandom >"$WORK/app.bin"
tar -C "$WORK" -cf "$WORK/layer.tar" app.bin
crane append --insecure -f "$WORK/layer.tar" -t "$REGISTRY_ADDR/contoso/cnf:1.0.0" >/dev/null 2>&1 || die "crane append failed"
(cd "$WORK" && helm create contoso-chart >/dev/null && helm package --version 1.0.0 contoso-chart >/dev/null) || die "helm package failed"
helm push --plain-http "$WORK/contoso-chart-1.0.0.tgz" "oci://$REGISTRY_ADDR/charts" >/dev/null 2>&1 || die "helm push failed"

start_emulator "$EMULATOR" "$WORK/emulator" "$ROOT/examples/emulator/seed.json"
ARM_ENDPOINT=$(emulator_field armEndpoint)
export AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET=$CLIENT_SECRET
AZURE_TENANT_ID=$(emulator_field tenantId) AZURE_CLIENT_ID=$(emulator_field clientId)
export SSL_CERT_FILE AZURE_SUBSCRIPTION_ID=00000000-0000-0000-0000-000000000001
SSL_CERT_FILE=$(emulator_field caFile)

STORE=(--resource-group contoso-rg --publisher contoso --artifact-store contoso-cnf-store
  --manifest contoso-cnf-manifest --arm-endpoint "$ARM_ENDPOINT" --authority-host "$ARM_ENDPOINT")
printf '{"$schema":"https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#","resources":[]}\n' >"$WORK/template.json"

step() { printf '\n$ aosm-artifact-operator %s\n' "$*"; "$CLI" "$@"; }
step store login "${STORE[@]}"
step store push "${STORE[@]}" contoso-cnf-template:1.0.0 "$WORK/template.json:application/json"
step store push "${STORE[@]}" contoso-cnf-container:1.0.0 --from "$REGISTRY_ADDR/contoso/cnf:1.0.0" --from-plain-http
step store push "${STORE[@]}" contoso-chart:1.0.0 --from "$REGISTRY_ADDR/charts/contoso-chart:1.0.0" --from-plain-http
step store list "${STORE[@]}"
step store pull "${STORE[@]}" contoso-cnf-template:1.0.0 -o "$WORK/pulled"
cmp -s "$WORK/template.json" "$WORK/pulled/template.json" || die "the pulled template differs from the pushed one"
step store seal "${STORE[@]}"
STATE=$("$CLI" store list "${STORE[@]}" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
[[ "$STATE" == "Uploaded" ]] || die "manifest state is $STATE, expected Uploaded"
if grep -rqF "$CLIENT_SECRET" "$WORK/emulator.log"; then die "the client secret leaked into the emulator log"; fi
log "done: template pulled byte-exact, manifest $STATE"
