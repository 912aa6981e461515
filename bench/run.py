"""Benchmark: our engine vs LangGraph on the same workflow shapes.

    python bench/run.py [--only a,b,c,d,e] [--repeat 5] [--json out.json] [--md out.md]

Every measurement runs on a fresh SQLite folder or a fresh Postgres database (created here,
dropped afterwards) in a worker process, LangGraph and ours interleaved within each repeat. The
workers import the engine from a copy of src/ taken when the run starts.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    BATCH_IN_FLIGHT,
    BATCH_WORKFLOWS,
    CHAIN_STEPS,
    FANOUT_WIDTH,
    PARK_IN_FLIGHT,
    PARK_RESUME,
    create_pg_database,
    drop_pg_database,
    engine_source,
    machine_info,
    median,
    pg_url,
    snapshot_engine,
    tree_hash,
)

# (scenario, impl, backend), in the order they run within one repeat: LG, ours, LG, ours…
CASES: dict[str, list[tuple[str, str]]] = {
    "a": [("lg", "sqlite"), ("ours", "sqlite"), ("lg", "postgres"), ("ours", "postgres")],
    "b": [("lg", "sqlite"), ("ours", "sqlite"), ("ours", "postgres")],
    "c": [("lg", "sqlite"), ("ours", "sqlite"), ("ours", "postgres")],
    "d": [("lg", "memory"), ("ours", "sqlite"), ("ours", "postgres")],
}


# Worker side (one measurement, in a worker process) -----------------------------------------
def init_worker(engine_root: str) -> None:
    """Import the engine from the run's snapshot, never from the live tree."""
    sys.path.insert(0, engine_root)


def measure(
    scenario: str, impl: str, backend: str, db: str, home: str, opts: dict[str, Any]
) -> dict[str, Any]:
    """Run one measurement in this (worker) process and return its figures."""
    result = _measure(scenario, impl, backend, db, home, opts)
    if impl == "ours":
        import intelligent_orchestrator

        result["_engine_src"] = str(Path(intelligent_orchestrator.__file__).parent)
    return result


