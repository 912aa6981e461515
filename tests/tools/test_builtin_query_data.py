from __future__ import annotations

import asyncio
import sys
import time
from datetime import date, datetime
from pathlib import Path
from types import FrameType

import jsonschema
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from intelligent_orchestrator.errors import PathEscapeError, ToolExecutionError, ToolInputError
from intelligent_orchestrator.tools.builtin import query_data
from intelligent_orchestrator.tools.spec import ToolContext


def _exists(path: str) -> bool:
    return Path(path).exists()


@pytest.fixture
def sales_csv(workspace: Path) -> str:
    (workspace / "data").mkdir(exist_ok=True)
    (workspace / "data" / "sales.csv").write_text(
        "region,month,amount\n"
        "north,2024-01,100.5\n"
        "south,2024-01,80\n"
        "north,2024-02,120\n"
        "south,2024-02,95.5\n"
    )
    return "data/sales.csv"


async def test_csv_group_by(ctx: ToolContext, sales_csv: str) -> None:
    out = await query_data.invoke(
        {
            "sql": "SELECT region, sum(amount) AS total FROM sales GROUP BY region ORDER BY region",
            "tables": {"sales": sales_csv},
        },
        ctx,
    )
    assert out["columns"] == ["region", "total"]
    assert out["rows"] == [{"region": "north", "total": 220.5}, {"region": "south", "total": 175.5}]
    assert out["row_count"] == 2
    assert out["truncated"] is False
    jsonschema.validate(out, query_data.spec.output_schema)


async def test_parquet(ctx: ToolContext, workspace: Path) -> None:
    table = pa.table(
        {
            "sku": ["A-1", "B-2", "C-3"],
            "units": pa.array([3, 0, 7], pa.int64()),
            "shipped": pa.array([date(2024, 3, 1), None, date(2024, 3, 9)], pa.date32()),
        }
    )
    pq.write_table(table, workspace / "orders.parquet")
    out = await query_data.invoke(
        {
            "sql": "SELECT sku, units, shipped FROM orders WHERE units > 0 ORDER BY sku",
            "tables": {"orders": "orders.parquet"},
        },
        ctx,
    )
    assert out["rows"] == [
        {"sku": "A-1", "units": 3, "shipped": "2024-03-01"},
        {"sku": "C-3", "units": 7, "shipped": "2024-03-09"},
    ]
    assert out["column_types"] == ["VARCHAR", "BIGINT", "DATE"]


