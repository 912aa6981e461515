from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest

from intelligent_orchestrator.orchestrator import Orchestrator, default_registry
from intelligent_orchestrator.settings import EngineSettings, Settings, ToolSettings
from intelligent_orchestrator.tools.registry import ToolRegistry
from tests.support.tools import TEST_TOOLS

PG_ADMIN = os.environ.get("ORCHESTRATOR_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except Exception as exc:
        return str(exc)


_PG_PROBLEM = _pg_available()


def pytest_configure(config: pytest.Config) -> None:
    if _PG_PROBLEM and os.environ.get("CI"):
        raise pytest.UsageError(
            f"PostgreSQL is required in CI and is unreachable at {PG_ADMIN}: {_PG_PROBLEM}"
        )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh Postgres database for one test, dropped afterwards."""
    if _PG_PROBLEM:
        pytest.skip(f"PostgreSQL unreachable ({_PG_PROBLEM}); CI requires it")
    name = f"io_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    if backend == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")


def make_settings(home: Path, database_url: str | None, **engine: object) -> Settings:
    eng = {
        "heartbeat_seconds": 0.5,
        "lease_seconds": 3.0,
        "queue_polling_seconds": 0.1,
        "retry_backoff_seconds": 0.01,
        **engine,
    }
    return Settings(
        home=home,
        database_url=database_url,
        engine=EngineSettings.model_validate(eng),
        tools=ToolSettings(load_entry_points=False),
    )


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return make_settings(tmp_path / "home", database_url)


def build_registry(settings: Settings) -> ToolRegistry:
    registry = default_registry(settings)
    for t in TEST_TOOLS:
        registry.register(t)
    return registry


@pytest.fixture
def registry(settings: Settings) -> ToolRegistry:
    return build_registry(settings)


@asynccontextmanager
async def running_orchestrator(
    settings: Settings, registry: ToolRegistry, *, kind: str, listen: bool
) -> AsyncIterator[Orchestrator]:
    o = Orchestrator(settings, registry=registry)
    await o.start_engine(kind=kind, listen=listen)
    try:
        yield o
    finally:
        await o.close()


@pytest.fixture
async def serve_orch(settings: Settings, registry: ToolRegistry) -> AsyncIterator[Orchestrator]:
    """An orchestrator set up like ``orchestrator serve``: it takes queued tasks in this process."""
    async with running_orchestrator(settings, registry, kind="serve", listen=True) as o:
        yield o


@pytest.fixture
async def orch(settings: Settings, registry: ToolRegistry) -> AsyncIterator[Orchestrator]:
    """An orchestrator whose engine runs tasks in this process."""
    async with running_orchestrator(settings, registry, kind="test", listen=False) as o:
        yield o
