"""Independent client check: the official Python MCP SDK (PyPI `mcp`) drives the real binary
over stdio — tools/list, tools/call (validated against each tool's output_schema), resources,
prompts and completion. Usage: python_client.py PATH_TO_SRE_MCP"""

import asyncio
import json
import os
import sys

import jsonschema
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client

EXPECTED_TOOLS = {
    "check_service_health", "list_namespaces", "list_pods", "describe_pod", "get_pod_logs",
    "get_events", "list_deployments", "get_recent_deploys", "search_logs", "count_errors",
    "trace_transaction", "search_runbooks", "troubleshoot_issue",
}
WRITE_TOOLS = {"deploy_with_review", "rollback_deployment", "restart_deployment", "scale_deployment"}

passed = 0
failed = 0


def server_env(env):
    """The SDK gives the server a filtered environment: pass on the test run's data directory
    (the history database), so the tests never write to the user's own."""
    if os.environ.get("SRE_MCP_DATA_DIR"):
        env = dict(env, SRE_MCP_DATA_DIR=os.environ["SRE_MCP_DATA_DIR"])
    return env


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


async def main(binary):
    params = StdioServerParameters(
        command=binary, args=[], env=server_env({"SRE_MCP_LOG": "warn", "SRE_MCP_BACKEND": "demo"})
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            check("initialize", init.server_info.name == "sre-mcp", init.server_info)

            tools = (await session.list_tools()).tools
            names = {t.name for t in tools}
            check("tools/list has every tool", EXPECTED_TOOLS | WRITE_TOOLS == names, names)
            schemas = {t.name: t.output_schema for t in tools}
            check("every read tool is read-only", all(t.annotations and t.annotations.read_only_hint for t in tools if t.name in EXPECTED_TOOLS))
            hints = {t.name: (t.annotations.read_only_hint, t.annotations.destructive_hint, t.annotations.idempotent_hint) for t in tools if t.name in WRITE_TOOLS}
            check("write tools say they change the cluster, honestly",
                  hints == {"deploy_with_review": (False, True, False), "rollback_deployment": (False, True, False),
                            "restart_deployment": (False, True, False), "scale_deployment": (False, True, True)}, hints)

            calls = [
                ("check_service_health", {}),
                ("list_pods", {"namespace": "payments"}),
                ("get_events", {"namespace": "catalog", "type": "Warning"}),
                ("search_logs", {"level": "error", "limit": 5}),
                ("count_errors", {"group_by": "message"}),
                ("search_runbooks", {"query": "pods OOMKilled exit code 137"}),
                ("troubleshoot_issue", {"description": "card payments are failing with 503s"}),
                ("describe_pod", {"namespace": "payments", "pod": None}),
            ]
            pods = (await session.call_tool("list_pods", {"namespace": "payments", "status": "CrashLoopBackOff"})).structured_content
            for tool, arguments in calls:
                if arguments.get("pod", "") is None:
                    arguments["pod"] = pods["pods"][0]["name"]
                result = await session.call_tool(tool, arguments)
                ok = not result.is_error and result.structured_content is not None
                check(f"tools/call {tool}", ok, result.content[:1])
                if ok:
                    try:
                        jsonschema.validate(result.structured_content, schemas[tool])
                        check(f"{tool} output matches its output_schema", True)
                    except jsonschema.ValidationError as e:
                        check(f"{tool} output matches its output_schema", False, e.message)
            described = (await session.call_tool("describe_pod", {"namespace": "payments", "pod": pods["pods"][0]["name"]})).structured_content
            attached = [r["uri"] for r in described.get("relevant_runbooks", [])]
            check("describe_pod carries the OOM runbook", "runbook://oomkilled-crashloop" in attached, attached)
            health = (await session.call_tool("check_service_health", {"service": "payment-gateway"})).structured_content
            check("payment-gateway is down", health["services"][0]["status"] == "down", health["services"][0])

            bad = await session.call_tool("list_pods", {"namespace": "nope"})
            check("unknown namespace is an is_error result", bad.is_error and "valid namespaces" in bad.content[0].text)

            # A result over its token cap comes back shaped, schema-valid, with the full text
            # readable page by page from result://.
            shaped = await session.call_tool("search_logs", {"limit": 500})
            meta = shaped.meta or {}
            check("search_logs limit=500 is shaped within the cap",
                  not shaped.is_error and meta.get("truncated") is True and meta.get("tokens", 10**9) <= 2000, meta)
            try:
                jsonschema.validate(shaped.structured_content, schemas["search_logs"])
                check("shaped search_logs matches its output_schema", True)
            except jsonschema.ValidationError as e:
                check("shaped search_logs matches its output_schema", False, e.message)
            report = shaped.structured_content.get("truncated", {})
            entries = report.get("lists", [{}])[0]
            check("shaped result counts what it dropped",
                  entries.get("total") == 500 and entries.get("more", "").endswith("more (of 500)"), entries)
            page2 = await session.read_resource(f"{report.get('full_result')}?page=2")
            check("resources/read result://{id}?page=2", f"page 2 of {report.get('pages')}" in page2.contents[0].text,
                  page2.contents[0].text[:200])
            small = await session.call_tool("list_pods", {"namespace": "payments", "max_tokens": 100})
            check("max_tokens below the minimum is an is_error result", small.is_error and "max_tokens" in small.content[0].text)

            resources = (await session.list_resources()).resources
            uris = {str(r.uri) for r in resources}
            check("resources/list", {"system://health", "deployment://history", "runbook://oomkilled-crashloop"} <= uris, uris)
            runbook = await session.read_resource("runbook://image-pull-backoff")
            check("resources/read runbook://", "## Mitigation" in runbook.contents[0].text)
            body = await session.read_resource("system://health")
            health = json.loads(body.contents[0].text)
            check("resources/read system://health", health["backend"]["kind"] == "demo")
            templates = (await session.list_resource_templates()).resource_templates
            check("resource templates", any(t.uri_template == "deployment://history/{service}" for t in templates))
            check("resource template result://{id}", any(t.uri_template == "result://{id}" for t in templates))

            prompts = (await session.list_prompts()).prompts
            check("prompts/list", len(prompts) >= 5, [p.name for p in prompts])
            prompt = await session.get_prompt("investigate-service", {"service": "payment-gateway"})
            text = prompt.messages[0].content.text
            check("prompts/get investigate-service", "check_service_health" in text and "Root cause" in text)

            completion = await session.complete(
                types.PromptReference(type="ref/prompt", name="investigate-service"), {"name": "service", "value": "inv"}
            )
            check("completion/complete", completion.completion.values == ["inventory-service"], completion.completion.values)

    await sampling(binary)
    await writes(binary)
    await kube_backend(binary)
    print(f"python-mcp-client: {passed} passed, {failed} failed")
    return failed == 0


async def sampling(binary):
    """troubleshoot_issue with a client that offers MCP sampling: its model's synthesis comes
    back beside the deterministic answer and the ledger books it; a client whose sampling
    fails gets the deterministic answer with a note."""
    params = StdioServerParameters(
        command=binary, args=["--no-embeddings"], env=server_env({"SRE_MCP_LOG": "warn", "SRE_MCP_BACKEND": "demo"})
    )
    prompts = []

    async def answer(context, request):
        prompts.append(request)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="Root cause: revision 7 (2.14.0) runs out of its 512Mi memory limit; roll back to revision 6."),
            model="test-model",
        )

    async def refuse(context, request):
        return types.ErrorData(code=-1, message="the user declined")

    arguments = {"description": "card payments are failing", "service": "payment-gateway"}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, sampling_callback=answer) as session:
            await session.initialize()
            result = await session.call_tool("troubleshoot_issue", arguments)
            synthesis = (result.structured_content or {}).get("model_synthesis", {})
            check("sampling: the model's synthesis is shown beside the answer",
                  synthesis.get("status") == "ok" and "revision 7" in synthesis.get("text", "")
                  and result.structured_content.get("hypotheses")
                  and "revision 7 (2.14.0)" in result.content[0].text, synthesis)
            request = prompts[0] if prompts else None
            check("sampling: a bounded prompt built from the evidence",
                  request is not None and request.max_tokens <= 400 and "OOMKilled" in request.messages[0].content.text,
                  request)
            usage = json.loads((await session.read_resource("budget://usage")).contents[0].text)
            check("sampling: the ledger books it", usage["sampling"]["calls"] == 1 and usage["sampling"]["completion_tokens"] > 0, usage.get("sampling"))
            steps = []

            async def on_progress(progress, total, message):
                steps.append((progress, total, message))

            await session.call_tool("troubleshoot_issue", arguments, progress_callback=on_progress)
            rising = all(a[0] < b[0] for a, b in zip(steps, steps[1:]))
            check("progress: troubleshoot_issue reports its steps, rising, the last one complete",
                  len(steps) >= 3 and rising and steps[-1][1] == steps[-1][0]
                  and any("payment-gateway" in (m or "") for _, _, m in steps), steps)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, sampling_callback=refuse) as session:
            await session.initialize()
            result = await session.call_tool("troubleshoot_issue", arguments)
            synthesis = (result.structured_content or {}).get("model_synthesis", {})
            check("sampling refused: the deterministic answer stands, with a note",
                  not result.is_error and synthesis.get("status") == "failed"
                  and "deterministic answer stands" in synthesis.get("note", "")
                  and result.structured_content.get("hypotheses"), synthesis)


