"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from intelligent_orchestrator.orchestrator import Orchestrator


def get_orchestrator(request: Request) -> Orchestrator:
    """The orchestrator the app was built with (set by ``create_app`` or its lifespan)."""
    orch: Orchestrator | None = getattr(request.app.state, "orchestrator", None)
    if orch is None:
        # A programming mistake (lifespan not run), not a client error: let it be a 500.
        raise RuntimeError("the app has no orchestrator: run its lifespan or pass orchestrator=")
    return orch


OrchestratorDep = Annotated[Orchestrator, Depends(get_orchestrator)]