def _measure(
    scenario: str, impl: str, backend: str, db: str, home: str, opts: dict[str, Any]
) -> dict[str, Any]:
    import asyncio
    import logging

    logging.basicConfig(level=logging.WARNING)
    url = pg_url(db) if backend == "postgres" else None
    h = Path(home)
    if impl == "lg":
        import _lg

        if scenario == "a":
            return _lg.chain_sqlite(h) if backend == "sqlite" else _lg.chain_postgres(url or "")
        if scenario in ("b", "c"):
            return asyncio.run(_lg.single_async("fanout" if scenario == "b" else "uneven", h))
        if scenario == "d":
            return asyncio.run(
                _lg.batch_memory(workflows=int(opts["batch"]), in_flight=int(opts["in_flight"]))
            )
        raise ValueError(f"no LangGraph case for {scenario}")
    import _ours

    if scenario in ("a", "b", "c"):
        shape = {"a": "chain", "b": "fanout", "c": "uneven"}[scenario]
        return asyncio.run(_ours.single(shape, h, url))
    if scenario == "d":
        return asyncio.run(
            _ours.batch(h, url, workflows=int(opts["batch"]), in_flight=int(opts["in_flight"]))
        )
    total = int(opts["park_total"])
    checkpoints = sorted(
        {c for c in (total // 10, total // 4, total // 2, 3 * total // 4, total) if c > 0}
    )
    return asyncio.run(
        _ours.park(
            h,
            url,
            total=total,
            checkpoints=checkpoints,
            resume_batches=int(opts["resume_batches"]),
            park_budget_s=float(opts["park_budget"]),
        )
    )


# Driver side ---------------------------------------------------------------------------------
class Workers:
    """Worker processes (spawned, so nothing is shared with the driver).

    (a)-(c) reuse one long-lived process per engine, so the ~5 s import of each engine is paid
    once; every measurement still gets a fresh database and, for ours, a fresh Orchestrator.
    (d) and (e) measure process RSS, so each runs in a new process of its own."""

    def __init__(self, engine_root: Path) -> None:
        self.engine_root = engine_root
        self._pools: dict[str, ProcessPoolExecutor] = {}

    def _pool(self, name: str) -> ProcessPoolExecutor:
        if name not in self._pools:
            self._pools[name] = ProcessPoolExecutor(
                max_workers=1,
                mp_context=mp.get_context("spawn"),
                initializer=init_worker,
                initargs=(str(self.engine_root),),
            )
        return self._pools[name]

    def run(
        self,
        scenario: str,
        impl: str,
        backend: str,
        *,
        timeout: float,
        opts: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        fresh = scenario in ("d", "e")
        name = f"fresh-{scenario}-{impl}-{backend}" if fresh else impl
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-{scenario}-{impl}-"))
        db = create_pg_database() if backend == "postgres" else "-"
        t0 = time.perf_counter()
        try:
            fut = self._pool(name).submit(
                measure, scenario, impl, backend, db, str(tmp / "home"), opts or {}
            )
            result: dict[str, Any] = fut.result(timeout=timeout)
            result["wall_s"] = time.perf_counter() - t0
            src = result.pop("_engine_src", None)
            if src is not None and not src.startswith(str(self.engine_root)):
                return {
                    "error": f"the worker imported the engine from {src}, not from the snapshot"
                }
            return result
        except TimeoutError:
            self._kill(name)
            return {"error": f"timed out after {timeout:.0f} s"}
        except Exception as exc:  # the measurement's own failure, or a dead worker
            self._kill(name)
            return {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            if fresh:
                self._kill(name)
            if backend == "postgres":
                drop_pg_database(db)
            shutil.rmtree(tmp, ignore_errors=True)

    def _kill(self, name: str) -> None:
        pool = self._pools.pop(name, None)
        if pool is None:
            return
        procs = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:  # only the worker processes this driver started
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=10)

    def close(self) -> None:
        for name in list(self._pools):
            self._kill(name)


def label(impl: str, backend: str) -> str:
    if impl == "lg":
        return {
            "sqlite": "LangGraph+SqliteSaver",
            "postgres": "LangGraph+PostgresSaver",
            "memory": "LangGraph+InMemorySaver",
        }[backend]
    return {"sqlite": "ours SQLite", "postgres": "ours Postgres"}[backend]


def collect(results: dict[str, list[dict[str, Any]]], key: str, field: str) -> list[float]:
    return [r[field] for r in results.get(key, []) if field in r]


def fmt_spread(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    if not values:
        return "n/a"
    m = median(values) * scale
    if len(values) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ({min(values) * scale:.{digits}f}–{max(values) * scale:.{digits}f})"


def build_table(
    results: dict[str, list[dict[str, Any]]], park: dict[str, dict[str, Any]]
) -> list[list[str]]:
    """Rows: figure, ours, LangGraph, target, verdict."""
    rows: list[list[str]] = []

    def key(s: str, i: str, b: str) -> str:
        return f"{s}:{i}:{b}"

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    if any(k.startswith("a:") for k in results):
        lg_s = collect(results, key("a", "lg", "sqlite"), "us_per_step")
        ours_s = collect(results, key("a", "ours", "sqlite"), "us_per_step")
        ok = (median(ours_s) <= median(lg_s)) if ours_s and lg_s else None
        rows.append(
            [
                f"(a) {CHAIN_STEPS}-step no-op chain, SQLite, µs/step",
                fmt_spread(ours_s),
                fmt_spread(lg_s) + " (SqliteSaver)",
                "ours ≤ LangGraph",
                verdict(ok),
            ]
        )
        lg_p = collect(results, key("a", "lg", "postgres"), "us_per_step")
        ours_p = collect(results, key("a", "ours", "postgres"), "us_per_step")
        ok = (median(ours_p) <= 3000) if ours_p else None
        rows.append(
            [
                f"(a) {CHAIN_STEPS}-step no-op chain, Postgres, µs/step",
                fmt_spread(ours_p),
                fmt_spread(lg_p) + " (PostgresSaver)",
                "ours ≤ 3000 µs",
                verdict(ok),
            ]
        )
    for s, what, target in (
        ("b", f"(b) fan-out 1→{FANOUT_WIDTH}×50 ms→join, makespan/50 ms", 1.10),
        ("c", "(c) uneven DAG, makespan/critical path 200 ms", 1.05),
    ):
        if not any(k.startswith(f"{s}:") for k in results):
            continue
        lg = collect(results, key(s, "lg", "sqlite"), "ratio")
        for backend in ("sqlite", "postgres"):
            ours = collect(results, key(s, "ours", backend), "ratio")
            ok = (median(ours) <= target) if ours else None
            rows.append(
                [
                    f"{what}, ours {backend}",
                    fmt_spread(ours, digits=2),
                    (fmt_spread(lg, digits=2) + " (AsyncSqliteSaver)")
                    if backend == "sqlite"
                    else "—",
                    f"≤ {target:.2f}",
                    verdict(ok),
                ]
            )
    if any(k.startswith("d:") for k in results):
        lg = collect(results, key("d", "lg", "memory"), "workflows_per_s")
        lg_rss = collect(results, key("d", "lg", "memory"), "peak_rss_mib")
        for backend in ("sqlite", "postgres"):
            ours = collect(results, key("d", "ours", backend), "workflows_per_s")
            rss = collect(results, key("d", "ours", backend), "peak_rss_mib")
            ok = (median(ours) >= median(lg)) if ours and lg else None
            first = next(
                (r for r in results.get(key("d", "ours", backend), []) if "workflows" in r), {}
            )
            n, inflight = (
                first.get("workflows", BATCH_WORKFLOWS),
                first.get("in_flight", BATCH_IN_FLIGHT),
            )
            rows.append(
                [
                    f"(d) {n:,}×5-step workflows, {inflight} in flight, ours {backend}: workflows/s",
                    fmt_spread(ours, digits=1),
                    fmt_spread(lg, digits=1) + " (InMemorySaver)",
                    "ours ≥ LangGraph",
                    verdict(ok),
                ]
            )
            ok = (median(rss) <= 200) if rss else None
            rows.append(
                [
                    f"(d) same, peak RSS MiB, ours {backend}",
                    fmt_spread(rss, digits=0),
                    fmt_spread(lg_rss, digits=0),
                    "ours ≤ 200 MiB",
                    verdict(ok),
                ]
            )
    for backend, r in park.items():
        if "error" in r:
            rows.append(
                [
                    f"(e) parked tasks, ours {backend}",
                    "ERROR: " + r["error"][:200],
                    "—",
                    "—",
                    "FAIL",
                ]
            )
            continue
        rss = r["rss_mib_at"]
        trend = ", ".join(f"{int(k):,}: {v:.0f}" for k, v in rss.items())
        rows.append(
            [
                f"(e) {r['parked']:,} parked, ours {backend}: RSS MiB (baseline {r['baseline_rss_mib']:.0f}; at N parked)",
                trend,
                "—",
                "flat: ≤ 1 KiB per extra parked task",
                f"{verdict(r['kib_per_parked_task'] <= 1.0)} ({r['kib_per_parked_task']:.2f} KiB/task)",
            ]
        )
        objs = r.get("gc_objects_at", {})
        if objs:
            rows.append(
                [
                    f"(e) Python objects (gc) at N parked, ours {backend}",
                    ", ".join(f"{int(k):,}: {v / 1000:.0f}k" for k, v in objs.items()),
                    "—",
                    "(reported)",
                    "—",
                ]
            )
        rows.append(
            [
                f"(e) parking time, ours {backend}",
                f"{r['park_seconds']:.1f} s ({r['park_per_s']:.0f} tasks/s, "
                f"{PARK_IN_FLIGHT} in flight){' — stopped early' if r['stopped_early'] else ''}",
                "—",
                "(reported)",
                "—",
            ]
        )
        res = r["resume_seconds"]
        ok = (median(res) <= 0.5) if res and backend == "postgres" else None
        rows.append(
            [
                f"(e) approve+resume {PARK_RESUME} to completion, ours {backend}, s",
                fmt_spread(res, digits=2),
                "—",
                "≤ 0.5 s (Postgres)" if backend == "postgres" else "(reported)",
                verdict(ok),
            ]
        )
    return rows


def render(rows: list[list[str]]) -> str:
    head = ["figure", "ours: median (min–max)", "LangGraph: median (min–max)", "target", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _drive(
    args: argparse.Namespace,
    only: list[str],
    workers: Workers,
    results: dict[str, list[dict[str, Any]]],
    park: dict[str, dict[str, Any]],
    errors: list[str],
) -> None:
    opts = {"batch": args.batch, "in_flight": args.in_flight}
    for rep in range(max(args.repeat, args.repeat_d)):
        for scenario in [s for s in "abcd" if s in only]:
            if rep >= (args.repeat_d if scenario == "d" else args.repeat):
                continue
            for impl, backend in CASES[scenario]:
                r = workers.run(scenario, impl, backend, timeout=900, opts=opts)
                key = f"{scenario}:{impl}:{backend}"
                results.setdefault(key, []).append(r)
                shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                print(f"[rep {rep + 1}/{args.repeat}] {key}: {shown}", flush=True)
                if "error" in r:
                    errors.append(f"{key} rep {rep + 1}: {r['error']}")
    if "e" in only:
        for backend, total in (("postgres", args.park), ("sqlite", args.park_sqlite)):
            if total <= 0:
                continue
            opts = {
                "park_total": total,
                "resume_batches": max(5, args.repeat),
                "park_budget": args.park_budget,
            }
            r = workers.run("e", "ours", backend, timeout=args.park_budget + 600, opts=opts)
            park[backend] = r
            print(f"(e) {backend}: {json.dumps(r)}", flush=True)
            if "error" in r:
                errors.append(f"e:ours:{backend}: {r['error']}")


def driver_main(args: argparse.Namespace) -> None:
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    info = machine_info()
    engine_root = snapshot_engine()
    info["engine"] = engine_source()
    info["engine"]["snapshot_sha256"] = tree_hash(engine_root / "intelligent_orchestrator")
    info["engine"]["measured_from"] = (
        "copy of this repo's src/intelligent_orchestrator taken at start"
    )
    print("machine:", json.dumps(info), flush=True)
    results: dict[str, list[dict[str, Any]]] = {}
    park: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    t_all = time.perf_counter()
    workers = Workers(engine_root)
    try:
        _drive(args, only, workers, results, park, errors)
    finally:
        workers.close()
        shutil.rmtree(engine_root, ignore_errors=True)
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    end = engine_source()
    if end["src_sha256"] != info["engine"]["src_sha256"]:
        info["engine"]["note"] = (
            "src/ changed during the run (now " + end["git_head"] + "); the figures are of "
            "the snapshot taken at start"
        )
    info["total_minutes"] = round((time.perf_counter() - t_all) / 60, 1)
    table = render(build_table(results, park))
    print()
    print(table)
    if errors:
        print("\nerrors:\n" + "\n".join(errors))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": info,
                    "repeat": args.repeat,
                    "results": results,
                    "park": park,
                    "errors": errors,
                },
                indent=2,
            )
        )
    if args.md:
        md = [
            f"# Benchmark results ({info['date']})",
            "",
            f"`python {' '.join(sys.argv)}` — median (min–max) of {args.repeat} repeat(s) "
            f"({args.repeat_d} for (d)); see bench/README.md for what each figure means.",
            "",
            table,
            "",
        ]
        if errors:
            md += ["Errors:", "", *[f"- {e}" for e in errors], ""]
        md += ["Machine:", "", "```", json.dumps(info, indent=2), "```", ""]
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text("\n".join(md))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", default="a,b,c,d,e", help="scenarios to run, e.g. a,b")
    p.add_argument(
        "--repeat", type=int, default=5, help="repeats per measurement (the median is reported)"
    )
    p.add_argument("--repeat-d", type=int, help="repeats for (d) only (default: --repeat)")
    p.add_argument("--batch", type=int, default=BATCH_WORKFLOWS, help="(d) workflows per run")
    p.add_argument(
        "--in-flight",
        type=int,
        default=BATCH_IN_FLIGHT,
        help="(d) workflows submitted and unfinished at once",
    )
    p.add_argument("--json", help="write every raw result here")
    p.add_argument("--md", help="write the table and machine info here (markdown)")
    p.add_argument(
        "--park", type=int, default=10000, help="(e) tasks to park on Postgres (0: skip)"
    )
    p.add_argument(
        "--park-sqlite", type=int, default=10000, help="(e) tasks to park on SQLite (0: skip)"
    )
    p.add_argument(
        "--park-budget",
        type=float,
        default=300.0,
        help="(e) stop parking at the next checkpoint past this many seconds",
    )
    args = p.parse_args()
    if args.repeat_d is None:
        args.repeat_d = args.repeat
    driver_main(args)


if __name__ == "__main__":
    main()
