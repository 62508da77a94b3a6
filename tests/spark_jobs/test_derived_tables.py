"""The pipeline's derived tables on a hand-computed shop: every expected value is written out below.

Two business days through the batch job's four tasks (stage, validate, merge, derive), as the job runs
them. The shop: three customers (one changes tier on day two, one turns 25 on day two, one never
orders), four products (one re-priced on day two, one discontinued), two warehouses, seven orders
(one in EUR, one cancelled, one pending with an unknown customer, one updated on day two), five
shipments (one late, one delivered the day it shipped), and an order-tracking table that appears
between the days.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from filegate.contracts import BUILTIN_DATASETS, load_contracts
from filegate.pipelines import parse_pipeline
from filegate.tables import AS_OF_DATE, BATCH_ID, PROCESSING_LOG
from spark_jobs import batch_derive, batch_stage
from spark_jobs.batch_derive import ColumnsRefused, GrainViolated, grain_problem, write_table
from spark_jobs.columns import target_schema
from spark_jobs.cross_checks import Inputs
from spark_jobs.pipeline_tables import DerivedTable, parse_tables
from tests.spark_jobs.batch_world import arguments, ecommerce, run_batch
from tests.spark_jobs.conftest import Lake

pytestmark = pytest.mark.timeout(1800)

DAY_ONE, DAY_TWO = "2025-03-10", "2025-03-11"
DERIVED = [t.name for t in parse_tables(*ecommerce())]


def customer(
    cid: str, name: str, born: str, registered: str, country: str, tier: str, login: str, updated: str
) -> dict[str, str]:
    return {
        "customer_id": cid,
        "first_name": name,
        "last_name": "Doe",
        "email": f"{name.lower()}@example.com",
        "phone": "+15125550100",
        "date_of_birth": born,
        "registration_date": registered,
        "address": "1 Main Street",
        "city": "Austin",
        "state": "TX",
        "zip_code": "78701",
        "country": country,
        "customer_tier": tier,
        "last_login": login,
        "created_timestamp": f"{registered}T08:00:00Z",
        "updated_at": updated,
    }


def product(
    pid: str, name: str, category: str, price: str, cost: str, launched: str, discontinued: bool
) -> dict[str, str]:
    return {
        "product_id": pid,
        "product_name": name,
        "category": category,
        "subcategory": "",
        "brand": "Acme",
        "price": price,
        "cost": cost,
        "currency": "USD",
        "stock_quantity": "",
        "weight_kg": "1.000",
        "dimensions_cm": "10x10x10",
        "color": "",
        "material": "",
        "description": "",
        "launch_date": launched,
        "discontinued": str(discontinued).lower(),
        "created_timestamp": f"{launched}T00:00:00Z",
    }


def stock(pid: str, warehouse: str, quantity: int, status: str, day: str) -> dict[str, str]:
    return {
        "product_id": pid,
        "warehouse_location": warehouse,
        "stock_quantity": str(quantity),
        "stock_status": status,
        "last_updated": f"{day}T06:00:00Z",
        "created_timestamp": "2025-01-01T00:00:00Z",
    }


def order(
    oid: str, cid: str, pid: str, qty: int, day: str, amount: str, currency: str, status: str, at: str, upd: str
) -> dict[str, str]:
    return {
        "order_id": oid,
        "customer_id": cid,
        "product_id": pid,
        "quantity": str(qty),
        "order_date": day,
        "order_amount": amount,
        "currency": currency,
        "payment_method": "CREDIT_CARD",
        "shipping_address": "1 Main Street, Austin",
        "order_status": status,
        "created_timestamp": at,
        "updated_at": upd,
    }


def shipment(
    oid: str, tracking: str, method: str, cost: str, shipped: str, estimated: str, delivered: str
) -> dict[str, str]:
    return {
        "order_id": oid,
        "tracking_number": tracking,
        "shipping_method": method,
        "carrier": "UPS",
        "shipping_cost": cost,
        "currency": "USD",
        "package_weight": "1.000",
        "dimensions_cm": "10x10x10",
        "ship_date": shipped,
        "estimated_delivery": estimated,
        "actual_delivery": delivered,
        "created_timestamp": f"{shipped}T08:00:00Z",
        "updated_at": f"{shipped}T08:00:00Z",
    }


C1, C2, C3, C_UNKNOWN = "CUST-000001", "CUST-000002", "CUST-000003", "CUST-000099"
P1, P2, P3, P4, P_UNKNOWN = "PROD-00001", "PROD-00002", "PROD-00003", "PROD-00004", "PROD-00099"
O1, O2, O3, O4, O5, O6, O7, O8 = (f"ORD-0000000{n}" for n in range(1, 9))
NYC, SFO = "WH-NYC-01", "WH-SFO-01"
CATALOGUE = [
    (P1, "Widget", "Electronics", "100.00", "60.00", "2025-01-01", False),
    (P2, "Lamp", "Home & Kitchen", "50.00", "20.00", "2024-06-01", False),
    (P3, "Ball", "Sports", "20.00", "5.00", "2020-01-01", False),
    (P4, "Atlas", "Books", "10.00", "4.00", "2019-01-01", True),
]
FILES: dict[str, dict[str, list[dict[str, str]]]] = {
    DAY_ONE: {
        "customers": [
            customer(
                C1, "Ann", "1980-05-20", "2024-01-10", "US", "GOLD", "2025-03-09T10:00:00Z", "2024-01-10T09:00:00Z"
            ),
            customer(
                C2, "Ben", "2000-03-11", "2025-02-20", "DE", "SILVER", "2025-03-10T12:00:00Z", "2025-02-20T10:00:00Z"
            ),
            customer(C3, "Cat", "1950-01-01", "2023-06-01", "US", "BASIC", "", "2023-06-01T08:00:00Z"),
        ],
        "products": [product(*entry) for entry in CATALOGUE],
        "inventory": [
            stock(P1, NYC, 5, "LOW_STOCK", DAY_ONE),
            stock(P1, SFO, 0, "OUT_OF_STOCK", DAY_ONE),
            stock(P2, NYC, 40, "IN_STOCK", DAY_ONE),
            stock(P3, NYC, 4, "LOW_STOCK", DAY_ONE),
        ],
        "orders": [
            order(
                O1,
                C1,
                P1,
                2,
                "2025-02-15",
                "180.00",
                "USD",
                "DELIVERED",
                "2025-02-15T10:00:00Z",
                "2025-02-20T10:00:00Z",
            ),
            order(O2, C1, P2, 1, DAY_ONE, "50.00", "USD", "CONFIRMED", "2025-03-10T09:00:00Z", "2025-03-10T09:00:00Z"),
            order(O3, C2, P3, 3, DAY_ONE, "54.00", "EUR", "SHIPPED", "2025-03-10T11:00:00Z", "2025-03-10T11:00:00Z"),
            order(O4, C2, P1, 1, DAY_ONE, "100.00", "USD", "CANCELLED", "2025-03-10T12:00:00Z", "2025-03-10T12:00:00Z"),
            order(
                O7, C_UNKNOWN, P2, 1, DAY_ONE, "50.00", "USD", "PENDING", "2025-03-10T13:00:00Z", "2025-03-10T13:00:00Z"
            ),
            # Both its customer and its product unknown: two relations fail, one orphan order.
            order(
                O8,
                C_UNKNOWN,
                P_UNKNOWN,
                1,
                DAY_ONE,
                "30.00",
                "USD",
                "PENDING",
                "2025-03-10T14:00:00Z",
                "2025-03-10T14:00:00Z",
            ),
        ],
        "shipping": [
            shipment(O1, "TRK0000000001", "STANDARD", "10.00", "2025-02-16", "2025-02-20", "2025-02-19"),
            shipment(O1, "TRK0000000002", "EXPRESS", "5.00", "2025-02-17", "2025-02-19", "2025-02-21"),
            shipment(O3, "TRK0000000003", "INTERNATIONAL", "8.00", DAY_ONE, "2025-03-15", ""),
        ],
    },
    DAY_TWO: {
        # Ann moves to PREMIUM this morning; Ben turns 25 today (no file says so).
        "customers": [
            customer(
                C1, "Ann", "1980-05-20", "2024-01-10", "US", "PREMIUM", "2025-03-11T07:00:00Z", "2025-03-11T08:00:00Z"
            ),
        ],
        # The Widget is re-priced to 90.00; every other product as before (a snapshot lists them all).
        "products": [
            product(*entry) if entry[0] != P1 else product(*entry[:3], "90.00", *entry[4:]) for entry in CATALOGUE
        ],
        # P1 leaves New York (5 -> 3) and arrives in San Francisco (0 -> 12); P3 is gone; P4 arrives.
        "inventory": [
            stock(P1, NYC, 3, "LOW_STOCK", DAY_TWO),
            stock(P1, SFO, 12, "IN_STOCK", DAY_TWO),
            stock(P2, NYC, 40, "IN_STOCK", DAY_TWO),
            stock(P4, NYC, 7, "LOW_STOCK", DAY_TWO),
        ],
        "orders": [
            order(O2, C1, P2, 1, DAY_ONE, "50.00", "USD", "SHIPPED", "2025-03-10T09:00:00Z", "2025-03-11T06:00:00Z"),
            order(O5, C1, P1, 1, DAY_TWO, "90.00", "USD", "CONFIRMED", "2025-03-11T09:00:00Z", "2025-03-11T09:00:00Z"),
            order(O6, C2, P4, 2, DAY_TWO, "18.00", "USD", "CONFIRMED", "2025-03-11T10:00:00Z", "2025-03-11T10:00:00Z"),
        ],
        "shipping": [
            shipment(O2, "TRK0000000004", "STANDARD", "4.00", DAY_TWO, "2025-03-14", ""),
            shipment(O5, "TRK0000000005", "OVERNIGHT", "12.00", DAY_TWO, "2025-03-12", DAY_TWO),
        ],
    },
}
# Order tracking (the ingest job's SCD1 target) exists from day two on: O1's latest scan is its delivery.
TRACKING = [
    ("1Z0000000001", O1, "IN_TRANSIT", datetime(2025, 2, 17, 0, 0)),
    ("1Z0000000001", O1, "DELIVERED", datetime(2025, 2, 21, 15, 0)),
]


def seal(folder: Path, day: str) -> Path:
    """The day's five files and the sealed manifest the function would write for them."""
    members = []
    for dataset, rows in FILES[day].items():
        path = folder / day / dataset / f"{dataset}_{day.replace('-', '_')}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        members.append({"dataset": dataset, "uri": str(path), "expected_rows": len(rows)})
    manifest = folder / day / "_sealed.r1.json"
    document = {"pipeline": "ecommerce", "business_date": day, "revision": 1, "batch_id": f"ecommerce-{day}-r1"}
    manifest.write_text(json.dumps({**document, "members": members}), encoding="utf-8")
    return manifest


