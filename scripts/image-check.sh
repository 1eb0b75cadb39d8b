#!/usr/bin/env bash
# End-to-end check of `make image` (not part of `make test`): builds and pushes the image
# into a local docker-registry with scripts/image.sh, then, with crane only:
#   - the config: user 65532:65532, entrypoint, cmd, platform, OCI labels;
#   - the manifest: two gzip layers; a second assembly gives the same digest;
#   - `crane export`: exactly the expected files, owners and modes;
#   - the exported binary is static and runs: `--version` and `crds`, directly and chrooted
#     into the exported root file system as 65532 (when root);
#   - TLS from inside that root file system (when root): the binary copies the image into a
#     second, https-only registry whose certificate is signed by a test CA — refused with
#     the image's own CA bundle alone (so the bundle is what it trusts), accepted with
#     SSL_CERT_FILE=<test CA>, and with SSL_CERT_DIR=/etc/ssl/certs too (what the Helm chart
#     sets); the registry name is resolved through /etc/hosts by musl, as in a pod.
# KEEP=1 leaves the registries and the work directory in place.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_NAME="image-check"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
lib_init

NAME=aosm-artifact-operator
BIN_PATH=/usr/local/bin/$NAME
bin=$(bash "$ROOT/scripts/tools.sh" --image | tail -n 1) || die "scripts/tools.sh --image failed"
export PATH="$bin:$PATH"
lib_tmpdir WORK
version=$(awk -F'"' '/^version *=/ {print $2; exit}' "$ROOT/Cargo.toml")
ok() { log "ok: $*"; }

start_registry plain "$WORK/plain/storage"
image="$REGISTRY_ADDR/$NAME:$version"

