"""MCP servers as tools: real servers over stdio and streamable HTTP, and deliberately broken ones.

One discovery of every server (good and broken) is shared by the module (one event loop for the
module, since a server connection belongs to the loop that opened it); tests that need a fresh
connection make their own :class:`McpServer`.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio
from mcp import types as mcp_types

from intelligent_orchestrator.errors import ConfigError, ToolExecutionError, ToolTimeoutError
from intelligent_orchestrator.settings import McpSettings, ToolSettings
from intelligent_orchestrator.tools import Tool, ToolContext, ToolRegistry, tool
from intelligent_orchestrator.tools.mcp import (
    DiscoveryReport,
    HttpServerConfig,
    McpServer,
    StdioServerConfig,
    discover,
    load_mcp_config,
    parse_mcp_config,
    register_mcp_tools,
    tool_from_mcp,
    tool_id_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SERVERS = Path(__file__).with_name("servers")
PY = sys.executable
# Generous: a Python MCP server spends ~2 s of CPU importing the SDK, and CI machines are busy.
STARTUP = 30.0
CALL = 10.0
MARGIN = 5.0


def _everything_command() -> list[str]:
    exe = shutil.which("mcp-server-everything")
    if exe:
        return [exe]
    npx = shutil.which("npx")
    if npx:
        return [npx, "-y", "@modelcontextprotocol/server-everything"]
    pytest.skip(
        "needs @modelcontextprotocol/server-everything: npm install -g @modelcontextprotocol/server-everything"
    )


def _time_command() -> list[str]:
    if importlib.util.find_spec("mcp_server_time") is None:
        pytest.skip("needs mcp-server-time: pip install mcp-server-time")
    return [PY, "-m", "mcp_server_time", "--local-timezone", "UTC"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _new_processes(before: set[int]) -> list[psutil.Process]:
    """Live (non-zombie) descendants of this test process that were not there before."""
    alive = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            continue
    return alive


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


class HttpEverything:
    """``mcp-server-everything streamableHttp`` on a free port (it listens on all interfaces)."""

    def __init__(self, log: Path, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self._log = log.open("ab")
        env = {**os.environ, "PORT": str(self.port)}
        self.proc = subprocess.Popen(
            [*_everything_command(), "streamableHttp"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"HTTP server exited: {log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"HTTP server did not listen on {self.port}: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def http_everything(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpEverything]:
    server = HttpEverything(tmp_path_factory.mktemp("http") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mcp_json(tmp_path_factory: pytest.TempPathFactory, http_everything: HttpEverything) -> Path:
    home = tmp_path_factory.mktemp("mcp")
    everything = _everything_command()
    servers: dict[str, Any] = {
        "time": {"command": _time_command()[0], "args": _time_command()[1:]},
        "everything": {"command": everything[0], "args": [*everything[1:], "stdio"]},
        "everything_http": {"url": http_everything.url},
        "exit": {"command": PY, "args": [str(SERVERS / "broken_exit.py")]},
        "garbage": {"command": PY, "args": [str(SERVERS / "broken_garbage.py")]},
        "hang": {"command": PY, "args": [str(SERVERS / "broken_hang.py")]},
        "crash": {
            "command": PY,
            "args": [str(SERVERS / "broken_crash.py")],
            "env": {"CRASH_MARKER": str(home / "crashed.marker")},
        },
        "bad": {"command": PY, "args": [str(SERVERS / "broken_badcontent.py")]},
    }
    path = home / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


SETTINGS = McpSettings(
    startup_timeout_seconds=STARTUP, call_timeout_seconds=CALL, max_result_bytes=100_000
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def report(
    mcp_json: Path, http_everything: HttpEverything
) -> AsyncIterator[tuple[DiscoveryReport, float]]:
    before = _descendants() | {http_everything.proc.pid}
    started = time.monotonic()
    rep = await discover(mcp_json, SETTINGS)
    elapsed = time.monotonic() - started
    print(f"\ndiscovery of {len(rep.servers)} servers took {elapsed:.2f} s")
    for name, s in rep.servers.items():
        print(
            f"  {name:16} {s.transport:5} {s.duration_seconds:6.2f} s  {len(s.tool_ids):2} tools  {s.error or ''}"
        )
    try:
        yield rep, elapsed
    finally:
        await rep.aclose()
        leaked = _new_processes(before)
        assert not leaked, f"MCP server processes left running: {[p.cmdline() for p in leaked]}"


def make_ctx(workspace: Path, **mcp: Any) -> ToolContext:
    settings = McpSettings(
        **{"startup_timeout_seconds": STARTUP, "call_timeout_seconds": CALL, **mcp}
    )
    return ToolContext(
        task_id="task1",
        step_id="step1",
        workspace=workspace,
        idempotency_key="task1:step1",
        config=ToolSettings(mcp=settings),
    )


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return make_ctx(tmp_path)


# Discovery -------------------------------------------------------------------------------------
async def test_discovery_isolates_broken_servers(report: tuple[DiscoveryReport, float]) -> None:
    rep, elapsed = report
    assert elapsed < STARTUP + MARGIN
    assert set(rep.errors) == {"exit", "garbage"}
    assert "failed to start" in rep.errors["exit"]
    assert "closed the connection" in rep.errors["exit"]
    assert "broken_exit: missing configuration" in rep.errors["exit"]  # its stderr is quoted
    assert "non-JSON-RPC output" in rep.errors["garbage"]
    assert "does not speak JSON-RPC" in rep.errors["garbage"]
    ids = set(rep.tool_ids)
    assert {
        "time_get_current_time",
        "everything_echo",
        "everything_get_sum",
        "everything_http_echo",
        "hang_sleep_forever",
        "crash_flaky",
        "bad_video",
    } <= ids
    for name in ("time", "everything", "everything_http", "hang", "crash", "bad"):
        server = rep.servers[name]
        assert server.ok
        assert server.tool_ids
        assert 0 < server.duration_seconds < STARTUP
    assert rep.servers["everything_http"].transport == "http"


async def test_time_server_over_stdio(
    report: tuple[DiscoveryReport, float], ctx: ToolContext
) -> None:
    rep, _ = report
    t = rep.tool("time_get_current_time")
    assert t.spec.source == "mcp:time"
    assert t.spec.category == "time"
    assert t.spec.side_effects is False
    assert t.needs_approval({}) is False
    assert t.spec.input_schema["required"] == ["timezone"]
    structured_schema = t.spec.output_schema["properties"]["structured"]["anyOf"][0]
    assert "datetime" in structured_schema["properties"]
    assert t.spec.estimated_cost == 0

    out = await t.invoke({"timezone": "UTC"}, ctx)
    assert out["truncated"] is False
    assert out["structured"]["timezone"] == "UTC"
    moment = datetime.fromisoformat(out["structured"]["datetime"])
    assert abs((moment - datetime.now(UTC)).total_seconds()) < 120
    assert json.loads(out["text"])["timezone"] == "UTC"

    with pytest.raises(ToolExecutionError, match=r"Invalid timezone|invalid|Unknown") as err:
        await t.invoke({"timezone": "Mars/Olympus_Mons"}, ctx)
    assert not err.value.transient


async def test_everything_over_stdio(
    report: tuple[DiscoveryReport, float], ctx: ToolContext
) -> None:
    rep, _ = report
    echo = rep.tool("everything_echo")
    assert echo.spec.side_effects is False  # the server marks echo read-only
    out = await echo.invoke({"message": "hello stdio"}, ctx)
    assert out == {
        "text": "Echo: hello stdio",
        "structured": None,
        "attachments": [],
        "truncated": False,
    }
    total = await rep.tool("everything_get_sum").invoke({"a": 2, "b": 40}, ctx)
    assert "42" in total["text"]


async def test_everything_over_streamable_http(
    report: tuple[DiscoveryReport, float], ctx: ToolContext, tmp_path: Path
) -> None:
    rep, _ = report
    out = await rep.tool("everything_http_echo").invoke({"message": "hello http"}, ctx)
    assert out["text"] == "Echo: hello http"
    image = await rep.tool("everything_http_get_tiny_image").invoke({}, ctx)
    [att] = [a for a in image["attachments"] if a["type"] == "image"]
    assert att["mime_type"] == "image/png"
    saved = tmp_path / att["artifact"]
    assert saved.read_bytes().startswith(b"\x89PNG")
    assert saved.stat().st_size == att["size"]
    assert [a.path for a in ctx.artifacts] == [att["artifact"]]


# Failures of one call ---------------------------------------------------------------------------
async def test_hanging_call_times_out_and_next_call_reconnects(
    report: tuple[DiscoveryReport, float], tmp_path: Path
) -> None:
    rep, _ = report
    manager = rep.managers["hang"]
    connects = manager.connects
    ctx = make_ctx(tmp_path, call_timeout_seconds=1.5)
    started = time.monotonic()
    with pytest.raises(ToolTimeoutError, match=r"no answer within 1.5 s") as err:
        await rep.tool("hang_sleep_forever").invoke({}, ctx)
    assert time.monotonic() - started < 1.5 + 2.5
    assert err.value.transient
    assert err.value.tool_id == "hang_sleep_forever"
    assert not manager.connected  # torn down; reconnect on next use
    assert (await rep.tool("hang_ping").invoke({}, make_ctx(tmp_path)))["text"] == "pong"
    assert manager.connects == connects + 1


async def test_crash_mid_call_then_reconnect(
    report: tuple[DiscoveryReport, float], ctx: ToolContext
) -> None:
    rep, _ = report
    manager = rep.managers["crash"]
    connects = manager.connects
    flaky = rep.tool("crash_flaky")
    with pytest.raises(ToolExecutionError, match="connection lost") as err:
        await flaky.invoke({"message": "first"}, ctx)
    assert err.value.transient
    assert (await flaky.invoke({"message": "second"}, ctx))["text"] == "ok: second"
    assert manager.connects == connects + 1


async def test_is_error_result_keeps_the_connection(
    report: tuple[DiscoveryReport, float], ctx: ToolContext
) -> None:
    rep, _ = report
    manager = rep.managers["hang"]
    await rep.tool("hang_ping").invoke({}, ctx)
    connects = manager.connects
    with pytest.raises(ToolExecutionError, match="refused: not today") as err:
        await rep.tool("hang_fail").invoke({"reason": "not today"}, ctx)
    assert not err.value.transient
    assert manager.connected
    assert manager.connects == connects
    assert rep.tool("hang_fail").spec.side_effects is True  # not marked read-only → needs approval


async def test_large_results_are_truncated(
    report: tuple[DiscoveryReport, float], tmp_path: Path
) -> None:
    rep, _ = report
    ctx = make_ctx(tmp_path, max_result_bytes=1000)
    out = await rep.tool("hang_big").invoke({"size": 200_000}, ctx)
    assert out["truncated"] is True
    assert len(out["text"].encode()) <= 1000
    assert out["structured"] is None
    small = await rep.tool("everything_echo").invoke(
        {"message": "é" * 50}, make_ctx(tmp_path, max_result_bytes=21)
    )
    assert small["truncated"] is True
    assert small["text"] == "Echo: " + "é" * 7
    image = await rep.tool("everything_get_tiny_image").invoke(
        {}, make_ctx(tmp_path, max_result_bytes=200)
    )
    assert image["truncated"] is True
    assert [a.get("omitted") for a in image["attachments"] if a["type"] == "image"] == [True]


@pytest.mark.parametrize(
    ("tool_id", "message"),
    [
        ("bad_video", "invalid result from the server: unexpected content block type 'video'"),
        (
            "bad_not_a_result",
            "invalid result from the server: field 'content': Input should be a valid list",
        ),
        ("bad_bad_base64", "not valid base64"),
    ],
)
async def test_malformed_results_are_tool_errors(
    report: tuple[DiscoveryReport, float], ctx: ToolContext, tool_id: str, message: str
) -> None:
    rep, _ = report
    with pytest.raises(ToolExecutionError, match=message) as err:
        await rep.tool(tool_id).invoke({}, ctx)
    assert not err.value.transient
    # The stream is still in sync: the same session answers the next call.
    assert (await rep.tool("bad_garbage_then_ok").invoke({}, ctx))["text"] == "fine"
    assert rep.managers["bad"].connects == 1


# Connection manager on its own ---------------------------------------------------------------------
async def test_unknown_command_and_unreachable_url_fail_fast() -> None:
    started = time.monotonic()
    async with McpServer(
        StdioServerConfig(name="nope", command="no-such-mcp-server-xyz")
    ) as server:
        with pytest.raises(ToolExecutionError, match="'no-such-mcp-server-xyz' not found"):
            await server.call_tool("anything", {})
    async with McpServer(
        HttpServerConfig(name="down", url=f"http://127.0.0.1:{_free_port()}/mcp")
    ) as server:
        with pytest.raises(ToolExecutionError, match=r"failed to start: .*(Connect|connect)"):
            await server.list_tools()
    assert time.monotonic() - started < 10


async def test_http_server_restart_reconnects(tmp_path: Path) -> None:
    first = HttpEverything(tmp_path / "http.log")
    server = McpServer(HttpServerConfig(name="web", url=first.url), startup_timeout_seconds=STARTUP)
    try:
        assert (await server.call_tool("echo", {"message": "a"}, timeout=CALL)).text == "Echo: a"
        first.stop()
        started = time.monotonic()
        with pytest.raises(ToolExecutionError) as err:
            await server.call_tool("echo", {"message": "b"}, timeout=CALL)
        assert err.value.transient
        assert time.monotonic() - started < CALL + 3
        second = HttpEverything(tmp_path / "http2.log", port=first.port)
        try:
            assert (
                await server.call_tool("echo", {"message": "c"}, timeout=CALL)
            ).text == "Echo: c"
            assert server.connects == 2
        finally:
            await server.close()
            second.stop()
    finally:
        await server.close()
        first.stop()


BAD = StdioServerConfig(name="bad", command=PY, args=[str(SERVERS / "broken_badcontent.py")])


async def test_concurrent_first_calls_share_one_connection() -> None:
    async with McpServer(BAD, startup_timeout_seconds=STARTUP) as server:
        results = await asyncio.gather(*(server.call_tool("garbage_then_ok", {}) for _ in range(5)))
        assert [r.text for r in results] == ["fine"] * 5
        assert server.connects == 1


async def test_concurrent_callers_share_one_failed_start(tmp_path: Path) -> None:
    starts = tmp_path / "starts.log"
    config = StdioServerConfig(
        name="exit",
        command=PY,
        args=[str(SERVERS / "broken_exit.py")],
        env={"START_LOG": str(starts)},
    )
    async with McpServer(config, startup_timeout_seconds=STARTUP) as server:
        errors = await asyncio.gather(
            *(server.call_tool("x", {}, tool_id=f"exit_{i}") for i in range(3)),
            return_exceptions=True,
        )
        assert all(
            isinstance(e, ToolExecutionError) and "failed to start" in str(e) for e in errors
        )
        assert [e.tool_id for e in errors if isinstance(e, ToolExecutionError)] == [
            "exit_0",
            "exit_1",
            "exit_2",
        ]
        assert starts.read_text() == "started\n"  # one attempt, its verdict shared
        with pytest.raises(ToolExecutionError, match="failed to start"):
            await server.call_tool("x", {})  # a later call tries again
        assert starts.read_text() == "started\n" * 2


async def test_server_that_died_while_idle_is_restarted_before_the_call() -> None:
    before = _descendants()
    async with McpServer(BAD, startup_timeout_seconds=STARTUP) as server:
        await server.connect()
        [proc] = _new_processes(before)
        proc.kill()
        for _ in range(200):  # up to 10 s
            if not server.connected:
                break
            await asyncio.sleep(0.05)
        assert not server.connected  # end of stream noticed without a call
        assert (await server.call_tool("garbage_then_ok", {})).text == "fine"  # no error surfaces
        assert server.connects == 2
    assert _new_processes(before) == []


async def test_close_kills_the_subprocess_even_mid_call() -> None:
    before = _descendants()
    server = McpServer(
        StdioServerConfig(name="hang", command=PY, args=[str(SERVERS / "broken_hang.py")]),
        startup_timeout_seconds=STARTUP,
    )
    await server.connect()
    mine = _new_processes(before)
    assert len(mine) >= 1
    assert any("broken_hang.py" in " ".join(p.cmdline()) for p in mine)
    with pytest.raises(ToolTimeoutError):
        await server.call_tool("sleep_forever", {}, timeout=0.5)
    await server.close()
    assert not server.connected
    assert _new_processes(before) == []


# Registration ----------------------------------------------------------------------------------
async def test_register_refuses_clashing_ids(report: tuple[DiscoveryReport, float]) -> None:
    rep, _ = report

    @tool("time_get_current_time")
    async def impostor() -> str:
        """Holds the id first."""
        return "x"

    taken = ToolRegistry([impostor])
    with pytest.raises(
        ConfigError,
        match=r"'time_get_current_time' \(from mcp:time, already registered by builtin\)",
    ):
        register_mcp_tools(taken, rep)
    assert len(taken) == 1  # all or nothing

    registry = ToolRegistry()
    ids = register_mcp_tools(registry, rep)
    assert ids == rep.tool_ids
    assert len(registry) == len(ids)
    assert registry.get("everything_http_echo").spec.source == "mcp:everything_http"


async def test_ids_that_clash_between_servers_are_reported(tmp_path: Path) -> None:
    bad = {"command": PY, "args": [str(SERVERS / "broken_badcontent.py")]}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"dup": bad, "Dup": bad}}))
    async with await discover(path, SETTINGS) as rep:
        assert rep.errors == {}
        assert rep.tools == []
        assert len(rep.problems) == 4
        assert (
            "tool id 'dup_video' clash: mcp:dup tool 'video' and mcp:Dup tool 'video'"
            in rep.problems[0]
        )


async def test_tool_mapping_without_a_server() -> None:
    server = McpServer(StdioServerConfig(name="My-Files", command="unused"))
    mcp_tool = mcp_types.Tool(
        name="readTextFile",
        description="Read a file.",
        input_schema={
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
        output_schema={
            "type": "object",
            "properties": {"entry": {"$ref": "#/definitions/Entry"}},
            "definitions": {
                "Entry": {"type": "object", "properties": {"size": {"type": "integer"}}}
            },
        },
        annotations=mcp_types.ToolAnnotations(destructive_hint=False),
    )
    t = tool_from_mcp(server, mcp_tool, SETTINGS)
    assert isinstance(t, Tool)
    assert t.tool_id == "my_files_read_text_file"
    assert t.spec.category == "files"
    assert t.spec.side_effects is True  # not marked read-only
    assert t.spec.timeout_seconds == STARTUP + CALL + 5
    schema = t.spec.output_schema
    assert schema["$defs"]["Entry"]["properties"]["size"]["type"] == "integer"
    assert (
        schema["properties"]["structured"]["anyOf"][0]["properties"]["entry"]["$ref"]
        == "#/$defs/Entry"
    )
    assert tool_id_for("1password", "get") == "mcp_1password_get"
    assert tool_id_for("café", "HTTPRequest") == "cafe_http_request"
    with pytest.raises(ValueError, match="invalid input schema"):
        tool_from_mcp(
            server,
            mcp_types.Tool(name="x", input_schema={"type": "object", "properties": 3}),
            SETTINGS,
        )


# Configuration ---------------------------------------------------------------------------------
async def test_config_reads_both_kinds_of_server(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "time": {
                        "command": "mcp-server-time",
                        "args": ["--local-timezone", "UTC"],
                        "env": {"TZ": "UTC"},
                    },
                    "docs": {
                        "type": "http",
                        "url": "https://example.test/mcp",
                        "headers": {"Authorization": "Bearer s3cret"},
                    },
                    "off": {"command": "x", "disabled": True},
                    "cline": {"command": "y", "autoApprove": [], "comand": "typo"},
                }
            }
        )
    )
    cfg = load_mcp_config(path)
    assert list(cfg.servers) == ["time", "docs", "cline"]
    time_server = cfg.servers["time"]
    assert isinstance(time_server, StdioServerConfig)
    assert time_server.args == ["--local-timezone", "UTC"]
    docs = cfg.servers["docs"]
    assert isinstance(docs, HttpServerConfig)
    assert docs.headers == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in repr(docs)
    assert cfg.warnings == [
        "server 'off': disabled, skipped",
        "server 'cline': unknown key 'comand' ignored",
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", r"not valid JSON \(line 1, column 2"),
        ("[]", "expected a JSON object with 'mcpServers'"),
        ("{}", "missing 'mcpServers'"),
        (
            '{"mcpServers": {"a": {"args": []}}}',
            r"server 'a': missing field 'command' \(stdio server\) or 'url'",
        ),
        (
            '{"mcpServers": {"a": {"command": "x", "args": "--flag"}}}',
            r"server 'a': field 'args': Input should be a valid list",
        ),
        (
            '{"mcpServers": {"a": {"command": "x", "env": {"N": 1}}}}',
            r"server 'a': field 'env.N': Input should be a valid string",
        ),
        (
            '{"mcpServers": {"b": {"url": "ftp://x/mcp"}}}',
            r"server 'b': field 'url': Value error, must be an http",
        ),
        (
            '{"mcpServers": {"b": {"url": "http://x/mcp", "command": "y"}}}',
            "server 'b': give either 'command'",
        ),
        (
            '{"mcpServers": {"b": {"type": "sse", "url": "http://x/sse"}}}',
            "server 'b': field 'type': the SSE transport is not supported",
        ),
        ('{"mcpServers": {"a": 3, "b": {"command": ""}}}', r"2 problem\(s\)"),
    ],
)
async def test_config_errors_name_server_and_field(
    tmp_path: Path, document: str, message: str
) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(document)
    with pytest.raises(ConfigError, match=message) as err:
        load_mcp_config(path)
    assert err.value.setting == "tools.mcp.config_file"


async def test_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_mcp_config(tmp_path / "nope.json")
    assert (
        parse_mcp_config({"servers": {"a": {"command": "x"}}}).servers["a"].name == "a"
    )  # VS Code's key


async def test_base64_attachment_round_trip(tmp_path: Path) -> None:
    # The artifact a binary attachment becomes holds the decoded bytes.
    from intelligent_orchestrator.tools.mcp.client import _capped
    from intelligent_orchestrator.tools.mcp.discovery import result_output

    png = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
    result = mcp_types.CallToolResult(
        content=[
            mcp_types.TextContent(type="text", text="look"),
            mcp_types.ImageContent(
                type="image", data=base64.b64encode(png).decode(), mime_type="image/png"
            ),
        ]
    )
    ctx = make_ctx(tmp_path)
    out = result_output(_capped(result, 10_000), ctx, tool_id="srv_img")
    assert out["text"] == "look"
    assert out["truncated"] is False
    [att] = out["attachments"]
    assert (tmp_path / att["artifact"]).read_bytes() == png
    assert att["artifact"].endswith(".png")
