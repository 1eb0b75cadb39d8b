#!/usr/bin/env bash
# `make demo-copy`: show the transfer engine end to end on this machine, with real parts only.
#
#  1. installs/caches the pinned tools (scripts/tools.sh) and builds the CLI (release);
#  2. starts two local registries (Debian's docker-registry, plain HTTP, temp storage) and
#     a local Helm HTTP repository (python3 -m http.server serving `helm package` output);
#  3. makes a linux/amd64 + linux/arm64 image index in registry A with crane;
#  4. copies it to registry B with our CLI (whole, then filtered to linux/arm64), copies
#     the chart from the Helm repository into registry B as an OCI chart, pushes a file
#     as an OCI artifact, and re-runs the first copy (nothing left to move);
#  5. checks the results with independent tools (crane digest, helm pull/template, oras pull);
#  6. prints a summary and stops everything it started.
#
# Environment: KEEP=1 keeps registries/files after the demo (prints how to stop them);
#              AOSM_BIN=path uses an existing binary instead of `cargo build --release`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_NAME=demo-copy
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
lib_init

tools_path "$ROOT"
CLI=$(find_cli "$ROOT")
[[ -x "$CLI" ]] || die "no CLI binary at $CLI"

lib_tmpdir WORK
export HELM_CONFIG_HOME=$WORK/helm/config HELM_CACHE_HOME=$WORK/helm/cache HELM_DATA_HOME=$WORK/helm/data
export DOCKER_CONFIG=$WORK/docker # keep crane/oras away from the user's credentials

