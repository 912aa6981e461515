"""Our engine through the public facade: Orchestrator.submit / approve (a DBOS workflow per task, or per group started together)."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import time
from pathlib import Path
from typing import Any

from _common import (
    BATCH_IN_FLIGHT,
    BATCH_STEPS,
    BATCH_WORKFLOWS,
    CHAIN_STEPS,
    FANOUT_SLEEP,
    MIB,
    PARK_IN_FLIGHT,
    PARK_RESUME,
    UNEVEN_CRITICAL_PATH,
    Node,
    RssSampler,
    chain,
    fanout,
    uneven,
)
from bench_tools import bench_registry

from intelligent_orchestrator.domain.models import ExecutionPlan
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import EngineSettings, Settings, ToolSettings

DONE = ("succeeded", "failed", "rejected", "cancelled", "expired", "awaiting_approval")


def make_settings(home: Path, database_url: str | None) -> Settings:
    return Settings(
        home=home,
        database_url=database_url,
        engine=EngineSettings(task_concurrency=64, global_concurrency=256, worker_concurrency=1000),
        tools=ToolSettings(load_entry_points=False),
    )


def plan_of(nodes: list[Node], name: str) -> ExecutionPlan:
    steps: list[dict[str, Any]] = []
    for n in nodes:
        if n.sleep:
            step: dict[str, Any] = {
                "id": n.id,
                "tool": "bench_sleep",
                "inputs": {"seconds": n.sleep},
            }
        else:
            step = {"id": n.id, "tool": "bench_noop", "inputs": {"value": 1}}
        if n.deps:
            step["depends_on"] = list(n.deps)
        steps.append(step)
    return ExecutionPlan.model_validate({"name": name, "steps": steps})


def park_plan() -> ExecutionPlan:
    return ExecutionPlan.model_validate(
        {
            "name": "park",
            "steps": [{"id": "send", "tool": "bench_send", "inputs": {"message": "hello"}}],
        }
    )


class Watcher:
    """Tells when tasks finish or park, with ONE cheap status query per poll for all waiters.

    (``Orchestrator.wait`` polls every 0.2 s by default and reads every step row per poll: too
    coarse for a 50 ms makespan and too heavy for 100 waiters.) On SQLite it reads through its
    own plain autocommit connection: the store's engine opens every transaction, reads included,
    with BEGIN IMMEDIATE, so polling through it would take the write lock and stall the engine's
    writers (see README, "Findings"). On Postgres too, so that a poll is one round trip instead of
    the pooled engine's pre-ping + BEGIN + SELECT + ROLLBACK."""

    def __init__(self, orch: Orchestrator, *, interval: float) -> None:
        self.interval = interval
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self._wake = asyncio.Event()
        self._sqlite: sqlite3.Connection | None = None
        self._pg: Any = None
        url = orch.settings.app_database_url
        if url.startswith("sqlite"):
            self._sqlite = sqlite3.connect(
                url.split("///", 1)[1], isolation_level=None, check_same_thread=False
            )
        else:  # one plain autocommit connection: one round trip per poll (no pool pre-ping, BEGIN, ROLLBACK)
            import psycopg

            self._pg = psycopg.connect(orch.settings.database_url or "", autocommit=True)
        self._task = asyncio.create_task(self._loop(), name="bench-watcher")

    def _poll(self, ids: list[str]) -> list[tuple[str, str]]:
        marks = ",".join("?" * len(ids))
        sql = f"SELECT task_id, status FROM tasks WHERE task_id IN ({marks})"
        if self._sqlite is not None:
            return [(r[0], r[1]) for r in self._sqlite.execute(sql, ids)]
        return [(r[0], r[1]) for r in self._pg.execute(sql.replace("?", "%s"), ids)]

    async def _loop(self) -> None:
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            ids = list(self._waiting)
            for tid, status in await asyncio.to_thread(self._poll, ids):
                if status in DONE:
                    fut = self._waiting.pop(tid, None)
                    if fut is not None and not fut.done():
                        fut.set_result(status)
            await asyncio.sleep(self.interval)

    async def wait(self, task_id: str) -> str:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[task_id] = fut
        self._wake.set()
        return await fut

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pg is not None:
            self._pg.close()


async def _open(home: Path, database_url: str | None) -> Orchestrator:
    orch = Orchestrator(make_settings(home, database_url), registry=bench_registry())
    await orch.start_engine(kind="bench", listen=False)
    return orch


async def _run_one(orch: Orchestrator, watcher: Watcher, plan: ExecutionPlan) -> tuple[float, str]:
    t0 = time.perf_counter()
    task = await orch.submit(plan, run_here=True)
    status = await watcher.wait(task.task_id)
    return time.perf_counter() - t0, status


async def _warm_up(orch: Orchestrator, watcher: Watcher) -> None:
    # Same as the LangGraph side: one tiny 2-step run first (pools, thread pool, code paths).
    _, status = await _run_one(orch, watcher, plan_of(chain(2), "warm-up"))
    assert status == "succeeded", status


async def single(shape: str, home: Path, database_url: str | None) -> dict[str, Any]:
    """(a) chain, (b) fan-out, (c) uneven: one timed task, submit → finished."""
    orch = await _open(home, database_url)
    watcher = Watcher(orch, interval=0.002)
    try:
        await _warm_up(orch, watcher)
        if shape == "chain":
            nodes = chain(CHAIN_STEPS)
        elif shape == "fanout":
            nodes = fanout()
        else:
            nodes = uneven()
        plan = plan_of(nodes, shape)
        elapsed, status = await _run_one(orch, watcher, plan)
        if status != "succeeded":
            raise RuntimeError(f"{shape} task ended {status}")
    finally:
        await watcher.close()
        await orch.close()
    out: dict[str, Any] = {"seconds": elapsed, "status": status}
    if shape == "chain":
        out["us_per_step"] = elapsed / CHAIN_STEPS * 1e6
    elif shape == "fanout":
        out["ratio"] = elapsed / FANOUT_SLEEP
    else:
        out["ratio"] = elapsed / UNEVEN_CRITICAL_PATH
    return out


