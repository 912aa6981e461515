"""``orchestrator eval planning``: score the planner on the cases in evals/planning/."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import ConfigError
from ..llm import ModelGateway
from ..planning.evaluate import CaseResult, load_cases, run_eval
from ..planning.planner import Planner
from ..settings import load_settings
from .output import emit_json, stderr, stdout

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else.")]
eval_app = typer.Typer(no_args_is_help=True, help="Evaluations.")

DEFAULT_CASES = Path("evals/planning/cases.yaml")


@eval_app.command("planning")
def planning(
    json_: JsonOpt = False,
    model: Annotated[
        str | None, typer.Option("--model", help="A configured model (default: llm.planner).")
    ] = None,
    cases: Annotated[
        Path,
        typer.Option(
            "--cases", help="Cases file; its folder's workspace/ is what the planner sees."
        ),
    ] = DEFAULT_CASES,
) -> None:
    """Plan every case and score it: pass rate, precision, forbidden tools, latency."""
    from ..orchestrator import default_registry

    if not cases.is_file():
        raise ConfigError(
            f"no eval cases at {cases} (run from the repository root, or --cases)", setting="cases"
        )
    settings = load_settings()
    loaded = load_cases(cases)

    async def go() -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            workspace = Path(tmp) / "workspace"
            source = cases.parent / "workspace"
            if source.is_dir():
                shutil.copytree(source, workspace)
            else:
                workspace.mkdir()
            gateway = ModelGateway(settings)
            planner = Planner(default_registry(settings), gateway, workspace=workspace)
            name = model or settings.model_for("planner")
            await gateway.model(name)  # load the embedded model before timing anything

            def progress(r: CaseResult) -> None:
                if not json_:
                    mark = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
                    stderr.print(f"{mark} {r.id} ({r.latency_ms:.0f} ms) {'; '.join(r.problems)}")

            report = await run_eval(
                lambda request: planner.plan(request, model=model), loaded, on_result=progress
            )
            report["model"] = name
            return report

    report = asyncio.run(go())
    if json_:
        emit_json(report)
        return
    table = Table(title=f"planning eval — model {report['model']}", title_justify="left")
    for col in ("category", "cases", "passed"):
        table.add_column(col)
    for cat, row in report["by_category"].items():
        table.add_row(cat, str(row["cases"]), str(row["passed"]))
    stdout.print(table)
    stdout.print(
        f"pass rate {report['pass_rate']:.1%} ({report['passed']}/{report['cases']}), precision "
        f"{report['precision']}, forbidden tools {report['forbidden_tool_uses']}, latency p50 "
        f"{report['latency_ms_p50']} ms, p95 {report['latency_ms_p95']} ms"
    )
