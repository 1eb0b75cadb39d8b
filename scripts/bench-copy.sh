#!/usr/bin/env bash
# `make bench`: registry-to-registry copy benchmark of aosm-artifact-operator against
# crane, oras, skopeo and regctl (issue #2, section 5; issue 15, part 3). Not a test: it
# prints numbers, and CI never runs it.
#
# Two local docker-registry instances (plain HTTP on 127.0.0.1) keep their storage on
# tmpfs. Fixtures are made with oras (never with our binary):
#   layers8   1 GiB image, 8 layers of 128 MiB (uncompressed tar of random bytes)
#   index4    OCI index of 4 platforms, one 64 MiB layer each
#   single2g  2 GiB image with one layer
#   small200  200 layers of 100 KiB to 2 MiB (sizes fixed by a formula), as CNF images
#             look: per-request latency, connection reuse and concurrency decide
# Each case is copied by every tool RUNS times; the tool order rotates every round and
# every run writes to a fresh destination repository (the destination storage is wiped
# after each run). Wall time is measured around the process; peak RSS and CPU time
# (user + sys, children included) with GNU time -v.
# Tools: ours (glibc release build), ours-musl (the static musl binary of the container
# image, built by scripts/image.sh), crane, oras, skopeo, regctl, and curl: the physical
# limit, the same blobs and manifests pushed to the destination by curl alone (one POST
# and one PUT per blob from the source registry's storage files, then the manifests), no
# existence checks and no source reads.
# Then a no-op re-copy onto a complete destination: wall time and the number of HTTP
# requests each registry saw (from their access logs) and how many blob bytes moved.
# Last, a table of the issue's goals with pass/fail.
#
# Environment:
#   RUNS=5            runs per case and tool
#   TOOLS="ours ours-musl crane oras skopeo regctl curl"   tools to compare (ours must stay first)
#   CASES="layers8 index4 single2g small200"
#   SCALE=1           divide every fixture size by this (small200: the layer count), e.g.
#                     SCALE=16 for a quick check
#   BENCH_STORAGE=dir put registry storage there instead of /dev/shm or a new tmpfs
#   BENCH_OUT=file    also write the markdown report to this file
#   AOSM_BIN=path     use this binary instead of `cargo build --release`
#   AOSM_MUSL_BIN=path  use this static binary as ours-musl instead of building it with
#                     scripts/image.sh (NO_PUSH=1; AOSM_IMAGE_TARGET_DIR is honoured)
#   KEEP=1            keep registries and files after the run
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_NAME=bench
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
lib_init

RUNS=${RUNS:-5}
SCALE=${SCALE:-1}
read -r -a TOOLS <<<"${TOOLS:-ours ours-musl crane oras skopeo regctl curl}"
read -r -a CASES <<<"${CASES:-layers8 index4 single2g small200}"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer (got '$RUNS')"
[[ "$SCALE" =~ ^[1-9][0-9]*$ ]] || die "SCALE must be a positive integer (got '$SCALE')"
[[ "${TOOLS[0]}" == ours ]] || die "TOOLS must start with 'ours' (ratios are relative to it)"
for t in "${TOOLS[@]}"; do
  case $t in ours | ours-musl | crane | oras | skopeo | regctl | curl) ;; *) die "unknown tool '$t' in TOOLS" ;; esac
done
for c in "${CASES[@]}"; do
  case $c in layers8 | index4 | single2g | small200) ;; *) die "unknown case '$c' in CASES" ;; esac
done
has_tool() {
  local t
  for t in "${TOOLS[@]}"; do [[ $t == "$1" ]] && return 0; done
  return 1
}

