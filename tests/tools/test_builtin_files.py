from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import jsonschema
import pytest

from intelligent_orchestrator.errors import PathEscapeError, ToolExecutionError, ToolInputError
from intelligent_orchestrator.tools.builtin import read_file, write_file
from intelligent_orchestrator.tools.spec import ToolContext


async def test_write_then_read_round_trip(ctx: ToolContext, workspace: Path) -> None:
    text = "Spring sale: -20% on everything ☀\nsecond line\n"
    written = await write_file.invoke({"path": "out/notes/sale.md", "content": text}, ctx)

    data = text.encode()
    assert written == {
        "path": "out/notes/sale.md",
        "mode": "overwrite",
        "bytes_written": len(data),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert (workspace / "out" / "notes" / "sale.md").read_bytes() == data
    jsonschema.validate(written, write_file.spec.output_schema)

    read = await read_file.invoke({"path": "out/notes/sale.md"}, ctx)
    assert read["content"] == text
    assert read["size"] == len(data)
    assert read["truncated"] is False
    assert read["encoding"] == "utf-8"
    jsonschema.validate(read, read_file.spec.output_schema)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_overwrite_replaces_atomically_and_leaves_no_temp_file(
    ctx: ToolContext, workspace: Path
) -> None:
    await write_file.invoke({"path": "drafts/a.txt", "content": "first version, longer"}, ctx)
    await write_file.invoke({"path": "drafts/a.txt", "content": "second"}, ctx)
    assert (workspace / "drafts" / "a.txt").read_text() == "second"
    assert _names(workspace / "drafts") == ["a.txt"]


async def test_append_adds_and_reports_whole_file_hash(ctx: ToolContext, workspace: Path) -> None:
    await write_file.invoke({"path": "log.txt", "content": "one\n", "mode": "append"}, ctx)
    result = await write_file.invoke({"path": "log.txt", "content": "two\n", "mode": "append"}, ctx)
    assert (workspace / "log.txt").read_text() == "one\ntwo\n"
    assert result["bytes_written"] == 4
    assert result["size"] == 8
    assert result["sha256"] == hashlib.sha256(b"one\ntwo\n").hexdigest()


async def test_create_mode_refuses_an_existing_file(ctx: ToolContext, workspace: Path) -> None:
    first = await write_file.invoke({"path": "report.md", "content": "v1", "mode": "create"}, ctx)
    assert first["bytes_written"] == 2
    with pytest.raises(ToolExecutionError, match=r"'report\.md' already exists") as info:
        await write_file.invoke({"path": "report.md", "content": "v2", "mode": "create"}, ctx)
    assert info.value.transient is False
    assert (workspace / "report.md").read_text() == "v1"


async def test_write_refuses_escapes(ctx: ToolContext, workspace: Path, outside: Path) -> None:
    (workspace / "exfil").symlink_to(outside, target_is_directory=True)
    for path in ["../evil.txt", "/tmp/evil.txt", "exfil/evil.txt"]:
        with pytest.raises(PathEscapeError):
            await write_file.invoke({"path": path, "content": "x"}, ctx)
    assert _names(outside) == ["secret.txt"]


async def test_read_refuses_escapes(ctx: ToolContext, workspace: Path, outside: Path) -> None:
    (workspace / "peek.txt").symlink_to(outside / "secret.txt")
    for path in ["../outside/secret.txt", "/etc/passwd", "peek.txt"]:
        with pytest.raises(PathEscapeError):
            await read_file.invoke({"path": path}, ctx)


async def test_binary_file_is_refused_unless_base64(ctx: ToolContext, workspace: Path) -> None:
    blob = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    (workspace / "logo.png").write_bytes(blob)
    with pytest.raises(ToolInputError, match=r"'logo\.png' looks binary.*as_base64"):
        await read_file.invoke({"path": "logo.png"}, ctx)

    result = await read_file.invoke({"path": "logo.png", "as_base64": True}, ctx)
    assert result["encoding"] == "base64"
    assert base64.b64decode(result["content"]) == blob
    assert result["size"] == len(blob)


async def test_invalid_text_in_the_encoding_is_refused(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "latin.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ToolInputError, match="not valid utf-8"):
        await read_file.invoke({"path": "latin.txt"}, ctx)
    result = await read_file.invoke({"path": "latin.txt", "encoding": "latin-1"}, ctx)
    assert result["content"] == "café"


async def test_max_bytes_truncates_without_breaking_a_character(
    ctx: ToolContext, workspace: Path
) -> None:
    (workspace / "u.txt").write_text("aé" * 10, encoding="utf-8")  # 'é' is 2 bytes
    result = await read_file.invoke({"path": "u.txt", "max_bytes": 5}, ctx)
    # 5 bytes are "a", "é", "a" and half of the next "é", which is dropped rather than garbled.
    assert result["content"] == "aéa"
    assert result["bytes_read"] == 5
    assert result["truncated"] is True
    assert result["size"] == 30


async def test_read_missing_file_and_folder(ctx: ToolContext, workspace: Path) -> None:
    with pytest.raises(ToolInputError, match="does not exist"):
        await read_file.invoke({"path": "nope.txt"}, ctx)
    (workspace / "folder").mkdir()
    with pytest.raises(ToolInputError, match="not a file"):
        await read_file.invoke({"path": "folder"}, ctx)


async def test_write_refuses_a_folder(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "out").mkdir()
    for path in ["out", "new-folder/"]:
        with pytest.raises(ToolInputError, match="is a folder"):
            await write_file.invoke({"path": path, "content": "x"}, ctx)
    assert _names(workspace) == ["out"]


def test_write_file_spec_has_side_effects() -> None:
    assert write_file.spec.side_effects is True
    assert read_file.spec.side_effects is False
    assert write_file.spec.category == read_file.spec.category == "files"


@pytest.mark.parametrize(
    ("path", "needs"),
    [
        ("drafts/a.md", False),
        ("./drafts/sub/b.md", False),
        ("out/a.md", True),
        ("a.md", True),
        ("drafts", True),
        ("drafts/../out/a.md", True),
        ("/drafts/a.md", True),
        ("draftsx/a.md", True),
    ],
)
def test_write_needs_approval_outside_drafts(path: str, needs: bool) -> None:
    assert write_file.needs_approval({"path": path, "content": "x"}) is needs
