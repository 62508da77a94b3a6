"""`filegate check`: every kind of contract mistake found with file and line; the shipped contracts pass."""

from __future__ import annotations

import re
import tomllib
import unicodedata
from datetime import date
from pathlib import Path

import pytest

from filegate.check import check_files, main
from filegate.contracts import BUILTIN_DATASETS, load_contracts, patterns_overlap
from filegate.errors import ContractError
from filegate.pipelines import load_pipelines, parse_pipeline
from filegate.validation import match_dataset
from spark_jobs.pipeline_rules import parse_checks
from spark_jobs.pipeline_tables import parse_tables

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
    assert "7 of 7 file(s) sound" in capsys.readouterr().out  # six datasets and the e-commerce pipeline


def test_a_file_that_is_not_toml_is_reported_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.toml").write_text('name = "x"\nkeys = [\n\n"id" "x"]\n', encoding="utf-8")

    code = main(["--no-spark", str(tmp_path)])

    assert code == 1
    out, err = capsys.readouterr()
    assert "x.toml:4: is not valid TOML" in out
    # It said "6 of 6 contract(s) sound": a file that does not load was not counted at all.
    assert "1 problem(s); 7 of 8 file(s) sound" in err


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["--no-spark", str(tmp_path / "nope")]) == 2


def test_a_folder_without_contracts_is_a_usage_error_not_an_all_clear(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Contracts in a subfolder, which neither check nor the function reads: "7 of 7 file(s) sound", exit 0,
    # about the built-in datasets alone.
    (tmp_path / "sales").mkdir()
    _dataset(tmp_path / "sales", "sales", "sales_{yyyy}{mm}{dd}.csv")

    code = main(["--no-spark", str(tmp_path)])

    assert code == 2
    assert f"filegate check: {tmp_path} holds no *.toml file (subfolders are not read)" in capsys.readouterr().err


def test_the_contracts_folder_setting_is_read_as_the_function_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A trailing space (a .env file, a portal field): the function and the jobs strip it, check said
    # "no such file or folder" and exited 2.
    _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv")
    monkeypatch.setenv("FILEGATE_CONTRACTS_DIR", f"{tmp_path} ")

    code = main(["--no-spark"])

    assert code == 0
    assert "8 of 8 file(s) sound" in capsys.readouterr().out


def test_the_built_in_folder_as_the_contracts_folder_setting_is_sound(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    builtin = BUILTIN_DATASETS.parent / ".." / BUILTIN_DATASETS.parent.name / BUILTIN_DATASETS.name
    monkeypatch.setenv("FILEGATE_CONTRACTS_DIR", str(builtin))

    assert main(["--no-spark"]) == 0
    assert "7 of 7 file(s) sound" in capsys.readouterr().out


def test_two_built_in_files_naming_one_dataset_are_a_finding_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A stale copy left in a package: the loaders refuse it, and check crashed on their error.
    from filegate import check, contracts, pipelines

    for shipped in BUILTIN_DATASETS.glob("*.toml"):
        (tmp_path / shipped.name).write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "customers_old.toml").write_text((tmp_path / "customers.toml").read_text(encoding="utf-8"), "utf-8")
    for module in (check, contracts, pipelines):
        monkeypatch.setattr(module, "BUILTIN_DATASETS", tmp_path)
    monkeypatch.setattr(check, "load_contracts", contracts.load_contracts.__wrapped__)  # not the real ones, cached

    assert main(["--no-spark"]) == 1
    printed = capsys.readouterr().out
    assert f"{tmp_path / 'customers_old.toml'}:8: dataset customers is also defined in" in printed
    assert "the built-in datasets do not load: dataset customers is defined twice" in printed


def test_a_contracts_folder_setting_naming_a_file_is_refused_as_the_function_refuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Check checked the file as a contract ("8 of 8 file(s) sound"); the function and doctor refuse the folder.
    path = _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv")
    monkeypatch.setenv("FILEGATE_CONTRACTS_DIR", str(path))

    code = main(["--no-spark"])

    assert code == 2
    message = f"the contracts folder {path} does not exist or is not a folder"
    assert f"filegate check: FILEGATE_CONTRACTS_DIR: {message}" in capsys.readouterr().err
    with pytest.raises(ContractError, match=re.escape(message)):
        load_contracts(path)


def test_a_users_contract_may_replace_a_builtin_of_the_same_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    builtin = (BUILTIN / "order_tracking.toml").read_text(encoding="utf-8")
    (tmp_path / "order_tracking.toml").write_text(builtin.replace("max_bad_row_ratio", "# "), encoding="utf-8")

    assert main(["--no-spark", str(tmp_path)]) == 0


def test_a_users_contract_replacing_a_member_of_a_builtin_pipeline_must_say_which_pipeline_it_is_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The user's own orders, of other columns: its files would have waited for ecommerce's triggers. Check
    # named only the built-in ecommerce.toml (its relations to orders.customer_id), a file the user cannot edit.
    mine = _dataset(tmp_path, "orders", "orders_{yyyy}_{mm}_{dd}.csv")

    _, findings = check_files([*sorted(BUILTIN.glob("*.toml")), mine])
    code = main(["--no-spark", str(tmp_path)])
    # Kept in the pipeline: the folder declares it (its copy replaces the built-in one).
    builtin = (BUILTIN / "customers.toml").read_text(encoding="utf-8")
    mine.unlink()
    (tmp_path / "customers.toml").write_text(builtin.replace("max_length = 254", "max_length = 200"), encoding="utf-8")
    (tmp_path / "ecommerce.toml").write_text((BUILTIN / "ecommerce.toml").read_text(encoding="utf-8"), "utf-8")
    declared = main(["--no-spark", str(tmp_path)])
    # Checked on its own, the contract is loaded with its folder, which declares the pipeline.
    alone = main(["--no-spark", str(tmp_path / "customers.toml")])

    [finding] = findings
    assert (finding.path, finding.line) == (mine, 1)
    assert finding.message.startswith(
        "dataset orders replaces the built-in orders, a member of the built-in pipeline ecommerce, so its files "
        f"would wait for ecommerce's triggers and load in its batches. To keep it there, copy ecommerce.toml from "
        f"{BUILTIN} into {tmp_path} "
    )
    assert code == 1
    assert declared == 0
    assert alone == 0


def test_a_dataset_in_no_pipeline_may_not_use_what_only_the_batch_job_applies(tmp_path: Path) -> None:
    builtin = (Path(__file__).parents[1] / "filegate" / "datasets" / "customers.toml").read_text(encoding="utf-8")
    # The same contract under a name no pipeline lists: the ingest job would load it, and refuses to.
    members = (
        builtin.replace('name = "customers"', 'name = "members"', 1)
        .replace("customers_{yyyy}", "members_{yyyy}")
        .replace('target_table = "customers_target"', 'target_table = "members_target"')
    )
    (tmp_path / "members.toml").write_text(members, "utf-8")
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
    assert "child columns ['client_id'] are not all columns or derived columns of orders" in finding.message
    assert "severity must be one of HIGH, MEDIUM, LOW" in finding.message
    assert "dataset 'shipping' is not a member of shop" in finding.message
    assert "action must be one of warn, quarantine, fail" in finding.message
    assert "scoring.weights.HIGH must be a number above 0, got -5" in finding.message
    assert "scoring.weights.LOW must be a number above 0, got 'one'" in finding.message
    assert "scoring.weights: 'URGENT' is not a severity (HIGH, MEDIUM, LOW)" in finding.message


def test_a_relation_between_columns_of_other_types_is_a_finding_not_a_cast_error_in_validate(tmp_path: Path) -> None:
    # validate failed with CAST_INVALID_INPUT naming no relation; where the text cast, '05' matched 5.
    pipeline = tmp_path / "shop.toml"
    relation = '[[relations]]\nname = "{name}"\nchild = "orders"\ncolumns = [{columns}]\nparent = "{parent}"\n'
    pipeline.write_text(
        'kind = "pipeline"\nname = "shop"\ntrigger_pattern = "go_{yyyy}_{mm}_{dd}.json"\n'
        'members = ["customers", "orders", "products"]\n'
        + relation.format(name="by_quantity", columns='"quantity"', parent="customers")
        + 'parent_columns = ["customer_id"]\n'
        + relation.format(name="by_day", columns='"order_date", "order_amount"', parent="products")
        + 'parent_columns = ["created_timestamp", "price"]\n'
        + relation.format(name="order_customer", columns='"customer_id"', parent="customers")
    )

    _, findings = check_files([pipeline])

    (finding,) = findings
    assert finding.message == (
        "relations[0] by_quantity: orders.quantity is long but customers.customer_id is string; "
        "declare them of one type"
    )
    # The job still runs such a pipeline, as it did before check named it: an upgrade fails no batch.
    contracts = load_contracts()
    shop = parse_pipeline(tomllib.loads(pipeline.read_text(encoding="utf-8")), contracts, pipeline)
    assert [r.name for r in parse_checks(shop, contracts).relations] == ["by_quantity", "by_day", "order_customer"]


def test_a_relation_may_pair_derived_columns_and_their_types_are_held_to_one_kind(tmp_path: Path) -> None:
    # A key normalised at stage (`lower(id)`) is a derived column: relations refused it, though validate reads
    # derived columns from the stage and the targets as it reads the others.
    for name in ("people", "logins"):
        path = _dataset(tmp_path, name, f"{name}_{{yyyy}}_{{mm}}_{{dd}}.csv")
        path.write_text(
            path.read_text(encoding="utf-8")
            + '[[derived]]\nname = "id_key"\ntype = "string"\nexpr = "lower(id)"\n'
            + '[[derived]]\nname = "id_length"\ntype = "long"\nexpr = "CAST(length(id) AS BIGINT)"\n',
            encoding="utf-8",
        )
    relation = (
        '[[relations]]\nname = "{}"\nchild = "logins"\ncolumns = ["{}"]\nparent = "people"\nparent_columns = ["{}"]\n'
    )
    _pipeline(
        tmp_path,
        "site",
        "site",
        "site_{yyyy}_{mm}_{dd}.json",
        relation.format("login_person", "id_key", "id_key") + relation.format("by_length", "id_length", "id"),
        members='"people", "logins"',
    )

    _, findings = check_files(sorted(tmp_path.glob("*.toml")))

    (finding,) = findings
    assert finding.message == (
        "relations[1] by_length: logins.id_length is long but people.id is string; declare them of one type"
    )


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


def _dataset(folder: Path, name: str, pattern: str, kind: str = "") -> Path:
    """A sound contract of one key column, in `folder`."""
    path = folder / f"{name}.toml"
    path.write_text(
        f'{kind}name = "{name}"\nfile_pattern = "{pattern}"\nkeys = ["id"]\nsequence_by = "at"\n'
        '[[columns]]\nname = "id"\ntype = "string"\nnullable = false\n'
        '[[columns]]\nname = "at"\ntype = "timestamp"\nnullable = false\n',
        encoding="utf-8",
    )
    return path


def _pipeline(
    folder: Path, file: str, name: str, trigger: str, extra: str = "", members: str = '"sales", "refunds"'
) -> Path:
    path = folder / f"{file}.toml"
    path.write_text(
        f'kind = "pipeline"\nname = "{name}"\ntrigger_pattern = "{trigger}"\nmembers = [{members}]\n' + extra,
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("target", "held"),
    [
        ("processing_log", "the jobs' processing log"),
        ("orders_rejects", "the rejects of orders"),
        ("customers_target", "the target of customers"),
        ("sales_stage", "the stage of sales"),
        ("enriched_orders", "a derived table of pipeline ecommerce"),
    ],
)
def test_a_target_named_as_a_table_the_jobs_write_is_a_finding(tmp_path: Path, target: str, held: str) -> None:
    # `target_table = "processing_log"` passed: the MERGE wrote data rows into the log, without task or batch.
    path = _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv", kind=f'target_table = "{target}"\n')

    _, findings = check_files([path])

    assert [(f.line, f.message) for f in findings] == [
        (1, f"the target {target} is also {held}; name the target otherwise")
    ]
    assert (
        check_files([_dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv", kind='target_table = "sales_t"\n')])[1]
        == []
    )


def test_a_file_pattern_with_a_date_token_twice_is_a_finding_and_no_loader_crashes(tmp_path: Path) -> None:
    # A date range in the name: the second {yyyy} made a regex that cannot compile (re.error, a traceback, in
    # `filegate check` and for every file the function saw).
    path = _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}_to_{yyyy}{mm}{dd}.csv")

    _, findings = check_files([path])

    assert [f.message for f in findings] == ["file_pattern: file_pattern must contain {yyyy}, {mm} and {dd}, each once"]
    assert findings[0].line == 2
    with pytest.raises(ContractError, match="each once"):
        load_contracts(tmp_path)


def test_two_datasets_whose_patterns_claim_the_same_files_are_refused(tmp_path: Path) -> None:
    # A copied contract with only its name changed: every file went to the first, the copy never got one.
    _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv")
    copy = _dataset(tmp_path, "sales_v2", "sales_{yyyy}{mm}{dd}.csv")
    mine = tmp_path / "mine"
    mine.mkdir()
    # A user's dataset under another name with a built-in dataset's pattern: its files went to orders.
    orders = _dataset(mine, "my_orders", "orders_{yyyy}_{mm}_{dd}.csv")

    _, findings = check_files([tmp_path / "sales.toml", copy])
    _, builtin = check_files([orders])

    assert sorted((f.path.name, f.line) for f in findings) == [("sales.toml", 2), ("sales_v2.toml", 2)]
    assert "the file_pattern of sales_v2 (sales_{yyyy}{mm}{dd}.csv) also matches the files of sales" in str(findings)
    [finding] = builtin  # the user's file, not the built-in one they cannot change
    assert finding.path == orders
    assert "also matches the files of orders" in finding.message
    with pytest.raises(ContractError, match="also matches the files of"):
        load_contracts(tmp_path)
    with pytest.raises(ContractError, match=f"^{mine}/my_orders.toml: .* also matches the files of orders"):
        load_contracts(mine)


def test_an_allowed_entry_no_value_can_meet_is_a_finding_and_the_contract_still_loads(tmp_path: Path) -> None:
    # A decimal's 0.00001 written by TOML as 1e-05, "yes" for a boolean: every value holding them was refused.
    path = _dataset(tmp_path, "rates", "rates_{yyyy}{mm}{dd}.csv")
    path.write_text(
        path.read_text(encoding="utf-8")
        + '[[columns]]\nname = "rate"\ntype = "decimal(10,5)"\nallowed = [0.00001, 0.5, 1e-7]\n'
        + '[[columns]]\nname = "flag"\ntype = "boolean"\nallowed = ["yes", true]\n',
        encoding="utf-8",
    )

    _, findings = check_files([path])
    rate, flag = load_contracts(tmp_path)["rates"].column("rate"), load_contracts(tmp_path)["rates"].column("flag")

    assert [(f.line, f.message) for f in findings] == [
        (
            16,
            "columns.rate.allowed: '0.0000001' is not a valid decimal(10,5) (at most 5 digits before the point "
            "and 5 after it), so no value can meet it",
        ),
        (20, "columns.flag.allowed: 'yes' is not a valid boolean (true or false), so no value can meet it"),
    ]
    assert rate.allowed == ("0.00001", "0.5", "0.0000001")
    assert (rate.violation("0.00001"), rate.violation("0.50"), flag.violation("TRUE")) == (None, None, None)


def test_patterns_that_share_only_some_names_clash_and_others_do_not() -> None:
    # sales120250101.csv is a name of both: sales_a would take sales_b's files of the 1st, 11th, 21st and 31st.
    assert patterns_overlap("sales{yyyy}{mm}{dd}1.csv", "sales1{yyyy}{mm}{dd}.csv")
    assert patterns_overlap("ORDERS_{yyyy}_{mm}_{dd}.csv", "orders_{yyyy}_{mm}_{dd}.csv")  # names match in any case
    assert not patterns_overlap("orders_eu_{yyyy}_{mm}_{dd}.csv", "orders_{yyyy}_{mm}_{dd}.csv")
    assert not patterns_overlap("sales{yyyy}{mm}{dd}x.csv", "sales1{yyyy}{mm}{dd}.csv")
    assert not patterns_overlap("trk[eu]_{yyyy}_{mm}_{dd}.csv", "trk_{yyyy}_{mm}_{dd}.csv")
    # One name in either Unicode form, and in any case as the regex matches it (İ lower-cases to two letters).
    nfd = unicodedata.normalize("NFD", "expéditions_{yyyy}_{mm}_{dd}.csv")
    assert patterns_overlap(nfd, "expéditions_{yyyy}_{mm}_{dd}.csv")
    assert patterns_overlap("İade_{yyyy}{mm}{dd}.csv", "iade_{yyyy}{mm}{dd}.csv")
    assert not patterns_overlap("expeditions_{yyyy}_{mm}_{dd}.csv", "expéditions_{yyyy}_{mm}_{dd}.csv")
    # A date digit is 0 to 9: a fullwidth or superscript one is a letter no date holds.
    assert not patterns_overlap("x{yyyy}{mm}{dd}\uff11.csv", "x\uff11{yyyy}{mm}{dd}.csv")


def test_a_kind_filegate_does_not_read_is_a_finding_not_a_file_left_out(tmp_path: Path) -> None:
    # "Dataset" was skipped without a word, by `filegate check` and the loaders: every file of it unknown.
    path = _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv", kind='kind = "Dataset"\n')

    _, findings = check_files([path])

    assert [(f.line, f.message) for f in findings] == [(1, "kind must be 'dataset' or 'pipeline', not 'Dataset'")]
    with pytest.raises(ContractError, match="kind must be 'dataset' or 'pipeline', not 'Dataset'"):
        load_contracts(tmp_path)


def test_a_misspelt_key_in_a_derived_column_s_bands_is_a_finding(tmp_path: Path) -> None:
    # Passed: `mni` left the band without its lower bound, `defualt` the column without its default.
    path = _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv")
    path.write_text(
        path.read_text(encoding="utf-8") + '[[columns]]\nname = "amount"\ntype = "long"\n[[derived]]\nname = "size"\n'
        'bands = { on = "amount", defualt = "SMALL", rules = [{ label = "BIG", mni = 100 }] }\n',
        encoding="utf-8",
    )

    _, findings = check_files([path])

    assert [f.message for f in findings] == [
        "derived.size.bands.defualt: is not a bands field (a typo?)",
        "derived.size.bands.rules.0.mni: is not a band field (label, min, max; a typo?)",
    ]
    assert {f.line for f in findings} == {18}


_DAILY = '[[tables]]\nname = "daily"\ngrain = ["n"]\nsql = "SELECT count(*) AS n FROM ${batch.sales}"\n'
_BAND = '[[segments]]\ntable = "daily"\ncolumn = "size"\ndefault = "small"\nbands = [{ label = "big", BOUND }]\n'
_RELATION = '[[relations]]\nname = "refund_sale"\nchild = "refunds"\nparent = "sales"\n'


@pytest.mark.parametrize(
    ("extra", "found"),
    [
        # A misspelt array of tables: the integrity check it declares never ran.
        (
            '[[relation]]\nname = "refund_sale"\nchild = "refunds"\ncolumns = ["id"]\nparent = "sales"\n',
            "relation is not a pipeline field (a typo?)",
        ),
        # A misspelt field: the relation ran with the default action, warn, not fail.
        (
            '[[relations]]\nname = "refund_sale"\nchild = "refunds"\ncolumns = ["id"]\nparent = "sales"\n'
            'acton = "fail"\n',
            "relations[0] refund_sale: acton is not a field of relations (a typo?)",
        ),
        ('[[rules]]\nname = "big"\ndataset = "sales"\nsql = "SELECT 1"\nseverty = "LOW"\n', "severty is not a field"),
        # One table instead of an array of them: a crash (AttributeError) with no file named.
        ('[relations]\nname = "refund_sale"\n', "relations must be an array of tables ([[relations]])"),
        # The derived table was replaced whole every day instead of kept as a daily series.
        (f'{_DAILY}refesh = "as_of"\n', "tables[0] daily: refesh is not a field of tables (a typo?)"),
        # The bands were compared with the values themselves, not with their quantiles.
        (
            f'{_DAILY}[[segments]]\ntable = "daily"\ncolumn = "size"\nmetod = "quantiles"\ndefault = "small"\n'
            'bands = [{ label = "big", min = { n = 0.9 } }]\n',
            "segments[0] size: metod is not a field of segments (a typo?)",
        ),
        (
            '[[lookups]]\nname = "regions"\ncolumns = ["region"]\nrows = [["EU"]]\ndescripton = "x"\n',
            "lookups[0] regions: descripton is not a field of lookups (a typo?)",
        ),
        # The scores used the default weights.
        ("[scoring]\nweight = { HIGH = 9 }\n", "scoring: weight is not a field of scoring (a typo?)"),
        # `filegate check` crashed: AttributeError: 'str' object has no attribute 'get', no file named.
        ('[tables]\nname = "daily"\n', "tables must be an array of tables ([[tables]])"),
        (f'{_DAILY}[segments]\ntable = "daily"\n', "segments must be an array of tables ([[segments]])"),
        ("[scoring]\nweights = 5\n", "scoring.weights must be a table of severity = weight"),
        # Text for a list, read letter by letter: a grain of o, r, d, e, ... and a relation on i and d.
        (
            _DAILY.replace('["n"]', '"order_id"'),
            'table daily: grain must be a list of column names, e.g. grain = ["order_id"]',
        ),
        (f'{_RELATION}columns = "id"\n', 'refund_sale: columns must be a list of column names, e.g. columns = ["id"]'),
        # Passed; the job selects and joins the parents' columns by name, and a MERGE's on its keys.
        (f'{_RELATION}columns = ["id", "id"]\n', "relations[0] refund_sale: columns lists id twice: list it once"),
        (
            f'{_RELATION}columns = ["id", "at"]\nparent_columns = ["id", "id"]\n',
            "relations[0] refund_sale: parent_columns lists id twice: list it once",
        ),
        (_DAILY.replace('["n"]', '["n", "n"]'), "table daily: grain lists n twice: list it once"),
        # Run as the SQL `5`, or `['SELECT 1']`.
        (
            _DAILY.replace('"SELECT count(*) AS n FROM ${batch.sales}"', "5"),
            "table daily: sql must be text (in quotes)",
        ),
        ('[[rules]]\nname = "big"\ndataset = "sales"\nsql = ["SELECT 1"]\n', "rules[0] big: sql must be text"),
        # Passed; the table's comment read "5", the rule's and relation's descriptions "['x']" in the results.
        (f"{_DAILY}description = 5\n", "table daily: description must be text (in quotes), not 5"),
        (
            '[[rules]]\nname = "big"\ndataset = "sales"\nsql = "SELECT 1"\ndescription = ["x"]\n',
            "rules[0] big: description must be text (in quotes), not ['x']",
        ),
        (f"{_RELATION}description = 5\n", "relations[0] refund_sale: description must be text (in quotes), not 5"),
        (
            _DAILY + _BAND.replace("BOUND", "min = { n = 5 }") + "description = 5\n",
            "segments[0] size: description must be text (in quotes), not 5",
        ),
        (
            '[[lookups]]\nname = "regions"\ncolumns = ["region"]\nrows = [["EU"]]\ndescription = ["x"]\n',
            "lookups[0] regions: description must be text (in quotes), not ['x']",
        ),
        # Passed; the job then failed: TypeError: 'str' object cannot be interpreted as an integer.
        (
            "[params]\nsince = 2025-01-01\n",
            "params.since must be a number, text or true/false, not the TOML date 2025-01-01: write it in quotes, "
            '"2025-01-01", and read it as DATE ${param.since} in the SQL',
        ),
        # `nan` in the SQL is a column name; `IN ()` does not parse.
        ("[params]\ncap = nan\n", "params.cap must be a finite number, not nan"),
        ("[params]\nstatuses = []\n", "params.statuses must list at least one value"),
        # `n` = 'A', 'B': no SQL, found only by the Spark check or the job.
        (
            '[params]\nsizes = ["A", "B"]\n' + _DAILY + _BAND.replace("BOUND", 'equals = { n = "${param.sizes}" }'),
            "equals.n must be a number, text or true/false",
        ),
        # Crashes: AttributeError: 'list' object has no attribute 'replace', and the date's TypeError.
        (_DAILY + _BAND.replace("BOUND", "equals = { n = [1, 2] }"), "equals.n must be a number, text or true/false"),
        (
            _DAILY + _BAND.replace("BOUND", "equals = { n = 2025-01-01 }"),
            "equals.n must be a number, text or true/false",
        ),
        # true was taken as a share of 1.
        (
            '[[rules]]\nname = "big"\ndataset = "sales"\nsql = "SELECT 1"\nfail_if_ratio = true\n',
            "rules[0] big: fail_if_ratio must be a share between 0 and 1",
        ),
        # A fail rule fails past its share: at 1 it never could.
        (
            '[[rules]]\nname = "big"\ndataset = "sales"\nsql = "SELECT 1"\naction = "fail"\nfail_if_ratio = 1\n',
            'rules[0] big: action = "fail" with fail_if_ratio = 1 never fails',
        ),
        # The second segment's labels replaced the first's; the job's business date replaced a segment's labels.
        (_DAILY + _BAND + _BAND.replace('"big"', '"huge"'), "table daily: segments add size twice"),
        (
            _DAILY + _BAND.replace('"size"', '"as_of_date"'),
            "table daily: a segment adds as_of_date, which the job sets; name its column otherwise",
        ),
    ],
)
def test_a_misspelt_key_or_a_value_of_the_wrong_type_is_a_finding_not_a_guess(
    tmp_path: Path, extra: str, found: str
) -> None:
    _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv")
    _dataset(tmp_path, "refunds", "refunds_{yyyy}{mm}{dd}.csv")
    pipeline = _pipeline(
        tmp_path, "shop", "shop", "shop_{yyyy}{mm}{dd}.json", extra.replace("BOUND", "min = { n = 9 }")
    )

    _, findings = check_files([tmp_path / "sales.toml", tmp_path / "refunds.toml", pipeline])

    [finding] = findings
    assert finding.path == pipeline
    assert found in finding.message
    contracts = load_contracts(tmp_path)
    with pytest.raises(ContractError, match=re.escape(found)):
        [(parse_checks(p, contracts), parse_tables(p, contracts)) for p in load_pipelines(contracts, tmp_path).values()]


def test_relations_in_a_cycle_are_one_finding_naming_the_cycle(tmp_path: Path) -> None:
    # Passed: every batch then failed its validate with "a cycle among ['notes', 'refunds', 'sales']".
    _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv")
    _dataset(tmp_path, "refunds", "refunds_{yyyy}{mm}{dd}.csv")
    _dataset(tmp_path, "notes", "notes_{yyyy}{mm}{dd}.csv")
    relations = "".join(
        f'[[relations]]\nname = "{name}"\nchild = "{child}"\ncolumns = ["id"]\nparent = "{parent}"\n'
        for name, child, parent in (("refund_sale", "refunds", "sales"), ("sale_refund", "sales", "refunds"))
    )
    relations += '[[relations]]\nname = "note_refund"\nchild = "notes"\ncolumns = ["id"]\nparent = "refunds"\n'
    pipeline = _pipeline(tmp_path, "shop", "shop", "shop_{yyyy}{mm}{dd}.json", relations, '"sales", "refunds", "notes"')

    _, findings = check_files([*(tmp_path / f"{n}.toml" for n in ("sales", "refunds", "notes")), pipeline])

    [finding] = findings
    assert finding.path == pipeline
    assert finding.message.startswith(
        "the relations sale_refund (sales.id -> refunds.id) and refund_sale (refunds.id -> sales.id) form a cycle "
        "(sales -> refunds -> sales): the batch job checks and merges each parent before its children"
    )
    assert "notes" not in finding.message


def test_two_pipelines_of_one_name_or_one_trigger_are_refused(tmp_path: Path) -> None:
    _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv")
    _dataset(tmp_path, "refunds", "refunds_{yyyy}{mm}{dd}.csv")
    datasets = [tmp_path / "sales.toml", tmp_path / "refunds.toml"]
    one = _pipeline(tmp_path, "shop", "shop", "shop_{yyyy}{mm}{dd}.json")
    # The last file of a name replaced the first without a word; the second trigger was never matched.
    again = _pipeline(tmp_path, "shop_again", "shop", "shop_again_{yyyy}{mm}{dd}.json")

    _, named_twice = check_files([*datasets, one, again])
    with pytest.raises(ContractError, match=f"pipeline shop is defined twice: {tmp_path}/shop.toml and "):
        load_pipelines(load_contracts(tmp_path), tmp_path)
    # Each its own members now, and the same trigger.
    one = _pipeline(tmp_path, "shop", "shop", "shop_{yyyy}{mm}{dd}.json", members='"sales"')
    again = _pipeline(tmp_path, "shop_again", "outlet", "shop_{yyyy}{mm}{dd}.json", members='"refunds"')
    _, same_trigger = check_files([*datasets, one, again])

    assert [(f.path, f.message) for f in named_twice] == [(again, f"pipeline shop is also defined in {one}")]
    assert sorted(f.path.name for f in same_trigger) == ["shop.toml", "shop_again.toml"]
    assert "the trigger_pattern of outlet (shop_{yyyy}{mm}{dd}.json) also matches the triggers of shop" in str(
        same_trigger
    )
    with pytest.raises(ContractError, match="also matches the triggers of"):
        load_pipelines(load_contracts(tmp_path), tmp_path)


def test_a_derived_table_two_pipelines_build_is_named_in_the_pipeline_files(tmp_path: Path) -> None:
    # Both build into the job's one schema: the later `CREATE OR REPLACE` dropped the other's rows unseen.
    _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv")
    _dataset(tmp_path, "refunds", "refunds_{yyyy}{mm}{dd}.csv")
    datasets = [tmp_path / "sales.toml", tmp_path / "refunds.toml"]
    table = '[[tables]]\nname = "{name}"\ngrain = ["id"]\nsql = "SELECT id FROM ${{batch.{member}}}"\n'
    one = _pipeline(
        tmp_path, "shop", "shop", "shop_{yyyy}{mm}{dd}.json", table.format(name="daily", member="sales"), '"sales"'
    )
    other = _pipeline(
        tmp_path,
        "outlet",
        "outlet",
        "outlet_{yyyy}{mm}{dd}.json",
        table.format(name="returns", member="refunds") + table.format(name="daily", member="refunds"),
        '"refunds"',
    )

    _, findings = check_files([*datasets, one, other])

    assert [(f.path, f.line, f.message) for f in findings] == [
        (one, 5, "table daily is also a derived table of pipeline outlet: each would replace the other's"),
        (other, 9, "table daily is also a derived table of pipeline shop: each would replace the other's"),
    ]


def test_a_rules_unknown_input_or_parameter_is_a_finding_not_a_failed_validate(tmp_path: Path) -> None:
    # Found only by the batch's validate, once every file of it had landed, as "unknown input" with no rule named.
    _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv")
    _dataset(tmp_path, "refunds", "refunds_{yyyy}{mm}{dd}.csv")
    rule = (
        '[params]\nmax_days = 30\n[[lookups]]\nname = "reasons"\ncolumns = ["code"]\nrows = [["LATE"]]\n'
        '[[rules]]\nname = "refund_without_sale"\ndataset = "refunds"\nsql = """\n'
        "SELECT r.id FROM ${batch.refund} r LEFT ANTI JOIN ${latest.sales} s ON r.id = s.id\n"
        "JOIN ${lookup.reason} l ON true JOIN ${table.summary} t ON true JOIN ${lookup.reasons} k ON true\n"
        "WHERE r.at < ${as_of} - ${param.max_day} AND ${param.max_days} > 0 AND ${batch.sales.id}\n"
        "AND EXISTS (SELECT 1 FROM ${Batch.sales})\n"
        # Text in a literal or a comment, which the job leaves as it is: no finding.
        "AND r.note NOT LIKE '%${REFUND}%' -- ${not an input}\n"
        '"""\n'
    )
    pipeline = _pipeline(tmp_path, "shop", "shop", "shop_{yyyy}{mm}{dd}.json", rule)

    _, findings = check_files([tmp_path / "sales.toml", tmp_path / "refunds.toml", pipeline])

    [finding] = findings
    found = finding.message.split("; ")
    assert found == [
        "rules refund_without_sale: ${batch.refund}: refund is not a member of shop",
        "rules refund_without_sale: ${lookup.reason}: no lookup is named reason",
        "rules refund_without_sale: ${table.summary} is not an input a rule can read (it runs before the merge)",
        "rules refund_without_sale: ${param.max_day}: no parameter is named max_day in [params]",
        "rules refund_without_sale: ${batch.sales.id} is not an input a rule can read",
        "rules refund_without_sale: ${Batch.sales} is not an input a rule can read (inputs are written in lower "
        "case: ${batch.sales})",
    ]


@pytest.mark.parametrize(
    ("pattern", "found"),
    [
        ("landing/sales/sales_{yyyy}{mm}{dd}.csv", "file_pattern matches the file's name, not its folder"),
        ("sales_*_{yyyy}{mm}{dd}.csv", "* and ? match only themselves"),
        # Hourly files: {hh} is no placeholder, and every file was rejected, its business date "malformed".
        ("sales_{yyyy}{mm}{dd}_{hh}.csv", "{hh} matches only itself"),
        # A regex class, and a stray space copied with the name: neither is in any real file's name.
        ("sales_[0-9]_{yyyy}{mm}{dd}.csv", "[0-9] matches only itself"),
        (" sales_{yyyy}{mm}{dd}.csv", "starts or ends with whitespace, which a file's name most likely does not"),
        ("sales_{yyyy}{mm}{dd}.csv.gz", "compressed files are refused"),
    ],
)
def test_a_file_pattern_no_file_can_meet_is_a_finding(tmp_path: Path, pattern: str, found: str) -> None:
    # Each was accepted, and every file of the dataset then rejected as unknown (or as compressed).
    path = _dataset(tmp_path, "sales", pattern)

    _, findings = check_files([path])

    assert [(f.line, found in f.message) for f in findings] == [(2, True)]


def test_a_file_patterns_own_brackets_are_its_text(tmp_path: Path) -> None:
    # A name's own brackets are read as written (spark_jobs.validation reads such a path literally).
    _, findings = check_files([_dataset(tmp_path, "sales", "sales [eu] [2020-2029]_{yyyy}{mm}{dd}.csv")])

    assert findings == []


@pytest.mark.parametrize("delimiter", ["\\n", "\\r", '\\"'])
def test_a_delimiter_that_ends_a_row_or_quotes_a_field_is_a_finding(tmp_path: Path, delimiter: str) -> None:
    # A line break made every file "split by ','"; the quote mark passed the function and split quoted fields.
    path = _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv")
    path.write_text(path.read_text().replace('keys = ["id"]', f'delimiter = "{delimiter}"\nkeys = ["id"]'))

    _, findings = check_files([path])

    assert [f.message.split(":")[0] for f in findings] == ["delimiter"]
    assert "it ends a row or quotes a field" in findings[0].message


def test_a_contract_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    # Windows editors write one; tomllib refused the file at line 1, column 1, with no word of why.
    path = _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())

    contracts, findings = check_files([path])

    assert (findings, [c.name for c in contracts]) == ([], ["sales"])
    assert load_contracts(tmp_path)["sales"].file_pattern == "sales_{yyyy}{mm}{dd}.csv"


def test_a_pattern_that_starts_with_its_date_claims_no_unknown_file(tmp_path: Path) -> None:
    # Its guess had no leading text to go by: every unknown file was filed under it, with a reason about its
    # extension or date.
    _dataset(tmp_path, "sales", "{yyyy}{mm}{dd}_sales_export.csv")
    contracts = load_contracts(tmp_path)

    unknown = match_dataset(contracts, "report.xlsx")
    misnamed = match_dataset(contracts, "20250115_sales_export.txt")

    assert (unknown[0], unknown[2][0].startswith("unknown dataset: no contract matches the name 'report.xlsx'")) == (
        None,
        True,
    )
    assert misnamed[0] is None
    assert match_dataset(contracts, "20250115_sales_export.csv")[:2] == (contracts["sales"], date(2025, 1, 15))


def test_a_pipeline_on_the_built_in_trigger_is_named_and_the_built_in_one_is_not(tmp_path: Path) -> None:
    _dataset(tmp_path, "sales", "sales_{yyyy}{mm}{dd}.csv")
    _dataset(tmp_path, "refunds", "refunds_{yyyy}{mm}{dd}.csv")
    mine = _pipeline(tmp_path, "shop", "shop", "trigger_{yyyy}_{mm}_{dd}.json")

    _, findings = check_files([tmp_path / "sales.toml", tmp_path / "refunds.toml", mine, BUILTIN / "ecommerce.toml"])

    assert [(f.path, f.message.split(" (")[0]) for f in findings] == [(mine, "the trigger_pattern of shop")]


@pytest.mark.parametrize("name", ["rows_match_manifest", "bad_row_share"])
def test_a_rule_named_like_validate_s_own_reconciliation_rule_is_refused(tmp_path: Path, name: str) -> None:
    # Its rows sat beside validate's own of the name in validation_results: the shipped analytics_summary,
    # which sums bad_row_share's rows as the stage's rejects, counted the rule's failures as rejects too.
    pipeline = tmp_path / "shop.toml"
    pipeline.write_text(
        'kind = "pipeline"\nname = "shop"\ntrigger_pattern = "go_{yyyy}_{mm}_{dd}.json"\nmembers = ["orders"]\n'
        f'[[rules]]\nname = "{name}"\ndataset = "orders"\nsql = "SELECT order_id FROM ${{batch.orders}}"\n'
    )

    _, findings = check_files([pipeline])

    (finding,) = findings
    assert f"rule name '{name}' is the name of validate's own reconciliation rule; name it otherwise" in finding.message


def test_a_quarantine_named_like_a_rule_of_a_column_named_validate_is_refused(tmp_path: Path) -> None:
    # Both named a rejected row `tickets.validate.required` in tickets_rejects.rules: the stage's for an empty
    # `validate` value, and validate's for a row the rule `required` quarantined. Nobody could tell which broke.
    _dataset(tmp_path, "tickets", "tickets_{yyyy}{mm}{dd}.csv")
    contract = tmp_path / "tickets.toml"
    contract.write_text(
        contract.read_text() + '[[columns]]\nname = "validate"\ntype = "long"\nnullable = false\nmin = "0"\n'
    )
    rule = '[[rules]]\nname = "{name}"\ndataset = "tickets"\naction = "{action}"\n'
    rule += 'sql = "SELECT id FROM ${{batch.tickets}}"\n'
    pipeline = _pipeline(
        tmp_path,
        "desk",
        "desk",
        "desk_{yyyy}_{mm}_{dd}.json",
        '[[relations]]\nname = "type"\nchild = "tickets"\ncolumns = ["id"]\nparent = "tickets"\naction = "quarantine"\n'
        + rule.format(name="required", action="quarantine")
        # A warn rule quarantines nothing: its rows carry no id in the rejects.
        + rule.format(name="min", action="warn"),
        members='"tickets"',
    )

    _, findings = check_files([contract, pipeline])

    (finding,) = findings
    assert finding.path == pipeline
    assert finding.message == (
        "relations[0] type: quarantines tickets rows as tickets.validate.type, the id of column validate's type rule "
        "in tickets_rejects.rules; rename the relation (or the column validate); "
        "rules[0] required: quarantines tickets rows as tickets.validate.required, the id of column validate's "
        "required rule in tickets_rejects.rules; rename the rule (or the column validate)"
    )
