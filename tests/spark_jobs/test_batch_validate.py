"""The batch job's `validate` task on what a quarantine takes out of a batch: its children, its counts, its rejects.

One world for the module: day one's orders and shipping as a partial batch into an empty warehouse, under
a pipeline whose order relations quarantine. No customer and no product was ever sent, so every order
fails both relations and is quarantined, and each shipment names an order that never reaches its target.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from filegate.contracts import BUILTIN_DATASETS, BUSINESS_DATE, Column, Contract, load_contracts
from spark_jobs import batch_merge, batch_stage, batch_validate
from spark_jobs.columns import (
    BATCH_ID,
    INGESTED_AT,
    IS_CURRENT,
    REASON,
    SOURCE_FILE,
    row_fields,
    stage_table_schema,
    target_schema,
)
from spark_jobs.cross_checks import DETAIL, Inputs, register_inputs, relation_failures, rule_failures
from spark_jobs.history import merge_history
from spark_jobs.pipeline_rules import Checks, Relation, Rule
from spark_jobs.row_rules import stage_rules
from spark_jobs.stage import stage_table, staged_rows
from spark_jobs.target_definition import ensure_target
from spark_jobs.warehouse import driver_rows
from tests.spark_jobs.batch_world import DAYS, arguments, batch_id, seal
from tests.spark_jobs.conftest import Lake
from tests.spark_jobs.test_history import SHELF, shelf

pytestmark = pytest.mark.timeout(1200)

BATCH = batch_id(DAYS[0])
# A child of the snapshot member `test_history.SHELF`.
PICKS = Contract(
    name="picks",
    file_pattern="picks_{yyyy}_{mm}_{dd}.csv",
    columns=(Column("pick_id", "string"), Column("sku", "string")),
    keys=("pick_id",),
    sequence_by="pick_id",
)


@pytest.fixture(scope="module")
def world(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """Day one's orders and shipping staged, validated and merged under quarantining order relations."""
    folder = tmp_path_factory.mktemp("batch-validate")
    lake = Lake(folder / "warehouse", spark)
    quarantining = folder / "contracts"
    quarantining.mkdir()
    pipeline = (BUILTIN_DATASETS / "ecommerce.toml").read_text()
    head, tail = pipeline.split('name = "order_customer"', 1)
    # The first two actions after it are order_customer's and order_product's.
    quarantining.joinpath("ecommerce.toml").write_text(
        head + 'name = "order_customer"' + tail.replace('action = "warn"', 'action = "quarantine"', 2)
    )
    manifest = seal(folder / "in", DAYS[0], only=("orders", "shipping"))
    extra = ["--contracts-dir", str(quarantining)]
    for task in (batch_stage, batch_validate, batch_merge):
        assert task.main(arguments(lake, manifest, extra)) == 0
    return lake


def rows(lake: Lake, table: str) -> list[dict[str, Any]]:
    return [row.asDict() for row in lake.spark.table(lake.location.name(table)).collect()]  # type: ignore[union-attr]


def quarantined_orders(lake: Lake) -> list[str]:
    rejects = [r for r in rows(lake, "orders_rejects") if r["_rejected_by"] == "validate"]
    return [json.loads(r["raw_line"])["order_id"] for r in rejects]


def test_a_shipment_whose_order_was_quarantined_fails_its_relation(world: Lake) -> None:
    quarantined = set(quarantined_orders(world))
    orphans = sorted(s["tracking_number"] for s in world.staged("shipping") if s["order_id"] in quarantined)

    failures = [r for r in rows(world, "validation_failures") if r["batch_id"] == BATCH]
    found = sorted(r["key"]["tracking_number"] for r in failures if r["rule"] == "shipping_order")
    assert orphans
    assert found == orphans
    (result,) = (r for r in rows(world, "validation_results") if r["rule"] == "shipping_order")
    assert (result["rows_failed"], result["outcome"]) == (len(orphans), "WARNED")
    assert not {r["order_id"] for r in rows(world, "orders_target")} & quarantined


