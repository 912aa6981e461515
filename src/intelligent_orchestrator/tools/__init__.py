"""Tools: specifications, the registry and the built-ins."""

from .registry import ToolRegistry
from .spec import Artifact, Tool, ToolContext, tool

__all__ = ["Artifact", "Tool", "ToolContext", "ToolRegistry", "tool"]
