#!/usr/bin/env bash
# A local Kubernetes control plane for people: etcd + kube-apiserver (no nodes, no
# controllers), the same flags as the tests' tests/support/kube.rs. Enough to install the
# CRDs, apply objects, try `kubectl explain`/`get`, and run the operator against it.
# With --node, a real single-node cluster on this machine (root; see scripts/kube/node.sh):
# containerd, kubelet, kube-proxy, kube-scheduler, kube-controller-manager as well, every
# address inside one private /16 on a bridge (default 10.88.0.0/16, node and API server on
# 10.88.0.1): pods run, and nothing they send can leave the machine.
#
# Usage: scripts/cluster.sh up DIR     start it; writes DIR/kubeconfig (admin), DIR/*.log,
#                                      DIR/*.pid, DIR/pki/, DIR/etcd/
#        scripts/cluster.sh up --node DIR
#                                      the node cluster (idempotent: starts what does not
#                                      run); waits for Node Ready and the `default`
#                                      ServiceAccount; also writes DIR/node/ (DIR/node/env:
#                                      NODE_IP=the bridge address, API_SERVER, ... for tests)
#        scripts/cluster.sh down DIR   stop it and remove what `up` wrote in DIR; for a node
#                                      cluster also undo every host change `up` made
#        scripts/cluster.sh status DIR print whether it runs, and its URL
#
# Node settings (environment): AOSM_NODE_NET (first two octets of the private /16, default
# 10.88), AOSM_NODE_BRIDGE (default aosm-node0), AOSM_NODE_API_PORT (default 6443),
# AOSM_SA_ISSUER (default https://<bridge address>:<port>, the API server itself).
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
NODE=0 # 1 for `up --node`, and for `down`/`status` of a DIR that has DIR/node/
# shellcheck source=scripts/kube/node.sh
source "$ROOT/scripts/kube/node.sh"
# What `up` creates in DIR (and `down` removes; nothing else in DIR is touched).
OWNED=(kubeconfig etcd.pid kube-apiserver.pid etcd.log kube-apiserver.log pki etcd certdir kubectl-cache
  node containerd.pid kube-controller-manager.pid kube-scheduler.pid kube-proxy.pid kubelet.pid
  containerd.log kube-controller-manager.log kube-scheduler.log kube-proxy.log kubelet.log)

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
  if alive "$pid" && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -F -- "$dir/" >/dev/null; then
    echo "$pid"
  fi
}

