"""Planning: validation of plans against the tool registry (LLM planning comes later)."""

from .validate import execution_order, validate_plan

__all__ = ["execution_order", "validate_plan"]