def test_an_order_two_relations_quarantine_is_one_quarantined_row_naming_both(world: Lake) -> None:
    staged = sorted(s["order_id"] for s in world.staged("orders"))

    rejects = [r for r in rows(world, "orders_rejects") if r["_rejected_by"] == "validate"]
    assert sorted(quarantined_orders(world)) == staged
    assert {tuple(r["rules"]) for r in rejects} == {("orders.validate.order_customer", "orders.validate.order_product")}
    assert all(r["reason"].startswith("quarantined by order_customer: customer_id ") for r in rejects)
    assert all("; order_product: product_id " in r["reason"] for r in rejects)
    # validate counts each staged row once, as the merge does, in its log row and in the dataset's result.
    log = {r["task"]: r for r in rows(world, "processing_log") if r["dataset"] == "orders"}
    assert log["validate"]["rows_quarantined"] == log["merge_targets"]["rows_quarantined"] == len(staged)
    (dataset,) = (r for r in rows(world, "validation_results") if r["level"] == "dataset" and r["dataset"] == "orders")
    read, rejected = log["stage_members"]["rows_read"], log["stage_members"]["rows_rejected"]
    assert (dataset["rows_evaluated"], dataset["rows_failed"]) == (read, rejected + len(staged))


def test_rows_a_rule_no_longer_quarantines_leave_the_rejects_when_validate_runs_again(
    world: Lake, tmp_path: Path
) -> None:
    # A tripped rule's error says to change the rule, then repair the run from validate. Changed from
    # quarantine back to warn (the built-in pipeline), the orders merge: they must leave orders_rejects.
    copy = Lake(tmp_path / "warehouse", world.spark)
    shutil.copytree(world.folder, copy.folder)
    manifest = seal(tmp_path / "in", DAYS[0], only=("orders", "shipping"))
    assert quarantined_orders(copy)

    assert batch_validate.main(arguments(copy, manifest)) == 0

    assert quarantined_orders(copy) == []
    assert len([r for r in rows(copy, "orders_rejects") if r["_rejected_by"] == "stage"]) == len(
        [r for r in rows(world, "orders_rejects") if r["_rejected_by"] == "stage"]
    )
    failures = [r for r in rows(copy, "validation_failures") if r["batch_id"] == BATCH]
    assert {r["action"] for r in failures if r["rule"] == "order_customer"} == {"warn"}


@pytest.mark.parametrize(("read", "announced"), [(250, 100), (100, 250)])
def test_rows_read_far_from_the_trigger_score_within_0_and_100(read: int, announced: int) -> None:
    result = batch_validate.manifest_result("orders", read, announced).settle()

    assert (result.rows_evaluated, result.rows_failed) == (250, 150)
    assert (result.failure_ratio, result.score) == (pytest.approx(0.6), pytest.approx(40.0))
    assert (result.severity, result.outcome) == ("HIGH", "FAILED")


def test_a_relation_reads_derived_columns_from_the_batch_and_from_the_parent_s_target(world: Lake) -> None:
    # shipping's delivery_delay_days is derived at stage. The world's shipping target holds delays of 0 (and
    # NULL); this batch's orders and shipments are made here, with quantities and delays to pair up.
    spark = world.spark
    assert spark is not None
    contracts = load_contracts()
    members = {name: contracts[name] for name in ("orders", "shipping")}

    def batch(contract: Contract, values: list[dict[str, Any]]) -> DataFrame:
        fields = StructType(row_fields(contract))
        return driver_rows(spark, [tuple(v.get(f) for f in fields.fieldNames()) for v in values], fields)

    orders = batch(members["orders"], [{"order_id": o, "quantity": q} for o, q in (("O1", 0), ("O2", 7), ("O3", 9))])
    shipments = [{"tracking_number": t, "delivery_delay_days": d} for t, d in (("T1", 7), ("T2", 4))]
    by_target = Relation("quantity_delay", "orders", ("quantity",), "shipping", ("delivery_delay_days",))
    by_batch = Relation("delay_quantity", "shipping", ("delivery_delay_days",), "orders", ("quantity",))
    checks = Checks(relations=(by_target, by_batch))
    frames = {"orders": orders, "shipping": batch(members["shipping"], shipments)}
    inputs = register_inputs(spark, world.warehouse(), members, frames, checks)
    try:
        # O1's 0 is a delay only the shipping target holds; O2's 7 only this batch's T1.
        assert [r["order_id"] for r in relation_failures(by_target, inputs)[0].collect()] == ["O3"]
        # Every order was quarantined before: the parents are this batch's quantities 0, 7 and 9.
        assert [r["tracking_number"] for r in relation_failures(by_batch, inputs)[0].collect()] == ["T2"]
    finally:
        inputs.close()