# stop_pid PID [SECONDS]: SIGTERM, wait up to SECONDS (10), then SIGKILL.
stop_pid() {
  local pid=$1 secs=${2:-10} i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < secs * 10; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# make_pki DIR [EXTRA_SANS [NAME|SUBJECT]...]: the CA, the API server's certificate (for
# 127.0.0.1, the Service IP and names, and EXTRA_SANS), the admin client certificate, more
# client certificates (NAME.crt/.key with SUBJECT), the service-account key pair.
make_pki() {
  local pki=$1/pki extra_sans=${2:-} name subj ext serial spec
  shift 2 || shift $#
  local clients=("server|/CN=kube-apiserver" "admin|/O=system:masters/CN=admin" "$@")
  mkdir -p "$pki"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  (
    cd "$pki"
    printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
      'extendedKeyUsage=serverAuth' \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc${extra_sans:+,$extra_sans}" >server.ext
    printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
      'extendedKeyUsage=clientAuth' >client.ext
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 365 \
      -subj "/CN=aosm-artifact-operator local kube CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    serial=2
    for spec in "${clients[@]}"; do
      IFS='|' read -r name subj <<<"$spec"
      ext=client.ext
      [[ $name == server ]] && ext=server.ext
      serial=$((serial + 1))
      openssl req -new "${ec[@]}" -keyout "$name.key" -out "$name.csr" -subj "$subj"
      openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -set_serial "$serial" \
        -days 365 -extfile "$ext" -out "$name.crt"
    done
    openssl ecparam -name prime256v1 -genkey -noout -out sa.key
    openssl ec -in sa.key -pubout -out sa.pub
  ) >/dev/null 2>&1 || die "openssl failed to make the cluster's certificates (is openssl installed? run scripts/tools.sh)"
}

write_kubeconfig() { # FILE SERVER USER PKI_DIR: USER's certificate is PKI_DIR/USER.{crt,key}
  local file=$1 server=$2 user=$3 pki=$4
  b64() { base64 -w0 <"$1"; }
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: aosm-local
  cluster:
    server: $server
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(b64 "$pki/$user.crt")
    client-key-data: $(b64 "$pki/$user.key")
contexts:
- name: aosm-local
  context:
    cluster: aosm-local
    user: $user
    namespace: default
current-context: aosm-local
EOF
  chmod 600 "$file"
}

# start_once DIR ASSETS: start etcd and kube-apiserver on fresh ports and wait for /readyz;
# sets PORT, ETCD_PID, API_PID and ANSWER (the last /readyz answer). Fails if not ready.
# NODE=1: the API server listens on the bridge (NODE_IP:API_PORT) with the node's flags.
start_once() {
  local dir=$1 assets=$2 etcd_port peer_port i host=127.0.0.1 run=()
  local api_flags=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1
    --service-account-issuer=https://kubernetes.default.svc
    --authorization-mode=RBAC --service-cluster-ip-range=10.0.0.0/24
    --disable-admission-plugins=ServiceAccount --endpoint-reconciler-type=none)
  rm -rf "$dir/etcd" "$dir/certdir"
  etcd_port=$(free_port)
  peer_port=$(free_port)
  PORT=$(free_port)
  ANSWER=""
  if ((NODE)); then
    # Its own session: a Ctrl-C meant for the caller must not stop it before `down` does.
    run=(setsid)
    host=$NODE_IP PORT=$API_PORT
    # The issuer is the API server's own URL on the bridge, where pods and an identity
    # provider on this machine can fetch its discovery document and keys. The `kubernetes`
    # Service's endpoint is the advertise address (lease reconciler).
    # shellcheck disable=SC2054 # Node,RBAC is one value
    api_flags=(--bind-address="$NODE_IP" --advertise-address="$NODE_IP"
      --service-account-issuer="$SA_ISSUER" --service-account-jwks-uri="$SA_ISSUER/openid/v1/jwks"
      --kubelet-client-certificate="$dir/pki/kubelet-client.crt" --kubelet-client-key="$dir/pki/kubelet-client.key"
      --kubelet-preferred-address-types=InternalIP
      --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction
      --service-cluster-ip-range="$SERVICE_CIDR" --endpoint-reconciler-type=lease)
  fi

  "${run[@]}" "$assets/etcd" --name aosm-local --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "aosm-local=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync >"$dir/etcd.log" 2>&1 </dev/null &
  ETCD_PID=$!
  echo "$ETCD_PID" >"$dir/etcd.pid"

  "${run[@]}" "$assets/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --secure-port="$PORT" "${api_flags[@]}" \
    --cert-dir="$dir/certdir" \
    --tls-cert-file="$dir/pki/server.crt" --tls-private-key-file="$dir/pki/server.key" \
    --client-ca-file="$dir/pki/ca.crt" \
    --service-account-key-file="$dir/pki/sa.pub" --service-account-signing-key-file="$dir/pki/sa.key" \
    --allow-privileged=true \
    >"$dir/kube-apiserver.log" 2>&1 </dev/null &
  API_PID=$!
  echo "$API_PID" >"$dir/kube-apiserver.pid"
  write_kubeconfig "$dir/kubeconfig" "https://$host:$PORT" admin "$dir/pki"

  for ((i = 0; i < READY_SECONDS * 10; i++)); do
    ANSWER=$(curl -s --max-time 2 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" \
      --key "$dir/pki/admin.key" "https://$host:$PORT/readyz" 2>/dev/null || true)
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
  if ((NODE)); then
    cmd_up_node "$dir"
    return
  fi
  if [[ -n "$(our_pid "$dir" etcd)$(our_pid "$dir" kube-apiserver)" ]]; then
    die "a cluster already runs in $dir (scripts/cluster.sh down $dir stops it)"
  fi
  [[ ! -d "$dir/node" ]] || die "$dir holds a node cluster (scripts/cluster.sh down $dir first)"
  assets=$(kube_assets "$ROOT")
  for b in etcd kube-apiserver; do
    [[ -x "$assets/$b" ]] || die "$assets/$b is missing: run scripts/tools.sh (or set AOSM_KUBE_ASSETS / KUBEBUILDER_ASSETS)"
  done
  command -v curl >/dev/null || die "curl is missing: run scripts/tools.sh"
  rm -rf "$dir/pki"
  make_pki "$dir"
  start_api "$dir" "$assets"
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

# start_api DIR ASSETS: etcd + kube-apiserver ready (start_once, retried when a port that
# was free was taken meanwhile); on failure, the logs are shown and DIR is cleaned up.
start_api() {
  local dir=$1 assets=$2 attempt b
  for attempt in 1 2 3; do
    start_once "$dir" "$assets" && break
    stop_procs "$dir" kube-apiserver etcd
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
}

# cmd_up_node DIR: the node cluster (scripts/kube/node.sh), idempotent.
cmd_up_node() {
  local dir=$1 assets b t0=$SECONDS
  DIR=$dir
  NODE_ASSETS=$(node_assets "$ROOT")
  assets=$(kube_assets "$ROOT")
  for b in etcd kube-apiserver; do
    [[ -x "$assets/$b" ]] || die "$assets/$b is missing: run scripts/tools.sh (or set AOSM_KUBE_ASSETS / KUBEBUILDER_ASSETS)"
  done
  command -v curl >/dev/null || die "curl is missing: run scripts/tools.sh"
  node_preflight
  log "starting a node cluster in $dir (if this fails, scripts/cluster.sh down $dir undoes what was done)"
  node_host_setup
  node_pki
  node_containerd
  node_pause_image
  if [[ -n "$(our_pid "$dir" etcd)" && -n "$(our_pid "$dir" kube-apiserver)" ]]; then
    PORT=$API_PORT ETCD_PID=$(our_pid "$dir" etcd) API_PID=$(our_pid "$dir" kube-apiserver)
    log "etcd and kube-apiserver already run"
  else
    stop_procs "$dir" kube-apiserver etcd
    start_api "$dir" "$assets"
  fi
  node_up_components
  cat <<EOF
Kubernetes $("$assets/kube-apiserver" --version | awk '{print $2}') node cluster ready in $((SECONDS - t0))s: node $NODE_NAME, API server https://$NODE_IP:$API_PORT
bridge: $NODE_IP ($BRIDGE, $NET_CIDR; Services $SERVICE_CIDR, \`kubernetes\` = $KUBE_SERVICE_IP)
Servers pods must reach listen on $NODE_IP; pods pull from a plain-HTTP registry there once
$DIR/node/containerd/certs.d/$NODE_IP:PORT/hosts.toml says so. No cluster DNS: use Service IPs.

  export KUBECONFIG=$dir/kubeconfig
  kubectl get nodes

Logs: $dir/*.log. Stop it, undoing every host change, with: scripts/cluster.sh down $dir
EOF
}

# stop_procs DIR [NAME...]: stop the cluster's processes (default: all; only if they are
# ours); keep its files.
stop_procs() {
  local dir=$1 pid name
  shift
  (($#)) || set -- kubelet kube-proxy kube-scheduler kube-controller-manager containerd kube-apiserver etcd
  for name in "$@"; do
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
  if [[ -d "$dir/node" ]]; then
    [[ $(id -u) -eq 0 ]] || die "down of a node cluster needs root"
    DIR=$dir
    NODE_ASSETS=$(node_assets "$ROOT")
    node_down
  fi
  stop_procs "$dir"
  if [[ -d "$dir/node" ]]; then
    node_down_host
    # Something still mounted under DIR (a kubelet volume that would not unmount): keep
    # the files rather than delete through the mount.
    if awk -v p="$dir/" 'index($5, p) == 1' /proc/self/mountinfo | grep . >/dev/null; then
      die "mounts remain under $dir: not deleting it (see /proc/self/mountinfo)"
    fi
  fi
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
    if [[ -d "$dir/node" ]]; then
      local name pid missing=()
      for name in "${NODE_PROCS[@]}"; do
        pid=$(our_pid "$dir" "$name")
        [[ -n "$pid" ]] || missing+=("$name")
      done
      echo "node: bridge $(sed -n 's/^NODE_IP=//p' "$dir/node/env" 2>/dev/null) (${missing[*]:+not running: ${missing[*]}}${missing[*]:-all node processes run})"
      ((${#missing[@]} == 0)) || return 1
    fi
  else
    echo "not running in $dir${etcd:+ (etcd pid $etcd is left)}${api:+ (kube-apiserver pid $api is left)}"
    return 1
  fi
}

cmd=${1:-}
shift || usage
if [[ "$cmd" == up && "${1:-}" == --node ]]; then
  NODE=1
  shift
elif [[ "$cmd" == up && "${2:-}" == --node ]]; then
  NODE=1
  set -- "$1"
fi
[[ $# -eq 1 ]] || usage
case "$cmd" in
  up) cmd_up "$1" ;;
  down) cmd_down "$1" ;;
  status) cmd_status "$1" ;;
  *) usage ;;
esac
