"""Natural-language request → validated ExecutionPlan (the hybrid planner of DESIGN.md).

1. requirements: a deterministic parser reads channels, languages, files, recipients and what
   the user's own words ask to send/publish; a model fills intent, topic, audience and tone;
2. memory: the most similar successful past requests and the tools they used;
3. candidates: the registry (built-in and MCP) ranked by BM25 of the request against each
   tool's name, description and category; cost and success rate break ties;
4. composition: steps linked by what they consume and produce (compose.py); a capable hosted
   model may instead propose the whole DAG, which is then checked like any other;
5. validation and repair: unknown tools, missing inputs, cycles, unused steps, duplicates,
   side effects nobody asked for; a plan that cannot be repaired is refused with its reasons.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model
from pydantic_ai import StructuredDict

from ..domain.models import ExecutionPlan, Requirements, WorkflowStep
from ..domain.refs import find_references
from ..errors import LlmError, PlanningError, WorkflowValidationError
from ..llm import CallScope, ModelGateway
from ..tools.builtin.knowledge import Bm25, Passage, tokens
from ..tools.registry import ToolRegistry
from .compose import Composition, Slots, compose
from .requirements import instructions_only, is_vague, parse_requirements
from .validate import execution_order, step_dependencies, validate_plan

logger = logging.getLogger(__name__)

MIN_TOOL_SCORE = 1.5  # BM25 score a plugin/MCP tool needs to be planned on its own
SIDE_EFFECT_TOOLS = {
    "send_email": "send_email",
    "publish_post": "publish",
    "post_webhook": "webhook",
}
# Actions no tool can take, in a verb position ("book a flight", "and phone Maria"), so that
# nouns ("phone number", "shop window sign", "order number") do not count.
_IMPOSSIBLE = re.compile(
    r"(?:^|[,;:.!?]\s*|\b(?:and|then|also|please|pls|to|you|u|can you|could you|i want to|"
    r"we need to|need to)\s+)"
    r"(book|order|buy|purchase|pay|transfer|wire|call|phone|ring|hire|fire|install|deploy|"
    r"delete|remove|cancel|refund|ship|print|drive|reserve|sign|change|update|set|reset)\b"
    r"(?!\s+(?:a |an |the )?(?:post|blog|newsletter|email|draft|report|summary|translation))",
    re.I,
)
_LEADS_WITH_IMPOSSIBLE = re.compile(
    r"\s*(?:(?:hi|hello|hey)[,!]?\s+)?(?:(?:please|pls|can you|could you|can u|i need you to|"
    r"we need to|i want to|i'd like you to)\s+)?"
    r"(book|order|buy|purchase|pay|transfer|wire|call|phone|ring|hire|fire|install|deploy|"
    r"delete|remove|cancel|refund|ship|print|drive|reserve|change|reset)\b",
    re.I,
)
_TYPICAL_SECONDS = {
    "research": 8.0, "write_content": 12.0, "summarize": 5.0, "translate": 6.0, "extract": 5.0,
    "qa_review": 6.0, "seo_optimize": 6.0, "http_request": 2.0,
}  # fmt: skip


class _Slots(BaseModel):
    intent: str = Field(max_length=120, description="One line: what the user wants done.")
    topic: str = Field(max_length=80, description="The subject, in a few words.")
    audience: str = Field(max_length=60, description="Who it is for, or empty.")
    tone: str = Field(max_length=20, description="The tone asked for, or empty.")


def _whole_words(slots: _Slots) -> _Slots:
    """A slot the grammar cut at its maximum length loses its last, partial word
    ("informative and rela" -> "informative and")."""
    fields = {}
    for name, info in _Slots.model_fields.items():
        value: str = getattr(slots, name)
        limit = next((m.max_length for m in info.metadata if hasattr(m, "max_length")), None)
        if limit is not None and len(value) >= limit and " " in value.strip():
            value = value.strip().rsplit(" ", 1)[0].rstrip(" ,;:-")
        fields[name] = value
    return _Slots(**fields)


@dataclass(slots=True, kw_only=True)
class Recollection:
    """A similar successful past task, from the planner's memory."""

    task_id: str
    request: str
    tools: list[str]
    similarity: float  # word overlap (Jaccard), 0-1
    plan: dict[str, Any] | None = None