def test_a_rule_returning_more_rows_than_it_evaluated_scores_0() -> None:
    result = batch_validate.Result("rule", "twice", "rule", "orders", "MEDIUM", "warn", 10, 12).settle()

    assert (result.failure_ratio, result.score, result.outcome) == (1.0, 0.0, "WARNED")


def test_a_relation_of_a_dataset_to_itself_checks_each_row_against_the_batch_and_the_target(
    spark: SparkSession,
) -> None:
    # An employee's manager is an employee: in this batch, already current, or neither. Child and parent
    # come from one DataFrame, the self-join a classic session can resolve ambiguously.
    schema = "employee_id string, manager_id string"
    inputs = Inputs(spark)
    inputs.register(
        "batch", "employees", spark.createDataFrame([("E1", None), ("E2", "E1"), ("E3", "E9"), ("E4", "E5")], schema)
    )
    inputs.register("current", "employees", spark.createDataFrame([("E5", None)], schema))
    relation = Relation("manager", "employees", ("manager_id",), "employees", ("employee_id",), nulls="fail")
    try:
        failing, nulls = relation_failures(relation, inputs)
        withheld, _ = relation_failures(relation, inputs, spark.createDataFrame([("E1",)], "employee_id string"))

        assert sorted(tuple(r) for r in failing.collect()) == [
            ("E1", None, "manager_id is NULL"),
            ("E3", "E9", "manager_id E9 is not a key of employees"),
        ]
        assert [r["employee_id"] for r in nulls.collect()] == ["E1"]
        # A quarantined manager is no parent: the employee it managed fails too.
        assert sorted(r["employee_id"] for r in withheld.collect()) == ["E1", "E2", "E3"]
    finally:
        inputs.close()
    assert Checks(relations=(relation,)).merge_order(["employees", "orders"]) == ["employees", "orders"]


def test_a_relation_of_a_dataset_to_itself_runs_after_its_quarantines_and_without_their_rows(
    spark: SparkSession,
) -> None:
    # A rule quarantines E1: E2, whose manager E1 never reaches the target, passed its self-relation before.
    # One pass: E3, whose manager E2 only the self-relation holds back, passes.
    employees = Contract(
        name="employees",
        file_pattern="employees_{yyyy}_{mm}_{dd}.csv",
        columns=(Column("employee_id", "string"), Column("manager_id", "string")),
        keys=("employee_id",),
        sequence_by="employee_id",
    )
    schema = "employee_id string, manager_id string"
    inputs = Inputs(spark)
    inputs.register("batch", "employees", spark.createDataFrame([("E1", None), ("E2", "E1"), ("E3", "E2")], schema))
    inputs.register("current", "employees", spark.createDataFrame([], schema))
    relation = Relation("manager", "employees", ("manager_id",), "employees", ("employee_id",), action="quarantine")
    rule = Rule(
        "e1", "employees", "SELECT employee_id FROM ${batch.employees} WHERE employee_id = 'E1'", action="quarantine"
    )
    checks = Checks(relations=(relation,), rules=(rule,))
    try:
        found, held = batch_validate.dataset_failures(employees, checks, inputs, {}, date(2025, 1, 2))

        assert {check.name: [r["employee_id"] for r in failing.collect()] for check, failing in found} == {
            "e1": ["E1"],
            "manager": ["E2"],
        }
        assert held is not None
        assert sorted(r["employee_id"] for r in held.collect()) == ["E1", "E2"]
    finally:
        inputs.close()