async def writes(binary):
    """The write tools with a client that can ask its user (elicitation) and run prompts
    (sampling): a production rollback approved in the client is applied and watched (progress);
    a declined one changes nothing; the client's model's NO-GO makes a GO review NO-GO and its
    tokens are booked."""
    params = StdioServerParameters(
        command=binary, args=["--no-embeddings"], env=server_env({"SRE_MCP_LOG": "warn", "SRE_MCP_BACKEND": "demo"})
    )
    asked = []

    async def approve(context, request):
        asked.append(request)
        return types.ElicitResult(action="accept", content={"approve": True})

    async def decline(context, request):
        asked.append(request)
        return types.ElicitResult(action="decline")

    rollback = {"service": "payments/payment-gateway", "to_revision": 6, "reason": "PAY-1850: 2.14.0 is OOMKilled", "dry_run": False}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, elicitation_callback=approve) as session:
            await session.initialize()
            steps = []

            async def on_progress(progress, total, message):
                steps.append((progress, total, message))

            result = await session.call_tool("rollback_deployment", rollback, progress_callback=on_progress)
            report = result.structured_content or {}
            check("writes: a production rollback approved in the client is applied and completes",
                  not result.is_error and report.get("outcome") == "applied"
                  and report.get("approval", {}).get("how", "").startswith("elicitation")
                  and report.get("rollout", {}).get("status") == "complete", result.content[0].text[:600])
            message = asked[0].message if asked else ""
            check("writes: the approval shows the diff, the verdict and the reason",
                  "2.13.2" in message and "Review: GO" in message and "PAY-1850" in message, message)
            check("writes: the rollout is reported as progress",
                  any("ready" in (m or "") for _, _, m in steps) and all(a[0] < b[0] for a, b in zip(steps, steps[1:])), steps)
            health = (await session.call_tool("check_service_health", {"service": "payments/payment-gateway"})).structured_content
            check("writes: payment-gateway is healthy again", health["services"][0]["status"] == "healthy", health["services"][0].get("verdict"))
            log = json.loads((await session.read_resource("audit://log")).contents[0].text)
            mine = [r for r in log["records"] if r["tool"] == "rollback_deployment" and r.get("client") == "mcp"]
            check("writes: the audit log has the write with its approval and revisions",
                  mine and mine[0]["outcome"] == "applied" and mine[0]["write"]["approval"].startswith("elicitation")
                  and mine[0]["write"]["revision_before"] == 7, mine[:1])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, elicitation_callback=decline) as session:
            await session.initialize()
            result = await session.call_tool("rollback_deployment", rollback)
            report = result.structured_content or {}
            health = (await session.call_tool("check_service_health", {"service": "payments/payment-gateway"})).structured_content
            check("writes: a declined approval changes nothing",
                  report.get("outcome") == "declined" and health["services"][0]["status"] == "down", result.content[0].text[:300])

    async def no_go(context, request):
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="VERDICT: NO-GO\nRISK: high\nThe previous revision is two releases old."),
            model="test-model",
        )

    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, sampling_callback=no_go) as session:
            await session.initialize()
            dry = dict(rollback, dry_run=True)
            result = await session.call_tool("rollback_deployment", dry)
            review = (result.structured_content or {}).get("review", {})
            model = review.get("model_review", {})
            check("writes: the client's model can make a GO review NO-GO, shown beside it",
                  review.get("verdict") == "NO-GO" and model.get("verdict") == "NO-GO" and model.get("made_stricter")
                  and "two releases old" in result.content[0].text, review)
            usage = json.loads((await session.read_resource("budget://usage")).contents[0].text)
            check("writes: the model's review is booked in the ledger",
                  usage["sampling"]["calls"] == 1 and usage["sampling"]["prompt_tokens"] > 0, usage.get("sampling"))


