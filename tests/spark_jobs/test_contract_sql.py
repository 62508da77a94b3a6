"""Contract SQL on Spark: derived columns and checks compute what they say; broken SQL is found by `check`."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from filegate import exits
from filegate.check import main
from filegate.contracts import BUILTIN_DATASETS, Contract, load_contract, load_contracts
from spark_jobs.columns import contract_fields
from spark_jobs.contract_sql import check_passes, derived_column, expression_problems

pytestmark = pytest.mark.spark

BROKEN = Path(__file__).parents[1] / "contracts" / "broken"


def test_check_resolves_every_shipped_expression_on_spark(spark: SparkSession) -> None:
    assert main([]) == 0


def test_a_builtin_pipeline_a_users_folder_replaces_is_not_resolved_against_its_datasets(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The user's customers name their country `country_code`, and their copy of ecommerce.toml follows it
    # but for one table left as shipped. With Spark, check resolved the built-in ecommerce.toml's tables too
    # against the user's customers: the same findings again, in a file the user cannot edit.
    customers = (BUILTIN_DATASETS / "customers.toml").read_text(encoding="utf-8")
    (tmp_path / "customers.toml").write_text(customers.replace('name = "country"', 'name = "country_code"'), "utf-8")
    pipeline = (BUILTIN_DATASETS / "ecommerce.toml").read_text(encoding="utf-8")
    (tmp_path / "ecommerce.toml").write_text(pipeline.replace("c.country\n", "c.country_code AS country\n", 1), "utf-8")

    assert main([str(tmp_path)]) == 1

    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith(str(tmp_path / "ecommerce.toml"))], lines
    assert [line for line in lines if line.startswith(str(BUILTIN_DATASETS))] == []


def test_an_expression_that_does_not_resolve_or_is_not_boolean_is_found(spark: SparkSession) -> None:
    contract = load_contract(BROKEN / "bad_check.toml")

    problems = {problem.where: problem.message for problem in expression_problems(spark, contract)}

    assert set(problems) == {"checks.positive", "checks.not_boolean"}
    assert "`amout` cannot be resolved" in problems["checks.positive"]
    assert problems["checks.not_boolean"] == "expr gives decimal(12,2), not a boolean"


@pytest.mark.parametrize(
    ("delete_when", "message"),
    [
        ("status = 'GONE'", "`status` cannot be resolved"),
        ("amount +", "PARSE_SYNTAX_ERROR"),
        ("amount * 2", "expr gives decimal(12,2), not a boolean"),
    ],
)
def test_a_delete_when_that_does_not_resolve_or_is_not_boolean_is_found(
    spark: SparkSession, tmp_path: Path, delete_when: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    head, columns = (BROKEN / "bad_check.toml").read_text().split("[[checks]]")[0].split("[[columns]]", 1)
    path = tmp_path / "deletes.toml"
    text = f'{head}delete_when = """{delete_when}"""\n\n[[columns]]{columns}'.replace("bad_check", "deletes")
    path.write_text(text, encoding="utf-8")
    contract = load_contract(path)

    problems = {problem.where: problem.message for problem in expression_problems(spark, contract)}

    assert set(problems) == {"delete_when"}
    assert message in problems["delete_when"]
    assert main([str(path)]) == exits.FAILED
    assert "deletes.toml" in capsys.readouterr().out


def test_bands_take_the_first_matching_band_and_parameters(spark: SparkSession) -> None:
    contract = load_contracts()["inventory"]
    derived = contract.derived[0]
    rows = spark.createDataFrame([(q,) for q in (-1, 0, 1, 10, 11, None)], "stock_quantity bigint")

    found = dict(rows.select("stock_quantity", derived_column(contract, derived)).collect())

    assert found == {-1: "OUT_OF_STOCK", 0: "OUT_OF_STOCK", 1: "LOW_STOCK", 10: "LOW_STOCK", 11: "IN_STOCK", None: None}


@pytest.mark.parametrize(
    ("dimensions", "volume", "volumetric", "billable"),
    [
        ("30x20x10", "6000.00", "1.200", "1.500"),
        # The largest parcel the column's pattern accepts: every derived value fits its type, so no row
        # the stage checks can stop the file with an overflow.
        ("999.99x999.99x999.99", "999970000.20", "199994.000", "199994.000"),
    ],
)
def test_shipping_derives_volume_and_billable_weight(
    spark: SparkSession, dimensions: str, volume: str, volumetric: str, billable: str
) -> None:
    contract = load_contracts()["shipping"]
    assert contract.column("dimensions_cm").check_text(dimensions) is None
    assert contract.column("dimensions_cm").check_text("1000x1x1") is not None
    row = {
        "package_weight": Decimal("1.500"),
        "dimensions_cm": dimensions,
        "estimated_delivery": date(2025, 1, 17),
        "actual_delivery": date(2025, 1, 19),
    }
    names = {field.name: field for field in contract_fields(contract)}
    frame = spark.createDataFrame([row]).select(*(F.col(name).cast(names[name].dataType).alias(name) for name in row))
    for derived in contract.derived:
        frame = frame.select("*", derived_column(contract, derived))

    result = frame.first()

    assert result is not None
    assert result["volume_cm3"] == Decimal(volume)
    assert result["volumetric_weight_kg"] == Decimal(volumetric)
    assert result["billable_weight_kg"] == Decimal(billable)
    assert result["delivery_delay_days"] == 2
    assert result["is_late"] is True


def test_a_check_with_an_unknown_verdict_passes_as_sql_check_constraints_do(spark: SparkSession) -> None:
    contract = load_contracts()["orders"]
    check = next(check for check in contract.checks if check.name == "ordered_not_in_future")
    rows = spark.createDataFrame([(date(2025, 1, 15),), (date(2025, 1, 16),), (None,)], "order_date date").select(
        "*", F.lit(date(2025, 1, 15)).alias("_business_date")
    )

    verdicts = [row[0] for row in rows.select(check_passes(contract, check)).collect()]

    assert verdicts == [True, False, True]


def test_a_rule_that_does_not_resolve_or_returns_no_key_is_found_before_any_batch(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both passed check and failed `validate` once every file of a batch had landed.
    (tmp_path / "shop.toml").write_text(
        'kind = "pipeline"\nname = "shop"\ntrigger_pattern = "go_{yyyy}_{mm}_{dd}.json"\n'
        'members = ["customers", "orders"]\n'
        '[[rules]]\nname = "typo"\ndataset = "orders"\n'
        'sql = "SELECT o.order_id FROM ${batch.orders} o WHERE o.order_amout > 100"\n'
        '[[rules]]\nname = "no_key"\ndataset = "orders"\n'
        'sql = "SELECT customer_id FROM ${batch.orders}"\n'
        '[[rules]]\nname = "sound"\ndataset = "orders"\nsql = """\n'
        "SELECT o.ORDER_ID, 'unknown customer' AS detail FROM ${batch.orders} o\n"
        "LEFT ANTI JOIN ${latest.customers} c ON o.customer_id = c.customer_id\n"
        '"""\n',
        encoding="utf-8",
    )

    code = main([str(tmp_path)])

    out = capsys.readouterr().out
    assert code == exits.FAILED
    assert "rule typo: [UNRESOLVED_COLUMN.WITH_SUGGESTION]" in out
    assert "`o`.`order_amout`" in out
    assert "rule no_key must return the key columns of orders; missing ['order_id']" in out
    assert "sound" not in out


