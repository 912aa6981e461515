from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg import sql

from intelligent_orchestrator.api import create_app
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import Settings
from tests.conftest import PG_ADMIN, build_registry, make_settings


def asgi_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client(settings: Settings, serve_orch: Orchestrator) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(settings, orchestrator=serve_orch)) as c:
        yield c


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def idle_orch(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Orchestrator]:
    """An orchestrator without an engine, like ``orchestrator serve --no-work``.

    Shared by the tests of a module that start nothing, so that they need not launch DBOS or
    migrate a database each (the engine tests use the per-test ``settings`` instead).
    """
    database_url = None
    db_name = None
    if request.param == "postgres":
        try:
            with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
                db_name = f"io_test_{uuid.uuid4().hex[:12]}"
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
        except psycopg.OperationalError as exc:
            pytest.skip(f"PostgreSQL unreachable ({exc}); CI requires it")
        database_url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{db_name}"
    settings = make_settings(tmp_path_factory.mktemp("idle") / "home", database_url)
    orch = Orchestrator(settings, registry=build_registry(settings))
    try:
        yield orch
    finally:
        asyncio.run(orch.close())
        if db_name is not None:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(db_name)
                    )
                )


@pytest.fixture
async def idle_client(idle_orch: Orchestrator) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(idle_orch.settings, work=False, orchestrator=idle_orch)) as c:
        yield c
