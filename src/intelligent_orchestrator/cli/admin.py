"""tools, db, serve, worker."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
from rich.table import Table

from ..orchestrator import Orchestrator, upgrade_database
from ..settings import load_settings
from ._common import open_orchestrator, run_with
from .output import emit_json, stderr, stdout

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else.")]

db_app = typer.Typer(no_args_is_help=True, help="Database migrations.")


def tools(
    json_: JsonOpt = False,
    refresh: Annotated[
        bool,
        typer.Option("--refresh", help="Discover the MCP servers' tools again (starts them)."),
    ] = False,
) -> None:
    """List the tools: built-in, plugins, and the MCP servers' tools (from the last discovery)."""

    async def go(orch: Orchestrator) -> None:
        # a failing server is logged to stderr and reported; its tools are left out
        catalogue = await orch.tool_catalogue(refresh=refresh)
        specs = catalogue["tools"]
        mcp = catalogue["mcp"]
        if json_:
            emit_json(
                {
                    "data": [s.model_dump(mode="json") for s in specs],
                    "count": len(specs),
                    "mcp": mcp,
                }
            )
            return
        if mcp is not None:
            how = "cached" if mcp["cached"] else "discovered now"
            stderr.print(
                f"MCP: {len(mcp['servers'])} server(s), {how} "
                f"({mcp['duration_seconds']} s; `--refresh` discovers again)"
            )
            for name, server in mcp["servers"].items():
                if server["error"]:
                    stderr.print(f"  [red]{name}[/]: {server['error']}")
        table = Table(title=f"{len(specs)} tool(s)", title_justify="left")
        for col in ("tool", "category", "source", "side effects", "inputs", "description"):
            table.add_column(col)
        for s in specs:
            props = s.input_schema.get("properties", {})
            required = set(s.input_schema.get("required", []))
            inputs = ", ".join(f"{k}{'*' if k in required else ''}" for k in props)
            table.add_row(
                s.tool_id,
                s.category,
                s.source,
                "yes" if s.side_effects else "",
                inputs,
                s.description,
            )
        stdout.print(table)

    run_with(go)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema (idempotent)."""
    rev = upgrade_database(load_settings())
    stdout.print(f"database at revision {rev}")


@db_app.command("current")
def db_current(json_: JsonOpt = False) -> None:
    """Show the schema revision of the database."""
    from ..storage import create_engine, current_revision, head_revision

    settings = load_settings()
    engine = create_engine(settings.app_database_url)
    try:
        rev = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    if json_:
        emit_json({"current": rev, "head": head})
    else:
        stdout.print(f"current {rev or '(empty)'}, head {head}")


async def _serve_forever(orch: Orchestrator, kind: str, executor_id: str | None) -> None:
    host = await orch.start_engine(kind=kind, listen=True, executor_id=executor_id)
    stderr.print(f"{kind} [bold]{host.executor_id}[/] running; Ctrl-C stops it")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def worker(
    executor_id: Annotated[
        str | None, typer.Option("--executor-id", help="Stable unique id of this worker.")
    ] = None,
) -> None:
    """Run tasks from the shared queue until stopped."""

    async def go() -> None:
        orch = open_orchestrator()
        try:
            await _serve_forever(orch, "worker", executor_id)
        finally:
            await orch.close()

    asyncio.run(go())


def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    work: Annotated[
        bool, typer.Option("--work/--no-work", help="Also run queued tasks in this process.")
    ] = True,
    executor_id: Annotated[str | None, typer.Option("--executor-id")] = None,
) -> None:
    """Serve the HTTP API (and run tasks unless --no-work)."""
    import uvicorn

    from ..api import create_app

    settings = load_settings()
    app = create_app(settings, work=work, executor_id=executor_id)
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())
