#!/usr/bin/env bash
# `make bench-controller`: N ArtifactTransfers of small artifacts through the controller
# against the local stack (real etcd + kube-apiserver, real docker-registry instances,
# aosm-emulator for Entra/ARM/ACR tokens). Not a test: it prints numbers.
#
#  1. installs/caches the pinned tools, builds aosm-artifact-operator and aosm-emulator
#     (release);
#  2. starts a local control plane (scripts/cluster.sh), installs the CRDs, starts a plain
#     HTTP source registry (access log on) and pushes N distinct small images to it with
#     crane (each: one layer of LAYER_BYTES random bytes);
#  3. starts aosm-emulator seeded with a publisher, an ACR-backed store and MANIFESTS
#     artifact manifests listing the N artifacts between them (version 1.0.0), applies a
#     Secret + ClusterArtifactStore, starts the controller and waits for /readyz and the
#     store's Ready condition;
#  4. applies N ArtifactTransfers (source registry -> store) and polls the API server until
#     all are Ready: wall time from the start of `kubectl apply` to the last Ready, the
#     controller's peak RSS (VmHWM), ARM calls, Entra/ACR tokens and registry requests;
#  5. steady state: with everything Ready, counts the same requests (and the controller's
#     reconciles and CPU time) over a window of STEADY_SECONDS and prints them per minute.
#     The target is zero until `interval` (default 1h) comes round;
#  6. checks every transfer's status digest against the digest crane pushed and against
#     the tag in the store registry's own storage, prints a markdown table and stops
#     everything (KEEP=1 leaves it all running).
#
# Where the numbers come from: ARM calls and tokens from the emulator's GET
# /_emulator/stats; store registry requests from the emulator registry's log
# (distribution logs one line per request: "response completed", "response completed
# with error", or "error authorizing context" for a 401 challenge); source registry
# requests from its access log; listCredential calls, reconciles and transfers from the
# controller's /metrics; RSS and CPU time from /proc/<pid>/status and /proc/<pid>/stat.
#
# Environment:
#   N=200                number of transfers (and distinct images)
#   MANIFESTS=4          AOSM artifact manifests the N artifacts are spread over
#   CONCURRENCY=4        controller --concurrency (its default)
#   LAYER_BYTES=4096     random bytes in each image's single layer
#   INTERVAL=            spec.interval of every transfer (empty: the CRD default, 1h)
#   STEADY_SECONDS=60    length of the steady-state measurement window
#   READY_TIMEOUT=900    seconds to wait for all transfers to become Ready
#   POLL_SECONDS=0.5     how often the API server is asked how many are Ready
#   BENCH_OUT=file       also write the markdown report to this file
#   AOSM_BIN / AOSM_EMULATOR_BIN   use these binaries instead of cargo build --release
#   AOSM_KUBE_ASSETS     directory holding kube-apiserver and etcd (see scripts/cluster.sh)
#   KEEP=1               keep everything running after the run (prints how to stop it)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_NAME=bench-controller
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
lib_init

N=${N:-200}
MANIFESTS=${MANIFESTS:-4}
CONCURRENCY=${CONCURRENCY:-4}
LAYER_BYTES=${LAYER_BYTES:-4096}
INTERVAL=${INTERVAL:-}
STEADY_SECONDS=${STEADY_SECONDS:-60}
READY_TIMEOUT=${READY_TIMEOUT:-900}
POLL_SECONDS=${POLL_SECONDS:-0.5}
for v in N MANIFESTS CONCURRENCY LAYER_BYTES STEADY_SECONDS READY_TIMEOUT; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ "$POLL_SECONDS" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "POLL_SECONDS must be a number (got '$POLL_SECONDS')"
((MANIFESTS <= N)) || die "MANIFESTS ($MANIFESTS) must not exceed N ($N)"
if [[ -n "$INTERVAL" && ! "$INTERVAL" =~ ^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$ ]]; then
  die "INTERVAL must be a Go duration like 30s or 1h (got '$INTERVAL')"
fi

tools_path "$ROOT"
if [[ -n "${AOSM_BIN:-}" ]]; then
  CLI=$(find_cli "$ROOT")
else
  log "building: cargo build --release (operator) and -p aosm-emulator"
  (cd "$ROOT" && cargo build --release --quiet) >&2 || die "cargo build --release failed"
  CLI=$ROOT/target/release/aosm-artifact-operator
