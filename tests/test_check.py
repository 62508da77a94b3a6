"""`filegate check`: every kind of contract mistake found with file and line; the shipped contracts pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from filegate.check import check_files, main

BROKEN = Path(__file__).parent / "contracts" / "broken"
BUILTIN = Path(__file__).parents[1] / "filegate" / "datasets"


def test_check_finds_every_kind_of_mistake_with_file_and_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--no-spark", str(BROKEN)])

    out = capsys.readouterr().out.splitlines()
    assert code == 1
    expected = [
        f"{BROKEN}/bad_pattern.toml:15: columns.code.pattern: pattern '^\\\\d{{4}}$': \\d means different characters",
        f"{BROKEN}/bad_threshold.toml:18: columns.quantity.min: 'zero' is not a long",
        f"{BROKEN}/bad_threshold.toml:4: keys: key identifier is not a column",
        f"{BROKEN}/bad_threshold.toml:24: checks.under_cap: ${{param.cap}} is not in [params]",
        f"{BROKEN}/bad_threshold.toml:22: derived.size.bands: band SMALL: '${{param.limit}}' is not a long",
        f"{BROKEN}/clash.toml:6: scd_typ: is not a contract field (a typo?)",
        f"{BROKEN}/clash.toml:13: derived.id: id clashes with a column of the same name",
        f"{BROKEN}/clash_again.toml:2: dataset clash is also defined in {BROKEN}/clash.toml",
    ]
    for line in expected:
        assert any(found.startswith(line) for found in out), line
    assert len(out) == len(expected)


def test_the_shipped_contracts_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--no-spark"])

    assert code == 0
    assert "6 of 6 contract(s) sound" in capsys.readouterr().out


def test_a_file_that_is_not_toml_is_reported_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.toml").write_text('name = "x"\nkeys = [\n\n"id" "x"]\n', encoding="utf-8")

    code = main(["--no-spark", str(tmp_path)])

    assert code == 1
    assert "x.toml:4: is not valid TOML" in capsys.readouterr().out


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["--no-spark", str(tmp_path / "nope")]) == 2


def test_a_users_contract_may_replace_a_builtin_of_the_same_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    builtin = (Path(__file__).parents[1] / "filegate" / "datasets" / "customers.toml").read_text(encoding="utf-8")
    (tmp_path / "customers.toml").write_text(builtin.replace("max_length = 254", "max_length = 200"), encoding="utf-8")

    assert main(["--no-spark", str(tmp_path)]) == 0


def test_a_dataset_in_no_pipeline_may_not_use_what_only_the_batch_job_applies(tmp_path: Path) -> None:
    builtin = (Path(__file__).parents[1] / "filegate" / "datasets" / "customers.toml").read_text(encoding="utf-8")
    # The same contract under a name no pipeline lists: the ingest job would load it, and refuses to.
    (tmp_path / "members.toml").write_text(builtin.replace('name = "customers"', 'name = "members"', 1), "utf-8")
    pipeline = tmp_path / "club.toml"

    _, alone = check_files([tmp_path / "members.toml"])
    pipeline.write_text(
        'kind = "pipeline"\nname = "club"\ntrigger_pattern = "club_{yyyy}_{mm}_{dd}.json"\nmembers = ["members"]\n',
        encoding="utf-8",
    )
    _, in_pipeline = check_files([tmp_path / "members.toml", pipeline])

    # A user's pipeline named like a built-in one replaces it, members and all.
    (tmp_path / "shop.toml").write_text(
        'kind = "pipeline"\nname = "ecommerce"\ntrigger_pattern = "shop_{yyyy}_{mm}_{dd}.json"\nmembers = ["orders"]\n',
        encoding="utf-8",
    )
    _, replaced = check_files([tmp_path / "shop.toml", BUILTIN / "customers.toml"])

    [finding] = alone
    assert finding.path == tmp_path / "members.toml"
    assert finding.message.startswith("track_history_except applied by the batch job only: add members to a pipeline")
    assert in_pipeline == []
    assert [finding.message.split(":")[0] for finding in replaced] == [
        "track_history_except applied by the batch job only"
    ]


def test_a_pipeline_is_checked_against_the_datasets(tmp_path: Path) -> None:
    pipeline = tmp_path / "shop.toml"
    pipeline.write_text(
        'kind = "pipeline"\nname = "shop"\ntrigger_pattern = "go_{yyyy}_{mm}_{dd}.json"\n'
        'members = ["orders", "returns"]\non_incomplete = "explode"\n',
        encoding="utf-8",
    )

    _, findings = check_files([pipeline])

    [finding] = findings
    assert finding.path == pipeline
    assert "member returns has no dataset contract" in finding.message
    assert "on_incomplete must be one of" in finding.message


def test_a_pipelines_relations_and_rules_are_checked_before_any_run(tmp_path: Path) -> None:
    pipeline = tmp_path / "shop.toml"
    pipeline.write_text(
        'kind = "pipeline"\nname = "shop"\ntrigger_pattern = "go_{yyyy}_{mm}_{dd}.json"\n'
        'members = ["customers", "orders"]\n'
        '[[relations]]\nname = "order_customer"\nchild = "orders"\ncolumns = ["client_id"]\nparent = "customers"\n'
        'severity = "SEVERE"\n'
        '[[rules]]\nname = "big"\ndataset = "shipping"\naction = "drop"\nsql = "SELECT 1"\n'
        '[scoring.weights]\nHIGH = -5\nLOW = "one"\nURGENT = 9\n'
    )

    _, findings = check_files([pipeline])

    (finding,) = findings
    assert "child columns ['client_id'] are not all columns of orders" in finding.message
    assert "severity must be one of HIGH, MEDIUM, LOW" in finding.message
    assert "dataset 'shipping' is not a member of shop" in finding.message
    assert "action must be one of warn, quarantine, fail" in finding.message
    assert "scoring.weights.HIGH must be a number above 0, got -5" in finding.message
    assert "scoring.weights.LOW must be a number above 0, got 'one'" in finding.message
    assert "scoring.weights: 'URGENT' is not a severity (HIGH, MEDIUM, LOW)" in finding.message


def test_a_pipelines_lookups_are_checked_before_any_run(tmp_path: Path) -> None:
    # Spark's type inference refused these in the middle of a run (CANNOT_MERGE_TYPE), or KeyError here.
    pipeline = tmp_path / "shop.toml"
    pipeline.write_text(
        'kind = "pipeline"\nname = "shop"\ntrigger_pattern = "go_{yyyy}_{mm}_{dd}.json"\nmembers = ["orders"]\n'
        '[[lookups]]\nname = "carrier_weight"\ncolumns = ["carrier", "weight"]\nrows = [["UPS", 1], ["DHL"]]\n'
        '[[lookups]]\nname = "mixed"\ncolumns = ["code"]\nrows = [["A"], [2]]\n'
        '[[lookups]]\nname = "no_rows"\ncolumns = ["code"]\n'
        '[[lookups]]\nname = "carrier_weight"\ncolumns = ["carrier", "carrier"]\nrows = []\n'
    )

    _, findings = check_files([pipeline])

    (finding,) = findings
    assert "lookups[0] carrier_weight: row 2 has 1 values for 2 columns" in finding.message
    assert "lookups[1] mixed: column code holds bigint, string values; give it one type" in finding.message
    assert "lookups[2] no_rows: rows must be a list of rows" in finding.message
    assert "lookups[3] carrier_weight: another lookup is named carrier_weight" in finding.message
    assert "lookups[3] carrier_weight: columns must be unique names" in finding.message


def test_a_lookup_gets_one_type_per_column_and_integers_widen_beside_decimals(tmp_path: Path) -> None:
    from filegate.contracts import load_contracts
    from filegate.pipelines import parse_pipeline
    from spark_jobs.pipeline_rules import parse_checks

    document = {
        "kind": "pipeline",
        "name": "shop",
        "trigger_pattern": "go_{yyyy}_{mm}_{dd}.json",
        "members": ["orders"],
        "lookups": [
            {
                "name": "weights",
                "columns": ["carrier", "weight", "air"],
                "rows": [["UPS", 1, True], ["DHL", 0.5, None]],
            },
            {"name": "empty", "columns": ["code"], "rows": []},
        ],
    }
    contracts = load_contracts()
    [weights, empty] = parse_checks(parse_pipeline(document, contracts, tmp_path / "shop.toml"), contracts).lookups

    assert weights.ddl() == "`carrier` string, `weight` double, `air` boolean"
    assert weights.rows == (("UPS", 1.0, True), ("DHL", 0.5, None))
    assert empty.ddl() == "`code` string"


@pytest.mark.parametrize("lookups", ['lookups = "x"\n', "lookups = [1]\n"])
def test_lookups_that_are_not_tables_are_a_finding_not_a_crash(tmp_path: Path, lookups: str) -> None:
    pipeline = tmp_path / "shop.toml"
    pipeline.write_text(
        'kind = "pipeline"\nname = "shop"\ntrigger_pattern = "go_{yyyy}_{mm}_{dd}.json"\nmembers = ["orders"]\n'
        + lookups
    )

    _, findings = check_files([pipeline])

    assert "lookups" in findings[0].message