tools_path "$ROOT"
CLI=$(find_cli "$ROOT")
MUSL_CLI=""
if has_tool ours-musl; then
  if [[ -n "${AOSM_MUSL_BIN:-}" ]]; then
    [[ -x "$AOSM_MUSL_BIN" ]] || die "AOSM_MUSL_BIN=$AOSM_MUSL_BIN is not an executable"
    MUSL_CLI=$AOSM_MUSL_BIN
  else
    # The image's own build path: static musl binary, symbols stripped (not pushed).
    log "building the musl binary of the image: scripts/image.sh (NO_PUSH=1)"
    image_out=$(NO_PUSH=1 bash "$ROOT/scripts/image.sh" bench.invalid/aosm-artifact-operator:bench) ||
      die "scripts/image.sh failed"
    MUSL_CLI=$(sed -n 's/^binary: .*; \(.*\))$/\1/p' <<<"$image_out")
    [[ -x "$MUSL_CLI" ]] || die "cannot find the musl binary in scripts/image.sh's output"
  fi
  file -b "$MUSL_CLI" | grep -q static || die "$MUSL_CLI is not a static binary"
fi
for cmd in crane oras skopeo regctl docker-registry openssl python3 curl; do
  command -v "$cmd" >/dev/null || die "$cmd not found (scripts/tools.sh should have installed it)"
done
GNU_TIME=/usr/bin/time
"$GNU_TIME" -v true 2>/dev/null || die "$GNU_TIME is not GNU time (apt-get install time)"

MIB=$((1024 * 1024))
# bytes of fixture data per case, for the tmpfs budget
declare -A CASE_DATA=([layers8]=$((8 * 128 * MIB)) [index4]=$((4 * 64 * MIB)) [single2g]=$((2048 * MIB))
  [small200]=$((220 * MIB)))

lib_tmpdir WORK # scratch on disk: fixture files, logs, results
export DOCKER_CONFIG=$WORK/docker REGCTL_CONFIG=$WORK/regctl/config.json
mkdir -p "$DOCKER_CONFIG" "$(dirname "$REGCTL_CONFIG")"

# --- storage on tmpfs ----------------------------------------------------------------------
src_bytes=0
max_case=0
for c in "${CASES[@]}"; do
  src_bytes=$((src_bytes + CASE_DATA[$c] / SCALE))
  ((CASE_DATA[$c] / SCALE > max_case)) && max_case=$((CASE_DATA[$c] / SCALE))
done
need_kib=$(((src_bytes + 2 * max_case) / 1024 + 256 * 1024)) # source + one destination copy + uploads + slack
STORAGE_KIND=""
if [[ -n "${BENCH_STORAGE:-}" ]]; then
  mkdir -p "$BENCH_STORAGE"
  lib_tmpdir STORE "$BENCH_STORAGE"
  STORAGE_KIND="$(stat -f -c %T "$STORE") at $BENCH_STORAGE (BENCH_STORAGE)"
elif [[ "$(stat -f -c %T /dev/shm 2>/dev/null)" == tmpfs && -w /dev/shm ]] &&
  (($(df -Pk /dev/shm | awk 'NR==2{print $4}') > need_kib)); then
  lib_tmpdir STORE /dev/shm
  STORAGE_KIND="tmpfs (/dev/shm)"
elif [[ $(id -u) -eq 0 ]]; then
  lib_tmpdir STORE
  if mount -t tmpfs -o "size=${need_kib}k" aosm-bench "$STORE" 2>/dev/null; then
    LIB_HOOKS+=("umount '$STORE'")
    STORAGE_KIND="tmpfs (mounted at $STORE)"
  else
    STORAGE_KIND="disk ($STORE): could not mount a tmpfs"
  fi
else
  lib_tmpdir STORE
  STORAGE_KIND="disk ($STORE): /dev/shm is missing or too small and we are not root"
fi
if [[ "$STORAGE_KIND" != tmpfs* ]]; then
  log "WARNING: registry storage is on $STORAGE_KIND; the figures include disk I/O"
fi
log "registry storage: $STORAGE_KIND, needs about $((need_kib / 1024)) MiB"

start_registry src "$STORE/src/storage" "$WORK/src-access.log"
SRC=$REGISTRY_ADDR
start_registry dst "$STORE/dst/storage" "$WORK/dst-access.log"
DST=$REGISTRY_ADDR
DST_STORAGE=$STORE/dst/storage
log "source registry $SRC, destination registry $DST"
for host in "$SRC" "$DST"; do
  regctl registry set --tls disabled "$host" >/dev/null 2>&1 || die "regctl registry set --tls disabled $host failed"
done

