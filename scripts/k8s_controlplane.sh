#!/usr/bin/env bash
# A real, local Kubernetes control plane for the tests, built from Go modules (no Docker, no downloads but the Go
# module proxy): etcd (embedded, tests/k8s/etcd), kube-apiserver, kube-controller-manager, kube-scheduler
# (k8s.io/kubernetes via tests/k8s/controlplane/go.mod) and kwok (tests/k8s/kwok: fake nodes, pods Running/Ready
# without a kubelet). Everything listens on 127.0.0.1, ports 27000-27099 (docs/design.md "Test port ranges").
#
#   scripts/k8s_controlplane.sh build [NAME...]  build the binaries (or only NAMEs) into .build/k8s/bin, skipping
#                                            those already built from the same go.mod/go.sum/sources and Go version
#   scripts/k8s_controlplane.sh up [DIR]     start everything in DIR (default .build/k8s/run), write DIR/kubeconfig,
#                                            wait for /readyz and for every fake node to be Ready
#   scripts/k8s_controlplane.sh down [DIR]   stop exactly the processes that `up` started in DIR (its pid files)
#   scripts/k8s_controlplane.sh env [DIR]    print `export KUBECONFIG=DIR/kubeconfig`
#
# Environment: MESHOS_K8S_PORT_BASE (default 27000), MESHOS_K8S_NODES (fake nodes, default 3),
# MESHOS_K8S_BIN (binary dir, default .build/k8s/bin), MESHOS_K8S_UP_TIMEOUT (seconds, default 120).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${MESHOS_K8S_BIN:-$ROOT/.build/k8s/bin}
SRC=$ROOT/tests/k8s
K8S_VERSION=v1.37.2
BASE=${MESHOS_K8S_PORT_BASE:-27000}
NODES=${MESHOS_K8S_NODES:-3}
UP_TIMEOUT=${MESHOS_K8S_UP_TIMEOUT:-120}
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

die() { echo "k8s_controlplane: $*" >&2; exit 1; }
log() { echo "k8s_controlplane: $*" >&2; }

case "$BASE" in ''|*[!0-9]*) die "MESHOS_K8S_PORT_BASE must be a port number, got '$BASE'";; esac
case "$NODES" in ''|*[!0-9]*|0) die "MESHOS_K8S_NODES must be a positive integer, got '$NODES'";; esac
case "$UP_TIMEOUT" in ''|*[!0-9]*|0) die "MESHOS_K8S_UP_TIMEOUT must be a positive integer, got '$UP_TIMEOUT'";; esac
ETCD_PORT=$((BASE + 1)) ETCD_PEER_PORT=$((BASE + 2)) API_PORT=$((BASE + 3))
KCM_PORT=$((BASE + 4)) SCHED_PORT=$((BASE + 5)) KWOK_PORT=$((BASE + 6))

# --- build -------------------------------------------------------------------------------------------------------

# module dir and package of each binary
module_of() {
  case "$1" in
    etcd) echo "$SRC/etcd .";;
    kwok) echo "$SRC/kwok sigs.k8s.io/kwok/cmd/kwok";;
    *) echo "$SRC/controlplane k8s.io/kubernetes/cmd/$1";;
  esac
}