async def test_excel(ctx: ToolContext, workspace: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Leads"
    sheet.append(["day", "channel", "leads"])
    sheet.append([datetime(2024, 5, 1), "email", 12])
    sheet.append([datetime(2024, 5, 2), "social", 30])
    sheet.append([datetime(2024, 5, 3), "email", 8])
    second = book.create_sheet("Costs")
    second.append(["channel", "cost"])
    second.append(["email", 50])
    second.append(["social", 200])
    book.save(workspace / "marketing.xlsx")

    out = await query_data.invoke(
        {
            "sql": "SELECT channel, sum(leads) AS leads, min(day) AS first_day FROM leads GROUP BY 1 ORDER BY 1",
            "tables": {"leads": "marketing.xlsx"},
        },
        ctx,
    )
    assert out["rows"] == [
        {"channel": "email", "leads": 20, "first_day": "2024-05-01T00:00:00"},
        {"channel": "social", "leads": 30, "first_day": "2024-05-02T00:00:00"},
    ]

    costs = await query_data.invoke(
        {
            "sql": "SELECT * FROM costs ORDER BY cost DESC",
            "tables": {"costs": "marketing.xlsx"},
            "sheets": {"costs": "Costs"},
        },
        ctx,
    )
    assert costs["rows"] == [{"channel": "social", "cost": 200}, {"channel": "email", "cost": 50}]

    with pytest.raises(ToolInputError, match="no sheet 'Budget'"):
        await query_data.invoke(
            {"sql": "SELECT 1", "tables": {"b": "marketing.xlsx"}, "sheets": {"b": "Budget"}}, ctx
        )


async def test_inline_rows(ctx: ToolContext) -> None:
    rows = [
        {"campaign": "spring", "clicks": 120, "cost": 30.0},
        {"campaign": "summer", "clicks": 80, "cost": None},
        {"campaign": "autumn", "clicks": 40, "extra": "only here"},
    ]
    out = await query_data.invoke(
        {
            "sql": "SELECT campaign, clicks, cost, extra FROM ads ORDER BY clicks DESC",
            "inline": {"ads": rows},
        },
        ctx,
    )
    assert out["rows"] == [
        {"campaign": "spring", "clicks": 120, "cost": 30.0, "extra": None},
        {"campaign": "summer", "clicks": 80, "cost": None, "extra": None},
        {"campaign": "autumn", "clicks": 40, "cost": None, "extra": "only here"},
    ]


async def test_inline_column_with_mixed_types_is_kept_as_text(ctx: ToolContext) -> None:
    out = await query_data.invoke(
        {"sql": "SELECT v FROM t", "inline": {"t": [{"v": 1}, {"v": "two"}]}}, ctx
    )
    assert out["rows"] == [{"v": "1"}, {"v": "two"}]


async def test_join_file_with_inline_rows(ctx: ToolContext, sales_csv: str) -> None:
    targets = [{"region": "north", "target": 200}, {"region": "south", "target": 200}]
    out = await query_data.invoke(
        {
            "sql": (
                "SELECT s.region, sum(s.amount) AS total, t.target, sum(s.amount) >= t.target AS hit "
                "FROM sales s JOIN targets t USING (region) GROUP BY s.region, t.target ORDER BY s.region"
            ),
            "tables": {"sales": sales_csv},
            "inline": {"targets": targets},
        },
        ctx,
    )
    assert out["rows"] == [
        {"region": "north", "total": 220.5, "target": 200, "hit": True},
        {"region": "south", "total": 175.5, "target": 200, "hit": False},
    ]


async def test_json_safe_values_and_duplicate_column_names(ctx: ToolContext) -> None:
    out = await query_data.invoke(
        {
            "sql": (
                "SELECT 12.50::DECIMAL(10,2) AS price, DATE '2024-03-01' AS day, "
                "TIMESTAMP '2024-03-01 10:30:00' AS at, 'nan'::DOUBLE AS bad, [1, 2] AS list, 1 AS x, 2 AS x"
            )
        },
        ctx,
    )
    assert out["columns"] == ["price", "day", "at", "bad", "list", "x", "x_1"]
    assert out["rows"] == [
        {
            "price": 12.5,
            "day": "2024-03-01",
            "at": "2024-03-01T10:30:00",
            "bad": None,
            "list": [1, 2],
            "x": 1,
            "x_1": 2,
        }
    ]


async def test_max_rows_truncates(ctx: ToolContext) -> None:
    out = await query_data.invoke({"sql": "SELECT range AS n FROM range(10)", "max_rows": 3}, ctx)
    assert out["rows"] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert out["row_count"] == 3
    assert out["truncated"] is True


async def test_sql_error_carries_duckdbs_message(ctx: ToolContext, sales_csv: str) -> None:
    with pytest.raises(ToolExecutionError, match=r"SQL error.*nope") as info:
        await query_data.invoke({"sql": "SELECT * FROM nope", "tables": {"sales": sales_csv}}, ctx)
    assert info.value.transient is False
    with pytest.raises(ToolExecutionError, match=r"SQL error.*(?i:syntax)"):
        await query_data.invoke({"sql": "SELEC 1", "tables": {"sales": sales_csv}}, ctx)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "COPY (SELECT 1) TO '/tmp/io-test-exfil.csv'",
        "ATTACH '/tmp/io-test.duckdb' AS other",
        "INSTALL httpfs",
    ],
)
async def test_sql_cannot_reach_files_outside_the_tables(
    ctx: ToolContext, sales_csv: str, sql: str
) -> None:
    with pytest.raises(ToolExecutionError, match=r"SQL error.*(Permission|disabled)"):
        await query_data.invoke({"sql": sql, "tables": {"sales": sales_csv}}, ctx)
    assert not _exists("/tmp/io-test-exfil.csv")


