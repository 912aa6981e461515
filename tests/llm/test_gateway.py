"""The model gateway with scripted models: output, repairs, retries, fallback, budget, records."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from intelligent_orchestrator.domain.models import LlmCall
from intelligent_orchestrator.errors import (
    BudgetExceededError,
    LlmError,
    LlmOutputError,
    LlmUnavailableError,
)
from intelligent_orchestrator.llm import CallScope, ModelGateway, TaskBudget
from intelligent_orchestrator.settings import LlmSettings, ModelConfig, Settings
from tests.support.models import Script, scripted


class City(BaseModel):
    city: str
    population_millions: float = Field(ge=0)


def settings_with(tmp_path: Path, **llm: object) -> Settings:
    return Settings(
        home=tmp_path / "home",
        models={
            "paid": ModelConfig(
                provider="openai",
                model="gpt-test",
                base_url="http://127.0.0.1:9/v1",
                input_price_per_million=2.0,
                output_price_per_million=10.0,
                max_retries=2,
                fallback="backup",
            ),
            "backup": ModelConfig(provider="openai", model="b", base_url="http://127.0.0.1:9/v1"),
        },
        llm=LlmSettings.model_validate({"default_model": "paid", **llm}),
    )


class Harness:
    def __init__(self, tmp_path: Path, scripts: dict[str, Script], **llm: object) -> None:
        self.calls: list[LlmCall] = []
        self.sleeps: list[float] = []

        async def sink(call: LlmCall) -> None:
            self.calls.append(call)

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.gateway = ModelGateway(
            settings_with(tmp_path, **llm),
            models={name: s.model for name, s in scripts.items()},
            sink=sink,
            sleep=sleep,
        )

    async def ask(self, **kw: object) -> City:
        return await self.gateway.generate(
            City,
            prompt="Largest city of Japan?",
            instructions="Answer in JSON.",
            purpose="writer",
            **kw,
        )


async def test_structured_output_is_validated_and_costed(tmp_path: Path) -> None:
    paid = scripted({"city": "Tokyo", "population_millions": 14})
    h = Harness(tmp_path, {"paid": paid})
    out = await h.ask(scope=CallScope(task_id="t1", step_id="s1"))
    assert out == City(city="Tokyo", population_millions=14)
    assert paid.prompts == ["Largest city of Japan?"]
    assert paid.instructions == ["Answer in JSON."]
    [call] = h.calls
    assert (call.model, call.purpose, call.task_id, call.step_id) == ("paid", "writer", "t1", "s1")
    assert call.input_tokens > 0
    assert call.output_tokens > 0
    assert call.cost == pytest.approx((call.input_tokens * 2 + call.output_tokens * 10) / 1e6)
    assert call.error is None


async def test_invalid_output_is_repaired_with_the_error_fed_back(tmp_path: Path) -> None:
    paid = scripted(
        {"city": "Tokyo", "population_millions": -3},
        {"city": "Tokyo", "population_millions": 14},
    )
    h = Harness(tmp_path, {"paid": paid})
    assert (await h.ask()).population_millions == 14
    assert len(paid.prompts) == 2
    assert "population_millions" in paid.prompts[1]
    assert "greater than or equal to 0" in paid.prompts[1]
    assert len(h.calls) == 1
    assert h.calls[0].error is None


@pytest.mark.parametrize("garbage", ["not json at all", '{"city": "Tokyo"', '{"town": 1}'])
async def test_output_still_invalid_after_repairs_is_a_typed_error(
    tmp_path: Path, garbage: str
) -> None:
    paid = scripted(garbage)
    h = Harness(tmp_path, {"paid": paid}, repair_attempts=2)
    with pytest.raises(LlmOutputError) as err:
        await h.ask()
    assert err.value.purpose == "writer"
    assert err.value.model == "paid"
    assert "City" in str(err.value)
    assert "2 repair attempt" in str(err.value)
    assert len(paid.prompts) == 3  # the first answer and two repairs
    assert h.calls[-1].error is not None
    assert "invalid output" in h.calls[-1].error


async def test_rate_limit_is_retried_with_backoff(tmp_path: Path) -> None:
    paid = scripted(
        ModelHTTPError(429, "gpt-test", body="slow down"),
        {"city": "Tokyo", "population_millions": 14},
    )
    h = Harness(tmp_path, {"paid": paid}, retry_backoff_seconds=0.5)
    assert (await h.ask()).city == "Tokyo"
    assert h.sleeps == [0.5]
    assert [c.error is not None for c in h.calls] == [True, False]
    assert "429" in (h.calls[0].error or "")


async def test_server_errors_exhaust_retries_then_fall_back(tmp_path: Path) -> None:
    paid = scripted(ModelHTTPError(503, "gpt-test", body="down"))
    backup = scripted({"city": "Tokyo", "population_millions": 14})
    h = Harness(tmp_path, {"paid": paid, "backup": backup}, retry_backoff_seconds=1.0)
    assert (await h.ask()).city == "Tokyo"
    assert len(paid.prompts) == 3  # max_retries=2
    assert h.sleeps == [1.0, 2.0]
    assert [c.model for c in h.calls] == ["paid", "paid", "paid", "backup"]


async def test_every_model_failing_is_one_clear_error(tmp_path: Path) -> None:
    down = ModelHTTPError(500, "x", body="boom")
    h = Harness(tmp_path, {"paid": scripted(down), "backup": scripted(down)})
    with pytest.raises(
        LlmUnavailableError, match=r"writer: no model answered \(tried paid, backup\)"
    ):
        await h.ask()
    assert len(h.calls) == 6


async def test_a_refused_request_is_not_retried(tmp_path: Path) -> None:
    paid = scripted(ModelHTTPError(401, "gpt-test", body="bad key"))
    backup = scripted({"city": "Tokyo", "population_millions": 14})
    h = Harness(tmp_path, {"paid": paid, "backup": backup})
    with pytest.raises(LlmError, match="refused"):
        await h.ask()
    assert len(paid.prompts) == 1
    assert backup.prompts == []


async def test_a_hanging_model_times_out_and_is_retried(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    settings.models["paid"].timeout_seconds = 0.05
    settings.models["paid"].max_retries = 1
    settings.models["paid"].fallback = None
    slow = scripted({"city": "Tokyo", "population_millions": 1}, delay=5)
    gateway = ModelGateway(settings, models={"paid": slow.model}, sleep=_no_sleep)
    with pytest.raises(LlmUnavailableError, match="timed out"):
        await gateway.generate(City, prompt="q", instructions="i", purpose="writer")
    assert len(slow.prompts) == 2


async def test_calls_to_the_embedded_model_wait_for_a_free_slot_outside_their_timeout(
    tmp_path: Path,
) -> None:
    """The embedded server decodes ``local_parallel`` requests at a time and queues the rest:
    five calls at once go two at a time, and none times out for the time it waited."""
    settings = Settings(
        home=tmp_path / "home", llm=LlmSettings(default_model="local", local_parallel=2)
    )
    settings.models["local"].timeout_seconds = 0.5
    settings.models["local"].max_retries = 0
    running = 0
    peak = 0

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.3)
        running -= 1
        return ModelResponse(parts=[TextPart('{"city": "Tokyo", "population_millions": 14}')])

    gateway = ModelGateway(settings, models={"local": FunctionModel(answer)})
    t0 = time.perf_counter()
    out = await asyncio.gather(
        *(gateway.generate(City, prompt="q", instructions="i", purpose="writer") for _ in range(5))
    )
    assert [c.city for c in out] == ["Tokyo"] * 5
    assert peak == 2
    assert time.perf_counter() - t0 >= 0.9  # three rounds of 0.3 s: longer than one timeout


async def test_a_model_is_built_once_per_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls that ask for a model while it is built wait for that build; another event loop
    (DBOS's, next to the application's) gets a model of its own: an HTTP client's connections
    belong to the loop that opened them."""
    gateway = ModelGateway(settings_with(tmp_path))
    builds: list[str] = []
    build = gateway._build

    def slow_build(name: str) -> object:
        builds.append(name)
        time.sleep(0.05)
        return build(name)

    monkeypatch.setattr(gateway, "_build", slow_build)
    here = await asyncio.gather(*(gateway.model("paid") for _ in range(5)))
    assert builds == ["paid"]
    assert all(m is here[0] for m in here)
    assert await gateway.model("paid") is here[0]
    there = await asyncio.to_thread(asyncio.run, gateway.model("paid"))
    assert there is not here[0]
    assert builds == ["paid", "paid"]