fi
if [[ -n "${AOSM_EMULATOR_BIN:-}" ]]; then
  EMULATOR=$AOSM_EMULATOR_BIN
else
  (cd "$ROOT" && cargo build --release --quiet -p aosm-emulator) >&2 || die "cargo build --release -p aosm-emulator failed"
  EMULATOR=$ROOT/target/release/aosm-emulator
fi
[[ -x "$EMULATOR" ]] || die "$EMULATOR is not an executable"
for cmd in crane kubectl docker-registry curl python3 openssl; do
  command -v "$cmd" >/dev/null || die "$cmd not found (scripts/tools.sh should have installed it)"
done
KUBE_ASSETS=$(kube_assets "$ROOT")
for b in etcd kube-apiserver; do
  [[ -x "$KUBE_ASSETS/$b" ]] || die "$KUBE_ASSETS/$b is missing: run scripts/tools.sh (or set AOSM_KUBE_ASSETS / KUBEBUILDER_ASSETS)"
done

lib_tmpdir WORK
export DOCKER_CONFIG=$WORK/docker KUBECACHEDIR=$WORK/kubectl-cache
mkdir -p "$DOCKER_CONFIG"
PY=$WORK/bench.py
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ----- helpers (python: JSON, YAML rendering, polling the API server, counters) ------------
cat >"$PY" <<'PY'
import base64, json, os, re, ssl, sys, time, urllib.request

SUB = "00000000-0000-0000-0000-0000000000b0"
RG = "bench-rg"
PUBLISHER = "bench"
STORE = "bench-store"
NS = "bench"


def name(i):
    return f"bench-app-{i:04d}"


def manifest_of(i, m):
    return f"bench-manifest-{(i - 1) % m + 1}"


def seed(n, m):
    base = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.HybridNetwork/publishers/{PUBLISHER}"
    out = [
        {"id": base, "location": "eastus", "properties": {"scope": "Private"}},
        {"id": f"{base}/artifactStores/{STORE}", "location": "eastus",
         "properties": {"storeType": "AzureContainerRegistry"}},
    ]
    for k in range(1, m + 1):
        arts = [{"artifactName": name(i), "artifactType": "OCIArtifact", "artifactVersion": "1.0.0"}
                for i in range(1, n + 1) if manifest_of(i, m) == f"bench-manifest-{k}"]
        out.append({"id": f"{base}/artifactStores/{STORE}/artifactManifests/bench-manifest-{k}",
                    "location": "eastus", "properties": {"artifacts": arts}})
    json.dump(out, sys.stdout, indent=1)


def store_objects(endpoints, secret):
    e = json.load(open(endpoints))
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "aosm-system"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bench-sp", "namespace": "aosm-system"},
         "stringData": {"tenantId": e["tenantId"], "clientId": e["clientId"], "clientSecret": secret}},
        {"apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ClusterArtifactStore",
         "metadata": {"name": "bench"},
         "spec": {"subscriptionId": SUB, "resourceGroup": RG, "publisher": PUBLISHER,
                  "artifactStore": STORE, "armEndpoint": e["armEndpoint"],
                  "authorityHost": e["authorityHost"],
                  "identity": {"type": "ClientSecret", "secretRef": {"name": "bench-sp"}}}},
    ]
    print("\n---\n".join(json.dumps(d) for d in docs))


def transfers(n, m, source, interval):
    docs = []
    for i in range(1, n + 1):
        spec = {
            "source": {"registry": {"image": f"{source}/bench/{name(i)}:1.0.0", "plainHTTP": True}},
            "destination": {"artifactStore": {
                "storeRef": {"kind": "ClusterArtifactStore", "name": "bench"},
                "manifest": manifest_of(i, m), "artifact": name(i), "version": "1.0.0"}},
        }
        if interval:
            spec["interval"] = interval
        docs.append({"apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ArtifactTransfer",
                     "metadata": {"name": name(i), "namespace": NS}, "spec": spec})
    print("\n---\n".join(json.dumps(d) for d in docs))