# --- fixtures (oras push + crane index append) -----------------------------------------------
# make_layer FILE BYTES SEED: write an uncompressed tar holding one file of BYTES pseudo-random,
# incompressible bytes (AES-CTR keystream); print the tar's sha256 (= its diff_id and digest).
make_layer() {
  local file=$1 bytes=$2 seed=$3
  # openssl is stopped by SIGPIPE once head has enough: ignore its status
  { openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$seed" -in /dev/zero 2>/dev/null || true; } |
    head -c "$bytes" |
    python3 -c '
import hashlib, sys, tarfile
out, size = sys.argv[1], int(sys.argv[2])
h = hashlib.sha256()
with open(out, "wb") as f:
    def put(b):
        h.update(b); f.write(b)
    ti = tarfile.TarInfo("data.bin"); ti.size = size; ti.mode = 0o644; ti.mtime = 0
    put(ti.tobuf(format=tarfile.PAX_FORMAT))
    left = size
    src = sys.stdin.buffer
    while left:
        b = src.read(min(left, 1 << 20))
        if not b:
            sys.exit("random stream ended early")
        put(b); left -= len(b)
    put(b"\0" * ((-size) % 512) + b"\0" * 1024)
print(h.hexdigest())
' "$file" "$bytes"
}

# small_layer_bytes I: size of layer I (1-based) of small200, from 100 KiB to 2 MiB, spread
# by a fixed formula (no randomness: every run and machine gets the same sizes).
small_layer_bytes() {
  local lo=$((100 * 1024)) hi=$((2 * MIB))
  echo $((lo + (($1 * 7919 + 104729) % 1000) * (hi - lo) / 999))
}

# push_image REF PLATFORM LAYER_COUNT LAYER_BYTES SEED: push a single-platform OCI image with
# oras. LAYER_BYTES "small" gives layer I the size small_layer_bytes I.
push_image() {
  local ref=$1 platform=$2 count=$3 bytes=$4 seed=$5 dir i os arch variant size
  dir=$(mktemp -d "$WORK/fixture.XXXXXX")
  local files=() diff_ids=()
  for ((i = 1; i <= count; i++)); do
    size=$bytes
    [[ $bytes == small ]] && size=$(small_layer_bytes "$i")
    diff_ids+=("sha256:$(make_layer "$dir/layer-$i.tar" "$size" "$seed-$i")")
    files+=("layer-$i.tar:application/vnd.oci.image.layer.v1.tar")
  done
  IFS=/ read -r os arch variant <<<"$platform"
  python3 -c '
import json, sys
os_, arch, variant, *ids = sys.argv[1:]
cfg = {"architecture": arch, "os": os_, "rootfs": {"type": "layers", "diff_ids": ids}, "config": {}}
if variant:
    cfg["variant"] = variant
print(json.dumps(cfg))' "$os" "$arch" "${variant:-}" "${diff_ids[@]}" >"$dir/config.json"
  (cd "$dir" && oras push --plain-http --no-tty \
    --config config.json:application/vnd.oci.image.config.v1+json "$ref" "${files[@]}") \
    >"$WORK/oras-push.log" 2>&1 || die "oras push $ref failed: $(tail -n 5 "$WORK/oras-push.log")"
  rm -rf "$dir"
}

# graph_bytes REF: total bytes of manifests + blobs reachable from REF (what a full copy moves).
graph_bytes() {
  local ref=$1
  python3 - "$ref" <<'PY'
import json, subprocess, sys
ref = sys.argv[1]
repo = ref.rsplit(":", 1)[0]
def manifest(r):
    return subprocess.run(["crane", "manifest", r], check=True, capture_output=True).stdout
def walk(raw):
    m = json.loads(raw)
    total = len(raw)
    for d in m.get("manifests", []):
        total += walk(manifest(f"{repo}@{d['digest']}"))
    for d in ([m["config"]] if "config" in m else []) + m.get("layers", []):
        total += d["size"]
    return total
print(walk(manifest(ref)))
PY
}

# curl_plan REF DIR: what the curl row pushes for REF, prepared before any timing: DIR/blobs
# lists "DIGEST PATH" per blob (PATH: the blob's data file in the source registry's
# storage, on tmpfs), DIR/manifests lists "REFERENCE MEDIA_TYPE FILE" children first, the
# root last with the reference TAG (replaced by the destination's tag when run).
curl_plan() {
  local ref=$1 dir=$2
  mkdir -p "$dir"
  python3 - "$ref" "$dir" "$STORE/src/storage" <<'PY' || die "curl plan for $ref failed"
import hashlib, json, os, subprocess, sys
ref, out, storage = sys.argv[1:]
repo = ref.rsplit(":", 1)[0]
blobs, manifests, seen = [], [], set()
def data_path(digest):
    alg, hex_ = digest.split(":")
    return os.path.join(storage, "docker/registry/v2/blobs", alg, hex_[:2], hex_, "data")
def walk(r, reference):
    raw = subprocess.run(["crane", "manifest", r], check=True, capture_output=True).stdout
    m = json.loads(raw)
    for d in m.get("manifests", []):
        walk(f"{repo}@{d['digest']}", d["digest"])
    for d in ([m["config"]] if "config" in m else []) + m.get("layers", []):
        if d["digest"] not in seen:
            seen.add(d["digest"])
            path = data_path(d["digest"])
            if os.path.getsize(path) != d["size"]:
                sys.exit(f"{path}: size differs from the descriptor")
            blobs.append(f"{d['digest']} {path}")
    file = os.path.join(out, f"manifest-{len(manifests)}.json")
    with open(file, "wb") as f:
        f.write(raw)
    media = m.get("mediaType", "application/vnd.oci.image.manifest.v1+json")
    manifests.append(f"{reference} {media} {file}")
walk(ref, "TAG")
with open(os.path.join(out, "blobs"), "w") as f:
    f.write("\n".join(blobs) + "\n")
with open(os.path.join(out, "manifests"), "w") as f:
    f.write("\n".join(manifests) + "\n")
PY
}

# The curl row (run as its own process under GNU time): CURL_PUSH DIR DST_REF. One curl POSTs
# every upload session (keep-alive, in order, printing each Location), one curl PUTs every
# blob file to its session with ?digest= (4 in parallel, as ours and crane's default), then
# one curl per manifest, children by digest, the root by tag.
CURL_PUSH=$WORK/curl-push.sh
cat >"$CURL_PUSH" <<'SH'
#!/usr/bin/env bash
set -euo pipefail
dir=$1 ref=$2
host=${ref%%/*} rest=${ref#*/}
repo=${rest%:*} tag=${rest##*:}
n=$(wc -l <"$dir/blobs")
mapfile -t locations < <(curl -sS --fail -X POST -o /dev/null -w '%header{location}\n' \
  "http://$host/v2/$repo/blobs/uploads/?n=[1-$n]")
((${#locations[@]} == n)) || { echo "got ${#locations[@]} upload sessions for $n blobs" >&2; exit 1; }
i=0
while read -r digest path; do
  loc=${locations[i]}
  [[ $loc == http* ]] || loc="http://$host$loc"
  [[ $loc == *\?* ]] && sep='&' || sep='?'
  printf 'upload-file = "%s"\nurl = "%s%sdigest=%s"\n' "$path" "$loc" "$sep" "$digest"
  i=$((i + 1))
done <"$dir/blobs" >"$dir/put.conf"
curl -sS --fail --parallel --parallel-max 4 -H 'Content-Type: application/octet-stream' \
  -o /dev/null -K "$dir/put.conf"
while read -r reference media file; do
  [[ $reference == TAG ]] && reference=$tag
  curl -sS --fail -X PUT -H "Content-Type: $media" --data-binary "@$file" -o /dev/null \
    "http://$host/v2/$repo/manifests/$reference"
done <"$dir/manifests"
SH

declare -A SRC_REF SRC_DIGEST CASE_BYTES CASE_LABEL
gen_start=$(date +%s)
for c in "${CASES[@]}"; do
  ref=$SRC/bench/$c:v1
  case $c in
  layers8)
    log "fixture $c: 8 layers x $((128 / SCALE)) MiB (oras push)"
    push_image "$ref" linux/amd64 8 $((128 * MIB / SCALE)) "$c"
    CASE_LABEL[$c]="8 layers x $((128 / SCALE)) MiB"
    ;;
  index4)
    log "fixture $c: index of 4 platforms x $((64 / SCALE)) MiB (oras push + oras manifest index create)"
    children=()
    for p in linux/amd64 linux/arm64 linux/arm/v7 linux/ppc64le; do
      tag=${p#linux/}
      tag=${tag//\//-}
      push_image "$SRC/bench/$c:$tag" "$p" 1 $((64 * MIB / SCALE)) "$c-$p"
      children+=("$tag")
    done
    # (not `crane index append`: it adds artifactType to each descriptor, which skopeo 1.9
    # cannot carry over with --preserve-digests)
    oras manifest index create --plain-http "$ref" "${children[@]}" >/dev/null 2>"$WORK/oras.log" ||
      die "oras manifest index create failed: $(cat "$WORK/oras.log")"
    CASE_LABEL[$c]="index, 4 platforms x $((64 / SCALE)) MiB"
    ;;
  single2g)
    log "fixture $c: 1 layer of $((2048 / SCALE)) MiB (oras push)"
    push_image "$ref" linux/amd64 1 $((2048 * MIB / SCALE)) "$c"
    CASE_LABEL[$c]="1 layer of $((2048 / SCALE)) MiB"
    ;;
  small200)
    n=$((200 / SCALE > 8 ? 200 / SCALE : 8))
    log "fixture $c: $n layers of 100 KiB to 2 MiB (oras push)"
    push_image "$ref" linux/amd64 "$n" small "$c"
    CASE_LABEL[$c]="$n layers of 100 KiB-2 MiB"
    ;;
  esac
  SRC_REF[$c]=$ref
  SRC_DIGEST[$c]=$(crane digest "$ref")
  CASE_BYTES[$c]=$(graph_bytes "$ref")
  log "  $ref = ${SRC_DIGEST[$c]} (${CASE_BYTES[$c]} bytes)"
  if has_tool curl; then
    curl_plan "$ref" "$WORK/curl-$c"
  fi
done
log "fixtures ready in $(($(date +%s) - gen_start)) s"

# --- timed runs --------------------------------------------------------------------------------
# tool_cmd TOOL SRC_REF DST_REF: set CMD to the command line of TOOL copying SRC_REF to DST_REF.
tool_cmd() {
  local tool=$1 from=$2 to=$3
  case $tool in
  ours) CMD=("$CLI" copy --from-plain-http --to-plain-http "$from" "$to") ;;
  ours-musl) CMD=("$MUSL_CLI" copy --from-plain-http --to-plain-http "$from" "$to") ;;
  curl) CMD=(bash "$CURL_PUSH" "$WORK/curl-$CUR_CASE" "$to") ;;
  crane) CMD=(crane copy --insecure "$from" "$to") ;;
  oras) CMD=(oras cp --from-plain-http --to-plain-http "$from" "$to") ;;
  skopeo) CMD=(skopeo --insecure-policy copy --all --preserve-digests --quiet
    --src-tls-verify=false --dest-tls-verify=false "docker://$from" "docker://$to") ;;
  regctl) CMD=(regctl image copy "$from" "$to") ;;
  esac
}

