"""Smoke tests on the real embedded model (the `local` extra): the bundle, a structured call,
every LLM tool producing a sane output, and `orchestrator models test local`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from intelligent_orchestrator.errors import ConfigError
from intelligent_orchestrator.llm import BoundLlm, CallScope, ModelGateway
from intelligent_orchestrator.llm import local as local_model
from intelligent_orchestrator.settings import Settings
from intelligent_orchestrator.tools.builtin import (
    extract,
    qa_review,
    research,
    seo_optimize,
    summarize,
    translate,
    write_content,
)
from intelligent_orchestrator.tools.spec import ToolContext
from tests.support.procs import LOCAL_EXTRA, NO_LOCAL_EXTRA, cli, orchestrator_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LOCAL_EXTRA, reason=NO_LOCAL_EXTRA),
]

SALE = """# Spring sale 2026

Our spring sale runs from March 20 to April 10. All garden furniture is 25% off, and
customers who spend over 200 EUR get free delivery.

# Returns

Items bought in the sale can be returned within 30 days.
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One home for the module, so the 491 MB model is assembled once."""
    h = tmp_path_factory.mktemp("local-model")
    (h / "workspace" / "knowledge").mkdir(parents=True)
    (h / "workspace" / "knowledge" / "spring.md").write_text(SALE)
    return h


@pytest.fixture
def ctx(home: Path) -> ToolContext:
    gateway = ModelGateway(Settings(home=home))
    return ToolContext(
        task_id="smoke",
        step_id="step",
        workspace=home / "workspace",
        idempotency_key="smoke:step",
        llm=BoundLlm(gateway, CallScope(task_id="smoke", step_id="step")),
    )


def test_the_bundle_is_assembled_verified_and_refused_when_wrong(home: Path) -> None:
    path = local_model.assemble_bundled_model(home / "models")
    assert path.stat().st_size > 400_000_000
    assert path.read_bytes()[:4] == b"GGUF"
    again = local_model.assemble_bundled_model(home / "models")  # stamp: no re-hash
    assert again == path
    stamp = path.with_suffix(".verified")
    recorded = stamp.read_text()
    stamp.write_text("")  # (a stamp cut short: read while written, or a full disk)
    assert local_model.assemble_bundled_model(home / "models") == path  # hashed again
    assert json.loads(stamp.read_text())["sha256"] == json.loads(recorded)["sha256"]
    with pytest.raises(ConfigError, match="checksum is wrong"):
        local_model.assemble_bundled_model(home / "other", expected_sha256="0" * 64)
    assert not list((home / "other").glob("*.gguf"))  # nothing half-written is left
    bogus = home / "not-a-model.gguf"
    bogus.write_text("hello")
    with pytest.raises(ConfigError, match="not a GGUF file"):
        local_model.check_gguf(bogus)


class Launch(BaseModel):
    product: str = Field(max_length=80)
    discount_percent: int = Field(ge=0, le=100)
    channels: list[str] = Field(max_length=3)


async def test_a_structured_call_returns_valid_data(home: Path) -> None:
    gateway = ModelGateway(Settings(home=home))
    out = await gateway.generate(
        Launch,
        prompt="We launch garden chairs at 25% off, announced by email and on LinkedIn.",
        instructions="Extract the product, the discount and the channels as JSON.",
        purpose="writer",
    )
    assert isinstance(out, Launch)
    assert out.discount_percent == 25
    assert 1 <= len(out.channels) <= 3


def test_one_gateway_serves_two_event_loops_at_once(home: Path) -> None:
    """The engine runs tasks on the application's event loop and on DBOS's: one gateway's
    calls from both at once each get an answer (with one HTTP client for both loops, the
    calls hung)."""
    gateway = ModelGateway(Settings(home=home))
    answers: list[str] = []
    errors: list[BaseException] = []

    async def three() -> None:
        out = await asyncio.gather(
            *(
                gateway.generate(
                    str,
                    prompt=f"Say the number {n} in words.",
                    instructions="Answer in one short line.",
                    purpose="writer",
                    max_tokens=8,
                )
                for n in range(3)
            ),
            return_exceptions=True,
        )
        errors.extend(o for o in out if isinstance(o, BaseException))
        answers.extend(o for o in out if isinstance(o, str))

    threads = [threading.Thread(target=asyncio.run, args=(three(),), daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "calls hung (an old version waited forever)"
    assert errors == []
    assert len(answers) == 6
    assert all(a.strip() for a in answers)


async def test_the_event_loop_keeps_running_while_the_model_loads(home: Path) -> None:
    """The server loads in a child process: in this one, ``xllamacpp.Server`` held the GIL
    for the whole load (2-3 s idle, 12 s on a loaded machine), and no heartbeat, request or
    step ran meanwhile."""
    local_model.stop_servers()  # (a server an earlier test started: load it again)
    gateway = ModelGateway(Settings(home=home))
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    t0 = time.perf_counter()
    model = await gateway.model("local")
    load = time.perf_counter() - t0
    ticker.cancel()
    # Both measured in this run: the longest pause of the loop against the load's time (in
    # this process, the pause was most of the load).
    assert max(gaps) < load / 4, (max(gaps), load)
    assert local_model.serving(model.base_url or "")
    [(info, _)] = local_model._servers.values()  # pyright: ignore[reportPrivateUsage]
    assert info.pid != os.getpid()


async def test_a_model_server_that_died_is_started_again(home: Path) -> None:
    gateway = ModelGateway(Settings(home=home))
    first = await gateway.model("local")
    [(info, child)] = local_model._servers.values()  # pyright: ignore[reportPrivateUsage]
    os.kill(info.pid, signal.SIGKILL)
    child.wait()
    assert not local_model.serving(first.base_url or "")
    out = await gateway.generate(
        str, prompt="Say hello.", instructions="One word.", purpose="writer", max_tokens=8
    )
    assert out.strip()
    [(again, _)] = local_model._servers.values()  # pyright: ignore[reportPrivateUsage]
    assert again.pid != info.pid
    assert local_model.serving((await gateway.model("local")).base_url or "")


def test_a_file_the_server_cannot_load_is_a_clear_error(home: Path) -> None:
    broken = home / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(64))  # passes check_gguf, llama.cpp refuses it
    with pytest.raises(ConfigError, match=r"did not start for .*broken\.gguf"):
        local_model.local_server(broken, context_size=512)
    assert broken not in local_model._servers  # pyright: ignore[reportPrivateUsage]


def test_a_server_process_that_dies_before_answering_is_reported_with_its_stderr() -> None:
    dies = "import sys; sys.stderr.write('out of memory\\n'); sys.exit(3)"
    child, said = local_model._spawn([sys.executable, "-c", dies], 60)  # pyright: ignore[reportPrivateUsage]
    assert said == {"error": "exit code 3: out of memory"}
    assert child.returncode == 3

    # Its output closes a moment before it can be reaped (here 0.3 s): still its exit, not a hang.
    slow = "import os, sys, time; sys.stderr.write('no memory\\n'); os.close(1); time.sleep(0.3); sys.exit(4)"
    _, said = local_model._spawn([sys.executable, "-c", slow], 60)  # pyright: ignore[reportPrivateUsage]
    assert said == {"error": "exit code 4: no memory"}
    cut = "import os, sys, time; sys.stdout.write('{\"ur'); sys.stdout.flush(); os.close(1); time.sleep(0.3)"
    _, said = local_model._spawn([sys.executable, "-c", cut], 60)  # pyright: ignore[reportPrivateUsage]
    assert said == {"error": 'exit code 0: {"ur'}

    silent, said = local_model._spawn([sys.executable, "-c", "import time; time.sleep(60)"], 0.5)  # pyright: ignore[reportPrivateUsage]
    assert said == {"error": "no answer after 0.5 s"}
    assert silent.returncode is not None  # killed, not left behind


async def run(tool: Any, ctx: ToolContext, **args: Any) -> dict[str, Any]:
    return await tool.invoke(args, ctx)


async def test_research_finds_and_summarises(ctx: ToolContext) -> None:
    out = await run(research, ctx, query="spring sale discount on garden furniture")
    assert out["findings"][0]["document"] == "knowledge/spring.md"
    assert len(out["summary"]) > 20


async def test_write_content_writes_a_post(ctx: ToolContext) -> None:
    out = await run(
        write_content,
        ctx,
        kind="social_post",
        brief="Announce 25% off garden furniture until April 10",
        length_words=60,
    )
    assert out["title"]
    assert out["word_count"] >= 10


async def test_summarize_is_shorter_than_its_source(ctx: ToolContext) -> None:
    out = await run(summarize, ctx, path="knowledge/spring.md", max_words=30)
    assert 3 <= out["word_count"] <= 31 < out["source_words"]


async def test_translate_changes_the_text(ctx: ToolContext) -> None:
    text = "Our spring sale starts on March 20."
    out = await run(translate, ctx, text=text, target_language="German")
    assert out["translation"]
    assert out["translation"] != text
    assert "20" in out["translation"]


async def test_extract_reads_the_discount(ctx: ToolContext) -> None:
    fields = {
        "type": "object",
        "properties": {"discount_percent": {"type": "number"}, "start_date": {"type": "string"}},
        "required": ["discount_percent"],
    }
    out = await run(extract, ctx, fields=fields, path="knowledge/spring.md")
    assert out["data"].get("discount_percent") == 25


async def test_qa_review_finds_the_banned_phrase(ctx: ToolContext) -> None:
    out = await run(
        qa_review,
        ctx,
        text="This is the best sale ever. Prices are low.",
        banned_phrases=["best sale ever"],
    )
    assert out["passed"] is False
    assert any(p["check"] == "banned_phrase" for p in out["problems"])


async def test_seo_respects_the_limits(ctx: ToolContext) -> None:
    out = await run(seo_optimize, ctx, text=SALE)
    assert 0 < len(out["title"]) <= 60
    assert 0 < len(out["meta_description"]) <= 155
    assert out["keywords"]


def test_models_test_local_reports_speed(home: Path) -> None:
    done = cli(orchestrator_env(home, None), "models", "test", "local", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["output"]["capital"]
    assert report["output_tokens"] > 0
    assert report["tokens_per_second"] > 0