class Kube:
    """Talks to the API server with the admin kubeconfig that scripts/cluster.sh writes."""

    def __init__(self, kubeconfig, tmp):
        text = open(kubeconfig).read()
        get = lambda k: re.search(rf"{k}: (\S+)", text).group(1)
        self.server = get("server")
        files = {}
        for k in ("certificate-authority-data", "client-certificate-data", "client-key-data"):
            p = os.path.join(tmp, k)
            with open(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(base64.b64decode(get(k)))
            files[k] = p
        self.ctx = ssl.create_default_context(cafile=files["certificate-authority-data"])
        self.ctx.load_cert_chain(files["client-certificate-data"], files["client-key-data"])

    def transfers(self):
        url = f"{self.server}/apis/artifacts.aosm.dev/v1alpha1/namespaces/{NS}/artifacttransfers"
        with urllib.request.urlopen(url, context=self.ctx, timeout=30) as r:
            return json.load(r)["items"]


def cond(t, typ):
    for c in (t.get("status") or {}).get("conditions", []):
        if c["type"] == typ:
            return c
    return None


def parse_time(s):
    """RFC 3339 (metav1.Time, e.g. 2026-11-28T01:13:00Z) to Unix seconds."""
    from datetime import datetime
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def poll(kubeconfig, tmp, n, t0, timeout, every, controller_pid, out):
    """Polls until n transfers are Ready; writes {"seconds", "first_ready"} to out."""
    kube = Kube(kubeconfig, tmp)
    last_report = 0.0
    while True:
        items = kube.transfers()
        now = time.time()
        ready = sum(1 for t in items if (c := cond(t, "Ready")) and c["status"] == "True")
        stalled = [t for t in items if (c := cond(t, "Stalled")) and c["status"] == "True"]
        if ready >= n and len(items) >= n:
            # completedAt has a resolution of one second: good enough for the first Ready,
            # which may come while `kubectl apply` still runs (before the first poll).
            done = sorted(parse_time(t["status"]["completedAt"]) for t in items)
            json.dump({"seconds": now - t0, "first_ready": done[0] - t0,
                       "last_completed": done[-1] - t0}, open(out, "w"))
            return 0
        if stalled:
            for t in stalled[:5]:
                c = cond(t, "Stalled")
                print(f"  {t['metadata']['name']}: Stalled {c['reason']}: {c['message']}", file=sys.stderr)
            print(f"{len(stalled)} transfer(s) Stalled", file=sys.stderr)
            return 1
        if not os.path.exists(f"/proc/{controller_pid}"):
            print("the controller exited", file=sys.stderr)
            return 1
        if now - t0 > timeout:
            print(f"timeout after {timeout}s: {ready}/{n} Ready", file=sys.stderr)
            return 1
        if now - last_report >= 10:
            print(f"[bench-controller] {now - t0:6.1f}s: {ready}/{n} Ready", file=sys.stderr)
            last_report = now
        time.sleep(every)


def check_digests(kubeconfig, tmp, digests_file, storage):
    """Every transfer's status digest = the source digest = the tag in the store's storage."""
    want = dict(line.split() for line in open(digests_file) if line.strip())
    bad = []
    for t in Kube(kubeconfig, tmp).transfers():
        n = t["metadata"]["name"]
        got = (t.get("status") or {}).get("digest")
        link = os.path.join(storage, "docker/registry/v2/repositories", n,
                            "_manifests/tags/1.0.0/current/link")
        stored = open(link).read().strip() if os.path.exists(link) else None
        if not (got == want.get(n) == stored):
            bad.append(f"{n}: source {want.get(n)} status {got} store {stored}")
    if bad or not want:
        print("\n".join(bad[:10]) or "no digests", file=sys.stderr)
        return 1
    print(len(want))
    return 0


def count_store_requests(log):
    if not os.path.exists(log):
        return 0
    pat = re.compile(r'msg="(response completed( with error)?|error authorizing context)')
    with open(log, errors="replace") as f:
        return sum(1 for line in f if pat.search(line))


def snapshot(admin_url, cafile, metrics_url, store_log, source_log, pid, out):
    ctx = ssl.create_default_context(cafile=cafile)
    with urllib.request.urlopen(f"{admin_url}/stats", context=ctx, timeout=10) as r:
        stats = json.load(r)
    with urllib.request.urlopen(metrics_url, timeout=10) as r:
        metrics = r.read().decode()
    def metric(prefix):
        total = 0.0
        for line in metrics.splitlines():
            if line.startswith(prefix) and line[len(prefix)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status") if ":" in l)
    kib = lambda k: int(status[k].split()[0])
    t = stats.get("tokensIssued", {})
    snap = {
        "time": time.time(),
        "arm": stats["armCalls"],
        "armThrottled": stats["armThrottled"],
        "armErrors": stats["armErrors"],
        "listCredential": stats["listCredentialTotal"],
        "entraTokens": t.get("entra", 0),
        "acrTokens": t.get("acr", 0),
        "storeRequests": count_store_requests(store_log),
        "sourceRequests": sum(1 for _ in open(source_log)) if os.path.exists(source_log) else 0,
        "ctlListCredential": metric("aosm_list_credential_calls_total"),
        "ctlReconciles": metric("aosm_reconciles_total"),
        "ctlTransfers": metric("aosm_transfers_total"),
        "ctlFailures": metric("aosm_transfer_failures_total"),
        "cpu": (int(fields[11]) + int(fields[12])) / tck,
        "hwmKiB": kib("VmHWM"),
        "rssKiB": kib("VmRSS"),
    }
    json.dump(snap, open(out, "w"))


def report(n, m, conc, layer, interval, ready_file, s0, s1, s1b, s2, checked, meta):
    n = int(n)
    r = json.load(open(ready_file))
    a, b, b2, c = (json.load(open(p)) for p in (s0, s1, s1b, s2))
    meta = json.load(open(meta))
    d = lambda x, y, k: y[k] - x[k]
    window = c["time"] - b2["time"]
    pm = lambda k: d(b2, c, k) * 60.0 / window
    secs = r["seconds"]
    lines = [
        f"N={n} transfers (distinct images, 1 layer of {layer} B each) over {m} manifest(s), "
        f"controller --concurrency {conc}, spec.interval {interval or '1h (default)'}.",
        "",
        "| phase | measure | value |",
        "|---|---|---:|",
        f"| to all Ready | wall time from `kubectl apply` to the last Ready | {secs:.1f} s |",
        f"| to all Ready | of which `kubectl apply` of the {n} objects | {meta['applySeconds']:.1f} s |",
        f"| to all Ready | first / last `status.completedAt` after (1 s resolution) | {max(r['first_ready'], 0):.0f} s / {max(r['last_completed'], 0):.0f} s |",
        f"| to all Ready | throughput | {n / secs:.1f} transfers/s |",
        f"| to all Ready | controller peak RSS (VmHWM) | {b['hwmKiB'] / 1024:.1f} MiB |",
        f"| to all Ready | controller CPU time | {d(a, b, 'cpu'):.1f} s |",
        f"| to all Ready | ARM calls (emulator) | {d(a, b, 'arm')} |",
        f"| to all Ready | of which listCredential (emulator / controller metric) | {d(a, b, 'listCredential')} / {d(a, b, 'ctlListCredential'):.0f} |",
        f"| to all Ready | ARM 429 / 5xx answers | {d(a, b, 'armThrottled')} / {d(a, b, 'armErrors')} |",
        f"| to all Ready | Entra tokens / ACR tokens issued | {d(a, b, 'entraTokens')} / {d(a, b, 'acrTokens')} |",
        f"| to all Ready | store registry requests | {d(a, b, 'storeRequests')} ({d(a, b, 'storeRequests') / n:.1f} per transfer) |",
        f"| to all Ready | source registry requests | {d(a, b, 'sourceRequests')} ({d(a, b, 'sourceRequests') / n:.1f} per transfer) |",
        f"| to all Ready | reconciles / completed transfers / failed attempts | {d(a, b, 'ctlReconciles'):.0f} / {d(a, b, 'ctlTransfers'):.0f} / {d(a, b, 'ctlFailures'):.0f} |",
        f"| steady ({window:.0f} s window) | ARM calls per minute | {pm('arm'):.1f} |",
        f"| steady | Entra + ACR tokens per minute | {pm('entraTokens') + pm('acrTokens'):.1f} |",
        f"| steady | store registry requests per minute | {pm('storeRequests'):.1f} |",
        f"| steady | source registry requests per minute | {pm('sourceRequests'):.1f} |",
        f"| steady | reconciles per minute | {pm('ctlReconciles'):.1f} |",
        f"| steady | controller CPU per minute | {pm('cpu'):.2f} s |",
        f"| steady | controller RSS at the end | {c['rssKiB'] / 1024:.1f} MiB |",
        "",
        f"Digests checked: {checked} transfers, status digest = source digest = tag in the store registry.",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "seed":
        seed(int(args[0]), int(args[1]))
    elif cmd == "store-objects":
        store_objects(args[0], os.environ["CLIENT_SECRET"])
    elif cmd == "transfers":
        transfers(int(args[0]), int(args[1]), args[2], args[3])
    elif cmd == "poll":
        sys.exit(poll(args[0], args[1], int(args[2]), float(args[3]), float(args[4]), float(args[5]), args[6], args[7]))
    elif cmd == "check-digests":
        sys.exit(check_digests(*args))
    elif cmd == "snapshot":
        snapshot(*args)
    elif cmd == "report":
        report(*args)
    else:
        sys.exit(f"unknown command {cmd}")
PY

# ----- Kubernetes control plane --------------------------------------------------------------
CLUSTER=$WORK/cluster
# cluster.sh disowns etcd and kube-apiserver: stop them with `down` after our processes.
LIB_HOOKS+=("bash '$ROOT/scripts/cluster.sh' down '$CLUSTER' >/dev/null 2>&1")
if [[ "${KEEP:-0}" == 1 ]]; then
  log "KEEP=1: stop the control plane afterwards with: scripts/cluster.sh down $CLUSTER"
fi
AOSM_KUBE_ASSETS=$KUBE_ASSETS bash "$ROOT/scripts/cluster.sh" up "$CLUSTER" >"$WORK/cluster-up.log" ||
  die "scripts/cluster.sh up failed (see above)"
export KUBECONFIG=$CLUSTER/kubeconfig
kubectl apply --server-side -f "$ROOT/crds/" >/dev/null || die "kubectl apply of crds/ failed"
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null || die "the CRDs did not become Established"
log "control plane: $(awk '/server:/{print $2}' "$KUBECONFIG"), CRDs installed"

# ----- source registry with N distinct small images -----------------------------------------
start_registry source "$WORK/source/storage" "$WORK/source-access.log"
SOURCE=$REGISTRY_ADDR
log "pushing $N images of one ${LAYER_BYTES}-byte random layer to $SOURCE with crane append"
mkdir -p "$WORK/layers"
python3 - "$WORK/layers" "$N" "$LAYER_BYTES" <<'PY'
import io, os, sys, tarfile
out, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(1, n + 1):
    with tarfile.open(os.path.join(out, f"{i:04d}.tar"), "w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo("data.bin"); ti.size = size; ti.mode = 0o644; ti.mtime = 0
        t.addfile(ti, io.BytesIO(os.urandom(size)))
PY
export SOURCE WORK
# shellcheck disable=SC2016 # the script is expanded by sh -c, with the image number in $1
seq -f '%04.0f' 1 "$N" | xargs -P 4 -n 1 sh -c '
  d=$(crane append --insecure -f "$WORK/layers/$1.tar" -t "$SOURCE/bench/bench-app-$1:1.0.0" 2>"$WORK/layers/$1.err") &&
    echo "bench-app-$1 ${d##*@}" >"$WORK/layers/$1.digest" ||
    { cat "$WORK/layers/$1.err" >&2; exit 255; }' sh || die "crane append failed"
cat "$WORK"/layers/*.digest >"$WORK/source-digests.txt"
(($(wc -l <"$WORK/source-digests.txt") == N)) || die "expected $N source digests"

# ----- emulator --------------------------------------------------------------------------------
python3 "$PY" seed "$N" "$MANIFESTS" >"$WORK/seed.json"
start_emulator "$EMULATOR" "$WORK/emulator" "$WORK/seed.json"
CA_FILE=$(emulator_field caFile) ADMIN_URL=$(emulator_field adminUrl) STORE_REGISTRY=$(emulator_field registry)
STORE_LOG=$WORK/emulator/registry/registry.log
STORE_STORAGE=$WORK/emulator/registry/storage
log "emulator: ARM $(emulator_field armEndpoint), store registry $STORE_REGISTRY, $MANIFESTS manifest(s) listing $N artifacts"

# ----- controller ------------------------------------------------------------------------------
python3 "$PY" store-objects "$WORK/emulator/endpoints.json" >"$WORK/store.yaml"
chmod 600 "$WORK/store.yaml"
kubectl apply -f "$WORK/store.yaml" >/dev/null || die "kubectl apply of the store objects failed"
METRICS_ADDR=127.0.0.1:$(free_port)
HEALTH_ADDR=127.0.0.1:$(free_port)
spawn "$WORK/controller.log" env SSL_CERT_FILE="$CA_FILE" KUBECONFIG="$KUBECONFIG" \
  "$CLI" run --namespace aosm-system --concurrency "$CONCURRENCY" \
  --metrics-addr "$METRICS_ADDR" --health-addr "$HEALTH_ADDR" --log-format json
CONTROLLER_PID=$SPAWNED_PID
deadline=$((SECONDS + 60))
until curl -sf -o /dev/null --max-time 1 "http://$HEALTH_ADDR/readyz"; do
  kill -0 "$CONTROLLER_PID" 2>/dev/null || { tail -n 30 "$WORK/controller.log" >&2; die "the controller exited"; }
  ((SECONDS < deadline)) || { tail -n 30 "$WORK/controller.log" >&2; die "the controller was not ready within 60 s"; }
  sleep 0.1
done
kubectl wait --for=condition=Ready clusterartifactstore/bench --timeout=60s >/dev/null ||
  { tail -n 30 "$WORK/controller.log" >&2; die "ClusterArtifactStore bench did not become Ready"; }
log "controller pid $CONTROLLER_PID ready (metrics http://$METRICS_ADDR/metrics); store Ready"

snapshot() {
  python3 "$PY" snapshot "$ADMIN_URL" "$CA_FILE" "http://$METRICS_ADDR/metrics" "$STORE_LOG" \
    "$WORK/source-access.log" "$CONTROLLER_PID" "$1" || die "snapshot of the counters failed"
}

# ----- N transfers to Ready --------------------------------------------------------------------
python3 "$PY" transfers "$N" "$MANIFESTS" "$SOURCE" "$INTERVAL" >"$WORK/transfers.yaml"
snapshot "$WORK/s0.json"
T0=$(date +%s.%N)
kubectl apply -f "$WORK/transfers.yaml" >/dev/null || die "kubectl apply of the transfers failed"
T1=$(date +%s.%N)
log "applied $N ArtifactTransfers in $(python3 -c "print(f'{$T1 - $T0:.1f}')") s; waiting for Ready (timeout ${READY_TIMEOUT}s)"
python3 "$PY" poll "$KUBECONFIG" "$WORK" "$N" "$T0" "$READY_TIMEOUT" "$POLL_SECONDS" "$CONTROLLER_PID" "$WORK/ready.json" ||
  { tail -n 20 "$WORK/controller.log" >&2; die "not all transfers became Ready"; }
snapshot "$WORK/s1.json"
log "all $N Ready after $(python3 -c "import json; print(f\"{json.load(open('$WORK/ready.json'))['seconds']:.1f}\")") s"

CHECKED=$(python3 "$PY" check-digests "$KUBECONFIG" "$WORK" "$WORK/source-digests.txt" "$STORE_STORAGE") ||
  die "digest check failed"

# ----- steady state -----------------------------------------------------------------------------
log "steady state: measuring for ${STEADY_SECONDS}s with everything Ready"
end=$((SECONDS + STEADY_SECONDS))
snapshot "$WORK/s1b.json"
while ((SECONDS < end)); do
  kill -0 "$CONTROLLER_PID" 2>/dev/null || die "the controller exited during the steady-state window"
  sleep 1
done
snapshot "$WORK/s2.json"

python3 -c "import json; print(json.dumps({'applySeconds': $T1 - $T0}))" >"$WORK/meta.json"
REPORT=$WORK/report.md
{
  echo "Machine: $(nproc) vCPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/^Mem:/{print $2}') GiB RAM; load average at start $LOAD_START, at the end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Binary: $("$CLI" --version 2>/dev/null || echo aosm-artifact-operator), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown); kube-apiserver $("$KUBE_ASSETS/kube-apiserver" --version | awk '{print $2}'), docker-registry $(dpkg-query -W -f='${Version}' docker-registry 2>/dev/null || echo unknown)."
  echo
  python3 "$PY" report "$N" "$MANIFESTS" "$CONCURRENCY" "$LAYER_BYTES" "$INTERVAL" "$WORK/ready.json" \
    "$WORK/s0.json" "$WORK/s1.json" "$WORK/s1b.json" "$WORK/s2.json" "$CHECKED" "$WORK/meta.json"
} >"$REPORT"
echo
cat "$REPORT"
if [[ -n "${BENCH_OUT:-}" ]]; then
  cp "$REPORT" "$BENCH_OUT"
  log "report written to $BENCH_OUT"
fi
if grep -qF "$CLIENT_SECRET" "$WORK/controller.log" "$WORK/emulator.log"; then
  die "the client secret leaked into a log"
fi
if [[ "${KEEP:-0}" == 1 ]]; then
  log "KEEP=1: KUBECONFIG=$KUBECONFIG, files in $WORK"
fi
