"""Data tools: ``query_data`` (DuckDB SQL over workspace files) and ``business_metrics``."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from intelligent_orchestrator.errors import ToolExecutionError, ToolInputError
from intelligent_orchestrator.tools.spec import ToolContext, tool
from intelligent_orchestrator.tools.workspace import resolve_in_workspace

if TYPE_CHECKING:  # heavy imports are deferred to the call, so the CLI starts fast
    import duckdb
    import pyarrow as pa

logger = logging.getLogger(__name__)

_QUERY_TOOL = "query_data"
_METRICS_TOOL = "business_metrics"
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_MAX_ROWS_LIMIT = 1_000_000

SourceKind = Literal["csv", "parquet", "json", "excel", "inline"]
_SUFFIXES: dict[str, SourceKind] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".csv.gz": "csv",
    ".tsv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".xlsx": "excel",
    ".xlsm": "excel",
}
_READERS: dict[SourceKind, str] = {
    "csv": "read_csv",
    "parquet": "read_parquet",
    "json": "read_json",
}

# Applied after the tables are loaded, before the caller's SQL runs: from then on the SQL can
# reach neither files, nor the network, nor extensions, nor Python variables, and cannot undo it.
_REQUIRED_LOCKDOWN = ("SET enable_external_access = false",)
_OPTIONAL_LOCKDOWN = (
    "SET python_enable_replacements = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
)
_LOCK = "SET lock_configuration = true"


# ---------------------------------------------------------------------------------------------
# query_data


class QueryDataOutput(BaseModel):
    """What ``query_data`` returns: a JSON-safe table."""

    model_config = ConfigDict(frozen=True)

    columns: list[str] = Field(
        description="Column names in order (duplicates get a _1, _2 suffix)."
    )
    column_types: list[str] = Field(description="DuckDB type of each column.")
    rows: list[dict[str, Any]] = Field(
        description="One object per row; dates as ISO strings, decimals as numbers."
    )
    row_count: int = Field(description="Number of rows returned.")
    truncated: bool = Field(description="True when the query had more rows than max_rows.")
    csv: str = Field(default="", description="The same rows as CSV text (to save or attach).")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Source:
    name: str
    kind: SourceKind
    label: str  # what the caller gave: a workspace path or "inline"
    path: Path | None = None
    sheet: str | None = None
    rows: list[dict[str, Any]] | None = None


@tool(
    _QUERY_TOOL,
    name="Query data",
    category="data",
    estimated_cost=0.0,
    timeout_seconds=120.0,
)
async def query_data(
    sql: Annotated[
        str,
        Field(
            description="DuckDB SQL over the named tables, e.g. SELECT region, sum(amount) FROM sales GROUP BY 1."
        ),
    ],
    tables: Annotated[
        dict[str, str] | None,
        Field(
            description="Table name -> workspace file (.csv, .tsv, .parquet, .json, .jsonl, .xlsx)."
        ),
    ] = None,
    inline: Annotated[
        dict[str, list[dict[str, Any]]] | None,
        Field(description="Table name -> rows (e.g. an earlier step's output)."),
    ] = None,
    sheets: Annotated[
        dict[str, str] | None,
        Field(
            description="Table name -> worksheet to read for an Excel file (default: the first)."
        ),
    ] = None,
    max_rows: Annotated[
        int, Field(ge=1, le=_MAX_ROWS_LIMIT, description="Return at most this many rows.")
    ] = 10_000,
    *,
    ctx: ToolContext,
) -> QueryDataOutput:
    """Run DuckDB SQL over CSV, Parquet, JSON or Excel files in the workspace and inline rows."""
    if not sql.strip():
        raise ToolInputError("field 'sql': the query is empty", tool_id=_QUERY_TOOL)
    if not 1 <= max_rows <= _MAX_ROWS_LIMIT:
        raise ToolInputError(
            f"field 'max_rows': must be between 1 and {_MAX_ROWS_LIMIT}", tool_id=_QUERY_TOOL
        )
    sources = _sources(ctx.workspace, tables or {}, inline or {}, sheets or {})

    import duckdb

    con = duckdb.connect(":memory:")
    try:
        result = await asyncio.to_thread(_load_and_query, con, sources, sql, max_rows)
    except asyncio.CancelledError:
        con.interrupt()  # the worker thread stops at DuckDB's next check, then closes the connection
        raise
    logger.info(
        "query finished",
        extra={
            "task_id": ctx.task_id,
            "step_id": ctx.step_id,
            "tables": len(sources),
            "rows": result.row_count,
        },
    )
    return result


def _sources(
    workspace: Path,
    tables: Mapping[str, str],
    inline: Mapping[str, list[dict[str, Any]]],
    sheets: Mapping[str, str],
) -> list[_Source]:
    seen: dict[str, str] = {}
    for name in [*tables, *inline]:
        if not _TABLE_NAME.match(name):
            raise ToolInputError(
                f"table name {name!r} is not a plain identifier (letters, digits, _; not starting with a digit)",
                tool_id=_QUERY_TOOL,
            )
        if name.lower() in seen:  # DuckDB names are case-insensitive
            raise ToolInputError(
                f"table name {name!r} is given twice (also as {seen[name.lower()]!r})",
                tool_id=_QUERY_TOOL,
            )
        seen[name.lower()] = name
    for name in sheets:
        if name not in tables:
            raise ToolInputError(
                f"field 'sheets': {name!r} is not one of the tables", tool_id=_QUERY_TOOL
            )

    sources: list[_Source] = []
    for name, rel in tables.items():
        kind = _kind(rel)
        if kind is None:
            known = ", ".join(sorted(_SUFFIXES))
            raise ToolInputError(
                f"table {name!r}: file {rel!r} is not a supported type ({known})",
                tool_id=_QUERY_TOOL,
            )
        path = resolve_in_workspace(workspace, rel, must_exist=True)
        if not path.is_file():
            raise ToolInputError(f"table {name!r}: {rel!r} is not a file", tool_id=_QUERY_TOOL)
        sources.append(_Source(name=name, kind=kind, label=rel, path=path, sheet=sheets.get(name)))
    for name, rows in inline.items():
        if not rows:
            raise ToolInputError(
                f"inline table {name!r} has no rows, so its columns are unknown",
                tool_id=_QUERY_TOOL,
            )
        sources.append(_Source(name=name, kind="inline", label="inline rows", rows=rows))
    return sources


def _kind(rel: str) -> SourceKind | None:
    lower = rel.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return _SUFFIXES[suffix]
    return None


def _load_and_query(
    con: duckdb.DuckDBPyConnection, sources: list[_Source], sql: str, max_rows: int
) -> QueryDataOutput:
    import duckdb

    try:
        for source in sources:
            _load(con, source)
        _lock_down(con)
        try:
            cursor = con.execute(sql)
            description = cursor.description or []
            fetched = cursor.fetchmany(max_rows + 1) if description else []
        except duckdb.Error as exc:
            raise ToolExecutionError(f"SQL error: {exc}", tool_id=_QUERY_TOOL) from exc
    finally:
        con.close()

    columns = _unique([str(d[0]) for d in description])
    truncated = len(fetched) > max_rows
    rows = [
        {col: _json_safe(value) for col, value in zip(columns, record, strict=True)}
        for record in fetched[:max_rows]
    ]
    return QueryDataOutput(
        columns=columns,
        column_types=[str(d[1]) for d in description],
        rows=rows,
        row_count=len(rows),
        truncated=truncated,
        csv=_as_csv(columns, rows),
    )


def _as_csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _load(con: duckdb.DuckDBPyConnection, source: _Source) -> None:
    import duckdb

    table = _quote(source.name)
    try:
        match source.kind:
            case "csv" | "parquet" | "json":
                reader = _READERS[source.kind]
                con.execute(
                    f"CREATE TABLE {table} AS SELECT * FROM {reader}(?)", [str(source.path)]
                )
            case "excel":
                assert source.path is not None
                _create_from_rows(con, table, _excel_rows(source), what=f"table {source.name!r}")
            case "inline":
                assert source.rows is not None
                _create_from_rows(con, table, source.rows, what=f"inline table {source.name!r}")
    except duckdb.Error as exc:
        raise ToolExecutionError(
            f"cannot load table {source.name!r} from {source.label!r}: {exc}", tool_id=_QUERY_TOOL
        ) from exc


def _lock_down(con: duckdb.DuckDBPyConnection) -> None:
    import duckdb

    for statement in _REQUIRED_LOCKDOWN:
        con.execute(statement)
    for statement in _OPTIONAL_LOCKDOWN:
        try:
            con.execute(statement)
        except duckdb.Error:  # a setting this DuckDB version does not have
            logger.debug("duckdb setting not available", extra={"statement": statement})
    con.execute(_LOCK)


def _create_from_rows(
    con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]], *, what: str
) -> None:
    arrow = _arrow_table(rows, what=what)
    view = "__orchestrator_load"
    con.register(view, arrow)
    try:
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM {view}")
    finally:
        con.unregister(view)


def _arrow_table(rows: list[dict[str, Any]], *, what: str) -> pa.Table:
    import pyarrow as pa

    names: dict[str, None] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict):  # pyright: ignore[reportUnnecessaryIsInstance]  # rows come from JSON
            raise ToolInputError(f"{what}: row {index} is not an object", tool_id=_QUERY_TOOL)
        names.update(dict.fromkeys(str(k) for k in row))
    arrays: dict[str, pa.Array] = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # Mixed types in one column (e.g. numbers and words): keep every value, as text.
            arrays[name] = pa.array(
                [None if v is None else _as_text(v) for v in values], pa.string()
            )
    if not arrays:
        raise ToolInputError(f"{what} has no columns", tool_id=_QUERY_TOOL)
    return pa.table(arrays)


def _excel_rows(source: _Source) -> list[dict[str, Any]]:
    import openpyxl

    assert source.path is not None
    try:
        book = openpyxl.load_workbook(source.path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, XML and its own errors for a bad file
        raise ToolExecutionError(
            f"cannot read Excel file {source.label!r} for table {source.name!r}: {exc}",
            tool_id=_QUERY_TOOL,
        ) from exc
    try:
        if source.sheet is None:
            sheet = book.worksheets[0]
        elif source.sheet in book.sheetnames:
            sheet = book[source.sheet]
        else:
            raise ToolInputError(
                f"table {source.name!r}: {source.label!r} has no sheet {source.sheet!r} (sheets: {book.sheetnames})",
                tool_id=_QUERY_TOOL,
            )
        records = sheet.iter_rows(values_only=True)
        header = next(records, None)
        if header is None:
            raise ToolInputError(
                f"table {source.name!r}: sheet in {source.label!r} is empty", tool_id=_QUERY_TOOL
            )
        names = _unique(
            [
                str(h).strip() if h is not None and str(h).strip() else f"column{i + 1}"
                for i, h in enumerate(header)
            ]
        )
        rows = [
            dict(zip(names, record, strict=False))
            for record in records
            if any(v is not None for v in record)
        ]
    finally:
        book.close()
    if not rows:
        raise ToolInputError(
            f"table {source.name!r}: sheet in {source.label!r} has no data rows",
            tool_id=_QUERY_TOOL,
        )
    return rows


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _unique(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        candidate, n = name, 0
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def _as_text(value: Any) -> str:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def _json_safe(value: Any) -> Any:
    """DuckDB's Python values as JSON values: ISO dates, float decimals, no NaN."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float | Decimal):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]  # DuckDB MAP/STRUCT
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]  # pyright: ignore[reportUnknownVariableType]  # DuckDB LIST
    return str(value)