async def test_sql_cannot_read_unloaded_workspace_files(
    ctx: ToolContext, workspace: Path, sales_csv: str
) -> None:
    (workspace / "salaries.csv").write_text("name,salary\nann,100\n")
    target = str(workspace / "salaries.csv")
    for sql in [f"SELECT * FROM '{target}'", f"SELECT * FROM read_csv_auto('{target}')"]:
        with pytest.raises(ToolExecutionError, match="Permission"):
            await query_data.invoke({"sql": sql, "tables": {"sales": sales_csv}}, ctx)


async def test_sql_cannot_unlock_the_configuration(ctx: ToolContext, sales_csv: str) -> None:
    with pytest.raises(ToolExecutionError, match="locked"):
        await query_data.invoke(
            {
                "sql": "SET enable_external_access = true; SELECT * FROM read_csv('/etc/passwd')",
                "tables": {"sales": sales_csv},
            },
            ctx,
        )


async def test_table_paths_must_stay_in_the_workspace(
    ctx: ToolContext, workspace: Path, outside: Path
) -> None:
    (outside / "x.csv").write_text("a\n1\n")
    (workspace / "linked.csv").symlink_to(outside / "x.csv")
    for path in ["../outside/x.csv", "/etc/passwd.csv", "linked.csv"]:
        with pytest.raises(PathEscapeError):
            await query_data.invoke({"sql": "SELECT * FROM t", "tables": {"t": path}}, ctx)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (
            {"sql": "SELECT 1", "tables": {"bad name": "a.csv"}},
            "'bad name' is not a plain identifier",
        ),
        ({"sql": "SELECT 1", "tables": {"t": "notes.txt"}}, "not a supported type"),
        ({"sql": "SELECT 1", "tables": {"t": "missing.csv"}}, "'missing.csv' does not exist"),
        ({"sql": "SELECT 1", "inline": {"t": []}}, "no rows"),
        ({"sql": "SELECT 1", "tables": {"T": "a.csv"}, "inline": {"t": [{"a": 1}]}}, "given twice"),
        ({"sql": "   "}, "'sql'"),
    ],
)
async def test_bad_inputs(ctx: ToolContext, args: dict[str, object], match: str) -> None:
    with pytest.raises(ToolInputError, match=match):
        await query_data.invoke(args, ctx)


async def test_missing_sql_is_a_schema_error_naming_the_field(ctx: ToolContext) -> None:
    with pytest.raises(ToolInputError, match="field 'sql'") as info:
        await query_data.invoke({"tables": {}}, ctx)
    assert info.value.tool_id == "query_data"


async def test_queries_run_concurrently(ctx: ToolContext, sales_csv: str) -> None:
    sqls = [f"SELECT count(*) + {i} AS n FROM sales" for i in range(8)]
    outs = await asyncio.gather(
        *(query_data.invoke({"sql": s, "tables": {"sales": sales_csv}}, ctx) for s in sqls)
    )
    assert [o["rows"][0]["n"] for o in outs] == [4 + i for i in range(8)]


def _threads_running_a_query() -> int:
    count = 0
    for frame in sys._current_frames().values():
        f: FrameType | None = frame
        while f is not None:
            if f.f_code.co_name == "_load_and_query":
                count += 1
                break
            f = f.f_back
    return count


async def test_cancelled_query_is_interrupted(ctx: ToolContext) -> None:
    endless = "SELECT count(*) FROM range(1000000000000) a WHERE a.range % 7 = 3"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(query_data.invoke({"sql": endless}, ctx), timeout=0.5)
    assert time.monotonic() - started < 3
    for _ in range(100):  # up to 5 s
        if not _threads_running_a_query():
            break
        await asyncio.sleep(0.05)
    assert _threads_running_a_query() == 0  # DuckDB stopped instead of running on in the background
