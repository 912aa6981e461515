from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from fastapi import FastAPI

from intelligent_orchestrator.api import create_app
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import Settings
from tests.api.conftest import asgi_client
from tests.conftest import build_registry
from tests.support.models import scripted
from tests.support.pipeline import GOOD
from tests.support.tools import outbox

API = "/api/orchestrator"
PARKED_OR_DONE = {"awaiting_approval", "succeeded", "failed", "rejected", "cancelled", "expired"}


async def submit(client: httpx.AsyncClient, content: str | dict[str, Any], **extra: Any) -> str:
    text = content if isinstance(content, str) else json.dumps(content)
    resp = await client.post(f"{API}/workflows", json={"content": text, **extra})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "queued"
    return body["task_id"]


async def poll(
    client: httpx.AsyncClient, task_id: str, until: set[str] = PARKED_OR_DONE, seconds: float = 30
) -> dict[str, Any]:
    """GET the status until the task reaches one of ``until`` (bounded)."""
    deadline = time.monotonic() + seconds
    while True:
        resp = await client.get(f"{API}/status/{task_id}")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body["task"]["status"] in until:
            return body
        assert time.monotonic() < deadline, (
            f"task {task_id} still {body['task']['status']} after {seconds} s"
        )
        await asyncio.sleep(0.05)


def steps_by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step_id"]: s for s in body["steps"]}


DELIVER = {
    "name": "newsletter",
    "steps": [
        {"id": "draft", "tool": "noop", "inputs": {"value": 3}},
        {
            "id": "send",
            "tool": "deliver",
            "description": "Mail the team",
            "inputs": {"message": "hello ${steps.draft.output.value}"},
        },
    ],
}


async def parked(client: httpx.AsyncClient) -> str:
    task_id = await submit(client, DELIVER)
    body = await poll(client, task_id)
    assert body["task"]["status"] == "awaiting_approval"
    return task_id


# Engine tests: each runs tasks in a fresh database through an orchestrator set up like `serve`.


async def test_submit_yaml_runs_to_success_with_step_outputs(client: httpx.AsyncClient) -> None:
    content = """
name: sums
steps:
  - id: one
    tool: noop
    inputs: {value: 2}
  - id: two
    tool: add
    inputs:
      a: ${steps.one.output.value}
      b: 5
"""
    task_id = await submit(client, content, format="yaml")
    body = await poll(client, task_id, {"succeeded", "failed"})
    assert body["task"]["status"] == "succeeded"
    assert body["task"]["name"] == "sums"
    assert body["outputs"] == {"one": {"value": 2}, "two": {"value": 7}}
    assert {s["step_id"]: s["status"] for s in body["steps"]} == {
        "one": "succeeded",
        "two": "succeeded",
    }


async def test_side_effect_waits_for_approval_then_runs_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    task_id = await parked(client)
    assert outbox(settings.workspace) == []

    resp = await client.get(f"{API}/approval/{task_id}")
    assert resp.status_code == 200
    approval = resp.json()
    assert approval["status"] == "awaiting_approval"
    assert approval["decided"] == []
    [gate] = approval["pending"]
    assert gate["step_id"] == "send"
    assert gate["tool"] == "deliver"
    assert gate["description"] == "Mail the team"
    assert gate["inputs"] == {"message": "hello 3"}  # references resolved: what will be sent

    resp = await client.post(
        f"{API}/approve/{task_id}",
        json={"approved": True, "comment": "ship it", "decided_by": "ana"},
    )
    assert resp.status_code == 200, resp.text
    [decided] = resp.json()["approvals"]
    assert (decided["status"], decided["decided_by"], decided["comment"]) == (
        "approved",
        "ana",
        "ship it",
    )

    body = await poll(client, task_id, {"succeeded", "failed"})
    assert body["task"]["status"] == "succeeded"
    assert body["outputs"]["send"] == {"receipt": f"{task_id}:send"}
    assert outbox(settings.workspace) == [f"{task_id}:send hello 3"]

    again = await client.post(f"{API}/approve/{task_id}", json={"approved": True})
    assert again.status_code == 409
    assert again.json()["error"] == "ConflictError"
    assert "not awaiting approval" in again.json()["detail"]
    assert len(outbox(settings.workspace)) == 1


