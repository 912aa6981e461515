from __future__ import annotations

import asyncio
import hashlib
import struct
from pathlib import Path

import jsonschema
import pytest

from intelligent_orchestrator.errors import ToolInputError
from intelligent_orchestrator.tools.builtin import chart
from intelligent_orchestrator.tools.spec import ToolContext

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROWS = [
    {"month": "2024-01", "revenue": 1000, "cost": 600},
    {"month": "2024-02", "revenue": 1200.5, "cost": 700},
    {"month": "2024-03", "revenue": 1500, "cost": None},
]


async def test_bar_chart_png_artifact(ctx: ToolContext, workspace: Path) -> None:
    out = await chart.invoke(
        {
            "rows": ROWS,
            "x": "month",
            "y": ["revenue", "cost"],
            "kind": "bar",
            "title": "Q1 Revenue",
            "width": 640,
            "height": 480,
        },
        ctx,
    )
    image = (workspace / out["path"]).read_bytes()
    assert image.startswith(PNG_MAGIC)
    width, height = struct.unpack(">II", image[16:24])  # the IHDR chunk
    assert (width, height) == (640, 480)
    assert out["media_type"] == "image/png"
    assert out["size"] == len(image)
    assert out["sha256"] == hashlib.sha256(image).hexdigest()
    assert out["path"] == "artifacts/task-1/step-1-q1-revenue.png"
    assert out["points"] == 3
    assert [a.path for a in ctx.artifacts] == [out["path"]]
    jsonschema.validate(out, chart.spec.output_schema)


async def test_line_chart_svg(ctx: ToolContext, workspace: Path) -> None:
    out = await chart.invoke({"rows": ROWS, "x": "month", "y": "revenue", "format": "svg"}, ctx)
    svg = (workspace / out["path"]).read_text()
    assert svg.startswith("<?xml")
    assert "<svg" in svg
    assert "revenue" in svg  # the y-axis label is drawn
    assert out["media_type"] == "image/svg+xml"
    assert out["path"].endswith(".svg")


@pytest.mark.parametrize("kind", ["line", "bar", "scatter", "pie", "area"])
async def test_every_kind_from_columns_and_row_lists(
    ctx: ToolContext, workspace: Path, kind: str
) -> None:
    out = await chart.invoke(
        {
            "columns": ["channel", "leads"],
            "rows": [["email", 20], ["social", 30], ["search", 12]],
            "x": "channel",
            "y": "leads",
            "kind": kind,
        },
        ctx,
    )
    assert (workspace / out["path"]).read_bytes().startswith(PNG_MAGIC)
    assert out["kind"] == kind


async def test_charts_drawn_concurrently_are_all_valid(ctx: ToolContext, workspace: Path) -> None:
    outs = await asyncio.gather(
        *(
            chart.invoke(
                {
                    "rows": ROWS,
                    "x": "month",
                    "y": "revenue",
                    "title": f"Chart {i}",
                    "width": 300,
                    "height": 200,
                },
                ctx,
            )
            for i in range(3)
        )
    )
    assert len({o["path"] for o in outs}) == 3
    for out in outs:
        image = (workspace / out["path"]).read_bytes()
        assert image.startswith(PNG_MAGIC)
        assert hashlib.sha256(image).hexdigest() == out["sha256"]


async def test_numeric_x_axis(ctx: ToolContext, workspace: Path) -> None:
    rows = [{"price": p, "units": 100 - 3 * p} for p in range(1, 20)]
    out = await chart.invoke({"rows": rows, "x": "price", "y": "units", "kind": "scatter"}, ctx)
    assert (workspace / out["path"]).stat().st_size == out["size"]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"x": "month", "y": "profit"}, "column 'profit' is not in the rows"),
        ({"x": "week", "y": "revenue"}, "column 'week' is not in the rows"),
        ({"x": "revenue", "y": "month"}, "column 'month' is not numeric"),
        ({"x": "month", "y": ["revenue", "cost"], "kind": "pie"}, "one column"),
        ({"x": "month", "y": []}, "at least one column"),
    ],
)
async def test_bad_columns_are_input_errors(
    ctx: ToolContext, workspace: Path, args: dict[str, object], match: str
) -> None:
    with pytest.raises(ToolInputError, match=match):
        await chart.invoke({"rows": ROWS, **args}, ctx)
    assert not (workspace / "artifacts").exists()


async def test_row_lists_need_columns(ctx: ToolContext) -> None:
    with pytest.raises(ToolInputError, match="'columns'"):
        await chart.invoke({"rows": [["a", 1]], "x": "a", "y": "b"}, ctx)
    with pytest.raises(ToolInputError, match="row 0 has 3 values but there are 2 columns"):
        await chart.invoke({"rows": [["a", 1, 2]], "columns": ["a", "b"], "x": "a", "y": "b"}, ctx)


async def test_empty_rows_and_bad_sizes(ctx: ToolContext) -> None:
    with pytest.raises(ToolInputError, match="no rows"):
        await chart.invoke({"rows": [], "x": "a", "y": "b"}, ctx)
    with pytest.raises(ToolInputError, match="'width'"):
        await chart.invoke({"rows": ROWS, "x": "month", "y": "revenue", "width": 10}, ctx)
    with pytest.raises(ToolInputError, match="'format'"):
        await chart.invoke({"rows": ROWS, "x": "month", "y": "revenue", "format": "gif"}, ctx)
