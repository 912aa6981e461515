"""run, status, approve, reject, cancel, history."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live

from ..domain.models import ExecutionPlan, ExecutionResult, TaskStatus
from ..domain.workflow import load_workflow_file
from ..errors import ClarificationNeeded
from ..examples import example_path, install_example_data
from ..orchestrator import Orchestrator
from ..planning import validate_plan
from ._common import run_with
from .output import (
    emit_json,
    exit_code,
    print_plan,
    print_review,
    stderr,
    stdout,
    steps_table,
    tasks_table,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else.")]


async def _watch(orch: Orchestrator, task_id: str, *, show: bool) -> ExecutionResult:
    if not show:
        return await orch.wait(task_id)
    with Live(console=stderr, refresh_per_second=8, transient=True) as live:

        def update(result: ExecutionResult) -> None:
            live.update(steps_table(result))

        return await orch.wait(task_id, on_progress=update)


async def _finish(orch: Orchestrator, result: ExecutionResult, *, json_: bool) -> None:
    review = await orch.review(result.task.task_id) if result.task.phase is not None else None
    if json_:
        if review is None:
            emit_json(result)
        else:
            emit_json(result.model_dump(mode="json") | {"review": review.model_dump(mode="json")})
    elif review is not None:
        stdout.print(steps_table(result))
        print_review(review)
        if result.task.error:
            stdout.print(f"[red]{result.task.error}[/]")
    else:
        stdout.print(steps_table(result))
        status = result.task.status
        if status is TaskStatus.AWAITING_APPROVAL:
            stdout.print(
                f"waiting for approval: [bold]orchestrator approve {result.task.task_id}[/] "
                f"or [bold]orchestrator reject {result.task.task_id} --comment '...'[/]"
            )
        elif result.task.error:
            stdout.print(f"[red]{result.task.error}[/]")
        for a in result.artifacts:
            stdout.print(
                f"artifact [bold]{a.path}[/] ({a.media_type}, {a.size} bytes) from step {a.step_id}"
            )
    raise typer.Exit(exit_code(result.task.status))


def plan(
    request: Annotated[str, typer.Argument(help="What you want done, in plain language.")],
    json_: JsonOpt = False,
    model: Annotated[
        str | None, typer.Option("--model", help="A configured model (default: llm.planner).")
    ] = None,
) -> None:
    """Plan a request: print the steps, their parallel branches and the reasoning."""

    async def go(orch: Orchestrator) -> None:
        result = await orch.plan(request, model=model)
        if json_:
            emit_json(result)
        else:
            print_plan(result)
        if result.clarification is not None:
            raise typer.Exit(4)

    run_with(go)


def run(
    request: Annotated[
        str | None, typer.Argument(help="A plain-language request (or use --plan/--example).")
    ] = None,
    plan: Annotated[
        Path | None, typer.Option("--plan", "-p", help="Workflow file (YAML or JSON).")
    ] = None,
    example: Annotated[
        str | None,
        typer.Option("--example", help="Run a bundled example workflow (copies its sample data)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Run here and show live progress until done or parked.")
    ] = False,
    json_: JsonOpt = False,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Approve every gate of this task.")
    ] = False,
    model: Annotated[
        str | None, typer.Option("--model", help="Planner model for a request.")
    ] = None,
) -> None:
    """Run a request (planned first), a workflow file or a bundled example as a durable task."""

    if sum(x is not None for x in (request, plan, example)) != 1:
        raise typer.BadParameter('give exactly one of "REQUEST", --plan FILE or --example NAME')

    async def go(orch: Orchestrator) -> None:
        if request is not None:
            await _run_request(
                orch, request, wait=wait, json_=json_, auto_approve=auto_approve, model=model
            )
            return
        if example is not None:
            path = example_path(example)
            install_example_data(orch.settings.workspace)
        else:
            assert plan is not None
            path = plan
        workflow = load_workflow_file(path)
        validate_plan(workflow, orch.registry)
        if not wait:
            task = await orch.submit(workflow, auto_approve=auto_approve, run_here=False)
            await _queued(orch, task.task_id, task.status, json_=json_)
            return
        await orch.start_engine(kind="cli", listen=False)
        task = await orch.submit(workflow, auto_approve=auto_approve, run_here=True)
        if not json_:
            stderr.print(f"task [bold]{task.task_id}[/]")
        result = await _watch(orch, task.task_id, show=not json_ and stderr.is_terminal)
        await _finish(orch, result, json_=json_)

    run_with(go)


async def _queued(orch: Orchestrator, task_id: str, status: TaskStatus, *, json_: bool) -> None:
    if json_:
        emit_json({"task_id": task_id, "status": status.value})
    else:
        stdout.print(task_id)
    if not await orch.live_workers():
        stderr.print(
            "[yellow]no worker is running: the task is queued until one starts "
            "(orchestrator worker / orchestrator serve), or use --wait[/]"
        )


async def _run_request(
    orch: Orchestrator,
    request: str,
    *,
    wait: bool,
    json_: bool,
    auto_approve: bool,
    model: str | None,
) -> None:
    """A request's task plans itself in its durable run; show the plan, then the progress."""
    if wait:
        await orch.start_engine(kind="cli", listen=False)
    elif not await orch.live_workers():  # nobody to plan it now: queue it as it is
        task, _ = await orch.process_request(
            request, model=model, auto_approve=auto_approve, run_here=False, plan_timeout=None
        )
        await _queued(orch, task.task_id, task.status, json_=json_)
        return
    task, _ = await orch.process_request(
        request, model=model, auto_approve=auto_approve, run_here=wait, plan_timeout=None
    )
    if not json_:
        stderr.print(f"task [bold]{task.task_id}[/]")
    try:
        if not json_ and stderr.is_terminal:
            with stderr.status("planning the request (phases: discover, plan)…"):
                task = await orch.wait_for_plan(task.task_id)
        else:
            task = await orch.wait_for_plan(task.task_id)
    except ClarificationNeeded as exc:
        if json_:
            emit_json(
                exc.plan if isinstance(exc.plan, ExecutionPlan) else {"clarification": exc.question}
            )
        else:
            stderr.print(f"[yellow]{exc.question}[/]")
        raise typer.Exit(4) from None
    if json_:
        pass
    elif task.plan.pending:  # the workers are busy: the plan comes when one takes the task
        stderr.print("[yellow]not planned yet: the workers are busy; it is queued[/]")
    else:
        print_plan(task.plan, console=stderr)
    if not wait:
        await _queued(orch, task.task_id, task.status, json_=json_)
        return
    result = await _watch(orch, task.task_id, show=not json_ and stderr.is_terminal)
    await _finish(orch, result, json_=json_)