async def test_reject_needs_feedback_then_stores_it_and_runs_nothing(
    client: httpx.AsyncClient, settings: Settings, serve_orch: Orchestrator
) -> None:
    task_id = await parked(client)
    for no_feedback in ({"approved": False}, {"approved": False, "feedback": "  "}):
        resp = await client.post(f"{API}/approve/{task_id}", json=no_feedback)
        assert resp.status_code == 422
        assert "feedback is required when rejecting" in resp.text
    assert (await client.get(f"{API}/status/{task_id}")).json()["task"][
        "status"
    ] == "awaiting_approval"

    resp = await client.post(
        f"{API}/approve/{task_id}",
        json={"approved": False, "feedback": "wrong audience", "decided_by": "bo"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["task"]["status"] == "rejected"
    assert steps_by_id(body)["send"]["status"] == "rejected"
    fb = serve_orch.store.feedback(task_id)
    assert [(f["kind"], f["text"], f["author"]) for f in fb] == [
        ("rejection", "wrong audience", "bo")
    ]
    assert outbox(settings.workspace) == []
    approval = (await client.get(f"{API}/approval/{task_id}")).json()
    assert approval["pending"] == []
    assert [a["status"] for a in approval["decided"]] == ["rejected"]


async def test_cancel_running_task_then_409(client: httpx.AsyncClient) -> None:
    task_id = await submit(
        client, {"steps": [{"id": "long", "tool": "sleep", "inputs": {"seconds": 30}}]}
    )
    await poll(client, task_id, {"running"})
    resp = await client.post(f"{API}/cancel/{task_id}")
    assert resp.status_code == 200
    assert resp.json()["status"] == "cancelled"
    again = await client.post(f"{API}/cancel/{task_id}")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"]


async def test_history_pages_and_counts(client: httpx.AsyncClient) -> None:
    ids = [
        await submit(client, {"name": f"w{i}", "steps": [{"id": "a", "tool": "noop"}]})
        for i in range(3)
    ]
    for task_id in ids:
        await poll(client, task_id, {"succeeded"})

    first = (await client.get(f"{API}/history", params={"limit": 2})).json()
    second = (await client.get(f"{API}/history", params={"limit": 2, "offset": 2})).json()
    assert first["count"] == second["count"] == 3
    assert len(first["data"]) == 2
    assert len(second["data"]) == 1
    assert {t["task_id"] for t in first["data"] + second["data"]} == set(ids)

    done = (await client.get(f"{API}/history", params={"status": "succeeded"})).json()
    assert done["count"] == 3
    none = (await client.get(f"{API}/history", params={"status": "failed"})).json()
    assert none == {"data": [], "count": 0}


async def test_create_app_standalone_lifespan_serves_and_works(settings: Settings) -> None:
    settings.ensure_dirs()
    (settings.workspace / "notes.md").write_text("quarterly notes")
    app: FastAPI = create_app(settings, executor_id="serve-api-test")
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        health = (await client.get("/healthz")).json()
        assert health == {"status": "ok", "working": True, "executor_id": "serve-api-test"}
        orch: Orchestrator = app.state.orchestrator
        assert await orch.live_workers() == 1  # counts as a live worker
        task_id = await submit(
            client, {"steps": [{"id": "read", "tool": "read_file", "inputs": {"path": "notes.md"}}]}
        )
        body = await poll(client, task_id, {"succeeded", "failed"})
        assert body["task"]["status"] == "succeeded", body["task"]["error"]
        assert body["outputs"]["read"]["content"] == "quarterly notes"
    assert app.state.orchestrator is None  # closed at shutdown
    assert orch.host is None


# Tests that start nothing share one engine-less orchestrator per backend (`serve --no-work`).


async def test_malformed_yaml_is_422_naming_the_line(
    idle_client: httpx.AsyncClient, idle_orch: Orchestrator
) -> None:
    _, before = await idle_orch.history()
    content = "name: broken\nsteps:\n  - id: a\n    tool: noop\n    inputs: {value: [1, 2}\n"
    resp = await idle_client.post(f"{API}/workflows", json={"content": content})
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"] == "WorkflowValidationError"
    [problem] = body["problems"]
    assert "invalid YAML at line 5" in problem
    _, after = await idle_orch.history()
    assert after == before  # nothing was started


async def test_malformed_json_is_422(idle_client: httpx.AsyncClient) -> None:
    resp = await idle_client.post(
        f"{API}/workflows", json={"content": '{"steps": [', "format": "json"}
    )
    assert resp.status_code == 422
    [problem] = resp.json()["problems"]
    assert "invalid JSON at line 1" in problem


async def test_unknown_tool_and_cycle_are_listed_together(
    idle_client: httpx.AsyncClient, idle_orch: Orchestrator
) -> None:
    _, before = await idle_orch.history()
    workflow = {
        "steps": [
            {"id": "a", "tool": "noop", "depends_on": ["b"]},
            {"id": "b", "tool": "noop", "depends_on": ["a"]},
            {"id": "c", "tool": "teleport"},
        ]
    }
    resp = await idle_client.post(f"{API}/workflows", json={"content": json.dumps(workflow)})
    assert resp.status_code == 422
    body = resp.json()
    assert body["detail"] == "workflow is invalid (2 problem(s))"
    problems = body["problems"]
    assert any("unknown tool 'teleport'" in p for p in problems), problems
    assert any(p.startswith("dependency cycle:") for p in problems), problems
    _, after = await idle_orch.history()
    assert after == before


async def test_request_bodies_reject_unknown_fields(idle_client: httpx.AsyncClient) -> None:
    resp = await idle_client.post(f"{API}/workflows", json={"content": "steps: []", "priority": 1})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["type"] == "extra_forbidden"
    resp = await idle_client.post(f"{API}/approve/any", json={"approved": True, "urgent": True})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["type"] == "extra_forbidden"


async def test_unknown_task_is_404(idle_client: httpx.AsyncClient) -> None:
    for method, path, kw in [
        ("GET", "status/nope", {}),
        ("GET", "approval/nope", {}),
        ("POST", "approve/nope", {"json": {"approved": True}}),
        ("POST", "approve/nope", {"json": {"approved": False, "feedback": "no"}}),
        ("POST", "cancel/nope", {}),
    ]:
        resp = await idle_client.request(method, f"{API}/{path}", **kw)
        assert resp.status_code == 404, (path, resp.text)
        assert resp.json() == {
            "detail": "task 'nope' not found",
            "error": "NotFoundError",
            "kind": "task",
            "id": "nope",
        }


async def test_history_query_is_validated(idle_client: httpx.AsyncClient) -> None:
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"status": "lost"}):
        resp = await idle_client.get(f"{API}/history", params=bad)
        assert resp.status_code == 422, bad
    assert (await idle_client.get(f"{API}/history", params={"limit": 1000})).status_code == 200


