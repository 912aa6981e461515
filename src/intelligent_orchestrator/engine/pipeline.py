"""A request's pipeline after planning: execute, assess, refine, format, learn, review, act.

Every phase starts by recording itself on the task (``tasks.phase``) and ends by storing its
result as rows (step runs, assessments, variants, the execution record, the review's approval),
so a process that dies anywhere resumes at the phase it was in, reusing what earlier phases
stored. The actions (publish, send, notify) run only after a person approved the formatted
result, through the side-effect ledger: exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..domain.models import (
    ApprovalStatus,
    ChannelVariant,
    Deliverable,
    ExecutionPlan,
    ExecutionRecord,
    PipelinePhase,
    QualityAssessment,
    StepRun,
    StepStatus,
    Task,
    TaskStatus,
    WorkflowStep,
)
from ..domain.refs import find_references
from ..errors import PlanningError
from ..formatting import Content, Metadata, format_variant, render_artifacts
from ..llm import BoundLlm, CallScope
from ..quality import Inputs, PlanSplit, assess, content_of, descendants, plan_parts
from ..storage import ArtifactRecord, NotHolderError, utcnow
from .journal import TakenOverError, taken_over
from .scheduler import DagRun

if TYPE_CHECKING:
    from ..storage import Store
    from .runtime import Runtime

logger = logging.getLogger(__name__)

P = PipelinePhase
REVIEW_GATE = "@review"
FORMAT_STEP = "@format"
OUTPUTS_DIR = "outputs"
_NOT_STEPS = ("plan", "@assess")  # model calls not counted in any step's cost


async def enter_phase(rt: Runtime, task: Task, phase: PipelinePhase) -> None:
    """Record that ``task`` is in ``phase`` (and honour the crash drills' fault injection)."""
    await asyncio.to_thread(
        rt.store.update_task, task.task_id, only_executor=rt.executor_id, phase=phase.value
    )
    pauses = rt.settings.engine.pause_at_phase
    pause = max(
        (pauses.get(f"{phase.value}@{label}", 0.0) for label in (task.name, task.request or "")),
        default=0.0,
    ) or pauses.get(phase.value)
    if pause:  # fault injection for crash drills (settings.engine.pause_at_phase)
        logger.warning("pausing %.1f s in phase %s", pause, phase.value)
        await asyncio.sleep(pause)


async def plan_task(rt: Runtime, task: Task) -> Task | TaskStatus:
    """Phases 1-2 of a request's task: discover the tools and plan the request, durably.

    The plan replaces the task's pending placeholder in one update, which is this phase's
    checkpoint: a process that dies while planning leaves the placeholder, and the run that
    recovers the task plans again (planning has no side effects; its model calls are
    counted again). Returns the planned task, or the status the task stopped in.
    """
    store = rt.store
    task_id = task.task_id

    async def stop(status: TaskStatus, error: str, **fields: Any) -> TaskStatus:
        await asyncio.to_thread(
            store.update_task,
            task_id,
            status=status,
            only_if=[TaskStatus.RUNNING],
            only_executor=rt.executor_id,
            finished_at=utcnow(),
            error=error,
            **fields,
        )
        return (await asyncio.to_thread(store.get_task, task_id)).status

    if rt.planner is None:
        return await stop(TaskStatus.FAILED, "this process cannot plan requests (no planner)")

    async def enter(phase: PipelinePhase) -> None:
        await enter_phase(rt, task, phase)

    try:
        plan = await rt.planner(task, enter)
    except PlanningError as exc:
        return await stop(TaskStatus.FAILED, f"planning failed: {exc}")
    except Exception as exc:  # a bug or a broken model: fail with the reason, never hang
        logger.exception("planning crashed", extra={"task_id": task_id})
        return await stop(
            TaskStatus.FAILED, f"internal error in phase plan: {type(exc).__name__}: {exc}"
        )
    if plan.clarification is not None:
        return await stop(
            TaskStatus.NEEDS_CLARIFICATION,
            plan.clarification,
            plan=plan.model_dump(mode="json"),
            phase=P.DONE.value,
        )
    phase = P.EXECUTE if plan.uses_pipeline and rt.settings.quality.enabled else None
    stored = await asyncio.to_thread(
        store.update_task,
        task_id,
        only_if=[TaskStatus.RUNNING],
        only_executor=rt.executor_id,
        plan=plan.model_dump(mode="json"),
        name=plan.name,
        phase=phase.value if phase is not None else None,
    )
    if not stored:  # cancelled while planning, or another executor took the task over
        current = await asyncio.to_thread(store.get_task, task_id)
        logger.warning(
            "plan not stored: the task is %s, or another executor took it over",
            current.status.value,
            extra={"task_id": task_id},
        )
        return current.status
    return task.model_copy(update={"plan": plan, "name": plan.name, "phase": phase})


def review_gate(round_: int) -> str:
    """The approval a round's result waits for (one per round: a revise opens the next)."""
    return f"{REVIEW_GATE}:{round_}"


@dataclass(slots=True)
class Pipeline:
    rt: Runtime
    task: Task
    split: PlanSplit = field(init=False)
    deliverables: list[Deliverable] = field(init=False)

    def __post_init__(self) -> None:
        self.split, self.deliverables = plan_parts(self.task.plan, self.rt.registry)

    @property
    def store(self) -> Store:
        return self.rt.store

    @property
    def task_id(self) -> str:
        return self.task.task_id

    async def _db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except NotHolderError as exc:
            raise taken_over(exc) from exc

    async def _write(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A write of this run's, fenced: made only while this executor holds the task."""
        return await self._db(fn, *args, only_executor=self.rt.executor_id, **kwargs)

    # The phases ----------------------------------------------------------------------------
    async def run(self, previous: list[StepRun]) -> TaskStatus:
        phase = self.task.phase or P.EXECUTE
        if phase in (P.PLAN, P.DISCOVER):
            phase = P.EXECUTE
        await self._enter(phase)
        while True:
            try:
                step = await self._phase(phase, previous)
            except TakenOverError:
                raise  # another executor runs the task now: this run stops, writing nothing
            except Exception as exc:  # our bug or a broken file system: fail, never hang
                logger.exception(
                    "pipeline phase %s crashed", phase.value, extra={"task_id": self.task_id}
                )
                return await self._fail(
                    f"internal error in phase {phase.value}: {type(exc).__name__}: {exc}"
                )
            if isinstance(step, TaskStatus):
                return step
            phase, previous = step
            await self._enter(phase)

    async def _phase(
        self, phase: PipelinePhase, previous: list[StepRun]
    ) -> TaskStatus | tuple[PipelinePhase, list[StepRun]]:
        """Run one phase: the status the task stops in, or the next phase."""
        t0 = time.perf_counter()
        if phase in (P.EXECUTE, P.REFINE):
            status = await self._execute(previous)
            if status is None:  # a refinement failed: the previous result is reviewed
                nxt = P.FORMAT
            elif status is not TaskStatus.SUCCEEDED:
                return status
            else:
                nxt = P.ASSESS
        elif phase is P.ASSESS:
            nxt = await self._assess()
        elif phase is P.FORMAT:
            await self._format()
            nxt = P.LEARN
        elif phase is P.LEARN:
            await self._timed(phase, t0)  # before the record, which includes it
            t0 = time.perf_counter()
            await self._save_record(outcome=TaskStatus.AWAITING_APPROVAL.value)
            nxt = P.APPROVAL
        elif phase is P.APPROVAL:
            parked = await self._review()
            if parked is not None:
                await self._timed(phase, t0)
                return parked
            nxt = P.ACTIONS
        elif phase is P.ACTIONS:
            stopped = await self._actions(await self._db(self.store.step_runs, self.task_id))
            await self._timed(phase, t0)
            if stopped is not None:
                return stopped
            return await self._end(TaskStatus.SUCCEEDED, approval="approved", phase=P.DONE)
        else:  # DONE: a finished run asked again
            return (await self._db(self.store.get_task, self.task_id)).status
        await self._timed(phase, t0)
        if nxt in (P.EXECUTE, P.REFINE):
            previous = await self._db(self.store.step_runs, self.task_id)
        return nxt, previous

    async def _enter(self, phase: PipelinePhase) -> None:
        self.task = self.task.model_copy(update={"phase": phase})
        await enter_phase(self.rt, self.task, phase)

    async def _timed(self, phase: PipelinePhase, t0: float) -> None:
        self._phase_ms[phase.value] = self._phase_ms.get(phase.value, 0.0) + round(
            (time.perf_counter() - t0) * 1000, 1
        )

    @property
    def _phase_ms(self) -> dict[str, float]:
        return self.task.plan.metadata.setdefault("phase_ms", {})

    # Phase 3 (and 5): the content steps ----------------------------------------------------
    async def _execute(self, previous: list[StepRun]) -> TaskStatus | None:
        """How the content steps ended; None when a refinement round failed and the
        previous round's result was restored for a person to review."""
        if not self.split.content:
            return TaskStatus.SUCCEEDED
        feedback = await self._feedback() if self.task.round else {}
        dag = self._dag(
            self.task.plan.model_copy(update={"steps": self.split.content}),
            feedback=feedback,
            round=self.task.round,
        )
        status = await dag.run(previous)  # an engine crash fails the task in run()
        if status is TaskStatus.SUCCEEDED:
            return status
        if status is TaskStatus.CANCELLED:
            await self._save_record(outcome="cancelled")
            return status
        failure = dag.first_failure()
        if self.task.round > 0 and status is TaskStatus.FAILED:
            why = f"step {failure[0]!r} failed: {failure[1]}" if failure else dag.stopped
            logger.warning(
                "refinement round %d failed (%s); the result of round %d goes to review",
                self.task.round,
                why,
                self.task.round - 1,
                extra={"task_id": self.task_id},
            )
            await self._write(self.store.restore_round, self.task_id, self.task.round - 1)
            timings = self._phase_ms
            self.task = await self._db(self.store.get_task, self.task_id)
            self.task.plan.metadata["phase_ms"] = timings
            return None
        if failure is not None:
            return await self._fail(f"step {failure[0]!r} failed: {failure[1]}", failure[0])
        if dag.stopped:
            return await self._fail(f"task stopped: {dag.stopped}")
        return await self._fail(f"content steps ended {status.value}")

    def _dag(self, plan: ExecutionPlan, **kwargs: Any) -> DagRun:
        return self.rt.dag(self.task_id, plan, auto_approve=self.task.auto_approve, **kwargs)

    async def _feedback(self) -> dict[str, tuple[str, ...]]:
        """What the steps of this round must fix: the reviewer's words (a revise) or the
        previous assessment's issues and suggestions."""
        round_ = self.task.round
        human = await self._revision_comment(round_ - 1)
        if human is not None:
            text = f"The reviewer asked: {human}"
            return {d.step_id: (text,) for d in self.deliverables}
        history = await self._db(self.store.assessments, self.task_id)
        last = next((a for _, a in reversed(history) if a.round == round_ - 1), None)
        if last is None:
            return {}
        out: dict[str, list[str]] = {}
        for a in last.deliverables or [last]:
            if a.passed:
                continue
            for i in a.issues:
                if i.step_id:
                    out.setdefault(i.step_id, []).append(i.message)
            for sid in {i.step_id for i in a.issues if i.step_id}:
                out[sid] += a.suggestions
        return {k: tuple(dict.fromkeys(v)) for k, v in out.items()}

    async def _revision_comment(self, round_: int) -> str | None:
        approvals = await self._db(self.store.approvals, self.task_id)
        for a in approvals:
            if a.step_id == review_gate(round_) and a.status is ApprovalStatus.REVISE:
                return a.comment or ""
        return None

    # Phases 4 and 5: assess, then refine or go on ---------------------------------------------
    async def _assess(self) -> PipelinePhase:
        cfg = self.rt.settings.quality
        round_ = self.task.round
        history = await self._db(self.store.assessments, self.task_id)
        current = next((a for _, a in history if a.round == round_), None)
        if current is None:
            outputs = await self._outputs()
            llm = (
                BoundLlm(self.rt.gateway, CallScope(task_id=self.task_id, step_id="@assess"))
                if self.rt.gateway is not None
                else None
            )
            assessment = await assess(
                Inputs(
                    plan=self.task.plan,
                    outputs=outputs,
                    deliverables=self.deliverables,
                    content=self.split.content,
                    request=self.task.request,
                    workspace=self.rt.settings.workspace,
                    settings=cfg,
                    round=round_,
                ),
                llm,
            )
            trigger = (
                "initial"
                if round_ == 0
                else "human"
                if await self._revision_comment(round_ - 1) is not None
                else "quality"
            )
            current = await self._write(
                self.store.save_assessment, self.task_id, assessment, trigger=trigger
            )
            history = [*history, (trigger, current)]
        if current.passed:
            await self._set(needs_human=False)
            return P.FORMAT
        faulty = {
            i.step_id
            for a in current.deliverables or [current]
            if not a.passed
            for i in a.issues
            if i.step_id in self.split.content_ids
        }
        why = self._stop_refining(history, current, faulty)
        if why is not None:
            logger.info("escalating to a person: %s", why, extra={"task_id": self.task_id})
            earlier = [a for _, a in history if a.round == round_ - 1]
            if round_ > 0 and earlier and current.overall_score < earlier[-1].overall_score:
                # The refinement made it worse: the person reviews the better result.
                logger.info(
                    "round %d scored lower than round %d (%s < %s); the result of round %d "
                    "goes to review",
                    round_,
                    round_ - 1,
                    current.overall_score,
                    earlier[-1].overall_score,
                    round_ - 1,
                    extra={"task_id": self.task_id},
                )
                await self._write(
                    self.store.restore_round, self.task_id, round_ - 1, assessment=earlier[-1]
                )
                timings = self._phase_ms
                self.task = await self._db(self.store.get_task, self.task_id)
                self.task.plan.metadata["phase_ms"] = timings
                return P.FORMAT
            await self._set(needs_human=True)
            return P.FORMAT
        rerun = descendants(self.split.content, faulty)
        await self._write(
            self.store.reset_for_refinement,
            self.task_id,
            sorted(rerun),
            round_=round_ + 1,
            phase=P.REFINE,
        )
        self.task = self.task.model_copy(update={"round": round_ + 1})
        return P.REFINE

    def _stop_refining(
        self,
        history: list[tuple[str, QualityAssessment]],
        current: QualityAssessment,
        faulty: set[str | None],
    ) -> str | None:
        cfg = self.rt.settings.quality
        if current.judge_error:
            return f"the judge failed: {current.judge_error}"
        if not faulty:
            return "no step to re-run for the issues found"
        automatic = 0
        for trigger, _ in reversed(history):
            if trigger != "quality":
                break
            automatic += 1
        if automatic >= cfg.max_retries:
            return f"still below the threshold after {automatic} refinement(s)"
        if history[-1][0] == "quality" and len(history) >= 2:
            before = history[-2][1].overall_score
            if current.overall_score <= before:
                return f"the last refinement did not improve the score ({before} -> {current.overall_score})"
        return None

    async def _set(self, **fields: Any) -> None:
        self.task = self.task.model_copy(update=fields)
        await self._db(
            self.store.update_task, self.task_id, only_executor=self.rt.executor_id, **fields
        )

    async def _outputs(self) -> dict[str, Any]:
        runs = await self._db(self.store.step_runs, self.task_id)
        return {r.step_id: r.output for r in runs if r.status is StepStatus.SUCCEEDED}

    # Phase 6: one variant per deliverable and channel ----------------------------------------
    async def _format(self) -> None:
        outputs = await self._outputs()
        meta = await self._metadata()
        steps = {s.id: s for s in self.split.content}
        variants: list[ChannelVariant] = []
        artifacts: list[ArtifactRecord] = []
        for d in self.deliverables:
            content = self._content(d, steps, outputs)
            variant = format_variant(d.channel, d.step_id, content, meta)
            variant.language = d.language
            artifacts += await self._render(variant, content, meta)
            variants.append(variant)
        await self._write(
            self.store.save_variants, self.task_id, self.task.round, variants, artifacts
        )

    async def _render(
        self, variant: ChannelVariant, content: Content, meta: Metadata
    ) -> list[ArtifactRecord]:
        """Write a variant's files (outputs/TASK/...) and return their records."""
        files = await asyncio.to_thread(
            render_artifacts,
            variant,
            content,
            meta,
            self.rt.settings.workspace,
            f"{OUTPUTS_DIR}/{self.task_id}",
        )
        return [
            ArtifactRecord(
                step_id=FORMAT_STEP,
                path=a.path,
                media_type=a.media_type,
                size=a.size,
                sha256=a.sha256,
            )
            for a in files
        ]

    async def _render_edits(self, variants: list[ChannelVariant]) -> None:
        """Write the files of the variants a person edited again, from the approved text."""
        edited = [v for v in variants if v.revision > 0]
        if not edited:
            return
        outputs = await self._outputs()
        meta = await self._metadata()
        steps = {s.id: s for s in self.split.content}
        by_key = {d.key: d for d in self.deliverables}
        artifacts: list[ArtifactRecord] = []
        for v in edited:
            d = by_key.get(v.key)
            if d is not None:
                artifacts += await self._render(v, self._content(d, steps, outputs), meta)
        await self._write(self.store.replace_artifacts, self.task_id, artifacts)

    def _content(
        self, d: Deliverable, steps: dict[str, WorkflowStep], outputs: dict[str, Any]
    ) -> Content:
        step = steps[d.step_id]
        title, text = content_of(step.tool, outputs.get(d.step_id))
        src_out = outputs.get(d.source_step or d.step_id)
        if title is None and d.source_step:
            title, _ = content_of(steps[d.source_step].tool, src_out)
        sources = src_out.get("sources", []) if isinstance(src_out, dict) else []
        readers = [
            s
            for s in self.split.content
            if d.step_id in {r.step for r in find_references(s.inputs)}
        ]
        seo = next(
            (outputs.get(s.id) for s in readers if s.tool == "seo_optimize"),
            None,
        )
        tables = [
            o["rows"]
            for s in self.split.content
            if s.tool == "query_data"
            and isinstance(o := outputs.get(s.id), dict)
            and isinstance(o.get("rows"), list)
        ]
        charts = [
            str(o["path"])
            for s in self.split.content
            if s.tool == "chart" and isinstance(o := outputs.get(s.id), dict) and o.get("path")
        ]
        req = self.task.plan.requirements
        return Content(
            title=title,
            body=text,
            sources=[c for c in sources if isinstance(c, dict)],
            seo=seo if isinstance(seo, dict) else None,
            tables=tables if d.channel.startswith("report") else [],
            charts=charts if d.channel.startswith("report") else [],
            language=d.language,
            topic=req.topic if req else None,
        )

    async def _metadata(self) -> Metadata:
        calls = await self._db(self.store.llm_calls, self.task_id)
        task = await self._db(self.store.get_task, self.task_id)
        sources: list[str] = []
        for r in await self._db(self.store.step_runs, self.task_id):
            if isinstance(r.output, dict):
                sources += [
                    str(c.get("document"))
                    for c in r.output.get("sources", [])
                    if isinstance(c, dict) and c.get("document")
                ]
        return Metadata(
            task_id=self.task_id,
            plan=[f"{s.id}:{s.tool}" for s in self.task.plan.steps],
            models=sorted({c.model for c in calls}),
            cost=round(task.total_cost + sum(c.cost for c in calls if c.step_id in _NOT_STEPS), 6),
            quality_score=task.quality_score,
            sources=list(dict.fromkeys(sources)),
        )

    # Phase 7: the execution record -------------------------------------------------------
    async def _save_record(self, *, outcome: str, approval: str | None = None) -> None:
        await self._db(self._write_record, outcome, approval)

    def _write_record(self, outcome: str, approval: str | None) -> None:
        write_record(
            self.store,
            self.task_id,
            outcome=outcome,
            approval=approval,
            phase_ms=self._phase_ms,
            only_executor=self.rt.executor_id,
        )

    # The human decision ------------------------------------------------------------------
    async def _review(self) -> TaskStatus | None:
        """None once approved; else the status the task parks or ends in."""
        earlier = await self._db(self.store.approvals, self.task_id)
        person = any(
            a.step_id and a.step_id.startswith(REVIEW_GATE) and a.status is ApprovalStatus.REVISE
            for a in earlier
        )  # a person sent a result back: they see the next one too
        auto = self.task.auto_approve and not self.task.needs_human and not person
        approval = await self._write(
            self.store.request_approval,
            self.task_id,
            review_gate(self.task.round),
            expires_in=timedelta(hours=self.rt.settings.engine.approval_expiry_hours),
            auto_by="auto-approve" if auto else None,
        )
        match approval.status:
            case ApprovalStatus.APPROVED:
                return None
            case ApprovalStatus.PENDING:
                await self._db(
                    self.store.update_task,
                    self.task_id,
                    status=TaskStatus.AWAITING_APPROVAL,
                    only_if=[TaskStatus.RUNNING],
                    only_executor=self.rt.executor_id,
                )
                return TaskStatus.AWAITING_APPROVAL
            case _:
                status = (
                    TaskStatus.EXPIRED
                    if approval.status is ApprovalStatus.EXPIRED
                    else TaskStatus.REJECTED
                )
                return await self._end(
                    status,
                    approval=approval.status.value,
                    phase=P.DONE,
                    error=f"review {approval.status.value}: {approval.comment or ''}".strip(),
                )

    # After approval: the actions, exactly once -------------------------------------------------
    async def _actions(self, previous: list[StepRun]) -> TaskStatus | None:
        """None when every action succeeded; else how the task ended."""
        status = TaskStatus.SUCCEEDED
        dag = None
        variants = await self._db(self.store.variants, self.task_id)
        await self._render_edits(variants)
        if self.split.actions:
            plan, overlay = with_approved_text(self.task.plan, self.deliverables, variants)
            dag = self._dag(plan, preapproved=True, overlay=overlay)
            status = await dag.run(previous)
        if status is TaskStatus.CANCELLED:
            return status
        if status is not TaskStatus.SUCCEEDED and dag is not None:
            failure = dag.first_failure()
            if failure is not None:
                return await self._fail(f"step {failure[0]!r} failed: {failure[1]}", failure[0])
            return await self._fail(f"actions ended {status.value}: {dag.stopped or ''}".strip())
        return None

    async def _fail(self, error: str, failed_step: str | None = None) -> TaskStatus:
        """The task fails; its phase stays where it failed."""
        fields: dict[str, Any] = {"error": error}
        if failed_step:
            fields["failed_step"] = failed_step
        return await self._end(TaskStatus.FAILED, **fields)

    async def _end(
        self,
        status: TaskStatus,
        *,
        approval: str | None = None,
        phase: PipelinePhase | None = None,
        **fields: Any,
    ) -> TaskStatus:
        """Finish the task. The record is written first: a finished task always has it (a
        crash in between runs this phase again, and the record is an upsert)."""
        await self._save_record(outcome=status.value, approval=approval)
        if phase is not None:
            fields["phase"] = phase.value
        await self._db(
            self.store.update_task,
            self.task_id,
            status=status,
            only_if=[TaskStatus.RUNNING],
            only_executor=self.rt.executor_id,
            finished_at=utcnow(),
            **fields,
        )
        return status


def with_approved_text(
    plan: ExecutionPlan, deliverables: list[Deliverable], variants: list[ChannelVariant]
) -> tuple[ExecutionPlan, dict[str, dict[str, Any]]]:
    """What the actions read: each deliverable's approved variant (edited or as formatted)
    instead of the step's raw text; an email sent from a deliverable also gets its HTML part."""
    by_step = {v.deliverable: v for v in variants}
    overlay: dict[str, dict[str, Any]] = {}
    steps = {s.id: s for s in plan.steps}
    for d in deliverables:
        v = by_step.get(d.step_id)
        if v is None:
            continue
        tool = steps[d.step_id].tool
        text_field = {"translate": "translation", "summarize": "summary"}.get(tool, "body")
        fields: dict[str, Any] = {text_field: v.text}
        if tool == "write_content":
            fields["title"] = v.subject or v.title or ""
        if v.html:
            fields["html"] = v.html
        overlay[d.step_id] = fields
    new_steps = []
    for s in plan.steps:
        if s.tool == "send_email" and "html_body" not in s.inputs:
            src = {r.step for r in find_references(s.inputs.get("body"))}
            html_from = next((sid for sid in src if overlay.get(sid, {}).get("html")), None)
            if html_from is not None:
                s = s.model_copy(
                    update={
                        "inputs": {**s.inputs, "html_body": f"${{steps.{html_from}.output.html}}"}
                    }
                )
        new_steps.append(s)
    return plan.model_copy(update={"steps": new_steps}), overlay


def write_record(
    store: Store,
    task_id: str,
    *,
    outcome: str,
    approval: str | None = None,
    phase_ms: dict[str, float] | None = None,
    only_executor: str | None = None,
) -> ExecutionRecord:
    """Build the task's execution record from what is stored, and store it (an upsert; with
    ``only_executor``, only while that executor holds the task)."""
    task = store.get_task(task_id)
    old = store.execution_record(task_id)
    runs = store.step_runs(task_id)
    calls = store.llm_calls(task_id)
    assessments = store.assessments(task_id)
    approvals = store.approvals(task_id)
    finished = sorted(
        (r for r in runs if r.status is StepStatus.SUCCEEDED),
        key=lambda r: r.finished_at or task.updated_at,
    )
    merged_ms = dict(old.phase_ms) if old else {}
    merged_ms.update(task.plan.metadata.get("phase_ms", {}))
    merged_ms.update(phase_ms or {})
    decisions = [a for a in approvals if a.step_id and a.step_id.startswith(REVIEW_GATE)]
    last = decisions[-1] if decisions else None
    record = ExecutionRecord(
        task_id=task_id,
        request=task.request,
        plan=task.plan,
        tool_sequence=[r.tool for r in finished],
        steps=[
            {
                "step_id": r.step_id,
                "tool": r.tool,
                "status": r.status.value,
                "attempt": r.attempt,
                "duration_ms": r.duration_ms,
                "cost": r.cost,
            }
            for r in runs
        ],
        quality=[
            {
                "round": a.round,
                "trigger": trigger,
                "score": a.overall_score,
                "passed": a.passed,
                "dimensions": a.dimensions,
                "issues": len(a.issues),
                "judge_error": a.judge_error,
            }
            for trigger, a in assessments
        ],
        refinements=max(0, len(assessments) - 1),
        outcome=outcome,
        needs_human=task.needs_human,
        approval=approval
        or (last.status.value if last and last.status is not ApprovalStatus.PENDING else None),
        feedback=[f["text"] for f in store.feedback(task_id)],
        receipts={
            e.key.split(":", 1)[-1]: e.receipt for e in store.effects(task_id) if e.status == "done"
        },
        phase_ms=merged_ms,
        models=sorted({c.model for c in calls}),
        cost=round(task.total_cost, 6),
        business_metrics=task.plan.metadata.get("business_metrics") or {},
    )
    store.save_record(record, only_executor=only_executor)
    return record
