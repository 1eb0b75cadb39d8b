#!/usr/bin/env bash
# Builds the controller image without a Docker engine and pushes it: a static musl binary
# (cargo --target x86_64-unknown-linux-musl), two deterministic tar layers assembled here
# into an OCI image layout, pushed with crane. `make image IMAGE=...` runs it; the
# Dockerfile builds the same file system with Docker.
#
# The image (FROM scratch, linux/amd64):
#   layer 1  /etc/passwd, /etc/group (root 0, nonroot 65532), /etc/ssl/certs/ca-certificates.crt
#            (this machine's Debian ca-certificates bundle), /tmp (1777)
#   layer 2  /usr/local/bin/aosm-artifact-operator (0755)
#   config   User 65532:65532, Entrypoint [/usr/local/bin/aosm-artifact-operator], Cmd [run],
#            Env PATH=/usr/local/bin, org.opencontainers.image.* labels (source, version, revision)
# Layers are sorted, owned by 0:0, and every time stamp is SOURCE_DATE_EPOCH (default: the
# HEAD commit's time), so the same binary gives the same digest.
#
# Usage: scripts/image.sh IMAGE          # e.g. 127.0.0.1:5000/aosm-artifact-operator:0.1.0
#        scripts/image.sh --binary       # only build (or reuse) the static binary; prints its path
#                                        # (`make test` starts this early, so the node tier finds it built)
#   INSECURE=1        the registry speaks plain HTTP (or has an untrusted certificate)
#   IMAGE_LAYOUT=DIR  also keep the OCI image layout in DIR (created; must not exist)
#   NO_PUSH=1         assemble only (IMAGE is then just the name written into the layout)
#   AOSM_IMAGE_TARGET_DIR  cargo target dir (default ~/.cache/aosm-artifact-operator/target-image,
#                     outside the repo so repeated builds are warm)
#   AOSM_IMAGE_BIN    use this static binary instead of building one
#   IMAGE_SOURCE      org.opencontainers.image.source (default: git remote origin, else
#                     the chart's `sources`)
#   IMAGE_REVISION    org.opencontainers.image.revision (default: git rev-parse HEAD)
#   SOURCE_DATE_EPOCH time stamp of the files, the config and the labels (default: HEAD's)
# Credentials for the registry: crane reads ~/.docker/config.json (`crane auth login`).
# Prints the digest, the compressed size (layers + config) and the uncompressed size;
# the last line of stdout is IMAGE@DIGEST.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_NAME=image
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
lib_init

BINARY_ONLY=
if [[ "${1:-}" == "--binary" ]]; then
  BINARY_ONLY=1
else
  IMAGE=${1:-${IMAGE:-}}
  [[ -n "$IMAGE" ]] || die "usage: scripts/image.sh IMAGE (or: make image IMAGE=host[:port]/repo:tag [INSECURE=1])"
  [[ "$IMAGE" == */*:* || "$IMAGE" == */*@* ]] || die "IMAGE=$IMAGE: expected HOST[:PORT]/REPO:TAG"
fi
TARGET=x86_64-unknown-linux-musl
NAME=aosm-artifact-operator
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

# --- tools: crane, plus the musl target and musl-gcc ------------------------------
bin=$(bash "$ROOT/scripts/tools.sh" --image | tail -n 1) || die "scripts/tools.sh --image failed"
export PATH="$bin:$PATH"
[[ -s "$CA_BUNDLE" ]] || die "$CA_BUNDLE is missing (apt-get install ca-certificates)"

# --- static binary ----------------------------------------------------------------
if [[ -n "${AOSM_IMAGE_BIN:-}" ]]; then
  binary=$AOSM_IMAGE_BIN
  [[ -x "$binary" ]] || die "AOSM_IMAGE_BIN=$binary is not an executable"
  log "using AOSM_IMAGE_BIN=$binary (no build)"
else
  target_dir=${AOSM_IMAGE_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/aosm-artifact-operator/target-image}
  log "cargo build --release --target $TARGET (CARGO_TARGET_DIR=$target_dir)"
  start=$(date +%s)
  # aws-lc-sys and ring compile C: for musl they need musl-gcc (Debian musl-tools).
  # Symbols are stripped (panic messages stay); debug info is already off in release.
  (cd "$ROOT" && CARGO_TARGET_DIR="$target_dir" CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --quiet --target "$TARGET" --bin "$NAME") >&2 ||
    die "cargo build --target $TARGET failed"
  binary="$target_dir/$TARGET/release/$NAME"
  log "built $binary in $(($(date +%s) - start)) s"
fi
kind=$(file -b "$binary")
[[ "$kind" == *"statically linked"* || "$kind" == *"static-pie linked"* ]] ||
  die "$binary is not static: $kind"
if ldd "$binary" 2>&1 | grep -q '=>'; then die "$binary links shared libraries: $(ldd "$binary" 2>&1)"; fi
log "static: ${kind%%, BuildID*}"
"$binary" --version >/dev/null || die "$binary --version failed"
if [[ -n "$BINARY_ONLY" ]]; then
  echo "$binary"
  exit 0
fi

