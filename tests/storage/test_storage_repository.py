from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import psycopg
import pytest
import sqlalchemy as sa

from intelligent_orchestrator.domain.models import (
    ApprovalStatus,
    ChannelVariant,
    ExecutionPlan,
    ExecutionRecord,
    PipelinePhase,
    QualityAssessment,
    StepStatus,
    TaskStatus,
)
from intelligent_orchestrator.errors import ConflictError, NotFoundError
from intelligent_orchestrator.settings import Settings
from intelligent_orchestrator.storage import (
    NOT_OWNER,
    ArtifactRecord,
    EffectRecord,
    EffectStart,
    NotHolderError,
    StepBatch,
    StepUpdate,
    Store,
    TaskUpdate,
    Written,
    commit_outcome_unknown,
    create_engine,
    new_task_values,
    repository,
    upgrade,
    utcnow,
)
from intelligent_orchestrator.storage import db as storage_db
from intelligent_orchestrator.storage.tables import StepRunRow
from tests.conftest import PG_ADMIN

T = TypeVar("T")

PLAN = ExecutionPlan.model_validate(
    {
        "name": "sales",
        "intent": "report",
        "steps": [
            {"id": "load", "tool": "query_data", "inputs": {"sql": "SELECT 1"}},
            {
                "id": "draw",
                "tool": "chart",
                "inputs": {"rows": "${steps.load.output.rows}"},
                "retries": 2,
            },
        ],
        "metadata": {"owner": "ops", "tags": ["a", "b"]},
    }
)
LEASE = timedelta(seconds=30)


