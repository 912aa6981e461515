from __future__ import annotations

import jsonschema
import pytest

from intelligent_orchestrator.errors import ToolInputError
from intelligent_orchestrator.tools.builtin import business_metrics
from intelligent_orchestrator.tools.spec import ToolContext

# February comes in two rows (two shops) that are summed into one period.
ROWS = [
    {
        "month": "2024-01",
        "sales": 1000,
        "cost": 600,
        "visitors": 2000,
        "orders": 40,
        "new_customers": 10,
        "spend": 200,
        "customers_start": 100,
        "churned": 5,
    },
    {
        "month": "2024-02",
        "sales": 700,
        "cost": 400,
        "visitors": 1500,
        "orders": 35,
        "new_customers": 7,
        "spend": 200,
        "customers_start": 60,
        "churned": 4,
    },
    {
        "month": "2024-02",
        "sales": "500",
        "cost": 300,
        "visitors": 1000,
        "orders": 25,
        "new_customers": 5,
        "spend": 100,
        "customers_start": 45,
        "churned": 3,
    },
    {
        "month": "2024-03",
        "sales": "$1,500.00",
        "cost": 900,
        "visitors": 3000,
        "orders": 75,
        "new_customers": 15,
        "spend": 450,
        "customers_start": 110,
        "churned": 11,
    },
]
COLUMNS = {
    "period": "month",
    "revenue": "sales",
    "conversions": "orders",
    "marketing_spend": "spend",
    "churned_customers": "churned",
}


async def test_exact_figures_per_period_and_in_total(ctx: ToolContext) -> None:
    out = await business_metrics.invoke({"rows": ROWS, "columns": COLUMNS}, ctx)

    jan, feb, mar = out["periods"]
    # Worked by hand:
    # Jan: conv 40/2000 = 2 %, CAC 200/10 = 20, churn 5/100 = 5 %, ROI (1000-600)/600 = 66.67 %
    assert jan == {
        "period": "2024-01",
        "revenue": 1000.0,
        "cost": 600.0,
        "profit": 400.0,
        "marketing_spend": 200.0,
        "visitors": 2000.0,
        "conversions": 40.0,
        "new_customers": 10.0,
        "customers_start": 100.0,
        "churned_customers": 5.0,
        "revenue_growth_pct": None,
        "conversion_rate_pct": 2.0,
        "cac": 20.0,
        "churn_rate_pct": 5.0,
        "roi_pct": 66.666667,
    }
    # Feb (two rows): revenue 1200, cost 700, growth (1200-1000)/1000 = 20 %, conv 60/2500 = 2.4 %,
    # CAC 300/12 = 25, churn 7/105 = 6.67 %, ROI 500/700 = 71.43 %
    assert feb["revenue"] == 1200.0
    assert feb["cost"] == 700.0
    assert feb["revenue_growth_pct"] == 20.0
    assert feb["conversion_rate_pct"] == 2.4
    assert feb["cac"] == 25.0
    assert feb["churn_rate_pct"] == pytest.approx(6.666667)
    assert feb["roi_pct"] == pytest.approx(71.428571)
    # Mar: growth 300/1200 = 25 %, conv 75/3000 = 2.5 %, CAC 450/15 = 30, churn 11/110 = 10 %
    assert (
        mar["revenue_growth_pct"],
        mar["conversion_rate_pct"],
        mar["cac"],
        mar["churn_rate_pct"],
    ) == (
        25.0,
        2.5,
        30.0,
        10.0,
    )

    totals = out["totals"]
    assert totals["revenue"] == 3700.0
    assert totals["cost"] == 2200.0
    assert totals["profit"] == 1500.0
    assert totals["roi_pct"] == pytest.approx(68.181818)  # 1500 / 2200
    assert totals["conversion_rate_pct"] == pytest.approx(2.333333)  # 175 / 7500
    assert totals["cac"] == pytest.approx(25.675676)  # 950 / 37
    assert totals["churn_rate_pct"] == pytest.approx(7.301587)  # 23 / 315
    assert totals["revenue_growth_pct"] == 50.0  # March vs January
    assert out["unavailable"] == {}
    assert out["notes"] == []
    assert out["row_count"] == 4
    assert out["columns_used"] == {
        "period": "month",
        "revenue": "sales",
        "cost": "cost",
        "visitors": "visitors",
        "conversions": "orders",
        "new_customers": "new_customers",
        "marketing_spend": "spend",
        "customers_start": "customers_start",
        "churned_customers": "churned",
    }
    jsonschema.validate(out, business_metrics.spec.output_schema)


