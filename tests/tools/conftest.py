from __future__ import annotations

from pathlib import Path

import pytest

from intelligent_orchestrator.tools.spec import ToolContext


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    ws.mkdir()
    return ws


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the workspace, holding a file no tool may reach."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("top secret\n")
    return folder


@pytest.fixture
def ctx(workspace: Path) -> ToolContext:
    return ToolContext(
        task_id="task-1",
        step_id="step-1",
        workspace=workspace,
        idempotency_key="task-1:step-1",
        http_timeout_seconds=5.0,
        http_max_bytes=10_000,
    )
