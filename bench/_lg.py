"""LangGraph on the same shapes: StateGraph, one node per step, checkpointer as stated per figure."""

from __future__ import annotations

import asyncio
import gc
import operator
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

from _common import (
    BATCH_IN_FLIGHT,
    BATCH_STEPS,
    BATCH_WORKFLOWS,
    CHAIN_STEPS,
    FANOUT_SLEEP,
    MIB,
    UNEVEN_CRITICAL_PATH,
    Node,
    RssSampler,
    chain,
    fanout,
    uneven,
)
from langgraph.graph import END, START, StateGraph

DURABILITY = "sync"  # every node's checkpoint is written before the next superstep starts


class ChainState(TypedDict):
    n: int


class DagState(TypedDict):
    done: Annotated[list[str], operator.add]


def _config(limit: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": uuid.uuid4().hex}, "recursion_limit": limit + 10}


def _sync_chain(n: int) -> StateGraph:
    g = StateGraph(ChainState)

    def step(state: ChainState) -> dict[str, int]:
        return {"n": state["n"] + 1}

    for i in range(n):
        g.add_node(f"s{i}", step)
    g.add_edge(START, "s0")
    for i in range(1, n):
        g.add_edge(f"s{i - 1}", f"s{i}")
    g.add_edge(f"s{n - 1}", END)
    return g


def _async_dag(nodes: list[Node]) -> StateGraph:
    """Async graph of ``nodes``: a node with several deps gets a waiting edge (runs once all
    have finished). LangGraph runs in supersteps: a node starts when the superstep before it
    ends, i.e. when the slowest node running then has finished."""
    g = StateGraph(DagState)

    def make(node: Node) -> Any:
        async def run(state: DagState) -> dict[str, list[str]]:
            if node.sleep:
                await asyncio.sleep(node.sleep)
            return {"done": [node.id]}

        return run

    has_child = {d for n in nodes for d in n.deps}
    for n in nodes:
        g.add_node(n.id, make(n))
    for n in nodes:
        if not n.deps:
            g.add_edge(START, n.id)
        elif len(n.deps) == 1:
            g.add_edge(n.deps[0], n.id)
        else:
            g.add_edge(list(n.deps), n.id)
        if n.id not in has_child:
            g.add_edge(n.id, END)
    return g


def _sqlite_conn(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")  # the same PRAGMAs as our engine's connections
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def chain_sqlite(home: Path) -> dict[str, Any]:
    """(a) sync graph, sync SqliteSaver (WAL + NORMAL), durability="sync"."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    home.mkdir(parents=True, exist_ok=True)
    conn = _sqlite_conn(home / "langgraph.sqlite")
    try:
        saver = SqliteSaver(conn)
        saver.setup()
        return _time_chain(saver)
    finally:
        conn.close()


def chain_postgres(url: str) -> dict[str, Any]:
    """(a) sync graph, PostgresSaver on one autocommit psycopg connection, durability="sync"."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    with psycopg.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
        saver = PostgresSaver(conn)
        saver.setup()
        return _time_chain(saver)


def _time_chain(saver: Any) -> dict[str, Any]:
    warm = _sync_chain(2).compile(checkpointer=saver)
    warm.invoke({"n": 0}, _config(2), durability=DURABILITY)
    app = _sync_chain(CHAIN_STEPS).compile(checkpointer=saver)
    t0 = time.perf_counter()
    out = app.invoke({"n": 0}, _config(CHAIN_STEPS), durability=DURABILITY)
    elapsed = time.perf_counter() - t0
    assert out["n"] == CHAIN_STEPS, out
    return {"seconds": elapsed, "us_per_step": elapsed / CHAIN_STEPS * 1e6}


async def single_async(shape: str, home: Path) -> dict[str, Any]:
    """(b)/(c) async graph with asyncio.sleep nodes, AsyncSqliteSaver (WAL + NORMAL), durability="sync"."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    nodes = fanout() if shape == "fanout" else uneven()
    home.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(str(home / "langgraph.sqlite"))
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        warm = _async_dag(chain(2)).compile(checkpointer=saver)
        await warm.ainvoke({"done": []}, _config(2), durability=DURABILITY)
        app = _async_dag(nodes).compile(checkpointer=saver)
        t0 = time.perf_counter()
        out = await app.ainvoke({"done": []}, _config(len(nodes)), durability=DURABILITY)
        elapsed = time.perf_counter() - t0
    finally:
        await conn.close()
    assert sorted(out["done"]) == sorted(n.id for n in nodes), out
    ideal = FANOUT_SLEEP if shape == "fanout" else UNEVEN_CRITICAL_PATH
    return {"seconds": elapsed, "ratio": elapsed / ideal}


async def batch_memory(
    *, workflows: int = BATCH_WORKFLOWS, in_flight: int = BATCH_IN_FLIGHT
) -> dict[str, Any]:
    """(d) 1,000 five-node async chains, InMemorySaver, at most ``in_flight`` at a time."""
    from langgraph.checkpoint.memory import InMemorySaver

    saver = InMemorySaver()
    app = _async_dag(chain(BATCH_STEPS)).compile(checkpointer=saver)
    await app.ainvoke({"done": []}, _config(BATCH_STEPS), durability=DURABILITY)  # warm-up
    gc.collect()
    finished = 0
    with RssSampler() as rss:
        baseline = rss.now()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(workflows):
            queue.put_nowait(i)

        async def worker() -> None:
            nonlocal finished
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                out = await app.ainvoke({"done": []}, _config(BATCH_STEPS), durability=DURABILITY)
                assert len(out["done"]) == BATCH_STEPS
                finished += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.perf_counter() - t0
    assert finished == workflows
    return {
        "workflows": workflows,
        "in_flight": in_flight,
        "seconds": elapsed,
        "workflows_per_s": workflows / elapsed,
        "peak_rss_mib": rss.peak / MIB,
        "baseline_rss_mib": baseline / MIB,
    }
