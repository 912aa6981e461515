"""Slots: one limit for every event loop of the process (the application's and DBOS's)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from intelligent_orchestrator.concurrency import Slots


def _on_loops(*mains: Callable[[], Coroutine[Any, Any, None]]) -> list[BaseException]:
    """Run each coroutine function on its own event loop in its own thread, at once."""
    errors: list[BaseException] = []

    def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in mains]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return errors


def test_two_event_loops_share_the_limit() -> None:
    """Six holders on two loops, two slots: never more than two at once, and none is refused
    (an asyncio.Semaphore shared so raises 'is bound to a different event loop')."""
    slots = Slots(2)
    lock = threading.Lock()
    running = 0
    peak = 0
    done = 0

    async def hold() -> None:
        nonlocal running, peak, done
        async with slots:
            with lock:
                running += 1
                peak = max(peak, running)
            await asyncio.sleep(0.02)
            with lock:
                running -= 1
                done += 1

    async def main() -> None:
        for _ in range(3):
            await asyncio.gather(*(hold() for _ in range(3)))

    assert _on_loops(main, main) == []
    assert (peak, done) == (2, 18)
    assert (slots.free, slots.waiting) == (2, 0)


async def test_try_acquire_takes_a_free_slot_but_never_one_a_waiter_queues_for() -> None:
    slots = Slots(1)
    assert slots.try_acquire()
    assert not slots.try_acquire()  # none free
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # handed to the waiter (on its loop, at its next turn)...
    assert not slots.try_acquire()  # ...so not to whoever asks first
    await waiter
    slots.release()
    assert slots.try_acquire()
    assert (slots.free, slots.waiting) == (0, 0)


async def test_a_waiter_that_gives_up_takes_no_slot() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    assert slots.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    slots.release()
    assert (slots.free, slots.waiting) == (1, 0)


async def test_a_slot_handed_to_a_waiter_cancelled_meanwhile_is_passed_on() -> None:
    """Released to the oldest waiter, which is cancelled before it runs: the next one gets it."""
    slots = Slots(1)
    await slots.acquire()
    first = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # handed to `first`
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, timeout=1)  # it has the slot
    assert (slots.free, slots.waiting) == (0, 0)
    slots.release()
    assert slots.free == 1


def test_a_waiter_on_a_closed_loop_is_skipped() -> None:
    slots = Slots(1)
    gone = asyncio.new_event_loop()

    async def queue_and_leave() -> asyncio.Task[None]:
        await slots.acquire()
        waiter = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        return waiter

    waiter = gone.run_until_complete(queue_and_leave())
    gone.close()  # (its queued acquire never ran to the end)
    assert slots.waiting == 1
    slots.release()
    assert (slots.free, slots.waiting) == (1, 0)
    del waiter


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        Slots(0)
