"""Engines and migrations for SQLite and Postgres."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """Per-connection settings: WAL, NORMAL sync, waits instead of 'database is locked'."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    # 1 MiB of page cache per connection (SQLite's default is 2 MiB): a process holds dozens
    # of pooled connections, and their caches, filling as the file grows, were most of its
    # memory growth with 10,000 parked tasks; the OS page cache still holds the file.
    cur.execute("PRAGMA cache_size=-1024")
    cur.close()


_GATE_WAIT_SECONDS = 30.0
_GATES: weakref.WeakKeyDictionary[sa.Engine, threading.Lock] = weakref.WeakKeyDictionary()


def write_gate(engine: sa.Engine) -> threading.Lock | None:
    """The lock this process's writers to ``engine``'s SQLite file take turns on (None if
    the engine has none)."""
    return _GATES.get(engine)


@contextmanager
def write_turn(engine: sa.Engine) -> Iterator[None]:
    """Hold this process's write gate of ``engine``'s SQLite file (if it has one) for a
    transaction run on a driver connection, which SQLAlchemy's ``begin`` event does not see."""
    gate = _GATES.get(engine)
    took = gate is not None and gate.acquire(timeout=_GATE_WAIT_SECONDS)
    if gate is not None and not took:
        logger.warning("SQLite write gate not free after %.0f s; going on", _GATE_WAIT_SECONDS)
    try:
        yield
    finally:
        if took:
            assert gate is not None
            gate.release()


def serialize_writers(engine: sa.Engine) -> None:
    """Let this process's transactions on a SQLite file take turns on a lock.

    SQLite admits one writer; a transaction that finds the file locked sleeps in SQLite's busy
    handler (1, 2, 5, 10 ... 100 ms steps) however soon the lock frees, so under concurrency
    (many tasks, one thread each) most time went to those sleeps. With the gate, writers of
    one process queue on a lock instead and start the moment the previous one ends (the lock
    is released when the connection returns to the pool, after its COMMIT or ROLLBACK).
    Writers in other processes still meet the busy timeout. A transaction that cannot get the
    gate within 30 s goes ahead without it, so a nested write can stall but not deadlock.
    """
    gate = threading.Lock()
    _GATES[engine] = gate

    def take(conn: sa.Connection) -> None:
        info = conn.info
        if info.get("write_gate"):
            return  # this connection holds it already (a second transaction before check-in)
        if gate.acquire(timeout=_GATE_WAIT_SECONDS):
            info["write_gate"] = True
        else:
            logger.warning("SQLite write gate not free after %.0f s; going on", _GATE_WAIT_SECONDS)

    def give_back(_dbapi_conn: Any, record: Any) -> None:
        if record.info.pop("write_gate", False):
            gate.release()

    event.listen(engine, "begin", take)
    event.listen(engine, "checkin", give_back)
    event.listen(engine, "invalidate", lambda _c, record, _e: give_back(None, record))


def dbos_sqlite_engine(url: str, *, pool_size: int = 10) -> sa.Engine:
    """An engine for DBOS's SQLite system database with DBOS's own per-connection settings
    (pysqlite IMMEDIATE transactions, busy timeout, foreign keys) plus WAL and NORMAL sync."""
    path = url.split("///", 1)[1]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url, connect_args={"check_same_thread": False}, pool_size=pool_size, max_overflow=20
    )

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")
        dbapi_conn.execute("PRAGMA cache_size=-1024")  # as sqlite_pragmas

    event.listen(engine, "connect", on_connect)
    serialize_writers(engine)
    return engine


def _begin_immediate(conn: sa.Connection) -> None:
    # Take the write lock at BEGIN so two writers queue on busy_timeout instead of
    # failing to upgrade a read lock (SQLite's "database is locked" on upgrade).
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine with the settings this project relies on (see DESIGN: DBOS rules)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "isolation_level": None, "timeout": 30},
            pool_size=kwargs.pop("pool_size", 20),
            max_overflow=kwargs.pop("max_overflow", 20),
            **kwargs,
        )
        event.listen(engine, "connect", sqlite_pragmas)
        serialize_writers(engine)  # before BEGIN IMMEDIATE: queue here, not in SQLite
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return sa.create_engine(
        url,
        pool_size=kwargs.pop("pool_size", 10),
        max_overflow=kwargs.pop("max_overflow", 20),
        pool_pre_ping=True,
        pool_use_lifo=True,
        **kwargs,
    )


def reader_for(engine: sa.Engine) -> sa.Engine:
    """An engine for reads. On SQLite it takes no write lock (WAL readers never block writers,
    and a read must not queue behind them); on Postgres it is the same engine."""
    if engine.dialect.name != "sqlite":
        return engine
    reader = sa.create_engine(
        engine.url,
        connect_args={"check_same_thread": False, "isolation_level": None, "timeout": 30},
        pool_size=10,
        max_overflow=20,
    )
    event.listen(reader, "connect", sqlite_pragmas)
    return reader


def _alembic_config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> str:
    """Apply migrations up to ``revision``; returns the revision now current."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes starting on an empty database must not both create the tables.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(727274001)"))
        command.upgrade(_alembic_config(conn), revision)
    rev = current_revision(engine)
    logger.info("database upgraded", extra={"revision": rev})
    return rev or ""


def downgrade(engine: sa.Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.downgrade(_alembic_config(conn), revision)