# json_get FILE KEY: print one top-level field of a JSON document.
json_get() {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# run_cli NAME SUBCOMMAND ARGS...: run our CLI with --output json; keep its JSON in $WORK/NAME.json.
run_cli() {
  local name=$1 sub=$2 rc=0
  shift 2
  printf '\n$ aosm-artifact-operator %s --output json %s\n' "$sub" "$*" >&2
  "$CLI" "$sub" --output json "$@" >"$WORK/$name.json" 2>"$WORK/$name.log" || rc=$?
  if ((rc != 0)); then
    sed 's/^/    /' "$WORK/$name.log" >&2
    die "aosm-artifact-operator $sub failed (exit $rc); command: $CLI $sub --output json $*"
  fi
  sed 's/^/    /' "$WORK/$name.json" >&2
}

# --- 1. registries and Helm repository --------------------------------------------------
log "starting registry A (source) and registry B (destination)"
start_registry registry-a "$WORK/registry-a/storage"
REG_A=$REGISTRY_ADDR
start_registry registry-b "$WORK/registry-b/storage"
REG_B=$REGISTRY_ADDR
log "registry A: http://$REG_A   registry B: http://$REG_B"

log "packaging a Helm chart (helm create demo-chart + helm package + helm repo index)"
mkdir -p "$WORK/charts" "$WORK/helm-repo"
helm create "$WORK/charts/demo-chart" >/dev/null
helm package "$WORK/charts/demo-chart" -d "$WORK/helm-repo" >/dev/null
CHART_VERSION=$(awk '/^version:/{print $2; exit}' "$WORK/charts/demo-chart/Chart.yaml")
HELM_PORT=""
for _ in 1 2 3 4 5; do
  HELM_PORT=$(free_port)
  helm repo index "$WORK/helm-repo" --url "http://127.0.0.1:$HELM_PORT"
  spawn "$WORK/helm-repo.log" python3 -m http.server "$HELM_PORT" --bind 127.0.0.1 --directory "$WORK/helm-repo"
  if wait_http "http://127.0.0.1:$HELM_PORT/index.yaml" "$SPAWNED_PID" 10; then
    break
  fi
  HELM_PORT=""
done
[[ -n "$HELM_PORT" ]] || die "could not start the Helm repository server (log: $WORK/helm-repo.log)"
HELM_REPO=http://127.0.0.1:$HELM_PORT
log "Helm repository: $HELM_REPO (demo-chart $CHART_VERSION)"

# --- 2. a multi-arch image in registry A, made by crane ------------------------------------
SRC_IMAGE=$REG_A/demo/hello:1.0.0
log "creating the multi-arch image $SRC_IMAGE with crane (linux/amd64 + linux/arm64)"
children=()
for platform in linux/amd64 linux/arm64; do
  arch=${platform#linux/}
  mkdir -p "$WORK/layer-$arch"
  for i in 1 2; do
    head -c $((1024 * 1024 * (2 + i))) /dev/urandom >"$WORK/layer-$arch/data-$i.bin"
    tar -C "$WORK/layer-$arch" -cf "$WORK/layer-$arch-$i.tar" "data-$i.bin"
  done
  ref=$REG_A/demo/hello:1.0.0-$arch
  crane append --oci-empty-base -f "$WORK/layer-$arch-1.tar" -f "$WORK/layer-$arch-2.tar" -t "$ref" \
    >/dev/null 2>"$WORK/crane.log" || die "crane append failed: $(cat "$WORK/crane.log")"
  crane mutate --set-platform "$platform" "$ref" -t "$ref" \
    >/dev/null 2>"$WORK/crane.log" || die "crane mutate failed: $(cat "$WORK/crane.log")"
  children+=(-m "$ref")
done
crane index append "${children[@]}" -t "$SRC_IMAGE" \
  >/dev/null 2>"$WORK/crane.log" || die "crane index append failed: $(cat "$WORK/crane.log")"
SRC_DIGEST=$(crane digest "$SRC_IMAGE")
log "source index $SRC_IMAGE = $SRC_DIGEST"

# --- 3. copies with our CLI -----------------------------------------------------------------
DST_IMAGE=$REG_B/mirror/hello:1.0.0
run_cli copy-all copy --from-plain-http --to-plain-http "$SRC_IMAGE" "$DST_IMAGE"
DST_DIGEST=$(crane digest "$DST_IMAGE")
[[ "$DST_DIGEST" == "$SRC_DIGEST" ]] || die "digest mismatch: source $SRC_DIGEST, destination $DST_DIGEST"
[[ "$(json_get "$WORK/copy-all.json" digest)" == "$SRC_DIGEST" ]] || die "--output json reports a different digest than crane"
for arch in amd64 arm64; do
  d=$(crane digest --platform "linux/$arch" "$DST_IMAGE") || die "crane cannot resolve linux/$arch in $DST_IMAGE"
  [[ "$d" == "$(crane digest --platform "linux/$arch" "$SRC_IMAGE")" ]] || die "linux/$arch child differs"
done
log "verified: crane digest $DST_IMAGE = $DST_DIGEST (same as the source, both children present)"

ARM_IMAGE=$REG_B/mirror/hello:1.0.0-arm64-only
run_cli copy-arm64 copy --from-plain-http --to-plain-http --platform linux/arm64 "$SRC_IMAGE" "$ARM_IMAGE"
ARM_DIGEST=$(crane digest "$ARM_IMAGE")
[[ "$(json_get "$WORK/copy-arm64.json" digest)" == "$ARM_DIGEST" ]] || die "--platform copy: reported digest differs from crane digest $ARM_DIGEST"
platforms=$(crane manifest "$ARM_IMAGE" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(" ".join(d["platform"]["os"]+"/"+d["platform"]["architecture"] for d in m.get("manifests",[])))')
[[ "$platforms" == "linux/arm64" ]] || die "--platform linux/arm64 copy holds platforms '$platforms'"
log "verified: $ARM_IMAGE is a rewritten index with only linux/arm64 ($ARM_DIGEST)"

DST_CHART=$REG_B/charts/demo-chart:$CHART_VERSION
run_cli copy-chart copy --from-helm-repo "$HELM_REPO" --to-plain-http "demo-chart:$CHART_VERSION" "$DST_CHART"
mkdir -p "$WORK/pulled"
helm pull "oci://$REG_B/charts/demo-chart" --version "$CHART_VERSION" --plain-http -d "$WORK/pulled" \
  >"$WORK/helm-pull.log" 2>&1 || die "helm pull failed: $(cat "$WORK/helm-pull.log")"
cmp -s "$WORK/pulled/demo-chart-$CHART_VERSION.tgz" "$WORK/helm-repo/demo-chart-$CHART_VERSION.tgz" ||
  die "helm pull oci:// returned a different .tgz than the Helm repository serves"
helm template demo "$WORK/pulled/demo-chart-$CHART_VERSION.tgz" >"$WORK/rendered.yaml" 2>"$WORK/helm-template.log" ||
  die "helm template failed: $(cat "$WORK/helm-template.log")"
CHART_DIGEST=$(crane digest "$DST_CHART")
log "verified: helm pull oci://$REG_B/charts/demo-chart --version $CHART_VERSION gives the repository's exact .tgz; helm template renders $(grep -c '^kind:' "$WORK/rendered.yaml") objects"

cat >"$WORK/nf-template.json" <<'EOF'
{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
 "contentVersion": "1.0.0.0", "resources": []}
EOF
DST_FILE=$REG_B/templates/nf-arm-template:1.0.0
(cd "$WORK" && run_cli push push --to-plain-http "$DST_FILE" "nf-template.json:application/json")
mkdir -p "$WORK/oras-pull"
oras pull --plain-http -o "$WORK/oras-pull" "$DST_FILE" >"$WORK/oras.log" 2>&1 || die "oras pull failed: $(cat "$WORK/oras.log")"
cmp -s "$WORK/oras-pull/nf-template.json" "$WORK/nf-template.json" || die "oras pull returned different bytes"
FILE_DIGEST=$(crane digest "$DST_FILE")
log "verified: oras pull $DST_FILE returns the same nf-template.json"

run_cli recopy copy --from-plain-http --to-plain-http "$SRC_IMAGE" "$DST_IMAGE"
[[ "$(json_get "$WORK/recopy.json" blobsCopied)" == 0 ]] || die "the re-copy moved blobs although the destination was complete"
log "verified: re-running the copy moved no blobs"

# --- 4. summary ---------------------------------------------------------------------------
summary_row() { # name label
  python3 - "$WORK/$1.json" "$2" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | `{j['reference']}` | `{j['digest'][:19]}…` | {j['bytes']} | "
      f"{j['blobsCopied']}/{j['blobsSkipped']}/{j['blobsMounted']} | {j['seconds']:.2f} |")
PY
}
{
  echo
  echo "== aosm-artifact-operator demo: done =="
  echo "Source registry A: $REG_A    destination registry B: $REG_B    Helm repository: $HELM_REPO"
  echo
  echo "| step | destination | digest | bytes | blobs copied/skipped/mounted | seconds |"
  echo "|---|---|---|---|---|---|"
  summary_row copy-all "multi-arch image (whole index)"
  summary_row copy-arm64 "same image, --platform linux/arm64"
  summary_row copy-chart "Helm chart from $HELM_REPO"
  summary_row push "file pushed as OCI artifact"
  summary_row recopy "re-copy of the image (no-op)"
  echo
  echo "Checked with independent tools:"
  echo "  crane digest  $SRC_IMAGE = $SRC_DIGEST"
  echo "  crane digest  $DST_IMAGE = $DST_DIGEST (identical)"
  echo "  crane digest  $ARM_IMAGE = $ARM_DIGEST (index rewritten: linux/arm64 only)"
  echo "  crane digest  $DST_CHART = $CHART_DIGEST; helm pull oci:// + helm template work"
  echo "  crane digest  $DST_FILE = $FILE_DIGEST; oras pull returns the same bytes"
}
if [[ "${KEEP:-0}" == 1 ]]; then
  log "KEEP=1: try e.g.  crane ls $REG_B/mirror/hello   (with PATH from: scripts/tools.sh --env)"
fi
