"""``orchestrator models``: the configured models, and a live test of one."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer
from pydantic import BaseModel, Field
from rich.table import Table

from ..domain.models import LlmCall
from ..errors import LlmError
from ..llm import ModelGateway
from ..settings import load_settings
from .output import emit_json, stderr, stdout

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else.")]

models_app = typer.Typer(
    help="Configured models; `models test NAME` sends a tiny structured request.",
    invoke_without_command=True,
)


@models_app.callback()
def models(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """List the configured models and which purpose uses which."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings()
    purposes = {p: settings.model_for(p) for p in ("planner", "writer", "judge")}
    rows = []
    for name, cfg in sorted(settings.models.items()):
        rows.append(
            {
                "name": name,
                "provider": cfg.provider,
                "model": cfg.model,
                "base_url": cfg.base_url,
                "api_key_env": cfg.api_key_env,
                "api_key_set": bool(cfg.api_key()) if cfg.api_key_env else None,
                "input_price_per_million": cfg.input_price_per_million,
                "output_price_per_million": cfg.output_price_per_million,
                "context_size": cfg.context_size,
                "timeout_seconds": cfg.timeout_seconds,
                "fallback": cfg.fallback,
                "default": name == settings.llm.default_model,
                "purposes": [p for p, m in purposes.items() if m == name],
            }
        )
    if json_:
        emit_json({"data": rows, "count": len(rows)})
        return
    table = Table(title=f"{len(rows)} model(s)", title_justify="left")
    for col in ("name", "provider", "model", "endpoint", "$/1M in/out", "fallback", "used for"):
        table.add_column(col)
    for r in rows:
        endpoint = "embedded (llama.cpp)" if r["provider"] == "local" else (r["base_url"] or "")
        if r["api_key_env"]:
            endpoint += f" key ${r['api_key_env']}" + ("" if r["api_key_set"] else " (unset!)")
        used = ", ".join((["default"] if r["default"] else []) + r["purposes"])
        table.add_row(
            r["name"],
            r["provider"],
            r["model"],
            endpoint,
            f"{r['input_price_per_million']:g} / {r['output_price_per_million']:g}",
            r["fallback"] or "",
            used,
        )
    stdout.print(table)


class Probe(BaseModel):
    capital: str = Field(max_length=60)
    country: str = Field(max_length=60)


@models_app.command("test")
def probe_model(
    name: Annotated[str, typer.Argument(help="A configured model name.")],
    json_: JsonOpt = False,
) -> None:
    """Send a tiny structured request; report load time, latency and tokens/s."""
    settings = load_settings()
    if name not in settings.models:
        known = ", ".join(sorted(settings.models))
        stderr.print(f"[red]error:[/] unknown model {name!r} (configured: {known})")
        raise typer.Exit(2)
    calls: list[LlmCall] = []

    async def record(call: LlmCall) -> None:
        calls.append(call)

    async def go() -> dict[str, object]:
        gateway = ModelGateway(settings, sink=record)
        t0 = time.perf_counter()
        await gateway.model(name)  # the embedded model loads here
        load = time.perf_counter() - t0
        out = await gateway.generate(
            Probe,
            prompt="What is the capital of France? Answer with the capital and the country.",
            instructions="Answer in JSON.",
            purpose="test",
            model=name,
            max_tokens=60,
        )
        call = calls[-1]
        return {
            "model": name,
            "ok": True,
            "output": out.model_dump(),
            "load_seconds": round(load, 3),
            "latency_ms": round(call.latency_ms, 1),
            "input_tokens": call.input_tokens,
            "output_tokens": call.output_tokens,
            "tokens_per_second": round(call.output_tokens / (call.latency_ms / 1000), 1)
            if call.latency_ms
            else None,
            "cost": call.cost,
        }

    try:
        report = asyncio.run(go())
    except LlmError as exc:
        if json_:
            emit_json({"model": name, "ok": False, "error": str(exc)})
        else:
            stderr.print(f"[red]model {name} failed:[/] {exc}")
        raise typer.Exit(1) from None
    if json_:
        emit_json(report)
        return
    stdout.print(
        f"[green]ok[/] {name}: {report['output']} — load {report['load_seconds']} s, "
        f"{report['latency_ms']} ms, {report['input_tokens']}+{report['output_tokens']} tokens, "
        f"{report['tokens_per_second']} tokens/s, cost {report['cost']:.6f} USD"
    )
