# shellcheck shell=bash
# The node of `scripts/cluster.sh up --node DIR`: sourced by scripts/cluster.sh (which
# defines log, die, alive, our_pid, stop_pid, make_pki, write_kubeconfig), not run.
#
# What runs (all as root, each under `setsid` so a Ctrl-C meant for the caller does not cut
# it down before `down` can tear it down in order):
#   containerd (Debian's; socket, root, state, runc root and opt dir under DIR/node/containerd),
#   etcd + kube-apiserver (serving on the bridge address, service-account issuer there too),
#   kube-controller-manager, kube-scheduler, kube-proxy (iptables), kubelet (cgroupfs, cgroup
#   v1 allowed), the pause image built from source (scripts/tools.sh: pause.c of the pinned
#   k8s.io/kubernetes, static) imported into containerd, and the bridge + host-local CNI.
#
# Network confinement: every address is inside one private /16 ($NODE_NET.0.0/16, default
# 10.88.0.0/16) held by a bridge inside this machine: the node/API server on .0.1, pods from
# .1.1 to .127.254, Services in .255.0/24. Pods get no default route (only the /16 on the
# bridge and the Service range via the node), no address is masqueraded, and an iptables
# FORWARD rule drops anything forwarded from the /16 to outside it: no packet the cluster
# makes can leave the machine.
#
# Host changes, each recorded under DIR/node/host/ before it is made so that `down` undoes
# exactly it (also after a failed `up`): the bridge, the guard rule, sysctls (old values
# saved), fixed paths that containerd/kubelet/libcni create whatever they are told
# (/run/containerd, /var/lib/kubelet, /var/lib/cni, /run/netns, ...), the kubelet's kubepods
# cgroups and iptables chains, kube-proxy's chains (kube-proxy --cleanup), mounts under DIR.

NODE_NET=${AOSM_NODE_NET:-10.88}
BRIDGE=${AOSM_NODE_BRIDGE:-aosm-node0}
NODE_IP=$NODE_NET.0.1
NET_CIDR=$NODE_NET.0.0/16
SERVICE_CIDR=$NODE_NET.255.0/24
KUBE_SERVICE_IP=$NODE_NET.255.1 # the first address of SERVICE_CIDR: the `kubernetes` Service
POD_RANGE_START=$NODE_NET.1.1
POD_RANGE_END=$NODE_NET.127.254
# Fixed: the API server listens on the bridge address only, which no one else holds.
API_PORT=${AOSM_NODE_API_PORT:-6443}
NODE_NAME=aosm-node
SA_ISSUER=${AOSM_SA_ISSUER:-https://$NODE_IP:$API_PORT}
GUARD_COMMENT=aosm-node-guard
PAUSE_IMAGE=localhost/aosm-pause:latest
CNI_BIN=/usr/lib/cni
# The node processes, in start order (etcd and kube-apiserver are started by cluster.sh).
# shellcheck disable=SC2034 # used by cluster.sh
NODE_PROCS=(containerd kube-controller-manager kube-scheduler kube-proxy kubelet)
# Sysctls the kubelet (protectKernelDefaults: false), kube-proxy, the bridge plugin or this
# script may set: their values are saved before `up` and written back by `down`.
NODE_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.ipv4.conf.all.route_localnet)
# Paths the components create whatever their configuration says (containerd 1.6's shim
# sockets and fifos, the kubelet's device-plugin socket, libcni's cache, libmount's utab,
# CNI network namespaces): removed by `down` if `up` found them absent.
NODE_FIXED_PATHS=(/run/containerd /var/lib/kubelet /var/lib/cni /run/netns /opt/cni /etc/cni /run/mount)

node_guard_rule() { # the FORWARD rule's match and target, for iptables -C/-I/-D
  printf '%s\n' -s "$NET_CIDR" ! -d "$NET_CIDR" -m comment --comment "$GUARD_COMMENT" -j DROP
}

# node_quiet CMD...: run CMD, its output discarded.
node_quiet() { "$@" >/dev/null 2>&1; }

