"""The ``orchestrator`` command, as a user runs it (real processes, SQLite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.procs import LOCAL_EXTRA, NO_LOCAL_EXTRA, cli, orchestrator_env, why

needs_model = pytest.mark.skipif(not LOCAL_EXTRA, reason=NO_LOCAL_EXTRA)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return orchestrator_env(tmp_path / "home", None)


@needs_model
def test_bundled_example_runs_end_to_end(env: dict[str, str], tmp_path: Path) -> None:
    done = cli(env, "run", "--example", "sales-report", "--wait", "--auto-approve", "--json")
    assert done.returncode == 0, why(done)
    result = json.loads(done.stdout)
    assert result["task"]["status"] == "succeeded"
    steps = {s["step_id"]: s for s in result["steps"]}
    assert steps["metrics"]["output"]["totals"]["revenue"] == pytest.approx(847056.55)
    assert steps["by_region"]["output"]["rows"][0]["region"] == "West"
    ws = tmp_path / "home" / "workspace"
    report = (ws / "reports" / "sales-report.md").read_text()
    assert "| revenue | 847056.55 |" in report
    assert "## Commentary (written by the model)" in report
    commentary = steps["commentary"]["output"]
    assert commentary["word_count"] > 10
    assert commentary["body"] in report
    # One call, and a second when the draft ran past 1.5 times its 80 words (it is shortened)
    assert result["llm"]["calls"] in (1, 2)
    pngs = [a for a in result["artifacts"] if a["media_type"] == "image/png"]
    assert len(pngs) == 2
    assert all((ws / a["path"]).read_bytes().startswith(b"\x89PNG") for a in pngs)


@needs_model
def test_park_approve_and_inspect(env: dict[str, str]) -> None:
    done = cli(env, "run", "--example", "sales-report", "--wait", "--json")
    assert done.returncode == 3, why(done)  # not finished: awaiting approval
    task_id = json.loads(done.stdout)["task"]["task_id"]
    status = cli(env, "status", task_id, "--json")
    assert status.returncode == 3
    parked = json.loads(status.stdout)
    assert [a["step_id"] for a in parked["approvals"] if a["status"] == "pending"] == ["publish"]

    approved = cli(env, "approve", task_id, "--comment", "numbers checked", "--by", "fin", "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["task"]["status"] == "succeeded"

    again = cli(env, "approve", task_id)
    assert again.returncode == 1
    assert "not awaiting approval" in again.stderr

    history = json.loads(cli(env, "history", "--json").stdout)
    assert history["count"] == 1
    assert history["data"][0]["task_id"] == task_id


def test_reject_stores_feedback(env: dict[str, str], tmp_path: Path) -> None:
    wf = tmp_path / "post.json"
    wf.write_text(
        json.dumps(
            {
                "name": "post",
                "steps": [
                    {
                        "id": "publish",
                        "tool": "publish_post",
                        "inputs": {"channel": "blog", "title": "Q3", "body": "Numbers."},
                    }
                ],
            }
        )
    )
    parked = cli(env, "run", "--plan", str(wf), "--wait", "--json")
    assert parked.returncode == 3, why(parked)  # a side effect waits for approval
    task_id = json.loads(parked.stdout)["task"]["task_id"]
    done = cli(env, "reject", task_id, "--comment", "wrong quarter")
    assert done.returncode == 0, done.stderr
    assert "rejected" in done.stdout
    status = cli(env, "status", task_id, "--json")
    assert status.returncode == 1
    rejected = json.loads(status.stdout)
    assert [(a["status"], a["comment"]) for a in rejected["approvals"]] == [
        ("rejected", "wrong quarter")
    ]
    assert [s["status"] for s in rejected["steps"]] == ["rejected"]
    assert rejected["task"]["error"] == "rejected: wrong quarter"
    home = Path(env["ORCHESTRATOR_HOME"])
    assert not (home / "published").exists()  # nothing gated ran


def test_invalid_workflow_lists_every_problem_and_starts_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    wf = tmp_path / "bad.yaml"
    wf.write_text(
        "name: bad\nsteps:\n"
        "  - {id: a, tool: teleport}\n"
        "  - {id: b, tool: add, inputs: {a: '${steps.c.output.value}'}}\n"
        "  - {id: c, tool: add, inputs: {a: '${steps.b.output.value}'}}\n"
        "  - {id: d, tool: read_file, inputs: {}}\n"
    )
    done = cli(env, "run", "--plan", str(wf), "--wait")
    assert done.returncode == 2
    assert "unknown tool 'teleport'" in done.stderr
    assert "dependency cycle" in done.stderr
    assert "missing required input" in done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads(cli(env, "history", "--json").stdout)["count"] == 0


def test_malformed_yaml_names_the_line(env: dict[str, str], tmp_path: Path) -> None:
    wf = tmp_path / "broken.yaml"
    wf.write_text("name: x\nsteps:\n  - id: a\n    tool: [unclosed\n")
    done = cli(env, "run", "--plan", str(wf))
    assert done.returncode == 2
    assert "invalid YAML at line" in done.stderr


def test_invalid_setting_is_one_clear_message(env: dict[str, str]) -> None:
    done = cli({**env, "ORCHESTRATOR_ENGINE__LEASE_SECONDS": "soon"}, "history")
    assert done.returncode == 2
    assert "ORCHESTRATOR_ENGINE__LEASE_SECONDS" in done.stderr
    assert "Traceback" not in done.stderr
    bad_url = cli({**env, "ORCHESTRATOR_DATABASE_URL": "mysql://x"}, "tools")
    assert bad_url.returncode == 2
    assert "database_url" in bad_url.stderr


def test_queued_without_worker_warns_and_can_be_cancelled(
    env: dict[str, str], tmp_path: Path
) -> None:
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps({"name": "q", "steps": [{"id": "a", "tool": "noop"}]}))
    done = cli(env, "run", "--plan", str(wf))
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    assert "no worker is running" in done.stderr
    cancelled = cli(env, "cancel", task_id, "--json")
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    assert cli(env, "cancel", task_id).returncode == 1


def test_tools_and_db_commands(env: dict[str, str]) -> None:
    tools = json.loads(cli(env, "tools", "--json").stdout)
    ids = {t["tool_id"] for t in tools["data"]}
    assert {
        "read_file",
        "write_file",
        "http_request",
        "query_data",
        "chart",
        "business_metrics",
    } <= ids
    assert next(t for t in tools["data"] if t["tool_id"] == "query_data")["input_schema"][
        "required"
    ] == ["sql"]
    assert cli(env, "db", "upgrade").returncode == 0
    current = json.loads(cli(env, "db", "current", "--json").stdout)
    assert current["current"] == current["head"]


def test_tools_uses_the_last_mcp_discovery_until_refresh(
    env: dict[str, str], tmp_path: Path
) -> None:
    import sys

    mcp = tmp_path / "mcp.json"
    time_server = {
        "command": sys.executable,
        "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
    }
    mcp.write_text(
        json.dumps(
            {"mcpServers": {"clock": time_server, "dead": {"command": "no-such-binary-xyz"}}}
        )
    )
    env = {**env, "ORCHESTRATOR_TOOLS__MCP__CONFIG_FILE": str(mcp)}

    def listing(*extra: str) -> dict:
        done = cli(env, "tools", "--json", *extra)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = listing()
    assert first["mcp"]["cached"] is False
    assert "clock_get_current_time" in {t["tool_id"] for t in first["data"]}
    assert first["mcp"]["servers"]["dead"]["error"]
    assert "read_file" in {t["tool_id"] for t in first["data"]}

    second = listing()
    assert second["mcp"]["cached"] is True
    assert second["data"] == first["data"]

    assert listing("--refresh")["mcp"]["cached"] is False
    mcp.write_text(json.dumps({"mcpServers": {"clock": time_server}}))  # config changed
    changed = listing()
    assert changed["mcp"]["cached"] is False
    assert set(changed["mcp"]["servers"]) == {"clock"}


@needs_model
def test_plan_and_run_a_plain_language_request(env: dict[str, str], tmp_path: Path) -> None:
    docs = tmp_path / "home" / "workspace" / "docs"
    docs.mkdir(parents=True)
    (docs / "contract.md").write_text(
        "Service contract between Gartenwelt GmbH and CleanCo. It starts on 1 February 2026, "
        "runs 24 months, and either party may end it with three months' notice.\n"
    )
    planned = cli(env, "plan", "Summarize docs/contract.md in 40 words", "--json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert [
        (s["id"], s["tool"], s["depends_on"], s["requires_approval"]) for s in plan["steps"]
    ] == [("summary", "summarize", [], False)]
    assert plan["clarification"] is None
    assert any("candidate tools" in r for r in plan["reasoning"])

    tree = cli(env, "plan", "Write a blog post about our spring sale and publish it on the blog")
    assert tree.returncode == 0, tree.stderr
    assert "publish_blog publish_post (approval)" in tree.stdout

    unclear = cli(env, "plan", "Book me a flight to Berlin", "--json")
    assert unclear.returncode == 4
    assert json.loads(unclear.stdout)["clarification"].startswith("No available tool can book")
    asked = cli(env, "run", "Book me a flight to Berlin", "--wait", "--json")
    assert asked.returncode == 4, asked.stderr  # its task planned it and ended with the question
    assert json.loads(asked.stdout)["clarification"].startswith("No available tool can book")
    [ended] = json.loads(cli(env, "history", "--json").stdout)["data"]
    assert ended["status"] == "needs_clarification"

    ran = cli(env, "run", "Summarize docs/contract.md in 40 words", "--wait", "--json")
    assert ran.returncode == 3, why(ran)  # parked for a person's review
    result = json.loads(ran.stdout)
    assert result["task"]["request"] == "Summarize docs/contract.md in 40 words"
    assert result["task"]["status"] == "awaiting_approval"
    summary = result["steps"][0]["output"]
    assert 3 <= summary["word_count"] <= 41
    assert result["llm"]["calls"] == 3  # the planner's slots, the summary, the judge
    review = result["review"]
    assert review["gate"] == "@review:0"
    assessment = review["assessment"]
    assert set(assessment["dimensions"]) == {
        "accuracy",
        "completeness",
        "coherence",
        "tone",
        "format",
    }
    assert assessment["judge_model"] == "local" or assessment["judge_error"]
    [variant] = review["variants"]
    assert variant["channel"] == "report"
    shown = cli(env, "show", result["task"]["task_id"], "--channel", "report")
    assert shown.returncode == 0, shown.stderr
    assert summary["summary"].split()[0] in shown.stdout
    task_id = result["task"]["task_id"]
    approved = cli(env, "approve", task_id, "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["task"]["status"] == "succeeded"