# What a binary is built from: the module's files and the Go version; equal stamp = nothing to rebuild.
build_key() {
  local dir=$1
  { go version; cat "$dir"/go.mod "$dir"/go.sum; cat "$dir"/*.go 2>/dev/null || true; } | sha256sum | cut -d' ' -f1
}

cmd_build() {
  command -v go >/dev/null || die "go is not on PATH (needed to build the control plane)"
  mkdir -p "$BIN"
  local name dir pkg key start secs ldflags total_start
  total_start=$(date +%s)
  # Version stamps as Kubernetes' own release build sets them, so /version reports the real release.
  local vpkg=k8s.io/component-base/version
  local k8s_ldflags="-s -w -X $vpkg.gitVersion=$K8S_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=37"
  k8s_ldflags+=" -X $vpkg.gitTreeState=clean"
  local names=("$@")
  [[ ${#names[@]} -gt 0 ]] || names=("${COMPONENTS[@]}")
  for name in "${names[@]}"; do
    [[ " ${COMPONENTS[*]} " == *" $name "* ]] || die "unknown component '$name': use ${COMPONENTS[*]}"
  done
  for name in "${names[@]}"; do
    read -r dir pkg <<<"$(module_of "$name")"
    key=$(build_key "$dir")
    if [[ -x $BIN/$name && -f $BIN/$name.key && $(cat "$BIN/$name.key") == "$key" ]]; then
      log "$name: up to date ($(du -h "$BIN/$name" | cut -f1))"
      continue
    fi
    ldflags="-s -w"
    [[ $dir == "$SRC/controlplane" ]] && ldflags=$k8s_ldflags
    start=$(date +%s)
    # nice: other engineers run timing-sensitive tests on the same cores.
    (cd "$dir" && nice -n 19 go build -mod=readonly -trimpath -ldflags="$ldflags" -o "$BIN/$name.tmp" "$pkg") \
      || die "$name: go build failed (module $dir, package $pkg)"
    mv -f "$BIN/$name.tmp" "$BIN/$name"
    echo "$key" >"$BIN/$name.key"
    secs=$(( $(date +%s) - start ))
    log "$name: built in ${secs}s ($(du -h "$BIN/$name" | cut -f1))"
  done
  log "build done in $(( $(date +%s) - total_start ))s"
}

# --- up / down ---------------------------------------------------------------------------------------------------

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A kubeconfig with a bearer token (static token file, see gen_pki).
write_kubeconfig() {
  local file=$1 user=$2 token=$3
  umask 077
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $DIR/pki/ca.crt
users:
- name: $user
  user:
    token: $token
contexts:
- name: local
  context:
    cluster: local
    user: $user
current-context: local
EOF
}

gen_pki() {
  command -v openssl >/dev/null || die "openssl is not on PATH (needed for the control plane's certificates)"
  local pki=$DIR/pki
  mkdir -p "$pki"
  chmod 700 "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
      -subj "/CN=meshos-test-ca" -keyout ca.key -out ca.crt \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=kube-apiserver" \
      -keyout apiserver.key -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,%s\n' \
      'DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local' >apiserver.ext
    # What strict verifiers (Python 3.13's ssl) require of a leaf: key usages and the issuer's key id.
    printf '%s\n' 'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' \
      'authorityKeyIdentifier=keyid,issuer' 'subjectKeyIdentifier=hash' >>apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    # service-account token signing pair
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f apiserver.csr apiserver.ext
  ) || die "openssl failed to make the certificates in $pki"
  # Static tokens: token,user,uid,"groups". The components are masters too: a throw-away test plane.
  local admin kcm sched kwok
  admin=$(openssl rand -hex 24) kcm=$(openssl rand -hex 24) sched=$(openssl rand -hex 24) kwok=$(openssl rand -hex 24)
  umask 077
  {
    echo "$admin,admin,uid-admin,\"system:masters\""
    echo "$kcm,system:kube-controller-manager,uid-kcm,\"system:masters\""
    echo "$sched,system:kube-scheduler,uid-sched,\"system:masters\""
    echo "$kwok,kwok,uid-kwok,\"system:masters\""
  } >"$pki/tokens.csv"
  write_kubeconfig "$DIR/kubeconfig" admin "$admin"
  write_kubeconfig "$DIR/kcm.kubeconfig" system:kube-controller-manager "$kcm"
  write_kubeconfig "$DIR/scheduler.kubeconfig" system:kube-scheduler "$sched"
  write_kubeconfig "$DIR/kwok.kubeconfig" kwok "$kwok"
  ADMIN_TOKEN=$admin
}

# start NAME ARGS...: run BIN/NAME detached (own session), log to DIR/logs, pid to DIR/pids.
start() {
  local name=$1
  shift
  setsid "$BIN/$name" "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/pids/$name.pid"
}

# running PID: exists and is not a zombie (an orphan that nobody reaped yet has exited all the same)
running() { [[ $1 =~ ^[0-9]+$ && -r /proc/$1/stat ]] && [[ $(cut -d')' -f2 </proc/"$1"/stat | cut -d' ' -f2) != Z ]]; }

# ours NAME PID: PID is still the NAME that `up` started for DIR (pids are reused): same binary, DIR in its arguments.
ours() {
  local cmdline
  running "$2" || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$2/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == "$BIN/$1 "* && $cmdline == *"$DIR"* ]]
}

alive() { [[ -f $DIR/pids/$1.pid ]] && ours "$1" "$(cat "$DIR/pids/$1.pid")"; }

api() { curl -sS --max-time 5 --cacert "$DIR/pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$@"; }

# wait_for WHAT CMD...: poll CMD until it succeeds; fail with the component logs named in WATCH on timeout/death.
wait_for() {
  local what=$1 deadline=$(( $(date +%s) + UP_TIMEOUT )) c
  shift
  until "$@" >/dev/null 2>&1; do
    for c in "${STARTED[@]}"; do
      alive "$c" || { tail -n 20 "$DIR/logs/$c.log" >&2; cmd_down >/dev/null 2>&1; die "$c exited while waiting for $what (log: $DIR/logs/$c.log)"; }
    done
    if (( $(date +%s) >= deadline )); then
      cmd_down >/dev/null 2>&1
      die "timed out after ${UP_TIMEOUT}s waiting for $what (logs: $DIR/logs/)"
    fi
    sleep 0.5
  done
}

nodes_ready() {
  api "https://127.0.0.1:$API_PORT/api/v1/nodes" | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
ready = [n for n in items if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))]
sys.exit(0 if len(ready) >= int(sys.argv[1]) else 1)' "$NODES"
}

create_node() {
  local name=$1
  api -X POST -H 'Content-Type: application/json' "https://127.0.0.1:$API_PORT/api/v1/nodes" -d @- <<EOF | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d.get("kind")=="Node" or d.get("reason")=="AlreadyExists" else 1)'
{"apiVersion": "v1", "kind": "Node",
 "metadata": {"name": "$name",
   "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
   "labels": {"kubernetes.io/hostname": "$name", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              "type": "kwok", "node-role.kubernetes.io/worker": ""}}}
EOF
}

cmd_up() {
  local c p start_ts
  start_ts=$(date +%s.%N)
  for c in "${COMPONENTS[@]}"; do
    [[ -x $BIN/$c ]] || die "$BIN/$c is missing: run 'scripts/k8s_controlplane.sh build' first"
  done
  command -v curl >/dev/null || die "curl is not on PATH"
  for c in "${COMPONENTS[@]}"; do
    alive "$c" && die "$DIR already has a running control plane ($c, pid $(cat "$DIR/pids/$c.pid")): run 'down $DIR' first"
    rm -f "$DIR/pids/$c.pid"  # stale: that process is gone
  done
  for p in "$ETCD_PORT" "$ETCD_PEER_PORT" "$API_PORT" "$KCM_PORT" "$SCHED_PORT" "$KWOK_PORT"; do
    port_free "$p" || die "port 127.0.0.1:$p is in use (range $BASE-$((BASE + 99)); set MESHOS_K8S_PORT_BASE)"
  done
  rm -rf "$DIR/etcd" "$DIR/pki" "$DIR/logs"
  mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/etcd"
  gen_pki
  STARTED=()

  start etcd -data-dir "$DIR/etcd" -listen-client-url "http://127.0.0.1:$ETCD_PORT" \
    -listen-peer-url "http://127.0.0.1:$ETCD_PEER_PORT"
  STARTED+=(etcd)
  wait_for "etcd" curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"

  start kube-apiserver \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --tls-cert-file="$DIR/pki/apiserver.crt" --tls-private-key-file="$DIR/pki/apiserver.key" \
    --cert-dir="$DIR/pki" --client-ca-file="$DIR/pki/ca.crt" \
    --token-auth-file="$DIR/pki/tokens.csv" --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$DIR/pki/sa.pub" --service-account-signing-key-file="$DIR/pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true \
    --endpoint-reconciler-type=none --enable-priority-and-fairness=false --profiling=false \
    --event-ttl=10m --v=1
  # (no endpoint reconciler: a loopback address is not a valid endpoint of the `kubernetes` Service)
  STARTED+=(kube-apiserver)
  wait_for "kube-apiserver /readyz" api -f "https://127.0.0.1:$API_PORT/readyz"

  start kube-controller-manager \
    --kubeconfig="$DIR/kcm.kubeconfig" \
    --authentication-kubeconfig="$DIR/kcm.kubeconfig" --authorization-kubeconfig="$DIR/kcm.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$DIR/pki/kcm" \
    --service-account-private-key-file="$DIR/pki/sa.key" --root-ca-file="$DIR/pki/ca.crt" \
    --leader-elect=false --profiling=false --v=1
  STARTED+=(kube-controller-manager)
  start kube-scheduler \
    --kubeconfig="$DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig="$DIR/scheduler.kubeconfig" --authorization-kubeconfig="$DIR/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --cert-dir="$DIR/pki/scheduler" \
    --leader-elect=false --profiling=false --v=1
  STARTED+=(kube-scheduler)
  local stage_configs=() f
  for f in "$SRC"/kwok/stages/*.yaml; do stage_configs+=("--config=$f"); done
  start kwok \
    --kubeconfig="$DIR/kwok.kubeconfig" "${stage_configs[@]}" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds=40 --cidr=10.244.0.0/16 --node-ip=10.243.0.1 \
    --server-address="127.0.0.1:$KWOK_PORT"
  STARTED+=(kwok)

  local i
  for i in $(seq 1 "$NODES"); do
    wait_for "node kwok-node-$i to be created" create_node "kwok-node-$i"
  done
  wait_for "$NODES Ready node(s)" nodes_ready
  # The controller-manager makes each namespace's default ServiceAccount; pods are refused until it exists.
  wait_for "the default ServiceAccount" api -f "https://127.0.0.1:$API_PORT/api/v1/namespaces/default/serviceaccounts/default"
  log "up in $(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$start_ts" "$(date +%s.%N)")s: $DIR/kubeconfig (server https://127.0.0.1:$API_PORT, $NODES kwok node(s))"
  echo "export KUBECONFIG=$DIR/kubeconfig"
}

cmd_down() {
  local c pid i stopped=0
  [[ -d $DIR/pids ]] || { log "nothing to stop in $DIR"; return 0; }
  # Reverse start order: kwok and controllers first, etcd last.
  for c in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    [[ -f $DIR/pids/$c.pid ]] || continue
    pid=$(cat "$DIR/pids/$c.pid")
    if ours "$c" "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 1 100); do running "$pid" || break; sleep 0.1; done
      if running "$pid"; then
        log "$c (pid $pid) ignored SIGTERM for 10s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
      stopped=$((stopped + 1))
    fi
    rm -f "$DIR/pids/$c.pid"
  done
  log "stopped $stopped process(es) in $DIR"
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
  build) cmd_build "$@" ;;
  up|down|env)
    [[ $# -le 1 ]] || die "$cmd takes at most one argument (DIR), got '$*'"
    DIR=${1:-$ROOT/.build/k8s/run}
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    case "$cmd" in
      up) cmd_up ;;
      down) cmd_down ;;
      env) echo "export KUBECONFIG=$DIR/kubeconfig" ;;
    esac ;;
  *) die "unknown subcommand '${cmd}': use build, up [DIR], down [DIR] or env [DIR]" ;;
esac
