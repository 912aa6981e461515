"""The request pipeline on the embedded model: wall time, time per phase, refinement.

    python bench/pipeline.py [N]     # the first N writing requests below (default all)

Each request runs once, one after another, in a fresh home on SQLite, through plan -> execute ->
assess -> (refine) -> format -> learn -> review (no approval: the run stops at the review). For
each it records the wall time, the time of every phase, how many refinement rounds ran, every
round's score, and whether the result passed or was escalated. A refinement "helped" when the
final round scores above round 0. Results: bench/results/pipeline.md and .json.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import Settings, ToolSettings

REQUESTS = [
    "Write a blog post about our spring sale with a LinkedIn teaser",
    "Summarize docs/contract.md in 40 words",
    "Draft a LinkedIn post announcing our new Berlin office, but don't post it yet",
    "Write a product description for our new ergonomic garden chair",
    "Create three tweets promoting our webinar on cash-flow planning",
    "Write a friendly email to customers announcing free delivery over 200 EUR",
    "Research garden furniture trends in our docs and write a newsletter with citations",
    "Write a blog post about our spring sale and a Spanish version of it",
]
CONTRACT = (
    "This agreement between Acme GmbH and Bolt Ltd covers the delivery of garden furniture. "
    "It runs 24 months from 1 March 2026, and either party may end it with three months' "
    "notice in writing.\n"
)
TRENDS = (
    "# Garden furniture trends 2026\n\nCustomers ask for weatherproof teak and recycled "
    "aluminium. Modular lounge sets sold 30% more than last year. Muted greens and sand tones "
    "replace grey.\n"
)
OUT = Path(__file__).parent / "results"


async def one(request: str, model_path: str | None) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    ws = home / "workspace"
    (ws / "docs").mkdir(parents=True)
    (ws / "knowledge").mkdir()
    (ws / "docs" / "contract.md").write_text(CONTRACT)
    (ws / "knowledge" / "trends.md").write_text(TRENDS)
    extra: dict[str, Any] = {"local_model_path": Path(model_path)} if model_path else {}
    settings = Settings(home=home, tools=ToolSettings(load_entry_points=False), **extra)
    orch = Orchestrator(settings)
    try:
        await orch.start_engine(kind="bench", listen=False)
        t0 = time.perf_counter()
        task, _ = await orch.process_request(request, "bench")
        await orch.wait(task.task_id, timeout=1800)
        wall = time.perf_counter() - t0
        record = await orch.execution_record(task.task_id)
        final = await orch.get_task(task.task_id)
    finally:
        await orch.close()
        shutil.rmtree(home, ignore_errors=True)
    scores = [q["score"] for q in record.quality] if record else []
    return {
        "request": request,
        "status": final.status.value,
        "wall_s": round(wall, 1),
        "phase_ms": record.phase_ms if record else {},
        "rounds": final.round,
        "scores": scores,
        "passed": bool(record and record.quality and record.quality[-1]["passed"]),
        "needs_human": final.needs_human,
        "refined_helped": len(scores) > 1 and scores[-1] > scores[0],
        "error": final.error,
    }


def main(n: int | None, model_path: str | None) -> None:
    rows = []
    for request in REQUESTS[:n]:
        # one event loop per request: DBOS shuts down the loop's executor when it stops
        row = asyncio.run(one(request, model_path))
        print(json.dumps(row), flush=True)
        rows.append(row)
    refined = [r for r in rows if r["rounds"] > 0]
    summary = {
        "requests": len(rows),
        "passed_first_time": sum(1 for r in rows if r["passed"] and r["rounds"] == 0),
        "refined": len(refined),
        "refinement_helped": sum(1 for r in refined if r["refined_helped"]),
        "refined_then_passed": sum(1 for r in refined if r["passed"]),
        "escalated": sum(1 for r in rows if r["needs_human"]),
        "wall_p50_s": statistics.median(r["wall_s"] for r in rows) if rows else None,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "pipeline.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    lines = [
        "# Request pipeline on the embedded model",
        "",
        "`python bench/pipeline.py` (2 cores, Qwen2.5-Coder-0.5B Q4, SQLite, one request at a time)",
        "",
        "| request | status | wall s | plan | execute | assess | refine | format | rounds | scores |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms = r["phase_ms"]

        def s(k: str, ms: dict[str, float] = ms) -> str:
            return f"{ms[k] / 1000:.1f}" if k in ms else "-"

        lines.append(
            f"| {r['request'][:60]} | {r['status']}{' (needs human)' if r['needs_human'] else ''}"
            f" | {r['wall_s']} | {s('plan')} | {s('execute')} | {s('assess')} | {s('refine')}"
            f" | {s('format')} | {r['rounds']} | {', '.join(f'{x:.2f}' for x in r['scores'])} |"
        )
    lines += ["", "Summary: " + json.dumps(summary)]
    (OUT / "pipeline.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else None
    main(count, None)