# --- metadata -----------------------------------------------------------------------
version=$(awk -F'"' '/^version *=/ {print $2; exit}' "$ROOT/Cargo.toml")
revision=${IMAGE_REVISION:-$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)}
if [[ -z "${IMAGE_REVISION:-}" && -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  log "note: the working tree has uncommitted changes; the revision label names HEAD ($revision)"
fi
source_url=${IMAGE_SOURCE:-$(git -C "$ROOT" remote get-url origin 2>/dev/null || true)}
if [[ -z "$source_url" ]]; then
  source_url=$(awk '/^sources:/ {getline; sub(/^ *- */, ""); print; exit}' "$ROOT/charts/$NAME/Chart.yaml" 2>/dev/null || true)
fi
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}

# --- OCI image layout -----------------------------------------------------------------
if [[ -n "${IMAGE_LAYOUT:-}" ]]; then
  [[ ! -e "$IMAGE_LAYOUT" ]] || die "IMAGE_LAYOUT=$IMAGE_LAYOUT exists; give a new directory"
  layout=$IMAGE_LAYOUT
else
  lib_tmpdir WORK
  layout=$WORK/layout
fi
summary=$(python3 - "$layout" "$binary" "$CA_BUNDLE" "$epoch" "$IMAGE" "$version" "$revision" "$source_url" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile, time

layout, binary, ca_bundle, epoch, image, version, revision, source = sys.argv[1:]
epoch = int(epoch)
name = "aosm-artifact-operator"
created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
blobs = os.path.join(layout, "blobs", "sha256")
os.makedirs(blobs)


def put(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest


def layer(entries):
    """entries: (path, mode, uid, gid, bytes or None for a directory); sorted by path."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, mode, uid, gid, data in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(path)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, epoch
            info.uname = info.gname = "root" if uid == 0 else ""
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, compresslevel=9, mtime=0) as f:
        f.write(tar_bytes)
    gz_bytes = gz.getvalue()
    return {
        "diff_id": "sha256:" + hashlib.sha256(tar_bytes).hexdigest(),
        "digest": put(gz_bytes),
        "size": len(gz_bytes),
        "tar_size": len(tar_bytes),
    }


def read(path):
    with open(path, "rb") as f:
        return f.read()


passwd = b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n"
group = b"root:x:0:\nnonroot:x:65532:\n"
base = layer([
    ("etc", 0o755, 0, 0, None),
    ("etc/group", 0o644, 0, 0, group),
    ("etc/passwd", 0o644, 0, 0, passwd),
    ("etc/ssl", 0o755, 0, 0, None),
    ("etc/ssl/certs", 0o755, 0, 0, None),
    ("etc/ssl/certs/ca-certificates.crt", 0o644, 0, 0, read(ca_bundle)),
    ("tmp", 0o1777, 0, 0, None),
])
app = layer([
    ("usr", 0o755, 0, 0, None),
    ("usr/local", 0o755, 0, 0, None),
    ("usr/local/bin", 0o755, 0, 0, None),
    ("usr/local/bin/" + name, 0o755, 0, 0, read(binary)),
])
layers = [base, app]

annotations = {
    "org.opencontainers.image.created": created,
    "org.opencontainers.image.description": "Kubernetes operator and CLI that moves OCI artifacts to and from Azure Operator Service Manager artifact stores",
    "org.opencontainers.image.licenses": "MIT",
    "org.opencontainers.image.revision": revision,
    "org.opencontainers.image.title": name,
    "org.opencontainers.image.version": version,
}
if source:
    annotations["org.opencontainers.image.source"] = source
config = {
    "created": created,
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "User": "65532:65532",
        "Env": ["PATH=/usr/local/bin"],
        "Entrypoint": ["/usr/local/bin/" + name],
        "Cmd": ["run"],
        "WorkingDir": "/",
        "Labels": annotations,
    },
    "rootfs": {"type": "layers", "diff_ids": [l["diff_id"] for l in layers]},
    "history": [
        {"created": created, "created_by": "scripts/image.sh: /etc/passwd, /etc/group, /etc/ssl/certs/ca-certificates.crt, /tmp"},
        {"created": created, "created_by": "scripts/image.sh: /usr/local/bin/" + name},
    ],
}
config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
config_digest = put(config_bytes)
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config_bytes)},
    "layers": [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l["digest"], "size": l["size"]}
        for l in layers
    ],
    "annotations": annotations,
}
manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
manifest_digest = put(manifest_bytes)
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest,
        "size": len(manifest_bytes),
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"org.opencontainers.image.ref.name": image},
    }],
}
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump(index, f, indent=2)
with open(os.path.join(layout, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
print(json.dumps({
    "digest": manifest_digest,
    "compressed": sum(l["size"] for l in layers) + len(config_bytes),
    "uncompressed": sum(l["tar_size"] for l in layers),
    "layers": [l["size"] for l in layers],
    "binary": os.path.getsize(binary),
}))
PY
) || die "assembling the OCI image layout failed"
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$summary" "$1"; }
digest=$(field digest)
compressed=$(field compressed)
uncompressed=$(field uncompressed)
binary_size=$(field binary)
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }

# --- push --------------------------------------------------------------------------
if [[ "${NO_PUSH:-0}" == 1 ]]; then
  log "NO_PUSH=1: not pushing"
else
  crane_flags=()
  [[ "${INSECURE:-0}" == 1 ]] && crane_flags+=(--insecure)
  log "crane push $layout $IMAGE ${crane_flags[*]}"
  pushed=$(crane push "${crane_flags[@]}" "$layout" "$IMAGE") || die "crane push to $IMAGE failed"
  [[ "$pushed" == *"@$digest" ]] || die "crane pushed $pushed, expected digest $digest"
fi

repo=${IMAGE%@*}
[[ "$repo" == *:* && "${repo##*/}" == *:* ]] && repo=${repo%:*}
cat <<EOF
image:         $IMAGE
digest:        $digest
compressed:    $compressed bytes ($(mib "$compressed"); layers + config, what a pull downloads)
uncompressed:  $uncompressed bytes ($(mib "$uncompressed"); the layer tars)
binary:        $binary_size bytes ($(mib "$binary_size"); $binary)
labels:        version=$version revision=$revision${source_url:+ source=$source_url}
${IMAGE_LAYOUT:+layout:        $IMAGE_LAYOUT
}$repo@$digest
EOF
