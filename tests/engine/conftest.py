from __future__ import annotations

from collections.abc import Iterator

import pytest

from intelligent_orchestrator.settings import Settings
from intelligent_orchestrator.storage import Store, create_engine
from tests.support.procs import cli, orchestrator_env


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """Environment for real ``orchestrator`` processes on the test's database (migrated)."""
    e = orchestrator_env(settings.home, settings.database_url)
    done = cli(e, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    return e


@pytest.fixture
def store(settings: Settings, env: dict[str, str]) -> Iterator[Store]:
    """The test's own view of the database the processes share."""
    engine = create_engine(settings.app_database_url)
    yield Store(engine)
    engine.dispose()