def batch_only(spark: SparkSession, child: tuple[str, DataFrame], parent: tuple[str, DataFrame]) -> Inputs:
    """A relation's inputs where the batch holds the child's and the parent's rows, and the parent's target none."""
    inputs = Inputs(spark)
    inputs.register("batch", *child)
    inputs.register("batch", *parent)
    inputs.register("current", parent[0], parent[1].limit(0))
    return inputs


def test_a_relation_on_two_columns_names_each_value_apart(spark: SparkSession) -> None:
    # The detail ran the pairs together: "region EUacct_no 5 is not a key of accounts".
    payments = spark.createDataFrame([("P1", "EU", 5)], "pay_id string, region string, acct_no long")
    accounts = spark.createDataFrame([("US", 5)], "region string, acct_no long")
    inputs = batch_only(spark, ("payments", payments), ("accounts", accounts))
    relation = Relation("holder", "payments", ("region", "acct_no"), "accounts", ("region", "acct_no"))
    try:
        failing, _ = relation_failures(relation, inputs)

        assert [r[DETAIL] for r in failing.collect()] == ["region EU, acct_no 5 is not a key of accounts"]
    finally:
        inputs.close()


def test_a_relation_on_a_column_named_like_a_reserved_word_names_its_value(reserved_keywords: SparkSession) -> None:
    spark = reserved_keywords
    lines = spark.createDataFrame([("L1", "O9")], "line_id string, `order` string")
    orders = spark.createDataFrame([("O1",)], "`order` string")
    inputs = batch_only(spark, ("lines", lines), ("orders", orders))
    try:
        failing, _ = relation_failures(Relation("line_order", "lines", ("order",), "orders", ("order",)), inputs)

        assert [r[DETAIL] for r in failing.collect()] == ["order O9 is not a key of orders"]
    finally:
        inputs.close()


def test_a_child_column_named_detail_is_kept_apart_from_the_relation_s_detail(spark: SparkSession) -> None:
    # The relation's reason was a column `detail` beside the child's own: validate failed AMBIGUOUS_REFERENCE.
    lines = spark.createDataFrame([("L1", "I9", "gift wrap")], "line_id string, item_id string, detail string")
    items = spark.createDataFrame([("I1",)], "item_id string")
    inputs = batch_only(spark, ("lines", lines), ("items", items))
    try:
        failing, _ = relation_failures(Relation("line_item", "lines", ("item_id",), "items", ("item_id",)), inputs)

        assert [tuple(r) for r in failing.select("detail", DETAIL).collect()] == [
            ("gift wrap", "item_id I9 is not a key of items")
        ]
    finally:
        inputs.close()


