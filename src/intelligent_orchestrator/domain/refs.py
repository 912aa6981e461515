"""References between step inputs and earlier step outputs: ``${steps.<id>.output.<path>}``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

REF_PATTERN = re.compile(
    r"\$\{\s*steps\.(?P<step>[A-Za-z][A-Za-z0-9_\-]*)\.output(?P<path>(?:\.[A-Za-z0-9_\-]+|\[\d+\])*)\s*\}"
)
_PART = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class Reference:
    step: str
    path: tuple[str | int, ...]
    text: str

    def __str__(self) -> str:
        return self.text


class ReferenceError_(LookupError):
    """A reference that cannot be resolved against the outputs at hand."""


def parse_path(path: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for m in _PART.finditer(path):
        key, index = m.group(1), m.group(2)
        parts.append(int(index) if index is not None else key)
    return tuple(parts)


def find_references(value: Any) -> Iterator[Reference]:
    """Yield every reference inside a JSON-like value (strings, lists, dicts)."""
    if isinstance(value, str):
        if "${" not in value:  # (most inputs: no reference to look for)
            return
        for m in REF_PATTERN.finditer(value):
            yield Reference(step=m.group("step"), path=parse_path(m.group("path")), text=m.group(0))
    elif isinstance(value, dict):
        for v in value.values():
            yield from find_references(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from find_references(v)


def lookup(output: Any, path: tuple[str | int, ...], *, text: str) -> Any:
    current = output
    for part in path:
        if isinstance(part, int):
            if not isinstance(current, list) or part >= len(current):
                raise ReferenceError_(f"{text}: index [{part}] is out of range")
            current = current[part]
        else:
            if not isinstance(current, dict) or part not in current:
                raise ReferenceError_(f"{text}: output has no field {part!r}")
            current = current[part]
    return current


def resolve(value: Any, outputs: dict[str, Any]) -> Any:
    """Substitute references with values from ``outputs`` (step id -> output).

    A string that is exactly one reference becomes the referenced value with its type; a
    reference inside a longer string is formatted as text.
    """
    if isinstance(value, str):
        if "${" not in value:
            return value
        whole = REF_PATTERN.fullmatch(value.strip())
        if whole:
            ref = Reference(whole.group("step"), parse_path(whole.group("path")), whole.group(0))
            return _value(ref, outputs)

        def text(m: re.Match[str]) -> str:
            ref = Reference(m.group("step"), parse_path(m.group("path")), m.group(0))
            v = _value(ref, outputs)
            return v if isinstance(v, str) else _to_text(v)

        return REF_PATTERN.sub(text, value)
    if isinstance(value, dict):
        return {k: resolve(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, outputs) for v in value]
    return value


def _value(ref: Reference, outputs: dict[str, Any]) -> Any:
    if ref.step not in outputs:
        raise ReferenceError_(f"{ref.text}: step {ref.step!r} has no output")
    return lookup(outputs[ref.step], ref.path, text=ref.text)


def _to_text(v: Any) -> str:
    import json

    return json.dumps(v, ensure_ascii=False, default=str)
