#!/usr/bin/env bash
# A local Kubernetes control plane for people: etcd + kube-apiserver (no nodes, no
# controllers), the same flags as the tests' tests/support/kube.rs. Enough to install the
# CRDs, apply objects, try `kubectl explain`/`get`, and run the operator against it.
#
# Usage: scripts/cluster.sh up DIR     start it; writes DIR/kubeconfig (admin), DIR/*.log,
#                                      DIR/*.pid, DIR/pki/, DIR/etcd/
#        scripts/cluster.sh down DIR   stop it and remove what `up` wrote in DIR
#        scripts/cluster.sh status DIR print whether it runs, and its URL
#
# kube-apiserver and etcd are found with the same rule as the tests (scripts/lib.sh's
# `kube_assets`): $AOSM_KUBE_ASSETS, else $KUBEBUILDER_ASSETS, else the cache that
# scripts/tools.sh builds them into. Run scripts/tools.sh first (or `make tools`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_NAME=cluster
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

READY_SECONDS=${READY_SECONDS:-120}
# What `up` creates in DIR (and `down` removes; nothing else in DIR is touched).
OWNED=(kubeconfig etcd.pid kube-apiserver.pid etcd.log kube-apiserver.log pki etcd certdir kubectl-cache)

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

# alive PID: the process exists and is not a zombie.
alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# our_pid DIR NAME: print the pid in DIR/NAME.pid if that process runs and is ours (its
# command line names DIR); nothing otherwise.
our_pid() {
  local dir=$1 name=$2 pid
  pid=$(cat "$dir/$name.pid" 2>/dev/null) || return 0
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/"; then
    echo "$pid"
  fi
}

# stop_pid PID: SIGTERM, wait up to 10 s, then SIGKILL.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

make_pki() { # DIR
  local pki=$1/pki name subj ext serial
  mkdir -p "$pki"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  (
    cd "$pki"
    printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
      'extendedKeyUsage=serverAuth' \
      'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc' >server.ext
    printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
      'extendedKeyUsage=clientAuth' >client.ext
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 365 \
      -subj "/CN=aosm-artifact-operator local kube CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    for name in server admin; do
      if [[ $name == server ]]; then
        subj=/CN=kube-apiserver ext=server.ext serial=2
      else
        subj=/O=system:masters/CN=admin ext=client.ext serial=3
      fi
      openssl req -new "${ec[@]}" -keyout "$name.key" -out "$name.csr" -subj "$subj"
      openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -set_serial "$serial" \
        -days 365 -extfile "$ext" -out "$name.crt"
    done
    openssl ecparam -name prime256v1 -genkey -noout -out sa.key
    openssl ec -in sa.key -pubout -out sa.pub
  ) >/dev/null 2>&1 || die "openssl failed to make the cluster's certificates (is openssl installed? run scripts/tools.sh)"
}

write_kubeconfig() { # DIR PORT
  local dir=$1 port=$2
  b64() { base64 -w0 <"$1"; }
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: aosm-local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(b64 "$dir/pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$dir/pki/admin.crt")
    client-key-data: $(b64 "$dir/pki/admin.key")
contexts:
- name: aosm-local
  context:
    cluster: aosm-local
    user: admin
    namespace: default
current-context: aosm-local
EOF
  chmod 600 "$dir/kubeconfig"
}