def add_order_tracking(lake: Lake) -> None:
    """The ingest job's order_tracking target, as its SCD1 merge leaves it (one row per tracking number)."""
    assert lake.spark is not None
    contract = load_contracts()["order_tracking"]
    schema = target_schema(contract)
    latest = max(TRACKING, key=lambda scan: scan[3])
    values = {"tracking_num": latest[0], "order_id": latest[1], "status": latest[2], "status_ts": latest[3]}
    row = tuple(values.get(name) for name in schema.fieldNames())
    warehouse = lake.warehouse()
    warehouse.ensure_table(contract.target, schema)
    warehouse.append(contract.target, lake.spark.createDataFrame([row], schema))


def table(lake: Lake, name: str) -> list[dict[str, Any]]:
    assert lake.spark is not None
    return [row.asDict() for row in lake.spark.table(lake.location.name(name)).collect()]


def by(rows: Sequence[Mapping[str, Any]], *key: str) -> dict[Any, dict[str, Any]]:
    return {(row[key[0]] if len(key) == 1 else tuple(row[k] for k in key)): dict(row) for row in rows}


def picked(row: Mapping[str, Any], columns: Sequence[str]) -> tuple[Any, ...]:
    return tuple(round(v, 4) if isinstance(v, float) else v for v in (row[c] for c in columns))


