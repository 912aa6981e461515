"""The model gateway: every LLM call in the project goes through :class:`ModelGateway`.

One call = one purpose (planner, writer, judge, or a tool's name), one output type, one
prompt. The gateway picks the configured model, asks for schema-constrained JSON when the
output is structured, feeds validation errors back for a bounded number of repairs, retries
429/5xx/connection errors with backoff, falls back to another model if configured, enforces
the task's budget, and records every call (tokens, latency, cost, error).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from pydantic_ai import Agent, NativeOutput
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelHTTPError,
    ModelRequestRejectedError,
    UnexpectedModelBehavior,
)
from pydantic_ai.models import Model
from pydantic_ai.usage import RunUsage

from ..concurrency import Slots
from ..domain.models import LlmCall
from ..errors import BudgetExceededError, LlmError, LlmOutputError, LlmUnavailableError
from ..settings import LOCAL_MODEL, ModelConfig, Settings
from . import local

logger = logging.getLogger(__name__)

T = TypeVar("T")

_TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}


Sink = Callable[[LlmCall], Awaitable[None]]


@dataclass(slots=True)
class TaskBudget:
    """A task's spend so far against its limits; shared by all its steps in one process."""

    max_cost: float | None = None
    max_tokens: int | None = None
    cost: float = 0.0
    tokens: int = 0

    def over(self) -> str | None:
        if self.max_cost is not None and self.cost > self.max_cost:
            return f"cost {self.cost:.4f} USD is over the task budget of {self.max_cost:g} USD"
        if self.max_tokens is not None and self.tokens > self.max_tokens:
            return f"{self.tokens} tokens are over the task budget of {self.max_tokens}"
        return None

    def exhausted(self) -> str | None:
        if self.max_cost is not None and self.cost >= self.max_cost:
            return f"the task budget of {self.max_cost:g} USD is spent ({self.cost:.4f} USD)"
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            return f"the task budget of {self.max_tokens} tokens is spent ({self.tokens})"
        return None


@dataclass(slots=True, kw_only=True)
class CallScope:
    """Where a call comes from (task and step) and the budget it draws on."""

    task_id: str | None = None
    step_id: str | None = None
    budget: TaskBudget | None = None
    calls: int = 0  # made in this scope (one step attempt), and what they cost
    cost: float = 0.0


def price(cfg: ModelConfig, input_tokens: int, output_tokens: int) -> float:
    return (
        input_tokens * cfg.input_price_per_million + output_tokens * cfg.output_price_per_million
    ) / 1_000_000