# timed TOOL SRC_REF DST_REF: run one copy; sets RUN_WALL (s), RUN_RSS (KiB, the largest
# process) and RUN_CPU (user + sys seconds, children included); returns its exit code.
timed() {
  local t0 t1 rc=0
  tool_cmd "$1" "$2" "$3"
  t0=$(date +%s%N)
  "$GNU_TIME" -v -o "$WORK/time.txt" "${CMD[@]}" >"$WORK/run.out" 2>"$WORK/run.err" </dev/null || rc=$?
  t1=$(date +%s%N)
  RUN_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
  RUN_RSS=$(awk -F': ' '/Maximum resident set size/{print $2}' "$WORK/time.txt")
  RUN_CPU=$(awk -F': ' '/User time \(seconds\)/{u=$2} /System time \(seconds\)/{s=$2} END{printf "%.2f", u + s}' "$WORK/time.txt")
  return "$rc"
}

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS=$WORK/results.tsv
: >"$RESULTS"
FAILURES=()
ntools=${#TOOLS[@]}
for ((round = 1; round <= RUNS; round++)); do
  order=()
  for ((i = 0; i < ntools; i++)); do order+=("${TOOLS[(i + round - 1) % ntools]}"); done
  log "round $round/$RUNS: order ${order[*]}"
  for c in "${CASES[@]}"; do
    CUR_CASE=$c
    for tool in "${order[@]}"; do
      to=$DST/bench/$c-$tool-r$round:v1
      ok=1
      if ! timed "$tool" "${SRC_REF[$c]}" "$to"; then
        ok=0
        FAILURES+=("$c/$tool/r$round: $(tail -n 3 "$WORK/run.err" | tr '\n' ' ')")
      elif [[ "$(crane digest "$to" 2>/dev/null)" != "${SRC_DIGEST[$c]}" ]]; then
        ok=0
        FAILURES+=("$c/$tool/r$round: destination digest differs from the source")
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$tool" "$round" "$ok" "$RUN_WALL" "$RUN_RSS" "$RUN_CPU" >>"$RESULTS"
      log "  $c $tool: ${RUN_WALL}s, ${RUN_CPU}s CPU, $((RUN_RSS / 1024)) MiB RSS$([[ $ok == 1 ]] || echo ' FAILED')"
      # fresh destination for the next run, and keep tmpfs usage bounded
      rm -rf "$DST_STORAGE/docker"
    done
  done
done

# --- no-op re-copy -------------------------------------------------------------------------------
# count_requests LOG FROM_LINE: print "total blob_get_bytes uploads" for access-log lines after FROM_LINE.
count_requests() {
  tail -n +"$(($2 + 1))" "$1" | awk '
    { total++ }
    / "GET [^ ]*\/blobs\/sha256:/ { for (i = 1; i <= NF; i++) if ($i ~ /HTTP\/[0-9.]+"$/) { bytes += $(i + 2); break } }
    / "(POST|PATCH|PUT) [^ ]*\/blobs\/uploads\// { uploads++ }
    END { printf "%d %d %d\n", total, bytes, uploads }'
}

