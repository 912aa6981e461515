"""Group commit of step transitions for every task a process runs.

A task's scheduler hands its transitions to the journal and goes on; the journal writes
everything handed to it since its last commit in one transaction, in the order it was handed
over. So the durable state is always a prefix of what happened (a step's completion is never
durable before an earlier one of the same task), one commit serves every task running at the
time, and a pure step does not wait for the previous step's commit to start. Whoever needs
durability waits for it: a side effect waits until the outputs it acts on are durable, and a
task reports its end in the same commit as its last steps (see ``DagRun``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ..storage import StepBatch, Store

logger = logging.getLogger(__name__)

_LINGER_TURNS = 4


class StepJournal:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[StepBatch, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.commits = 0  # transactions written (for the bench and tests)

    def write(self, batch: StepBatch) -> asyncio.Future[bool]:
        """Queue ``batch`` for the next commit; the future resolves once it is durable (with
        whether its task update applied) or fails with the database's error."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        if self._flusher is None or self._flusher.done():
            # A flusher of an earlier event loop (closed with its loop) left nothing to await.
            self._pending = [(b, f) for b, f in self._pending if f.get_loop() is loop]
            self._flusher = loop.create_task(self._flush(), name="step-journal")
        self._pending.append((batch, fut))
        return fut

    async def _flush(self) -> None:
        while True:
            # Linger a few turns of the event loop (microseconds): the steps just launched take
            # their first stride before the commit's thread competes for the GIL, and what they
            # and other tasks hand over meanwhile (a step that ends at once, a task's end) joins
            # this commit instead of waiting for the next one.
            for _ in range(_LINGER_TURNS):
                await asyncio.sleep(0)
            if not self._pending:
                return
            items, self._pending = self._pending, []
            await self._commit(items)

    async def _commit(self, items: list[tuple[StepBatch, asyncio.Future[bool]]]) -> None:
        batches = [b for b, _ in items]
        try:
            applied = await asyncio.to_thread(self.store.write_batch, batches)
        except Exception as exc:
            if len(items) == 1:
                _fail(items, exc)
                return
            # One task's bad write must not fail the others: write each on its own.
            logger.warning("group commit of %d batches failed; writing them one by one", len(items))
            for item in items:
                await self._commit([item])
            return
        self.commits += 1
        for (_, fut), ok in zip(items, applied, strict=True):
            if not fut.done():
                fut.set_result(ok)

    async def drain(self) -> None:
        """Wait until everything queued so far is written."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)


def _fail(items: Sequence[tuple[StepBatch, asyncio.Future[bool]]], exc: BaseException) -> None:
    logger.error("step journal write failed: %s", exc)
    for _, fut in items:
        if not fut.done():
            fut.set_exception(exc)