async def test_tools_lists_every_specification(
    idle_client: httpx.AsyncClient, idle_orch: Orchestrator
) -> None:
    resp = await idle_client.get(f"{API}/tools")
    assert resp.status_code == 200
    body = resp.json()
    tools = {t["tool_id"]: t for t in body["data"]}
    assert body["count"] == len(idle_orch.list_tools()) == len(tools)
    assert {"read_file", "query_data", "deliver"} <= set(tools)
    assert "path" in tools["read_file"]["input_schema"]["properties"]
    assert tools["read_file"]["output_schema"]["properties"]
    assert tools["query_data"]["input_schema"]["properties"]
    assert tools["deliver"]["side_effects"] is True


async def test_without_work_tasks_wait_in_the_queue(idle_client: httpx.AsyncClient) -> None:
    health = (await idle_client.get("/healthz")).json()
    assert health == {"status": "ok", "working": False, "executor_id": None}
    task_id = await submit(idle_client, {"steps": [{"id": "a", "tool": "noop"}]})
    await asyncio.sleep(0.3)
    body = (await idle_client.get(f"{API}/status/{task_id}")).json()
    assert body["task"]["status"] == "queued"  # no executor here: it waits for a worker
    assert body["steps"] == []


async def test_openapi_lists_every_route_with_operation_ids(idle_client: httpx.AsyncClient) -> None:
    resp = await idle_client.get("/openapi.json")
    assert resp.status_code == 200
    ops = {
        (method.upper(), path): op["operationId"]
        for path, item in resp.json()["paths"].items()
        for method, op in item.items()
    }
    assert ops == {
        ("GET", "/healthz"): "health-healthz",
        ("POST", f"{API}/workflows"): "tasks-submit_workflow",
        ("POST", f"{API}/plan"): "tasks-plan_request",
        ("POST", f"{API}/process"): "tasks-process_request",
        ("GET", f"{API}/status/{{task_id}}"): "tasks-get_status",
        ("GET", f"{API}/approval/{{task_id}}"): "tasks-get_approval",
        ("POST", f"{API}/approve/{{task_id}}"): "tasks-decide_approval",
        ("POST", f"{API}/cancel/{{task_id}}"): "tasks-cancel_task",
        ("POST", f"{API}/rerun/{{task_id}}"): "tasks-rerun_task",
        ("GET", f"{API}/events/{{task_id}}"): "tasks-task_events",
        ("GET", f"{API}/history"): "tasks-list_history",
        ("GET", f"{API}/tools"): "tools-list_tools",
    }