NOOP=$WORK/noop.tsv
: >"$NOOP"
for c in "${CASES[@]}"; do
  to=$DST/bench/noop-$c:v1
  log "no-op re-copy, $c: first a full copy with ours, then each tool copies again (rotated order)"
  timed ours "${SRC_REF[$c]}" "$to" || die "full copy before the no-op run failed: $(tail -n 5 "$WORK/run.err")"
  for ((round = 1; round <= RUNS; round++)); do
    for ((i = 0; i < ntools; i++)); do
      tool=${TOOLS[(i + round - 1) % ntools]}
      [[ $tool == curl ]] && continue # it pushes unconditionally: no no-op to measure
      sleep 0.3 # let both registries flush their access logs
      s0=$(wc -l <"$WORK/src-access.log")
      d0=$(wc -l <"$WORK/dst-access.log")
      ok=1
      timed "$tool" "${SRC_REF[$c]}" "$to" || {
        ok=0
        FAILURES+=("no-op $c/$tool/r$round: $(tail -n 3 "$WORK/run.err" | tr '\n' ' ')")
      }
      sleep 0.3
      read -r d_total d_bytes d_uploads < <(count_requests "$WORK/dst-access.log" "$d0")
      read -r s_total s_bytes s_uploads < <(count_requests "$WORK/src-access.log" "$s0")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$tool" "$round" "$ok" "$RUN_WALL" \
        "$d_total" "$s_total" "$((d_bytes + s_bytes))" "$((d_uploads + s_uploads))" >>"$NOOP"
      ((round < RUNS)) || log "  $c $tool: ${RUN_WALL}s, $d_total requests to the destination, $s_total to the source"
    done
  done