def status(task_id: str, json_: JsonOpt = False) -> None:
    """Show a task's steps, outputs and approvals."""

    async def go(orch: Orchestrator) -> None:
        result = await orch.status(task_id)
        if json_:
            emit_json(result)
        else:
            stdout.print(steps_table(result))
            if result.task.error:
                stdout.print(f"[red]{result.task.error}[/]")
            for a in result.approvals:
                who = f" by {a.decided_by}" if a.decided_by else ""
                note = f": {a.comment}" if a.comment else ""
                stdout.print(f"approval {a.step_id or '(task)'}: {a.status.value}{who}{note}")
        raise typer.Exit(exit_code(result.task.status))

    run_with(go)


async def _continue(orch: Orchestrator, task_id: str, json_: bool, *, here: bool) -> None:
    if here:
        result = await _watch(orch, task_id, show=not json_ and stderr.is_terminal)
        await _finish(orch, result, json_=json_)
    task = await orch.get_task(task_id)
    if json_:
        emit_json(task)
    else:
        stdout.print(f"task {task_id}: {task.status.value}")


EDITABLE = ("text", "title", "subject", "preheader", "meta_description", "hashtags")


def parse_edits(specs: list[str]) -> dict[str, dict[str, Any]]:
    """``NAME=TEXT``, ``NAME=@FILE`` or ``NAME.FIELD=...`` (field: text by default)."""
    edits: dict[str, dict[str, Any]] = {}
    for spec in specs:
        target, sep, value = spec.partition("=")
        if not sep or not target:
            raise typer.BadParameter(
                f"--edit {spec!r}: use NAME=TEXT, NAME=@FILE or NAME.FIELD=TEXT"
            )
        key, _, fld = target.partition(".")
        fld = fld or "text"
        if fld not in EDITABLE:
            raise typer.BadParameter(
                f"--edit {spec!r}: field {fld!r} is not one of {', '.join(EDITABLE)}"
            )
        if value.startswith("@"):
            try:
                value = Path(value[1:]).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise typer.BadParameter(
                    f"--edit {spec!r}: cannot read {value[1:]}: {why}"
                ) from None
        edits.setdefault(key, {})[fld] = (
            [h.strip() for h in value.split(",") if h.strip()] if fld == "hashtags" else value
        )
    return edits


