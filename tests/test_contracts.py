"""Contracts: the shipped dataset, file-name matching, and what a broken contract says."""

from __future__ import annotations

import unicodedata
from datetime import date
from pathlib import Path

import pytest

from filegate import contracts as contracts_module
from filegate.contracts import compile_file_pattern, load_contracts, parse_contract, same_name
from filegate.errors import ContractError


def test_order_tracking_contract_is_shipped() -> None:
    contract = load_contracts()["order_tracking"]

    assert contract.keys == ("tracking_num",)
    assert contract.sequence_by == "status_ts"
    assert contract.scd_type == 1
    assert "DELIVERED" in contract.column("status").allowed


def test_file_names_match_case_insensitively_and_carry_the_business_date() -> None:
    contracts = load_contracts()

    contract = contracts.match("ORDER_TRACKING_2024_12_31.CSV")

    assert contract is not None
    assert contract.business_date("order_tracking_2024_12_31.csv").isoformat() == "2024-12-31"
    assert contracts.match("order_tracking_2024_12_31.csv.tmp") is None


def test_a_name_matches_in_either_unicode_form_and_only_whole() -> None:
    regex = compile_file_pattern("Données_{yyyy}_{mm}_{dd}.csv")

    for name in ("données_2025_01_15.csv", unicodedata.normalize("NFD", "DONNÉES_2025_01_15.CSV")):
        found = regex.match(name)
        assert found is not None, ascii(name)
        assert (found["yyyy"], found["mm"], found["dd"]) == ("2025", "01", "15")
    # `$` matched before a final line break: a name that goes on with one is another name.
    assert regex.match("données_2025_01_15.csv\n") is None
    assert same_name(unicodedata.normalize("NFD", "Données.csv"), "données.CSV")
    assert same_name("İade.csv", "iade.csv")  # the regex's case folding, not str.lower (which makes İ two letters)
    assert not same_name("données.csv", "donnees.csv")


def test_adding_a_dataset_is_adding_a_contract_file(tmp_path: Path) -> None:
    (tmp_path / "customers.toml").write_text(
        """
name = "customers"
file_pattern = "customers_{yyyy}{mm}{dd}.csv"
keys = ["customer_id"]
sequence_by = "updated_at"
scd_type = 2
[[columns]]
name = "customer_id"
type = "long"
nullable = false
[[columns]]
name = "updated_at"
type = "timestamp"
nullable = false
""",
        encoding="utf-8",
    )

    contracts = load_contracts(tmp_path)

    assert contracts.match("customers_20240305.csv") is contracts["customers"]
    assert contracts["customers"].scd_type == 2


def test_two_built_in_files_naming_one_dataset_are_refused_and_a_users_file_still_replaces_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stale copy left in a wheel (order_tracking_old.toml beside order_tracking.toml): the later file replaced
    # the earlier without a word, as two of a user's own are refused for.
    shipped = (contracts_module.BUILTIN_DATASETS / "order_tracking.toml").read_text(encoding="utf-8")
    builtin, users = tmp_path / "datasets", tmp_path / "users"
    builtin.mkdir()
    users.mkdir()
    (builtin / "order_tracking.toml").write_text(shipped, encoding="utf-8")
    (builtin / "order_tracking_old.toml").write_text(shipped, encoding="utf-8")
    (users / "order_tracking.toml").write_text(shipped.replace("scd_type = 1", "scd_type = 2"), encoding="utf-8")
    monkeypatch.setattr(contracts_module, "BUILTIN_DATASETS", builtin)

    with pytest.raises(ContractError, match=r"dataset order_tracking is defined twice: .*order_tracking_old\.toml"):
        load_contracts.__wrapped__()
    (builtin / "order_tracking_old.toml").unlink()
    assert load_contracts.__wrapped__(users)["order_tracking"].scd_type == 2