@pytest.fixture
def engine(settings: Settings) -> Iterator[sa.Engine]:
    eng = create_engine(settings.app_database_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> Store:
    return Store(engine)


def assert_utc(*values: datetime | None) -> None:
    for v in values:
        assert v is not None
        assert v.tzinfo is not None, v
        assert v.utcoffset() == timedelta(0), v


def within(value: datetime, before: datetime, after: datetime) -> bool:
    # databases may keep microseconds only; allow a millisecond of rounding
    slack = timedelta(milliseconds=1)
    return before - slack <= value <= after + slack


# Tasks ---------------------------------------------------------------------------------


def test_create_get_and_identify_tasks(store: Store) -> None:
    before = utcnow()
    created = store.create_task(
        PLAN, task_id="t-1", request="monthly report", user_id="ann", auto_approve=True
    )
    after = utcnow()
    got = store.get_task("t-1")
    assert got == created
    assert got.task_id == "t-1"
    assert got.name == "sales"
    assert got.status is TaskStatus.QUEUED
    assert got.request == "monthly report"
    assert got.user_id == "ann"
    assert got.auto_approve is True
    assert got.plan == PLAN
    assert got.total_cost == 0.0
    assert (got.started_at, got.finished_at, got.error, got.failed_step) == (None, None, None, None)
    assert_utc(got.created_at, got.updated_at)
    assert within(got.created_at, before, after)

    a = store.create_task(PLAN)
    b = store.create_task(PLAN)
    assert a.task_id != b.task_id
    assert store.get_task(a.task_id).auto_approve is False

    with pytest.raises(sa.exc.IntegrityError):
        store.create_task(PLAN, task_id="t-1")
    assert store.get_task("t-1") == created

    with pytest.raises(NotFoundError) as exc:
        store.get_task("nope")
    assert (exc.value.kind, exc.value.ident) == ("task", "nope")


def test_list_tasks_pagination_and_status(store: Store) -> None:
    ids = []
    for i in range(5):
        ids.append(store.create_task(PLAN, task_id=f"task-{i}").task_id)
        time.sleep(0.002)  # distinct creation times
    newest_first = list(reversed(ids))

    pages = [store.list_tasks(limit=2, offset=off) for off in (0, 2, 4, 10)]
    assert [total for _, total in pages] == [5, 5, 5, 5]
    assert [[t.task_id for t in page] for page, _ in pages] == [
        newest_first[:2],
        newest_first[2:4],
        newest_first[4:],
        [],
    ]
    assert [t.task_id for t in store.list_tasks()[0]] == newest_first

    assert store.update_task("task-1", status=TaskStatus.RUNNING)
    assert store.update_task("task-3", status=TaskStatus.RUNNING)
    running, total = store.list_tasks(status=TaskStatus.RUNNING)
    assert total == 2
    assert [t.task_id for t in running] == ["task-3", "task-1"]
    assert all(t.status is TaskStatus.RUNNING for t in running)
    queued, total = store.list_tasks(status=TaskStatus.QUEUED, limit=1, offset=1)
    assert total == 3
    assert [t.task_id for t in queued] == ["task-2"]
    assert store.list_tasks(status=TaskStatus.FAILED) == ([], 0)


def test_update_task(store: Store) -> None:
    created = store.create_task(PLAN, task_id="u")
    started = utcnow()
    assert store.update_task("u", status=TaskStatus.RUNNING, started_at=started, executor_id="x")
    got = store.get_task("u")
    assert got.status is TaskStatus.RUNNING
    assert_utc(got.started_at, got.updated_at)
    assert abs(got.started_at - started) < timedelta(milliseconds=1)  # type: ignore[operator]
    assert got.updated_at >= created.updated_at
    assert store.update_task("u", error="boom", failed_step="draw") is True
    got = store.get_task("u")
    assert (got.status, got.error, got.failed_step) == (TaskStatus.RUNNING, "boom", "draw")

    # the only_if guard
    assert store.update_task("u", status=TaskStatus.CANCELLED, only_if=[TaskStatus.QUEUED]) is False
    assert store.get_task("u").status is TaskStatus.RUNNING
    assert store.update_task("u", status=TaskStatus.SUCCEEDED, only_if=[]) is False
    assert store.get_task("u").status is TaskStatus.RUNNING
    assert store.update_task(
        "u", status=TaskStatus.CANCELLED, only_if=[TaskStatus.QUEUED, TaskStatus.RUNNING]
    )
    assert store.get_task("u").status is TaskStatus.CANCELLED
    assert store.update_task("ghost", status=TaskStatus.RUNNING) is False

    store.create_task(PLAN, task_id="other")
    assert store.cancelled_among(["u", "other", "ghost"]) == ["u"]
    assert store.cancelled_among([]) == []

    assert store.task_generation("other") == 0
    assert store.bump_generation("other", status=TaskStatus.QUEUED) == 1
    assert store.bump_generation("other", status=TaskStatus.RUNNING) == 2
    assert store.task_generation("other") == 2
    assert store.get_task("other").status is TaskStatus.RUNNING
    with pytest.raises(NotFoundError):
        store.bump_generation("ghost", status=TaskStatus.QUEUED)

    # the one-column read a waiter polls
    assert store.task_status("u") is TaskStatus.CANCELLED
    assert store.task_status("other") is TaskStatus.RUNNING
    with pytest.raises(NotFoundError):
        store.task_status("ghost")


def test_settled_statuses_are_the_finished_ones_and_the_parked() -> None:
    assert {s for s in TaskStatus if s.settled} == {s for s in TaskStatus if s.finished} | {
        TaskStatus.AWAITING_APPROVAL
    }
    assert not TaskStatus.RUNNING.settled
    assert not TaskStatus.QUEUED.settled


# Steps and artifacts -------------------------------------------------------------------


def test_write_steps_upserts(store: Store) -> None:
    store.create_task(PLAN, task_id="w")
    started = utcnow()
    store.write_steps(
        "w",
        [
            StepUpdate(
                step_id="load",
                tool="query_data",
                status=StepStatus.RUNNING,
                attempt=1,
                inputs={"sql": "SELECT 1"},
                started_at=started,
                executor_id="ex-1",
            ),
            StepUpdate(step_id="draw", tool="chart", status=StepStatus.PENDING),
        ],
    )
    runs = store.step_runs("w")
    assert [(r.step_id, r.status, r.attempt) for r in runs] == [
        ("load", StepStatus.RUNNING, 1),
        ("draw", StepStatus.PENDING, 0),
    ]
    assert runs[0].inputs == {"sql": "SELECT 1"}
    assert runs[0].task_id == "w"

    output = {"rows": [{"a": 1, "b": None}], "columns": ["a", "b"], "note": "Zürich ✓"}
    store.write_steps(
        "w",
        [
            StepUpdate(
                step_id="load",
                tool="query_data",
                status=StepStatus.SUCCEEDED,
                attempt=1,
                output=output,
                finished_at=utcnow(),
                duration_ms=12.5,
                cost=0.25,
            ),
            StepUpdate(step_id="draw", tool="chart", status=StepStatus.FAILED, error="bad rows"),
        ],
    )
    runs = store.step_runs("w")
    assert [r.step_id for r in runs] == ["load", "draw"]  # updated in place, not appended
    load, draw = runs
    assert load.status is StepStatus.SUCCEEDED
    assert load.inputs == {"sql": "SELECT 1"}  # kept: the update carried no inputs
    assert load.output == output
    assert (load.duration_ms, load.cost, load.error) == (12.5, 0.25, None)
    assert_utc(load.started_at, load.finished_at)
    assert abs(load.started_at - started) < timedelta(milliseconds=1)  # type: ignore[operator]
    assert (draw.status, draw.error, draw.output) == (StepStatus.FAILED, "bad rows", None)

    store.create_task(PLAN, task_id="w2")
    store.write_steps(
        "w2", [StepUpdate(step_id="load", tool="query_data", status=StepStatus.SKIPPED)]
    )
    assert [(r.step_id, r.status) for r in store.step_runs("w2")] == [("load", StepStatus.SKIPPED)]
    assert store.step_runs("w")[0].status is StepStatus.SUCCEEDED  # tasks stay apart
    assert store.step_runs("ghost") == []


def test_write_steps_json_artifacts_and_cost(store: Store) -> None:
    outputs: list[Any] = [[1, 2, 3], "text", 42, 1.5, True, None, {"nested": {"deep": [{}]}}]
    store.create_task(PLAN, task_id="j")
    store.write_steps(
        "j",
        [
            StepUpdate(
                step_id=f"s{i}", tool="noop", status=StepStatus.SUCCEEDED, output=o, inputs={"i": i}
            )
            for i, o in enumerate(outputs)
        ],
    )
    runs = store.step_runs("j")
    assert [r.output for r in runs] == outputs
    assert [r.inputs for r in runs] == [{"i": i} for i in range(len(outputs))]

    store.create_task(PLAN, task_id="a")
    art = ArtifactRecord(
        step_id="draw",
        path="artifacts/a/draw-c.png",
        media_type="image/png",
        size=10,
        sha256="0" * 64,
    )
    store.write_steps(
        "a",
        [StepUpdate(step_id="draw", tool="chart", status=StepStatus.SUCCEEDED, cost=1.5)],
        artifacts=[art],
        add_cost=1.5,
    )
    second = ArtifactRecord(
        step_id="draw",
        path="artifacts/a/draw-b.csv",
        media_type="text/csv",
        size=3,
        sha256="1" * 64,
    )
    store.write_steps("a", [], artifacts=[second], add_cost=0.5)
    assert store.artifacts("a") == [art, second]
    assert store.get_task("a").total_cost == 2.0
    assert store.artifacts("j") == []

    store.write_steps("a", [], add_cost=5.0)  # a cost alone is still added
    assert store.get_task("a").total_cost == 7.0
    assert len(store.step_runs("a")) == 1


def test_step_rows_keep_every_character_time_and_float(store: Store) -> None:
    """What a step row carries comes back as written, whatever it holds (on Postgres the rows
    travel to the server as one JSON document)."""
    text = 'quote " backslash \\ tab \t newline \n bell \x07 é 東京 🚀 ${x} \\u0041'
    store.create_task(PLAN, task_id="c")
    started = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    store.write_steps(
        "c",
        [
            StepUpdate(
                step_id=f"s-{text[:6]}",
                tool="noop",
                status=StepStatus.FAILED,
                attempt=3,
                inputs={"k": text, "n": [1, 2.5, None, True], text: {}},
                output=text,
                error=text,
                started_at=started,
                finished_at=started + timedelta(microseconds=1),
                duration_ms=float("inf"),
                cost=1e-9,
                executor_id=text,
            )
        ],
    )
    (run,) = store.step_runs("c")
    assert run.step_id == f"s-{text[:6]}"
    assert (run.inputs, run.output, run.error) == (
        {"k": text, "n": [1, 2.5, None, True], text: {}},
        text,
        text,
    )
    assert (run.started_at, run.finished_at) == (started, started + timedelta(microseconds=1))
    assert (run.duration_ms, run.cost, run.attempt) == (float("inf"), 1e-9, 3)
    # an integer wider than 64 bits (orjson's limit: the document is written another way)
    wide = StepUpdate(
        step_id="wide",
        tool="noop",
        status=StepStatus.SUCCEEDED,
        output=[2**70, -(2**64), 1.5],
        started_at=started,
        duration_ms=float("-inf"),
    )
    store.write_steps("c", [wide])
    (w,) = [r for r in store.step_runs("c") if r.step_id == "wide"]
    assert (w.output, w.started_at, w.duration_ms) == (
        [2**70, -(2**64), 1.5],
        started,
        float("-inf"),
    )


def test_sqlite_step_rows_are_stored_as_sqlalchemy_would_store_them(store: Store) -> None:
    """The journal's SQLite upsert writes times and JSON by its own (faster) means: the text
    stored is SQLAlchemy's for times (which sort and compare as text), and JSON that reads
    back the same."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("SQLite stores times and JSON as text")
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # (no microseconds: still written)
    early = datetime(5, 6, 7, 8, 9, 10, 11, tzinfo=timezone(timedelta(hours=2)))
    inputs = {"k": "é 東京", 1: [2**70, None, 2.5], "b": True}  # (an int key, a wide int)
    store.create_task(PLAN, task_id="t")
    store.write_steps(
        "t",
        [
            StepUpdate(
                step_id="s",
                tool="noop",
                status=StepStatus.SUCCEEDED,
                inputs=inputs,
                output={"rows": [[1, "x"]]},
                started_at=started,
                finished_at=early,
            )
        ],
    )
    with store.engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT inputs, output, started_at, finished_at FROM step_runs WHERE step_id = 's'"
        ).one()
    dialect = store.engine.dialect

    def sqlalchemys(column: str, value: Any) -> Any:
        type_ = StepRunRow.__table__.c[column].type
        return type_.dialect_impl(dialect).bind_processor(dialect)(value)

    assert row.started_at == sqlalchemys("started_at", started) == "2026-01-02 03:04:05.000000"
    assert row.finished_at == sqlalchemys("finished_at", early) == "0005-06-07 08:09:10.000011"
    assert json.loads(row.inputs) == json.loads(sqlalchemys("inputs", inputs))
    assert json.loads(row.output) == {"rows": [[1, "x"]]}
    assert store.step_runs("t")[0].inputs == {"k": "é 東京", "1": [2**70, None, 2.5], "b": True}


def test_write_batch_many_tasks_in_one_transaction(store: Store) -> None:
    """The journal's group commit: several tasks' steps, effects, costs and task ends at once,
    stored exactly as written (the hot path bypasses SQLAlchemy's parameter handling)."""
    odd: list[Any] = [
        {"quote": 'he said "hi"', "path": "C:\\dir", "uni": "Zürich ✓", "nl": "a\nb"},
        [1, [2, [3]], {"x": None}],
        "just text",
        0,
        None,
    ]
    for t in ("b1", "b2", "b3"):
        store.create_task(PLAN, task_id=t, executor_id="ex-1")
    store.effect_started("b1:send", task_id="b1", step_id="send", tool="deliver")
    started = utcnow()
    batches = [
        StepBatch(
            task_id="b1",
            updates=[
                StepUpdate(
                    step_id=f"s{i}",
                    tool="noop",
                    status=StepStatus.SUCCEEDED,
                    attempt=1,
                    inputs={"i": i},
                    output=odd[i % len(odd)],
                    started_at=started,
                    finished_at=started,
                    duration_ms=1.25,
                    executor_id="ex-1",
                )
                for i in range(120)  # more rows than one SQLite statement may bind
            ],
            effects_done=[("b1:send", {"receipt": "r-9"})],
            add_cost=0.5,
        ),
        StepBatch(
            task_id="b2",
            updates=[
                StepUpdate(
                    step_id="x",
                    tool="noop",
                    status=StepStatus.RUNNING,
                    attempt=1,
                    inputs={"keep": True},
                    started_at=started,
                    executor_id="ex-1",
                ),
                # the same step again in the same commit: the later transition wins, and the
                # fields it leaves None keep the earlier values
                StepUpdate(step_id="x", tool="noop", status=StepStatus.FAILED, error="boom"),
            ],
            task=TaskUpdate(
                status=TaskStatus.FAILED, fields={"error": "step 'x' failed", "failed_step": "x"}
            ),
        ),
        StepBatch(task_id="b3", task=TaskUpdate(status=TaskStatus.SUCCEEDED)),
    ]
    store.update_task("b3", status=TaskStatus.CANCELLED)  # cancelled meanwhile: left alone
    assert store.write_batch(batches) == [Written.WRITTEN, Written.APPLIED, Written.WRITTEN]

    runs = store.step_runs("b1")
    assert len(runs) == 120
    assert [r.output for r in runs[:5]] == odd
    assert [r.inputs for r in runs[:3]] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert {(r.status, r.attempt, r.duration_ms) for r in runs} == {(StepStatus.SUCCEEDED, 1, 1.25)}
    assert_utc(runs[0].started_at, runs[0].finished_at)
    assert abs(runs[0].started_at - started) < timedelta(milliseconds=1)  # type: ignore[operator]
    assert store.effect("b1:send") == EffectRecord(
        key="b1:send", status="done", receipt={"receipt": "r-9"}
    )
    assert store.get_task("b1").total_cost == 0.5
    (x,) = store.step_runs("b2")
    assert (x.status, x.error, x.inputs) == (StepStatus.FAILED, "boom", {"keep": True})
    assert x.started_at is not None
    with store.engine.connect() as conn:
        executors = conn.execute(
            sa.text("SELECT DISTINCT executor_id FROM step_runs WHERE task_id IN ('b1', 'b2')")
        ).all()
    assert executors == [("ex-1",)]
    b2 = store.get_task("b2")
    assert (b2.status, b2.error, b2.failed_step) == (TaskStatus.FAILED, "step 'x' failed", "x")
    assert store.get_task("b3").status is TaskStatus.CANCELLED
    assert store.write_batch([]) == []


def _kept_step_ends(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.exec_driver_sql("SELECT task_id FROM step_ends ORDER BY id").scalars())


def test_a_finished_tasks_last_step_rows_are_read_where_they_belong(
    store: Store, backend: str
) -> None:
    """On Postgres a commit of one task that finishes it keeps its steps' rows as one row of
    step_ends; a read of the task's steps, the store's next commit, its ``move_unmoved`` or an
    engine's start moves them into step_runs. A commit of several tasks, and SQLite, upsert
    them in place. Either way a read sees them, with what the running rows held (inputs,
    start, executor)."""
    started = utcnow()
    for task_id in ("t1", "t2", "t3", "t4"):
        store.create_task(PLAN, task_id=task_id, executor_id="ex-1")
    load = StepUpdate(
        step_id="load",
        tool="query_data",
        status=StepStatus.RUNNING,
        attempt=1,
        inputs={"sql": "SELECT 1"},
        started_at=started,
        executor_id="ex-1",
    )
    store.write_batch(
        [StepBatch(task_id=t, executor_id="ex-1", updates=[load]) for t in ("t1", "t2")]
    )
    ends = [
        StepUpdate(step_id="zeta", tool="noop", status=StepStatus.SKIPPED, error="not run"),
        replace(load, status=StepStatus.SUCCEEDED, inputs=None, output={"rows": [1]}),
        StepUpdate(step_id="draw", tool="chart", status=StepStatus.FAILED, error="no rows"),
    ]
    failed = TaskUpdate(status=TaskStatus.FAILED, fields={"finished_at": utcnow()})

    def finish(*task_ids: str) -> list[Written]:
        return store.write_batch(
            [StepBatch(task_id=t, executor_id="ex-1", updates=ends, task=failed) for t in task_ids]
        )

    assert finish("t1") == [Written.APPLIED]
    postgres = backend == "postgres"
    assert _kept_step_ends(store) == (["t1"] if postgres else [])

    def steps(task_id: str) -> list[tuple[str, StepStatus, Any, Any, str | None]]:
        return [
            (r.step_id, r.status, r.inputs, r.output, r.error) for r in store.step_runs(task_id)
        ]

    def stored(task_id: str) -> list[tuple[Any, ...]]:
        with store.engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.exec_driver_sql(
                    "SELECT step_id, status, executor_id, started_at IS NOT NULL FROM step_runs "
                    f"WHERE task_id = '{task_id}' ORDER BY id"
                )
            ]

    moved = [  # (the steps new to step_runs in the order the task's end kept them)
        ("load", "succeeded", "ex-1", True),
        ("zeta", "skipped", None, False),
        ("draw", "failed", None, False),
    ]
    assert steps("t1") == [
        ("load", StepStatus.SUCCEEDED, {"sql": "SELECT 1"}, {"rows": [1]}, None),
        ("zeta", StepStatus.SKIPPED, None, None, "not run"),
        ("draw", StepStatus.FAILED, None, None, "no rows"),
    ]
    assert stored("t1") == moved
    assert _kept_step_ends(store) == []  # (the read moved them)
    # the store's next commit moves them
    assert finish("t2") == [Written.APPLIED]
    assert _kept_step_ends(store) == (["t2"] if postgres else [])
    store.write_batch([StepBatch(task_id="t3", executor_id="ex-1", updates=[load])])
    assert _kept_step_ends(store) == []
    assert stored("t2") == moved
    # so does move_unmoved (an engine's lease round, and its stop)
    finish("t3")
    assert _kept_step_ends(store) == (["t3"] if postgres else [])
    store.move_unmoved()
    assert _kept_step_ends(store) == []
    assert stored("t3") == moved
    # what another process left is moved when an engine starts (Store.prepare)
    other = Store(store.engine)
    assert other.write_batch(
        [StepBatch(task_id="t4", executor_id="ex-1", updates=ends, task=failed)]
    ) == [Written.APPLIED]
    assert _kept_step_ends(store) == (["t4"] if postgres else [])
    store.prepare()
    assert _kept_step_ends(store) == []
    assert [r[:2] for r in stored("t4")] == [
        ("zeta", "skipped"),
        ("load", "succeeded"),
        ("draw", "failed"),
    ]
    # a commit that finishes several tasks (a busy engine) upserts their rows in place: keeping
    # them aside would cost the move's work on top
    for task_id in ("t5", "t6"):
        store.create_task(PLAN, task_id=task_id, executor_id="ex-1")
    assert finish("t5", "t6") == [Written.APPLIED, Written.APPLIED]
    assert _kept_step_ends(store) == []
    assert [r[:2] for r in stored("t6")] == [r[:2] for r in stored("t4")]


def _spy_end_alone(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tasks whose last writes go through ``Store._end_alone`` (the one statement) from now."""
    calls: list[str] = []
    end_alone = Store._end_alone  # pyright: ignore[reportPrivateUsage]

    def spy(self: Store, cursor: Any, batches: Any, *args: Any) -> Any:
        calls.append(batches[-1].task_id)
        return end_alone(self, cursor, batches, *args)

    monkeypatch.setattr(Store, "_end_alone", spy)
    return calls


def test_a_tasks_lone_last_writes_are_one_statement_and_fenced(
    store: Store, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Postgres a commit of nothing but one task's last writes (its step ends and its
    finished end) is one statement: the step rows kept aside and the end written only while
    the executor holds the task, the end only while it runs. Outcomes as a commit of
    several statements gives them."""
    calls = _spy_end_alone(monkeypatch)
    running = StepUpdate(
        step_id="load",
        tool="query_data",
        status=StepStatus.RUNNING,
        attempt=1,
        inputs={"sql": "SELECT 1"},
        executor_id="ex-1",
    )
    for t in ("mine", "taken", "cancelled"):
        store.create_task(PLAN, task_id=t, executor_id="ex-1")
        store.write_batch([StepBatch(task_id=t, executor_id="ex-1", updates=[running])])
    assert store.claim_task("taken", executor_id="ex-2") is not None
    store.update_task("cancelled", status=TaskStatus.CANCELLED)

    def last(task_id: str) -> list[Written]:
        store.move_unmoved()  # (nothing of an earlier task waits: the commit may be one statement)
        done = replace(running, status=StepStatus.SUCCEEDED, inputs=None, output={"n": 1})
        return store.write_batch(
            [
                StepBatch(task_id=task_id, executor_id="ex-1", updates=[done]),
                StepBatch(
                    task_id=task_id,
                    executor_id="ex-1",
                    task=TaskUpdate(status=TaskStatus.SUCCEEDED, fields={"finished_at": utcnow()}),
                ),
            ]
        )

    assert last("mine") == [Written.WRITTEN, Written.APPLIED]
    assert last("taken") == [Written.NOT_OWNER, Written.NOT_OWNER]
    assert last("cancelled") == [Written.WRITTEN, Written.WRITTEN]
    if backend == "postgres":  # (the kept connection is back in transaction mode)
        kept = store._kept  # pyright: ignore[reportPrivateUsage]
        assert kept
        assert all(not c.dbapi_connection.autocommit for c in kept)  # pyright: ignore[reportOptionalMemberAccess]
    assert calls == (["mine", "taken", "cancelled"] if backend == "postgres" else [])
    assert _kept_step_ends(store) == (["cancelled"] if backend == "postgres" else [])
    mine = store.get_task("mine")
    assert (mine.status, mine.finished_at is not None) == (TaskStatus.SUCCEEDED, True)
    assert [(r.status, r.inputs, r.output) for r in store.step_runs("mine")] == [
        (StepStatus.SUCCEEDED, {"sql": "SELECT 1"}, {"n": 1})
    ]
    assert store.get_task("taken").status is TaskStatus.RUNNING
    assert [r.status for r in store.step_runs("taken")] == [StepStatus.RUNNING]
    assert store.get_task("cancelled").status is TaskStatus.CANCELLED
    assert [r.status for r in store.step_runs("cancelled")] == [StepStatus.SUCCEEDED]


def test_a_lone_last_write_lost_with_its_connection_is_told_from_the_tasks_row(
    store: Store, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one statement of a task's lone last writes commits by itself: lost with its kept
    connection, its outcome is read from the task's row. Not there (the connection had been
    dropped without a word while idle): written again on a new connection. There (the answer
    was lost): reported applied, not written twice."""
    if backend != "postgres":
        pytest.skip("the one-statement commit is Postgres's")
    calls = _spy_end_alone(monkeypatch)
    monkeypatch.setattr(repository, "_peer_spoke", lambda raw: False)  # (a silent drop)
    for t in ("a", "b", "c"):
        store.create_task(PLAN, task_id=t, executor_id="ex-1")

    def last(task_id: str) -> list[Written]:
        store.move_unmoved()
        update = StepUpdate(step_id="load", tool="noop", status=StepStatus.SUCCEEDED, output=1)
        end = TaskUpdate(status=TaskStatus.SUCCEEDED, fields={"finished_at": utcnow()})
        return store.write_batch(
            [StepBatch(task_id=task_id, executor_id="ex-1", updates=[update], task=end)]
        )

    assert last("a") == [Written.APPLIED]  # (the journal's connection is kept now)
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            [store.engine.url.database],
        )
    calls.clear()
    assert last("b") == [Written.APPLIED]
    assert calls == ["b", "b"]  # lost unsent, then written on a new connection
    assert [(r.step_id, r.output) for r in store.step_runs("b")] == [("load", 1)]

    spied = Store._end_alone  # pyright: ignore[reportPrivateUsage]

    def answer_lost(self: Store, cursor: Any, batches: Any, *args: Any) -> Any:
        spied(self, cursor, batches, *args)  # (committed)
        cursor.connection.close()
        raise psycopg.OperationalError("the connection is lost")

    monkeypatch.setattr(Store, "_end_alone", answer_lost)
    calls.clear()
    assert last("c") == [Written.APPLIED]
    assert calls == ["c"]  # not written again
    assert store.get_task("c").status is TaskStatus.SUCCEEDED
    assert _kept_step_ends(store) == ["c"]  # (once)
    assert [(r.step_id, r.output) for r in store.step_runs("c")] == [("load", 1)]


def test_finished_step_rows_postgres_would_refuse_fail_their_commit_and_a_failed_move_fails_none(
    store: Store, backend: str
) -> None:
    """A finished task's step row that step_runs would refuse (a NUL character, a step id too
    long) is not kept aside to fail every later move: it is upserted, and its commit fails with
    the database's error, as any commit of such a row does. A move that fails (rows that
    cannot be read) leaves the commit it rides on and the other tasks' moves alone."""
    if backend != "postgres":
        pytest.skip("SQLite takes these rows, and keeps no step rows aside")
    store.create_task(PLAN, task_id="t1", executor_id="ex-1")
    failed = TaskUpdate(status=TaskStatus.FAILED)
    for bad in (
        StepUpdate(step_id="load", tool="noop", status=StepStatus.FAILED, error="a\x00b"),
        StepUpdate(step_id="x" * 65, tool="noop", status=StepStatus.FAILED),
        StepUpdate(step_id="load", tool="noop", status=StepStatus.FAILED, output={"a": "\x00"}),
    ):
        with pytest.raises(sa.exc.DBAPIError):
            store.write_batch(
                [StepBatch(task_id="t1", executor_id="ex-1", updates=[bad], task=failed)]
            )
        assert _kept_step_ends(store) == []
        assert store.get_task("t1").status is TaskStatus.RUNNING
    store.create_task(PLAN, task_id="t2", executor_id="ex-1")
    store.create_task(PLAN, task_id="t3", executor_id="ex-1")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO step_ends (task_id, rows) VALUES ('t2', 'not json')")
    good = StepUpdate(step_id="load", tool="noop", status=StepStatus.SUCCEEDED)
    assert store.write_batch(
        [StepBatch(task_id="t3", executor_id="ex-1", updates=[good], task=failed)]
    ) == [Written.APPLIED]
    store._unmoved.add("t2")  # pyright: ignore[reportPrivateUsage]  # as if its commit had kept it
    # the next commit tries t2's and t3's rows, fails, and is written all the same
    assert store.write_batch([StepBatch(task_id="t1", executor_id="ex-1", updates=[good])]) == [
        Written.WRITTEN
    ]
    assert [r.status for r in store.step_runs("t1")] == [StepStatus.SUCCEEDED]
    assert sorted(_kept_step_ends(store)) == ["t2", "t3"]
    # an engine's start moves what it can, and names what it cannot
    assert store.move_left_step_ends() == ["t2"]
    assert _kept_step_ends(store) == ["t2"]
    assert [r.status for r in store.step_runs("t3")] == [StepStatus.SUCCEEDED]
    with pytest.raises(sa.exc.DBAPIError, match="json"):
        store.step_runs("t2")