def approve(
    task_id: str,
    comment: Annotated[str | None, typer.Option("--comment", "-m")] = None,
    step: Annotated[
        str | None, typer.Option("--step", help="Approve only this step's gate.")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who approves (stored).")] = None,
    edit: Annotated[
        list[str] | None,
        typer.Option(
            "--edit",
            help="Change a variant before approving: NAME=@FILE, NAME=TEXT or NAME.FIELD=TEXT "
            "(fields: text, title, subject, preheader, meta_description, hashtags). Repeatable.",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Approve a parked task; it resumes (here, when no worker is running)."""
    edits = parse_edits(edit or [])

    async def go(orch: Orchestrator) -> None:
        here = not await orch.live_workers()
        if here:
            await orch.start_engine(kind="cli", listen=False)
        await orch.approve(
            task_id, comment=comment, decided_by=by, step_id=step, run_here=here, edits=edits
        )
        await _continue(orch, task_id, json_, here=here)

    run_with(go)


def revise(
    task_id: str,
    comment: Annotated[str, typer.Option("--comment", "-m", help="What to change.")],
    channel: Annotated[
        list[str] | None,
        typer.Option("--channel", "-c", help="Revise only this variant (repeatable)."),
    ] = None,
    by: Annotated[str | None, typer.Option("--by")] = None,
    json_: JsonOpt = False,
) -> None:
    """Send a result back with feedback: it is refined, re-assessed and returns for review."""

    async def go(orch: Orchestrator) -> None:
        here = not await orch.live_workers()
        if here:
            await orch.start_engine(kind="cli", listen=False)
        await orch.revise(task_id, feedback=comment, decided_by=by, channels=channel, run_here=here)
        await _continue(orch, task_id, json_, here=here)

    run_with(go)


def show(
    task_id: str,
    channel: Annotated[
        str | None, typer.Option("--channel", "-c", help="Print this variant (e.g. linkedin).")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="With --channel: text or html.")
    ] = "text",
    json_: JsonOpt = False,
) -> None:
    """Show a request's result: quality, variants, files; or one variant's text."""
    if fmt not in ("text", "html"):
        raise typer.BadParameter("--format is text or html")

    async def go(orch: Orchestrator) -> None:
        review = await orch.review(task_id)
        if channel is None:
            if json_:
                emit_json(review)
            else:
                print_review(review)
            return
        variant = next((v for v in review.variants if channel in (v.key, v.channel)), None)
        if variant is None:
            have = ", ".join(v.key for v in review.variants) or "none yet"
            stderr.print(f"[red]no variant {channel!r}; this task has: {have}[/]")
            raise typer.Exit(1)
        if json_:
            emit_json(variant)
        elif fmt == "html":
            if variant.html is None:
                stderr.print(f"[red]the {variant.key} variant has no HTML form[/]")
                raise typer.Exit(1)
            sys.stdout.write(variant.html)
        else:
            head = variant.subject or variant.title
            if variant.channel in ("email", "newsletter") and head:
                sys.stdout.write(f"Subject: {head}\n\n")
            sys.stdout.write(variant.text.rstrip() + "\n")

    run_with(go)


def reject(
    task_id: str,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why: stored as feedback.")],
    by: Annotated[str | None, typer.Option("--by")] = None,
    json_: JsonOpt = False,
) -> None:
    """Reject a parked task; nothing gated runs and the feedback is stored."""

    async def go(orch: Orchestrator) -> None:
        task = await orch.reject(task_id, comment=comment, decided_by=by)
        if json_:
            emit_json(task)
        else:
            stdout.print(f"task {task_id}: {task.status.value}")

    run_with(go)


def rerun(
    task_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Run here and show progress.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Run a task's plan again as a new task."""

    async def go(orch: Orchestrator) -> None:
        if wait:
            await orch.start_engine(kind="cli", listen=False)
        task = await orch.rerun(task_id, run_here=wait)
        if not wait:
            if json_:
                emit_json({"task_id": task.task_id, "status": task.status.value})
            else:
                stdout.print(task.task_id)
            return
        result = await _watch(orch, task.task_id, show=not json_ and stderr.is_terminal)
        await _finish(orch, result, json_=json_)

    run_with(go)


def cancel(task_id: str, json_: JsonOpt = False) -> None:
    """Cancel a queued, running or parked task."""

    async def go(orch: Orchestrator) -> None:
        task = await orch.cancel(task_id)
        if json_:
            emit_json(task)
        else:
            stdout.print(f"task {task_id}: {task.status.value}")

    run_with(go)


def history(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20,
    status_: Annotated[TaskStatus | None, typer.Option("--status")] = None,
    json_: JsonOpt = False,
) -> None:
    """List recent tasks, newest first."""

    async def go(orch: Orchestrator) -> None:
        tasks, total = await orch.history(limit=limit, status=status_)
        if json_:
            emit_json({"data": [t.model_dump(mode="json") for t in tasks], "count": total})
        else:
            stdout.print(tasks_table(tasks, total))

    run_with(go)