def test_the_built_in_folder_named_again_under_another_spelling_loads_once() -> None:
    # FILEGATE_CONTRACTS_DIR=filegate/datasets: each built-in file was taken for a second definition of itself,
    # and every delivery and task refused the folder.
    from filegate.pipelines import load_pipelines

    builtin = contracts_module.BUILTIN_DATASETS
    again = builtin.parent / ".." / builtin.parent.name / builtin.name

    contracts = load_contracts.__wrapped__(again)

    assert sorted(contracts) == sorted(load_contracts())
    assert sorted(load_pipelines(contracts, again)) == sorted(load_pipelines(load_contracts()))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"keys": ["nope"]}, "key nope is not a column"),
        # Loaded; the jobs then selected, joined and merged on id twice.
        ({"keys": ["id", "id"]}, "keys lists id twice: list it once"),
        ({"sequence_by": "nope"}, "sequence_by nope is not a column"),
        (
            {
                "sequence_by": "seq",
                "columns": [{"name": "id", "type": "long", "nullable": False}, {"name": "seq", "type": "timestamp"}],
            },
            "sequence_by seq must not be nullable",
        ),
        ({"scd_type": 3}, "scd_type must be 1 or 2"),
        ({"file_pattern": "x.csv"}, "must contain {yyyy}, {mm} and {dd}"),
        ({"columns": [{"name": "id", "type": "uuid", "nullable": False}]}, "unknown type 'uuid'"),
        (
            {"columns": [{"name": "id", "type": "long", "nullable": False}, {"name": "Reason", "type": "string"}]},
            "Reason is a name the job's tables use for their own columns",
        ),
        (
            {"columns": [{"name": "id", "type": "long", "nullable": False}, {"name": "_batch_id", "type": "string"}]},
            "_batch_id is a name the job's tables use for their own columns",
        ),
        (
            {"derived": [{"name": "is_current", "type": "boolean", "expr": "id > 0"}]},
            "is_current is a name the job's tables use for their own columns",
        ),
    ],
)
def test_a_broken_contract_says_what_is_wrong(change: dict[str, object], message: str) -> None:
    document: dict[str, object] = {
        "name": "things",
        "file_pattern": "things_{yyyy}_{mm}_{dd}.csv",
        "keys": ["id"],
        "sequence_by": "id",
        "columns": [{"name": "id", "type": "long", "nullable": False}],
    }
    document.update(change)

    with pytest.raises(ContractError, match=message):
        parse_contract(document)


def test_every_shipped_and_test_contract_passes_the_checks() -> None:
    test_contracts = Path(__file__).parent / "spark_jobs" / "contracts"

    contracts = load_contracts(test_contracts)

    assert {"order_tracking", "parcel_history"} <= set(contracts)


def _things(**changes: object) -> dict[str, object]:
    document: dict[str, object] = {
        "name": "things",
        "file_pattern": "things_{yyyy}_{mm}_{dd}.csv",
        "keys": ["id"],
        "sequence_by": "id",
        "columns": [
            {"name": "id", "type": "long", "nullable": False},
            {"name": "amount", "type": "decimal(10,2)"},
            {"name": "code", "type": "string"},
        ],
    }
    document.update(changes)
    return document


def test_the_five_ecommerce_contracts_are_shipped_with_their_rules() -> None:
    contracts = load_contracts()

    customers = contracts["customers"]
    assert customers.target == "customers_target"
    assert customers.column("email").pattern is not None
    assert customers.column("email").check_text("someone@example") is not None
    assert customers.check_id(customers.checks[0]) == "customers.check.registered_not_in_future"
    assert contracts["inventory"].keys == ("product_id", "warehouse_location")
    assert contracts["products"].load == "snapshot"
    assert contracts["products"].sequence_by == "_business_date"
    assert contracts["products"].multiline_records
    assert (
        contracts["orders"].column("order_amount").check_text("0.00")
        == "order_amount value '0.00' is below the minimum 0.01"
    )
    assert contracts["shipping"].sql("x / ${param.volumetric_divisor}") == "x / 5000"
    assert contracts["orders"].column("order_id").pattern == "^ORD-[0-9]{8}$"


