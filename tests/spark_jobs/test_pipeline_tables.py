"""The derived tables and bands of a pipeline file, read and checked without Spark."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from filegate.check import check_files
from filegate.contracts import BUILTIN_DATASETS, load_contracts
from filegate.errors import ContractError
from filegate.pipelines import load_pipelines, parse_pipeline
from spark_jobs.pipeline_tables import DerivedTable, parse_tables, placeholders, quoted_inputs

HEADER = (
    'kind = "pipeline"\nname = "shop"\ntrigger_pattern = "go_{yyyy}_{mm}_{dd}.json"\n'
    'members = ["customers", "orders"]\n[params]\nvip_spend = 900\n'
)


def shop(tables: str) -> str:
    return HEADER + tables


def tables_of(text: str, tmp_path: Path) -> tuple[DerivedTable, ...]:
    contracts = load_contracts()
    return parse_tables(parse_pipeline(tomllib.loads(text), contracts, tmp_path / "shop.toml"), contracts)


def problems(text: str, tmp_path: Path) -> str:
    with pytest.raises(ContractError) as raised:
        tables_of(text, tmp_path)
    return str(raised.value)


def test_the_shipped_tables_are_built_after_the_tables_they_read() -> None:
    contracts = load_contracts()
    tables = parse_tables(load_pipelines(contracts)["ecommerce"], contracts)

    order = [t.name for t in tables]

    assert set(order) == {
        "enriched_orders",
        "inventory_movements",
        "customer_analytics",
        "product_analytics",
        "seasonal_analysis",
        "segment_analysis",
        "analytics_summary",
    }
    for table in tables:
        assert all(order.index(read) < order.index(table.name) for read in table.tables_read())
    assert {t.name: t.refresh for t in tables}["segment_analysis"] == "as_of"
    assert {t.name: t.refresh for t in tables}["analytics_summary"] == "as_of"


def test_bands_compile_to_one_case_in_declared_order_with_params_and_quantiles(tmp_path: Path) -> None:
    text = shop(
        '[[tables]]\nname = "c"\ngrain = ["customer_id"]\nsql = "SELECT customer_id FROM ${current.customers}"\n'
        '[[segments]]\ntable = "c"\ncolumn = "tier"\ndefault = "low"\nbands = [\n'
        '  { label = "vip", min = { spend = "${param.vip_spend}", orders = 3 } },\n'
        '  { label = "closed", equals = { closed = true } },\n'
        '  { label = "small", max = { spend = 10.5 } },\n]\n'
        '[[segments]]\ntable = "c"\ncolumn = "rank_band"\nmethod = "quantiles"\ndefault = "rest"\n'
        'bands = [{ label = "top", min = { spend = 0.9 } }]\n'
    )
    (table,) = tables_of(text, tmp_path)
    tier, rank = table.segments

    assert tier.case_sql() == (
        "CASE WHEN `spend` >= ${param.vip_spend} AND `orders` >= 3 THEN 'vip' "
        "WHEN `closed` = true THEN 'closed' WHEN `spend` <= 10.5 THEN 'small' ELSE 'low' END"
    )
    assert rank.case_sql() == "CASE WHEN percent_rank() OVER (ORDER BY `spend`) >= 0.9 THEN 'top' ELSE 'rest' END"
    assert "param.vip_spend" in table.inputs()


def test_every_wrong_input_is_named_before_any_run(tmp_path: Path) -> None:
    found = problems(
        shop(
            '[[tables]]\nname = "a"\ngrain = ["x"]\nsql = """SELECT * FROM ${latest.orders} '
            "JOIN ${batch.products} JOIN ${history.order_tracking} JOIN ${current.nothing} "
            'JOIN ${table.zz} JOIN ${lookup.months} JOIN ${table.a} WHERE x > ${param.missing} AND ${today}"""\n'
        ),
        tmp_path,
    )

    for expected in (
        "${latest.orders} is for validation, before the merge; a table reads ${current.orders}",
        "${batch.products}: products is not a member of shop",
        "${history.order_tracking}: order_tracking keeps no history (scd_type 1)",
        "${current.nothing}: no dataset is named nothing",
        "${table.zz}: no derived table is named zz",
        "${lookup.months}: no lookup is named months",
        "${table.a}: a table cannot read itself",
        "${param.missing}: no parameter is named missing",
        "${today} is not an input a table can read",
    ):
        assert expected in found