def test_a_snapshot_parent_checks_children_against_the_keys_it_shows_not_those_it_is_about_to_close(
    lake: Lake,
) -> None:
    # The shelf's day-two snapshot lacks s2 (its merge closes s2), holds s3 back (rejected at stage) and
    # deletes s4 (`delete_when`): picks of s2 and s4 are orphans once the batch merges, a pick of s3 is
    # not (s3's version stays open).
    spark = lake.spark
    assert spark is not None
    warehouse = lake.warehouse()
    contract = replace(SHELF, delete_when="price < 0")
    day_one, day_two = date(2025, 1, 1), date(2025, 1, 2)
    everything = {"s1": 10, "s2": 5, "s3": 7, "s4": 3}
    merge_history(warehouse, contract, shelf(spark, day_one, everything), f"shelf-{day_one}")
    batch = f"shelf-{day_two}"
    stage = stage_table_schema(contract)
    staged = [
        {"sku": "s1", "price": 11, "aisle": "A1", BUSINESS_DATE: day_two},
        {"sku": "s3", "price": None, "aisle": "A1", BUSINESS_DATE: day_two, REASON: "price: not a number"},
        {"sku": "s4", "price": -1, "aisle": "A1", BUSINESS_DATE: day_two},
    ]
    lineage = {BATCH_ID: batch, SOURCE_FILE: f"{batch}.csv", INGESTED_AT: datetime(2025, 2, 2)}
    rows = [tuple({**lineage, **row}.get(f.name) for f in stage.fields) for row in staged]
    warehouse.ensure_table(stage_table(contract), stage)
    warehouse.append(stage_table(contract), driver_rows(spark, rows, stage))
    picks = spark.createDataFrame([(f"p{n}", f"s{n}") for n in range(1, 5)], "pick_id string, sku string")
    relation = Relation("pick_sku", "picks", ("sku",), "shelf", ("sku",))
    contracts = {"shelf": contract, "picks": PICKS}

    def checked(on: date) -> tuple[list[str], list[str]]:
        """The orphan picks, and the skus of `${latest.shelf}`."""
        batch_rows = {"shelf": staged_rows(warehouse, contract, batch), "picks": picks}
        inputs = register_inputs(spark, warehouse, contracts, batch_rows, Checks(), without=batch, as_of=on)
        try:
            failing, _ = relation_failures(relation, inputs)
            latest = inputs.frame("latest", "shelf")
            return sorted(r["pick_id"] for r in failing.collect()), sorted(r["sku"] for r in latest.collect())
        finally:
            inputs.close()

    assert checked(day_two) == (["p2", "p4"], ["s1", "s3"])
    # A late snapshot (day three's came first) closes nothing current: s2 stays a parent; s4's delete, of
    # an earlier day, ends no current version either, but is itself no parent.
    merge_history(warehouse, contract, shelf(spark, date(2025, 1, 3), everything), "shelf-2025-01-03")
    assert checked(day_two) == ([], ["s1", "s2", "s3", "s4"])


@pytest.mark.parametrize("scd_type", [1, 2])
def test_a_key_whose_newest_row_is_a_delete_is_no_parent(lake: Lake, scd_type: int) -> None:
    # d2's delete ends it: an employee of d2 passed its relation and merged, while its department left the target.
    # d4 opens and closes within the batch; d5 closes and reopens; d3's delete is older than its current row and
    # ends nothing (as the merge orders them).
    spark = lake.spark
    assert spark is not None
    warehouse = lake.warehouse()
    depts = Contract(
        name="depts",
        file_pattern="depts_{yyyy}_{mm}_{dd}.csv",
        columns=(Column("dept_id", "string"), Column("status", "string"), Column("seq", "long")),
        keys=("dept_id",),
        sequence_by="seq",
        scd_type=scd_type,
        delete_when="status = 'CLOSED'",
    )
    emps = replace(
        PICKS,
        name="emps",
        columns=(Column("emp_id", "string"), Column("dept_id", "string")),
        keys=("emp_id",),
        sequence_by="emp_id",
    )
    schema = target_schema(depts)
    current = [("d1", "OPEN", 1), ("d2", "OPEN", 1), ("d3", "OPEN", 5)]
    versions = [{"dept_id": d, "status": s, "seq": n, IS_CURRENT: True} for d, s, n in current]
    warehouse.ensure_table(depts.target, schema)
    warehouse.append(
        depts.target, driver_rows(spark, [tuple(v.get(f.name) for f in schema.fields) for v in versions], schema)
    )
    batch = [
        ("d2", "CLOSED", 2),
        ("d3", "CLOSED", 3),
        ("d4", "OPEN", 1),
        ("d4", "CLOSED", 2),
        ("d5", "CLOSED", 1),
        ("d5", "OPEN", 2),
    ]
    batch_rows = {
        "depts": driver_rows(spark, batch, StructType(row_fields(depts))),
        "emps": spark.createDataFrame([(f"e{n}", f"d{n}") for n in range(1, 6)], "emp_id string, dept_id string"),
    }
    inputs = register_inputs(spark, warehouse, {"depts": depts, "emps": emps}, batch_rows, Checks())
    try:
        failing, _ = relation_failures(Relation("emp_dept", "emps", ("dept_id",), "depts", ("dept_id",)), inputs)

        assert sorted(r["emp_id"] for r in failing.collect()) == ["e2", "e4"]
        assert sorted(r["dept_id"] for r in inputs.frame("latest", "depts").collect()) == ["d1", "d3", "d5"]
    finally:
        inputs.close()