@pytest.mark.parametrize(
    ("column", "text", "kind"),
    [
        ({"name": "v", "type": "long", "min": 1, "max": 10}, "0", "min"),
        ({"name": "v", "type": "long", "min": 1, "max": 10}, "11", "max"),
        ({"name": "v", "type": "long", "min": 1, "max": 10}, "010", None),
        ({"name": "v", "type": "date", "min": "1900-01-01"}, "1899-12-31", "min"),
        ({"name": "v", "type": "string", "min_length": 2}, "é", "min_length"),
        ({"name": "v", "type": "string", "max_length": 2}, "éé", None),
        ({"name": "v", "type": "string", "pattern": "^[0-9]+$"}, "٣", "pattern"),
        ({"name": "v", "type": "string", "pattern": "^[0-9]+$", "nullable": False}, "", "required"),
        ({"name": "v", "type": "long", "min": 1}, "x", "type"),
        # A long holds 64 bits: 19 digits fit up to its bound, one more is out of range.
        ({"name": "v", "type": "long"}, "-9223372036854775808", None),
        ({"name": "v", "type": "long"}, "9223372036854775807", None),
        ({"name": "v", "type": "long"}, "9223372036854775808", "type"),
        # decimal(2,2) holds values between -1 and 1 only; Spark's cast turns 5.12 into NULL.
        ({"name": "v", "type": "decimal(2,2)"}, "5.12", "type"),
        ({"name": "v", "type": "decimal(2,2)"}, "0.12", None),
        ({"name": "v", "type": "decimal(2,2)"}, "-0.5", None),
        ({"name": "v", "type": "decimal(2,2)"}, "0.123", "type"),
    ],
)
def test_column_rules_name_the_rule_a_value_breaks(column: dict[str, object], text: str, kind: str | None) -> None:
    contract = parse_contract(_things(columns=[{"name": "id", "type": "long", "nullable": False}, column]))

    violation = contract.column("v").violation(text)

    assert (violation[0] if violation else None) == kind


@pytest.mark.parametrize(
    ("column", "text", "kind"),
    [
        # TOML reads 0.00 and 0.20 as the floats 0.0 and 0.2: a file's "0.20" is that value.
        ({"name": "v", "type": "double", "allowed": [0.00, 0.20]}, "0.20", None),
        ({"name": "v", "type": "double", "allowed": [0.00, 0.20]}, "0", None),
        ({"name": "v", "type": "double", "allowed": [0.00, 0.20]}, "0.3", "allowed"),
        ({"name": "v", "type": "decimal(5,2)", "allowed": [0.5, 1.25]}, "0.50", None),
        ({"name": "v", "type": "decimal(5,2)", "allowed": ["0.5", "1.25"]}, "1.2", "allowed"),
        ({"name": "v", "type": "boolean", "allowed": [True]}, "true", None),
        ({"name": "v", "type": "boolean", "allowed": [True]}, "FALSE", "allowed"),
        ({"name": "v", "type": "long", "allowed": [1, 2]}, "+2", None),
        ({"name": "v", "type": "date", "allowed": [date(2024, 1, 1)]}, "2024-01-01", None),
        ({"name": "v", "type": "timestamp", "allowed": ["2024-01-01T00:00:00Z"]}, "2024-01-01T01:00:00+01:00", None),
        # A value of the wrong type breaks the type rule, whatever the allowed values.
        ({"name": "v", "type": "long", "allowed": [1, 2]}, "one", "type"),
        # Free text keeps comparing the text itself.
        ({"name": "v", "type": "string", "allowed": [0.2]}, "0.20", "allowed"),
    ],
)
def test_allowed_values_of_a_typed_column_are_compared_by_value(
    column: dict[str, object], text: str, kind: str | None
) -> None:
    contract = parse_contract(_things(columns=[{"name": "id", "type": "long", "nullable": False}, column]))

    violation = contract.column("v").violation(text)

    assert (violation[0] if violation else None) == kind


def test_a_toml_date_bound_is_kept_as_iso_text() -> None:
    columns = [
        {"name": "id", "type": "long", "nullable": False},
        {"name": "d", "type": "date", "min": date(2000, 1, 1)},
    ]

    contract = parse_contract(_things(columns=columns))

    assert contract.column("d").min == "2000-01-01"


def test_a_check_named_like_a_rule_that_column_check_does_not_have_is_kept() -> None:
    columns = [{"name": "id", "type": "long", "nullable": False}, {"name": "check", "type": "string"}]

    contract = parse_contract(_things(columns=columns, checks=[{"name": "pattern", "expr": "id > 0"}]))

    assert [check.name for check in contract.checks] == ["pattern"]


