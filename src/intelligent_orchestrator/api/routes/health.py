"""Liveness."""

from __future__ import annotations

from fastapi import APIRouter

from intelligent_orchestrator.api.deps import OrchestratorDep
from intelligent_orchestrator.api.schemas import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthPublic)
async def healthz(orch: OrchestratorDep) -> HealthPublic:
    """The process is up; shows its executor id when it also runs tasks."""
    host = orch.host
    return HealthPublic(
        working=host is not None, executor_id=host.executor_id if host is not None else None
    )
