"""The planning evaluation: scoring rules, a scripted strong model, and the ratchet on the
embedded model (fails when the pass rate or precision drops below the recorded figures)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from intelligent_orchestrator.domain.models import ExecutionPlan
from intelligent_orchestrator.llm import ModelGateway
from intelligent_orchestrator.orchestrator import default_registry
from intelligent_orchestrator.planning.evaluate import Case, load_cases, run_eval, score
from intelligent_orchestrator.planning.planner import Planner
from intelligent_orchestrator.settings import ModelConfig, Settings
from tests.support.models import scripted
from tests.support.procs import LOCAL_EXTRA, NO_LOCAL_EXTRA, shared_model_path

EVALS = Path(__file__).parents[2] / "evals" / "planning"
BASELINE = json.loads((EVALS / "baseline.json").read_text())
CASE_FILES = sorted(EVALS.glob("*.yaml"))


def plan_of(*steps: tuple[str, str, list[str]], clarification: str | None = None) -> ExecutionPlan:
    return ExecutionPlan.model_validate(
        {
            "steps": [{"id": i, "tool": t, "depends_on": d} for i, t, d in steps],
            "clarification": clarification,
        }
    )


def test_scoring_rules() -> None:
    case = Case(
        id="c", category="x", request="r", required=["write_content", "send_email"],
        allowed=["qa_review"], order=[("write_content", "send_email")],
    )  # fmt: skip
    good = plan_of(
        ("w", "write_content", []), ("q", "qa_review", ["w"]), ("s", "send_email", ["q"])
    )
    assert score(case, good, None, 5).passed
    assert score(case, good, None, 5).precision == 1.0
    unordered = plan_of(("w", "write_content", []), ("s", "send_email", []))
    assert score(case, unordered, None, 5).problems == [
        "ordering write_content → send_email does not hold"
    ]
    extra = plan_of(
        ("w", "write_content", []),
        ("s", "send_email", ["w"]),
        ("p", "publish_post", ["w"]),
        ("c", "chart", []),
    )
    result = score(case, extra, None, 5)
    assert result.forbidden_used == ["publish_post"]
    assert result.precision == 0.5
    assert not score(case, plan_of(clarification="?"), None, 5).passed
    clarify = Case(id="v", category="ambiguous", request="Help", clarify=True)
    assert score(clarify, plan_of(clarification="What?"), None, 5).passed
    assert not score(clarify, good, None, 5).passed


def test_case_files_are_well_formed() -> None:
    tools = {s.tool_id for s in default_registry(Settings()).specs()}
    total = 0
    for path in CASE_FILES:
        for case in load_cases(path):
            total += 1
            named = set(case.required) | set(case.allowed) | set(case.forbidden)
            named |= {t for pair in case.order for t in pair}
            assert named <= tools, (case.id, named - tools)
            assert case.clarify or case.required, case.id
    assert total >= 40


def strong_model_answer(prompt: str) -> dict:
    """A scripted strong model: slots for the first call; for the whole-DAG call, the draft
    plan it is shown, which the planner must then validate like any model's plan."""
    if "A draft plan:" in prompt:
        return {"steps": json.loads(prompt.split("A draft plan:\n", 1)[1]), "reasoning": []}
    request = prompt.removeprefix("Request: ")
    m = re.search(r"\babout (.+?)(?:[,.;]|$)", request)
    return {
        "intent": request[:100],
        "topic": (m.group(1) if m else request)[:60],
        "audience": "",
        "tone": "",
    }


def make_planner(settings: Settings, models: dict | None = None) -> Planner:
    shutil.copytree(EVALS / "workspace", settings.workspace)
    return Planner(
        default_registry(settings),
        ModelGateway(settings, models=models),
        workspace=settings.workspace,
    )


@pytest.mark.parametrize("cases_file", CASE_FILES, ids=lambda p: p.stem)
async def test_eval_with_a_scripted_strong_model(tmp_path: Path, cases_file: Path) -> None:
    settings = Settings(
        home=tmp_path,
        models={
            "strong": ModelConfig(
                provider="openai", base_url="http://127.0.0.1:9/v1", plans_whole_dag=True
            )
        },
    )
    script = scripted(strong_model_answer)
    planner = make_planner(settings, {"strong": script.model})
    report = await run_eval(lambda r: planner.plan(r, model="strong"), load_cases(cases_file))
    recorded = BASELINE["scripted"][cases_file.stem]
    failures = [(r["id"], r["problems"]) for r in report["results"] if not r["passed"]]
    assert report["forbidden_tool_uses"] == 0, failures
    assert report["pass_rate"] >= recorded["pass_rate"], failures
    assert report["precision"] >= recorded["precision"], failures


@pytest.mark.slow
@pytest.mark.skipif(not LOCAL_EXTRA, reason=NO_LOCAL_EXTRA)
@pytest.mark.parametrize("cases_file", CASE_FILES, ids=lambda p: p.stem)
async def test_eval_ratchet_on_the_embedded_model(tmp_path: Path, cases_file: Path) -> None:
    settings = Settings(home=tmp_path, local_model_path=shared_model_path())
    planner = make_planner(settings)
    report = await run_eval(planner.plan, load_cases(cases_file))
    recorded = BASELINE["local"][cases_file.stem]
    failures = [(r["id"], r["problems"]) for r in report["results"] if not r["passed"]]
    assert report["forbidden_tool_uses"] == 0, failures
    assert report["pass_rate"] >= recorded["pass_rate"], failures
    assert report["precision"] >= recorded["precision"], failures
