"""Scripted models (Pydantic AI ``FunctionModel``) for exact tests of every LLM call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

Reply = str | dict[str, Any] | list[Any] | BaseException | Callable[[str], Any]


@dataclass
class Script:
    """Answers requests in order (the last answer repeats); remembers every prompt it saw.

    An answer is JSON-able data (sent as JSON text), raw text, an exception to raise, or a
    function of the last user message.
    """

    replies: list[Reply]
    prompts: list[str] = field(default_factory=list)
    instructions: list[str | None] = field(default_factory=list)
    settings: list[dict[str, Any]] = field(default_factory=list)
    """Each request's model settings (e.g. its ``max_tokens``)."""
    delay: float = 0.0

    @property
    def model(self) -> FunctionModel:
        return FunctionModel(self._answer, model_name="scripted")

    async def _answer(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1]
        assert isinstance(last, ModelRequest)
        text = "\n".join(str(getattr(p, "content", "")) for p in last.parts)
        self.prompts.append(text)
        self.instructions.append(info.instructions)
        self.settings.append(dict(info.model_settings or {}))
        if self.delay:
            await asyncio.sleep(self.delay)
        reply = self.replies[min(len(self.prompts) - 1, len(self.replies) - 1)]
        if callable(reply) and not isinstance(reply, BaseException):
            reply = reply(text)
        if isinstance(reply, BaseException):
            raise reply
        body = reply if isinstance(reply, str) else json.dumps(reply)
        return ModelResponse(parts=[TextPart(body)])


def scripted(*replies: Reply, delay: float = 0.0) -> Script:
    return Script(list(replies), delay=delay)
