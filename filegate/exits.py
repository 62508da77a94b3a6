"""One exit-code policy for every command (`filegate`, `python -m local_world`, the Spark tasks).

Schedulers and shells act on the code alone: CONFIG means fix something first (retrying changes
nothing; argparse exits 2 for bad arguments too), TRY_AGAIN means the same command may succeed later
(EX_TEMPFAIL of sysexits.h), FAILED means it ran and something needs a person's look.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from filegate.errors import (
    ContractError,
    FilegateError,
    RefusedUntilFixed,
    RunNotStarted,
    SettingsError,
    TransientError,
    UsageError,
)

OK = 0
FAILED = 1
CONFIG = 2
TRY_AGAIN = 75
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


# What a person must fix first outranks what needs a look, which outranks what a retry may finish: a
# command that met several exits by the most urgent (a retry cannot help the others).
_URGENCY = (CONFIG, FAILED, TRY_AGAIN)


def most_urgent(codes: Iterable[int]) -> int:
    """The most urgent of the codes (`_URGENCY`), OK when none is."""
    found = set(codes)
    return next((code for code in _URGENCY if code in found), OK)


def exit_code(exc: FilegateError) -> int:
    """The code the policy gives an error: settings and contracts CONFIG, transient TRY_AGAIN, anything
    else FAILED. A contract or pipeline file that does not load stops every command that reads the folder
    until someone fixes it: running again changes nothing."""
    if isinstance(exc, SettingsError | ContractError | UsageError | RefusedUntilFixed):
        return CONFIG
    if isinstance(exc, RunNotStarted) and exc.to_fix:
        return CONFIG
    if isinstance(exc, TransientError):
        return TRY_AGAIN
    return FAILED


def needs_fix(exc: FilegateError) -> bool:
    """Whether the policy says fix something first (CONFIG): what an outcome's `to_fix` records of its cause."""
    return exit_code(exc) == CONFIG


def report_failure(prog: str, exc: FilegateError, *, config_note: str = "", try_again: str = "try again") -> int:
    """Say why on stderr, in the words that tell the operator what to do, and return the error's code."""
    code = exit_code(exc)
    if isinstance(exc, UsageError):
        print(f"{prog}: {exc}", file=sys.stderr)
    elif code == CONFIG:
        print(f"{prog}: configuration error{config_note}: {exc}", file=sys.stderr)
    elif code == TRY_AGAIN:
        print(f"{prog}: {try_again}: {exc}", file=sys.stderr)
    else:
        print(f"{prog}: {exc}", file=sys.stderr)
    return code
