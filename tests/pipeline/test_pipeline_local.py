"""Smoke test: the whole pipeline on the embedded model, as README command 1 runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intelligent_orchestrator.domain.models import ChannelVariant
from intelligent_orchestrator.formatting import variant_problems
from tests.support.procs import LOCAL_EXTRA, NO_LOCAL_EXTRA, cli, orchestrator_env, why

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not LOCAL_EXTRA, reason=NO_LOCAL_EXTRA)]

REQUEST = "Write a blog post about our spring sale with a LinkedIn teaser"


@pytest.mark.timeout(600)
def test_a_marketing_request_end_to_end_on_the_embedded_model(tmp_path: Path) -> None:
    # No refinement round: the 0.5B model's drafts vary from run to run, and each round costs
    # about two minutes on two cores (refinement is tested exactly with scripted models).
    env = orchestrator_env(tmp_path / "home", None, ORCHESTRATOR_QUALITY__MAX_RETRIES="0")
    ran = cli(env, "run", REQUEST, "--wait", "--json", timeout=900)
    assert ran.returncode in (0, 3), why(ran)  # done, or parked for the review
    result = json.loads(ran.stdout)
    task_id = result["task"]["task_id"]
    assert result["task"]["status"] == "awaiting_approval"  # no --auto-approve: a person decides
    review = result["review"]
    assert review["gate"] == f"@review:{review['round']}"
    assert [s["tool"] for s in result["task"]["plan"]["steps"]].count("write_content") == 2

    # every phase ran and was timed, and the record was written before the review
    phase_ms = result["task"]["plan"]["metadata"]["phase_ms"]
    assert {"plan", "discover"} <= set(phase_ms)

    assessment = review["assessment"]
    assert {a["deliverable"] for a in assessment["deliverables"]} == {"blog", "linkedin"}
    for one in assessment["deliverables"]:
        assert set(one["dimensions"]) == {"accuracy", "completeness", "coherence", "tone", "format"}
        assert all(0 <= v <= 1 for v in one["dimensions"].values())
    assert assessment["judge_model"] == "local" or assessment["judge_error"]

    variants = {v["channel"]: ChannelVariant.model_validate(v) for v in review["variants"]}
    assert set(variants) == {"blog", "linkedin"}
    for v in variants.values():
        assert variant_problems(v) == [], v.key  # every channel limit is met
        for path in v.artifacts:
            assert (tmp_path / "home" / "workspace" / path).stat().st_size > 0
    blog, linkedin = variants["blog"], variants["linkedin"]
    assert blog.html is not None
    assert "<h1>" in blog.html
    assert blog.title
    assert len(blog.title) <= 60
    assert blog.meta_description
    assert len(blog.meta_description) <= 155
    assert len(linkedin.text) <= 3000
    assert linkedin.text.splitlines()[0].strip()  # the hook

    shown = cli(env, "show", task_id, "--channel", "linkedin")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == linkedin.text.strip()

    approved = cli(env, "approve", task_id, "--json", timeout=300)
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["task"]["status"] == "succeeded"
    record = json.loads(cli(env, "show", task_id, "--json").stdout)
    assert record["task"]["phase"] == "done"