def test_a_batch_of_an_executor_that_no_longer_holds_its_task_is_not_written(
    store: Store,
) -> None:
    """Fencing: a process taken for dead (silent for a lease) whose run goes on after another
    executor claimed the task writes nothing of it, while the other batches of the same
    commit are written."""
    for t in ("kept", "moved"):
        store.create_task(PLAN, task_id=t, executor_id="ex-1")
    store.effect_started("moved:send", task_id="moved", step_id="send", tool="deliver")
    assert store.claim_task("moved", executor_id="ex-2") is not None  # the takeover

    def batch(task_id: str) -> StepBatch:
        return StepBatch(
            task_id=task_id,
            executor_id="ex-1",
            updates=[StepUpdate(step_id="load", tool="noop", status=StepStatus.SUCCEEDED)],
            artifacts=[
                ArtifactRecord(
                    step_id="load", path="a.png", media_type="image/png", size=1, sha256="0"
                )
            ],
            add_cost=1.0,
            effects_done=[(f"{task_id}:send", {"receipt": 1})],
            task=TaskUpdate(status=TaskStatus.SUCCEEDED),
        )

    assert store.write_batch([batch("moved"), batch("kept")]) == [
        Written.NOT_OWNER,
        Written.APPLIED,
    ]
    moved = store.get_task("moved")
    assert (moved.status, moved.total_cost) == (TaskStatus.RUNNING, 0.0)
    assert store.step_runs("moved") == []
    assert store.artifacts("moved") == []
    assert store.effect("moved:send") == EffectRecord(
        key="moved:send", status="started", receipt=None
    )
    kept = store.get_task("kept")
    assert (kept.status, kept.total_cost) == (TaskStatus.SUCCEEDED, 1.0)
    assert [r.status for r in store.step_runs("kept")] == [StepStatus.SUCCEEDED]
    # The new holder writes as before; a batch without an executor is not checked.
    assert store.write_batch(
        [
            replace(batch("moved"), executor_id="ex-2", effects_done=()),
            StepBatch(task_id="kept", add_cost=1.0),
        ]
    ) == [Written.APPLIED, Written.WRITTEN]
    assert store.get_task("moved").status is TaskStatus.SUCCEEDED
    assert store.get_task("kept").total_cost == 2.0


