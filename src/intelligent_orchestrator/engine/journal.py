"""Group commit of step transitions for every task a process runs.

A task's scheduler hands its transitions to the journal and goes on; the journal writes
everything handed to it since its last commit in one transaction, in the order it was handed
over. So the durable state is always a prefix of what happened (a step's completion is never
durable before an earlier one of the same task), one commit serves every task running at the
time, and a pure step does not wait for the previous step's commit to start. Whoever needs
durability waits for it: a side effect waits until the outputs it acts on are durable, and a
task reports its end in the same commit as its last steps (see ``DagRun``).

A commit happens when someone waits for one (``hurry``, or a new task's row, which its
submitter awaits), or when the oldest write handed over is ``delay`` old. Transitions nobody
waits for (a pure step's start and end) so ride along with the next commit that is needed:
the fifty ends of a fan-out and the task's end are one commit, not three, and a crash loses
at most ``delay`` of pure work, which simply runs again.

A batch is written only while the executor whose run wrote it still holds the task: once
another executor has claimed it (this process was silent for a lease and taken for dead), the
task's writes are refused with :class:`TakenOverError` and its run stops (fencing).

Once a write of a task fails, the task's later writes are refused without being written, so
the prefix holds (the task's run fails; its next run starts again from what is durable). Each
event loop has its own lane of pending writes and its own flusher: DBOS runs queued and
recovered workflows on its own loop, next to the application's.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from ..domain.models import TaskStatus
from ..storage import (
    EffectRecord,
    EffectStart,
    NotHolderError,
    StepBatch,
    Store,
    Written,
    commit_outcome_unknown,
)
from .batching import Coalescer, linger

logger = logging.getLogger(__name__)

_LINGER_MIN = 4
_LINGER_MAX = 64
_LINGER_SECONDS = 0.001
DEFAULT_DELAY = 0.05


Item = tuple[StepBatch, "asyncio.Future[bool]"]


@dataclass(slots=True)
class _Lane:
    pending: list[Item] = field(default_factory=list)
    flusher: asyncio.Task[None] | None = None
    since: float = 0.0
    """Loop time the oldest pending write was handed over."""
    due: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the pending writes must be committed now (someone waits for them)."""
    eager: bool = False
    """Every write is due at once (the journal is being drained)."""


class JournalWriteError(RuntimeError):
    """A task's steps could not be recorded (this write, or an earlier one of the task)."""


class TakenOverError(JournalWriteError):
    """Another executor holds the task now: this process was silent for a lease and was taken
    for dead, and the task's run was recovered elsewhere. This run must stop; nothing it
    writes from here on is recorded."""


def taken_over(exc: NotHolderError) -> TakenOverError:
    """The error a run stops with when the store refused one of its writes to another holder's
    task (a warning: that is how a run taken for dead ends, not a fault here)."""
    logger.warning("%s; its run here stops", exc)
    return TakenOverError(str(exc))


def _refusal(exc: BaseException) -> JournalWriteError:
    """The error a write refused because of ``exc`` fails with (a new one per write)."""
    if isinstance(exc, TakenOverError):
        return TakenOverError(str(exc))
    return JournalWriteError(str(exc))


