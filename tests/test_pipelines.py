"""Pipeline TOML: the built-in e-commerce pipeline, and each mistake a pipeline file can hold."""

from __future__ import annotations

import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from filegate.contracts import BUILTIN_DATASETS, load_contracts
from filegate.errors import ContractError
from filegate.pipelines import load_pipelines, parse_pipeline
from spark_jobs.pipeline_rules import Checks, Relation

CONTRACTS = load_contracts()
ECOMMERCE = tomllib.loads((BUILTIN_DATASETS / "ecommerce.toml").read_text(encoding="utf-8"))


def test_the_ecommerce_pipeline_names_its_members_and_trigger() -> None:
    pipelines = load_pipelines(CONTRACTS)
    pipeline = pipelines["ecommerce"]

    assert pipeline.members == ("customers", "products", "inventory", "orders", "shipping")
    assert pipeline.required_members == pipeline.members
    assert pipelines.of_member("orders") is pipeline
    assert pipelines.of_member("order_tracking") is None
    assert pipelines.of_trigger("trigger_2025_01_15.json") is pipeline
    assert pipelines.of_trigger("TRIGGER_2025_01_15.JSON") is pipeline
    assert pipelines.of_trigger("trigger_2025_01_15.csv") is None
    assert pipeline.trigger_date("trigger_2025_01_15.json") == date(2025, 1, 15)
    assert pipeline.batch_folder(date(2025, 1, 15)) == "_batches/ecommerce/2025/01/15/"
    # The job's keys travel untouched for the Spark side.
    assert pipeline.document["params"]["low_stock_threshold"] == 10


def test_a_pipeline_toml_is_not_a_dataset() -> None:
    assert "ecommerce" not in CONTRACTS


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"members": ["customers", "returns"]}, "member returns has no dataset contract"),
        ({"optional_members": ["order_tracking"]}, "optional member order_tracking is not in members"),
        ({"trigger_pattern": "trigger.json"}, "must hold {yyyy}, {mm} and {dd}"),
        ({"trigger_pattern": "orders_{yyyy}_{mm}_{dd}.csv"}, "end in .json"),
        # An hourly trigger: {hh} matches only the text {hh}, so no trigger ever started a batch.
        ({"trigger_pattern": "trigger_{yyyy}_{mm}_{dd}_{hh}.json"}, "{hh} matches only itself"),
        ({"trigger_pattern": "trigger_*_{yyyy}_{mm}_{dd}.json"}, "match only themselves, not any text"),
        ({"on_incomplete": "explode"}, "on_incomplete must be one of wait, reject, load_available"),
        ({"late_member": "ignore"}, "late_member must be one of hold, rerun"),
        ({"complete_within_minutes": 0}, "complete_within_minutes must be a positive whole number"),
        ({"name": "_ecommerce"}, "name '_ecommerce' must be lower case"),
        ({"members": ["orders", "orders"]}, "members names a dataset twice"),
    ],
)
def test_a_broken_pipeline_says_what_is_wrong(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=message.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")):
        parse_pipeline({**ECOMMERCE, **changes}, CONTRACTS)


@pytest.mark.parametrize(
    ("dataset_pattern", "trigger_pattern"),
    [
        ("trigger_{yyyy}_{mm}_{dd}.json", "TRIGGER_{yyyy}_{mm}_{dd}.json"),
        # Only on some days: x9 then a date against x, a date and 9 (a day ending in 9, a year of 9s).
        ("x9{yyyy}{mm}{dd}.json", "x{yyyy}{mm}{dd}9.json"),
    ],
)
def test_a_trigger_pattern_that_some_dataset_file_also_matches_is_refused(
    tmp_path: Path, dataset_pattern: str, trigger_pattern: str
) -> None:
    # A file of both would be taken as the dataset's, and the pipeline would never seal a batch.
    text = (BUILTIN_DATASETS / "customers.toml").read_text(encoding="utf-8")
    customers = tomllib.loads(text)["file_pattern"]
    (tmp_path / "feed.toml").write_text(
        text.replace('name = "customers"', 'name = "feed"').replace(customers, dataset_pattern), encoding="utf-8"
    )
    contracts = load_contracts(tmp_path)

    with pytest.raises(ContractError, match="trigger_pattern also matches dataset feed's file pattern"):
        parse_pipeline({**ECOMMERCE, "trigger_pattern": trigger_pattern}, contracts)


def test_two_built_in_files_naming_one_pipeline_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stale copy left in a wheel: the later file replaced the earlier without a word.
    from filegate import contracts, pipelines

    for shipped in BUILTIN_DATASETS.glob("*.toml"):
        (tmp_path / shipped.name).write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "ecommerce_old.toml").write_text((tmp_path / "ecommerce.toml").read_text(encoding="utf-8"), "utf-8")
    monkeypatch.setattr(contracts, "BUILTIN_DATASETS", tmp_path)
    monkeypatch.setattr(pipelines, "BUILTIN_DATASETS", tmp_path)

    with pytest.raises(ContractError, match=r"pipeline ecommerce is defined twice: .*ecommerce_old\.toml"):
        load_pipelines(load_contracts.__wrapped__())


