"""The LLM judge: a rubric, scores 1-5 on four dimensions, and at most three problems."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..llm import BoundLlm
from .checks import Subject

JUDGE_TEXT_CHARS = 3000
JUDGE_MATERIAL_CHARS = 1500

RUBRIC = """You grade a piece of business writing before a person reviews it.
Score each dimension from 1 (bad) to 5 (excellent):
- accuracy: every claim and figure is supported by the material; nothing is invented.
- completeness: it does what the request asks (topic, audience, channel, length).
- coherence: clear structure, logical flow, no repetition or contradictions.
- tone: fits the requested tone and audience.
List at most two concrete problems (quote the words), and one suggestion to improve it.
Do not list problems when the text is good."""


class JudgeProblem(BaseModel):
    dimension: Literal["accuracy", "completeness", "coherence", "tone"]
    message: str = Field(max_length=120)


class Verdict(BaseModel):
    accuracy: int = Field(ge=1, le=5)
    completeness: int = Field(ge=1, le=5)
    coherence: int = Field(ge=1, le=5)
    tone: int = Field(ge=1, le=5)
    problems: list[JudgeProblem] = Field(max_length=2)
    suggestion: str = Field(max_length=150)

    def score(self, dimension: str) -> float:
        return (getattr(self, dimension) - 1) / 4


async def judge(
    llm: BoundLlm,
    subject: Subject,
    *,
    request: str | None,
    audience: str | None,
    tone: str | None,
) -> Verdict:
    """One judge call; raises the gateway's LlmError when the model fails."""
    d = subject.deliverable
    lines = [
        f"Request: {request or '(a workflow, no request text)'}",
        f"Channel: {d.channel}" + (f" (a {d.language} translation)" if d.language else ""),
    ]
    if audience:
        lines.append(f"Audience: {audience}")
    if tone:
        lines.append(f"Tone: {tone}")
    if subject.target_words:
        lines.append(f"Length asked: about {subject.target_words} words")
    if subject.material.strip():
        lines.append(f"\nMaterial:\n{subject.material[:JUDGE_MATERIAL_CHARS]}")
    title = f"# {subject.title}\n" if subject.title else ""
    lines.append(f"\nText to grade:\n{title}{subject.text[:JUDGE_TEXT_CHARS]}")
    return await llm.generate(
        Verdict,
        purpose="judge",
        instructions=RUBRIC,
        prompt="\n".join(lines),
        max_tokens=260,
    )