# node_wait WHAT SECONDS PROC CMD...: poll CMD every 0.2 s until it succeeds; fail at once if
# process PROC (- for none) exits, or after SECONDS.
node_wait() {
  local what=$1 secs=$2 proc=$3 i
  shift 3
  for ((i = 0; i < secs * 5; i++)); do
    node_quiet "$@" && return 0
    if [[ "$proc" != - && -z "$(our_pid "$DIR" "$proc")" ]]; then
      tail -n 20 "$DIR/$proc.log" >&2 || true
      die "$proc exited while waiting for $what (log: $DIR/$proc.log)"
    fi
    sleep 0.2
  done
  [[ "$proc" == - ]] || tail -n 20 "$DIR/$proc.log" >&2 || true
  die "timed out after ${secs}s waiting for $what"
}

# node_start NAME CMD...: start CMD in its own session unless NAME runs; pid in DIR/NAME.pid.
node_start() {
  local name=$1 pid
  shift
  pid=$(our_pid "$DIR" "$name")
  if [[ -n "$pid" ]]; then
    log "$name already runs (pid $pid)"
    return 0
  fi
  setsid "$@" >>"$DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/$name.pid"
}

node_preflight() {
  local b
  [[ $(id -u) -eq 0 ]] || die "up --node needs root (network bridge, iptables, cgroups, mounts)"
  [[ "$NODE_NET" =~ ^(10\.[0-9]{1,3}|172\.(1[6-9]|2[0-9]|3[01])|192\.168)$ ]] ||
    die "AOSM_NODE_NET=$NODE_NET is not the first two octets of a private /16 (e.g. 10.88)"
  for b in kubelet kube-proxy kube-scheduler kube-controller-manager pause; do
    [[ -x "$NODE_ASSETS/$b" ]] || die "$NODE_ASSETS/$b is missing: run scripts/tools.sh"
  done
  for b in /usr/bin/containerd /usr/bin/ctr /usr/bin/containerd-shim-runc-v2 /usr/sbin/runc \
    "$CNI_BIN/bridge" "$CNI_BIN/host-local" "$CNI_BIN/loopback"; do
    [[ -x "$b" ]] || die "$b is missing: run scripts/tools.sh (apt: containerd runc containernetworking-plugins)"
  done
  for b in iptables ip6tables ip sysctl kubectl; do
    command -v "$b" >/dev/null || die "$b is missing: run scripts/tools.sh"
  done
  # One node cluster per machine: the bridge, the fixed ports and the kubelet's cgroups are
  # machine-wide. Refuse rather than share them with a cluster of another DIR.
  if ip link show "$BRIDGE" >/dev/null 2>&1 && [[ ! -f "$DIR/node/host/bridge.created" ]]; then
    die "network interface $BRIDGE exists and was not made by this cluster (another node cluster? scripts/cluster.sh down ITS_DIR)"
  fi
  if [[ ! -f "$DIR/node/host/bridge.created" ]] && ip -4 -o addr show | awk '{print $4}' | grep "^$NODE_NET\." >/dev/null; then
    die "an interface already holds an address in $NET_CIDR (set AOSM_NODE_NET to another private /16)"
  fi
  if [[ ! -d "$DIR/node/host" ]] && iptables-save 2>/dev/null | grep -- '-j KUBE-' >/dev/null; then
    die "iptables already holds KUBE-* rules: another Kubernetes node runs on this machine"
  fi
}