def test_tables_reading_each_other_in_a_cycle_are_refused(tmp_path: Path) -> None:
    found = problems(
        shop(
            '[[tables]]\nname = "a"\ngrain = ["x"]\nsql = "SELECT * FROM ${table.b}"\n'
            '[[tables]]\nname = "b"\ngrain = ["x"]\nsql = "SELECT * FROM ${table.a}"\n'
        ),
        tmp_path,
    )

    assert "the derived tables read each other in a cycle: a, b" in found


def test_a_broken_table_or_band_is_explained(tmp_path: Path) -> None:
    found = problems(
        shop(
            '[[tables]]\nname = "orders_target"\nrefresh = "daily"\nsql = ""\n'
            '[[segments]]\ntable = "c"\ncolumn = "Tier"\nmethod = "rank"\nbands = [\n'
            '  { label = "top", min = { spend = 1.5 }, over = 3 },\n  { label = "top" },\n'
            '  { label = "x", max = { spend = "${param.nope}" } },\n  { label = "y", max = { spend = "lots" } },\n]\n'
        ),
        tmp_path,
    )

    for expected in (
        "table orders_target would replace the target of orders; give it another name",
        "table orders_target: refresh must be one of full, as_of",
        "table orders_target: sql must not be empty",
        "table orders_target: grain must name the columns that identify a row",
        "segments[0]: table 'c' is not a derived table of shop",
        "method must be one of thresholds, quantiles",
        "column must be lower case letters, digits and _",
        "a default label is required",
        "band 1 'top': unknown keys ['over']",
        "band 2 'top': needs at least one of min, max or equals",
        "band labels must be unique",
        "band 3 'x': max.spend names no parameter 'nope'",
        "band 4 'y': max.spend must be a number or ${param.x}",
    ):
        assert expected in found


@pytest.mark.parametrize(
    ("name", "replaced"),
    [
        ("validation_results", "the batch job's scores"),
        ("validation_failures", "the batch job's failing rows"),
        ("processing_log", "the jobs' processing log"),
        ("orders", "dataset orders"),
        ("orders_rejects", "the rejects of orders"),
        ("customers_stage", "the stage of customers"),
        ("customers_target_observations", "the history observations of customers"),
        ("order_tracking", "the target of order_tracking"),  # a dataset of no pipeline
    ],
)
def test_a_table_the_jobs_write_is_no_derived_table(tmp_path: Path, name: str, replaced: str) -> None:
    # Only the members' datasets and targets were refused: a derived `validation_results` replaced every
    # pipeline's scores, and `orders_rejects` the quarantined rows with their reasons, at each batch.
    text = shop(f'[[tables]]\nname = "{name}"\ngrain = ["n"]\nsql = "SELECT count(*) AS n FROM ${{batch.orders}}"\n')

    assert f"table {name} would replace {replaced}; give it another name" in problems(text, tmp_path)


def test_a_name_the_jobs_never_write_stays_a_derived_table(tmp_path: Path) -> None:
    # order_tracking is SCD1 without delete_when, customers SCD2 without it: no observations, no deletes.
    for name in ("order_tracking_observations", "customers_target_deletes"):
        text = shop(
            f'[[tables]]\nname = "{name}"\ngrain = ["n"]\nsql = "SELECT count(*) AS n FROM ${{batch.orders}}"\n'
        )

        assert [table.name for table in tables_of(text, tmp_path)] == [name]