# --- build, assemble, push ------------------------------------------------------------
# Pinned for both assemblies: other commits may land while this runs.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct)}
export IMAGE_REVISION=${IMAGE_REVISION:-$(git -C "$ROOT" rev-parse HEAD)}
INSECURE=1 bash "$ROOT/scripts/image.sh" "$image" | tee "$WORK/image.out"
ref=$(tail -n 1 "$WORK/image.out")
digest=${ref#*@}
built=$(awk '/^binary:/ {print $NF}' "$WORK/image.out" | tr -d ')')
[[ "$(crane digest --insecure "$image")" == "$digest" ]] || die "the registry's digest for $image is not $digest"
ok "pushed $ref"

again=$(AOSM_IMAGE_BIN=$built NO_PUSH=1 bash "$ROOT/scripts/image.sh" "$image" 2>/dev/null | tail -n 1)
[[ "${again#*@}" == "$digest" ]] || die "a second assembly gave ${again#*@}, not $digest (not deterministic)"
ok "a second assembly of the same binary gives the same digest"

# --- config and manifest --------------------------------------------------------------
crane config --insecure "$image" >"$WORK/config.json"
crane manifest --insecure "$image" >"$WORK/manifest.json"
python3 - "$WORK/config.json" "$WORK/manifest.json" "$BIN_PATH" "$version" <<'PY' || die "config/manifest check failed"
import json, sys
config, manifest = (json.load(open(p)) for p in sys.argv[1:3])
bin_path, version = sys.argv[3:5]
c = config["config"]
want = {
    "User": "65532:65532",
    "Entrypoint": [bin_path],
    "Cmd": ["run"],
    "Env": ["PATH=/usr/local/bin"],
}
for k, v in want.items():
    assert c.get(k) == v, f"config.{k} = {c.get(k)!r}, want {v!r}"
assert (config["os"], config["architecture"]) == ("linux", "amd64"), "platform"
labels = c["Labels"]
assert labels["org.opencontainers.image.version"] == version, labels
for k in ("source", "revision", "created"):
    assert labels.get("org.opencontainers.image." + k), f"label org.opencontainers.image.{k} missing"
assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
assert [l["mediaType"] for l in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"] * 2
assert len(config["rootfs"]["diff_ids"]) == 2 and len(config["history"]) == 2
print(f"  user {c['User']}, entrypoint {c['Entrypoint']}, cmd {c['Cmd']}, "
      f"revision {labels['org.opencontainers.image.revision'][:12]}, source {labels['org.opencontainers.image.source']}")
PY
ok "config and manifest"

# --- the file system ------------------------------------------------------------------
crane export --insecure "$image" "$WORK/rootfs.tar"
python3 - "$WORK/rootfs.tar" "$BIN_PATH" <<'PY' || die "file system check failed"
import sys, tarfile
tar, bin_path = sys.argv[1:3]
want = {  # path: (type, mode, uid, gid)
    "etc": ("d", 0o755, 0, 0),
    "etc/group": ("f", 0o644, 0, 0),
    "etc/passwd": ("f", 0o644, 0, 0),
    "etc/ssl": ("d", 0o755, 0, 0),
    "etc/ssl/certs": ("d", 0o755, 0, 0),
    "etc/ssl/certs/ca-certificates.crt": ("f", 0o644, 0, 0),
    "tmp": ("d", 0o1777, 0, 0),
    "usr": ("d", 0o755, 0, 0),
    "usr/local": ("d", 0o755, 0, 0),
    "usr/local/bin": ("d", 0o755, 0, 0),
    bin_path.lstrip("/"): ("f", 0o755, 0, 0),
}
got = {}
with tarfile.open(tar) as t:
    for m in t.getmembers():
        kind = "d" if m.isdir() else "f" if m.isfile() else "other"
        got[m.name.strip("/").removeprefix("./")] = (kind, m.mode, m.uid, m.gid)
extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
assert not extra and not missing, f"unexpected files {extra}, missing {missing}"
for path, w in want.items():
    assert got[path] == w, f"{path}: {got[path]} (type, mode, uid, gid), want {w}"
for path in sorted(want):
    kind, mode, uid, gid = got[path]
    print(f"  {kind} {mode:04o} {uid}:{gid} /{path}")
PY
ok "exactly the expected files, owners and modes"

rootfs=$WORK/rootfs
mkdir -p "$rootfs"
tar -xpf "$WORK/rootfs.tar" -C "$rootfs"
grep -q '^nonroot:x:65532:65532:' "$rootfs/etc/passwd" || die "/etc/passwd has no nonroot 65532"
kind=$(file -b "$rootfs$BIN_PATH")
[[ "$kind" == *"static"* ]] || die "the image's binary is not static: $kind"
ok "${kind%%, BuildID*}"

"$rootfs$BIN_PATH" --version | grep -qx "$NAME $version" || die "$BIN_PATH --version"
n_crds=$("$rootfs$BIN_PATH" crds | grep -c '^kind: CustomResourceDefinition')
[[ "$n_crds" == "$(find "$ROOT/crds" -name '*.yaml' | wc -l)" ]] || die "crds printed $n_crds CRDs"
ok "runs from the exported file system: --version, crds ($n_crds CRDs)"

if [[ $(id -u) -ne 0 ]] || ! chroot "$rootfs" "$BIN_PATH" --version >/dev/null 2>&1; then
  log "skipped: the chroot checks need root (and chroot)"
  log "image check passed (without chroot): $ref"
  exit 0
fi
[[ "$(chroot --userspec=65532:65532 "$rootfs" "$BIN_PATH" --version)" == "$NAME $version" ]] ||
  die "chrooted --version as 65532 failed"
ok "chroot into the image's file system as 65532: --version"

# --- TLS from inside the image --------------------------------------------------------
pki=$WORK/pki
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=image-check test CA" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=registry.image-check.test" \
  -keyout "$pki/tls.key" -out "$pki/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:registry.image-check.test\n' >"$pki/ext"
openssl x509 -req -in "$pki/tls.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 2 -extfile "$pki/ext" -out "$pki/tls.crt" 2>/dev/null
tls_port=$(free_port)
mkdir -p "$WORK/tls/storage"
cat >"$WORK/tls/registry.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/tls/storage}}
http:
  addr: 127.0.0.1:$tls_port
  tls: {certificate: $pki/tls.crt, key: $pki/tls.key}
EOF
spawn "$WORK/tls/registry.log" docker-registry serve "$WORK/tls/registry.yml"
tls_pid=$SPAWNED_PID
for ((i = 0; i < 150; i++)); do
  curl -s -o /dev/null --cacert "$pki/ca.crt" --resolve "registry.image-check.test:$tls_port:127.0.0.1" \
    "https://registry.image-check.test:$tls_port/v2/" && break
  kill -0 "$tls_pid" 2>/dev/null || die "the TLS registry exited: $(cat "$WORK/tls/registry.log")"
  sleep 0.1
done
# What a pod gets from the kubelet: /etc/hosts. The test CA goes in /tmp (the emptyDir).
printf '127.0.0.1 localhost\n127.0.0.1 registry.image-check.test\n' >"$rootfs/etc/hosts"
install -m 0644 "$pki/ca.crt" "$rootfs/tmp/test-ca.crt"
dest="registry.image-check.test:$tls_port/copied/$NAME:$version"

if out=$(chroot --userspec=65532:65532 "$rootfs" "$BIN_PATH" copy --from-plain-http "$image" "$dest" 2>&1); then
  die "the copy to a registry signed by an unknown CA succeeded without SSL_CERT_FILE"
fi
grep -qi "certificate\|issuer" <<<"$out" || die "expected a certificate error, got: $out"
grep -qi "no CA certificates" <<<"$out" && die "the image's CA bundle was not loaded: $out"
ok "without SSL_CERT_FILE: refused: $(tail -n 1 <<<"$out" | cut -c1-200)"

# SSL_CERT_FILE adds the test CA to the image's bundle (the CLI way); then with SSL_CERT_DIR
# as well (what the Helm chart sets).
for env in "SSL_CERT_FILE=/tmp/test-ca.crt" "SSL_CERT_FILE=/tmp/test-ca.crt SSL_CERT_DIR=/etc/ssl/certs"; do
  # shellcheck disable=SC2086 # $env is a list of assignments
  env $env chroot --userspec=65532:65532 "$rootfs" "$BIN_PATH" copy --from-plain-http --output json \
    "$image" "$dest" >"$WORK/copy.json" || die "the copy from inside the image failed ($env)"
  copied=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["digest"])' "$WORK/copy.json")
  [[ "$copied" == "$digest" ]] || die "copied digest $copied, want $digest"
  ok "inside the image, as 65532, with $env: copied itself to https://$dest (same digest)"
done
log "image check passed: $ref"
