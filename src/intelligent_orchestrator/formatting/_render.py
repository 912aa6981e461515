"""Writing a variant's files (Markdown, HTML, text, e-mail, PDF, JSON) into the workspace."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
from dataclasses import asdict
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import assert_never

from ..domain.models import SCHEMA_VERSION, ChannelVariant
from ..errors import PathEscapeError
from ..tools.spec import Artifact
from . import _text as tx
from ._channels import image_markdown, plain_email_html
from ._model import Content, Metadata, channel_family
from ._pdf import render_pdf

MEDIA_TYPES = {
    "md": "text/markdown",
    "html": "text/html",
    "txt": "text/plain",
    "eml": "message/rfc822",
    "pdf": "application/pdf",
    "json": "application/json",
}


def file_key(variant: ChannelVariant) -> str:
    """The variant's file stem: the channel, or ``channel-<language>`` for a translation."""
    key = variant.channel if not variant.language else f"{variant.channel}-{variant.language}"
    return re.sub(r"[^a-z0-9_.-]+", "-", key.lower()).strip("-.") or "variant"


def render_artifacts(
    variant: ChannelVariant, content: Content, meta: Metadata, workspace: Path, folder: str
) -> list[Artifact]:
    """Write the variant's files under ``workspace/folder`` and return their records.

    Also sets ``variant.artifacts`` to their workspace-relative paths. Files of the same name
    are replaced. In the written ``.md`` of a report, chart links are made relative to the
    file so the report shows its charts where it lies; ``variant.text`` keeps workspace paths.

    Raises:
        PathEscapeError: ``folder`` is absolute or leads out of the workspace.
    """
    root = workspace.resolve()
    target = (root / folder).resolve()
    if Path(folder).is_absolute() or not target.is_relative_to(root) or target == root:
        raise PathEscapeError(f"output folder {folder!r} is not inside the workspace")
    key = file_key(variant)
    files = _files(variant, content, root, target)
    names = [f"{key}.{ext}" for ext, _ in files] + [f"{key}.json"]
    variant.artifacts = [(target / name).relative_to(root).as_posix() for name in names]
    sidecar = {
        "schema_version": SCHEMA_VERSION,
        "variant": variant.model_dump(mode="json"),
        "metadata": asdict(meta),
    }
    files.append(("json", json.dumps(sidecar, indent=2, ensure_ascii=False).encode()))
    target.mkdir(parents=True, exist_ok=True)
    return [_write(root, target / f"{key}.{ext}", data, MEDIA_TYPES[ext]) for ext, data in files]


def _files(
    variant: ChannelVariant, content: Content, root: Path, target: Path
) -> list[tuple[str, bytes]]:
    family = channel_family(variant.channel)
    match family:
        case "blog":
            return [("md", _utf8(variant.text)), ("html", _utf8(_page(variant)))]
        case "social" | "thread":
            return [("txt", _utf8(variant.text))]
        case "email":
            document = variant.html or plain_email_html(variant)
            return [
                ("eml", _eml(variant, document)),
                ("txt", _utf8(variant.text)),
                ("html", _utf8(document)),
            ]
        case "report":
            markdown = variant.text
            for chart in content.charts:
                relative = Path(os.path.relpath(root / chart, target)).as_posix()
                markdown = markdown.replace(image_markdown(chart), image_markdown(relative))
            pdf = render_pdf(variant.text, title=variant.title, workspace=root)
            return [("md", _utf8(markdown)), ("pdf", pdf)]
        case _:
            assert_never(family)


def _utf8(text: str) -> bytes:
    return (text if text.endswith("\n") else text + "\n").encode()


def _page(variant: ChannelVariant) -> str:
    """A blog variant's HTML fragment wrapped in a page with its title and description."""
    lang = f' lang="{html.escape(variant.language, quote=True)}"' if variant.language else ""
    meta = (
        f'<meta name="description" content="{html.escape(variant.meta_description, quote=True)}">\n'
        if variant.meta_description
        else ""
    )
    body = variant.html or tx.render_html(variant.text)
    return (
        f'<!DOCTYPE html>\n<html{lang}>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(variant.title or '')}</title>\n{meta}</head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )


def _eml(variant: ChannelVariant, document: str) -> bytes:
    message = EmailMessage()
    # A header may not hold line breaks; an edited subject is flattened.
    message["Subject"] = tx.squash(variant.subject or variant.title or "")
    if variant.language:
        message["Content-Language"] = variant.language
    message.set_content(variant.text)
    message.add_alternative(document, subtype="html")
    return message.as_bytes(policy=policy.SMTP)


def _write(root: Path, path: Path, data: bytes, media_type: str) -> Artifact:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return Artifact(
        path=path.relative_to(root).as_posix(),
        media_type=media_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