def test_a_commit_of_step_rows_and_task_ends_only(store: Store) -> None:
    """The journal's usual commit (no new task, artifact, effect or cost: on Postgres it runs
    on the driver's connection): rows upserted, task ends applied to running tasks only, a
    batch of an executor that no longer holds its task refused, in one transaction."""
    for t in ("done", "failed", "cancelled", "moved"):
        store.create_task(PLAN, task_id=t, executor_id="ex-1")
    store.update_task("cancelled", status=TaskStatus.CANCELLED)
    store.claim_task("moved", executor_id="ex-2")
    finished = utcnow()

    def batch(task_id: str, status: TaskStatus, **fields: Any) -> StepBatch:
        return StepBatch(
            task_id=task_id,
            executor_id="ex-1",
            updates=[
                StepUpdate(
                    step_id="load",
                    tool="noop",
                    status=StepStatus.RUNNING,
                    attempt=1,
                    inputs={"q": 'a "quoted" ✓'},
                    started_at=finished,
                ),
                StepUpdate(step_id="load", tool="noop", status=StepStatus.SUCCEEDED, output=[1]),
            ],
            task=TaskUpdate(status=status, fields={"finished_at": finished, **fields}),
        )

    assert store.write_batch(
        [
            batch("done", TaskStatus.SUCCEEDED),
            batch("failed", TaskStatus.FAILED, error="step 'load' failed", failed_step="load"),
            batch("cancelled", TaskStatus.SUCCEEDED),
            batch("moved", TaskStatus.SUCCEEDED),
            StepBatch(task_id="done", updates=[]),  # (nothing of its own)
        ]
    ) == [Written.APPLIED, Written.APPLIED, Written.WRITTEN, Written.NOT_OWNER, Written.WRITTEN]
    done, failed = store.get_task("done"), store.get_task("failed")
    assert (done.status, done.error) == (TaskStatus.SUCCEEDED, None)
    assert done.finished_at is not None
    assert abs(done.finished_at - finished) < timedelta(milliseconds=1)
    assert (failed.status, failed.error, failed.failed_step) == (
        TaskStatus.FAILED,
        "step 'load' failed",
        "load",
    )
    assert store.get_task("cancelled").status is TaskStatus.CANCELLED
    assert store.get_task("moved").status is TaskStatus.RUNNING
    assert store.step_runs("moved") == []
    for t in ("done", "failed", "cancelled"):
        (run,) = store.step_runs(t)
        assert (run.status, run.inputs, run.output) == (
            StepStatus.SUCCEEDED,
            {"q": 'a "quoted" ✓'},
            [1],
        )


