"""The durable engine: DBOS workflows, the DAG scheduler, executor leases."""

from .runtime import (
    ENGINE_VERSION,
    TASK_QUEUE,
    TASK_WORKFLOW,
    EngineHost,
    QueueClient,
    migrate_system_database,
    workflow_id,
)

__all__ = [
    "ENGINE_VERSION",
    "TASK_QUEUE",
    "TASK_WORKFLOW",
    "EngineHost",
    "QueueClient",
    "migrate_system_database",
    "workflow_id",
]
