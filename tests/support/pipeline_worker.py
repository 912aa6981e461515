"""An ``orchestrator worker`` whose models are scripted: crash drills of the request pipeline.

Usage: python tests/support/pipeline_worker.py EXECUTOR_ID
Settings come from the environment like the real worker's (ORCHESTRATOR_*). The model is a
:class:`DrillModel`: the same answers in every worker, for every task.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import load_settings
from tests.support.models import scripted
from tests.support.pipeline import DrillModel


async def main(executor_id: str) -> None:
    model = DrillModel()
    model.script = scripted(model)
    orch = Orchestrator(load_settings(), models={"paid": model.script.model})
    await orch.start_engine(kind="worker", listen=True, executor_id=executor_id)
    print(f"worker {executor_id} ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await orch.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
