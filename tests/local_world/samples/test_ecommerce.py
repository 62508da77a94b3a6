"""The e-commerce generator: same seed, same bytes; `make samples` writes the committed files; the
function's verdict on each file is what its flaw list says."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import pytest

from filegate.contracts import load_contracts
from filegate.validation import validate_upload
from local_world.samples.ecommerce import MEMBERS, Volumes, generate, generate_volumes, main
from tests.local_world.samples.test_order_tracking import REPO, make_samples_arguments

SAMPLES = REPO / "data" / "samples" / "ecommerce"
DAYS = ("2025-01-15", "2025-01-16")


def test_make_samples_writes_the_committed_batch_byte_for_byte(tmp_path: Path) -> None:
    arguments = make_samples_arguments("ecommerce-samples")
    assert arguments[arguments.index("--out") + 1] == "data/samples/ecommerce"
    arguments[arguments.index("--out") + 1] = str(tmp_path)

    assert main(arguments) == 0

    committed = sorted(path.relative_to(SAMPLES) for path in SAMPLES.rglob("*") if path.is_file())
    written = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*") if path.is_file())
    assert committed == written
    for relative in committed:
        assert (tmp_path / relative).read_bytes() == (SAMPLES / relative).read_bytes(), relative


def test_another_seed_writes_another_batch(tmp_path: Path) -> None:
    generate(date(2025, 1, 15), 1, 8, tmp_path)

    assert (tmp_path / "orders_2025_01_15.csv").read_bytes() != (SAMPLES / "orders_2025_01_15.csv").read_bytes()


def _flaws() -> dict[str, dict[str, dict[str, object]]]:
    flaws: dict[str, dict[str, dict[str, object]]] = json.loads((SAMPLES / "flaws.json").read_text(encoding="utf-8"))
    return flaws


@pytest.mark.parametrize("day", DAYS)
@pytest.mark.parametrize("dataset", MEMBERS)
def test_the_function_accepts_each_file_and_counts_the_planted_column_flaws(day: str, dataset: str) -> None:
    contracts = load_contracts()
    contract = contracts[dataset]
    name = f"{dataset}_{day.replace('-', '_')}.csv"
    data = (SAMPLES / name).read_bytes()
    flaws = _flaws()[day]
    rejects = flaws["rejects"]
    assert isinstance(rejects, dict)
    # The function checks column rules on its sample (here the whole file); row checks and unique
    # keys need the job.
    column_rejects = sum(
        count
        for rule, count in rejects.items()
        if rule.split(".")[0] == dataset and rule.split(".")[1] in contract.column_names
    )

    verdict = validate_upload(name, len(data), data, contracts, max_file_bytes=10**9)

    assert verdict.ok, verdict.reasons
    rows = flaws["rows"]
    assert isinstance(rows, dict)
    assert verdict.rows_sampled == rows[dataset]
    assert verdict.bad_rows == column_rejects


def test_the_trigger_names_every_member_file_with_its_rows_and_bytes() -> None:
    for day in DAYS:
        stamp = day.replace("-", "_")
        document = json.loads((SAMPLES / f"trigger_{stamp}.json").read_text(encoding="utf-8"))

        assert document["batch_date"] == day
        assert [entry["dataset"] for entry in document["files"]] == list(MEMBERS)
        for entry in document["files"]:
            assert entry["bytes"] == (SAMPLES / entry["file"]).stat().st_size
            assert entry["rows"] == _flaws()[day]["rows"][entry["dataset"]]  # type: ignore[index]


def test_the_bad_customers_file_is_rejected_for_its_header() -> None:
    data = (SAMPLES / "bad" / "customers_2025_01_16.csv").read_bytes()

    verdict = validate_upload("customers_2025_01_16.csv", len(data), data, load_contracts(), max_file_bytes=10**9)

    assert not verdict.ok
    assert "header is missing columns: email" in verdict.reasons[0]


def test_the_planted_situations_are_all_there() -> None:
    planted = {what for day in DAYS for what in _flaws()[day]["planted"]}

    assert {
        "orphan_order",
        "invalid_contact",
        "negative_amount",
        "discontinued_product_ordered",
        "status_contradicts_quantity",
        "delivered_before_ordered",
        "exact_duplicate",
        "conflicting_duplicate",
        "multiline_description",
        "missing_from_snapshot",
        "last_login_only_change",
    } <= planted


def _data_rows(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as source:
        return sum(1 for _ in csv.reader(source)) - 1


def test_volume_days_have_the_requested_rows_in_the_issues_ratios(tmp_path: Path) -> None:
    assert main(["--orders", "200", "--days", "3", "--inventory", "25", "--out", str(tmp_path)]) == 0

    expected = {"customers": 100, "products": 10, "inventory": 25, "orders": 200, "shipping": 200}
    flaws = json.loads((tmp_path / "flaws.json").read_text(encoding="utf-8"))
    for day in ("2025-01-15", "2025-01-16", "2025-01-17"):
        stamp = day.replace("-", "_")
        trigger = json.loads((tmp_path / f"trigger_{stamp}.json").read_text(encoding="utf-8"))
        assert {entry["dataset"]: entry["rows"] for entry in trigger["files"]} == expected
        assert flaws[day]["rows"] == expected
        for dataset, rows in expected.items():
            assert _data_rows(tmp_path / f"{dataset}_{stamp}.csv") == rows, (day, dataset)
        # One flaw of each kind per 10,000 rows (begun) of a dataset.
        assert flaws[day]["rejects"] == {"customers.email.pattern": 1, "orders.order_amount.min": 1}
        assert len(flaws[day]["planted"]["delivered_before_ordered"]) == 1


def test_volume_days_change_known_customers_and_keep_every_row_valid_for_the_function(tmp_path: Path) -> None:
    generate_volumes(date(2025, 1, 15), 2, 7, tmp_path, Volumes.scaled(1_000))
    contracts = load_contracts()

    first = {row[0] for row in csv.reader((tmp_path / "customers_2025_01_15.csv").open(encoding="utf-8"))}
    second = [row[0] for row in csv.reader((tmp_path / "customers_2025_01_16.csv").open(encoding="utf-8"))][1:]
    # A fifth of the second day's customers are known ones sent again with a change.
    assert sum(1 for key in second if key in first) == len(second) // 5
    rejects = json.loads((tmp_path / "flaws.json").read_text(encoding="utf-8"))["2025-01-16"]["rejects"]
    for dataset in MEMBERS:
        name = f"{dataset}_2025_01_16.csv"
        data = (tmp_path / name).read_bytes()
        verdict = validate_upload(name, len(data), data, contracts, max_file_bytes=10**9)
        assert verdict.ok, verdict.reasons
        # The column flaws planted, and no others (the function samples the file's head).
        planted = sum(n for rule, n in rejects.items() if rule.startswith(f"{dataset}."))
        assert verdict.bad_rows <= planted, (dataset, verdict.bad_rows)


def test_the_samples_keep_to_one_or_two_days(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--days", "3", "--out", str(tmp_path)])


def test_customers_are_old_enough_on_an_early_business_date(tmp_path: Path) -> None:
    # flaws.json counts no plausible_age warning, so no customer may be younger than the contract's minimum.
    found = generate(date(2010, 1, 1), 2, 7, tmp_path)
    minimum = load_contracts()["customers"].params["min_customer_age_years"]
    assert isinstance(minimum, int)

    for day in found:
        business = date.fromisoformat(day)
        latest_birth = business.replace(year=business.year - minimum)
        with (tmp_path / f"customers_{day.replace('-', '_')}.csv").open(encoding="utf-8", newline="") as source:
            births = [row["date_of_birth"] for row in csv.DictReader(source) if row["date_of_birth"]]
        assert births
        assert max(births) <= latest_birth.isoformat(), day


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--products", "1", "--days", "6"], "--products must be at least 2"),
        (["--products", "2", "--inventory", "7"], "--inventory 7 is more than a row per product and warehouse"),
    ],
)
def test_volume_counts_the_generator_cannot_write_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    # A lone product left no product on sale on the fifth day (IndexError); more inventory rows than products
    # times warehouses wrote fewer rows than asked, without a word.
    with pytest.raises(SystemExit) as exit_info:
        main(["--orders", "10", *arguments, "--out", str(tmp_path / "out")])

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments", [["--date", "0001-01-01"], ["--date", "9999-12-31", "--days", "1", "--orders", "5"]]
)
def test_business_days_outside_the_calendar_the_files_need_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str]
) -> None:
    # Registrations reach 900 days before the business day and deliveries days after it: an OverflowError.
    with pytest.raises(SystemExit) as exit_info:
        main([*arguments, "--out", str(tmp_path / "out")])

    assert exit_info.value.code == 2
    assert "every business day from 1900-01-01 to 2999-12-31" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_out_that_is_a_file_is_said_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # It ended in a FileExistsError traceback.
    taken = tmp_path / "taken"
    taken.write_text("not a folder", encoding="utf-8")

    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(taken)])

    assert exit_info.value.code == 1
    said = capsys.readouterr().err.strip()
    assert said == f"python -m local_world ecommerce-samples: cannot write {taken}: File exists"
