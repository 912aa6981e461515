"""``create_app``: the FastAPI application around one :class:`Orchestrator`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from intelligent_orchestrator import __version__
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import Settings

from .errors import add_error_handlers
from .routes import health_router, tasks_router, tools_router

logger = logging.getLogger(__name__)


def _operation_id(route: APIRoute) -> str:
    """``tag-name`` operation ids, for the generated TypeScript client."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app(
    settings: Settings,
    *,
    work: bool = True,
    executor_id: str | None = None,
    orchestrator: Orchestrator | None = None,
) -> FastAPI:
    """Build the API.

    Args:
        settings: The orchestrator's settings.
        work: Also run queued tasks in this process (its engine counts as a live ``serve`` worker).
        executor_id: Stable executor id of this process when working.
        orchestrator: Use this orchestrator instead of building one; the caller owns (closes) it.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncGenerator[None]:
        owned = orchestrator is None
        # Building one migrates the database when needed: blocking work, kept off the loop.
        orch = (
            orchestrator
            if orchestrator is not None
            else await asyncio.to_thread(Orchestrator, settings)
        )
        app.state.orchestrator = orch
        try:
            if work:
                host = await orch.start_engine(kind="serve", listen=True, executor_id=executor_id)
                logger.info("serving and working", extra={"executor_id": host.executor_id})
            yield
        finally:
            if owned:
                await orch.close()
                app.state.orchestrator = None

    app = FastAPI(
        title="Intelligent Orchestrator",
        version=__version__,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        openapi_url="/openapi.json",
    )
    # Set now too, so an app built around a given orchestrator works without its lifespan
    # (httpx.ASGITransport does not run it).
    app.state.orchestrator = orchestrator
    add_error_handlers(app)
    app.include_router(health_router)
    app.include_router(tasks_router)
    app.include_router(tools_router)
    return app
