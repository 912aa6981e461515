"""The ``orchestrator`` command."""

from __future__ import annotations

import logging
import sys

import typer
from rich.markup import escape

from ..errors import (
    ClarificationNeeded,
    ConfigError,
    NotFoundError,
    OrchestratorError,
    WorkflowValidationError,
)
from . import admin, evals, models, tasks
from .output import stderr

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Durable, approved workflows of tool calls."
)
app.command("plan")(tasks.plan)
app.command("run")(tasks.run)
app.command("status")(tasks.status)
app.command("approve")(tasks.approve)
app.command("reject")(tasks.reject)
app.command("revise")(tasks.revise)
app.command("show")(tasks.show)
app.command("cancel")(tasks.cancel)
app.command("rerun")(tasks.rerun)
app.command("history")(tasks.history)
app.command("tools")(admin.tools)
app.command("worker")(admin.worker)
app.command("serve")(admin.serve)
app.add_typer(admin.db_app, name="db")
app.add_typer(models.models_app, name="models")
app.add_typer(evals.eval_app, name="eval")


def main() -> None:
    """Entry point: domain errors become one clear line and an exit code, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        stderr.print("aborted")
        sys.exit(130)
    except ClarificationNeeded as exc:
        stderr.print(f"[yellow]clarification needed:[/] {escape(exc.question)}")
        sys.exit(4)
    except (ConfigError, WorkflowValidationError, NotFoundError) as exc:
        stderr.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except OrchestratorError as exc:
        stderr.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(1)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        raise