REUSE_SIMILARITY = 0.7
"""A past plan is reused when its request shares this much of its words with the new one and
it asked for the same things (channels, languages, files, actions)."""


def word_overlap(a: str, b: str) -> float:
    ta, tb = set(tokens(a)), set(tokens(b))
    return round(len(ta & tb) / len(ta | tb), 3) if ta | tb else 0.0


@dataclass(slots=True)
class Candidate:
    tool_id: str
    score: float
    source: str


class Planner:
    """Plans requests against one registry, with one model gateway."""

    def __init__(
        self,
        registry: ToolRegistry,
        gateway: ModelGateway,
        *,
        workspace: Path | None = None,
        memory: Any = None,
    ) -> None:
        self.registry = registry
        self.gateway = gateway
        self.workspace = workspace
        self.memory = memory  # a callable(request) -> list[Recollection], optional

    # Public ----------------------------------------------------------------------------
    async def plan(
        self, request: str, *, model: str | None = None, scope: CallScope | None = None
    ) -> ExecutionPlan:
        """``scope``: where the planner's model calls are recorded (the task to be, step "plan")."""
        request = request.strip()
        if not request:
            raise PlanningError("the request is empty")
        t0 = time.perf_counter()
        req = parse_requirements(request, workspace=self.workspace)
        reasoning = [f"requirements (parsed): {_summary(req)}"]
        candidates = self.candidates(request)
        reasoning.append(
            "candidate tools: " + ", ".join(f"{c.tool_id} {c.score:.2f}" for c in candidates[:8])
        )
        similar = self._similar(request)
        if similar:
            reasoning.append(
                "similar past requests: "
                + "; ".join(
                    f"task {m.task_id} {m.request!r} used {', '.join(m.tools)} "
                    f"(similarity {m.similarity:.2f})"
                    for m in similar
                )
            )
        instructions = instructions_only(request)
        impossible = _IMPOSSIBLE.search(instructions)
        leading = bool(_LEADS_WITH_IMPOSSIBLE.match(instructions))
        doable = req.channels or set(req.needs) - {"analysis", "research"}
        writes = re.search(r"\b(write|draft|compose|prepare|create)\b", instructions, re.I)
        if impossible and ((leading and not writes) or not doable):
            return self._clarify(request, req, candidates, reasoning)
        if is_vague(instructions, req):
            return self._clarify(request, req, candidates, reasoning)
        other_tool = next((c for c in candidates if c.source != "builtin"), None)
        if (
            other_tool is not None
            and other_tool.score >= MIN_TOOL_SCORE
            and candidates[0] is other_tool
            and set(req.needs) <= {"research", "analysis"}
        ):
            return await self._single_tool(request, req, other_tool, reasoning, model, scope)
        if not req.needs:
            other = next(
                (c for c in candidates if c.source != "builtin" and c.score >= MIN_TOOL_SCORE), None
            )
            if other is None or _IMPOSSIBLE.search(request):
                return self._clarify(request, req, candidates, reasoning)
            return await self._single_tool(request, req, other, reasoning, model, scope)
        slots, slot_note = await self._slots(request, req, model, scope)
        reasoning.append(slot_note)
        req = req.model_copy(
            update={
                "topic": slots.topic,
                "audience": req.audience or slots.audience,
                "tone": req.tone or slots.tone,
            }
        )
        tools = {s.tool_id for s in self.registry.specs()}
        comp = self._reuse(request, req, slots, similar)
        if comp is None:
            comp = compose(request, req, slots, workspace=self.workspace, tools=tools)
        if not comp.steps:
            return self._clarify(
                request, req, candidates, reasoning + comp.reasoning, comp.warnings
            )
        proposal_note = None
        if self._capable(model):
            comp, proposal_note = await self._propose(request, req, comp, candidates, model, scope)
        if proposal_note:
            reasoning.append(proposal_note)
        for s in comp.steps:
            if s.tool in ("write_content", "summarize", "translate", "research"):
                s.instructions = slots.intent
        steps, repairs = repair(comp.steps, req, self.registry)
        plan = ExecutionPlan(
            name=_slug(slots.topic or request)[:60] or "request",
            description=request[:500],
            intent=slots.intent,
            requirements=req,
            steps=steps,
            reasoning=reasoning + comp.reasoning + repairs,
            warnings=comp.warnings,
            metadata={
                "planner": "hybrid",
                "model": model or self.gateway.settings.model_for("planner"),
            },
        )
        try:
            validate_plan(plan, self.registry)
        except WorkflowValidationError as exc:
            raise PlanningError(
                "the plan is invalid and could not be repaired: " + "; ".join(exc.problems)
            ) from exc
        plan.estimated_cost = round(sum(self._cost(s.tool) for s in steps), 6)
        plan.estimated_duration_seconds = critical_path(plan)
        budget = self.gateway.settings.llm.task_budget_cost
        if budget is not None and plan.estimated_cost > budget:
            plan.warnings.append(
                f"estimated cost {plan.estimated_cost:.4f} USD is over the task budget of "
                f"{budget:g} USD: the task may stop before it finishes"
            )
        for s in plan.steps:  # make every gate visible in the plan itself
            if s.requires_approval is None:
                s.requires_approval = self.registry.get(s.tool).needs_approval(s.inputs)
        plan.metadata["planning_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return plan

    def candidates(self, request: str, top_k: int = 12) -> list[Candidate]:
        specs = self.registry.specs()
        items = [
            Passage(
                s.tool_id,
                1,
                f"{s.tool_id.replace('_', ' ')} {s.name} {s.category} {s.description}",
            )
            for s in specs
        ]
        by_id = {s.tool_id: s for s in specs}
        hits = Bm25(items).search(request, top_k=top_k)
        ranked = sorted(
            hits,
            key=lambda h: (
                -round(h[1], 1),
                by_id[h[0].document].estimated_cost,
                -by_id[h[0].document].success_rate,
            ),
        )
        return [Candidate(p.document, s, by_id[p.document].source) for p, s in ranked]

    # Stages ----------------------------------------------------------------------------
    async def _slots(
        self, request: str, req: Requirements, model: str | None, scope: CallScope | None
    ) -> tuple[Slots, str]:
        try:
            out = await self.gateway.generate(
                _Slots,
                scope=scope,
                purpose="planner",
                model=model,
                instructions=(
                    "Read a business request. Give its intent in one line, its topic in a few "
                    "words, the audience and the tone if the request names them (else empty)."
                ),
                prompt=f"Request: {request}",
                max_tokens=160,
            )
        except LlmError as exc:
            logger.warning("planner model failed; using the request's words", exc_info=True)
            fallback = Slots(intent=request[:120], topic=_topic(request), brief=request)
            return fallback, f"model unavailable ({exc}); intent and topic taken from the request"
        out = _whole_words(out)
        topic = out.topic.strip() or _topic(request)
        slots = Slots(
            intent=out.intent.strip() or request[:120],
            topic=topic,
            brief=request,
            audience=out.audience.strip() or None,
            tone=out.tone.strip().lower() or None,
        )
        return slots, f"intent (model): {slots.intent!r}; topic {slots.topic!r}"

    async def _single_tool(
        self,
        request: str,
        req: Requirements,
        candidate: Candidate,
        reasoning: list[str],
        model: str | None,
        scope: CallScope | None,
    ) -> ExecutionPlan:
        """A request that only a plugin or MCP tool matches: one step, the model fills its
        inputs from the tool's own input schema."""
        spec = self.registry.get(candidate.tool_id).spec
        schema = {**spec.input_schema, "type": "object"}
        try:
            args = await self.gateway.generate(
                StructuredDict(schema, name="arguments"),
                scope=scope,
                purpose="planner",
                model=model,
                instructions=f"Fill the arguments of the tool {spec.tool_id}: {spec.description}",
                prompt=f"Request: {request}",
                max_tokens=300,
            )
        except LlmError as exc:
            return self._clarify(
                request,
                req,
                [candidate],
                reasoning,
                [f"could not fill {spec.tool_id}'s inputs: {exc}"],
            )
        step = WorkflowStep(
            id=_slug(spec.tool_id)[:40] or "call", tool=spec.tool_id, inputs=dict(args)
        )
        steps, repairs = repair([step], req, self.registry)
        plan = ExecutionPlan(
            name=_slug(spec.tool_id),
            description=request[:500],
            intent=request[:120],
            requirements=req,
            steps=steps or [step],
            reasoning=[
                *reasoning,
                f"only {spec.tool_id} ({candidate.source}, score {candidate.score:.2f}) fits; "
                "the model filled its inputs",
                *repairs,
            ],
            metadata={"planner": "single-tool"},
        )
        try:
            validate_plan(plan, self.registry)
        except WorkflowValidationError as exc:
            return self._clarify(request, req, [candidate], reasoning, list(exc.problems))
        plan.estimated_cost = self._cost(spec.tool_id)
        plan.estimated_duration_seconds = critical_path(plan)
        return plan

    def _similar(self, request: str) -> list[Recollection]:
        if self.memory is None:
            return []
        try:
            return list(self.memory(request))[:3]
        except Exception:  # memory is advice: its failure never blocks planning
            logger.exception("planning memory lookup failed")
            return []

    def _reuse(
        self, request: str, req: Requirements, slots: Slots, similar: list[Recollection]
    ) -> Composition | None:
        """The plan of a very similar successful request that asked for the same things,
        adapted: the new brief, topic and intent replace the old ones."""
        for past in similar:
            if past.similarity < REUSE_SIMILARITY or not past.plan:
                continue
            try:
                old = ExecutionPlan.model_validate(past.plan)
            except ValueError:
                continue
            if old.requirements is None or _signature(old.requirements) != _signature(req):
                continue
            steps = []
            for st in old.steps:
                inputs = dict(st.inputs)
                if "brief" in inputs:
                    inputs["brief"] = slots.brief
                if st.tool == "research" and "query" in inputs:
                    inputs["query"] = slots.topic or request[:200]
                if req.length_words is not None:  # the new request's own length wins
                    for key in ("max_words", "length_words"):
                        if key in inputs:
                            inputs[key] = req.length_words
                steps.append(st.model_copy(update={"inputs": inputs}))
            return Composition(
                steps=steps,
                reasoning=[
                    f"reused the plan of task {past.task_id} ({past.request!r}, similarity "
                    f"{past.similarity:.2f}): same channels, languages, files and actions; "
                    "brief, topic and length replaced"
                ],
            )
        return None

    def _clarify(
        self,
        request: str,
        req: Requirements,
        candidates: list[Candidate],
        reasoning: list[str],
        warnings: list[str] | None = None,
    ) -> ExecutionPlan:
        if m := _IMPOSSIBLE.search(request):
            question = (
                f"No available tool can {m.group(1).lower()} anything: the orchestrator writes, "
                "researches, analyses data, translates and publishes or sends what it wrote. "
                "What would you like prepared instead?"
            )
        elif warnings:
            question = (
                "I could not plan this: "
                + "; ".join(warnings)
                + ". Can you give the missing details?"
            )
        else:
            question = (
                "What should be produced? Name the deliverable (e.g. a blog post, an email, a "
                "report from data/sales.csv, a summary of a document) and its topic."
            )
        return ExecutionPlan(
            name="clarification",
            description=request[:500],
            intent=None,
            requirements=req,
            steps=[],
            clarification=question,
            reasoning=[*reasoning, "no tool sequence fits the request: asking the user"],
            warnings=warnings or [],
        )

    def _capable(self, model: str | None) -> bool:
        name = model or self.gateway.settings.model_for("planner")
        cfg = self.gateway.settings.models.get(name)
        return cfg is not None and cfg.plans_whole_dag

    async def _propose(
        self,
        request: str,
        req: Requirements,
        comp: Composition,
        candidates: list[Candidate],
        model: str | None,
        scope: CallScope | None,
    ) -> tuple[Composition, str]:
        """A capable model proposes the whole DAG; kept only if it survives validation."""
        tool_ids = sorted({c.tool_id for c in candidates} | {s.tool for s in comp.steps})
        catalogue = "\n".join(
            f"- {s.tool_id}: {s.description} inputs: {sorted(s.input_schema.get('properties', {}))}"
            for s in self.registry.specs()
            if s.tool_id in tool_ids
        )
        step_model = create_model(
            "ProposedStep",
            id=(str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")),
            tool=(Literal[tuple(tool_ids)], ...),  # type: ignore[valid-type]  # dynamic enum
            inputs=(dict[str, Any], Field(default_factory=dict)),
            depends_on=(list[str], Field(default_factory=list)),
        )
        proposal_model = create_model(
            "ProposedPlan",
            steps=(list[step_model], Field(min_length=1, max_length=15)),  # type: ignore[valid-type]
            reasoning=(list[str], Field(default_factory=list, max_length=8)),
        )
        example = [s.model_dump(include={"id", "tool", "inputs", "depends_on"}) for s in comp.steps]
        try:
            proposal = await self.gateway.generate(
                proposal_model,
                scope=scope,
                purpose="planner",
                model=model,
                instructions=(
                    "You plan workflows of tool calls. Use only the listed tools. Reference an "
                    "earlier step's output as ${steps.<id>.output.<field>}. Add send_email, "
                    "publish_post or post_webhook only if the user asked to send, publish or "
                    "notify. Keep the plan minimal."
                ),
                prompt=f"Request: {request}\n\nTools:\n{catalogue}\n\nA draft plan:\n{json.dumps(example)}",
                max_tokens=2000,
            )
        except LlmError as exc:
            return comp, f"the model's whole-DAG proposal failed ({exc}); composed plan kept"
        steps = [
            WorkflowStep(id=s.id, tool=s.tool, inputs=s.inputs, depends_on=s.depends_on)
            for s in proposal.steps  # pyright: ignore[reportAttributeAccessIssue]
        ]
        fixed, notes = repair(steps, req, self.registry)
        try:
            validate_plan(ExecutionPlan(steps=fixed), self.registry)
        except WorkflowValidationError as exc:
            return comp, "the model's DAG was invalid (" + "; ".join(
                exc.problems[:3]
            ) + "); composed plan kept"
        said: list[str] = getattr(proposal, "reasoning", [])
        out = Composition(steps=fixed, reasoning=[*said, *notes], warnings=comp.warnings)
        return out, "plan proposed by the model and validated"

    def _cost(self, tool_id: str) -> float:
        try:
            return self.registry.get(tool_id).spec.estimated_cost
        except Exception:
            return 0.0


def repair(
    steps: list[WorkflowStep], req: Requirements, registry: ToolRegistry
) -> tuple[list[WorkflowStep], list[str]]:
    """Fix what can be fixed without guessing; return the steps and what was done."""
    notes: list[str] = []
    known = {s.tool_id for s in registry.specs()}
    out: list[WorkflowStep] = []
    seen_ids: set[str] = set()
    seen_calls: set[str] = set()
    for s in steps:
        if s.tool not in known:
            notes.append(f"repair: removed {s.id!r}: unknown tool {s.tool!r}")
            continue
        action = SIDE_EFFECT_TOOLS.get(s.tool)
        if action is not None and action not in req.side_effects:
            notes.append(f"repair: removed {s.id!r}: {s.tool} was not asked for by the user")
            continue
        if s.tool == "write_file" and "save" not in req.side_effects:
            path = str(s.inputs.get("path", ""))
            if not path.startswith("drafts/"):
                notes.append(f"repair: {s.id!r} writes to drafts/ (saving was not asked for)")
                s = s.model_copy(
                    update={"inputs": {**s.inputs, "path": "drafts/" + Path(path).name}}
                )
        call = f"{s.tool}:{s.inputs!r}"
        if call in seen_calls:
            notes.append(f"repair: removed {s.id!r}: the same call as an earlier step")
            continue
        if s.id in seen_ids:
            notes.append(f"repair: renamed duplicate step id {s.id!r}")
            s = s.model_copy(update={"id": f"{s.id}_{len(out)}"})
        seen_calls.add(call)
        seen_ids.add(s.id)
        out.append(s)
    # A reference to a removed step, or a dependency on one, cannot run: drop the dependants.
    changed = True
    while changed:
        changed = False
        ids = {s.id for s in out}
        for s in list(out):
            refs = {r.step for r in find_references(s.inputs)} | set(s.depends_on)
            if refs - ids:
                out.remove(s)
                notes.append(
                    f"repair: removed {s.id!r}: it needs {sorted(refs - ids)}, which is gone"
                )
                changed = True
    # Steps whose output nothing uses and that deliver nothing themselves (pure data steps).
    used = {r.step for s in out for r in find_references(s.inputs)} | {
        d for s in out for d in s.depends_on
    }
    for s in list(out):
        if s.tool in ("query_data", "read_file") and s.id not in used and len(out) > 1:
            out.remove(s)
            notes.append(f"repair: removed {s.id!r}: nothing uses its output")
    return out, notes


def _signature(req: Requirements) -> tuple[Any, ...]:
    return (
        sorted(req.channels),
        sorted(req.languages),
        sorted(req.files),
        sorted(req.side_effects),
        sorted(set(req.needs)),
        sorted(req.recipients),
        req.draft_only,
    )


def critical_path(plan: ExecutionPlan) -> float:
    """Seconds along the longest dependency chain, with typical step durations."""
    finish: dict[str, float] = {}
    steps = {s.id: s for s in plan.steps}
    for sid in execution_order(plan):
        deps = step_dependencies(steps[sid])
        start = max((finish[d] for d in deps if d in finish), default=0.0)
        finish[sid] = start + _TYPICAL_SECONDS.get(steps[sid].tool, 1.0)
    return round(max(finish.values(), default=0.0), 1)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


_STOP_TOPIC = re.compile(
    r"\b(please|write|draft|create|make|prepare|compose|a|an|the|our|my|some|about|on|for|with|"
    r"and|post|blog|linkedin|twitter|email|newsletter|report|short|long|teaser|summary|"
    r"summarize|translate|into|in|to|it|send|publish)\b",
    re.I,
)


def _topic(request: str) -> str:
    m = re.search(
        r"\babout\s+(.+?)(?:[,.;]| with | for | and (?:send|post|publish)|$)", request, re.I
    )
    if m:
        return m.group(1).strip()[:80]
    words = _STOP_TOPIC.sub(" ", request)
    return " ".join(words.split()[:8])[:80]


def _summary(req: Requirements) -> str:
    parts = []
    for key in (
        "channels",
        "languages",
        "files",
        "needs",
        "side_effects",
        "recipients",
        "deadlines",
    ):
        value = getattr(req, key)
        if value:
            parts.append(f"{key}={','.join(value)}")
    if req.draft_only:
        parts.append("draft only")
    for key in ("audience", "tone", "length_words"):
        value = getattr(req, key)
        if value:
            parts.append(f"{key}={value}")
    return " ".join(parts) or "nothing recognised"
