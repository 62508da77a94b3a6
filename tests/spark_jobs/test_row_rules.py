"""Row checks, derived columns and unique keys on a file's rows: every broken rule named by its id."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from filegate.contracts import load_contracts, parse_contract
from spark_jobs.row_rules import apply_row_rules, stage_rules
from spark_jobs.validation import parse_fields, read_lines, split_rows

pytestmark = pytest.mark.spark

BUSINESS_DATE = date(2025, 1, 15)


def _file(tmp_path: Path, dataset: str, *rows: str) -> str:
    header = ",".join(load_contracts()[dataset].column_names)
    path = tmp_path / f"{dataset}.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return str(path)


def _checked(spark: SparkSession, path: str, dataset: str) -> list[dict[str, object]]:
    contract = load_contracts()[dataset]
    checked = split_rows(parse_fields(read_lines(spark, path, contract), contract), contract).checked
    return [row.asDict() for row in apply_row_rules(checked, contract, BUSINESS_DATE).collect()]


ORDER = (
    "{id},CUST-000001,PROD-00001,{quantity},{ordered},19.99,USD,PAYPAL,1 Main Street Boston,CONFIRMED,"
    "{created},{updated}"
)


def _order(number: int, quantity: int = 1, ordered: str = "2025-01-15", updated: str = "2025-01-15T10:00:00Z") -> str:
    return ORDER.format(
        id=f"ORD-{number:08d}", quantity=quantity, ordered=ordered, created="2025-01-15T09:00:00Z", updated=updated
    )


def test_reject_checks_name_their_id_and_keep_the_column_rule_ids(spark: SparkSession, tmp_path: Path) -> None:
    future = _order(2, ordered="2025-01-16")
    both = _order(3, quantity=0, ordered="2025-01-16", updated="2025-01-15T08:00:00Z")
    path = _file(tmp_path, "orders", _order(1), future, both)

    rows = {row["order_id"]: row for row in _checked(spark, path, "orders")}

    assert rows["ORD-00000001"]["rules"] == []
    assert rows["ORD-00000001"]["reason"] is None
    assert rows["ORD-00000002"]["rules"] == ["orders.check.ordered_not_in_future"]
    assert rows["ORD-00000002"]["reason"] == "fails the check ordered_not_in_future: order_date <= _business_date"
    assert rows["ORD-00000003"]["rules"] == [
        "orders.quantity.min",
        "orders.check.ordered_not_in_future",
        "orders.check.updated_after_created",
    ]


def test_a_key_with_two_contents_rejects_both_and_an_exact_copy_is_no_conflict(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = _file(tmp_path, "orders", _order(1), _order(1), _order(2), _order(2, quantity=2), _order(3))

    rows = _checked(spark, path, "orders")

    by_key: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_key.setdefault(str(row["order_id"]), []).append(row)
    # Byte-identical copies both stage; the merge keeps one per key and counts the other as superseded.
    assert [row["rules"] for row in by_key["ORD-00000001"]] == [[], []]
    assert [row["rules"] for row in by_key["ORD-00000002"]] == [["orders.row.duplicate_key"]] * 2
    assert by_key["ORD-00000002"][0]["reason"] == (
        "key (order_id) appears in 2 rows of this file with 2 different contents; none of them can be chosen"
    )
    assert by_key["ORD-00000003"][0]["rules"] == []


def test_a_key_whose_rows_differ_only_in_how_their_values_are_written_is_no_conflict(
    spark: SparkSession, tmp_path: Path
) -> None:
    # The same instant with another offset, a field quoted: the same typed row, which the merge would
    # keep once. A real difference still rejects both.
    plain = _order(1)
    written_otherwise = _order(1, updated="2025-01-15T11:00:00+01:00")
    quoted = _order(1).replace("PAYPAL", '"PAYPAL"')
    changed = _order(2, updated="2025-01-15T10:00:01Z")
    path = _file(tmp_path, "orders", plain, written_otherwise, quoted, _order(2), changed)

    rows = _checked(spark, path, "orders")

    assert sorted((str(row["order_id"]), tuple(row["rules"])) for row in rows) == [  # type: ignore[arg-type]
        ("ORD-00000001", ()),
        ("ORD-00000001", ()),
        ("ORD-00000001", ()),
        ("ORD-00000002", ("orders.row.duplicate_key",)),
        ("ORD-00000002", ("orders.row.duplicate_key",)),
    ]


def test_a_key_whose_rows_differ_only_in_a_column_named_like_a_sql_literal_is_a_conflict(
    spark: SparkSession, tmp_path: Path
) -> None:
    # `null` and `true` are valid column names; unquoted in the content's SQL they were the literals, so the
    # two rows' contents compared equal and both staged, one of them then dropped by the merge at random.
    contract = parse_contract(
        {
            "name": "flags",
            "file_pattern": "flags_{yyyy}_{mm}_{dd}.csv",
            "keys": ["k"],
            "sequence_by": "seq",
            "unique_keys": True,
            "columns": [
                {"name": "k", "type": "string", "nullable": False},
                {"name": "seq", "type": "long", "nullable": False},
                {"name": "null", "type": "string"},
                {"name": "true", "type": "boolean"},
            ],
        }
    )
    path = tmp_path / "flags.csv"
    path.write_text("k,seq,null,true\nA,1,old,false\nA,1,new,false\nB,1,x,false\nB,1,x,true\n", encoding="utf-8")

    checked = split_rows(parse_fields(read_lines(spark, str(path), contract), contract), contract).checked
    rows = apply_row_rules(checked, contract, BUSINESS_DATE).collect()

    assert sorted((row["k"], tuple(row["rules"])) for row in rows) == [
        ("A", ("flags.row.duplicate_key",)),
        ("A", ("flags.row.duplicate_key",)),
        ("B", ("flags.row.duplicate_key",)),
        ("B", ("flags.row.duplicate_key",)),
    ]


def test_warn_checks_keep_the_row_and_derived_columns_are_added(spark: SparkSession, tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "inventory",
        "PROD-00001,WH-BOS-01,0,IN_STOCK,2025-01-15T08:00:00Z,2024-06-01T00:00:00Z",
        "PROD-00001,WH-AUS-02,5,LOW_STOCK,2025-01-16T08:00:00Z,2024-06-01T00:00:00Z",
        "PROD-00002,WH-BOS-01,0,BACKORDER,2025-01-15T08:00:00Z,2024-06-01T00:00:00Z",
    )

    rows = {(row["product_id"], row["warehouse_location"]): row for row in _checked(spark, path, "inventory")}

    contradicted = rows[("PROD-00001", "WH-BOS-01")]
    assert contradicted["expected_stock_status"] == "OUT_OF_STOCK"
    assert contradicted["_warnings"] == ["inventory.check.status_matches_quantity"]
    assert contradicted["rules"] == []
    assert rows[("PROD-00001", "WH-AUS-02")]["_warnings"] == ["inventory.check.updated_not_in_future"]
    assert rows[("PROD-00002", "WH-BOS-01")]["_warnings"] == []


SHIPMENT = "ORD-2025000{n},1ZA0459F6F3E0{n},EXPRESS,USPS,12.50,USD,15.663,{dimensions},2025-01-15,2025-01-17,,{at},{at}"


def test_a_value_its_column_rule_rejects_is_never_read_by_a_derived_column(spark: SparkSession, tmp_path: Path) -> None:
    # The volume's expression casts each side to decimal(6,2): under ANSI SQL a side that is no number,
    # or too long, raises, and one such row would stop the whole file instead of being rejected.
    sides = {1: "12x22x29", 2: "axbxc", 3: "99999x1x1"}
    at = "2025-01-15T15:39:17Z"
    path = _file(tmp_path, "shipping", *(SHIPMENT.format(n=n, dimensions=d, at=at) for n, d in sides.items()))

    rows = {row["order_id"]: row for row in _checked(spark, path, "shipping")}

    assert rows["ORD-20250001"]["rules"] == []
    assert rows["ORD-20250001"]["volume_cm3"] == Decimal("7656.00")
    for rejected in ("ORD-20250002", "ORD-20250003"):
        assert rows[rejected]["rules"] == ["shipping.dimensions_cm.pattern"]
        assert rows[rejected]["volume_cm3"] is None


def test_a_misshapen_row_names_only_its_shape_and_never_knocks_out_a_good_row(
    spark: SparkSession, tmp_path: Path
) -> None:
    good = _order(1)
    # One field short, and the fields after the gap shifted: a check or the key would read other columns.
    short = good.replace(",PAYPAL", "", 1)
    path = _file(tmp_path, "orders", good, short)

    rows = {row["raw_line"]: row for row in _checked(spark, path, "orders")}

    assert rows[good]["rules"] == []
    assert rows[short]["rules"] == ["orders.row.field_count"]


def test_stage_rules_lists_every_rule_a_row_can_break_once(spark: SparkSession) -> None:
    contract = parse_contract(
        {
            "name": "parcels",
            "file_pattern": "parcels_{yyyy}_{mm}_{dd}.csv",
            "keys": ["parcel_id"],
            "sequence_by": "scanned_at",
            "unique_keys": True,
            "columns": [
                {"name": "parcel_id", "type": "string", "nullable": False, "pattern": "^P[0-9]+$"},
                {"name": "scanned_at", "type": "timestamp", "nullable": False},
                {"name": "weight_kg", "type": "double", "min": "0", "max": "70"},
                {"name": "status", "type": "string", "allowed": ["NEW", "DONE"]},
                {"name": "note", "type": "string"},
            ],
            "checks": [
                {"name": "light_when_new", "expr": "status <> 'NEW' OR weight_kg < 30", "action": "warn"},
                {"name": "scanned_not_in_future", "expr": "to_date(scanned_at) <= _business_date"},
            ],
        }
    )

    found = [(rule.rule, rule.kind, rule.action) for rule in stage_rules(contract)]

    # Free text without rules (note) can break nothing; a type rule is listed once though it has two conditions.
    assert found == [
        ("parcels.row.well_formed", "row", "reject"),
        ("parcels.row.field_count", "row", "reject"),
        ("parcels.parcel_id.required", "column", "reject"),
        ("parcels.parcel_id.pattern", "column", "reject"),
        ("parcels.scanned_at.required", "column", "reject"),
        ("parcels.scanned_at.type", "column", "reject"),
        ("parcels.weight_kg.type", "column", "reject"),
        ("parcels.weight_kg.min", "column", "reject"),
        ("parcels.weight_kg.max", "column", "reject"),
        ("parcels.status.allowed", "column", "reject"),
        ("parcels.row.duplicate_key", "row", "reject"),
        ("parcels.check.light_when_new", "check", "warn"),
        ("parcels.check.scanned_not_in_future", "check", "reject"),
    ]
