# shellcheck shell=bash
# Helpers shared by the scripts in scripts/. Source it; do not run it.
#
# Everything a script starts goes through `spawn`, so `lib_cleanup` (installed as the
# EXIT trap by `lib_init`) can stop exactly those processes, and every temporary
# directory goes through `lib_tmpdir`. KEEP=1 leaves processes and files in place.

LIB_PIDS=()
LIB_DIRS=()
LIB_HOOKS=() # commands (strings) run by lib_cleanup after the processes stop, before rm -rf
LIB_NAME=${LIB_NAME:-$(basename "$0" .sh)}

log() { printf '[%s] %s\n' "$LIB_NAME" "$*" >&2; }
die() {
  printf '[%s] ERROR: %s\n' "$LIB_NAME" "$*" >&2
  exit 1
}

# lib_init: install the cleanup trap. Call once, early.
lib_init() {
  trap lib_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

lib_cleanup() {
  local rc=$? pid i hook d
  trap - EXIT
  if [[ "${KEEP:-0}" == 1 ]]; then
    if ((${#LIB_PIDS[@]})); then
      log "KEEP=1: leaving processes running: ${LIB_PIDS[*]} (stop them with: kill ${LIB_PIDS[*]})"
    fi
    if ((${#LIB_DIRS[@]})); then
      log "KEEP=1: leaving directories: ${LIB_DIRS[*]} (remove them with: rm -rf ${LIB_DIRS[*]})"
    fi
    exit "$rc"
  fi
  for pid in "${LIB_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${LIB_PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  for hook in "${LIB_HOOKS[@]}"; do
    eval "$hook" || true
  done
  for d in "${LIB_DIRS[@]}"; do
    rm -rf "$d"
  done
  exit "$rc"
}

# lib_tmpdir VAR [PARENT]: create a temporary directory (removed on exit) and store its path in VAR.
lib_tmpdir() {
  local -n _out=$1
  local parent=${2:-${TMPDIR:-/tmp}}
  _out=$(mktemp -d "$parent/$LIB_NAME-aosm-artifact-operator.XXXXXX")
  LIB_DIRS+=("$_out")
}

# spawn LOGFILE CMD...: start CMD in the background (stdout+stderr to LOGFILE); sets SPAWNED_PID.
spawn() {
  local logfile=$1
  shift
  "$@" >"$logfile" 2>&1 </dev/null &
  SPAWNED_PID=$!
  LIB_PIDS+=("$SPAWNED_PID")
}

# free_port: print a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL PID [SECONDS]: wait until URL answers (any HTTP status) while PID is alive.
wait_http() {
  local url=$1 pid=$2 secs=${3:-15} i
  for ((i = 0; i < secs * 10; i++)); do
    if curl -s -o /dev/null --max-time 1 "$url"; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# start_registry NAME STORAGE_DIR [ACCESS_LOG] [PORT]: start Debian's docker-registry
# (distribution) on 127.0.0.1:PORT (default: a free port; $REGISTRY_BIND instead of
# 127.0.0.1 when set), plain HTTP, filesystem storage in STORAGE_DIR. The access log (one
# line per request) goes to ACCESS_LOG when given (may be empty). Sets REGISTRY_ADDR=HOST:PORT
# and REGISTRY_PID; the registry's own log is STORAGE_DIR/../NAME.log.
start_registry() {
  local name=$1 storage=$2 access=${3:-} fixed=${4:-} conf logdir attempt port
  logdir=$(dirname "$storage")
  conf="$logdir/$name.yml"
  mkdir -p "$storage"
  for attempt in 1 2 3 4 5; do
    port=${fixed:-$(free_port)}
    cat >"$conf" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: $([[ -n "$access" ]] && echo false || echo true)
storage:
  filesystem:
    rootdirectory: $storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: ${REGISTRY_BIND:-127.0.0.1}:$port
EOF
    # distribution writes its access log to stdout and its own log to stderr.
    docker-registry serve "$conf" >"${access:-/dev/null}" 2>"$logdir/$name.log" </dev/null &
    REGISTRY_PID=$!
    LIB_PIDS+=("$REGISTRY_PID")
    if wait_http "http://${REGISTRY_BIND:-127.0.0.1}:$port/v2/" "$REGISTRY_PID" 15; then
      # shellcheck disable=SC2034 # used by the sourcing script
      REGISTRY_ADDR=${REGISTRY_BIND:-127.0.0.1}:$port
      return 0
    fi
    kill "$REGISTRY_PID" 2>/dev/null || true
    wait "$REGISTRY_PID" 2>/dev/null || true
    log "registry $name did not start on port $port (attempt $attempt); its log:"
    sed 's/^/    /' "$logdir/$name.log" >&2 || true
    [[ -z "$fixed" ]] || break
  done
  die "could not start docker-registry '$name'"
}

# find_cli: print the path of our binary, building it in release mode unless AOSM_BIN is set.
find_cli() {
  local root=$1
  if [[ -n "${AOSM_BIN:-}" ]]; then
    [[ -x "$AOSM_BIN" ]] || die "AOSM_BIN=$AOSM_BIN is not an executable"
    echo "$AOSM_BIN"
    return
  fi
  log "building the CLI: cargo build --release"
  (cd "$root" && cargo build --release --quiet) >&2 || die "cargo build --release failed"
  echo "${CARGO_TARGET_DIR:-$root/target}/release/aosm-artifact-operator"
}

# tools_path ROOT: run scripts/tools.sh (installs/caches the pinned tools) and put its bin dir on PATH.
tools_path() {
  local root=$1 bin
  bin=$(bash "$root/scripts/tools.sh" | tail -n 1) || die "scripts/tools.sh failed"
  [[ -d "$bin" ]] || die "scripts/tools.sh did not print its bin directory"
  export PATH="$bin:$PATH"
}

# kube_assets ROOT: print the directory holding kube-apiserver and etcd. The one rule, the
# same as tests/support/kube.rs's `assets_dir()`:
#   1. $AOSM_KUBE_ASSETS, when set;
#   2. else $KUBEBUILDER_ASSETS, when set and it holds both executables;
#   3. else ${XDG_CACHE_HOME:-$HOME/.cache}/aosm-artifact-operator/kube/<k8s-version>, where
#      scripts/tools.sh builds them (version pinned by scripts/kube/apiserver/go.mod).
kube_assets() {
  local root=$1 version
  if [[ -n "${AOSM_KUBE_ASSETS:-}" ]]; then
    echo "$AOSM_KUBE_ASSETS"
  elif [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
    echo "$KUBEBUILDER_ASSETS"
  else
    version=$(bash "$root/scripts/kube/build.sh" versions | awk '{print $1}')
    [[ -n "$version" ]] || die "cannot read the Kubernetes version from $root/scripts/kube/apiserver/go.mod"
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/aosm-artifact-operator/kube/$version"
  fi
}

# node_assets ROOT: print the directory holding the node components (kubelet, kube-proxy,
# kube-scheduler, kube-controller-manager, pause) that scripts/tools.sh builds: $AOSM_KUBE_ASSETS
# when set, else the default cache of `kube_assets` (rule 3; never $KUBEBUILDER_ASSETS, which
# holds only kube-apiserver and etcd and is not ours to write into). The same rule as
# tests/support/node.rs's `node_assets_dir()`.
node_assets() {
  local root=$1 version
  if [[ -n "${AOSM_KUBE_ASSETS:-}" ]]; then
    echo "$AOSM_KUBE_ASSETS"
  else
    version=$(bash "$root/scripts/kube/build.sh" versions | awk '{print $1}')
    [[ -n "$version" ]] || die "cannot read the Kubernetes version from $root/scripts/kube/apiserver/go.mod"
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/aosm-artifact-operator/kube/$version"
  fi
}

# port_free PORT: true when nothing listens on 127.0.0.1:PORT.
port_free() {
  python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.close()' "$1" 2>/dev/null
}

# start_emulator BIN STATE_DIR SEED [SERVE_ARGS...]: start `aosm-emulator serve` with a
# fresh random client secret (exported as CLIENT_SECRET), its log in STATE_DIR.log, and wait
# (60 s at most, while it runs) for STATE_DIR/endpoints.json. Sets EMULATOR_PID and
# EMULATOR_ENDPOINTS (read fields with emulator_field).
start_emulator() {
  local bin=$1 state=$2 seed=$3 deadline
  shift 3
  CLIENT_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
  export CLIENT_SECRET
  spawn "$state.log" env AOSM_EMULATOR_CLIENT_SECRET="$CLIENT_SECRET" \
    "$bin" serve --state-dir "$state" --seed "$seed" "$@"
  EMULATOR_PID=$SPAWNED_PID
  EMULATOR_ENDPOINTS=$state/endpoints.json
  deadline=$((SECONDS + 60))
  until [[ -f "$EMULATOR_ENDPOINTS" ]]; do
    kill -0 "$EMULATOR_PID" 2>/dev/null || { tail -n 30 "$state.log" >&2; die "aosm-emulator exited"; }
    ((SECONDS < deadline)) || die "aosm-emulator did not write endpoints.json within 60 s"
    sleep 0.1
  done
}

# emulator_field NAME: a field of the running emulator's endpoints.json.
emulator_field() {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$EMULATOR_ENDPOINTS" "$1"
}

# arm_token: an ARM access token from the emulator's Entra endpoint for the service
# principal (ARM_ENDPOINT, TENANT_ID, CLIENT_ID, CLIENT_SECRET, CA_FILE).
arm_token() {
  curl -s --cacert "$CA_FILE" \
    -d "grant_type=client_credentials&client_id=$CLIENT_ID&client_secret=$CLIENT_SECRET&scope=https://management.azure.com/.default" \
    "$ARM_ENDPOINT/$TENANT_ID/oauth2/v2.0/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# list_credential TOKEN MANIFEST_ID OUT: the manifest's scoped registry credential
# (listCredential) into OUT, readable by the owner only.
list_credential() {
  (umask 077 && curl -s --cacert "$CA_FILE" -X POST -H "Authorization: Bearer $1" -H 'Content-Length: 0' \
    "$ARM_ENDPOINT$2/listCredential?api-version=2023-09-01" >"$3")
}