# ---------------------------------------------------------------------------------------------
# business_metrics

_INPUTS = (
    "revenue",
    "cost",
    "marketing_spend",
    "visitors",
    "conversions",
    "new_customers",
    "customers_start",
    "churned_customers",
)
_DERIVED: dict[str, tuple[str, ...]] = {
    "revenue": ("revenue",),
    "profit": ("revenue", "cost"),
    "revenue_growth_pct": ("period", "revenue"),
    "conversion_rate_pct": ("visitors", "conversions"),
    "cac": ("marketing_spend", "new_customers"),
    "churn_rate_pct": ("customers_start", "churned_customers"),
    "roi_pct": ("revenue", "cost"),
}
_DECIMALS = 6
_NUMBER_JUNK = re.compile(r"[\s,$€£¥]")


class MetricColumns(BaseModel):
    """Which column holds each figure; an unset one defaults to a column of the same name."""

    model_config = ConfigDict(extra="forbid")

    period: str | None = Field(
        default=None, description="Column naming the period (month, quarter, ...)."
    )
    revenue: str | None = Field(default=None, description="Column with revenue.")
    cost: str | None = Field(
        default=None, description="Column with total cost (for profit and ROI)."
    )
    visitors: str | None = Field(default=None, description="Column with visitors or sessions.")
    conversions: str | None = Field(
        default=None, description="Column with conversions (orders, sign-ups)."
    )
    new_customers: str | None = Field(
        default=None, description="Column with newly acquired customers."
    )
    marketing_spend: str | None = Field(
        default=None, description="Column with marketing spend (for CAC)."
    )
    customers_start: str | None = Field(
        default=None, description="Column with customers at period start."
    )
    churned_customers: str | None = Field(
        default=None, description="Column with customers lost in the period."
    )