def test_a_rule_fails_only_rows_of_the_batch_and_its_columns_match_the_keys_in_any_case(spark: SparkSession) -> None:
    # The query names the key in capitals (Spark resolves it either way) and also returns P9, a pick the
    # target holds but this batch does not: P9 fails no row of the batch, so it neither counts nor quarantines.
    inputs = Inputs(spark)
    inputs.register("batch", "picks", spark.createDataFrame([("p1", "s1"), ("p2", "s2")], "pick_id string, sku string"))
    inputs.register("current", "picks", spark.createDataFrame([("p9", "s2")], "pick_id string, sku string"))
    sql = (
        "SELECT pick_id AS PICK_ID, 'sku s2 is recalled' AS DETAIL FROM ${batch.picks} WHERE sku = 's2' "
        "UNION ALL SELECT pick_id, 'sku s2 is recalled' FROM ${current.picks} WHERE sku = 's2'"
    )
    try:
        failing = rule_failures(Rule("recalled", "picks", sql), inputs, PICKS, {}, date(2025, 1, 2))

        assert [tuple(r) for r in failing.collect()] == [("p2", "sku s2 is recalled")]
    finally:
        inputs.close()


def test_a_rule_returning_a_key_twice_fails_each_of_its_rows_once_with_both_details(spark: SparkSession) -> None:
    # The query joins each pick to its bad lines: p2 has two, so the query returns p2 twice. The batch holds
    # two rows of p2 (two versions of the day) and one of p1: p2's two rows fail, once each, never four
    # times (a count above the rows evaluated, a score below zero).
    inputs = Inputs(spark)
    inputs.register(
        "batch",
        "picks",
        spark.createDataFrame([("p1", "s1"), ("p2", "s2"), ("p2", "s3")], "pick_id string, sku string"),
    )
    lines = spark.createDataFrame(
        [("p2", "line 1 short"), ("p2", "line 3 short"), ("p2", "line 1 short")], "pick_id string, problem string"
    )
    inputs.register("lookup", "lines", lines)
    sql = "SELECT l.pick_id, l.problem AS detail FROM ${lookup.lines} l"
    try:
        failing = rule_failures(Rule("short", "picks", sql), inputs, PICKS, {}, date(2025, 1, 2))

        assert sorted(tuple(r) for r in failing.collect()) == [("p2", "line 1 short; line 3 short")] * 2
    finally:
        inputs.close()


def test_a_batch_whose_datasets_only_warned_is_warned_not_passed() -> None:
    # A warn rule sets nothing aside, so its dataset counts no failed row; the batch read that count and
    # said PASSED (severity MEDIUM) beside a WARNED dataset.
    warned = batch_validate.Result("rule", "payment_currency", "relation", "payments", "MEDIUM", "warn", 10, 1).settle()
    clean = batch_validate.Result("rule", "amount_positive", "rule", "accounts", "HIGH", "quarantine", 5, 0).settle()
    checks = Checks()
    payments = batch_validate._summary("dataset", "payments", [warned], 10, 0, checks)
    accounts = batch_validate._summary("dataset", "accounts", [clean], 5, 0, checks)

    batch = batch_validate._batch_summary([payments, accounts])

    assert (payments.outcome, accounts.outcome) == ("WARNED", "PASSED")
    assert (batch.rows_failed, batch.severity, batch.outcome) == (0, "MEDIUM", "WARNED")
    assert batch_validate._batch_summary([accounts]).outcome == "PASSED"


