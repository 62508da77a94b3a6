"""One exit-code policy: each kind of error gets its named code and the words that say what to do."""

from __future__ import annotations

import pytest

from filegate import exits
from filegate.errors import (
    ContractError,
    FilegateError,
    LocationMissing,
    RunNotStarted,
    SettingsError,
    SourceChanged,
    TransientError,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (SettingsError("FILEGATE_LANDING is empty"), exits.CONFIG),
        (LocationMissing("container landing does not exist"), exits.CONFIG),
        (TransientError("storage answered 503"), exits.TRY_AGAIN),
        (RunNotStarted("archive/order_tracking.csv", "run-now timed out"), exits.TRY_AGAIN),
        (SourceChanged("overwritten meanwhile"), exits.FAILED),
        (ContractError("orders.toml: no columns"), exits.CONFIG),
        (FilegateError("anything else"), exits.FAILED),
    ],
)
def test_each_error_kind_gets_its_code(error: FilegateError, code: int) -> None:
    assert exits.exit_code(error) == code


def test_the_most_urgent_code_wins() -> None:
    assert exits.most_urgent([exits.TRY_AGAIN, exits.FAILED, exits.OK]) == exits.FAILED
    assert exits.most_urgent([exits.FAILED, exits.CONFIG]) == exits.CONFIG
    assert exits.most_urgent([exits.OK, exits.TRY_AGAIN]) == exits.TRY_AGAIN
    assert exits.most_urgent([]) == exits.OK


def test_the_codes_are_the_documented_ones() -> None:
    assert (exits.OK, exits.FAILED, exits.CONFIG, exits.TRY_AGAIN) == (0, 1, 2, 75)


def test_a_failure_is_reported_with_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert exits.report_failure("filegate sweep", SettingsError("no landing"), config_note=", nothing was moved") == 2
    assert exits.report_failure("filegate sweep", TransientError("503"), try_again="cannot start; try again") == 75
    assert exits.report_failure("filegate sweep", SourceChanged("overwritten")) == 1

    assert capsys.readouterr().err.splitlines() == [
        "filegate sweep: configuration error, nothing was moved: no landing",
        "filegate sweep: cannot start; try again: 503",
        "filegate sweep: overwritten",
    ]
