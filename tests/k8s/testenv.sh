#!/usr/bin/env bash
# A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager v1.20.2) and a
# real Prometheus (2.42) on 127.0.0.1, for the kube backend's tests. Everything comes from
# Debian's package archive, the only place this project's CI can download from: Kubernetes is
# built from Debian bookworm's `kubernetes` source package with Debian's Go 1.19; etcd and
# Prometheus are Debian .debs, unpacked (never installed: no service starts, /etc is untouched).
#
#   tests/k8s/testenv.sh build           # idempotent; ~10-14 min cold on 2 cores, then a no-op
#   tests/k8s/testenv.sh built           # exit status: is it built?
#   tests/k8s/testenv.sh start           # fresh state; prints KUBECONFIG=... (about 3 s)
#   tests/k8s/testenv.sh stop
#   tests/k8s/testenv.sh backfill FILE DIR      # OpenMetrics text FILE -> TSDB blocks in DIR (promtool)
#   tests/k8s/testenv.sh prometheus DIR [RULES] # start Prometheus over the blocks in DIR, evaluating
#                                               # the alerting RULES file every second; prints URL
#
# The kubeconfig has two contexts: `test` (group system:masters) and `viewer` (a user with no
# roles: every request is a real RBAC 403). No kubelet and no scheduler run: tests patch pod
# status and serve container logs from their own HTTPS "kubelet" (see tests/k8s/mod.rs).
#
# Environment: SRE_MCP_TESTENV_CACHE (default ~/.cache/sre-mcp-testenv), SRE_MCP_TESTENV_RUN
# (default $CACHE/run), SRE_MCP_TESTENV_ETCD_PORT (23790), SRE_MCP_TESTENV_API_PORT (16443),
# SRE_MCP_TESTENV_PROM_PORT (19090).
set -euo pipefail

cache=${SRE_MCP_TESTENV_CACHE:-$HOME/.cache/sre-mcp-testenv}
run=${SRE_MCP_TESTENV_RUN:-$cache/run}
etcd_port=${SRE_MCP_TESTENV_ETCD_PORT:-23790}
api_port=${SRE_MCP_TESTENV_API_PORT:-16443}
prom_port=${SRE_MCP_TESTENV_PROM_PORT:-19090}

k8s_source=kubernetes=1.20.5+really1.20.2-1.1+deb12u1
k8s_dsc=kubernetes_1.20.5+really1.20.2-1.1+deb12u1.dsc
# Go and its sources build Kubernetes; etcd runs it; prometheus brings prometheus and promtool.
debs=(golang-1.19-go golang-1.19-src etcd-server rsync jq libjq1 libonig5 libpopt0 prometheus)

apt_private() {
  apt-get -o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts="$cache/apt/sources" \
    -o Dir::State::Lists="$cache/apt/lists" -o Dir::Cache="$cache/apt/cache" "$@"
}

built() {
  [ -f "$cache/bin/reflect2-fixed" ] &&
    [ -x "$cache/bin/kube-apiserver" ] && [ -x "$cache/bin/kube-controller-manager" ] &&
    [ -x "$cache/root/usr/bin/etcd" ] && [ -x "$cache/root/usr/bin/prometheus" ] &&
    [ -x "$cache/root/usr/bin/promtool" ]
}

