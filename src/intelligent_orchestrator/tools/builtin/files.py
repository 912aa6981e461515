"""File tools confined to the workspace: ``read_file`` and ``write_file``."""

from __future__ import annotations

import asyncio
import base64
import codecs
import dataclasses
import hashlib
import logging
import os
import stat
import tempfile
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from intelligent_orchestrator.errors import ToolExecutionError, ToolInputError
from intelligent_orchestrator.tools.spec import Tool, ToolContext, tool
from intelligent_orchestrator.tools.workspace import resolve_in_workspace

logger = logging.getLogger(__name__)

DRAFTS_DIR = "drafts"
"""Writes under this workspace folder are drafts: they need no approval."""

_BINARY_SNIFF_BYTES = 8192
_MAX_READ_BYTES = 50_000_000

WriteMode = Literal["overwrite", "append", "create"]


class ReadFileOutput(BaseModel):
    """What ``read_file`` returns."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(description="The path as given, relative to the workspace.")
    size: int = Field(description="Size of the whole file in bytes.")
    encoding: str = Field(description="Text encoding of `content`, or 'base64'.")
    content: str = Field(description="The file's text, or its bytes in base64.")
    bytes_read: int = Field(description="How many bytes of the file `content` holds.")
    truncated: bool = Field(description="True when the file is longer than max_bytes.")


class WriteFileOutput(BaseModel):
    """What ``write_file`` returns."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(description="The path as given, relative to the workspace.")
    mode: WriteMode
    bytes_written: int = Field(description="Bytes written by this call.")
    size: int = Field(description="Size of the file after the write.")
    sha256: str = Field(description="SHA-256 of the whole file after the write.")


@tool(
    "read_file",
    name="Read file",
    category="files",
    estimated_cost=0.0,
    timeout_seconds=30.0,
)
async def read_file(
    path: Annotated[
        str, Field(description="File path relative to the workspace, e.g. 'data/notes.md'.")
    ],
    encoding: Annotated[str, Field(description="Text encoding of the file.")] = "utf-8",
    max_bytes: Annotated[
        int, Field(ge=1, le=_MAX_READ_BYTES, description="Read at most this many bytes.")
    ] = 1_000_000,
    as_base64: Annotated[
        bool, Field(description="Return the raw bytes in base64 (needed for binary files).")
    ] = False,
    *,
    ctx: ToolContext,
) -> ReadFileOutput:
    """Read a text file from the workspace (or any file as base64), up to max_bytes."""
    if not 1 <= max_bytes <= _MAX_READ_BYTES:
        raise ToolInputError(
            f"field 'max_bytes': must be between 1 and {_MAX_READ_BYTES}", tool_id="read_file"
        )
    target = resolve_in_workspace(ctx.workspace, path, must_exist=True)
    if not target.is_file():
        raise ToolInputError(f"path {path!r} is not a file", tool_id="read_file")
    if not as_base64:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ToolInputError(
                f"unknown text encoding {encoding!r}", tool_id="read_file"
            ) from None

    size, data = await asyncio.to_thread(_read_head, target, max_bytes)
    truncated = size > len(data)
    if as_base64:
        content, used = base64.b64encode(data).decode("ascii"), "base64"
    else:
        content, used = _decode_text(path, data, encoding, final=not truncated), encoding
    logger.debug("file read", extra={"task_id": ctx.task_id, "step_id": ctx.step_id, "size": size})
    return ReadFileOutput(
        path=path,
        size=size,
        encoding=used,
        content=content,
        bytes_read=len(data),
        truncated=truncated,
    )


def _read_head(target: Path, max_bytes: int) -> tuple[int, bytes]:
    with target.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        return size, fh.read(max_bytes)


def _decode_text(path: str, data: bytes, encoding: str, *, final: bool) -> str:
    codec = codecs.lookup(encoding).name
    if b"\x00" in data[:_BINARY_SNIFF_BYTES] and not codec.startswith(("utf-16", "utf-32")):
        raise ToolInputError(
            f"file {path!r} looks binary (it contains NUL bytes); pass as_base64=true to read its bytes",
            tool_id="read_file",
        )
    # An incremental decoder tolerates a multi-byte character cut in half by max_bytes.
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        return decoder.decode(data, final=final)
    except UnicodeDecodeError as exc:
        raise ToolInputError(
            f"file {path!r} is not valid {encoding} text (byte {exc.start}); "
            "pass another encoding, or as_base64=true for binary files",
            tool_id="read_file",
        ) from exc


@tool(
    "write_file",
    name="Write file",
    category="files",
    estimated_cost=0.0,
    side_effects=True,
    timeout_seconds=30.0,
)
async def _write_file(
    path: Annotated[
        str,
        Field(
            description="File path relative to the workspace; paths under 'drafts/' need no approval."
        ),
    ],
    content: Annotated[str, Field(description="Text to write.")],
    mode: Annotated[
        WriteMode,
        Field(
            description="overwrite (replace atomically), append, or create (fail if the file exists)."
        ),
    ] = "overwrite",
    encoding: Annotated[
        str, Field(description="Text encoding used to store the content.")
    ] = "utf-8",
    *,
    ctx: ToolContext,
) -> WriteFileOutput:
    """Write a text file in the workspace, creating folders as needed; outside drafts/ it needs approval."""
    target = resolve_in_workspace(ctx.workspace, path)
    if path.endswith(("/", "\\")) or target.is_dir():
        raise ToolInputError(f"path {path!r} is a folder, not a file", tool_id="write_file")
    try:
        data = content.encode(encoding)
    except LookupError:
        raise ToolInputError(f"unknown text encoding {encoding!r}", tool_id="write_file") from None
    except UnicodeEncodeError as exc:
        raise ToolInputError(
            f"content cannot be encoded as {encoding} (character {exc.start})", tool_id="write_file"
        ) from exc

    try:
        size, digest = await asyncio.to_thread(_write, target, data, mode)
    except FileExistsError:
        raise ToolExecutionError(
            f"file {path!r} already exists and mode is 'create'; use mode 'overwrite' or 'append'",
            tool_id="write_file",
        ) from None
    except OSError as exc:
        raise ToolExecutionError(
            f"cannot write {path!r}: {exc.strerror or exc}", tool_id="write_file"
        ) from exc
    logger.info(
        "file written",
        extra={"task_id": ctx.task_id, "step_id": ctx.step_id, "mode": mode, "bytes": len(data)},
    )
    return WriteFileOutput(path=path, mode=mode, bytes_written=len(data), size=size, sha256=digest)


def _write(target: Path, data: bytes, mode: WriteMode) -> tuple[int, str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    match mode:
        case "create":
            with target.open("xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        case "append":
            with target.open("ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        case "overwrite":
            _replace_atomically(target, data)
    digest = hashlib.sha256()
    size = 0
    with target.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _replace_atomically(target: Path, data: bytes) -> None:
    """Write to a temporary file next to ``target`` and rename it over: readers never see half a file."""
    try:
        file_mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        file_mode = 0o644
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(file_mode)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_needs_approval(args: dict[str, Any]) -> bool:
    """A write under ``drafts/`` needs no approval; any other (or an unreadable path) does."""
    path = args.get("path")
    if not isinstance(path, str) or not path:
        return True
    parts = PurePosixPath(path.replace("\\", "/")).parts
    return not (
        len(parts) >= 2
        and parts[0] == DRAFTS_DIR
        and ".." not in parts
        and not path.startswith(("/", "\\"))
    )


write_file: Tool = dataclasses.replace(_write_file, approval_predicate=write_needs_approval)
