from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from intelligent_orchestrator.domain.models import ExecutionPlan, StepStatus, TaskStatus
from intelligent_orchestrator.settings import Settings
from intelligent_orchestrator.storage import (
    StepBatch,
    StepUpdate,
    Store,
    TaskUpdate,
    create_engine,
    current_revision,
    head_revision,
    upgrade,
    utcnow,
)
from intelligent_orchestrator.storage.db import downgrade
from intelligent_orchestrator.storage.tables import Base

EXPECTED_TABLES = {
    "tasks",
    "step_runs",
    "step_ends",
    "approvals",
    "feedback",
    "artifacts",
    "side_effects",
    "executors",
}


@pytest.fixture
def empty_engine(settings: Settings) -> Iterator[sa.Engine]:
    engine = create_engine(settings.app_database_url)
    yield engine
    engine.dispose()


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_head_revision_is_known() -> None:
    head = head_revision()
    assert isinstance(head, str)
    assert head


def test_upgrade_an_empty_database(empty_engine: sa.Engine) -> None:
    assert current_revision(empty_engine) is None
    assert _tables(empty_engine) == set()

    assert upgrade(empty_engine) == head_revision()
    assert current_revision(empty_engine) == head_revision()
    assert _tables(empty_engine) >= EXPECTED_TABLES | {"alembic_version"}
    assert set(Base.metadata.tables) <= _tables(empty_engine)
    # the migrations build exactly what the table models describe
    with empty_engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []

    # running it again changes nothing
    assert upgrade(empty_engine) == head_revision()
    assert current_revision(empty_engine) == head_revision()


def test_step_rows_are_updated_in_place_with_one_index_less(empty_engine: sa.Engine) -> None:
    """0004: lookups by task go through the (task_id, step_id) key, and on Postgres half of
    each page stays free, so a step's end is written beside its start (a HOT update)."""
    upgrade(empty_engine)
    indexes = {i["name"] for i in sa.inspect(empty_engine).get_indexes("step_runs")}
    assert "ix_step_runs_task_id" not in indexes
    if empty_engine.dialect.name == "postgresql":
        with empty_engine.connect() as conn:
            options = conn.execute(
                sa.text("SELECT reloptions FROM pg_class WHERE relname = 'step_runs'")
            ).scalar_one()
        assert options == ["fillfactor=50"]
    downgrade(empty_engine, "0003")
    indexes = {i["name"] for i in sa.inspect(empty_engine).get_indexes("step_runs")}
    assert "ix_step_runs_task_id" in indexes
    upgrade(empty_engine)
    # a task's steps are still found by task (through the unique key's leading column)
    store = Store(empty_engine)
    task = store.create_task(
        ExecutionPlan.model_validate({"steps": [{"id": "a", "tool": "noop"}]}), executor_id="x"
    )
    update = StepUpdate(step_id="a", tool="noop", status=StepStatus.RUNNING, attempt=1)
    store.write_batch([StepBatch(task_id=task.task_id, updates=[update])])
    store.write_batch(
        [StepBatch(task_id=task.task_id, updates=[replace(update, status=StepStatus.SUCCEEDED)])]
    )
    assert [(r.step_id, r.status) for r in store.step_runs(task.task_id)] == [
        ("a", StepStatus.SUCCEEDED)
    ]


def test_downgrading_below_step_ends_keeps_the_step_rows_waiting_there(
    empty_engine: sa.Engine,
) -> None:
    """0005: a finished task's last step rows that wait in step_ends (Postgres) are moved
    into step_runs by a downgrade, not dropped with the table."""
    upgrade(empty_engine)
    store = Store(empty_engine)
    task = store.create_task(
        ExecutionPlan.model_validate({"steps": [{"id": "a", "tool": "noop"}]}), executor_id="x"
    )
    update = StepUpdate(
        step_id="a",
        tool="noop",
        status=StepStatus.RUNNING,
        attempt=1,
        inputs={"n": 1},
        started_at=utcnow(),
        executor_id="x",
    )
    store.write_batch([StepBatch(task_id=task.task_id, executor_id="x", updates=[update])])
    ended = replace(
        update, status=StepStatus.SUCCEEDED, inputs=None, started_at=None, executor_id=None
    )
    store.write_batch(
        [
            StepBatch(
                task_id=task.task_id,
                executor_id="x",
                updates=[ended, StepUpdate(step_id="b", tool="noop", status=StepStatus.SKIPPED)],
                task=TaskUpdate(status=TaskStatus.SUCCEEDED),
            )
        ]
    )
    with empty_engine.connect() as conn:
        waiting = conn.exec_driver_sql("SELECT count(*) FROM step_ends").scalar_one()
    assert waiting == (1 if empty_engine.dialect.name == "postgresql" else 0)
    downgrade(empty_engine, "0004")
    assert "step_ends" not in _tables(empty_engine)
    with empty_engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT step_id, status, executor_id, started_at IS NOT NULL FROM step_runs ORDER BY id"
        ).all()
        inputs = conn.exec_driver_sql("SELECT inputs FROM step_runs ORDER BY id").scalars().all()
    assert [tuple(r) for r in rows] == [
        ("a", "succeeded", "x", True),
        ("b", "skipped", None, False),
    ]
    assert [json.loads(i) if isinstance(i, str) else i for i in inputs] == [{"n": 1}, None]


def test_downgrade_to_base_removes_every_table(empty_engine: sa.Engine) -> None:
    upgrade(empty_engine)
    downgrade(empty_engine, "base")
    assert current_revision(empty_engine) is None
    assert _tables(empty_engine) - {"alembic_version"} == set()

    # and the schema can be built again, and used
    assert upgrade(empty_engine) == head_revision()
    store = Store(empty_engine)
    task = store.create_task(ExecutionPlan.model_validate({"steps": [{"id": "a", "tool": "noop"}]}))
    assert store.get_task(task.task_id).name == "workflow"


def test_two_processes_upgrading_at_once(empty_engine: sa.Engine) -> None:
    barrier = threading.Barrier(2)
    results: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(upgrade(empty_engine))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert results == [head_revision(), head_revision()]
    assert current_revision(empty_engine) == head_revision()