def _contract(folder: Path, name: str, column: str, rest: str) -> Contract:
    """A contract of an `id` key and one more column, and `rest` (its checks or derived columns)."""
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nfile_pattern = "{name}_{{yyyy}}_{{mm}}_{{dd}}.csv"\nkeys = ["id"]\n'
        'sequence_by = "_business_date"\n[[columns]]\nname = "id"\ntype = "string"\nnullable = false\n'
        f"[[columns]]\n{column}\n{rest}",
        encoding="utf-8",
    )
    return load_contract(path)


def test_a_band_on_a_text_column_compares_text(spark: SparkSession, tmp_path: Path) -> None:
    # The bounds were read as decimals: check said "[<class 'decimal.ConversionSyntax'>]", the job raised it.
    contract = _contract(
        tmp_path,
        "people",
        'name = "surname"\ntype = "string"',
        '[[derived]]\nname = "alpha_group"\ntype = "string"\n'
        'bands = { on = "surname", default = "other", rules = [{ label = "A-M", min = "A", max = "Mzzz" }] }\n',
    )
    rows = spark.createDataFrame([(s,) for s in ("Adams", "Miller", "Smith", None)], "surname string")

    found = dict(rows.select("surname", derived_column(contract, contract.derived[0])).collect())

    assert expression_problems(spark, contract) == []
    assert found == {"Adams": "A-M", "Miller": "A-M", "Smith": "other", None: None}


def test_an_aggregate_check_is_found_as_the_job_would_fail_on_it(spark: SparkSession, tmp_path: Path) -> None:
    # Resolved alone, `sum(v) > 0` is a global aggregate and passed; beside the row's columns every run failed.
    contract = _contract(
        tmp_path, "totals", 'name = "v"\ntype = "long"', '[[checks]]\nname = "total_positive"\nexpr = "sum(v) > 0"\n'
    )

    [problem] = expression_problems(spark, contract)

    assert problem.where == "checks.total_positive"
    assert "MISSING_GROUP_BY" in str(problem)
