from __future__ import annotations

import os
from pathlib import Path

import pytest

from intelligent_orchestrator.errors import PathEscapeError, ToolInputError
from intelligent_orchestrator.tools.workspace import resolve_in_workspace


def test_plain_relative_path_resolves_inside(workspace: Path) -> None:
    (workspace / "data").mkdir()
    (workspace / "data" / "a.csv").write_text("x\n")
    assert (
        resolve_in_workspace(workspace, "data/a.csv", must_exist=True)
        == (workspace / "data" / "a.csv").resolve()
    )
    # A file that does not exist yet is fine unless must_exist.
    assert resolve_in_workspace(workspace, "new/b.txt") == workspace.resolve() / "new" / "b.txt"
    assert (
        resolve_in_workspace(workspace, "./data/./a.csv")
        == (workspace / "data" / "a.csv").resolve()
    )


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../x", "'..'"),
        ("data/../../x", "'..'"),
        ("data/..", "'..'"),
        ("..\\x", "'..'"),
        ("/etc/passwd", "absolute"),
        ("\\\\server\\share", "absolute"),
        ("C:/Windows/win.ini", "absolute"),
        ("", "empty"),
        ("   ", "empty"),
        ("a\x00b", "NUL"),
    ],
)
def test_refused_paths_name_the_path(workspace: Path, path: str, reason: str) -> None:
    with pytest.raises(PathEscapeError, match=reason) as info:
        resolve_in_workspace(workspace, path)
    assert repr(path) in str(info.value)


def test_symlinked_file_pointing_outside_is_refused(workspace: Path, outside: Path) -> None:
    (workspace / "link.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(PathEscapeError, match=r"'link\.txt'.*outside the workspace"):
        resolve_in_workspace(workspace, "link.txt")


def test_symlinked_directory_pointing_outside_is_refused(workspace: Path, outside: Path) -> None:
    (workspace / "shared").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathEscapeError, match="outside the workspace"):
        resolve_in_workspace(workspace, "shared/secret.txt")
    # Also for a file that does not exist yet (a write would land outside).
    with pytest.raises(PathEscapeError, match="outside the workspace"):
        resolve_in_workspace(workspace, "shared/new/file.txt")


def test_dangling_symlink_pointing_outside_is_refused(workspace: Path, outside: Path) -> None:
    (workspace / "later.txt").symlink_to(outside / "not-yet.txt")
    with pytest.raises(PathEscapeError):
        resolve_in_workspace(workspace, "later.txt")


def test_symlink_inside_the_workspace_is_allowed(workspace: Path) -> None:
    (workspace / "real").mkdir()
    (workspace / "real" / "f.txt").write_text("hi")
    (workspace / "alias").symlink_to(workspace / "real", target_is_directory=True)
    assert (
        resolve_in_workspace(workspace, "alias/f.txt", must_exist=True)
        == (workspace / "real" / "f.txt").resolve()
    )


def test_workspace_reached_through_a_symlink(tmp_path: Path, workspace: Path) -> None:
    (workspace / "f.txt").write_text("hi")
    link = tmp_path / "ws-link"
    link.symlink_to(workspace, target_is_directory=True)
    assert (
        resolve_in_workspace(link, "f.txt", must_exist=True)
        == Path(os.path.realpath(workspace)) / "f.txt"
    )


def test_must_exist(workspace: Path) -> None:
    with pytest.raises(ToolInputError, match=r"'missing\.txt' does not exist"):
        resolve_in_workspace(workspace, "missing.txt", must_exist=True)