# start_once DIR ASSETS: start etcd and kube-apiserver on fresh ports and wait for /readyz;
# sets PORT, ETCD_PID, API_PID and ANSWER (the last /readyz answer). Fails if not ready.
start_once() {
  local dir=$1 assets=$2 etcd_port peer_port i
  rm -rf "$dir/etcd" "$dir/certdir"
  etcd_port=$(free_port)
  peer_port=$(free_port)
  PORT=$(free_port)
  ANSWER=""

  "$assets/etcd" --name aosm-local --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "aosm-local=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync >"$dir/etcd.log" 2>&1 </dev/null &
  ETCD_PID=$!
  echo "$ETCD_PID" >"$dir/etcd.pid"

  "$assets/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$PORT" \
    --cert-dir="$dir/certdir" \
    --tls-cert-file="$dir/pki/server.crt" --tls-private-key-file="$dir/pki/server.key" \
    --client-ca-file="$dir/pki/ca.crt" \
    --service-account-key-file="$dir/pki/sa.pub" --service-account-signing-key-file="$dir/pki/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc \
    --authorization-mode=RBAC --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true \
    --disable-admission-plugins=ServiceAccount --endpoint-reconciler-type=none \
    >"$dir/kube-apiserver.log" 2>&1 </dev/null &
  API_PID=$!
  echo "$API_PID" >"$dir/kube-apiserver.pid"
  write_kubeconfig "$dir" "$PORT"

  for ((i = 0; i < READY_SECONDS * 10; i++)); do
    ANSWER=$(curl -s --max-time 2 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" \
      --key "$dir/pki/admin.key" "https://127.0.0.1:$PORT/readyz" 2>/dev/null || true)
    [[ "$ANSWER" == ok ]] && return 0
    if ! alive "$ETCD_PID" || ! alive "$API_PID"; then
      return 1
    fi
    sleep 0.1
  done
  return 1
}

cmd_up() {
  local dir=$1 assets attempt b
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [[ -n "$(our_pid "$dir" etcd)$(our_pid "$dir" kube-apiserver)" ]]; then
    die "a cluster already runs in $dir (scripts/cluster.sh down $dir stops it)"
  fi
  assets=$(kube_assets "$ROOT")
  for b in etcd kube-apiserver; do
    [[ -x "$assets/$b" ]] || die "$assets/$b is missing: run scripts/tools.sh (or set AOSM_KUBE_ASSETS / KUBEBUILDER_ASSETS)"
  done
  command -v curl >/dev/null || die "curl is missing: run scripts/tools.sh"
  rm -rf "$dir/pki"
  make_pki "$dir"
  for attempt in 1 2 3; do
    start_once "$dir" "$assets" && break
    stop_procs "$dir"
    # A port that was free a moment ago may have been taken meanwhile: try other ports.
    if ((attempt < 3)) && grep -qs "address already in use" "$dir/etcd.log" "$dir/kube-apiserver.log"; then
      log "a port was taken (attempt $attempt); retrying"
      continue
    fi
    log "the API server did not become ready (last /readyz answer: ${ANSWER:-none}); logs:"
    for b in etcd kube-apiserver; do
      printf -- '--- %s (last 30 lines) ---\n' "$dir/$b.log" >&2
      tail -n 30 "$dir/$b.log" >&2 || true
    done
    cmd_down "$dir" >/dev/null 2>&1 || true
    die "scripts/cluster.sh up $dir failed"
  done
  disown -a
  cat <<EOF
Kubernetes $("$assets/kube-apiserver" --version | awk '{print $2}') API server ready at https://127.0.0.1:$PORT (etcd pid $ETCD_PID, kube-apiserver pid $API_PID)

  export KUBECONFIG=$dir/kubeconfig
  kubectl apply --server-side -f $ROOT/crds/
  kubectl get aosm -A

There are no nodes and no controllers: objects are stored and validated, nothing runs.
Logs: $dir/etcd.log, $dir/kube-apiserver.log. Stop it with: scripts/cluster.sh down $dir
EOF
}

# stop_procs DIR: stop the cluster's processes (if they are ours); keep its files.
stop_procs() {
  local dir=$1 pid name
  for name in kube-apiserver etcd; do
    pid=$(our_pid "$dir" "$name")
    if [[ -n "$pid" ]]; then
      stop_pid "$pid"
      log "stopped $name (pid $pid)"
    fi
  done
}

cmd_down() {
  local dir=$1 f
  [[ -d "$dir" ]] || die "$dir does not exist"
  dir=$(cd "$dir" && pwd)
  stop_procs "$dir"
  for f in "${OWNED[@]}"; do
    rm -rf "${dir:?}/$f"
  done
  rmdir "$dir" 2>/dev/null || true
}

cmd_status() {
  local dir=$1 etcd api
  dir=$(cd "$dir" 2>/dev/null && pwd) || die "$1 does not exist"
  etcd=$(our_pid "$dir" etcd)
  api=$(our_pid "$dir" kube-apiserver)
  if [[ -n "$etcd" && -n "$api" ]]; then
    echo "running: $(awk '/server:/{print $2}' "$dir/kubeconfig") (etcd pid $etcd, kube-apiserver pid $api); export KUBECONFIG=$dir/kubeconfig"
  else
    echo "not running in $dir${etcd:+ (etcd pid $etcd is left)}${api:+ (kube-apiserver pid $api is left)}"
    return 1
  fi
}

[[ $# -eq 2 ]] || usage
case "$1" in
  up) cmd_up "$2" ;;
  down) cmd_down "$2" ;;
  status) cmd_status "$2" ;;
  *) usage ;;
esac