# node_host_setup: record, then make, the host changes (idempotent).
node_host_setup() {
  local h=$DIR/node/host kv p
  mkdir -p "$h"
  if [[ ! -f "$h/sysctl.orig" ]]; then
    for kv in "${NODE_SYSCTLS[@]}"; do
      sysctl -n "$kv" >/dev/null 2>&1 && echo "$kv=$(sysctl -n "$kv")"
    done >"$h/sysctl.orig.tmp"
    mv "$h/sysctl.orig.tmp" "$h/sysctl.orig"
    for p in "${NODE_FIXED_PATHS[@]}"; do
      [[ -e "$p" ]] || echo "$p"
    done >"$h/paths.created"
    # What the network namespaces and iptables held before (down/tests compare with them).
    ls /run/netns 2>/dev/null >"$h/netns.before" || true
    iptables-save 2>/dev/null | grep -E '^(-A|:)' | sed 's/ \[[0-9:]*\]$//' >"$h/iptables.before" || true
  fi
  # The kubelet would set the first four itself; forwarding and bridge netfilter are what
  # pod traffic and kube-proxy's DNAT on the bridge need.
  for kv in vm.overcommit_memory=1 vm.panic_on_oom=0 kernel.panic=10 kernel.panic_on_oops=1 \
    net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1; do
    sysctl -q -w "$kv" || die "cannot set sysctl $kv"
  done

  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    touch "$h/bridge.created"
    ip link add "$BRIDGE" type bridge
  fi
  ip addr show dev "$BRIDGE" | grep -F " $NODE_IP/16 " >/dev/null || ip addr add "$NODE_IP/16" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  node_guard_first
}

# node_guard_first: the guard rule first in FORWARD (kube-proxy and the kubelet insert their
# jumps at the top after it was added, so `up` puts it back in front when they run).
node_guard_first() {
  local -a rule
  mapfile -t rule < <(node_guard_rule)
  touch "$DIR/node/host/guard.added"
  if [[ "$(iptables -S FORWARD 2>/dev/null | sed -n 2p)" != *"$GUARD_COMMENT"* ]]; then
    while iptables -D FORWARD "${rule[@]}" 2>/dev/null; do :; done
    iptables -I FORWARD 1 "${rule[@]}"
  fi
}

node_pki() {
  [[ -f "$DIR/pki/done" ]] && return 0
  rm -rf "$DIR/pki"
  make_pki "$DIR" "IP:$NODE_IP,IP:$KUBE_SERVICE_IP,DNS:kubernetes.default.svc.cluster.local" \
    "kubelet-client|/O=system:masters/CN=kube-apiserver-kubelet-client" \
    "controller-manager|/CN=system:kube-controller-manager" \
    "scheduler|/CN=system:kube-scheduler" \
    "proxy|/CN=system:kube-proxy" \
    "kubelet|/O=system:nodes/CN=system:node:$NODE_NAME"
  touch "$DIR/pki/done"
}

node_containerd() {
  local c=$DIR/node/containerd
  mkdir -p "$c/certs.d" "$DIR/node/cni/net.d" "$DIR/node/cni/ipam"
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[debug]
  address = "$c/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  # Even root lacks CAP_SYS_RESOURCE here: runc could not lower a container's
  # oom_score_adj and fails every sandbox ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "$c/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$DIR/node/cni/net.d"
  # Registries pods pull from (on the bridge address): one hosts.toml per host:port here,
  # read at each pull (tests/support/node.rs writes them for plain-HTTP test registries).
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$c/certs.d"
EOF
  # Pods: an address on the bridge and routes to the /16 (on the bridge) and to the Service
  # range (through the node, where kube-proxy's DNAT runs). No default route, no masquerade.
  cat >"$DIR/node/cni/net.d/10-aosm.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "aosm-node",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "isDefaultGateway": false,
      "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$DIR/node/cni/ipam",
        "ranges": [[{"subnet": "$NET_CIDR", "rangeStart": "$POD_RANGE_START",
                     "rangeEnd": "$POD_RANGE_END", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "$SERVICE_CIDR", "gw": "$NODE_IP"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF
  node_start containerd /usr/bin/containerd --config "$c/config.toml"
  node_wait containerd 30 containerd ctr --address "$c/containerd.sock" version
}

# node_pause_image: the sandbox image, an OCI archive made here (one uncompressed layer with
# the static pause binary) and imported into containerd: no registry needed for it.
node_pause_image() {
  local ctr=(ctr --address "$DIR/node/containerd/containerd.sock" -n k8s.io) o=$DIR/node/pause
  local ld ls_ cd cs md ms
  "${ctr[@]}" images ls -q 2>/dev/null | grep -xF "$PAUSE_IMAGE" >/dev/null && return 0
  rm -rf "$o"
  mkdir -p "$o/rootfs" "$o/oci/blobs/sha256"
  cp "$NODE_ASSETS/pause" "$o/rootfs/pause"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$o/rootfs" -cf "$o/layer.tar" pause
  blob() { # FILE: move into the layout; print "DIGEST SIZE"
    local d s
    d=$(sha256sum "$1" | cut -d' ' -f1)
    s=$(stat -c %s "$1")
    mv "$1" "$o/oci/blobs/sha256/$d"
    echo "$d $s"
  }
  read -r ld ls_ < <(blob "$o/layer.tar")
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$ld" >"$o/config.json"
  read -r cd cs < <(blob "$o/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$cd" "$cs" "$ld" "$ls_" >"$o/manifest.json"
  read -r md ms < <(blob "$o/manifest.json")
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"latest"}}]}' \
    "$md" "$ms" "$PAUSE_IMAGE" >"$o/oci/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$o/oci/oci-layout"
  tar -C "$o/oci" -cf "$o/pause.oci.tar" .
  "${ctr[@]}" images import --index-name "$PAUSE_IMAGE" "$o/pause.oci.tar" >"$DIR/node/pause/import.log" 2>&1 ||
    die "ctr images import of the pause image failed: $(cat "$DIR/node/pause/import.log")"
  "${ctr[@]}" images ls -q | grep -xF "$PAUSE_IMAGE" >/dev/null ||
    die "the pause image was imported but containerd does not list $PAUSE_IMAGE: $("${ctr[@]}" images ls -q | tr '\n' ' ')"
}