class MetricValues(BaseModel):
    """Figures for one period or for all rows; null when not computable."""

    revenue: float | None = None
    cost: float | None = None
    profit: float | None = Field(default=None, description="revenue - cost")
    marketing_spend: float | None = None
    visitors: float | None = None
    conversions: float | None = None
    new_customers: float | None = None
    customers_start: float | None = None
    churned_customers: float | None = None
    revenue_growth_pct: float | None = Field(
        default=None,
        description="Per period: versus the previous period. In totals: last period versus the first.",
    )
    conversion_rate_pct: float | None = Field(
        default=None, description="conversions / visitors x 100"
    )
    cac: float | None = Field(
        default=None, description="Customer acquisition cost: marketing_spend / new_customers"
    )
    churn_rate_pct: float | None = Field(
        default=None, description="churned_customers / customers_start x 100 (totals: sum over sum)"
    )
    roi_pct: float | None = Field(default=None, description="(revenue - cost) / cost x 100")


class PeriodMetrics(MetricValues):
    """Figures for one period."""

    period: str


class BusinessMetricsOutput(BaseModel):
    """What ``business_metrics`` returns."""

    totals: MetricValues = Field(description="Figures over all rows.")
    periods: list[PeriodMetrics] = Field(
        description="Figures per period, in order of first appearance."
    )
    unavailable: dict[str, list[str]] = Field(description="Metric -> the input columns it lacks.")
    notes: list[str] = Field(description="Why a value is null (e.g. division by zero).")
    columns_used: dict[str, str] = Field(description="Figure -> the column it was read from.")
    row_count: int