def test_a_failed_step_commit_raises_sqlalchemys_error_and_marks_a_lost_connection(
    store: Store, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever path a commit takes, a driver error comes out as SQLAlchemy's (callers tell
    a refused row from a lost connection by it) and the next commit works."""
    store.create_task(PLAN, task_id="t", executor_id="ex-1")
    update = StepUpdate(step_id="load", tool="noop", status=StepStatus.SUCCEEDED, output=1)
    with pytest.raises(sa.exc.IntegrityError) as refused:  # a step of no task
        store.write_batch([StepBatch(task_id="ghost", updates=[update])])
    assert not commit_outcome_unknown(refused.value)
    if backend == "postgres":
        upsert = store._upsert_steps.run

        def lost(cursor: Any, rows: list[dict[str, Any]]) -> None:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")  # the server goes
            upsert(cursor, rows)

        monkeypatch.setattr(store._upsert_steps, "run", lost)
        with pytest.raises(sa.exc.DBAPIError) as gone:
            store.write_batch([StepBatch(task_id="t", executor_id="ex-1", updates=[update])])
        assert commit_outcome_unknown(gone.value)
        monkeypatch.undo()
    assert store.write_batch([StepBatch(task_id="t", executor_id="ex-1", updates=[update])]) == [
        Written.WRITTEN
    ]
    assert [r.output for r in store.step_runs("t")] == [1]


def test_the_journal_statements_are_prepared_at_first_use_unless_the_driver_prepares_none(
    settings: Settings, backend: str
) -> None:
    """On Postgres the holders check, the step upsert and a task's lone last writes (its kept
    step rows and its end in one statement) are server-side prepared at their first use on a
    connection; a connection set to prepare nothing (for a transaction-pooling PgBouncer)
    prepares none of them."""
    if backend != "postgres":
        pytest.skip("prepared statements are Postgres's")
    for threshold, expected in ((5, 3), (None, 0)):
        engine = create_engine(
            settings.app_database_url,
            pool_size=1,
            max_overflow=0,
            connect_args={"prepare_threshold": threshold},
        )
        try:
            upgrade(engine)
            store = Store(engine)
            store.create_task(PLAN, task_id="t", executor_id="ex-1")
            update = StepUpdate(step_id="load", tool="noop", status=StepStatus.RUNNING)
            assert store.write_batch(
                [StepBatch(task_id="t", executor_id="ex-1", updates=[update])]
            ) == [Written.WRITTEN]
            update = replace(update, status=StepStatus.SUCCEEDED)
            end = TaskUpdate(status=TaskStatus.SUCCEEDED, fields={"finished_at": utcnow()})
            assert store.write_batch(
                [StepBatch(task_id="t", executor_id="ex-1", updates=[update], task=end)]
            ) == [Written.APPLIED]
            with engine.connect() as conn:  # (the pool's one connection)
                prepared = (
                    conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements")
                    .scalars()
                    .all()
                )
            mine = [
                p
                for p in prepared
                if "FOR SHARE" in p
                or p.startswith(("INSERT INTO step_runs", "INSERT INTO step_ends"))
                or "UPDATE tasks" in p
            ]
            assert len(mine) == expected, (threshold, prepared)
            with engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM tasks")
        finally:
            engine.dispose()


def test_the_journal_keeps_its_connection_and_writes_again_if_it_died(
    store: Store, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal commit reuses the last one's connection (no checkout; on Postgres no
    pre-ping); if the server dropped it meanwhile, the commit is written on a new connection,
    once."""
    checkouts: list[object] = []
    sa.event.listen(store.engine, "checkout", lambda *a: checkouts.append(a[0]))
    for t in ("a", "b", "c"):
        store.create_task(PLAN, task_id=t, executor_id="ex-1")

    def commit(task_id: str) -> list[Written]:
        update = StepUpdate(step_id="load", tool="noop", status=StepStatus.SUCCEEDED, output=1)
        end = TaskUpdate(status=TaskStatus.SUCCEEDED, fields={"finished_at": utcnow()})
        return store.write_batch(
            [StepBatch(task_id=task_id, executor_id="ex-1", updates=[update], task=end)]
        )

    assert commit("a") == [Written.APPLIED]
    before = len(checkouts)
    assert commit("b") == [Written.APPLIED]
    assert len(checkouts) == before  # the kept connection: not checked out again
    if backend != "postgres":
        return
    store.move_unmoved()  # (so that c's commit is one statement: Store._end_alone)
    before = len(checkouts)
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:  # (the server drops them all)
        pids = admin.execute(
            "SELECT array_agg(pid) FROM pg_stat_activity WHERE datname = %s",
            [store.engine.url.database],
        ).fetchone()[0]  # pyright: ignore[reportOptionalSubscript]
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])
        for _ in range(500):  # (gone, and their goodbyes sent)
            left = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]
            ).fetchone()
            if left == (0,):
                break
            time.sleep(0.01)
    # on a new connection: the dead one is seen before a statement that commits by itself
    # is sent on it, and dropped
    alone = _spy_end_alone(monkeypatch)
    assert commit("c") == [Written.APPLIED]
    assert alone == ["c"]  # (once: on the new connection)
    assert len(checkouts) == before + 1
    c = store.get_task("c")
    assert c.status is TaskStatus.SUCCEEDED
    assert [(r.step_id, r.output) for r in store.step_runs("c")] == [("load", 1)]


