"""Our engine through the public facade: Orchestrator.submit / approve (a DBOS workflow per task, or per group started together)."""

from __future__ import annotations

import asyncio
import gc
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

from intelligent_orchestrator.domain.models import ExecutionPlan, TaskStatus
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import EngineSettings, Settings, ToolSettings


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


async def _open(home: Path, database_url: str | None) -> Orchestrator:
    orch = Orchestrator(make_settings(home, database_url), registry=bench_registry())
    await orch.start_engine(kind="bench", listen=False)
    return orch


async def _run_one(orch: Orchestrator, plan: ExecutionPlan) -> tuple[float, str]:
    """Submit and wait as a user of the library would: ``settled`` reads the task once, then
    is told when the run's end is durable."""
    t0 = time.perf_counter()
    task = await orch.submit(plan, run_here=True)
    status = await orch.settled(task.task_id)
    return time.perf_counter() - t0, status.value


async def _warm_up(orch: Orchestrator) -> None:
    # Same as the LangGraph side: one tiny 2-step run first (pools, thread pool, code paths).
    _, status = await _run_one(orch, plan_of(chain(2), "warm-up"))
    assert status == "succeeded", status


async def single(shape: str, home: Path, database_url: str | None) -> dict[str, Any]:
    """(a) chain, (b) fan-out, (c) uneven: one timed task, submit → finished."""
    orch = await _open(home, database_url)
    try:
        await _warm_up(orch)
        if shape == "chain":
            nodes = chain(CHAIN_STEPS)
        elif shape == "fanout":
            nodes = fanout()
        else:
            nodes = uneven()
        plan = plan_of(nodes, shape)
        elapsed, status = await _run_one(orch, plan)
        if status != "succeeded":
            raise RuntimeError(f"{shape} task ended {status}")
    finally:
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
    plan = plan_of(chain(BATCH_STEPS), "batch")
    statuses: list[str] = []
    try:
        await _warm_up(orch)
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
                    statuses.append((await orch.settled(task.task_id)).value)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(in_flight)))
            elapsed = time.perf_counter() - t0
    finally:
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
    plan = park_plan()
    parked: list[str] = []
    rss_at: dict[int, float] = {}
    objects_at: dict[int, int] = {}  # Python objects tracked by gc: grows if tasks stay in memory
    resumes: list[float] = []
    stopped_early = False
    try:
        # warm-up: park one task and resume it (not counted)
        task = await orch.submit(plan, run_here=True)
        assert await orch.settled(task.task_id) is TaskStatus.AWAITING_APPROVAL
        await orch.approve(task.task_id, run_here=True)
        assert await orch.settled(task.task_id) is TaskStatus.SUCCEEDED
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
                        status = (await orch.settled(t.task_id)).value
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
                    return (await orch.settled(tid)).value

                results = await asyncio.gather(*(approve_and_finish(t) for t in ids))
                resumes.append(time.perf_counter() - t0)
                if any(r != "succeeded" for r in results):
                    raise RuntimeError(f"resume: {sorted(set(results))}")
            gc.collect()
            after_resume = rss.now() / MIB
    finally:
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
