"""Confine file paths to a task's workspace folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

from intelligent_orchestrator.errors import PathEscapeError, ToolInputError

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def resolve_in_workspace(workspace: Path, relative: str, *, must_exist: bool = False) -> Path:
    """Return the real path of ``relative`` inside ``workspace``, or refuse it.

    Refused with :class:`PathEscapeError`: empty paths, NUL bytes, absolute paths (POSIX,
    Windows drive or UNC), any ``..`` component, and any path whose real location (every
    symlink resolved, in intermediate folders and the final name alike, dangling ones
    included) lies outside the workspace's own real location.

    Args:
        workspace: The workspace folder; it may itself be reached through a symlink.
        relative: A path relative to the workspace, ``/`` separated.
        must_exist: Also refuse (with :class:`ToolInputError`) a path that does not exist.

    Returns:
        The resolved absolute path, symlinks followed, safe to open.
    """
    if not relative or not relative.strip():
        raise PathEscapeError(f"path {relative!r} is empty; give a path relative to the workspace")
    if "\x00" in relative:
        raise PathEscapeError(f"path {relative!r} contains a NUL byte")
    if (
        relative.startswith(("/", "\\"))
        or _WINDOWS_DRIVE.match(relative)
        or os.path.isabs(relative)
    ):
        raise PathEscapeError(
            f"path {relative!r} is absolute; give a path relative to the workspace"
        )
    if ".." in re.split(r"[\\/]", relative):
        raise PathEscapeError(
            f"path {relative!r} contains '..'; paths must stay inside the workspace"
        )

    root = Path(os.path.realpath(workspace))
    real = Path(os.path.realpath(root / relative))
    if real != root and not real.is_relative_to(root):
        raise PathEscapeError(
            f"path {relative!r} leads outside the workspace (through a symbolic link)"
        )
    if must_exist and not real.exists():
        raise ToolInputError(f"path {relative!r} does not exist in the workspace")
    return real
