"""Storage: tables, migrations and the repository."""

from .db import create_engine, current_revision, dbos_sqlite_engine, head_revision, upgrade
from .repository import (
    ArtifactRecord,
    Decided,
    Decision,
    EffectRecord,
    EffectStart,
    ExecutorInfo,
    RunRef,
    StepBatch,
    StepUpdate,
    Store,
    TaskUpdate,
    commit_outcome_unknown,
    new_task,
    new_task_values,
    utcnow,
)

__all__ = [
    "ArtifactRecord",
    "Decided",
    "Decision",
    "EffectRecord",
    "EffectStart",
    "ExecutorInfo",
    "RunRef",
    "StepBatch",
    "StepUpdate",
    "Store",
    "TaskUpdate",
    "commit_outcome_unknown",
    "create_engine",
    "current_revision",
    "dbos_sqlite_engine",
    "head_revision",
    "new_task",
    "new_task_values",
    "upgrade",
    "utcnow",
]