async def test_events_stream_progress_then_end(client, serve_orch) -> None:
    body = {
        "content": json.dumps(
            {
                "name": "ev",
                "steps": [
                    {"id": "a", "tool": "sleep", "inputs": {"seconds": 0.3, "value": 1}},
                    {"id": "b", "tool": "add", "inputs": {"a": "${steps.a.output.value}", "b": 1}},
                ],
            }
        )
    }
    task_id = (await client.post("/api/orchestrator/workflows", json=body)).json()["task_id"]
    events: list[tuple[str, dict]] = []
    async with client.stream(
        "GET", f"/api/orchestrator/events/{task_id}", params={"poll_seconds": 0.05}
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        kind = None
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    assert events[-1] == ("end", {"status": "succeeded"})
    progress = [e for k, e in events if k == "progress"]
    assert len(progress) >= 2  # at least a running and the final snapshot
    assert progress[-1]["task"]["status"] == "succeeded"
    assert (await client.get("/api/orchestrator/events/nope")).status_code == 404


async def test_rerun_makes_a_new_task_with_the_same_plan(client, serve_orch) -> None:
    body = {
        "content": json.dumps(
            {"name": "again", "steps": [{"id": "a", "tool": "noop", "inputs": {"value": 9}}]}
        )
    }
    first = (await client.post("/api/orchestrator/workflows", json=body)).json()["task_id"]
    second = await client.post(f"/api/orchestrator/rerun/{first}")
    assert second.status_code == 202
    new_id = second.json()["task_id"]
    assert new_id != first
    for _ in range(300):
        doc = (await client.get(f"/api/orchestrator/status/{new_id}")).json()
        if doc["task"]["status"] == "succeeded":
            break
        await asyncio.sleep(0.1)
    assert doc["task"]["plan"]["name"] == "again"
    assert doc["outputs"]["a"] == {"value": 9}
    assert (await client.post("/api/orchestrator/rerun/nope")).status_code == 404


async def test_status_reports_model_usage_per_step_and_task(settings: Settings) -> None:
    script = scripted({"summary": "Sales rose."})
    orch = Orchestrator(settings, registry=build_registry(settings), models={"local": script.model})
    await orch.start_engine(kind="serve", listen=True)
    try:
        async with asgi_client(create_app(settings, orchestrator=orch)) as c:
            content = (
                "name: s\nsteps:\n  - id: short\n    tool: summarize\n"
                "    inputs: {text: 'Sales rose 5% in May and 7% in June.', max_words: 10}\n"
            )
            task_id = await submit(c, content, format="yaml")
            body = await poll(c, task_id, {"succeeded", "failed"})
    finally:
        await orch.close()
    assert body["task"]["status"] == "succeeded"
    assert body["outputs"]["short"]["summary"] == "Sales rose."
    [step] = body["steps"]
    assert step["llm"]["calls"] == 1
    assert step["llm"]["input_tokens"] > 0
    assert body["llm"]["calls"] == 1
    assert body["llm"]["output_tokens"] == step["llm"]["output_tokens"]


async def test_plan_and_process_a_request(settings: Settings) -> None:
    slots = {"intent": "Summarise the contract", "topic": "contract", "audience": "", "tone": ""}
    script = scripted(
        lambda p: (
            GOOD
            if "Text to grade" in p
            else slots
            if p.startswith("Request:")
            else {"summary": "The contract runs for two years."}
        )
    )
    (settings.workspace / "docs").mkdir(parents=True)
    (settings.workspace / "docs" / "contract.md").write_text("The contract runs 24 months.")
    orch = Orchestrator(settings, registry=build_registry(settings), models={"local": script.model})
    await orch.start_engine(kind="serve", listen=True)
    try:
        async with asgi_client(create_app(settings, orchestrator=orch)) as c:
            planned = await c.post(f"{API}/plan", json={"request": "Summarize docs/contract.md"})
            assert planned.status_code == 200, planned.text
            plan = planned.json()
            assert [s["tool"] for s in plan["steps"]] == ["summarize"]
            assert plan["intent"] == "Summarise the contract"
            assert plan["clarification"] is None
            assert plan["reasoning"]

            unclear = await c.post(f"{API}/plan", json={"request": "Book a flight to Rome"})
            assert unclear.status_code == 200
            assert unclear.json()["steps"] == []
            assert "No available tool can book" in unclear.json()["clarification"]

            refused = await c.post(f"{API}/process", json={"request": "Book a flight to Rome"})
            assert refused.status_code == 422
            assert "No available tool can book" in refused.json()["clarification"]
            asked = await c.get(f"{API}/status/{refused.json()['task_id']}")
            assert asked.json()["task"]["status"] == "needs_clarification"

            started = await c.post(
                f"{API}/process",
                json={
                    "request": "Summarize docs/contract.md",
                    "user_id": "ana",
                    "business_metrics": {"leads": 3},
                },
            )
            assert started.status_code == 202, started.text
            task_id = started.json()["task_id"]
            parked = await poll(c, task_id, {"awaiting_approval", "failed"})
            assert parked["task"]["status"] == "awaiting_approval", parked
            review = (await c.get(f"{API}/approval/{task_id}")).json()
            assert review["phase"] == "approval"
            assert review["assessment"]["passed"] is True
            assert [v["key"] if "key" in v else v["channel"] for v in review["variants"]] == [
                "report"
            ]
            assert review["variants"][0]["text"].count("The contract runs for two years.") == 1
            assert review["metadata"]["task_id"] == task_id
            too_long = await c.post(
                f"{API}/approve/{task_id}",
                json={"approved": True, "edits": {"report": {"text": ""}}},
            )
            assert too_long.status_code == 422, too_long.text
            no_edit_on_reject = await c.post(
                f"{API}/approve/{task_id}",
                json={"approved": False, "feedback": "x", "edits": {"report": {"text": "y"}}},
            )
            assert no_edit_on_reject.status_code == 422
            edited = await c.post(
                f"{API}/approve/{task_id}",
                json={
                    "approved": True,
                    "decided_by": "ana",
                    "edits": {"report": {"text": "# Contract\n\nIt runs two years."}},
                },
            )
            assert edited.status_code == 200, edited.text
            body = await poll(c, task_id, {"succeeded", "failed"})
            after = (await c.get(f"{API}/approval/{task_id}")).json()
            bad = await c.post(f"{API}/plan", json={"request": ""})
    finally:
        await orch.close()
    assert body["task"]["status"] == "succeeded"
    assert body["task"]["request"] == "Summarize docs/contract.md"
    assert body["task"]["user_id"] == "ana"
    assert body["task"]["plan"]["metadata"]["business_metrics"] == {"leads": 3}
    assert body["outputs"]["summary"]["summary"] == "The contract runs for two years."
    assert after["variants"][0]["text"] == "# Contract\n\nIt runs two years."
    assert after["variants"][0]["revision"] == 1
    assert after["variants"][0]["edited_by"] == "ana"
    assert bad.status_code == 422
