"""Bundled example workflows and the sample data they read."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import ConfigError

EXAMPLES_DIR = Path(__file__).parent


def example_names() -> list[str]:
    return sorted(p.stem for p in EXAMPLES_DIR.glob("*.yaml"))


def example_path(name: str) -> Path:
    path = EXAMPLES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"no example named {name!r} (examples: {', '.join(example_names())})",
            setting="--example",
        )
    return path


def install_example_data(workspace: Path) -> list[Path]:
    """Copy the sample data into the workspace's data/ folder, never overwriting a user's file."""
    copied: list[Path] = []
    for src in sorted((EXAMPLES_DIR / "data").iterdir()):
        dest = workspace / "data" / src.name
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            copied.append(dest)
    return copied
