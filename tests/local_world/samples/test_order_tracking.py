"""The sample generator: the same seed writes the same bytes, and `make samples` writes data/samples."""

from __future__ import annotations

import io
import re
import shlex
from datetime import date
from pathlib import Path

import pytest

from local_world import ROOT
from local_world.samples.order_tracking import main, write_day

REPO = ROOT


def day_file(seed: int, rows: int = 500) -> str:
    out = io.StringIO()
    write_day(out, seed, date(2025, 3, 5), rows, 4, 0.05, 0.03)
    return out.getvalue()


def make_samples_arguments(command: str = "samples") -> list[str]:
    """A `python -m local_world` command's arguments in the Makefile's `samples` recipe, as `make samples` passes."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    recipe = re.search(r"^samples:.*\n((?:\t.+\n)+)", makefile, re.MULTILINE)
    assert recipe, "the Makefile has a `samples` target"
    for line in recipe.group(1).splitlines():
        words = shlex.split(line)
        if "local_world" in words and command in words:
            return words[words.index(command) + 1 :]
    raise AssertionError(f"`make samples` does not run `python -m local_world {command}`")


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not() -> None:
    first = day_file(seed=11)

    assert day_file(seed=11) == first
    assert day_file(seed=12) != first
    assert len(first.splitlines()) == 501


def test_make_samples_writes_data_samples_byte_for_byte(tmp_path: Path) -> None:
    arguments = make_samples_arguments()
    assert arguments[arguments.index("--out") + 1] == "data/samples"
    arguments[arguments.index("--out") + 1] = str(tmp_path)

    assert main(arguments) == 0

    committed = sorted((REPO / "data" / "samples").glob("*.csv"))
    assert [path.name for path in committed] == sorted(path.name for path in tmp_path.glob("*.csv"))
    for path in committed:
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("option", "value"),
    [("--late-share", "1"), ("--late-share", "-0.1"), ("--duplicate-share", "1.5"), ("--duplicate-share", "nan")],
)
def test_a_share_outside_its_range_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    # A late share of 1 kept the day's file waiting for a report of its new parcels that never came: a hang.
    with pytest.raises(SystemExit) as exit_info:
        main(["--rows", "5", "--date", "2025-03-03", option, value, "--out", str(tmp_path / "out")])

    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("first", "days"), [("0001-01-01", "1"), ("9999-12-31", "1"), ("2999-12-31", "2")])
def test_business_days_outside_the_calendar_the_files_need_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], first: str, days: str
) -> None:
    # The files' dates reach days before and after the business day: near year 1 or 9999 an OverflowError.
    with pytest.raises(SystemExit) as exit_info:
        main(["--rows", "5", "--date", first, "--days", days, "--out", str(tmp_path / "out")])

    assert exit_info.value.code == 2
    assert "every business day from 1900-01-01 to 2999-12-31" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_out_that_is_a_file_is_said_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # It ended in a FileExistsError traceback.
    taken = tmp_path / "taken"
    taken.write_text("not a folder", encoding="utf-8")

    with pytest.raises(SystemExit) as exit_info:
        main(["--rows", "5", "--date", "2025-03-03", "--out", str(taken)])

    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == f"python -m local_world samples: cannot write {taken}: File exists"