@tool(
    _METRICS_TOOL,
    name="Business metrics",
    category="analysis",
    estimated_cost=0.0,
    timeout_seconds=30.0,
)
async def business_metrics(
    rows: Annotated[
        list[dict[str, Any]], Field(description="Table rows, e.g. the rows of a query_data step.")
    ],
    columns: Annotated[
        MetricColumns | None,
        Field(description="Which column holds each figure (default: same-named columns)."),
    ] = None,
    *,
    ctx: ToolContext,
) -> BusinessMetricsOutput:
    """Compute revenue, growth %, conversion rate, CAC, churn rate and ROI, in total and per period."""
    mapping = MetricColumns.model_validate(columns or {})
    result = _metrics(rows, mapping)
    logger.info(
        "business metrics computed",
        extra={
            "task_id": ctx.task_id,
            "step_id": ctx.step_id,
            "rows": len(rows),
            "periods": len(result.periods),
        },
    )
    return result


def _metrics(rows: list[dict[str, Any]], mapping: MetricColumns) -> BusinessMetricsOutput:
    present: set[str] = set()
    for index, row in enumerate(rows):
        if not isinstance(row, dict):  # pyright: ignore[reportUnnecessaryIsInstance]  # rows come from JSON
            raise ToolInputError(
                f"field 'rows': row {index} is not an object", tool_id=_METRICS_TOOL
            )
        present.update(row)

    used: dict[str, str] = {}
    for figure, column in mapping.model_dump().items():
        if column is not None:
            if rows and column not in present:
                raise ToolInputError(
                    f"column {column!r} (mapped to {figure!r}) is not in the rows; columns: {sorted(present)}",
                    tool_id=_METRICS_TOOL,
                )
            used[figure] = column
        elif figure in present:
            used[figure] = figure

    notes: list[str] = []
    if not rows:
        notes.append("no rows: nothing to compute")
    unavailable = {
        metric: missing
        for metric, needs in _DERIVED.items()
        if (missing := [n for n in needs if n not in used])
    }

    # Sum every figure per period, keeping periods in the order they first appear.
    period_col = used.get("period")
    sums: dict[str, dict[str, list[float]]] = {}
    for index, row in enumerate(rows):
        key = _period_label(row.get(period_col)) if period_col else ""
        bucket = sums.setdefault(key, {f: [] for f in _INPUTS})
        for figure in _INPUTS:
            column = used.get(figure)
            if column is not None:
                number = _number(row.get(column), column=column, index=index)
                if number is not None:
                    bucket[figure].append(number)

    totals_raw = {
        f: (
            math.fsum(v for b in sums.values() for v in b[f])
            if any(b[f] for b in sums.values())
            else None
        )
        for f in _INPUTS
    }
    periods: list[PeriodMetrics] = []
    if period_col:
        previous: float | None = None
        for position, (label, bucket) in enumerate(sums.items()):
            raw = {f: (math.fsum(vals) if vals else None) for f, vals in bucket.items()}
            where = f"period {label!r}"
            values = _derive(raw, where=where, notes=notes)
            if position > 0 and "revenue_growth_pct" not in unavailable:
                values["revenue_growth_pct"] = _growth(
                    previous, raw["revenue"], where=where, notes=notes
                )
            previous = raw["revenue"]
            periods.append(PeriodMetrics(period=label, **values))

    totals = _derive(totals_raw, where="totals", notes=notes)
    if "revenue_growth_pct" not in unavailable:
        if len(periods) >= 2:
            totals["revenue_growth_pct"] = _growth(
                periods[0].revenue,
                periods[-1].revenue,
                where="totals (last vs first period)",
                notes=notes,
            )
        else:
            notes.append("revenue_growth_pct in totals is null: it needs at least two periods")

    return BusinessMetricsOutput(
        totals=MetricValues(**totals),
        periods=periods,
        unavailable=unavailable,
        notes=notes,
        columns_used=used,
        row_count=len(rows),
    )