class ModelGateway:
    """One interface to every configured model.

    ``models`` replaces named models with ready :class:`pydantic_ai.models.Model` objects (tests
    pass scripted ``FunctionModel`` s); ``sink`` receives every :class:`LlmCall`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        models: Mapping[str, Model] | None = None,
        sink: Sink | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._given: dict[str, Model] = dict(models or {})
        # Built models, per event loop: their HTTP clients' connections belong to the loop
        # that opened them (the engine runs tasks on the application's loop and on DBOS's).
        self._built: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[dict[str, Model], asyncio.Lock]
        ] = weakref.WeakKeyDictionary()
        self._agents: dict[tuple[str, Any], Agent[None, Any]] = {}
        self._local_slots = Slots(settings.llm.local_parallel)
        self.sink = sink
        self.sleep = sleep

    # Models --------------------------------------------------------------------------------
    def config(self, name: str) -> ModelConfig:
        try:
            return self.settings.models[name]
        except KeyError:
            known = ", ".join(sorted(self.settings.models))
            raise LlmError(f"unknown model {name!r} (configured: {known})", model=name) from None

    async def model(self, name: str) -> Model:
        """The Pydantic AI model for ``name``, built once (the local one starts its server)."""
        found = self._given.get(name)
        if found is not None:
            return found
        built, lock = self._built.setdefault(asyncio.get_running_loop(), ({}, asyncio.Lock()))
        found = built.get(name)
        if found is None or not self._up(name, found):
            async with lock:  # (one build per loop and name; the server starts once)
                found = built.get(name)
                if found is None or not self._up(name, found):
                    found = built[name] = await asyncio.to_thread(self._build, name)
        return found

    def _up(self, name: str, model: Model) -> bool:
        """False for a client of an embedded model server that has stopped since."""
        return self.config(name).provider != "local" or local.serving(model.base_url or "")

    def _build(self, name: str) -> Model:
        cfg = self.config(name)
        if cfg.provider == "anthropic":
            from anthropic import AsyncAnthropic
            from pydantic_ai.models.anthropic import AnthropicModel
            from pydantic_ai.providers.anthropic import AnthropicProvider

            client = AsyncAnthropic(
                api_key=cfg.api_key() or "",
                base_url=cfg.base_url,
                max_retries=0,  # the gateway retries, and records each attempt
                timeout=cfg.timeout_seconds,
            )
            return AnthropicModel(cfg.model, provider=AnthropicProvider(anthropic_client=client))
        from openai import AsyncOpenAI
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        base_url = cfg.base_url
        if cfg.provider == "local":
            base_url = self.local_server().base_url
        client = AsyncOpenAI(
            api_key=cfg.api_key() or "none",
            base_url=base_url,
            max_retries=0,
            timeout=cfg.timeout_seconds,
        )
        return OpenAIChatModel(cfg.model, provider=OpenAIProvider(openai_client=client))

    def local_server(self) -> local.LocalServer:
        s = self.settings
        if s.local_model_path is not None:
            path = local.check_gguf(s.local_model_path)
        else:
            path = local.assemble_bundled_model(s.home / "models")
        return local.local_server(
            path,
            context_size=s.models[LOCAL_MODEL].context_size,
            threads=s.llm.local_threads,
            parallel=s.llm.local_parallel,
        )

    def _agent(self, name: str, output_type: Any) -> Agent[None, Any]:
        key = (name, output_type)
        agent = self._agents.get(key)
        if agent is None:
            if len(self._agents) >= 256:  # dynamic output types (extract) must not pile up
                self._agents.pop(next(iter(self._agents)))
            spec: Any = output_type
            if output_type is not str and self.config(name).provider != "anthropic":
                # Schema-constrained JSON (response_format json_schema): the small local model
                # cannot do native tool calling, and any OpenAI-compatible server supports it.
                spec = NativeOutput(output_type)
            agent = Agent(output_type=spec, retries={"output": self.settings.llm.repair_attempts})
            self._agents[key] = agent
        return agent

    # Calls ---------------------------------------------------------------------------------
    async def generate(
        self,
        output_type: type[T],
        *,
        prompt: str,
        instructions: str,
        purpose: str,
        scope: CallScope | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
    ) -> T:
        """Ask a model; return validated ``output_type`` (``str`` for free text).

        Raises :class:`LlmOutputError` when the output stays invalid after the repairs,
        :class:`LlmUnavailableError` when every model failed, :class:`BudgetExceededError`.
        """
        scope = scope or CallScope()
        first = model or self.settings.model_for(purpose)
        chain = [first]
        while (fb := self.config(chain[-1]).fallback) is not None and fb not in chain:
            chain.append(fb)
        last_error = ""
        for name in chain:
            cfg = self.config(name)
            for attempt in range(cfg.max_retries + 1):
                self._check_budget(scope, purpose, name)
                try:
                    return await self._once(
                        name, cfg, output_type, prompt, instructions, purpose, scope, max_tokens
                    )
                except _Transient as exc:
                    last_error = str(exc)
                    if attempt < cfg.max_retries:
                        delay = self.settings.llm.retry_backoff_seconds * 2**attempt
                        if exc.retry_after is not None:
                            delay = max(delay, min(exc.retry_after, 60.0))
                        await self.sleep(delay)
            logger.warning(
                "model failed, trying the fallback" if name != chain[-1] else "model failed",
                extra={"model": name, "purpose": purpose},
            )
        raise LlmUnavailableError(
            f"{purpose}: no model answered (tried {', '.join(chain)}): {last_error}",
            purpose=purpose,
            model=first,
            transient=True,
        )

    def _check_budget(self, scope: CallScope, purpose: str, name: str) -> None:
        if scope.budget is not None and (why := scope.budget.exhausted()):
            raise BudgetExceededError(f"{purpose}: {why}", purpose=purpose, model=name)

    def _slot(self, cfg: ModelConfig) -> AbstractAsyncContextManager[Any]:
        """The embedded model's server decodes ``llm.local_parallel`` requests at a time and
        queues the others: a call waits here for a slot, so that its timeout counts its own
        generation, not the queue (on two slow cores five section calls of a blog post at
        once timed out while queued). One pool for every local model name: one server."""
        return self._local_slots if cfg.provider == "local" else nullcontext()

    async def _once(
        self,
        name: str,
        cfg: ModelConfig,
        output_type: type[T],
        prompt: str,
        instructions: str,
        purpose: str,
        scope: CallScope,
        max_tokens: int | None,
    ) -> T:
        usage = RunUsage()
        t0 = time.perf_counter()
        error: str | None = None
        try:
            model = await self.model(name)
            agent = self._agent(name, output_type)
            async with self._slot(cfg), asyncio.timeout(cfg.timeout_seconds):
                result = await agent.run(
                    prompt,
                    model=model,
                    instructions=instructions,
                    usage=usage,
                    model_settings={
                        "max_tokens": max_tokens or cfg.max_output_tokens,
                        "temperature": cfg.temperature,
                    },
                )
            return cast(T, result.output)
        except UnexpectedModelBehavior as exc:
            error = f"invalid output: {exc}"
            raise LlmOutputError(
                f"{purpose}: model {name!r} gave output that does not match "
                f"{getattr(output_type, '__name__', output_type)} after "
                f"{self.settings.llm.repair_attempts} repair attempt(s): {exc}",
                purpose=purpose,
                model=name,
            ) from exc
        except TimeoutError as exc:
            error = f"timed out after {cfg.timeout_seconds:g} s"
            raise _Transient(f"{name}: {error}") from exc
        except ModelAPIError as exc:
            error = f"{type(exc).__name__}: {exc}"
            status = exc.status_code if isinstance(exc, ModelHTTPError) else None
            if isinstance(exc, ModelRequestRejectedError) or (
                status is not None and status not in _TRANSIENT_STATUS
            ):
                raise LlmError(
                    f"{purpose}: model {name!r} refused the request: {exc}",
                    purpose=purpose,
                    model=name,
                ) from exc
            retry_after = exc.retry_after if isinstance(exc, ModelHTTPError) else None
            raise _Transient(f"{name}: {error}", retry_after=retry_after) from exc
        finally:
            await self._record(name, cfg, purpose, scope, usage, t0, error)

    async def _record(
        self,
        name: str,
        cfg: ModelConfig,
        purpose: str,
        scope: CallScope,
        usage: RunUsage,
        t0: float,
        error: str | None,
    ) -> None:
        call = LlmCall(
            model=name,
            purpose=purpose,
            task_id=scope.task_id,
            step_id=scope.step_id,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            latency_ms=(time.perf_counter() - t0) * 1000,
            cost=0.0
            if cfg.provider == "local"
            else price(cfg, usage.input_tokens, usage.output_tokens),
            error=error,
        )
        scope.calls += 1
        scope.cost += call.cost
        if scope.budget is not None:
            scope.budget.cost += call.cost
            scope.budget.tokens += call.tokens
        if self.sink is not None:
            try:
                await self.sink(call)
            except Exception:  # recording must never turn a good answer into a failure
                logger.exception("could not record a model call")


class _Transient(Exception):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(slots=True)
class BoundLlm:
    """The gateway as one step sees it: calls are attributed to the step and its task budget."""

    gateway: ModelGateway
    scope: CallScope
    feedback: tuple[str, ...] = ()
    """What a reviewer asked to fix in this step's previous result (refinement)."""

    async def generate(
        self,
        output_type: type[T],
        *,
        prompt: str,
        instructions: str,
        purpose: str = "writer",
        max_tokens: int | None = None,
    ) -> T:
        if self.feedback:
            instructions += (
                "\n\nA reviewer read your previous answer to this request and found problems. "
                "Fix every one of them this time:\n" + "\n".join(f"- {f}" for f in self.feedback)
            )
        return await self.gateway.generate(
            output_type,
            prompt=prompt,
            instructions=instructions,
            purpose=purpose,
            scope=self.scope,
            max_tokens=max_tokens,
        )
