"""MCP tools discovered at engine start run as ordinary steps; a dead server only fails its steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intelligent_orchestrator.domain.models import ExecutionPlan, StepStatus, TaskStatus
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import Settings
from intelligent_orchestrator.tools.registry import ToolRegistry

pytestmark = pytest.mark.slow


async def test_mcp_tool_runs_in_a_task_beside_a_dead_server(
    settings: Settings, registry: ToolRegistry, tmp_path: Path
) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "time": {"command": "mcp-server-time"},
                    "dead": {"command": "false"},
                }
            }
        )
    )
    settings.tools.mcp.config_file = config
    orch = Orchestrator(settings, registry=registry)
    try:
        await orch.start_engine(kind="test", listen=False)
        assert "time_get_current_time" in orch.registry
        assert orch.registry.get("time_get_current_time").spec.source == "mcp:time"
        plan = ExecutionPlan.model_validate(
            {
                "name": "mcp",
                "steps": [
                    {"id": "now", "tool": "time_get_current_time", "inputs": {"timezone": "UTC"}},
                    {"id": "local", "tool": "noop", "inputs": {"value": 1}},
                ],
            }
        )
        task = await orch.submit(plan, auto_approve=True)
        result = await orch.wait(task.task_id, timeout=60)
    finally:
        await orch.close()
    assert result.task.status is TaskStatus.SUCCEEDED, result.task.error
    steps = {s.step_id: s for s in result.steps}
    assert steps["now"].status is StepStatus.SUCCEEDED
    assert "UTC" in json.dumps(steps["now"].output)
