"""One router per resource."""

from .health import router as health_router
from .tasks import router as tasks_router
from .tools import router as tools_router

__all__ = ["health_router", "tasks_router", "tools_router"]
