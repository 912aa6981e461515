"""The tool catalogue."""

from __future__ import annotations

from fastapi import APIRouter

from intelligent_orchestrator.api.deps import OrchestratorDep
from intelligent_orchestrator.api.schemas import ToolsPublic

router = APIRouter(prefix="/api/orchestrator", tags=["tools"])


@router.get("/tools", response_model=ToolsPublic)
async def list_tools(orch: OrchestratorDep) -> ToolsPublic:
    """Every registered tool with its input and output schemas."""
    specs = orch.list_tools()
    return ToolsPublic(data=specs, count=len(specs))