def test_a_toml_float_bound_of_a_decimal_column_is_kept_in_plain_notation() -> None:
    # str() wrote 0.00001 as 1e-05 and 1e16 as 1e+16, no decimal's text: the contract was refused, naming a
    # bound the user never wrote.
    columns = [
        {"name": "id", "type": "long", "nullable": False},
        {"name": "rate", "type": "decimal(10,5)", "min": 0.00001},
        {"name": "total", "type": "decimal(38,2)", "max": 1e16},
    ]

    contract = parse_contract(_things(columns=columns))

    assert (contract.column("rate").min, contract.column("total").max) == ("0.00001", "10000000000000000")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"load": "full"}, "load must be one of incremental, snapshot"),
        ({"keyz": ["id"]}, "keyz: is not a contract field"),
        ({"unique_keys": "yes"}, "unique_keys: must be true or false"),
        ({"max_bad_row_ratio": "lots"}, "max_bad_row_ratio: must be a number"),
        ({"track_history": ["amount"]}, "track_history applies to scd_type = 2 only"),
        ({"load": "snapshot", "sequence_by": "_business_date"}, 'load = "snapshot" applies to scd_type = 2 only'),
        ({"scd_type": 2, "track_history": ["nope"]}, "nope is not a column"),
        ({"checks": [{"name": "c", "expr": "x > 1", "action": "drop"}]}, "action must be one of reject, warn"),
        ({"checks": [{"name": "c", "expr": "x > ${param.limit}"}]}, r"\$\{param.limit\} is not in \[params\]"),
        # Column `check`'s pattern rule and this check would both count as `things.check.pattern`.
        (
            {
                "columns": [
                    {"name": "id", "type": "long", "nullable": False},
                    {"name": "check", "type": "string", "pattern": "^[A-Z]+$"},
                ],
                "checks": [{"name": "pattern", "expr": "id > 0"}],
            },
            r"checks.pattern: shares its rule id things.check.pattern with column check's pattern rule",
        ),
        ({"derived": [{"name": "code", "type": "string", "expr": "1"}]}, "clashes with a column"),
        ({"derived": [{"name": "d", "type": "date", "expr": "_business_date"}]}, "_business_date belongs in checks"),
        ({"derived": [{"name": "d", "type": "string"}]}, "give either expr or bands"),
        ({"params": {"limit": [1, 2]}}, "params.limit: must be a number, text or true/false"),
        ({"delete_when": "x > ${param.limit}"}, r"delete_when: \$\{param.limit\} is not in \[params\]"),
        ({"delete_when": "_business_date > '2025-01-01'"}, "delete_when is computed from the row alone"),
        ({"delete_when": True}, "delete_when: must be text"),
        # The job merges by these names: an upper-case letter or a space would fail only at the merge.
        (
            {"columns": [{"name": "id", "type": "long", "nullable": False}, {"name": "AccountId", "type": "string"}]},
            "columns.AccountId: 'AccountId' must be lower-case letters",
        ),
        (
            {"columns": [{"name": "id", "type": "long", "nullable": False}, {"name": "order id", "type": "string"}]},
            "'order id' must be lower-case letters",
        ),
        ({"derived": [{"name": "Volume", "type": "long", "expr": "1"}]}, "derived.Volume: 'Volume' must be lower-case"),
        (
            {"derived": [{"name": "v", "type": "decimal(40,2)", "expr": "1"}]},
            r"derived.v: decimal\(40,2\) is not a dec",
        ),
        (
            {"derived": [{"name": "d", "bands": {"on": "amount", "rules": [{"label": "X", "max": "lots"}]}}]},
            "band X: 'lots' is not a decimal",
        ),
    ],
)
def test_contract_v2_problems_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        parse_contract(_things(**change))


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"pattern": r"^\d+$"}, r"\\d means different characters"),
        ({"min": "abc"}, "'abc' is not a string|min applies to numbers"),
        ({"min_length": -1}, "must be a whole number of characters"),
        ({"min_length": 5, "max_length": 2}, "min_length 5 is above max_length 2"),
        ({"severity": "urgent"}, "must be one of HIGH, MEDIUM, LOW"),
        ({"pattrn": "x"}, "is not a column field"),
        ({"type": "decimal(40,2)"}, r"decimal\(40,2\) is not a decimal Spark holds"),
        ({"type": "decimal(4,6)"}, r"decimal\(4,6\) is not a decimal Spark holds"),
        ({"type": "decimal(0,0)"}, r"decimal\(0,0\) is not a decimal Spark holds"),
    ],
)
def test_broken_column_rules_are_refused_when_the_contract_loads(column: dict[str, object], message: str) -> None:
    columns = [{"name": "id", "type": "long", "nullable": False}, {"name": "code", "type": "string", **column}]

    with pytest.raises(ContractError, match=message):
        parse_contract(_things(columns=columns))


def test_sequence_by_may_be_the_business_date_of_the_file() -> None:
    contract = parse_contract(_things(sequence_by="_business_date", load="snapshot", scd_type=2))

    assert contract.sequence_by == "_business_date"
