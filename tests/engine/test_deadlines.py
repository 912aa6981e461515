"""Step timeouts on shared timers: they behave as asyncio.timeout, with fewer timers."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from intelligent_orchestrator.engine.deadlines import Deadlines


async def guarded(deadlines: Deadlines, timeout: float, work: float) -> str:
    """Sleep ``work`` seconds under a deadline of ``timeout``; say how it ended."""
    try:
        await deadlines.within(timeout, asyncio.sleep(work))
    except TimeoutError:
        return "timeout"
    return "done"


def scheduled(loop: asyncio.AbstractEventLoop) -> int:
    return sum(1 for h in getattr(loop, "_scheduled", []) if not h.cancelled())


async def test_a_step_past_its_deadline_times_out_and_one_within_it_does_not() -> None:
    d = Deadlines()
    assert await guarded(d, 0.05, 5) == "timeout"
    assert await guarded(d, 5, 0.01) == "done"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # our cancel request was withdrawn


async def test_steps_started_together_share_one_timer() -> None:
    d = Deadlines()
    loop = asyncio.get_running_loop()
    before = scheduled(loop)
    started = asyncio.Event()

    async def step() -> str:
        task = d.arm(600)
        started.set()
        try:
            await asyncio.sleep(0.05)
        finally:
            d.disarm(task, None)
        return "done"

    steps = [asyncio.create_task(step()) for _ in range(50)]
    await started.wait()
    await asyncio.sleep(0)
    # fifty sleeps and one deadline (asyncio.timeout: fifty deadlines)
    assert scheduled(loop) - before == 51
    assert await asyncio.gather(*steps) == ["done"] * 50
    assert scheduled(loop) == before  # the shared timer went with its last step
    assert not d._timers
    assert not d._armed


async def test_deadlines_of_a_group_all_fire() -> None:
    d = Deadlines()
    results = await asyncio.gather(*(guarded(d, 0.05, 5) for _ in range(10)))
    assert results == ["timeout"] * 10


async def test_a_cancel_from_elsewhere_is_not_a_timeout() -> None:
    d = Deadlines()
    t = asyncio.create_task(guarded(d, 600, 5))
    await asyncio.sleep(0.01)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t


async def test_a_cancel_from_elsewhere_at_the_deadline_still_cancels() -> None:
    # Both the deadline and the task's owner cancel: the owner's cancellation wins, as with
    # asyncio.timeout (the step does not report a timeout and carry on).
    d = Deadlines()
    t = asyncio.create_task(guarded(d, 0.001, 5))
    await asyncio.sleep(0)  # armed

    def both() -> None:
        d._expire(next(iter(d._timers)))
        t.cancel()

    asyncio.get_running_loop().call_soon(both)
    with pytest.raises(asyncio.CancelledError):
        await t


async def test_a_tool_that_swallows_the_cancellation_leaves_no_cancel_request() -> None:
    d = Deadlines()

    async def stubborn() -> int:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(5)  # a tool that ignores cancellation and returns
        return asyncio.current_task().cancelling()  # type: ignore[union-attr]

    t = asyncio.create_task(d.within(0.02, stubborn()))
    assert await t == 1  # cancelled once, by the deadline
    assert t.cancelling() == 0  # and the request was withdrawn on disarm


async def test_arming_twice_or_outside_a_task_is_refused() -> None:
    d = Deadlines()
    task = d.arm(1)
    with pytest.raises(RuntimeError, match="armed already"):
        d.arm(1)
    d.disarm(task, None)

    def outside() -> None:
        d.arm(1)

    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def call() -> None:
        try:
            outside()
        except RuntimeError as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)

    loop.call_soon(call)
    with pytest.raises(RuntimeError, match="from a task"):
        await fut


async def test_an_infinite_timeout_never_fires() -> None:
    d = Deadlines()
    assert await guarded(d, float("inf"), 0.01) == "done"
    assert not d._timers