done
[[ "$(crane digest "$DST/bench/noop-${CASES[0]}:v1")" == "${SRC_DIGEST[${CASES[0]}]}" ]] ||
  die "the no-op destination lost its digest"

# --- report --------------------------------------------------------------------------------------
CASE_INFO=$WORK/cases.tsv
: >"$CASE_INFO"
for c in "${CASES[@]}"; do
  printf '%s\t%s\t%s\t%s\n' "$c" "${CASE_BYTES[$c]}" "${CASE_LABEL[$c]}" "${SRC_DIGEST[$c]}" >>"$CASE_INFO"
done
REPORT=$WORK/report.md
python3 - "$RESULTS" "$NOOP" "$CASE_INFO" "$RUNS" "$STORAGE_KIND" "${TOOLS[*]}" >"$REPORT" <<'PY'
import statistics, sys
results, noop, cases, runs, storage, tools = sys.argv[1:]
tools = tools.split()
PEERS = [t for t in tools if t in ("crane", "oras", "skopeo", "regctl")]
THROUGHPUT_CASES = ("layers8", "index4", "small200")
info = {}
for line in open(cases):
    c, b, label, digest = line.rstrip("\n").split("\t")
    info[c] = (int(b), label)
rows = {}
for line in open(results):
    c, tool, rnd, ok, wall, rss, cpu = line.split()
    r = rows.setdefault((c, tool), {"wall": [], "rss": [], "cpu": [], "fail": 0})
    if ok == "1":
        r["wall"].append(float(wall)); r["rss"].append(int(rss)); r["cpu"].append(float(cpu))
    else:
        r["fail"] += 1

