"""``chart``: draw rows as a PNG or SVG image with matplotlib and save it as an artifact."""

from __future__ import annotations

import asyncio
import io
import logging
import math
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from intelligent_orchestrator.errors import ToolInputError
from intelligent_orchestrator.tools.spec import ToolContext, tool

logger = logging.getLogger(__name__)

_TOOL_ID = "chart"
ChartKind = Literal["line", "bar", "scatter", "pie", "area"]
ImageFormat = Literal["png", "svg"]
_MEDIA_TYPES: dict[ImageFormat, str] = {"png": "image/png", "svg": "image/svg+xml"}
_DPI = 100
_MIN_PIXELS, _MAX_PIXELS = 200, 4000
_MAX_POINTS = 100_000


class ChartOutput(BaseModel):
    """What ``chart`` returns: where the image is and how to check it."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(description="Artifact path, relative to the workspace.")
    media_type: str
    sha256: str
    size: int = Field(description="Image size in bytes.")
    kind: ChartKind
    points: int = Field(description="Number of rows drawn.")


@tool(
    _TOOL_ID,
    name="Chart",
    category="analysis",
    estimated_cost=0.0,
    timeout_seconds=60.0,
)
async def chart(
    x: Annotated[str, Field(description="Column for the x axis (the labels of a pie).")],
    y: Annotated[
        str | list[str], Field(description="Numeric column, or a list of them (one series each).")
    ],
    rows: Annotated[
        list[dict[str, Any]] | list[list[Any]],
        Field(description="Objects, or lists of values in the order given by `columns`."),
    ],
    columns: Annotated[
        list[str] | None, Field(description="Column names, when `rows` are lists of values.")
    ] = None,
    kind: Annotated[ChartKind, Field(description="Chart type.")] = "line",
    title: Annotated[str | None, Field(description="Title drawn above the chart.")] = None,
    format: Annotated[ImageFormat, Field(description="Image format.")] = "png",
    width: Annotated[
        int, Field(ge=_MIN_PIXELS, le=_MAX_PIXELS, description="Width in pixels.")
    ] = 800,
    height: Annotated[
        int, Field(ge=_MIN_PIXELS, le=_MAX_PIXELS, description="Height in pixels.")
    ] = 500,
    *,
    ctx: ToolContext,
) -> ChartOutput:
    """Draw a line, bar, scatter, pie or area chart of table rows and save it as a PNG or SVG artifact."""
    for name, pixels in (("width", width), ("height", height)):
        if not _MIN_PIXELS <= pixels <= _MAX_PIXELS:
            raise ToolInputError(
                f"field {name!r}: must be between {_MIN_PIXELS} and {_MAX_PIXELS} pixels",
                tool_id=_TOOL_ID,
            )
    series = [y] if isinstance(y, str) else list(y)
    if not series:
        raise ToolInputError("field 'y': give at least one column", tool_id=_TOOL_ID)
    if kind == "pie" and len(series) > 1:
        raise ToolInputError(
            f"field 'y': a pie chart shows one column, got {series}", tool_id=_TOOL_ID
        )
    records = _records(rows, columns)
    xs, ys = _extract(records, x, series, kind=kind)

    image = await asyncio.to_thread(
        _render, xs, ys, kind=kind, title=title, fmt=format, width=width, height=height, x_label=x
    )
    stem = _slug(title) if title else "chart"
    artifact = ctx.save_artifact(f"{stem}.{format}", image, media_type=_MEDIA_TYPES[format])
    logger.info(
        "chart drawn",
        extra={
            "task_id": ctx.task_id,
            "step_id": ctx.step_id,
            "kind": kind,
            "bytes": artifact.size,
        },
    )
    return ChartOutput(
        path=artifact.path,
        media_type=artifact.media_type,
        sha256=artifact.sha256,
        size=artifact.size,
        kind=kind,
        points=len(xs),
    )


def _records(
    rows: list[dict[str, Any]] | list[list[Any]], columns: list[str] | None
) -> list[dict[str, Any]]:
    if not rows:
        raise ToolInputError("field 'rows': there are no rows to draw", tool_id=_TOOL_ID)
    if len(rows) > _MAX_POINTS:
        raise ToolInputError(
            f"field 'rows': at most {_MAX_POINTS} rows can be drawn, got {len(rows)}",
            tool_id=_TOOL_ID,
        )
    records: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        if isinstance(row, dict):
            records.append(row)
        elif columns is None:
            raise ToolInputError(
                "field 'columns': needed when rows are lists of values", tool_id=_TOOL_ID
            )
        elif len(row) != len(columns):
            raise ToolInputError(
                f"field 'rows': row {index} has {len(row)} values but there are {len(columns)} columns",
                tool_id=_TOOL_ID,
            )
        else:
            records.append(dict(zip(columns, row, strict=True)))
    return records


def _extract(
    records: list[dict[str, Any]], x: str, series: list[str], *, kind: ChartKind
) -> tuple[list[Any], dict[str, list[float]]]:
    available: dict[str, None] = {}
    for record in records:
        available.update(dict.fromkeys(record))
    for column in [x, *series]:
        if column not in available:
            raise ToolInputError(
                f"column {column!r} is not in the rows; columns: {list(available)}",
                tool_id=_TOOL_ID,
            )
    xs = [_x_value(r.get(x)) for r in records]
    ys: dict[str, list[float]] = {}
    for column in series:
        values: list[float] = []
        for index, record in enumerate(records):
            number = _numeric(record.get(column))
            if number is None:
                raise ToolInputError(
                    f"column {column!r} is not numeric: row {index} has {record.get(column)!r}",
                    tool_id=_TOOL_ID,
                )
            values.append(number)
        ys[column] = values
    if kind == "pie":
        values = ys[series[0]]
        if any(v < 0 for v in values if not math.isnan(v)):
            raise ToolInputError(
                f"column {series[0]!r} has negative values; a pie needs values >= 0",
                tool_id=_TOOL_ID,
            )
        if not any(v > 0 for v in values if not math.isnan(v)):
            raise ToolInputError(
                f"column {series[0]!r} has no positive value to draw as a pie", tool_id=_TOOL_ID
            )
    return xs, ys


def _numeric(value: Any) -> float | None:
    """A float for a number (NaN for a missing value), None for anything else."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace(",", "").strip())
        except ValueError:
            return None
    return None


