"""Contracts: the shipped dataset, file-name matching, and what a broken contract says."""

from __future__ import annotations

from pathlib import Path

import pytest

from filegate.contracts import load_contracts, parse_contract
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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"keys": ["nope"]}, "key nope is not a column"),
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
