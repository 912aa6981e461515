"""Profile our engine on one benchmark shape (all threads: the event loop and DBOS's pool).

    python bench/profile_engine.py chain [--backend sqlite|postgres] [--top 25] [--dump out.prof]
    python bench/profile_engine.py fanout
    python bench/profile_engine.py batch [--workflows 200]

cProfile hooks only the thread that enables it, and most of the engine's work runs in
``asyncio.to_thread`` workers, so a profiler is installed in every thread started after the
engine begins (``threading.setprofile``) and the per-thread stats are merged. Times are
cumulative wall time per function, summed over threads; idle waits (epoll, queue.get,
lock.acquire) are left out of the listing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(
    0, str(HERE.parent / "src")
)  # this repo's engine, whatever the editable install points at

import _ours  # noqa: E402
from _common import (  # noqa: E402
    BATCH_IN_FLIGHT,
    BATCH_STEPS,
    CHAIN_STEPS,
    FANOUT_WIDTH,
    chain,
    create_pg_database,
    drop_pg_database,
    engine_source,
    fanout,
    pg_url,
)

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _boot(frame: Any, event: str, arg: Any) -> None:
    # first event in a new thread: replace this hook by a real profiler for the thread
    p = cProfile.Profile()
    with _lock:
        _profiles.append(p)
    p.enable()


def _merged() -> pstats.Stats | None:
    stats: pstats.Stats | None = None
    for prof in list(_profiles):
        try:
            if stats is None:
                stats = pstats.Stats(prof)
            else:
                stats.add(prof)
        except TypeError:  # a thread that recorded nothing
            continue
    return stats


async def _scenario(
    kind: str, home: Path, url: str | None, workflows: int
) -> tuple[float, pstats.Stats | None]:
    threading.setprofile(_boot)
    main = cProfile.Profile()
    _profiles.append(main)
    orch = await _ours._open(home, url)
    try:
        await _ours._warm_up(orch)
        for p in _profiles:
            p.clear() if p is not main else None
        main.enable()
        t0 = time.perf_counter()
        if kind in ("chain", "fanout"):
            plan = _ours.plan_of(chain(CHAIN_STEPS) if kind == "chain" else fanout(), kind)
            task = await orch.submit(plan, run_here=True)
            assert (await orch.settled(task.task_id)).value == "succeeded"
        else:
            plan = _ours.plan_of(chain(BATCH_STEPS), "batch")
            remaining = list(range(workflows))

            async def worker() -> None:
                while remaining:
                    remaining.pop()
                    t = await orch.submit(plan, run_here=True)
                    assert (await orch.settled(t.task_id)).value == "succeeded"

            await asyncio.gather(*(worker() for _ in range(min(BATCH_IN_FLIGHT, workflows))))
        elapsed = time.perf_counter() - t0
        main.disable()
        stats = _merged()  # before shutdown, so the engine's teardown is not counted
    finally:
        threading.setprofile(None)
        await orch.close()
    return elapsed, stats


IDLE = (
    "{method 'poll' of 'select.epoll'",
    "{method 'acquire' of '_thread.lock'",
    "{method 'get' of '_queue.SimpleQueue'",
    "{built-in method time.sleep}",
    "threading.py",
    "concurrent/futures/thread.py",
    "selectors.py",
    "{method 'control' of 'select.kqueue'",
)


def report(stats: pstats.Stats, top: int) -> None:
    rows = []
    for func, (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        name = pstats.func_std_string(func)
        if (
            any(m in name for m in IDLE)
            or "asyncio/" in name
            or "_contextvars" in name
            or "<frozen" in name
        ):
            continue
        rows.append((ct, tt, nc, name))
    rows.sort(reverse=True)

    def show(title: str, pred: Any) -> None:
        print(f"\n## {title}: top {top} by cumulative time (summed over threads)")
        print(f"{'cum s':>8} {'own s':>8} {'calls':>8}  function")
        for ct, tt, nc, name in [r for r in rows if pred(r[3])][:top]:
            short = name.replace(str(Path(sys.prefix)), "").replace("/work/main/src/", "")
            short = short.split("site-packages/")[-1]
            print(f"{ct:8.3f} {tt:8.3f} {nc:8d}  {short}")

    show("our code (intelligent_orchestrator)", lambda n: "intelligent_orchestrator" in n)
    show("DBOS", lambda n: "/dbos/" in n)
    show("SQLAlchemy", lambda n: "/sqlalchemy/" in n)
    show("everything (no idle waits)", lambda n: True)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("kind", choices=["chain", "fanout", "batch"])
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--workflows", type=int, default=200)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--dump", help="also save the merged stats (pstats format)")
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    db = create_pg_database() if args.backend == "postgres" else None
    try:
        elapsed, stats = asyncio.run(
            _scenario(args.kind, home, pg_url(db) if db else None, args.workflows)
        )
    finally:
        if db:
            drop_pg_database(db)
        shutil.rmtree(home, ignore_errors=True)
    assert stats is not None
    n = {"chain": CHAIN_STEPS, "fanout": FANOUT_WIDTH + 2}.get(args.kind, args.workflows)
    unit = "workflows" if args.kind == "batch" else "steps"
    src = engine_source()
    print(
        f"# engine: {src['git_head']} (src sha {src['src_sha256']}, uncommitted: {src['uncommitted_src'] or 'none'})"
    )
    print(
        f"# {args.kind} on {args.backend}: {elapsed:.3f} s for {n} {unit} "
        f"({elapsed / n * 1e3:.2f} ms each, under the profiler); {len(_profiles)} threads profiled"
    )
    report(stats, args.top)
    if args.dump:
        stats.dump_stats(args.dump)


if __name__ == "__main__":
    main()
