#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for tests and `make dev-cluster`:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok-simulated nodes.
#
#   cluster.sh bin-dir                      build the pinned binaries once (cached) and print their directory
#   cluster.sh up DIR [--nodes N] [--owner PID]
#                                           start everything with state in DIR, print DIR/kubeconfig;
#                                           with --owner, tear down by itself when PID exits
#   cluster.sh down DIR                     stop everything started in DIR and remove DIR
set -euo pipefail

K8S_VERSION=1.37.2
ETCD_MODULE=go.etcd.io/etcd/server/v3
KWOK_VERSION=v0.8.0
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${PIXIE_CACHE:-$HOME/.cache/pixie-rs}
BIN=$CACHE/k8s-v$K8S_VERSION/bin
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)

log() { echo "cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

build_binaries() {
  local missing=()
  for b in "${BINARIES[@]}"; do [[ -x $BIN/$b ]] || missing+=("$b"); done
  ((${#missing[@]} == 0)) && return 0
  command -v go >/dev/null || die "go is needed to build the Kubernetes $K8S_VERSION test bed"
  log "building ${missing[*]} (Kubernetes $K8S_VERSION, once; cached in $BIN)"
  mkdir -p "$BIN.tmp"
  (
    cd "$HERE/k8s"
    export GOFLAGS=-mod=mod
    # What `kubectl version` and /version report; an unstamped build says v0.0.0-master.
    local ldflags="" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=${K8S_VERSION%%.*}"
      ldflags+=" -X $pkg.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION") -X $pkg.gitTreeState=clean"
    done
    go build -trimpath -ldflags="$ldflags" -o "$BIN.tmp/" k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kubectl
    go build -trimpath -o "$BIN.tmp/etcd" "$ETCD_MODULE"
    GOBIN="$BIN.tmp" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  )
  mkdir -p "$BIN"
  for b in "${BINARIES[@]}"; do mv -f "$BIN.tmp/$b" "$BIN/$b"; done
  rm -rf "$BIN.tmp"
}

free_ports() { # N -> N distinct free loopback ports
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

start() { # NAME CMD... : start in its own session, log to DIR/logs/NAME.log, remember the pid
  local name=$1; shift
  setsid "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/pids/$name"
}

wait_for() { # DESCRIPTION SECONDS CMD...
  local what=$1 secs=$2; shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "timed out after ${secs}s waiting for $what; last log lines:"
  tail -n 20 "$DIR"/logs/*.log >&2 || true
  return 1
}

gen_certs() {
  local p=$DIR/pki
  mkdir -p "$p"
  (
    cd "$p"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3 \
      -subj /CN=pixie-test-ca -keyout ca.key -out ca.crt 2>/dev/null
    # Serving certificate: the names in-cluster clients use for the API, and loopback.
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=kube-apiserver \
      -keyout apiserver.key -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    # One admin identity (system:masters) for the components and the tests.
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/O=system:masters/CN=admin" \
      -keyout admin.key -out admin.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3 \
      -extfile admin.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

write_kubeconfig() { # PORT
  local p=$DIR/pki
  cat >"$DIR/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: pixie-test
  cluster:
    server: https://127.0.0.1:$1
    certificate-authority-data: $(base64 -w0 <"$p/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 <"$p/admin.crt")
    client-key-data: $(base64 -w0 <"$p/admin.key")
contexts:
- name: pixie-test
  context: {cluster: pixie-test, user: admin}
current-context: pixie-test
KC
}

nodes_yaml() { # N
  for ((n = 0; n < $1; n++)); do
    cat <<NODE
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$n
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$n
    kubernetes.io/os: linux
    node-role.kubernetes.io/agent: ""
    type: kwok
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
  addresses:
  - {type: InternalIP, address: 10.243.0.$((n + 1))}
  - {type: Hostname, address: kwok-node-$n}
  nodeInfo:
    architecture: amd64
    kernelVersion: 6.1.0-kwok
    kubeletVersion: fake
    operatingSystem: linux
    osImage: kwok
NODE
  done
}

up() {
  local nodes=3 owner=""
  while (($#)); do
    case $1 in
      --nodes) nodes=$2; shift 2 ;;
      --owner) owner=$2; shift 2 ;;
      *) die "unknown flag $1" ;;
    esac
  done
  build_binaries
  [[ -d $DIR/pids ]] && die "$DIR already holds a control plane; stop it with: cluster.sh down $DIR"
  mkdir -p "$DIR/logs" "$DIR/pids" "$DIR/etcd"
  # A start that fails half-way must not leave processes behind.
  trap 'down' EXIT
  gen_certs
  local etcd_port peer_port api_port
  read -r etcd_port peer_port api_port < <(free_ports 3)
  local p=$DIR/pki kc=$DIR/kubeconfig
  write_kubeconfig "$api_port"

  start etcd "$BIN/etcd" --name=test --data-dir="$DIR/etcd" --log-level=warn \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="test=http://127.0.0.1:$peer_port" --listen-metrics-urls="" \
    --unsafe-no-fsync --quota-backend-bytes=4294967296
  start kube-apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 --authorization-mode=Node,RBAC --allow-privileged=true \
    --endpoint-reconciler-type=none --profiling=false --v=1
  wait_for "kube-apiserver /readyz" 90 "$BIN/kubectl" --kubeconfig="$kc" get --raw /readyz
  start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" --secure-port=0 \
    --leader-elect=false --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
    --use-service-account-credentials=false --controllers='*' --profiling=false --v=1
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$kc" --authentication-kubeconfig="$kc" \
    --authorization-kubeconfig="$kc" --secure-port=0 --leader-elect=false --profiling=false --v=1
  start kwok "$BIN/kwok" --kubeconfig="$kc" --config="$HERE/kwok-stages.yaml" --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom \
    --cidr=10.244.0.1/16 --node-lease-duration-seconds=40 --v=INFO
  nodes_yaml "$nodes" | "$BIN/kubectl" --kubeconfig="$kc" apply -f - >/dev/null
  wait_for "$nodes Ready nodes" 60 "$BIN/kubectl" --kubeconfig="$kc" wait --for=condition=Ready node --all --timeout=1s
  wait_for "the default ServiceAccount" 60 "$BIN/kubectl" --kubeconfig="$kc" get serviceaccount default -n default
  if [[ -n $owner ]]; then
    # Tear down with the owner, also when it is killed and never gets to call `down`.
    setsid bash -c "while kill -0 $owner 2>/dev/null; do sleep 1; done; exec '$HERE/cluster.sh' down '$DIR'" \
      >/dev/null 2>&1 </dev/null &
  fi
  trap - EXIT
  echo "$kc"
}

down() {
  [[ -d $DIR/pids ]] || { rm -rf "$DIR"; return 0; }
  local pids=() name
  for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    [[ -f $DIR/pids/$name ]] && pids+=("$(cat "$DIR/pids/$name")")
  done
  ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  ((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null || true
  rm -rf "$DIR"
}

cmd=${1:-}
case $cmd in
  bin-dir) build_binaries; echo "$BIN" ;;
  up) DIR=${2:?usage: cluster.sh up DIR}; shift 2; DIR=$(mkdir -p "$DIR" && cd "$DIR" && pwd); up "$@" ;;
  down) DIR=${2:?usage: cluster.sh down DIR}; down ;;
  *) echo "usage: cluster.sh bin-dir | up DIR [--nodes N] [--owner PID] | down DIR" >&2; exit 2 ;;
esac