def snapshot(lake: Lake) -> dict[str, list[tuple[Any, ...]]]:
    return {name: sorted((tuple(sorted(r.items())) for r in table(lake, name)), key=repr) for name in DERIVED}


@pytest.fixture(scope="module")
def shop(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("shop")
    lake = Lake(folder / "warehouse", spark)
    one = seal(folder / "in", DAY_ONE)
    assert run_batch(lake, one, 1) == [0, 0, 0, 0]
    day_one = {name: table(lake, name) for name in ("customer_analytics", "analytics_summary")}
    add_order_tracking(lake)
    two = seal(folder / "in", DAY_TWO)
    assert run_batch(lake, two, 2) == [0, 0, 0, 0]
    return {"lake": lake, "folder": folder, "manifests": (one, two), "day_one": day_one, "after": snapshot(lake)}


D = Decimal


def test_enriched_orders_take_the_versions_current_when_each_order_was_placed(shop: dict[str, Any]) -> None:
    rows = by(table(shop["lake"], "enriched_orders"), "order_id")
    columns = (
        "order_status", "is_counted", "in_base_currency", "order_amount_base", "customer_tier", "customer_country",
        "category", "unit_list_price", "unit_cost", "discount_amount", "cost_amount", "gross_margin",
        "gross_margin_pct", "shipments", "shipping_cost", "net_margin", "shipping_method", "estimated_delivery",
        "actual_delivery", "delivery_days", "is_late", "tracking_status", "season", "order_year", "order_month",
        "is_orphan_customer", "is_orphan_product", "dim_fallback",
    )  # fmt: skip
    expected = {
        # Placed before the first product snapshot: the current product version, flagged as a fallback.
        # Two shipments: the earlier one's method, the later delivery, late against the later estimate.
        O1: ("DELIVERED", True, True, D("180.00"), "GOLD", "US", "Electronics", D("90.00"), D("60.00"), D("0.00"),
             D("120.00"), D("60.00"), 0.3333, 2, D("15.00"), D("45.00"), "STANDARD", date(2025, 2, 20),
             date(2025, 2, 21), 6, True, "DELIVERED", "Winter", 2025, 2, False, False, True),
        # Its day-two version (SHIPPED); placed on day one, so Ann was GOLD then. Not delivered yet.
        O2: ("SHIPPED", True, True, D("50.00"), "GOLD", "US", "Home & Kitchen", D("50.00"), D("20.00"), D("0.00"),
             D("20.00"), D("30.00"), 0.6, 1, D("4.00"), D("26.00"), "STANDARD", date(2025, 3, 14), None, None, None,
             None, "Spring", 2025, 3, False, False, False),
        # In EUR: counted, but in no sum.
        O3: ("SHIPPED", True, False, None, "SILVER", "DE", "Sports", D("20.00"), D("5.00"), None, D("15.00"), None,
             None, 1, D("8.00"), None, "INTERNATIONAL", date(2025, 3, 15), None, None, None, None, "Spring", 2025,
             3, False, False, False),
        # Cancelled: not counted. Placed on day one, at the Widget's first price.
        O4: ("CANCELLED", False, True, D("100.00"), "SILVER", "DE", "Electronics", D("100.00"), D("60.00"),
             D("0.00"), D("60.00"), D("40.00"), 0.4, 0, None, D("40.00"), None, None, None, None, None, None,
             "Spring", 2025, 3, False, False, False),
        # Placed after Ann's upgrade and the re-pricing: PREMIUM, 90.00. Delivered the day it shipped.
        O5: ("CONFIRMED", True, True, D("90.00"), "PREMIUM", "US", "Electronics", D("90.00"), D("60.00"), D("0.00"),
             D("60.00"), D("30.00"), 0.3333, 1, D("12.00"), D("18.00"), "OVERNIGHT", date(2025, 3, 12),
             date(2025, 3, 11), 0, False, None, "Spring", 2025, 3, False, False, False),
        # Two at 10.00 sold for 18.00: a 2.00 discount.
        O6: ("CONFIRMED", True, True, D("18.00"), "SILVER", "DE", "Books", D("10.00"), D("4.00"), D("2.00"),
             D("8.00"), D("10.00"), 0.5556, 0, None, D("10.00"), None, None, None, None, None, None, "Spring", 2025,
             3, False, False, False),
        # A customer never sent: kept (the relation warns), flagged.
        O7: ("PENDING", False, True, D("50.00"), None, None, "Home & Kitchen", D("50.00"), D("20.00"), D("0.00"),
             D("20.00"), D("30.00"), 0.6, 0, None, D("30.00"), None, None, None, None, None, None, "Spring", 2025, 3,
             True, False, False),
        # Customer and product never sent: no product values, so no cost or margin; both flags.
        O8: ("PENDING", False, True, D("30.00"), None, None, None, None, None, None, None, None, None, 0, None, None,
             None, None, None, None, None, None, "Spring", 2025, 3, True, True, False),
    }  # fmt: skip

    assert {oid: picked(row, columns) for oid, row in rows.items()} == expected
    assert {row[AS_OF_DATE] for row in rows.values()} == {date(2025, 3, 11)}
    assert {row[BATCH_ID] for row in rows.values()} == {"ecommerce-2025-03-11-r1"}


def test_customer_analytics_measure_each_customer_as_of_the_batch_date(shop: dict[str, Any]) -> None:
    rows = by(table(shop["lake"], "customer_analytics"), "customer_id")
    columns = (
        "customer_tier", "age", "age_band", "tenure_days", "total_orders", "non_base_currency_orders", "total_spent",
        "first_order_date", "last_order_date", "avg_order_value", "recency_days", "orders_per_year", "total_margin",
        "margin_pct", "clv_estimate", "days_since_last_login", "lifecycle_stage", "customer_segment",
    )  # fmt: skip

    assert {cid: picked(row, columns) for cid, row in rows.items()} == {
        # 3 orders, 320.00; a year's pace over at least 30 days: 3 x 365 / 30; CLV 320/3 x 36.5 x 0.375 x 3.
        C1: ("PREMIUM", 44, "35-44", 426, 3, 0, D("320.00"), date(2025, 2, 15), date(2025, 3, 11), D("106.67"), 0,
             36.5, D("120.00"), 0.375, D("4380.00"), 0, "ACTIVE", "Medium Value"),
        # Two counted orders, one in EUR: the average and CLV over the USD one only.
        C2: ("SILVER", 25, "25-34", 19, 2, 1, D("18.00"), date(2025, 3, 10), date(2025, 3, 11), D("18.00"), 0,
             24.3333, D("10.00"), 0.5556, D("730.00"), 1, "NEW", "Low Value"),
        C3: ("BASIC", 75, "65+", 649, 0, 0, D("0.00"), None, None, None, None, None, None, None, None, None,
             "PROSPECT", "Low Value"),
    }  # fmt: skip


def test_time_relative_values_move_in_the_analytics_and_open_no_version(shop: dict[str, Any]) -> None:
    day_one = by(shop["day_one"]["customer_analytics"], "customer_id")
    versions = [r for r in table(shop["lake"], "customers_target") if r["customer_id"] == C2]

    # Ben was 24 yesterday and is 25 today; his customer row did not change, so neither did his history.
    assert (day_one[C2]["age"], day_one[C2]["age_band"], day_one[C2]["tenure_days"]) == (24, "18-24", 18)
    assert len(versions) == 1
    # Ann spent 230.00 over 2 orders by day one: Low Value; day two's 90.00 makes her Medium Value.
    assert (day_one[C1]["total_spent"], day_one[C1]["customer_segment"]) == (D("230.00"), "Low Value")


def test_product_analytics_rank_performance_within_the_catalogue(shop: dict[str, Any]) -> None:
    rows = by(table(shop["lake"], "product_analytics"), "product_id")
    columns = (
        "price", "unit_margin", "unit_margin_pct", "days_since_launch", "units_sold", "orders_count", "revenue",
        "gross_margin", "margin_pct", "avg_selling_price", "units_sold_30d", "current_stock", "warehouses_in_stock",
        "days_of_cover", "performance_category", "product_lifecycle_stage",
    )  # fmt: skip

    assert {pid: picked(row, columns) for pid, row in rows.items()} == {
        # Revenue ranks 1.0 and orders 1.0 (the only product ordered twice): a star.
        P1: (D("90.00"), D("30.00"), 0.3333, 69, 3, 2, D("270.00"), D("90.00"), 0.3333, D("90.00"), 3, 15, 2,
             150.0, "Star Performer", "INTRODUCTION"),
        P2: (D("50.00"), D("30.00"), 0.6, 283, 1, 1, D("50.00"), D("30.00"), 0.6, D("50.00"), 1, 40, 1, 1200.0,
             "Medium Performer", "GROWTH"),
        # Sold only in EUR: units count, revenue does not. Gone from every warehouse.
        P3: (D("20.00"), D("15.00"), 0.75, 1896, 3, 1, D("0.00"), None, None, None, 3, 0, 0, 0.0,
             "Low Performer", "MATURITY"),
        P4: (D("10.00"), D("6.00"), 0.6, 2261, 2, 1, D("18.00"), D("10.00"), 0.5556, D("9.00"), 2, 7, 1, 105.0,
             "Low Performer", "DISCONTINUED"),
    }  # fmt: skip


def test_seasonal_analysis_compares_each_month_with_the_calendar_month_before(shop: dict[str, Any]) -> None:
    rows = by(table(shop["lake"], "seasonal_analysis"), "year", "month")
    columns = (
        "season", "orders", "units", "revenue", "gross_margin", "avg_order_value", "unique_customers",
        "new_customers", "revenue_mom_growth", "revenue_yoy_growth", "top_category",
    )  # fmt: skip

    assert {key: picked(row, columns) for key, row in rows.items()} == {
        (2025, 2): ("Winter", 1, 2, D("180.00"), D("60.00"), D("180.00"), 1, 1, None, None, "Electronics"),
        # 4 counted orders (one in EUR): 158.00 over the 3 in USD; 158 / 180 - 1.
        (2025, 3): ("Spring", 4, 7, D("158.00"), D("70.00"), D("52.67"), 2, 1, -0.1222, None, "Electronics"),
    }


def test_segment_analysis_keeps_a_slice_per_business_date(shop: dict[str, Any]) -> None:
    rows = by(table(shop["lake"], "segment_analysis"), AS_OF_DATE, "customer_segment")
    columns = (
        "customers", "customer_share", "orders", "revenue", "revenue_share", "avg_order_value", "avg_clv",
        "avg_recency_days", "avg_margin_pct", "at_risk_share",
    )  # fmt: skip

    assert {key: picked(row, columns) for key, row in rows.items()} == {
        # Day one: everyone is Low Value; Ann's CLV 115 x (2 x 365 / 30) x (90 / 230) x 3.
        (date(2025, 3, 10), "Low Value"): (3, 1.0, 3, D("230.00"), 1.0, D("115.00"), D("3285.00"), 0.0, 0.3913, 0.0),
        (date(2025, 3, 11), "Medium Value"): (1, 0.3333, 3, D("320.00"), 0.9467, D("106.67"), D("4380.00"), 0.0,
                                              0.375, 0.0),
        (date(2025, 3, 11), "Low Value"): (2, 0.6667, 2, D("18.00"), 0.0533, D("18.00"), D("730.00"), 0.0, 0.5556,
                                           0.0),
    }  # fmt: skip


def test_analytics_summary_is_a_daily_series_of_kpis_with_the_quality_score(shop: dict[str, Any]) -> None:
    lake = shop["lake"]
    rows = by(table(lake, "analytics_summary"), AS_OF_DATE)
    scores = {r["batch_id"]: r["score"] for r in table(lake, "validation_results") if r["level"] == "batch"}
    columns = (
        "total_orders", "total_revenue", "avg_order_value", "gross_margin", "gross_margin_pct", "orders_in_batch",
        "revenue_on_date", "total_customers", "new_customers", "active_customers_90d", "total_products",
        "active_products", "out_of_stock_products", "low_stock_products", "avg_delivery_days",
        "on_time_delivery_rate", "late_shipments", "non_base_currency_orders", "orphan_orders", "rows_rejected",
    )  # fmt: skip

    assert {day: picked(row, columns) for day, row in rows.items()} == {
        # Day one: O1, O2 (USD) and O3 (EUR) counted; O7's customer is unknown, O8's customer and product
        # (two orphans); P1 and P3 low.
        date(2025, 3, 10): (3, D("230.00"), D("115.00"), D("90.00"), 0.3913, 6, D("50.00"), 3, 0, 2, 4, 3, 0, 2,
                            6.0, 0.0, 1, 1, 2, 0),
        # Day two: 338.00 over 4 USD orders; P3 out of stock, P4 low; O1 late, O5 on time.
        date(2025, 3, 11): (5, D("338.00"), D("84.50"), D("130.00"), 0.3846, 3, D("108.00"), 3, 0, 2, 4, 3, 1, 1,
                            3.0, 0.5, 1, 1, 0, 0),
    }  # fmt: skip
    assert rows[date(2025, 3, 10)]["data_quality_score"] == scores["ecommerce-2025-03-10-r1"] < 100
    assert rows[date(2025, 3, 11)]["data_quality_score"] == scores["ecommerce-2025-03-11-r1"] < 100


def test_inventory_movements_follow_the_stock_history(shop: dict[str, Any]) -> None:
    rows = table(shop["lake"], "inventory_movements")
    columns = ("product_id", "warehouse_location", "moved_at", "previous_quantity", "new_quantity", "quantity_change",
               "movement_type", "status_from", "status_to")  # fmt: skip
    one, two = date(2025, 3, 10), date(2025, 3, 11)

    assert sorted(picked(row, columns) for row in rows) == sorted([
        (P1, NYC, one, None, 5, 5, "INITIAL", None, "LOW_STOCK"),
        (P1, NYC, two, 5, 3, -2, "OUTBOUND", "LOW_STOCK", "LOW_STOCK"),
        (P1, SFO, one, None, 0, 0, "INITIAL", None, "OUT_OF_STOCK"),
        (P1, SFO, two, 0, 12, 12, "INBOUND", "OUT_OF_STOCK", "IN_STOCK"),
        (P2, NYC, one, None, 40, 40, "INITIAL", None, "IN_STOCK"),
        (P3, NYC, one, None, 4, 4, "INITIAL", None, "LOW_STOCK"),
        (P3, NYC, two, 4, 0, -4, "REMOVED", "LOW_STOCK", None),
        (P4, NYC, two, None, 7, 7, "INITIAL", None, "LOW_STOCK"),
    ])  # fmt: skip


def test_the_batch_job_s_tables_carry_the_pipeline_s_descriptions(shop: dict[str, Any]) -> None:
    lake = shop["lake"]
    pipeline, contracts = ecommerce()
    for name in pipeline.members:
        contract = contracts[name]
        table, columns = lake.comments(contract.target)
        assert table == contract.description, contract.target
        described = {c.name: c.description or None for c in (*contract.columns, *contract.derived)}
        assert {name: columns[name] for name in described} == described, contract.target
        assert (
            columns["effective_from"]
            == f"When this version of the key began: the {contract.sequence_by} of the row that opened it."
        )
    for derived in parse_tables(pipeline, contracts):
        assert lake.comments(derived.name)[0] == derived.description, derived.name


def test_replaying_a_batch_leaves_every_derived_table_as_it_was(shop: dict[str, Any]) -> None:
    lake, two = shop["lake"], shop["manifests"][1]

    assert run_batch(lake, two, 3) == [0, 0, 0, 0]
    assert snapshot(lake) == shop["after"]


def test_a_late_batch_rebuilds_the_full_tables_as_of_the_newest_day_and_leaves_the_slices(
    shop: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Day one run again after day two, as a late batch is: what it merged is in the targets now (here a
    # customer's country, set as its merge would have), so the full tables built as of day two are stale.
    copy = copy_of(shop["lake"], tmp_path)
    assert copy.spark is not None
    customer = table(copy, "customer_analytics")[0]["customer_id"]
    customers = copy.location.name("customers_target")
    copy.spark.sql(f"UPDATE {customers} SET country = 'IS' WHERE customer_id = '{customer}' AND is_current")

    assert derive_again(copy, shop["manifests"][0], [], 4) == 0

    after = snapshot(copy)
    [rebuilt] = [r for r in table(copy, "customer_analytics") if r["customer_id"] == customer]
    assert (rebuilt["country"], rebuilt["as_of_date"]) == ("IS", date(2025, 3, 11))  # never back to day one
    for name in ("segment_analysis", "analytics_summary"):  # daily slices: built now, they would mix days
        assert after[name] == shop["after"][name]
    logged = [r for r in table(copy, PROCESSING_LOG) if r["run_id"] == 4 and r["task"] == batch_derive.TASK]
    assert sorted(r["table_name"] for r in logged) == sorted(
        ["enriched_orders", "inventory_movements", "customer_analytics", "product_analytics", "seasonal_analysis"]
    )
    assert all(r["status"] == "SUCCEEDED" and '"as_of": "2025-03-11"' in r["details"] for r in logged)
    # The run said only that "the full tables are rebuilt": not which daily series now lack day one.
    left = "and tables reading those): segment_analysis, analytics_summary"
    assert left in capsys.readouterr().out


def derive_again(lake: Lake, manifest: Path, extra: list[str], run_id: int) -> int:
    """The derive task of a batch that completed, run again: staged first, as a re-run of the batch (its stage
    rows were released when it completed); its validate and merge, which would change nothing, are left out."""
    assert batch_stage.main(arguments(lake, manifest, extra, run_id)) == 0
    return batch_derive.main(arguments(lake, manifest, extra, run_id))


# The run that derives day two again in a copy of the shop (`restaged`, `edited_copy`).
RERUN = 5


@pytest.fixture(scope="module")
def restaged(shop: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """A copy of the shop with day two staged again in run RERUN, as `derive_again` stages it. The tests that
    derive it under an edited pipeline each copy this one: their edits touch only derived tables, which the
    stage does not read, so one staging serves them all."""
    copy = copy_of(shop["lake"], tmp_path_factory.mktemp("restaged"))
    assert batch_stage.main(arguments(copy, shop["manifests"][1], [], RERUN)) == 0
    return copy


def copy_of(lake: Lake, folder: Path) -> Lake:
    """A copy of `lake`'s warehouse in `folder`, on the same session."""
    copy = replace(lake, folder=folder / "warehouse")
    shutil.copytree(lake.folder, copy.folder)
    return copy


def edited_copy(restaged: Lake, tmp_path: Path, edit: Callable[[str], str]) -> tuple[Lake, list[str]]:
    """A copy of the `restaged` shop, and the arguments that run a task on it under the pipeline `edit` makes."""
    copy = copy_of(restaged, tmp_path)
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    pipeline = (BUILTIN_DATASETS / "ecommerce.toml").read_text(encoding="utf-8")
    (contracts / "ecommerce.toml").write_text(edit(pipeline), encoding="utf-8")
    return copy, ["--contracts-dir", str(contracts)]


def test_a_changed_band_changes_segment_membership_with_no_code_touched(
    shop: dict[str, Any], restaged: Lake, tmp_path: Path
) -> None:
    vip = '{ label = "VIP", min = { total_spent = 5000, total_orders = 10 } }'
    assert vip in (BUILTIN_DATASETS / "ecommerce.toml").read_text(encoding="utf-8")
    lower = '{ label = "VIP", min = { total_spent = 300, total_orders = 3 } }'
    copy, extra = edited_copy(restaged, tmp_path, lambda pipeline: pipeline.replace(vip, lower))

    assert batch_derive.main(arguments(copy, shop["manifests"][1], extra, RERUN)) == 0

    segments = {r["customer_id"]: r["customer_segment"] for r in table(copy, "customer_analytics")}
    assert segments == {C1: "VIP", C2: "Low Value", C3: "Low Value"}
    series = {(r[AS_OF_DATE], r["customer_segment"]) for r in table(copy, "segment_analysis")}
    assert (date(2025, 3, 11), "VIP") in series
    assert (date(2025, 3, 11), "Medium Value") not in series


def test_each_derived_table_logs_the_rows_it_wrote(shop: dict[str, Any]) -> None:
    lake = shop["lake"]
    log = [r for r in table(lake, PROCESSING_LOG) if r["task"] == batch_derive.TASK and r["run_id"] == 2]
    logged = {r["table_name"]: r["rows_inserted"] for r in log}

    # Run 2 built day two: a full table holds what it wrote, an as_of table's slice of day two does.
    for derived in parse_tables(*ecommerce()):
        rows = table(lake, derived.name)
        if derived.refresh == "as_of":
            rows = [r for r in rows if r[AS_OF_DATE] == date(2025, 3, 11)]
        assert logged[derived.name] == len(rows), derived.name


def test_a_table_that_fails_is_logged_with_its_error_beside_the_tables_built_before_it(
    shop: dict[str, Any], restaged: Lake, tmp_path: Path
) -> None:
    def fanned(pipeline: str) -> str:
        # One row per customer, declared one per country: the grain check refuses it.
        head, tail = pipeline.split('name = "customer_analytics"', 1)
        assert tail.index('grain = ["customer_id"]') < tail.index("[[tables]]")
        return head + 'name = "customer_analytics"' + tail.replace('grain = ["customer_id"]', 'grain = ["country"]', 1)

    copy, extra = edited_copy(restaged, tmp_path, fanned)
    order = [t.name for t in parse_tables(*ecommerce())]
    before = order[: order.index("customer_analytics")]

    assert batch_derive.main(arguments(copy, shop["manifests"][1], extra, RERUN)) == 1

    rows = [r for r in table(copy, PROCESSING_LOG) if r["run_id"] == RERUN and r["task"] == batch_derive.TASK]
    log = {r["table_name"]: r for r in rows}
    assert sorted(r["table_name"] or "" for r in rows) == sorted(["", *before, "customer_analytics"])
    assert all(log[name]["status"] == "SUCCEEDED" and log[name]["rows_inserted"] > 0 for name in before)
    failed = log["customer_analytics"]
    assert (failed["status"], failed["rows_inserted"]) == ("FAILED", None)
    assert "rows share one grain (country)" in failed["error"]
    assert log[None]["status"] == "FAILED"


def test_tables_built_are_logged_even_when_dropping_the_input_views_fails(
    shop: dict[str, Any], restaged: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy, extra = edited_copy(restaged, tmp_path, lambda pipeline: pipeline)
    dropped = Inputs.close

    def failing_close(inputs: Inputs) -> None:
        dropped(inputs)
        raise RuntimeError("the catalog went away")

    monkeypatch.setattr(Inputs, "close", failing_close)

    assert batch_derive.main(arguments(copy, shop["manifests"][1], extra, RERUN)) == 1

    rows = [r for r in table(copy, PROCESSING_LOG) if r["run_id"] == RERUN and r["task"] == batch_derive.TASK]
    built = sorted(r["table_name"] for r in rows if r["table_name"] is not None)
    assert built == sorted(t.name for t in parse_tables(*ecommerce()))
    assert all(r["status"] == "SUCCEEDED" for r in rows if r["table_name"] is not None)
    (task,) = [r for r in rows if r["table_name"] is None]
    assert task["status"] == "FAILED"
    assert "the catalog went away" in task["error"]
    # The task failed, so the batch is still in flight: its stage rows stay, and the retry builds again.
    day_two = json.loads(shop["manifests"][1].read_text())["batch_id"]
    assert day_two in {r["_batch_id"] for r in table(copy, "orders_stage")}
    monkeypatch.setattr(Inputs, "close", dropped)

    assert batch_derive.main(arguments(copy, shop["manifests"][1], extra, RERUN)) == 0

    retried = [r for r in table(copy, PROCESSING_LOG) if r["run_id"] == RERUN and r["task"] == batch_derive.TASK]
    retried = [r for r in retried if r["attempt"] == 2]
    assert sorted(r["table_name"] for r in retried) == built
    assert {r["status"] for r in retried} == {"SUCCEEDED"}
    assert day_two not in {r["_batch_id"] for r in table(copy, "orders_stage")}


GRAIN_ROWS = "order_id string, n int, as_of_date date, _batch_id string"
DAY = date(2025, 3, 10)


@pytest.mark.parametrize("refresh", ["full", "as_of"])
def test_a_table_whose_grain_repeats_or_is_null_is_refused_and_the_table_left_as_it_was(
    lake: Lake, spark: SparkSession, refresh: str
) -> None:
    warehouse = lake.warehouse()
    derived = DerivedTable("t", "SELECT 1", refresh, ("order_id",))
    good = spark.createDataFrame([("A", 1, DAY, "b1"), ("B", 2, DAY, "b1")], GRAIN_ROWS)
    fanned = spark.createDataFrame([("A", 1, DAY, "b2"), ("A", 2, DAY, "b2"), ("C", 3, DAY, "b2")], GRAIN_ROWS)
    nulls = spark.createDataFrame([("A", 1, DAY, "b3"), (None, 2, DAY, "b3")], GRAIN_ROWS)
    assert write_table(warehouse, derived, good, DAY) == 2
    versions = len(spark.sql(f"DESCRIBE HISTORY {warehouse.name('t')}").collect())

    fans_out = r'derived table t: 2 rows share one grain \(order_id\), e.g. \{"order_id":"A"\}; its SQL joins something'
    with pytest.raises(GrainViolated, match=fans_out):
        write_table(warehouse, derived, fanned, DAY)
    with pytest.raises(
        GrainViolated, match=r'derived table t: a row has a NULL in its grain \(order_id\), e.g. \{"order_id":null\}'
    ):
        write_table(warehouse, derived, nulls, DAY)

    assert len(spark.sql(f"DESCRIBE HISTORY {warehouse.name('t')}").collect()) == versions
    assert sorted(tuple(r) for r in warehouse.read("t").collect()) == sorted(tuple(r) for r in good.collect())


def test_a_grain_names_only_columns_its_sql_makes(lake: Lake, spark: SparkSession) -> None:
    derived = DerivedTable("t", "SELECT 1", "full", ("order_key",))
    rows = spark.createDataFrame([("A", 1, DAY, "b1")], GRAIN_ROWS)

    with pytest.raises(
        GrainViolated, match=r"derived table t: its grain names columns its SQL does not make: \['order_key'\]"
    ):
        write_table(lake.warehouse(), derived, rows, DAY)


def test_a_grain_problem_is_found_by_a_query_when_the_error_lost_the_check_s_message(spark: SparkSession) -> None:
    # Over Spark Connect without server stack traces a failed write reports only its outer error.
    derived = DerivedTable("t", "SELECT 1", "full", ("order_id",))
    fanned = spark.createDataFrame([("A", 1), ("A", 2), ("B", 3)], "order_id string, n int")
    nulls = spark.createDataFrame([("A", 1), (None, 2)], "order_id string, n int")

    assert grain_problem(derived, fanned) == (
        'derived table t: 2 rows share one grain (order_id), e.g. {"order_id":"A"}; '
        "its SQL joins something that fans out"
    )
    assert grain_problem(derived, nulls) == (
        'derived table t: 1 rows have a NULL in its grain (order_id), e.g. {"order_id":null}; '
        "its SQL leaves a grain column NULL (an outer join that found no match?)"
    )
    assert grain_problem(derived, spark.createDataFrame([("A", 1), ("B", 2)], "order_id string, n int")) is None


def one_table(member: str, sql: str, **more: Any) -> dict[str, Any]:
    """A pipeline document of one member and one derived table `t` of grain customer_id."""
    table = {"name": "t", "grain": ["customer_id"], "sql": sql}
    pipeline = {"kind": "pipeline", "name": "shop", "trigger_pattern": "go_{yyyy}_{mm}_{dd}.json"}
    return {**pipeline, "members": [member], "tables": [table], **more}


def test_check_refuses_table_columns_delta_cannot_store_before_a_batch_merges(spark: SparkSession) -> None:
    # Each passed `filegate check`: derive_tables then failed after the targets merged (an unnamed aggregate,
    # a name with a space, a name twice), or wrote the table without the NULL column.
    contracts = load_contracts()
    sql = (
        "SELECT count(*), customer_id AS `Customer Id`, customer_id, CUSTOMER_ID, NULL AS note "
        "FROM ${current.customers} GROUP BY customer_id"
    )

    problems = batch_derive.table_problems(spark, parse_pipeline(one_table("customers", sql), contracts), contracts)

    assert problems == [
        "table t: column 'count(1)': Delta refuses a name with any of ' ,;{}()\\n\\t='; give it an alias",
        "table t: column 'Customer Id': Delta refuses a name with any of ' ,;{}()\\n\\t='; give it an alias",
        "table t: column 'CUSTOMER_ID': its SQL makes it twice (ignoring case); give one an alias",
        "table t: column 'note' has no type (a bare NULL) and Delta would drop it; cast it, e.g. CAST(NULL AS string)",
    ]


def test_a_segment_adding_a_column_its_table_s_sql_makes_is_refused(spark: SparkSession) -> None:
    # The bands' labels replaced the SQL's customer_id, the table's grain, without a word.
    contracts = load_contracts()
    sql = "SELECT customer_id, count(*) AS orders FROM ${current.orders} GROUP BY customer_id"
    band = {"label": "many", "min": {"orders": 9}}
    document = one_table(
        "orders", sql, segments=[{"table": "t", "column": "customer_id", "default": "few", "bands": [band]}]
    )

    problems = batch_derive.table_problems(spark, parse_pipeline(document, contracts), contracts)

    assert problems == ["table t: its SQL makes customer_id, which a segment adds; name one of them otherwise"]


def test_a_table_making_the_job_s_own_columns_is_refused(spark: SparkSession) -> None:
    # A trend over a daily series kept the series' as_of_date: the job set every row's to the business date,
    # and the table failed its grain as "its SQL joins something that fans out" (or, grained otherwise, was
    # written with every day's rows dated today).
    contracts = load_contracts()
    series = {"name": "s", "grain": ["as_of_date"], "refresh": "as_of", "sql": "SELECT 1 AS n"}
    trend = {"name": "trend", "grain": ["as_of_date"], "sql": "SELECT as_of_date, n FROM ${table.s}"}
    whole = {"name": "copy", "grain": ["n"], "sql": "SELECT * FROM ${table.s}"}
    document = {**one_table("orders", "SELECT 'c' AS customer_id"), "tables": [series, trend, whole]}

    problems = batch_derive.table_problems(spark, parse_pipeline(document, contracts), contracts)

    made = "which the job adds to every row (the business date it builds the table as of, the batch)"
    assert problems == [
        f"table trend: its SQL makes as_of_date, {made}: name it otherwise (as_of_date AS day), or leave it out "
        "(SELECT * EXCEPT (as_of_date))",
        f"table copy: its SQL makes as_of_date, _batch_id, {made}: name it otherwise (as_of_date AS day), or "
        "leave it out (SELECT * EXCEPT (as_of_date, _batch_id))",
    ]


def test_a_table_with_a_null_typed_column_is_refused_not_written_without_it(lake: Lake, spark: SparkSession) -> None:
    # A pipeline deployed without `filegate check`: Delta wrote the table and left `note` out, unsaid.
    derived = DerivedTable("t", "SELECT 1", "full", ("order_id",))
    rows = spark.sql(f"SELECT 'A' AS order_id, NULL AS note, DATE '{DAY}' AS as_of_date, 'b1' AS _batch_id")

    with pytest.raises(ColumnsRefused, match=r"derived table t: column 'note' has no type .*; cast it"):
        write_table(lake.warehouse(), derived, rows, DAY)
    assert lake.warehouse().read_if_exists("t") is None