def test_quantile_bounds_are_shares(tmp_path: Path) -> None:
    found = problems(
        shop(
            '[[tables]]\nname = "c"\ngrain = ["x"]\nsql = "SELECT 1 AS x"\n'
            '[[segments]]\ntable = "c"\ncolumn = "q"\nmethod = "quantiles"\ndefault = "rest"\n'
            'bands = [{ label = "top", min = { spend = 90 } }]\n'
        ),
        tmp_path,
    )

    assert "band 1 'top': min.spend is a quantile: between 0 and 1" in found


def test_filegate_check_reports_a_broken_table_with_the_pipeline_file(tmp_path: Path) -> None:
    pipeline = tmp_path / "shop.toml"
    pipeline.write_text(
        shop('[[tables]]\nname = "c"\ngrain = ["x"]\nsql = "SELECT * FROM ${table.missing}"\n'), encoding="utf-8"
    )

    _, findings = check_files([pipeline])

    (finding,) = findings
    assert finding.path == pipeline
    assert "${table.missing}: no derived table is named missing" in finding.message


def test_the_shipped_pipeline_file_passes_the_check() -> None:
    _, findings = check_files(sorted(BUILTIN_DATASETS.glob("*.toml")))

    assert findings == []


@pytest.mark.parametrize(
    ("sql", "found"),
    [
        # Text in a literal or a comment, which the job leaves as it is; an input is resolved wherever it stands.
        ("SELECT '%${REFUND}%' -- ${not an input}\n, ${batch.x}", ["${batch.x}"]),
        ("/* ${c} */ ${param.p} '${param.q}'", ["${param.p}", "${param.q}"]),
        ("SELECT 'it\\'s ${x}', ${y}", ["${y}"]),
        # A literal's '${' must not swallow the input after it; a quote in a backticked name or a raw string's
        # backslash opens or escapes nothing.
        ("SELECT concat('${', r.id) FROM ${batch.refundz} r", ["${batch.refundz}"]),
        ("SELECT r.`owner's id` FROM x WHERE ${bogus} AND r.note <> 'x'", ["${bogus}"]),
        ("SELECT `a--b`, ${bogus} FROM t", ["${bogus}"]),
        ("SELECT R'C:\\', ${bogus}, 'x' FROM t", ["${bogus}"]),
    ],
)
def test_placeholders_are_those_the_job_resolves_or_that_break_the_statement(sql: str, found: list[str]) -> None:
    assert placeholders(sql) == found


def test_an_input_inside_quotes_is_found_where_the_job_would_break_the_sql() -> None:
    # resolve_sql puts 'CODE' there: LIKE '%'CODE'%' does not parse, once every file of the batch has landed.
    sql = "SELECT * FROM ${batch.orders} o WHERE o.note LIKE '%${param.code}%' AND o.d = \"${as_of}\""
    harmless = "-- '${param.x}'\nSELECT `${batch.orders}`.id, r'${x}' FROM `${batch.orders}`"

    assert quoted_inputs(sql) == ["${param.code}", "${as_of}"]
    assert quoted_inputs(harmless) == []


@pytest.mark.parametrize("value", ["2025-01-01", "978", '["USD", "EUR"]', '{ code = "EUR" }', '" "'])
def test_a_base_currency_that_is_no_currency_code_names_the_field(tmp_path: Path, value: str) -> None:
    # The job wrote it into the SQL as a literal: a TOML date stopped derive_tables with a bare TypeError.
    header = HEADER.replace("[params]", f"base_currency = {value}\n[params]")
    table = (
        '[[tables]]\nname = "c"\ngrain = ["customer_id"]\n'
        'sql = "SELECT customer_id FROM ${current.customers} WHERE country <> ${param.base_currency}"\n'
    )

    assert "base_currency must be a currency code in quotes" in problems(header + table, tmp_path)


def test_a_base_currency_in_quotes_is_read(tmp_path: Path) -> None:
    header = HEADER.replace("[params]", 'base_currency = "EUR"\n[params]')
    table = '[[tables]]\nname = "c"\ngrain = ["customer_id"]\nsql = "SELECT customer_id FROM ${current.customers}"\n'

    assert [table.name for table in tables_of(header + table, tmp_path)] == ["c"]
