"""Where a (b) fan-out's time goes, and a paired comparison of two versions of the engine.

    python bench/fanout_phases.py [--runs 60] [--backend sqlite|postgres]
    python bench/fanout_phases.py --against 0444a48 [--runs 60]

Runs the (b) shape (a no-op source, 50 × 50 ms sleeps, a no-op join) again and again in one
worker process per version, and splits each run's makespan into phases:

- ``first``: from ``submit`` until the first sleeper starts (validation, the task's row and
  DBOS workflow, the source step, preparing the launches);
- ``spread``: from the first sleeper's start to the last one's;
- ``late``: how much later than 50 ms after its start the last sleeper's end was handled (the
  timer's millisecond rounding, and the work of handling the other ends first);
- ``tail``: from the last end until ``settled`` returns (the join, the final commit, telling
  the waiter);
- ``front_cpu``: the event loop thread's CPU time from ``submit`` to the last sleeper's start.

With ``--against REF`` a second worker runs the engine of git revision REF (checked out in a
temporary worktree) and the two take turns run by run (A, B, B, A, ...), so both see the same
moments of a VM whose speed drifts within minutes; the paired differences are the figure to
read (medians of separate runs moved by ±0.02 from one minute to the next on the 2-core VM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHASES = ["ratio", "first", "spread", "late", "tail", "front_cpu"]


async def _worker(database_url: str | None) -> None:
    """Run one fan-out per line read from stdin; print its phases as JSON."""
    import _ours
    from _common import FANOUT_SLEEP, fanout

    orch = await _ours._open(Path(tempfile.mkdtemp(prefix="bench-phases-")), database_url)
    starts: list[float] = []
    ends: list[float] = []
    cpu: list[float] = []
    tool = orch.registry.get("bench_sleep")
    impl = tool.implementation

    async def timed(args: dict[str, object], ctx: object) -> object:
        starts.append(time.perf_counter())
        cpu.append(time.thread_time())
        result = await impl(args, ctx)  # type: ignore[arg-type]
        ends.append(time.perf_counter())
        return result

    object.__setattr__(tool, "implementation", timed)  # (a frozen dataclass)
    loop = asyncio.get_running_loop()
    try:
        await _ours._warm_up(orch)
        plan = _ours.plan_of(fanout(), "fanout")
        print("ready", flush=True)
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            starts.clear()
            ends.clear()
            cpu.clear()
            t0, c0 = time.perf_counter(), time.thread_time()
            await _ours._run_one(orch, plan)
            t1 = time.perf_counter()
            phases = [
                (t1 - t0) / FANOUT_SLEEP,
                (starts[0] - t0) * 1e3,
                (starts[-1] - starts[0]) * 1e3,
                (max(ends) - starts[-1] - FANOUT_SLEEP) * 1e3,
                (t1 - max(ends)) * 1e3,
                (cpu[-1] - c0) * 1e3,
            ]
            print(json.dumps(phases), flush=True)
    finally:
        await orch.close()


def _spawn(src: Path, backend: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", "--src", str(src), "--backend", backend],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    while (line := proc.stdout.readline()) and line.strip() != "ready":
        pass
    if not line:
        raise SystemExit(f"the worker for {src} did not start (exit code {proc.wait()})")
    return proc


def _run(proc: subprocess.Popen[str]) -> list[float]:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def _report(name: str, rows: list[list[float]]) -> None:
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(
        f"{name:>8}: makespan/50 ms {med[0]:.3f} | first {med[1]:.2f} ms | spread {med[2]:.2f} "
        f"| late {med[3]:.2f} | tail {med[4]:.2f} | front cpu {med[5]:.2f} ms"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--against", help="a git revision to compare with (run by run)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--src", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        sys.path[:0] = [str(HERE), args.src]
        from _common import create_pg_database, pg_url

        url = pg_url(create_pg_database()) if args.backend == "postgres" else None
        asyncio.run(_worker(url))
        return

    versions = {"this": HERE.parent / "src"}
    worktree = None
    if args.against:
        worktree = Path(tempfile.mkdtemp(prefix="bench-against-")) / "tree"
        subprocess.run(
            [
                "git",
                "-C",
                str(HERE.parent),
                "worktree",
                "add",
                "--detach",
                "-f",
                str(worktree),
                args.against,
            ],
            check=True,
            capture_output=True,
        )
        versions = {args.against: worktree / "src", **versions}
    procs = {name: _spawn(src, args.backend) for name, src in versions.items()}
    rows: dict[str, list[list[float]]] = {name: [] for name in procs}
    try:
        names = list(procs)
        for i in range(args.runs):
            for name in names if i % 2 == 0 else reversed(names):
                rows[name].append(_run(procs[name]))
                time.sleep(0.03)
    finally:
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
            proc.wait(timeout=60)
        if worktree is not None:
            subprocess.run(
                ["git", "-C", str(HERE.parent), "worktree", "remove", "--force", str(worktree)],
                check=False,
                capture_output=True,
            )
            shutil.rmtree(worktree.parent, ignore_errors=True)
    print(f"# {args.runs} runs per version on {args.backend}, medians")
    for name, r in rows.items():
        _report(name, r)
    if args.against:
        base, new = rows[args.against], rows["this"]
        diffs = [
            [b - a for a, b in zip(ra, rb, strict=True)] for ra, rb in zip(base, new, strict=True)
        ]
        med = [statistics.median(col) for col in zip(*diffs, strict=True)]
        print(
            "this − "
            + args.against
            + " (paired medians): "
            + " | ".join(f"{n} {m:+.3f}" for n, m in zip(PHASES, med, strict=True))
        )


if __name__ == "__main__":
    main()