async def _no_sleep(_: float) -> None:
    return None


async def test_budget_refuses_calls_once_spent(tmp_path: Path) -> None:
    paid = scripted({"city": "Tokyo", "population_millions": 14})
    h = Harness(tmp_path, {"paid": paid})
    budget = TaskBudget(max_tokens=20)
    await h.ask(scope=CallScope(task_id="t", budget=budget))
    assert budget.tokens == h.calls[0].tokens > 20
    assert budget.over() is not None
    with pytest.raises(BudgetExceededError, match="budget of 20 tokens is spent"):
        await h.ask(scope=CallScope(task_id="t", budget=budget))
    assert len(paid.prompts) == 1  # the refused call never reached the model


async def test_purposes_pick_their_models(tmp_path: Path) -> None:
    paid = scripted("paid answer")
    backup = scripted("backup answer")
    h = Harness(tmp_path, {"paid": paid, "backup": backup}, judge="backup")
    text = await h.gateway.generate(str, prompt="p", instructions="i", purpose="judge")
    assert text == "backup answer"
    text = await h.gateway.generate(str, prompt="p", instructions="i", purpose="writer")
    assert text == "paid answer"


async def test_a_failing_sink_does_not_fail_the_call(tmp_path: Path) -> None:
    async def broken(_: LlmCall) -> None:
        raise RuntimeError("database down")

    gateway = ModelGateway(
        settings_with(tmp_path),
        models={"paid": scripted({"city": "Oslo", "population_millions": 1}).model},
        sink=broken,
    )
    out = await gateway.generate(City, prompt="q", instructions="i", purpose="writer")
    assert out.city == "Oslo"