def _x_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | Decimal):
        return float(value)
    return str(value)


def _render(
    xs: list[Any],
    ys: dict[str, list[float]],
    *,
    kind: ChartKind,
    title: str | None,
    fmt: ImageFormat,
    width: int,
    height: int,
    x_label: str,
) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A Figure of its own, not pyplot: no global state, safe in a worker thread.
    figure = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    categorical = any(isinstance(v, str) for v in xs)
    # Categorical x values are placed at 0..n-1 and labelled, so their order is the rows' order.
    positions: list[Any] = list(range(len(xs))) if categorical else xs
    names = list(ys)

    match kind:
        case "line":
            for name in names:
                axes.plot(positions, ys[name], marker="o" if len(xs) <= 50 else None, label=name)
        case "area":
            for name in names:
                axes.fill_between(
                    positions, ys[name], alpha=0.35 if len(names) > 1 else 0.6, label=name
                )
                axes.plot(positions, ys[name], linewidth=1)
        case "scatter":
            for name in names:
                axes.scatter(positions, ys[name], label=name, s=20)
        case "bar":
            slots = list(range(len(xs)))
            bar_width = 0.8 / len(names)
            for i, name in enumerate(names):
                offset = (i - (len(names) - 1) / 2) * bar_width
                axes.bar([p + offset for p in slots], ys[name], width=bar_width, label=name)
            categorical = True
        case "pie":
            values = [0.0 if math.isnan(v) else v for v in ys[names[0]]]
            axes.pie(
                values,
                labels=[_label(v) for v in xs],
                autopct="%1.1f%%",
                startangle=90,
                counterclock=False,
            )
            axes.set_aspect("equal")

    if kind != "pie":
        if categorical:
            labels = [_label(v) for v in xs]
            axes.set_xticks(
                list(range(len(xs))),
                labels,
                rotation=45 if len(xs) > 6 else 0,
                ha="right" if len(xs) > 6 else "center",
            )
        axes.set_xlabel(x_label)
        axes.set_ylabel(names[0] if len(names) == 1 else "value")
        axes.grid(visible=True, alpha=0.3)
        if len(names) > 1:
            axes.legend()
    if title:
        axes.set_title(title)

    buffer = io.BytesIO()
    metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {}
    figure.savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40]
    return slug or "chart"
