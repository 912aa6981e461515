"""Model gateway and embedded model figures.

    python bench/llm.py            # gateway overhead (scripted model), embedded model, MCP discovery

- gateway overhead: the same scripted FunctionModel called through ModelGateway.generate and
  through a bare Pydantic AI Agent.run, alternating, in one run; the difference per call is
  what the gateway adds (model lookup, retries loop, budget, usage record).
- embedded model: load time of the llama.cpp server, p50 latency and tokens/s of a small
  structured call.
- MCP discovery: mcp-server-time (stdio) and server-everything (stdio) discovered together.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_ai import Agent, NativeOutput
from pydantic_ai.messages import ModelResponse, TextPart
from pydantic_ai.models.function import FunctionModel

from intelligent_orchestrator.domain.models import LlmCall
from intelligent_orchestrator.llm import CallScope, ModelGateway, TaskBudget
from intelligent_orchestrator.settings import McpSettings, Settings
from intelligent_orchestrator.tools.mcp import discover


class City(BaseModel):
    city: str
    tags: list[str] = Field(max_length=3)


def _answer(messages: object, info: object) -> ModelResponse:
    return ModelResponse(parts=[TextPart('{"city": "Paris", "tags": ["capital"]}')])


async def gateway_overhead(home: Path, n: int = 400) -> dict[str, float]:
    model = FunctionModel(_answer)
    calls: list[LlmCall] = []

    async def sink(c: LlmCall) -> None:
        calls.append(c)

    gateway = ModelGateway(Settings(home=home), models={"local": model}, sink=sink)
    agent = Agent(model, output_type=NativeOutput(City))
    budget = TaskBudget(max_tokens=10**12)
    for _ in range(20):  # warm up both paths
        await gateway.generate(City, prompt="q", instructions="i", purpose="writer")
        await agent.run("q", instructions="i")
    via, bare = [], []
    for _ in range(n):
        t = time.perf_counter()
        await gateway.generate(
            City, prompt="q", instructions="i", purpose="writer", scope=CallScope(budget=budget)
        )
        via.append(time.perf_counter() - t)
        t = time.perf_counter()
        await agent.run("q", instructions="i")
        bare.append(time.perf_counter() - t)
    g, b = statistics.median(via) * 1e6, statistics.median(bare) * 1e6
    return {"gateway_p50_us": round(g), "bare_agent_p50_us": round(b), "overhead_us": round(g - b)}


async def embedded(home: Path, n: int = 10) -> dict[str, float]:
    gateway_calls: list[LlmCall] = []

    async def sink(c: LlmCall) -> None:
        gateway_calls.append(c)

    gateway = ModelGateway(Settings(home=home), sink=sink)
    t = time.perf_counter()
    await asyncio.to_thread(gateway.local_server)
    first_start = time.perf_counter() - t  # includes assembling the GGUF on a new home
    server = gateway.local_server()
    for i in range(n):
        await gateway.generate(
            City,
            prompt=f"Capital of country number {i % 5} in [France, Japan, Peru, Kenya, Canada]?",
            instructions="Answer in JSON with the city and up to three tags.",
            purpose="writer",
        )
    lat = [c.latency_ms for c in gateway_calls]
    tps = [c.output_tokens / (c.latency_ms / 1000) for c in gateway_calls]
    return {
        "first_start_s": round(first_start, 2),
        "server_load_s": round(server.load_seconds, 2),
        "structured_call_p50_ms": round(statistics.median(lat)),
        "output_tokens_p50": statistics.median(c.output_tokens for c in gateway_calls),
        "tokens_per_s_p50": round(statistics.median(tps), 1),
    }


async def mcp_discovery(tmp: Path) -> dict[str, float]:
    servers = {"time": {"command": sys.executable, "args": ["-m", "mcp_server_time"]}}
    if shutil.which("mcp-server-everything"):
        servers["everything"] = {"command": "mcp-server-everything"}
    cfg = tmp / "mcp.json"
    cfg.write_text(json.dumps({"mcpServers": servers}))
    async with await discover(cfg, McpSettings()) as report:
        return {
            "servers": len(report.servers),
            "tools": len(report.tools),
            "total_s": round(report.duration_seconds, 2),
            **{f"{k}_s": round(v.duration_seconds, 2) for k, v in report.servers.items()},
        }


async def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print("gateway overhead (scripted model):", await gateway_overhead(tmp / "h1"))
        print("embedded model:", await embedded(tmp / "h2"))
        print("MCP discovery:", await mcp_discovery(tmp))


if __name__ == "__main__":
    asyncio.run(main())