def test_commits_from_two_threads_each_get_a_connection_of_their_own(
    store: Store, backend: str
) -> None:
    """Two event loops' journals commit at once: a kept connection serves one commit at a
    time, and every commit of both is written."""
    for t in ("a", "b"):
        store.create_task(PLAN, task_id=t, executor_id="ex-1")
    in_use: set[int] = set()
    overlap: list[int] = []
    guard = threading.Lock()
    upsert = store._upsert_steps.run

    def watched(cursor: Any, rows: list[dict[str, Any]]) -> None:
        conn = id(cursor.connection)
        with guard:
            if conn in in_use:
                overlap.append(conn)
            in_use.add(conn)
        try:
            time.sleep(0.002)  # (the other thread commits meanwhile)
            upsert(cursor, rows)
        finally:
            with guard:
                in_use.discard(conn)

    store._upsert_steps.run = watched  # type: ignore[method-assign]

    def commits(task_id: str) -> None:
        for i in range(20):
            update = StepUpdate(step_id=f"s{i}", tool="noop", status=StepStatus.SUCCEEDED)
            assert store.write_batch(
                [StepBatch(task_id=task_id, executor_id="ex-1", updates=[update])]
            ) == [Written.WRITTEN]

    threads = [threading.Thread(target=commits, args=(t,)) for t in ("a", "b")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert overlap == []
    assert len(store.step_runs("a")) == len(store.step_runs("b")) == 20


def test_a_failed_journal_commit_leaves_nothing_written_and_the_writers_free(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit that fails half-way (here after its new task's row) is rolled back whole, its
    connection is not left in a transaction, and on SQLite the next writer gets the write
    gate at once."""
    store.create_task(PLAN, task_id="t", executor_id="ex-1")
    update = StepUpdate(step_id="load", tool="noop", status=StepStatus.SUCCEEDED, output=1)
    create = new_task_values(PLAN, executor_id="ex-1")

    def broken(cursor: Any, rows: list[dict[str, Any]]) -> None:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(store._upsert_steps, "run", broken)
    with pytest.raises(RuntimeError, match="disk is full"):
        store.write_batch(
            [
                StepBatch(task_id=create["task_id"], executor_id="ex-1", create=create),
                StepBatch(task_id="t", executor_id="ex-1", updates=[update]),
            ]
        )
    monkeypatch.undo()
    with pytest.raises(NotFoundError):
        store.get_task(create["task_id"])
    assert store.step_runs("t") == []
    gate = storage_db.write_gate(store.engine)
    assert gate is None or not gate.locked()
    started = time.monotonic()
    assert store.write_batch([StepBatch(task_id="t", executor_id="ex-1", updates=[update])]) == [
        Written.WRITTEN
    ]
    assert time.monotonic() - started < 5  # (not SQLite's busy timeout, 30 s)
    assert [r.output for r in store.step_runs("t")] == [1]


def test_a_kept_connection_lost_at_commit_is_not_written_again(
    store: Store, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kept connection lost during COMMIT may have committed: the commit is not run again
    elsewhere, and the caller is told its outcome is unknown."""
    if backend != "postgres":
        pytest.skip("the kept connection is the Postgres path's")
    store.create_task(PLAN, task_id="t", executor_id="ex-1")
    update = StepUpdate(step_id="load", tool="noop", status=StepStatus.SUCCEEDED, output=1)
    batch = StepBatch(task_id="t", executor_id="ex-1", updates=[update])
    assert store.write_batch([batch]) == [Written.WRITTEN]  # (its connection is kept)
    commits: list[object] = []
    real = psycopg.Connection.commit

    def lost(self: psycopg.Connection[Any]) -> None:
        commits.append(self)
        with contextlib.suppress(psycopg.Error):  # the server ends this session...
            self.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        real(self)  # ...so COMMIT fails

    monkeypatch.setattr(psycopg.Connection, "commit", lost)
    with pytest.raises(sa.exc.DBAPIError) as gone:
        store.write_batch([batch])
    assert commit_outcome_unknown(gone.value)
    assert len(commits) == 1


def test_stopped_among_names_the_cancelled_and_the_taken_over(store: Store) -> None:
    for t in ("mine", "gone", "moved", "dropped"):
        store.create_task(PLAN, task_id=t, executor_id="ex-1")
    store.update_task("gone", status=TaskStatus.CANCELLED)
    store.claim_task("moved", executor_id="ex-2")
    store.update_task("dropped", executor_id=None)
    cancelled, moved = store.stopped_among(
        ["mine", "gone", "moved", "dropped", "ghost"], executor_id="ex-1"
    )
    assert (cancelled, sorted(moved)) == (["gone"], ["dropped", "moved"])
    assert store.stopped_among([], executor_id="ex-1") == ([], [])


def test_a_claim_waits_for_a_commit_of_the_tasks_holder(
    store: Store, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Postgres the holder's commit share-locks its task rows: a claim made meanwhile
    waits, then loads what the commit wrote (instead of missing it and being overwritten)."""
    if backend != "postgres":
        pytest.skip("row locks are Postgres's (SQLite has one writer at a time)")
    store.create_task(PLAN, task_id="t", executor_id="ex-1")
    inside, release = threading.Event(), threading.Event()
    upsert = store._upsert_steps.run

    def held(cursor: Any, rows: list[dict[str, Any]]) -> None:
        upsert(cursor, rows)
        inside.set()
        release.wait(10)

    monkeypatch.setattr(store._upsert_steps, "run", held)
    update = StepUpdate(step_id="load", tool="noop", status=StepStatus.SUCCEEDED, output=1)
    written: list[list[Written]] = []
    commit = threading.Thread(
        target=lambda: written.append(
            store.write_batch([StepBatch(task_id="t", executor_id="ex-1", updates=[update])])
        )
    )
    commit.start()
    assert inside.wait(10)
    claimed: list[Any] = []
    claim = threading.Thread(
        target=lambda: claimed.append(store.claim_task("t", executor_id="ex-2"))
    )
    claim.start()
    claim.join(timeout=0.5)
    waited = claim.is_alive()
    release.set()
    commit.join(timeout=10)
    claim.join(timeout=10)
    assert waited, "the claim did not wait for the holder's commit"
    assert written == [[Written.WRITTEN]]
    _, runs = claimed[0]
    assert [(r.step_id, r.status, r.output) for r in runs] == [("load", StepStatus.SUCCEEDED, 1)]


def test_an_effect_is_not_started_by_an_executor_that_no_longer_holds_its_task(
    store: Store,
) -> None:
    store.create_task(PLAN, task_id="t", executor_id="ex-1")
    store.claim_task("t", executor_id="ex-2")
    starts = [
        EffectStart(key=f"t:{s}", task_id="t", step_id=s, tool="deliver", executor_id=ex)
        for s, ex in (("a", "ex-1"), ("b", "ex-2"), ("c", None))
    ]
    assert [r.status for r in store.effects_started(starts)] == [NOT_OWNER, "started", "started"]
    assert store.effect("t:a") is None
    assert {r.key for r in store.effects("t")} == {"t:b", "t:c"}


def test_the_quality_pipelines_writes_are_refused_to_an_executor_that_no_longer_holds_it(
    store: Store,
) -> None:
    """Fencing of the pipeline's own records: each write fenced on ``ex-1`` is refused once
    ``ex-2`` holds the task (NotHolderError, nothing written), and made by the holder."""
    store.create_task(PLAN, task_id="t", executor_id="ex-1")
    store.write_steps("t", [StepUpdate(step_id="load", tool="noop", status=StepStatus.SUCCEEDED)])
    store.claim_task("t", executor_id="ex-2")
    art = ArtifactRecord(
        step_id="format", path="post.md", media_type="text/markdown", size=1, sha256="0"
    )
    writes: dict[str, Callable[[str], object]] = {
        "assessment": lambda ex: store.save_assessment(
            "t",
            QualityAssessment(overall_score=0.5, passed=False),
            trigger="first",
            only_executor=ex,
        ),
        "variants": lambda ex: store.save_variants(
            "t",
            0,
            [ChannelVariant(channel="blog", deliverable="w", text="hi")],
            [art],
            only_executor=ex,
        ),
        "artifacts": lambda ex: store.replace_artifacts(
            "t", [replace(art, size=2, sha256="1")], only_executor=ex
        ),  # the file written again
        "reset": lambda ex: store.reset_for_refinement(
            "t", ["load"], round_=1, phase=PipelinePhase.REFINE, only_executor=ex
        ),
        "approval": lambda ex: store.request_approval(
            "t", "review", expires_in=timedelta(days=1), only_executor=ex
        ),
        "record": lambda ex: store.save_record(
            ExecutionRecord(task_id="t", plan=PLAN, tool_sequence=["noop"], outcome="succeeded"),
            only_executor=ex,
        ),
        "restore": lambda ex: store.restore_round("t", 0, only_executor=ex),
    }

    def state() -> tuple[object, ...]:
        task = store.get_task("t")
        return (
            task.round,
            task.phase,
            task.quality_score,
            store.assessments("t"),
            store.variants("t"),
            store.artifacts("t"),
            store.step_runs("t"),
            store.approvals("t"),
            store.execution_record("t"),
        )

    before = state()
    for name, write in writes.items():
        with pytest.raises(NotHolderError, match="held by another executor now, not by ex-1"):
            write("ex-1")
        assert state() == before, name
    for name, write in writes.items():
        write("ex-2")
        after = state()
        assert after != before, name
        before = after


def test_create_task_running_on_an_executor(store: Store) -> None:
    task = store.create_task(PLAN, task_id="mine", executor_id="ex-7")
    stored = store.get_task("mine")
    for t in (task, stored):
        assert t.status is TaskStatus.RUNNING
        assert t.started_at is not None
    with store.engine.connect() as conn:
        holder = conn.execute(sa.text("SELECT executor_id FROM tasks WHERE task_id = 'mine'"))
        assert holder.scalar_one() == "ex-7"
    assert task.plan == stored.plan == PLAN
    assert store.create_task(PLAN, task_id="queued").status is TaskStatus.QUEUED
    assert store.get_task("queued").started_at is None


def test_approve_and_claim_requeues_or_claims_in_one_transaction(store: Store) -> None:
    def parked(task_id: str, *steps: str) -> None:
        store.create_task(PLAN, task_id=task_id)
        store.update_task(task_id, status=TaskStatus.AWAITING_APPROVAL)
        store.write_steps(
            task_id,
            [StepUpdate(step_id="load", tool="query_data", status=StepStatus.SUCCEEDED)],
        )
        for step in steps:
            store.request_approval(task_id, step, expires_in=timedelta(hours=1))

    parked("q", "draw")  # nobody resumes it here: queued for any worker
    assert store.approve_and_claim("q", comment=None, decided_by="ann") == (1, None)
    assert store.get_task("q").status is TaskStatus.QUEUED

    parked("c", "draw")  # resumed by this executor at once: running on it, step runs loaded
    generation, claimed = store.approve_and_claim(
        "c", comment="fine", decided_by="ann", executor_id="ex-9"
    )
    assert generation == 1
    assert claimed is not None
    task, runs = claimed
    assert task.status is TaskStatus.RUNNING
    assert task.started_at is not None
    assert store.task_generation("c") == 1
    assert [(r.step_id, r.status) for r in runs] == [("load", StepStatus.SUCCEEDED)]
    assert store.get_task("c").status is TaskStatus.RUNNING
    with store.engine.connect() as conn:
        holder = conn.execute(sa.text("SELECT executor_id FROM tasks WHERE task_id = 'c'"))
        assert holder.scalar_one() == "ex-9"
    assert [a.status for a in store.approvals("c")] == [ApprovalStatus.APPROVED]

    parked("two", "draw", "load")  # another gate still waits: nothing claimed
    assert store.approve_and_claim(
        "two", comment=None, decided_by="ann", step_id="draw", executor_id="ex-9"
    ) == (None, None)
    assert store.get_task("two").status is TaskStatus.AWAITING_APPROVAL


def test_sqlite_writers_of_one_process_take_turns(
    store: Store, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many threads writing at once all succeed, and the gate is free afterwards; a
    transaction that cannot get the gate (a nested write) goes ahead after the wait."""
    if backend != "sqlite":
        pytest.skip("the write gate is SQLite's")
    gate = storage_db.write_gate(store.engine)
    assert gate is not None
    assert storage_db.write_gate(store.reader) is None  # reads never wait
    results, errors = run_concurrently(
        [lambda i=i: store.create_task(PLAN, task_id=f"g{i}") for i in range(40)]
    )
    assert errors == []
    assert len(results) == 40
    assert not gate.locked()
    with store.engine.begin() as conn:  # a transaction holds it until its connection is back
        conn.execute(sa.text("SELECT 1"))
        assert gate.locked()
    assert not gate.locked()
    duplicate = sa.text("INSERT INTO tasks (task_id) VALUES ('g1')")
    with store.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(duplicate)  # a failed statement...
    assert not gate.locked()  # ...and its transaction's end give it back
    assert not gate.locked()
    monkeypatch.setattr(storage_db, "_GATE_WAIT_SECONDS", 0.2)
    sa.event.listen(store.engine, "connect", lambda c, _r: c.execute("PRAGMA busy_timeout=300"))
    store.engine.dispose()  # new connections: SQLite's own wait is short too
    with store.engine.begin() as outer:  # holds the gate (and SQLite's write lock)
        outer.execute(sa.text("UPDATE tasks SET name = 'held' WHERE task_id = 'g0'"))
        t0 = time.monotonic()

        def nested() -> None:
            with store.engine.begin() as inner:
                inner.execute(sa.text("SELECT 1"))

        _, nested_errors = run_concurrently([nested])
        waited = time.monotonic() - t0
    # the nested transaction waited for the gate, went ahead, and met SQLite's own lock
    # (held by the outer one, which cannot commit while this thread waits): an error, no hang
    assert 0.2 <= waited < 10
    assert len(nested_errors) == 1
    assert "locked" in str(nested_errors[0])
    store.create_task(PLAN, task_id="after")  # the gate is free again
    assert store.get_task("g0").name == "held"


# Approvals -----------------------------------------------------------------------------


def test_request_approval_is_idempotent_and_can_auto_approve(store: Store) -> None:
    store.create_task(PLAN, task_id="ap")
    first = store.request_approval("ap", None, expires_in=timedelta(hours=2))
    assert first.status is ApprovalStatus.PENDING
    assert (first.task_id, first.step_id, first.decided_at, first.decided_by) == (
        "ap",
        None,
        None,
        None,
    )
    assert_utc(first.requested_at, first.expires_at)
    assert first.expires_at - first.requested_at == timedelta(hours=2)  # type: ignore[operator]

    assert store.request_approval("ap", None, expires_in=timedelta(hours=9)) == first
    step = store.request_approval("ap", "draw", expires_in=timedelta(hours=2))
    assert step.approval_id != first.approval_id
    assert step.step_id == "draw"
    assert store.request_approval("ap", "draw", expires_in=timedelta(hours=2)) == step
    assert [a.approval_id for a in store.approvals("ap")] == [first.approval_id, step.approval_id]

    store.create_task(PLAN, task_id="auto", auto_approve=True)
    auto = store.request_approval(
        "auto", "draw", expires_in=timedelta(hours=1), auto_by="auto-approve"
    )
    assert auto.status is ApprovalStatus.APPROVED
    assert auto.decided_by == "auto-approve"
    assert_utc(auto.decided_at)
    assert store.approvals("auto") == [auto]
    assert store.request_approval("auto", "draw", expires_in=timedelta(hours=1)) == auto
    with pytest.raises(ConflictError):
        store.decide("auto", approved=True, comment=None, decided_by="bob")


def test_decide_approve_and_reject(store: Store) -> None:
    store.create_task(PLAN, task_id="ok")
    store.update_task("ok", status=TaskStatus.AWAITING_APPROVAL)
    pending = store.request_approval("ok", None, expires_in=timedelta(hours=1))
    [decided] = store.decide("ok", approved=True, comment="looks right", decided_by="ann")
    assert decided.approval_id == pending.approval_id
    assert decided.status is ApprovalStatus.APPROVED
    assert (decided.decided_by, decided.comment) == ("ann", "looks right")
    assert_utc(decided.decided_at)
    assert store.approvals("ok") == [decided]
    [fb] = store.feedback("ok")
    assert (fb["kind"], fb["text"], fb["author"]) == ("approval", "looks right", "ann")
    assert_utc(fb["created_at"])

    with pytest.raises(ConflictError) as exc:  # nothing pending any more
        store.decide("ok", approved=False, comment="changed my mind", decided_by="bob")
    assert exc.value.task_id == "ok"
    assert "'ok' has no pending approval (status awaiting_approval)" in str(exc.value)
    assert store.approvals("ok") == [decided]
    assert len(store.feedback("ok")) == 1

    store.create_task(PLAN, task_id="no")
    store.request_approval("no", None, expires_in=timedelta(hours=1))
    [rejected] = store.decide("no", approved=False, comment=None, decided_by="bob")
    assert rejected.status is ApprovalStatus.REJECTED
    assert store.feedback("no") == []  # no comment, no feedback

    store.create_task(PLAN, task_id="rj")
    store.request_approval("rj", None, expires_in=timedelta(hours=1))
    store.decide("rj", approved=False, comment="wrong month", decided_by="bob")
    assert [(f["kind"], f["text"], f["author"]) for f in store.feedback("rj")] == [
        ("rejection", "wrong month", "bob")
    ]

    with pytest.raises(NotFoundError):
        store.decide("ghost", approved=True, comment=None, decided_by="ann")
    store.create_task(PLAN, task_id="none")
    with pytest.raises(ConflictError) as exc:
        store.decide("none", approved=True, comment="c", decided_by="ann")
    assert "'none' has no pending approval (status queued)" in str(exc.value)
    assert store.feedback("none") == []


def test_decide_one_step_or_all(store: Store) -> None:
    store.create_task(PLAN, task_id="multi")
    store.request_approval("multi", "load", expires_in=timedelta(hours=1))
    store.request_approval("multi", "draw", expires_in=timedelta(hours=1))
    store.request_approval("multi", None, expires_in=timedelta(hours=1))

    [only] = store.decide("multi", approved=True, comment=None, decided_by="ann", step_id="draw")
    assert only.step_id == "draw"
    statuses = {a.step_id: a.status for a in store.approvals("multi")}
    assert statuses == {
        "load": ApprovalStatus.PENDING,
        "draw": ApprovalStatus.APPROVED,
        None: ApprovalStatus.PENDING,
    }
    with pytest.raises(ConflictError):
        store.decide("multi", approved=True, comment=None, decided_by="ann", step_id="draw")

    rest = store.decide("multi", approved=False, comment="no", decided_by="ann")
    assert {a.step_id for a in rest} == {"load", None}
    statuses = {a.step_id: a.status for a in store.approvals("multi")}
    assert statuses == {
        "load": ApprovalStatus.REJECTED,
        "draw": ApprovalStatus.APPROVED,
        None: ApprovalStatus.REJECTED,
    }
    assert len(store.feedback("multi")) == 1  # one feedback row per decision


def test_expiry_skips_a_task_being_decided_instead_of_deadlocking(
    store: Store, engine: sa.Engine, backend: str
) -> None:
    """A decision locks its task, then the task's approvals; the lease round's expiry must not
    take them in the other order (on Postgres that deadlocked with a decision)."""
    if backend != "postgres":
        pytest.skip("row locks are Postgres's (SQLite has one writer at a time)")
    for t in ("busy", "idle"):
        store.create_task(PLAN, task_id=t)
        store.update_task(t, status=TaskStatus.AWAITING_APPROVAL)
        store.request_approval(t, None, expires_in=timedelta(seconds=-1))
    expired: list[list[str]] = []
    with engine.connect() as decision:
        decision.execute(  # as Store._decide: the task row first...
            sa.text("SELECT 1 FROM tasks WHERE task_id = 'busy' FOR UPDATE")
        )
        expiry = threading.Thread(target=lambda: expired.append(store.expire_approvals()))
        expiry.start()
        expiry.join(timeout=10)
        waited = expiry.is_alive()
        decision.execute(  # ...then its approvals (the expiry must not hold them)
            sa.text("SELECT 1 FROM approvals WHERE task_id = 'busy' FOR UPDATE NOWAIT")
        )
        decision.rollback()
    expiry.join(timeout=10)
    assert not waited, "the expiry waited for the task being decided"
    assert expired == [["idle"]]
    assert store.get_task("busy").status is TaskStatus.AWAITING_APPROVAL
    assert store.expire_approvals() == ["busy"]  # the next round, once the decision is over
    assert store.get_task("busy").status is TaskStatus.EXPIRED


def test_expired_or_cancelled_approvals_are_refused(store: Store) -> None:
    store.create_task(PLAN, task_id="late")
    store.update_task("late", status=TaskStatus.AWAITING_APPROVAL)
    store.request_approval("late", None, expires_in=timedelta(seconds=-1))
    with pytest.raises(ConflictError) as exc:
        store.decide("late", approved=True, comment="too late?", decided_by="ann")
    assert "expired" in str(exc.value)
    [approval] = store.approvals("late")
    assert approval.status is ApprovalStatus.EXPIRED
    assert approval.decided_by is None
    assert store.feedback("late") == []
    task = store.get_task("late")
    assert task.status is TaskStatus.EXPIRED
    assert task.error == "approval expired"
    assert_utc(task.finished_at)

    store.create_task(PLAN, task_id="cx")
    store.request_approval("cx", None, expires_in=timedelta(hours=1))
    store.cancel_approvals("cx")
    [cancelled] = store.approvals("cx")
    assert cancelled.status is ApprovalStatus.CANCELLED
    assert_utc(cancelled.decided_at)
    with pytest.raises(ConflictError):
        store.decide("cx", approved=True, comment=None, decided_by="ann")


def test_expire_approvals(store: Store) -> None:
    for tid in ("waiting", "running", "fresh"):
        store.create_task(PLAN, task_id=tid)
    store.update_task("waiting", status=TaskStatus.AWAITING_APPROVAL)
    store.update_task("running", status=TaskStatus.RUNNING)
    store.update_task("fresh", status=TaskStatus.AWAITING_APPROVAL)
    store.request_approval("waiting", None, expires_in=timedelta(minutes=5))
    store.request_approval("running", "draw", expires_in=timedelta(minutes=5))
    store.request_approval("fresh", None, expires_in=timedelta(hours=5))

    assert store.expire_approvals() == []
    later = utcnow() + timedelta(minutes=10)
    assert store.expire_approvals(now=later) == ["running", "waiting"]

    waiting = store.get_task("waiting")
    assert waiting.status is TaskStatus.EXPIRED
    assert waiting.error == "approval expired"
    assert_utc(waiting.finished_at)
    assert store.get_task("running").status is TaskStatus.RUNNING  # only parked tasks expire
    assert store.get_task("fresh").status is TaskStatus.AWAITING_APPROVAL
    assert store.approvals("waiting")[0].status is ApprovalStatus.EXPIRED
    assert store.approvals("running")[0].status is ApprovalStatus.EXPIRED
    assert store.approvals("fresh")[0].status is ApprovalStatus.PENDING
    assert store.expire_approvals(now=later) == []


# Side-effect ledger --------------------------------------------------------------------


def test_side_effect_ledger(store: Store) -> None:
    key = "t1:deliver:1"
    assert store.effect(key) is None
    started = EffectRecord(key=key, status="started", receipt=None)
    assert store.effect_started(key, task_id="t1", step_id="deliver", tool="deliver") == started
    assert store.effect(key) == started
    # idempotent, and says what is recorded
    assert store.effect_started(key, task_id="t1", step_id="deliver", tool="deliver") == started
    assert store.effects("t1") == [EffectRecord(key=key, status="started", receipt=None)]

    store.effect_done(key, {"receipt": "r-1", "ids": [1, 2]})
    done = EffectRecord(key=key, status="done", receipt={"receipt": "r-1", "ids": [1, 2]})
    assert store.effect(key) == done
    # starting again after it is done does not forget that it is done, and says so
    assert store.effect_started(key, task_id="t1", step_id="deliver", tool="deliver") == done
    assert store.effect(key) == done

    store.effect_started("t1:other", task_id="t1", step_id="other", tool="deliver")
    store.effect_started("t2:deliver", task_id="t2", step_id="deliver", tool="deliver")
    assert {e.key for e in store.effects("t1")} == {key, "t1:other"}
    assert [e.key for e in store.effects("t2")] == ["t2:deliver"]


# Races ---------------------------------------------------------------------------------


def run_concurrently(funcs: list[Callable[[], T]]) -> tuple[list[T], list[BaseException]]:
    """Start every function at the same moment in its own thread; collect results and errors."""
    barrier = threading.Barrier(len(funcs))
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(f: Callable[[], T]) -> None:
        try:
            barrier.wait(timeout=10)
            value = f()
        except BaseException as exc:  # collected for the test to inspect
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(value)

    threads = [threading.Thread(target=run, args=(f,)) for f in funcs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results, errors


RACES = 25


def test_concurrent_effect_started_is_idempotent(
    store: Store, backend: str, request: pytest.FixtureRequest
) -> None:
    for i in range(RACES):
        key = f"race:{i}"
        _, errors = run_concurrently(
            [lambda k=key: store.effect_started(k, task_id="race", step_id="s", tool="deliver")] * 2
        )
        assert errors == []
    assert len(store.effects("race")) == RACES


def test_concurrent_request_approval_gives_one_approval(
    store: Store, backend: str, request: pytest.FixtureRequest
) -> None:
    for i in range(RACES):
        store.create_task(PLAN, task_id=f"r{i}")
        results, errors = run_concurrently(
            [lambda t=f"r{i}": store.request_approval(t, None, expires_in=timedelta(hours=1))] * 2
        )
        assert errors == []
        assert len({a.approval_id for a in results}) == 1
        assert len(store.approvals(f"r{i}")) == 1


def test_concurrent_registration_of_one_id_is_a_conflict(
    store: Store, backend: str, request: pytest.FixtureRequest
) -> None:
    for i in range(RACES):
        results, errors = run_concurrently(
            [
                lambda pid=pid, ex=f"ex{i}": store.register_executor(
                    ex, kind="worker", host="h", pid=pid, lease=LEASE
                )
                for pid in (1, 2)
            ]
        )
        assert len(results) == 1
        assert [type(e) for e in errors] == [ConflictError]


def test_two_claimers_racing_take_each_executor_exactly_once(store: Store) -> None:
    dead = {f"dead-{i:02d}" for i in range(12)}
    for ex in sorted(dead):
        store.register_executor(ex, kind="worker", host="h", pid=1, lease=LEASE)
        if ex.endswith(("0", "2", "4")):
            store.stop_executor(ex)  # some stopped, the others silent
    time.sleep(0.05)
    lease = timedelta(milliseconds=20)
    for _ in range(3):
        results, errors = run_concurrently(
            [
                lambda: ("a", store.claim_dead_executors(me="claimer-a", lease=lease)),
                lambda: ("b", store.claim_dead_executors(me="claimer-b", lease=lease)),
            ]
        )
        assert errors == []
        by = dict(results)
        a, b = set(by["a"]), set(by["b"])
        assert a | b == dead
        assert a & b == set()
        assert len(by["a"]) == len(a)  # no executor twice in one answer
        assert len(by["b"]) == len(b)
        # make them claimable again for the next round
        for ex in sorted(dead):
            store.register_executor(ex, kind="worker", host="h", pid=1, lease=LEASE)
            store.stop_executor(ex)


# Executors -----------------------------------------------------------------------------


def test_register_executors_and_heartbeat(store: Store) -> None:
    store.register_executor("ex-1", kind="worker", host="h1", pid=101, lease=LEASE)
    store.register_executor("ex-2", kind="api", host="h2", pid=102, lease=LEASE)
    live = {e.executor_id: e for e in store.live_executors(lease=LEASE)}
    assert set(live) == {"ex-1", "ex-2"}
    first = live["ex-1"]
    assert (first.kind, first.host, first.pid, first.status) == ("worker", "h1", 101, "alive")
    assert_utc(first.started_at, first.heartbeat_at)
    assert [e.executor_id for e in store.live_executors(lease=LEASE, kinds=["api"])] == ["ex-2"]

    # an id in use by another live process is refused; the same process may register again
    with pytest.raises(ConflictError) as exc:
        store.register_executor("ex-1", kind="worker", host="h9", pid=909, lease=LEASE)
    assert "executor id 'ex-1' is in use by pid 101 on 'h1'" in str(exc.value)
    store.register_executor("ex-1", kind="worker", host="h1", pid=101, lease=LEASE)

    time.sleep(0.01)
    assert store.heartbeat("ex-1") is True
    beat = {e.executor_id: e for e in store.live_executors(lease=LEASE)}["ex-1"]
    assert beat.heartbeat_at > first.heartbeat_at
    assert (beat.host, beat.pid) == ("h1", 101)

    # with a lease shorter than its silence, the old owner counts as dead: the id is free
    time.sleep(0.05)
    store.register_executor(
        "ex-1", kind="worker", host="h3", pid=303, lease=timedelta(milliseconds=10)
    )
    beat = {e.executor_id: e for e in store.live_executors(lease=LEASE)}["ex-1"]
    assert (beat.host, beat.pid) == ("h3", 303)

    # a stopped executor does not come back with a heartbeat, and its id is free
    store.stop_executor("ex-2")
    assert store.heartbeat("ex-2") is False
    assert [e.executor_id for e in store.live_executors(lease=LEASE)] == ["ex-1"]
    store.register_executor("ex-2", kind="api", host="h4", pid=404, lease=LEASE)
    assert {e.executor_id for e in store.live_executors(lease=LEASE)} == {"ex-1", "ex-2"}


def test_claim_dead_executors(engine: sa.Engine, store: Store) -> None:
    store.register_executor("silent", kind="worker", host="h", pid=1, lease=LEASE)
    store.register_executor("me", kind="worker", host="h", pid=2, lease=LEASE)
    store.register_executor("stopped", kind="worker", host="h", pid=3, lease=LEASE)
    store.stop_executor("stopped")
    time.sleep(0.2)
    store.register_executor("healthy", kind="worker", host="h", pid=4, lease=LEASE)
    lease = timedelta(milliseconds=100)

    claimed = store.claim_dead_executors(me="me", lease=lease)
    # "me" is silent too, but never claims itself; "healthy" beat within the lease
    assert sorted(claimed) == ["silent", "stopped"]
    assert store.claim_dead_executors(me="me", lease=lease) == []
    assert store.claim_dead_executors(me="other", lease=lease) == ["me"]
    assert [e.executor_id for e in store.live_executors(lease=LEASE)] == ["healthy"]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT executor_id, status, recovered_by, recovered_at FROM executors "
                "WHERE recovered_by IS NOT NULL ORDER BY executor_id"
            )
        ).all()
    assert [tuple(r[:3]) for r in rows] == [
        ("me", "recovered", "other"),
        ("silent", "recovered", "me"),
        ("stopped", "recovered", "me"),
    ]
    assert all(r[3] is not None for r in rows)

    # a claimed executor may register again, as a new life
    store.register_executor("silent", kind="worker", host="h", pid=5, lease=LEASE)
    assert {e.executor_id for e in store.live_executors(lease=LEASE)} == {"healthy", "silent"}


def test_postgres_timestamps_are_utc_whatever_the_session_time_zone(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGTZ", "America/New_York")  # libpq sets the session time zone from it
    eng = create_engine("postgresql+psycopg://" + postgres_url.split("://", 1)[1])
    try:
        upgrade(eng)
        store = Store(eng)
        store.create_task(PLAN, task_id="tz")
        approval = store.request_approval("tz", None, expires_in=timedelta(hours=1))
        task = store.get_task("tz")
        [stored] = store.approvals("tz")
        assert stored.requested_at == approval.requested_at  # same instant either way
        assert_utc(task.created_at, task.updated_at, stored.requested_at, stored.expires_at)
    finally:
        eng.dispose()