def _derive(
    raw: dict[str, float | None], *, where: str, notes: list[str]
) -> dict[str, float | None]:
    out: dict[str, float | None] = {f: _round(v) for f, v in raw.items()}
    revenue, cost = raw["revenue"], raw["cost"]
    if revenue is not None and cost is not None:
        out["profit"] = _round(revenue - cost)
        out["roi_pct"] = _ratio(
            revenue - cost, cost, "roi_pct", "cost", where=where, notes=notes, scale=100
        )
    out["conversion_rate_pct"] = _ratio(
        raw["conversions"],
        raw["visitors"],
        "conversion_rate_pct",
        "visitors",
        where=where,
        notes=notes,
        scale=100,
    )
    out["cac"] = _ratio(
        raw["marketing_spend"],
        raw["new_customers"],
        "cac",
        "new_customers",
        where=where,
        notes=notes,
    )
    out["churn_rate_pct"] = _ratio(
        raw["churned_customers"],
        raw["customers_start"],
        "churn_rate_pct",
        "customers_start",
        where=where,
        notes=notes,
        scale=100,
    )
    return out


def _ratio(
    numerator: float | None,
    denominator: float | None,
    metric: str,
    denominator_name: str,
    *,
    where: str,
    notes: list[str],
    scale: float = 1.0,
) -> float | None:
    if numerator is None or denominator is None:
        return None
    if denominator == 0:
        notes.append(f"{metric} in {where} is null: {denominator_name} is 0 (division by zero)")
        return None
    return _round(numerator / denominator * scale)


def _growth(
    before: float | None, after: float | None, *, where: str, notes: list[str]
) -> float | None:
    if before is None or after is None:
        notes.append(f"revenue_growth_pct in {where} is null: revenue is missing")
        return None
    if before == 0:
        notes.append(
            f"revenue_growth_pct in {where} is null: previous revenue is 0 (division by zero)"
        )
        return None
    return _round((after - before) / abs(before) * 100)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, _DECIMALS)


def _period_label(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(value: Any, *, column: str, index: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ToolInputError(
            f"column {column!r}, row {index}: {value!r} is not a number", tool_id=_METRICS_TOOL
        )
    if isinstance(value, int | float | Decimal):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        cleaned = _NUMBER_JUNK.sub("", value)
        if not cleaned:
            return None
        try:
            return float(cleaned)
        except ValueError:
            pass
    raise ToolInputError(
        f"column {column!r}, row {index}: {value!r} is not a number", tool_id=_METRICS_TOOL
    )