class StepJournal:
    def __init__(
        self,
        store: Store,
        *,
        delay: float = DEFAULT_DELAY,
        on_end: Callable[[str, TaskStatus], None] | None = None,
    ) -> None:
        self.store = store
        self.delay = delay
        self.on_end = on_end
        """Told when a commit has set a task's status to finished or parked."""
        self._lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lane] = (
            weakref.WeakKeyDictionary()
        )
        self._failed: dict[str, BaseException] = {}  # task id -> why its writes stopped
        # task id -> (what its writes wait for, the writes waiting)
        self._held: dict[str, tuple[asyncio.Future[None], list[Item]]] = {}
        self._effects: Coalescer[EffectStart, EffectRecord] = Coalescer(
            self._start_effects, name="effects-started"
        )

    async def effect_started(self, start: EffectStart) -> EffectRecord:
        """``Store.effect_started``, durable when this returns; effects about to happen
        together (the side-effect steps of many resumed tasks) share one transaction."""
        return await self._effects.submit(start)

    async def _start_effects(self, starts: list[EffectStart]) -> list[EffectRecord]:
        return await asyncio.to_thread(self.store.effects_started, starts)

    def begin(self, task_id: str) -> None:
        """A new run of ``task_id`` starts from what is durable: forget an earlier failure
        (unless the run is held: its hold has forgotten it, and a failed hold must stand)."""
        if task_id not in self._held:
            self._failed.pop(task_id, None)

    def hold(self, task_id: str, *, until: asyncio.Future[None]) -> None:
        """Keep ``task_id``'s writes out of every commit until ``until`` resolves, then queue
        them in order; if it fails, refuse them (and the task's later writes) with its error."""
        held: list[Item] = []
        self._failed.pop(task_id, None)  # a new run starts from what is durable
        self._held[task_id] = (until, held)

        def release(f: asyncio.Future[None]) -> None:
            if self._held.get(task_id, (None, None))[1] is held:
                del self._held[task_id]
            exc = (
                asyncio.CancelledError("the run's start was abandoned")
                if f.cancelled()
                else f.exception()
            )
            if exc is not None:
                self._fail(task_id, exc)  # and every later write of the run too
            for batch, fut in held:
                if exc is not None:
                    self._refuse(batch, fut, exc)
                else:
                    self._queue(batch, fut)

        until.add_done_callback(release)

    async def released(self, task_id: str) -> None:
        """Wait until ``task_id``'s hold (if any) is released; raise if it failed."""
        hold = self._held.get(task_id)
        if hold is not None:
            await asyncio.shield(hold[0])
            if self._held.get(task_id) is hold:
                # (Resolved already: its release is scheduled but has not run; let it queue
                # the held writes, so that a hurry() after this finds them.)
                await asyncio.sleep(0)
        if task_id in self._failed:
            raise _refusal(self._failed[task_id])

    def write(self, batch: StepBatch) -> asyncio.Future[bool]:
        """Queue ``batch`` for the next commit; the future resolves once it is durable (with
        whether its task update applied) or fails with the reason it was not written."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        hold = self._held.get(batch.task_id)
        if hold is not None:
            hold[1].append((batch, fut))
        else:
            self._queue(batch, fut)
        return fut

    def hurry(self) -> None:
        """Commit what this event loop's tasks handed over without waiting for ``delay``
        (the caller is about to wait for it to be durable)."""
        lane = self._lanes.get(asyncio.get_running_loop())
        if lane is not None and lane.pending:
            lane.due.set()

    def _queue(self, batch: StepBatch, fut: asyncio.Future[bool]) -> None:
        loop = fut.get_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            lane = self._lanes[loop] = _Lane()
        if not lane.pending:
            lane.since = loop.time()
        lane.pending.append((batch, fut))
        if batch.create is not None or lane.eager:
            lane.due.set()  # (a new task's submitter waits for its row)
        if lane.flusher is None or lane.flusher.done():
            lane.flusher = loop.create_task(self._flush(lane), name="step-journal")

    async def _flush(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not lane.pending:
                lane.due.clear()
                return
            if not lane.due.is_set():
                timer = loop.call_at(lane.since + self.delay, lane.due.set)
                try:
                    await lane.due.wait()
                finally:
                    timer.cancel()
            # Due: linger while the event loop has other work ready (a few turns at least, at
            # most _LINGER_MAX turns or about a millisecond): the steps just launched take
            # their first stride before the commit's thread competes for the GIL, and what
            # they and other tasks hand over meanwhile (a step that ends at once, a task's
            # end) joins this commit instead of waiting for the next one.
            await linger(
                loop,
                turns=_LINGER_MIN,
                busy_turns=_LINGER_MAX - _LINGER_MIN,
                busy_seconds=_LINGER_SECONDS,
            )
            items, lane.pending = lane.pending, []
            lane.due.clear()
            await self._commit(items)

    async def _commit(self, items: list[Item]) -> None:
        live = []
        for batch, fut in items:
            if batch.task_id in self._failed:
                self._refuse(batch, fut, self._failed[batch.task_id])
            else:
                live.append((batch, fut))
        if not live:
            return
        try:
            results = await asyncio.to_thread(self.store.write_batch, [b for b, _ in live])
        except Exception as exc:
            tasks: dict[str, list[Item]] = {}
            for item in live:
                tasks.setdefault(item[0].task_id, []).append(item)
            if len(tasks) == 1 or commit_outcome_unknown(exc):
                # (A commit lost with its connection may have been applied: writing again
                # could add a cost twice. Every task in it stops; their next runs re-read.)
                for batch, fut in live:
                    self._refuse(batch, fut, exc)
                return
            # One task's bad write must not fail the others: write each task's on its own.
            logger.warning("group commit of %d tasks failed; writing them one by one", len(tasks))
            for items in tasks.values():
                await self._commit(items)
            return
        for (batch, fut), written in zip(live, results, strict=True):
            if written is Written.NOT_OWNER:
                self._refuse(
                    batch,
                    fut,
                    TakenOverError(
                        f"task {batch.task_id} is held by another executor now (this one, "
                        f"{batch.executor_id}, was taken for dead); its run here stops"
                    ),
                )
            elif not fut.done():
                fut.set_result(written is Written.APPLIED)
        if self.on_end is None:
            return
        for (batch, _), written in zip(live, results, strict=True):
            ok = written is Written.APPLIED
            end = batch.task.status if ok and batch.task is not None else None
            if end is not None and end.settled:
                try:
                    self.on_end(batch.task_id, end)
                except Exception:  # (a waiter's trouble must not stop the journal)
                    logger.exception("telling the end of task %s failed", batch.task_id)

    def _refuse(self, batch: StepBatch, fut: asyncio.Future[bool], exc: BaseException) -> None:
        self._fail(batch.task_id, exc)
        if not fut.done():
            fut.set_exception(_refusal(exc))

    def _fail(self, task_id: str, exc: BaseException) -> None:
        if task_id not in self._failed:
            if isinstance(exc, TakenOverError):
                logger.warning("%s", exc)
            else:
                logger.error("could not record the steps of task %s: %s", task_id, exc)
            if len(self._failed) >= 10_000:  # runs that never came back: forget the oldest
                self._failed.pop(next(iter(self._failed)))
            self._failed[task_id] = exc

    async def drain(self) -> None:
        """Wait until everything this loop queued so far is written."""
        lane = self._lanes.get(asyncio.get_running_loop())
        if lane is None:
            return
        lane.eager = True  # (what is queued meanwhile is committed without the delay too)
        try:
            while lane.flusher is not None and not lane.flusher.done():
                self.hurry()
                await asyncio.shield(lane.flusher)
        finally:
            lane.eager = False