# node_kubeconfigs: one per component (client certificates), all to https://NODE_IP:API_PORT.
node_kubeconfigs() {
  local u
  for u in controller-manager scheduler proxy kubelet; do
    write_kubeconfig "$DIR/node/$u.kubeconfig" "https://$NODE_IP:$API_PORT" "$u" "$DIR/pki"
  done
}

# node_issuer_discovery: unauthenticated clients (an identity provider validating the pods'
# ServiceAccount tokens) may read /.well-known/openid-configuration and /openid/v1/jwks.
node_issuer_discovery() {
  kubectl apply -f - >/dev/null <<EOF || die "cannot create the ClusterRoleBinding for service-account issuer discovery"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: aosm-service-account-issuer-discovery
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:service-account-issuer-discovery
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: system:unauthenticated
EOF
}

node_components() {
  local p=$DIR/pki k=$DIR/node
  node_start kube-controller-manager "$NODE_ASSETS/kube-controller-manager" \
    --kubeconfig="$k/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$k/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$k/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --controllers='*' \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --allocate-node-cidrs=false
  node_start kube-scheduler "$NODE_ASSETS/kube-scheduler" --kubeconfig="$k/scheduler.kubeconfig" \
    --authentication-kubeconfig="$k/scheduler.kubeconfig" --authorization-kubeconfig="$k/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false
  # NodePorts only on the bridge address; no conntrack tuning (these are host-wide sysctls).
  node_start kube-proxy "$NODE_ASSETS/kube-proxy" --kubeconfig="$k/proxy.kubeconfig" --proxy-mode=iptables \
    --hostname-override="$NODE_NAME" --cluster-cidr="$NET_CIDR" --nodeport-addresses="$NODE_IP/32" \
    --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256 \
    --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0

  mkdir -p "$k/kubelet" "$k/pod-logs"
  # No cluster DNS: pods resolve against their own loopback (a lookup fails at once and
  # nothing leaves the machine). An empty file would not do: containerd copies the host's.
  echo "nameserver 127.0.0.1" >"$k/resolv.conf"
  cat >"$k/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 hosts: kubelet 1.35 refuses them unless told otherwise. No systemd: cgroupfs.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$DIR/node/containerd/containerd.sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $p/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: $k/resolv.conf
podLogsDir: $k/pod-logs
rotateCertificates: false
serverTLSBootstrap: false
failSwapOn: false
# Never collect images (the pause image is imported, not pullable) and evict only when the
# machine is truly out of room: shared CI disks run nearly full.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "100Mi", imagefs.available: "100Mi", nodefs.inodesFree: "1%"}
EOF
  node_start kubelet "$NODE_ASSETS/kubelet" --config="$k/kubelet.yaml" --kubeconfig="$k/kubelet.kubeconfig" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --root-dir="$k/kubelet" --cert-dir="$k/kubelet/pki" --v=1
}