async def test_unavailable_metrics_name_the_missing_columns(ctx: ToolContext) -> None:
    rows = [{"revenue": 100, "cost": 80}, {"revenue": 50, "cost": 20}]
    out = await business_metrics.invoke({"rows": rows}, ctx)  # same-named columns are found
    assert out["totals"]["revenue"] == 150.0
    assert out["totals"]["roi_pct"] == 50.0  # (150 - 100) / 100
    assert out["periods"] == []
    assert out["unavailable"] == {
        "revenue_growth_pct": ["period"],
        "conversion_rate_pct": ["visitors", "conversions"],
        "cac": ["marketing_spend", "new_customers"],
        "churn_rate_pct": ["customers_start", "churned_customers"],
    }
    assert out["totals"]["conversion_rate_pct"] is None


async def test_division_by_zero_gives_null_and_a_note(ctx: ToolContext) -> None:
    rows = [
        {
            "period": "Q1",
            "revenue": 0,
            "cost": 0,
            "visitors": 0,
            "conversions": 0,
            "marketing_spend": 100,
            "new_customers": 0,
        },
        {
            "period": "Q2",
            "revenue": 500,
            "cost": 250,
            "visitors": 100,
            "conversions": 5,
            "marketing_spend": 100,
            "new_customers": 4,
        },
    ]
    out = await business_metrics.invoke({"rows": rows}, ctx)
    q1, q2 = out["periods"]
    assert (q1["conversion_rate_pct"], q1["cac"], q1["roi_pct"]) == (None, None, None)
    assert q2["revenue_growth_pct"] is None  # previous revenue was 0
    assert (q2["conversion_rate_pct"], q2["cac"], q2["roi_pct"]) == (5.0, 25.0, 100.0)
    assert out["totals"]["cac"] == 50.0  # 200 / 4
    assert out["totals"]["revenue_growth_pct"] is None
    notes = "\n".join(out["notes"])
    assert "conversion_rate_pct in period 'Q1' is null: visitors is 0" in notes
    assert "cac in period 'Q1' is null: new_customers is 0" in notes
    assert "revenue_growth_pct in period 'Q2' is null: previous revenue is 0" in notes


async def test_mapped_column_absent_from_rows_is_an_input_error(ctx: ToolContext) -> None:
    with pytest.raises(
        ToolInputError, match="column 'turnover' \\(mapped to 'revenue'\\) is not in the rows"
    ):
        await business_metrics.invoke(
            {"rows": [{"sales": 1}], "columns": {"revenue": "turnover"}}, ctx
        )


async def test_non_numeric_value_names_the_column(ctx: ToolContext) -> None:
    with pytest.raises(ToolInputError, match="column 'sales', row 1: 'lots' is not a number"):
        await business_metrics.invoke(
            {"rows": [{"sales": 1}, {"sales": "lots"}], "columns": {"revenue": "sales"}}, ctx
        )


async def test_unknown_mapping_key_is_a_schema_error(ctx: ToolContext) -> None:
    with pytest.raises(ToolInputError, match=r"columns\.profit_margin"):
        await business_metrics.invoke({"rows": [], "columns": {"profit_margin": "x"}}, ctx)


async def test_no_rows_is_not_a_crash(ctx: ToolContext) -> None:
    out = await business_metrics.invoke({"rows": []}, ctx)
    assert out["row_count"] == 0
    assert out["totals"]["revenue"] is None
    assert "no rows" in out["notes"][0]
