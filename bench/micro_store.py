"""Per-call cost of the store operations a step makes, single-threaded, on a fresh database.

    python bench/micro_store.py [--backend sqlite|postgres] [--n 200]

A step of our engine writes ``Store.write_steps`` twice (RUNNING, then the outcome); a task
also reads ``get_task`` several times. This times those calls in a tight loop (no event loop,
no threads) next to a raw driver transaction doing one INSERT, to separate the database's own
cost from the ORM/session cost.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(
    0, str(HERE.parent / "src")
)  # this repo's engine, whatever the editable install points at

from _common import create_pg_database, drop_pg_database, pg_url  # noqa: E402

from intelligent_orchestrator.domain.models import ExecutionPlan, StepStatus  # noqa: E402
from intelligent_orchestrator.storage import StepUpdate, Store, create_engine, upgrade, utcnow  # noqa: E402


def run(url: str, n: int) -> dict[str, float]:
    engine = create_engine(url)
    try:
        upgrade(engine)
        store = Store(engine)
        plan = ExecutionPlan.model_validate(
            {"name": "micro", "steps": [{"id": "a", "tool": "bench_noop"}]}
        )
        task = store.create_task(plan)

        def steps(first: int, count: int) -> None:
            for i in range(first, first + count):
                store.write_steps(
                    task.task_id,
                    [
                        StepUpdate(
                            step_id=f"s{i}",
                            tool="bench_noop",
                            status=StepStatus.RUNNING,
                            attempt=1,
                            inputs={"value": i},
                            started_at=utcnow(),
                        )
                    ],
                )
                store.write_steps(
                    task.task_id,
                    [
                        StepUpdate(
                            step_id=f"s{i}",
                            tool="bench_noop",
                            status=StepStatus.SUCCEEDED,
                            attempt=1,
                            output={"value": i},
                            finished_at=utcnow(),
                            duration_ms=0.1,
                        )
                    ],
                )

        steps(0, 20)  # warm-up
        t0 = time.perf_counter()
        steps(100, n)
        write = (time.perf_counter() - t0) / (2 * n)
        t0 = time.perf_counter()
        for _ in range(n):
            store.get_task(task.task_id)
        read = (time.perf_counter() - t0) / n
    finally:
        engine.dispose()
    return {"write_steps_ms": write * 1e3, "get_task_ms": read * 1e3}


def raw_sqlite(path: str, n: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, a TEXT)")
    t0 = time.perf_counter()
    for _ in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO raw (a) VALUES (?)", ('{"value": 1}',))
        conn.execute("COMMIT")
    conn.close()
    return (time.perf_counter() - t0) / n * 1e3


def raw_postgres(url: str, n: int) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE raw (id serial PRIMARY KEY, a text)")
        t0 = time.perf_counter()
        for _ in range(n):
            conn.execute("INSERT INTO raw (a) VALUES (%s)", ('{"value": 1}',))
        return (time.perf_counter() - t0) / n * 1e3


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--n", type=int, default=200)
    args = p.parse_args()
    if args.backend == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="bench-micro-"))
        out = run(f"sqlite:///{folder / 'orchestrator.sqlite'}", args.n)
        try:
            out["raw_insert_txn_ms"] = raw_sqlite(str(folder / "raw.sqlite"), args.n)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        db = create_pg_database()
        try:
            url = pg_url(db)
            out = run("postgresql+psycopg://" + url.split("://", 1)[1], args.n)
            out["raw_insert_txn_ms"] = raw_postgres(url, args.n)
        finally:
            drop_pg_database(db)
    print(f"{args.backend}: " + ", ".join(f"{k} {v:.3f}" for k, v in out.items()))


if __name__ == "__main__":
    main()
