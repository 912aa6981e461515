"""Engines and migrations for SQLite and Postgres."""

from __future__ import annotations

import logging
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
    cur.close()


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

    event.listen(engine, "connect", on_connect)
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
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return sa.create_engine(
        url,
        pool_size=kwargs.pop("pool_size", 10),
        max_overflow=kwargs.pop("max_overflow", 20),
        pool_pre_ping=True,
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