build() {
  built && return 0
  mkdir -p "$cache"/{apt/sources,apt/lists/partial,apt/cache/archives/partial,debs,src,root,bin}
  # The machine's own Debian sources, plus their source packages, in a private apt state.
  local sources
  for sources in /etc/apt/sources.list.d/*.sources; do
    sed 's/^Types: deb$/Types: deb deb-src/' "$sources" >"$cache/apt/sources/$(basename "$sources")"
  done
  apt_private update -qq
  (cd "$cache/debs" && apt_private download "${debs[@]}")
  local deb
  for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$cache/root"; done
  if [ ! -f "$cache/bin/reflect2-fixed" ] || [ ! -x "$cache/bin/kube-apiserver" ] ||
    [ ! -x "$cache/bin/kube-controller-manager" ]; then
    (cd "$cache/src" && apt_private source --download-only "$k8s_source")
    rm -rf "$cache/src/k8s"
    (cd "$cache/src" && dpkg-source -x "$k8s_dsc" k8s >/dev/null)
    fix_reflect2 "$cache/src/k8s/vendor/github.com/modern-go/reflect2"
    local go="$cache/root/usr/lib/go-1.19"
    (cd "$cache/src/k8s" &&
      env -u GOPATH -u GO111MODULE -u GOFLAGS GOROOT="$go" GOPROXY=off \
        GOCACHE="$cache/src/gocache" \
        PATH="$go/bin:$cache/root/usr/bin:$PATH" \
        LD_LIBRARY_PATH="$cache/root/usr/lib/x86_64-linux-gnu" \
        make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" \
        KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean)
    cp "$cache/src/k8s/_output/bin/kube-apiserver" "$cache/src/k8s/_output/bin/kube-controller-manager" \
      "$cache/bin/"
    # The sources and Go's build cache are 2 GB; only the two binaries are kept.
    rm -rf "$cache/src/k8s" "$cache/src/gocache"
    touch "$cache/bin/reflect2-fixed"
  fi
  built
}

# Kubernetes 1.20 vendors reflect2 1.0.1, which calls Go's reflect.mapiterinit with the
# pre-1.18 signature (it returned the iterator; since Go 1.18 the caller passes one in). Built
# with Go 1.19, the API server then writes through a garbage pointer and dies with "unexpected
# fault address" in json-iterator under load (seen creating 1,000 pods). This gives reflect2 the
# iterator struct of Go 1.19's runtime (runtime/map.go `hiter`) and the 1.18+ call.
fix_reflect2() {
  local dir=$1
  grep -q 'func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer) \*hiter' "$dir/unsafe_link.go" || {
    echo "fix_reflect2: unexpected reflect2 source in $dir" >&2
    return 1
  }
  python3 - "$dir" <<'PY'
import sys, pathlib
d = pathlib.Path(sys.argv[1])
link = d / "unsafe_link.go"
text = link.read_text()
text = text.replace(
    "func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer) *hiter",
    "func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it *hiter)",
)
start = text.index("type hiter struct {")
end = text.index("}", start) + 1
text = text[:start] + """type hiter struct {
	key         unsafe.Pointer
	value       unsafe.Pointer
	t           unsafe.Pointer
	h           unsafe.Pointer
	buckets     unsafe.Pointer
	bptr        unsafe.Pointer
	overflow    unsafe.Pointer
	oldoverflow unsafe.Pointer
	startBucket uintptr
	offset      uint8
	wrapped     bool
	B           uint8
	i           uint8
	bucket      uintptr
	checkBucket uintptr
}""" + text[end:]
link.write_text(text)
m = d / "unsafe_map.go"
text = m.read_text()
old = "\t\thiter:      mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj)),\n"
assert old in text, "unsafe_map.go: unexpected UnsafeIterate"
text = text.replace(
    "\treturn &UnsafeMapIterator{\n" + old,
    "\tit := new(hiter)\n\tmapiterinit(type2.rtype, *(*unsafe.Pointer)(obj), it)\n\treturn &UnsafeMapIterator{\n\t\thiter:      it,\n",
)
assert "mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj), it)" in text
m.write_text(text)
PY
}

# A CA, the API server's serving certificate, a service-account key pair and static tokens.
make_pki() {
  local pki=$run/pki
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj /CN=sre-mcp-test-ca -addext basicConstraints=critical,CA:TRUE \
      -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj /CN=kube-apiserver 2>/dev/null
    printf '%s\n' 'basicConstraints=CA:FALSE' 'keyUsage=critical,digitalSignature,keyEncipherment' \
      'extendedKeyUsage=serverAuth' 'subjectAltName=IP:127.0.0.1,DNS:localhost' >ext.cnf
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 3650 -extfile ext.cnf 2>/dev/null
    # The tests' own "kubelet" serves container logs over HTTPS with this (the API server
    # does not verify kubelet certificates here).
    openssl req -x509 -newkey rsa:2048 -nodes -keyout kubelet.key -out kubelet.crt -days 3650 \
      -subj /CN=sre-mcp-test-kubelet -addext subjectAltName=IP:127.0.0.1 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    printf '%s\n' 'admin-token,admin,1,"system:masters"' 'viewer-token,viewer,2,"viewers"' \
      'reader-token,reader,3,"sre-mcp-readers"' >tokens.csv
  )
}

wait_ready() {
  local i
  for i in $(seq 1 120); do
    if curl -sf --cacert "$run/pki/ca.crt" -H "Authorization: Bearer admin-token" \
      "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  echo "kube-apiserver did not become ready; see $run/apiserver.log" >&2
  return 1
}

start() {
  build
  stop
  rm -rf "$run"
  mkdir -p "$run"
  make_pki
  local pki=$run/pki
  "$cache/root/usr/bin/etcd" --name test --data-dir "$run/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$((etcd_port + 10))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 10))" \
    --initial-cluster "test=http://127.0.0.1:$((etcd_port + 10))" >"$run/etcd.log" 2>&1 &
  echo $! >"$run/etcd.pid"
  "$cache/bin/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --insecure-port=0 --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" --client-ca-file="$pki/ca.crt" \
    --token-auth-file="$pki/tokens.csv" --authorization-mode=RBAC \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-cluster-ip-range=10.0.0.0/24 --disable-admission-plugins=ServiceAccount \
    --allow-privileged=true >"$run/apiserver.log" 2>&1 &
  echo $! >"$run/apiserver.pid"
  cat >"$run/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$pki/ca.crt"}
users:
- {name: admin, user: {token: admin-token}}
- {name: viewer, user: {token: viewer-token}}
- {name: reader, user: {token: reader-token}}
contexts:
- {name: test, context: {cluster: test, user: admin, namespace: default}}
- {name: viewer, context: {cluster: test, user: viewer, namespace: default}}
- {name: reader, context: {cluster: test, user: reader, namespace: default}}
current-context: test
EOF
  wait_ready
  "$cache/bin/kube-controller-manager" --kubeconfig="$run/kubeconfig" \
    --controllers=deployment,replicaset,garbagecollector,namespace \
    --leader-elect=false --secure-port=0 --port=0 \
    --use-service-account-credentials=false >"$run/kcm.log" 2>&1 &
  echo $! >"$run/kcm.pid"
  echo "KUBECONFIG=$run/kubeconfig"
}

# Prometheus over TSDB blocks a test made with `promtool tsdb create-blocks-from openmetrics`.
backfill() {
  local file=${1:?usage: testenv.sh backfill OPENMETRICS_FILE DATA_DIR}
  local data=${2:?usage: testenv.sh backfill OPENMETRICS_FILE DATA_DIR}
  built || { echo "the test environment is not built: run testenv.sh build" >&2; return 1; }
  mkdir -p "$data"
  "$cache/root/usr/bin/promtool" tsdb create-blocks-from openmetrics "$file" "$data" >/dev/null
}

# Nothing is scraped: the data is what `backfill` wrote. Rules are evaluated every second, so
# alerts fire within a second or two of start (their activeAt is then, not the backfilled past).
prometheus() {
  local data=${1:?usage: testenv.sh prometheus DATA_DIR [RULES_FILE]}
  local rules=${2:-}
  built || { echo "the test environment is not built: run testenv.sh build" >&2; return 1; }
  [ -f "$run/prometheus.pid" ] && kill "$(cat "$run/prometheus.pid")" 2>/dev/null || true
  mkdir -p "$run"
  {
    printf 'global:\n  scrape_interval: 1h\n  evaluation_interval: 1s\n'
    [ -z "$rules" ] || printf 'rule_files:\n  - %s\n' "$(realpath "$rules")"
  } >"$run/prometheus.yml"
  "$cache/root/usr/bin/prometheus" --config.file="$run/prometheus.yml" \
    --storage.tsdb.path="$data" --storage.tsdb.retention.time=100y \
    --web.listen-address="127.0.0.1:$prom_port" >"$run/prometheus.log" 2>&1 &
  echo $! >"$run/prometheus.pid"
  local i
  for i in $(seq 1 60); do
    curl -sf "http://127.0.0.1:$prom_port/-/ready" >/dev/null 2>&1 &&
      echo "PROMETHEUS=http://127.0.0.1:$prom_port" && return 0
    sleep 0.5
  done
  echo "Prometheus did not become ready; see $run/prometheus.log" >&2
  return 1
}

# Controller-manager first, then the API server (its shutdown stalls without etcd), then etcd.
stop() {
  local name pid i
  for name in prometheus kcm apiserver etcd; do
    [ -f "$run/$name.pid" ] || continue
    pid=$(cat "$run/$name.pid")
    rm -f "$run/$name.pid"
    kill "$pid" 2>/dev/null || continue
    for i in $(seq 1 20); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
  done
}

case "${1:-}" in
  build) build ;;
  built) built ;;
  start) start ;;
  stop) stop ;;
  backfill) backfill "${2:-}" "${3:-}" ;;
  prometheus) prometheus "${2:-}" "${3:-}" ;;
  *)
    echo "usage: $0 build|built|start|stop|backfill FILE DIR|prometheus DIR [RULES]" >&2
    exit 2
    ;;
esac
