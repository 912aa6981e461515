"""What each task costs in DBOS's own transactions, next to our journal's commit.

    python bench/dbos_costs.py [--backend sqlite|postgres] [--tasks 40]

Runs one-step tasks one after another (each alone: 20 ms of quiet between them) through the
public facade and times, per task, DBOS's ``_init_workflow`` (the workflow's row, before the
run starts), DBOS's ``update_workflow_outcome`` (after it ends) and our ``Store.write_batch``
(the task's row, its step and its end: one commit). Medians over all but the first 5 tasks.
These are the per-task costs that bound (d) and (e): see README, "Findings".
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import _ours  # noqa: E402
import dbos._core as dbos_core  # noqa: E402
import dbos._sys_db as dbos_sys_db  # noqa: E402
from _common import chain, create_pg_database, drop_pg_database, pg_url  # noqa: E402

from intelligent_orchestrator.storage import Store  # noqa: E402

_times: dict[str, list[float]] = {}


def _timed(owner: Any, attr: str, label: str) -> None:
    inner = getattr(owner, attr)

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            _times.setdefault(label, []).append(time.perf_counter() - t0)

    setattr(owner, attr, wrapper)


async def _run(backend: str, tasks: int) -> None:
    db = create_pg_database() if backend == "postgres" else None
    try:
        orch = await _ours._open(  # pyright: ignore[reportPrivateUsage]
            Path(tempfile.mkdtemp(prefix="dbos-costs-")), pg_url(db) if db else None
        )
        plan = _ours.plan_of(chain(1), "one")
        try:
            for _ in range(tasks):
                task = await orch.submit(plan, run_here=True)
                await orch.settled(task.task_id)
                await asyncio.sleep(0.02)
        finally:
            await orch.close()
    finally:
        if db:
            drop_pg_database(db)


def main() -> None:
    ap = argparse.ArgumentParser(description="Per-task costs of DBOS and of our journal commit.")
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--tasks", type=int, default=40)
    args = ap.parse_args()
    _timed(dbos_core, "_init_workflow", "DBOS init_workflow")
    _timed(dbos_sys_db.SystemDatabase, "update_workflow_outcome", "DBOS workflow outcome")
    _timed(Store, "write_batch", "our journal commit")
    asyncio.run(_run(args.backend, args.tasks))
    print(f"{args.backend}, {args.tasks} one-step tasks, each alone (medians, first 5 left out):")
    for label, values in _times.items():
        kept = values[5:] or values
        print(f"  {label:24s} {statistics.median(kept) * 1e3:6.2f} ms  (min {min(kept) * 1e3:.2f})")


if __name__ == "__main__":
    main()
