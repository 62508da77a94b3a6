"""A dataset added with FILEGATE_CONTRACTS_DIR reaches the Spark tasks through the same setting."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from filegate.contracts import load_contracts
from spark_jobs.task import TaskArgumentError, find_contract, parse_arguments

USER_CONTRACT = Path(__file__).parent / "contracts" / "parcel_history.toml"
ARGUMENTS = [
    "--source-path",
    "/tmp/f.csv",
    "--dataset",
    "parcel_history",
    "--batch-id",
    "b-1",
    "--catalog",
    "c",
    "--schema",
    "w",
]


def test_the_task_reads_the_contracts_folder_the_function_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(USER_CONTRACT, tmp_path / USER_CONTRACT.name)
    monkeypatch.setenv("FILEGATE_CONTRACTS_DIR", str(tmp_path))
    # The function side: the gate's contracts come from the same folder.
    assert "parcel_history" in load_contracts(tmp_path)

    contract = find_contract(parse_arguments(ARGUMENTS, "test"))

    assert contract.name == "parcel_history"


def test_without_the_setting_the_task_names_how_to_bring_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FILEGATE_CONTRACTS_DIR", raising=False)

    with pytest.raises(TaskArgumentError, match=r"FILEGATE_CONTRACTS_DIR.*into the wheel"):
        find_contract(parse_arguments(ARGUMENTS, "test"))