def test_a_dataset_in_two_pipelines_is_refused(tmp_path: Path) -> None:
    text = (BUILTIN_DATASETS / "ecommerce.toml").read_text(encoding="utf-8")
    (tmp_path / "shop2.toml").write_text(text.replace('name = "ecommerce"', 'name = "shop2"'), encoding="utf-8")

    with pytest.raises(ContractError, match="member of both"):
        load_pipelines(CONTRACTS, tmp_path)


def test_relations_in_a_cycle_are_refused_at_load_naming_only_the_cycle() -> None:
    # Loaded and checked without a word; every batch then failed its validate with "the relations form a cycle
    # among ['customers', 'orders', 'shipping']", shipping only a child of the cycle.
    first_order = {"name": "customer_first_order", "child": "customers", "columns": ["customer_id"], "parent": "orders"}
    document = {**ECOMMERCE, "relations": [*ECOMMERCE["relations"], first_order]}
    cycle = (
        "the relations customer_first_order (customers.customer_id -> orders.customer_id) and order_customer "
        "(orders.customer_id -> customers.customer_id) form a cycle (customers -> orders -> customers): "
    )

    with pytest.raises(ContractError, match=re.escape(cycle)) as raised:
        parse_pipeline(document, CONTRACTS)

    assert "shipping" not in str(raised.value)
    assert "write one of these relations as a [[rules]] query" in str(raised.value)
    # The job's own check, for a pipeline that reached it unchecked, names the same cycle.
    relations = [
        Relation(r["name"], r["child"], tuple(r["columns"]), r["parent"], tuple(r["columns"]))
        for r in document["relations"]
    ]
    with pytest.raises(ContractError, match=re.escape(cycle)):
        Checks(relations=tuple(relations)).merge_order(list(ECOMMERCE["members"]))
    # A relation of a dataset to itself (a manager who is an employee) is no cycle.
    manager = {"name": "order_parent", "child": "orders", "columns": ["order_id"], "parent": "orders"}
    assert parse_pipeline({**ECOMMERCE, "relations": [*ECOMMERCE["relations"], manager]}, CONTRACTS).name == "ecommerce"


def test_a_users_contract_replacing_a_member_of_a_builtin_pipeline_is_refused_unless_the_folder_declares_it(
    tmp_path: Path,
) -> None:
    # The user's own orders.toml was still a member of the built-in ecommerce: their standalone orders files
    # would have been sealed into ecommerce's batches.
    (tmp_path / "orders.toml").write_text((BUILTIN_DATASETS / "orders.toml").read_text(encoding="utf-8"), "utf-8")
    contracts = load_contracts(tmp_path)

    with pytest.raises(ContractError, match=f"^{tmp_path}/orders.toml: dataset orders replaces the built-in orders"):
        load_pipelines(contracts, tmp_path)
    (tmp_path / "ecommerce.toml").write_text((BUILTIN_DATASETS / "ecommerce.toml").read_text(encoding="utf-8"), "utf-8")
    declared = load_pipelines(contracts, tmp_path).of_member("orders")

    assert declared is not None
    assert declared.source == tmp_path / "ecommerce.toml"