async def batch(
    home: Path,
    database_url: str | None,
    *,
    workflows: int = BATCH_WORKFLOWS,
    in_flight: int = BATCH_IN_FLIGHT,
) -> dict[str, Any]:
    """(d) 1,000 five-step chains, at most ``in_flight`` submitted and unfinished at a time."""
    orch = await _open(home, database_url)
    watcher = Watcher(orch, interval=0.005)
    plan = plan_of(chain(BATCH_STEPS), "batch")
    statuses: list[str] = []
    try:
        await _warm_up(orch, watcher)
        gc.collect()
        with RssSampler() as rss:
            baseline = rss.now()
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(workflows):
                queue.put_nowait(i)

            async def worker() -> None:
                while True:
                    try:
                        queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    task = await orch.submit(plan, run_here=True)
                    statuses.append(await watcher.wait(task.task_id))

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(in_flight)))
            elapsed = time.perf_counter() - t0
    finally:
        await watcher.close()
        await orch.close()
    bad = [s for s in statuses if s != "succeeded"]
    if bad or len(statuses) != workflows:
        raise RuntimeError(f"batch: {len(statuses)} finished, {len(bad)} not succeeded")
    return {
        "workflows": workflows,
        "in_flight": in_flight,
        "seconds": elapsed,
        "workflows_per_s": workflows / elapsed,
        "peak_rss_mib": rss.peak / MIB,
        "baseline_rss_mib": baseline / MIB,
    }


async def park(
    home: Path,
    database_url: str | None,
    *,
    total: int,
    checkpoints: list[int],
    resume_batches: int,
    park_budget_s: float,
) -> dict[str, Any]:
    """(e) park ``total`` tasks (one side-effect step each), RSS at checkpoints, then time
    approve+resume of ``resume_batches`` batches of PARK_RESUME tasks to completion."""
    orch = await _open(home, database_url)
    watcher = Watcher(orch, interval=0.01)
    plan = park_plan()
    parked: list[str] = []
    rss_at: dict[int, float] = {}
    objects_at: dict[int, int] = {}  # Python objects tracked by gc: grows if tasks stay in memory
    resumes: list[float] = []
    stopped_early = False
    try:
        # warm-up: park one task and resume it (not counted)
        task = await orch.submit(plan, run_here=True)
        assert await watcher.wait(task.task_id) == "awaiting_approval"
        await orch.approve(task.task_id, run_here=True)
        assert await watcher.wait(task.task_id) == "succeeded"
        gc.collect()
        with RssSampler(interval=0.05) as rss:
            baseline = rss.now()
            t_start = time.perf_counter()
            next_id = 0
            for target in checkpoints:
                if target > total:
                    break

                async def worker(limit: int = target) -> None:
                    nonlocal next_id
                    while next_id < limit:
                        next_id += 1
                        t = await orch.submit(plan, run_here=True)
                        status = await watcher.wait(t.task_id)
                        if status != "awaiting_approval":
                            raise RuntimeError(f"task ended {status}, expected to park")
                        parked.append(t.task_id)

                await asyncio.gather(*(worker() for _ in range(PARK_IN_FLIGHT)))
                gc.collect()
                await asyncio.sleep(0.5)  # let finished workflows' bookkeeping settle
                rss_at[len(parked)] = rss.now() / MIB
                objects_at[len(parked)] = len(gc.get_objects())
                if time.perf_counter() - t_start > park_budget_s:
                    stopped_early = len(parked) < total
                    break
            park_seconds = time.perf_counter() - t_start
            park_peak = rss.peak

            # approve + resume batches of PARK_RESUME, to completion
            for b in range(resume_batches):
                ids = parked[b * PARK_RESUME : (b + 1) * PARK_RESUME]
                if len(ids) < PARK_RESUME:
                    break
                t0 = time.perf_counter()

                async def approve_and_finish(tid: str) -> str:
                    await orch.approve(tid, decided_by="bench", run_here=True)
                    return await watcher.wait(tid)

                results = await asyncio.gather(*(approve_and_finish(t) for t in ids))
                resumes.append(time.perf_counter() - t0)
                if any(r != "succeeded" for r in results):
                    raise RuntimeError(f"resume: {sorted(set(results))}")
            gc.collect()
            after_resume = rss.now() / MIB
    finally:
        await watcher.close()
        await orch.close()
    counts = sorted(rss_at)
    first, last = counts[0], counts[-1]
    slope = (rss_at[last] - rss_at[first]) * 1024 / max(1, last - first)  # KiB per parked task
    return {
        "parked": len(parked),
        "park_seconds": park_seconds,
        "park_per_s": len(parked) / park_seconds,
        "stopped_early": stopped_early,
        "baseline_rss_mib": baseline / MIB,
        "rss_mib_at": {str(k): v for k, v in rss_at.items()},
        "gc_objects_at": {str(k): v for k, v in objects_at.items()},
        "park_peak_rss_mib": park_peak / MIB,
        "kib_per_parked_task": slope,
        "rss_after_resumes_mib": after_resume,
        "resume_seconds": resumes,
    }