def med(c, t, key="wall"):
    r = rows.get((c, t))
    return statistics.median(r[key]) if r and r[key] else None

def peak_rss(c, t):
    r = rows.get((c, t))
    return max(r["rss"]) if r and r["rss"] else None

def cpu_per_gb(c, t):
    m = med(c, t, "cpu")
    return m / (info[c][0] / 1e9) if m is not None else None

print(f"Registry-to-registry copy, {runs} run(s) per tool and case; storage of both registries: {storage}.")
print()
print("| case | tool | median wall s | MB/s | vs ours (wall) | CPU s/GB | peak RSS MiB | RSS vs crane |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for c in info:
    size, label = info[c]
    ours_med = med(c, "ours")
    crane_rss = peak_rss(c, "crane")
    for t in tools:
        r = rows.get((c, t))
        if not r:
            continue
        name = f"{c} ({label}, {size / 1e6:.0f} MB)"
        if not r["wall"]:
            print(f"| {name} | {t} | failed | | | | | |")
            continue
        m = med(c, t)
        ratio = f"{m / ours_med:.2f}x" if ours_med else "n/a"
        fail = f" ({r['fail']} failed)" if r["fail"] else ""
        rss = peak_rss(c, t)
        vs_crane = f"{rss / crane_rss:.2f}x" if crane_rss else "n/a"
        print(f"| {name} | {t}{fail} | {m:.2f} | {size / 1e6 / m:.0f} | {ratio} | {cpu_per_gb(c, t):.2f} | {rss / 1024:.1f} | {vs_crane} |")
print()
print("\"vs ours\" is the tool's median wall time divided by ours (above 1 = slower than ours). "
      "CPU s/GB = median (user + sys) CPU seconds of the process and its children / GB of the case. "
      "Peak RSS is the largest of the runs (for curl: of its largest process). "
      "curl is the physical limit: the same blobs pushed from the source registry's files, no existence checks, no source reads.")
print()
nrows = {}
for line in open(noop):
    c, tool, rnd, ok, wall, dreq, sreq, blob_bytes, uploads = line.split()
    r = nrows.setdefault((c, tool), {"wall": [], "d": dreq, "s": sreq, "bytes": 0, "uploads": 0, "fail": 0})
    if ok == "1":
        r["wall"].append(float(wall))
    else:
        r["fail"] += 1
    r["d"], r["s"] = dreq, sreq
    r["bytes"] = max(r["bytes"], int(blob_bytes)); r["uploads"] = max(r["uploads"], int(uploads))
print("No-op re-copy (the destination already holds everything):")
print()
print("| case | tool | median wall s | requests to destination | requests to source | blob bytes read | blob uploads |")
print("|---|---|---:|---:|---:|---:|---:|")
for c in info:
    for t in tools:
        r = nrows.get((c, t))
        if not r:
            continue
        m = f"{statistics.median(r['wall']):.3f}" if r["wall"] else "failed"
        print(f"| {c} | {t} | {m} | {r['d']} | {r['s']} | {r['bytes']} | {r['uploads']} |")
print()
print("Requests are counted from each registry's access log during one run (the last);")
print("blob bytes read = bytes of blob GET responses at the source (e.g. an image config); blob uploads = POST/PATCH/PUT to /blobs/uploads/.")
print()

def noop_med(c, t):
    r = nrows.get((c, t))
    return statistics.median(r["wall"]) if r and r["wall"] else None

def best(values):
    values = [v for v in values if v[1] is not None]
    return min(values, key=lambda v: v[1]) if values else (None, None)

def verdict(ok):
    return "**pass**" if ok else "**FAIL**"

goals = []
for c in info:
    o = noop_med(c, "ours")
    p, pv = best([(t, noop_med(c, t)) for t in PEERS])
    if o is not None and pv is not None:
        goals.append(("no-op re-copy wall ≤ fastest peer's", c, f"ours {o:.3f} s, {p} {pv:.3f} s ({o / pv:.2f}x)", o <= pv))
for c in info:
    if c not in THROUGHPUT_CASES:
        continue
    o = med(c, "ours")
    p, pv = best([(t, med(c, t)) for t in PEERS])
    if o is not None and pv is not None:
        goals.append(("throughput ≥ 1.05x fastest peer's", c, f"ours {info[c][0] / 1e6 / o:.0f} MB/s, {p} {info[c][0] / 1e6 / pv:.0f} MB/s ({pv / o:.2f}x)", pv / o >= 1.05))
for c in info:
    o = cpu_per_gb(c, "ours")
    p, pv = best([(t, cpu_per_gb(c, t)) for t in PEERS])
    if o is not None and pv is not None:
        goals.append(("client CPU s/GB ≤ lowest peer's", c, f"ours {o:.2f}, {p} {pv:.2f} ({o / pv:.2f}x)", o <= pv))
for c in info:
    o, cr = peak_rss(c, "ours"), peak_rss(c, "crane")
    if o is not None and cr is not None:
        goals.append(("peak RSS ≤ 1.5x crane's", c, f"ours {o / 1024:.1f} MiB, crane {cr / 1024:.1f} MiB ({o / cr:.2f}x)", o <= 1.5 * cr))
for c in info:
    o, m = med(c, "ours"), med(c, "ours-musl")
    if o is not None and m is not None:
        goals.append(("musl binary no slower than glibc (wall, 3% noise band)", c, f"musl {m:.2f} s, glibc {o:.2f} s ({m / o:.2f}x)", m <= 1.03 * o))
for c in info:
    o, l = med(c, "ours"), med(c, "curl")
    if o is not None and l is not None:
        goals.append(("physical limit (curl push; not a goal)", c, f"ours {o:.2f} s, curl {l:.2f} s (ours at {l / o:.0%} of the limit)", None))
print("Against the goals (issue 15, part 3):")
print()
print("| goal | case | measured | verdict |")
print("|---|---|---|---|")
for goal, c, measured, ok in goals:
    print(f"| {goal} | {c} | {measured} | {'—' if ok is None else verdict(ok)} |")
PY

machine() {
  echo "Machine: $(nproc) CPUs ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(free -h | awk '/^Mem:/{print $2}') RAM, kernel $(uname -r); load average when the timed runs started $LOAD_AT_START, at the end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Tools: aosm-artifact-operator $("$CLI" --version 2>/dev/null | awk '{print $NF}'), crane $(crane version),"\
    "oras $(oras version | awk '/^Version/{print $2}'), skopeo $(skopeo --version | awk '{print $3}'),"\
    "regctl $(regctl version --format '{{.VCSTag}}' 2>/dev/null), curl $(curl --version | awk 'NR==1{print $2}'),"\
    "docker-registry $(dpkg-query -W -f='${Version}' docker-registry 2>/dev/null)."
  echo "Ours: $CLI (glibc, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$([[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]] && echo ', uncommitted changes'))${MUSL_CLI:+; ours-musl: $MUSL_CLI}."
}
{
  echo
  machine
  echo
  cat "$REPORT"
  if ((${#FAILURES[@]})); then
    echo
    echo "Failed runs:"
    printf -- '- %s\n' "${FAILURES[@]}"
  fi
} | tee "${BENCH_OUT:-/dev/null}"