def test_a_column_named_check_or_row_is_scored_with_its_own_severity() -> None:
    # A cheque number column `check`: its rules were looked up among the contract's checks and reported HIGH
    # whatever it declared; a column `row` lent its LOW to the file's row rules (well-formed, field count).
    cheques = Contract(
        name="cheques",
        file_pattern="cheques_{yyyy}_{mm}_{dd}.csv",
        columns=(
            Column("cheque_id", "string", nullable=False),
            Column("check", "string", pattern="^[0-9]{6}$", severity="LOW"),
            Column("row", "long", severity="LOW"),
        ),
        keys=("cheque_id",),
        sequence_by="cheque_id",
    )

    severities = {r.rule: batch_validate.stage_rule_severity(cheques, r.rule, r.kind) for r in stage_rules(cheques)}

    assert severities == {
        "cheques.row.well_formed": "HIGH",
        "cheques.row.field_count": "HIGH",
        "cheques.cheque_id.required": "HIGH",
        "cheques.check.pattern": "LOW",
        "cheques.row.type": "LOW",
    }


def test_a_quarantined_row_s_line_keeps_every_column_and_each_timestamp_to_the_microsecond(spark: SparkSession) -> None:
    # JSON's default cut 10:00:00.123456 to .123 and left the null column out: a key holding a timestamp could
    # not be found again from the rejects.
    row = spark.createDataFrame(
        [("E1", datetime(2025, 3, 1, 9, 0, 0, 123456, tzinfo=UTC), None)], "event_id string, at timestamp, note string"
    )

    [line] = [r[0] for r in row.select(batch_validate.row_text(row.columns)).collect()]

    assert json.loads(line) == {"event_id": "E1", "at": "2025-03-01T09:00:00.123456Z", "note": None}


def test_the_task_s_last_line_names_each_dataset_s_score_and_the_batch_s() -> None:
    # The batch's row has no dataset: the line read "None score 98.43...".
    orders = batch_validate.Result("dataset", None, None, "orders", None, None, 10, 1, score=97.25)
    empty = batch_validate.Result("dataset", None, None, "shipping", None, None, 0, 0)
    rule = batch_validate.Result("rule", "order_customer", "relation", "orders", "HIGH", "warn", 10, 1, score=90.0)
    results = [rule, orders, empty, batch_validate._batch_summary([orders, empty])]

    line = batch_validate.scores_line("ecommerce-2025-01-15-r1", results)

    scores = "orders score 97.2, shipping score none, the batch score 97.2"
    assert line == f"validate: batch ecommerce-2025-01-15-r1: {scores}"


@pytest.mark.parametrize(
    ("action", "failed", "outcome"),
    [("fail", 3, "WARNED"), ("fail", 6, "FAILED"), ("warn", 6, "FAILED"), ("quarantine", 3, "QUARANTINED")],
)
def test_fail_if_ratio_is_the_share_past_which_a_rule_fails_the_batch_whatever_its_action(
    action: str, failed: int, outcome: str
) -> None:
    # A `fail` rule with a share failed the batch on its first failing row, unless it was a reconciliation rule.
    rule = batch_validate.Result("rule", "orphans", "relation", "orders", "HIGH", action, 100, failed)
    rule.fail_if_ratio = 0.05

    assert rule.settle().outcome == outcome


def test_validate_refuses_a_member_whose_target_was_built_with_another_scd_type(
    spark: SparkSession, tmp_path: Path
) -> None:
    # validate reads each member's target as its contract describes it: an SCD1 target under a contract now SCD2
    # failed on `is_current`, a column it lacks, instead of naming what changed as merge_targets does.
    lake = Lake(tmp_path / "warehouse", spark)
    customers = load_contracts()["customers"]
    as_scd1 = replace(customers, scd_type=1)
    ensure_target(lake.warehouse(), as_scd1, target_schema(as_scd1))
    manifest = seal(tmp_path / "in", DAYS[0], only=("customers",))
    assert batch_stage.main(arguments(lake, manifest)) == 0

    assert batch_validate.main(arguments(lake, manifest)) == 1

    (log,) = (r for r in rows(lake, "processing_log") if r["task"] == "validate")
    assert log["error"].startswith("TargetDefinitionChanged: "), log["error"][:300]
    assert "filegate.scd_type: the table has '1', the contract says '2'" in log["error"]
