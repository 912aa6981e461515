from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from intelligent_orchestrator.errors import ConfigError
from intelligent_orchestrator.tools import ToolContext, ToolRegistry
from intelligent_orchestrator.tools.registry import ENTRY_POINT_GROUP

TOOLS_SOURCE = textwrap.dedent(
    '''
    from intelligent_orchestrator.tools.spec import tool


    @tool("{prefix}_double", category="plugin")
    async def double(x: int) -> dict[str, int]:
        """Double a number."""
        return {{"value": 2 * x}}


    @tool("{prefix}_greet", category="plugin")
    async def greet(name: str = "world") -> dict[str, str]:
        """Say hello."""
        return {{"text": "hello " + name}}


    NOT_A_TOOL = 42
    '''
)

HOOK_SOURCE = textwrap.dedent(
    '''
    from intelligent_orchestrator.tools.spec import tool


    @tool("{prefix}_hooked")
    async def _hooked(x: int) -> dict[str, int]:
        """Registered by the hook only."""
        return {{"value": x + 1}}


    @tool("{prefix}_ignored")
    async def ignored() -> dict[str, int]:
        """Visible at module level, but the hook decides what is registered."""
        return {{}}


    CALLS = []


    def register_tools(registry):
        CALLS.append(registry)
        registry.register(_hooked)
    '''
)


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for throw-away plugin modules; they are forgotten afterwards."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith("io_test_plugin_"):
            del sys.modules[name]


def _name() -> str:
    return f"io_test_plugin_{uuid.uuid4().hex[:10]}"


def _ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(task_id="t", step_id="s", workspace=tmp_path, idempotency_key="t:s")


async def test_load_module_from_a_relative_file_path(tmp_path: Path) -> None:
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "my_tools.py").write_text(TOOLS_SOURCE.format(prefix="file"))
    registry = ToolRegistry()
    assert registry.load_module("extra/my_tools.py", base_dir=tmp_path) == 2
    assert [s.tool_id for s in registry.specs()] == ["file_double", "file_greet"]
    assert registry.get("file_double").spec.category == "plugin"
    assert await registry.get("file_double").invoke({"x": 21}, _ctx(tmp_path)) == {"value": 42}


def test_load_module_from_an_absolute_file_path(tmp_path: Path) -> None:
    path = tmp_path / "abs_tools.py"
    path.write_text(TOOLS_SOURCE.format(prefix="abs"))
    registry = ToolRegistry()
    assert registry.load_module(str(path), base_dir=tmp_path / "elsewhere") == 2
    assert "abs_greet" in registry


def test_load_module_uses_register_tools_when_present(tmp_path: Path) -> None:
    path = tmp_path / "hook_tools.py"
    path.write_text(HOOK_SOURCE.format(prefix="hook"))
    registry = ToolRegistry()
    assert registry.load_module("hook_tools.py", base_dir=tmp_path) == 1
    assert [s.tool_id for s in registry.specs()] == ["hook_hooked"]


def test_load_module_by_dotted_name(module_dir: Path) -> None:
    pkg = _name()
    (module_dir / pkg).mkdir()
    (module_dir / pkg / "__init__.py").write_text("")
    (module_dir / pkg / "tools.py").write_text(TOOLS_SOURCE.format(prefix="dotted"))
    registry = ToolRegistry()
    assert registry.load_module(f"{pkg}.tools", base_dir=Path("/nonexistent")) == 2
    assert {"dotted_double", "dotted_greet"} <= {s.tool_id for s in registry.specs()}


def test_load_module_by_dotted_name_with_a_hook(module_dir: Path) -> None:
    name = _name()
    (module_dir / f"{name}.py").write_text(HOOK_SOURCE.format(prefix="dh"))
    registry = ToolRegistry()
    assert registry.load_module(name, base_dir=module_dir) == 1
    assert "dh_hooked" in registry
    calls = sys.modules[name].CALLS
    assert calls == [registry]


def test_loading_a_tool_id_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.py"
    path.write_text(TOOLS_SOURCE.format(prefix="twice"))
    registry = ToolRegistry()
    registry.load_module(str(path), base_dir=tmp_path)
    with pytest.raises(ConfigError) as exc:
        registry.load_module(str(path), base_dir=tmp_path)
    assert "tool id 'twice_double' is already registered" in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        ToolRegistry().load_module("missing/tools.py", base_dir=tmp_path)
    assert exc.value.setting == "tool_modules"
    assert (
        str(exc.value)
        == f"tool module file {str(tmp_path / 'missing' / 'tools.py')!r} does not exist"
    )