node_ready() {
  [[ "$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

# node_env: DIR/node/env, what tests and scripts read (KEY=VALUE lines).
node_env() {
  cat >"$DIR/node/env" <<EOF
NODE_IP=$NODE_IP
BRIDGE=$BRIDGE
NET_CIDR=$NET_CIDR
SERVICE_CIDR=$SERVICE_CIDR
KUBERNETES_SERVICE_IP=$KUBE_SERVICE_IP
API_SERVER=https://$NODE_IP:$API_PORT
SA_ISSUER=$SA_ISSUER
NODE_NAME=$NODE_NAME
CONTAINERD_SOCK=$DIR/node/containerd/containerd.sock
REGISTRY_HOSTS_DIR=$DIR/node/containerd/certs.d
KUBECONFIG=$DIR/kubeconfig
EOF
}

# node_up: after cluster.sh has started (or found) etcd + kube-apiserver on the bridge.
node_up_components() {
  local t0=$SECONDS
  export KUBECONFIG=$DIR/kubeconfig
  node_issuer_discovery
  node_kubeconfigs
  node_components
  node_wait "node $NODE_NAME Ready" "$READY_SECONDS" kubelet node_ready
  log "node $NODE_NAME Ready ($((SECONDS - t0))s after the API server)"
  # A pod applied before kube-controller-manager made the namespace's `default`
  # ServiceAccount is refused; its token volume also needs the kube-root-ca.crt ConfigMap.
  node_wait "the default ServiceAccount" 60 kube-controller-manager kubectl -n default get serviceaccount default
  node_wait "the kube-root-ca.crt ConfigMap" 60 kube-controller-manager kubectl -n default get configmap kube-root-ca.crt
  # kube-proxy has synced once the `kubernetes` Service has its chain.
  node_wait "kube-proxy's rules" 60 kube-proxy sh -c "iptables-save -t nat | grep -q 'KUBE-SVC-.*default/kubernetes'"
  node_guard_first
  node_env
}

# --- down -------------------------------------------------------------------------------

# node_shims: pids of the containerd shims serving this cluster's containerd.
node_shims() {
  local f
  for f in /proc/[0-9]*/cmdline; do
    if tr '\0' ' ' 2>/dev/null <"$f" | grep -F -- "-address $DIR/node/containerd/containerd.sock " >/dev/null; then
      basename "$(dirname "$f")"
    fi
  done
}

node_stop() { # NAME [SECONDS]
  local pid
  pid=$(our_pid "$DIR" "$1")
  [[ -n "$pid" ]] || return 0
  stop_pid "$pid" "${2:-10}"
  log "stopped $1 (pid $pid)"
}

# node_down: stop the node (before cluster.sh stops etcd + kube-apiserver) and undo every
# host change recorded under DIR/node/host. Best effort throughout: a step that fails must
# not keep the later ones from running.
node_down() {
  local h=$DIR/node/host c=$DIR/node/containerd id pid m ns i
  export KUBECONFIG=$DIR/kubeconfig
  local ctr=(ctr --address "$c/containerd.sock" -n k8s.io)
  # 1. No controller recreates pods; the kubelet tears the pods down the normal way (CNI
  #    DEL, volumes unmounted) while the API server still runs.
  node_stop kube-controller-manager
  node_stop kube-scheduler
  if [[ -n "$(our_pid "$DIR" kubelet)" && -n "$(our_pid "$DIR" kube-apiserver)" ]]; then
    timeout 60 kubectl delete pods --all -A --grace-period=1 --wait=true --timeout=50s >/dev/null 2>&1 ||
      log "some pods were not deleted in time: removing what is left below"
  fi
  node_stop kubelet 30
  # 2. Whatever containerd still runs.
  if [[ -n "$(our_pid "$DIR" containerd)" ]]; then
    for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
      "${ctr[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    for ((i = 0; i < 50; i++)); do
      [[ -z "$("${ctr[@]}" tasks ls -q 2>/dev/null | head -1)" ]] && break
      for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
        "${ctr[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
      done
      sleep 0.1
    done
    for id in $("${ctr[@]}" containers ls -q 2>/dev/null); do
      "${ctr[@]}" containers rm "$id" >/dev/null 2>&1 || true
    done
  fi
  # 3. kube-proxy, then its chains (both families).
  node_stop kube-proxy
  if [[ -x "$NODE_ASSETS/kube-proxy" ]] && { iptables-save; ip6tables-save; } 2>/dev/null | grep KUBE- >/dev/null; then
    "$NODE_ASSETS/kube-proxy" --cleanup --proxy-mode=iptables >>"$DIR/kube-proxy.log" 2>&1 || true
  fi
  # 4. containerd and the shims on its socket (nothing else's).
  node_stop containerd
  for pid in $(node_shims); do
    kill -KILL "$pid" 2>/dev/null && log "killed containerd shim pid $pid"
  done
  for ((i = 0; i < 50; i++)); do
    [[ -z "$(node_shims)" ]] && break
    sleep 0.1
  done
  # 5. Mounts under DIR (deepest first) and the network namespaces made since `up`.
  for _ in 1 2 3; do
    mapfile -t mnts < <(awk -v p="$DIR/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    ((${#mnts[@]})) || break
    for m in "${mnts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  done
  if [[ -d /run/netns && -f "$h/netns.before" ]]; then
    for ns in /run/netns/cni-*; do
      [[ -e "$ns" ]] || continue
      grep -qxF "$(basename "$ns")" "$h/netns.before" && continue
      umount "$ns" 2>/dev/null || true
      rm -f "$ns"
    done
  fi
}

# node_down_host: after etcd + kube-apiserver stopped: the host changes.
node_down_host() {
  local h=$DIR/node/host ipt hook t chain kv p d
  # The kubelet's own chains (kube-proxy --cleanup leaves them).
  for ipt in iptables ip6tables; do
    for hook in INPUT OUTPUT; do
      while $ipt -t filter -D "$hook" -j KUBE-FIREWALL 2>/dev/null; do :; done
    done
    for t in filter nat mangle; do
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        $ipt -t "$t" -F "$chain" 2>/dev/null && $ipt -t "$t" -X "$chain" 2>/dev/null
      done
    done
  done
  if [[ -f "$h/guard.added" ]]; then
    local -a rule
    mapfile -t rule < <(node_guard_rule)
    while iptables -D FORWARD "${rule[@]}" 2>/dev/null; do :; done
    rm -f "$h/guard.added"
  fi
  if [[ -f "$h/bridge.created" ]]; then
    if ! ip link show "$BRIDGE" >/dev/null 2>&1 || ip link delete "$BRIDGE"; then
      rm -f "$h/bridge.created"
      log "deleted bridge $BRIDGE"
    fi
  fi
  # The kubelet's QoS cgroups (empty once the pods are gone), deepest first.
  for d in /sys/fs/cgroup/*/kubepods; do
    [[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  if [[ -f "$h/sysctl.orig" ]]; then
    while IFS= read -r kv; do sysctl -q -w "$kv" 2>/dev/null || log "could not restore sysctl $kv"; done <"$h/sysctl.orig"
    rm -f "$h/sysctl.orig"
    log "restored sysctls"
  fi
  if [[ -f "$h/paths.created" ]]; then
    while IFS= read -r p; do
      [[ -e "$p" ]] || continue
      if awk -v p="$p/" 'index($5, p) == 1' /proc/self/mountinfo | grep . >/dev/null; then
        log "mounts remain under $p: leaving it"
      else
        rm -rf "$p"
      fi
    done <"$h/paths.created"
    rm -f "$h/paths.created"
  fi
  true
}