async def kube_backend(binary):
    """The same client against the Kubernetes backend, when the test command started the test
    API server (SRE_MCP_TEST_KUBECONFIG); the SDK passes the server a filtered environment, so
    the kubeconfig goes in args."""
    import os

    kubeconfig = os.environ.get("SRE_MCP_TEST_KUBECONFIG")
    if not kubeconfig:
        print("skipped: the Python SDK against --backend kube (no test API server running)")
        return
    params = StdioServerParameters(
        command=binary,
        args=["--backend", "kube", "--kubeconfig", kubeconfig, "--no-embeddings"],
        env=server_env({"SRE_MCP_LOG": "warn"}),
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name: t for t in (await session.list_tools()).tools}
            check("kube: tools/list offers context", "context" in tools["list_pods"].input_schema["properties"])
            result = await session.call_tool("list_namespaces", {})
            names = [n["name"] for n in result.structured_content["namespaces"]]
            check("kube: list_namespaces", not result.is_error and "kube-system" in names, names)
            jsonschema.validate(result.structured_content, tools["list_namespaces"].output_schema)
            meta = result.meta or {}
            check("kube: _meta names the backend", meta.get("backend") == "kubernetes", meta)
            denied = await session.call_tool("list_pods", {"namespace": "default", "context": "viewer"})
            check("kube: another context's 403 is a clear tool error", denied.is_error and "forbidden" in denied.content[0].text, denied.content[0].text)
            body = await session.read_resource("system://health")
            health = json.loads(body.contents[0].text)
            check("kube: system://health says which backend and why", health["backend"]["kind"] == "kubernetes" and "--kubeconfig" in health["backend"].get("selected_because", ""), health["backend"])


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main(sys.argv[1])) else 1)