def test_module_without_tools(tmp_path: Path) -> None:
    (tmp_path / "empty_tools.py").write_text("VALUE = 1\n")
    registry = ToolRegistry()
    with pytest.raises(ConfigError) as exc:
        registry.load_module("empty_tools.py", base_dir=tmp_path)
    assert exc.value.setting == "tool_modules"
    assert "'empty_tools.py' defines no Tool and no register_tools(registry)" in str(exc.value)
    assert len(registry) == 0


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("raise RuntimeError('kaboom')\n", "kaboom"),
        ("import io_test_plugin_does_not_exist\n", "io_test_plugin_does_not_exist"),
        ("def broken(:\n", "invalid syntax"),
    ],
)
def test_file_that_fails_to_import(tmp_path: Path, source: str, fragment: str) -> None:
    (tmp_path / "bad_tools.py").write_text(source)
    with pytest.raises(ConfigError) as exc:
        ToolRegistry().load_module("bad_tools.py", base_dir=tmp_path)
    assert exc.value.setting == "tool_modules"
    assert str(exc.value).startswith("tool module 'bad_tools.py' failed to import: ")
    assert fragment in str(exc.value)


def test_missing_dotted_module(module_dir: Path) -> None:
    name = _name()
    with pytest.raises(ConfigError) as exc:
        ToolRegistry().load_module(name, base_dir=module_dir)
    assert exc.value.setting == "tool_modules"
    assert str(exc.value).startswith(f"tool module {name!r} cannot be imported: ")


@pytest.mark.parametrize("source", ["raise RuntimeError('kaboom')\n", "def broken(:\n"])
def test_dotted_module_that_fails_to_import(module_dir: Path, source: str) -> None:
    name = _name()
    (module_dir / f"{name}.py").write_text(source)
    with pytest.raises(ConfigError) as exc:
        ToolRegistry().load_module(name, base_dir=module_dir)
    assert exc.value.setting == "tool_modules"
    assert name in str(exc.value)


def test_load_object_refuses_other_things() -> None:
    with pytest.raises(ConfigError) as exc:
        ToolRegistry().load_object(42, origin="plugin x")
    assert (
        str(exc.value)
        == "plugin x: expected a Tool, a list of Tools or a register(registry) function"
    )


# Entry points --------------------------------------------------------------------------


def _install_distribution(site: Path, dist: str, entry_points: dict[str, str]) -> None:
    """Write a minimal installed distribution: ``<dist>-0.1.dist-info`` with entry points."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")


def _plugin_module(module_dir: Path, prefix: str) -> str:
    mod = _name()
    (module_dir / f"{mod}.py").write_text(
        TOOLS_SOURCE.format(prefix=prefix)
        + HOOK_SOURCE.format(prefix=prefix + "h")
        + "\nBOTH = [double, greet]\n"
    )
    return mod


async def test_entry_point_exposing_a_tool(module_dir: Path, tmp_path: Path) -> None:
    mod = _plugin_module(module_dir, "ep")
    _install_distribution(module_dir, mod.replace("_", "-"), {"doubler": f"{mod}:double"})
    registry = ToolRegistry()
    assert registry.load_entry_points() == 1
    assert [s.tool_id for s in registry.specs()] == ["ep_double"]
    assert await registry.get("ep_double").invoke({"x": 4}, _ctx(tmp_path)) == {"value": 8}


def test_entry_points_exposing_a_list_and_a_register_function(module_dir: Path) -> None:
    mod = _plugin_module(module_dir, "epl")
    _install_distribution(
        module_dir, mod.replace("_", "-"), {"both": f"{mod}:BOTH", "hook": f"{mod}:register_tools"}
    )
    registry = ToolRegistry()
    assert registry.load_entry_points() == 3
    assert [s.tool_id for s in registry.specs()] == ["epl_double", "epl_greet", "eplh_hooked"]


def test_entry_points_clash_with_registered_tools(module_dir: Path) -> None:
    mod = _plugin_module(module_dir, "epc")
    _install_distribution(module_dir, mod.replace("_", "-"), {"doubler": f"{mod}:double"})
    registry = ToolRegistry()
    registry.load_entry_points()
    with pytest.raises(ConfigError) as exc:
        registry.load_entry_points()
    assert "tool id 'epc_double' is already registered" in str(exc.value)


@pytest.mark.parametrize(
    "target",
    ["io_test_plugin_absent_module:thing", "{mod}:no_such_attribute", "{mod}_broken:thing"],
)
def test_a_broken_entry_point_is_named(module_dir: Path, target: str) -> None:
    mod = _plugin_module(module_dir, "epb")
    (module_dir / f"{mod}_broken.py").write_text("raise RuntimeError('plugin exploded')\n")
    value = target.format(mod=mod)
    _install_distribution(module_dir, mod.replace("_", "-"), {"shaky": value})
    registry = ToolRegistry()
    with pytest.raises(ConfigError) as exc:
        registry.load_entry_points()
    assert exc.value.setting == "tools"
    assert str(exc.value).startswith(f"tool plugin 'shaky' ({value}) failed to load: ")
    assert len(registry) == 0


def test_an_entry_point_of_the_wrong_kind_is_named(module_dir: Path) -> None:
    mod = _plugin_module(module_dir, "epw")
    _install_distribution(module_dir, mod.replace("_", "-"), {"number": f"{mod}:NOT_A_TOOL"})
    with pytest.raises(ConfigError) as exc:
        ToolRegistry().load_entry_points()
    assert str(exc.value) == (
        "entry point 'number': expected a Tool, a list of Tools or a register(registry) function"
    )