async def test_configured_providers_build_their_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.models.openai import OpenAIChatModel

    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-test")
    settings = Settings(
        home=tmp_path,
        models={
            "claude": ModelConfig(
                provider="anthropic", model="claude-x", api_key_env="TEST_ANTHROPIC_KEY"
            ),
            "vllm": ModelConfig(provider="openai", model="qwen", base_url="http://127.0.0.1:9/v1"),
        },
    )
    gateway = ModelGateway(settings)
    claude = await gateway.model("claude")
    assert isinstance(claude, AnthropicModel)
    assert claude.model_name == "claude-x"
    vllm = await gateway.model("vllm")
    assert isinstance(vllm, OpenAIChatModel)
    assert "127.0.0.1:9" in str(vllm.base_url)
    assert await gateway.model("vllm") is vllm  # built once
    with pytest.raises(LlmError, match="unknown model 'nope'"):
        await gateway.model("nope")


async def test_an_unreachable_endpoint_is_retried_then_reported(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        models={
            "down": ModelConfig(
                provider="openai",
                model="m",
                base_url="http://127.0.0.1:9/v1",
                max_retries=1,
                timeout_seconds=5,
            )
        },
        llm=LlmSettings(default_model="down", retry_backoff_seconds=0),
    )
    calls: list[LlmCall] = []

    async def sink(c: LlmCall) -> None:
        calls.append(c)

    gateway = ModelGateway(settings, sink=sink)
    with pytest.raises(LlmUnavailableError, match="no model answered"):
        await gateway.generate(City, prompt="q", instructions="i", purpose="writer")
    assert len(calls) == 2
    assert all(c.error for c in calls)
