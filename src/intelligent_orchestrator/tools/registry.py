"""The tool registry: built-ins, entry-point plugins and modules named in config."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ..domain.models import ToolSpecification
from ..errors import ConfigError, ToolNotFoundError
from .spec import Implementation, Tool, schema_validator

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "intelligent_orchestrator.tools"


class ToolRegistry:
    """Tools by id. Registering an id twice is an error unless ``replace=True``."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, tool: Tool, *, replace: bool = False) -> Tool:
        if tool.tool_id in self._tools and not replace:
            raise ConfigError(
                f"tool id {tool.tool_id!r} is already registered (source {self._tools[tool.tool_id].spec.source!r})",
                setting="tools",
            )
        self._tools[tool.tool_id] = tool
        return tool

    def register_tool(
        self, spec: ToolSpecification, implementation: Implementation, *, replace: bool = False
    ) -> Tool:
        """Register a tool from an explicit specification (seed API)."""
        return self.register(Tool(spec=spec, implementation=implementation), replace=replace)

    def get(self, tool_id: str) -> Tool:
        try:
            return self._tools[tool_id]
        except KeyError:
            raise ToolNotFoundError(f"unknown tool {tool_id!r}", tool_id=tool_id) from None

    def __contains__(self, tool_id: object) -> bool:
        return tool_id in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def prepare(self) -> None:
        """Build every tool's input check now (once per schema and process), so that the
        first task using a tool does not wait for it (about 5 ms a tool)."""
        for t in list(self._tools.values()):
            schema_validator(t.spec.input_schema)

    def specs(self) -> list[ToolSpecification]:
        return [t.spec for t in sorted(self._tools.values(), key=lambda t: t.tool_id)]

    def load_object(self, obj: Any, *, origin: str) -> int:
        """Register what a plugin exposes: a Tool, a list of Tools, or ``register(registry)``."""
        if isinstance(obj, Tool):
            self.register(obj)
            return 1
        if isinstance(obj, list | tuple):
            return sum(self.load_object(o, origin=origin) for o in obj)  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]  # plugin payload
        if callable(obj):
            before = len(self)
            obj(self)
            return len(self) - before
        raise ConfigError(
            f"{origin}: expected a Tool, a list of Tools or a register(registry) function",
            setting="tools",
        )

    def load_entry_points(self) -> int:
        count = 0
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
            except Exception as exc:
                raise ConfigError(
                    f"tool plugin {ep.name!r} ({ep.value}) failed to load: {exc}", setting="tools"
                ) from exc
            count += self.load_object(obj, origin=f"entry point {ep.name!r}")
        return count

    def load_module(self, ref: str, *, base_dir: Path) -> int:
        """Load tools from ``path/to/tools.py`` or ``package.module``."""
        module = _import(ref, base_dir=base_dir)
        hook = getattr(module, "register_tools", None)
        if callable(hook):
            return self.load_object(hook, origin=ref)
        found = [v for v in vars(module).values() if isinstance(v, Tool)]
        if not found:
            raise ConfigError(
                f"tool module {ref!r} defines no Tool and no register_tools(registry)",
                setting="tool_modules",
            )
        return self.load_object(found, origin=ref)


def _import(ref: str, *, base_dir: Path) -> Any:
    if ref.endswith(".py") or "/" in ref:
        path = Path(ref)
        if not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise ConfigError(
                f"tool module file {str(path)!r} does not exist", setting="tool_modules"
            )
        name = f"_orchestrator_tools_{path.stem}_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot import {str(path)!r}", setting="tool_modules")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigError(
                f"tool module {ref!r} failed to import: {exc}", setting="tool_modules"
            ) from exc
        return module
    try:
        return importlib.import_module(ref)
    except Exception as exc:  # any error while importing a plugin is a configuration problem
        raise ConfigError(
            f"tool module {ref!r} cannot be imported: {exc}", setting="tool_modules"
        ) from exc
