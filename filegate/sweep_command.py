"""`filegate sweep`, the operator's command over the sweep in filegate/sweep.py (the functions run it on a timer)."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import timedelta

from filegate import exits
from filegate.errors import FilegateError
from filegate.ingest import RUN_PENDING, Outcome, left_in_landing, redrive_cannot_start
from filegate.settings import DEFAULT_SWEEP_OLDER_THAN_MINUTES, MAX_OLDER_THAN_MINUTES, Settings, settings_help
from filegate.stores import add_target_option
from filegate.sweep import FAILED, summary, sweep_all


def main(argv: list[str]) -> int:
    """`filegate sweep`: process files that sat in landing too long, and start archived files' missing runs."""
    parser = argparse.ArgumentParser(
        prog="filegate sweep",
        description=main.__doc__,
        epilog=settings_help()
        + "\n\nexit codes: 0 all done, 1 a file needs a person (say one left in landing because it cannot be read, "
        "or an archived file whose contract was removed), "
        "2 configuration, 75 files left to finish (run again)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--older-than",
        type=float,
        metavar="MINUTES",
        help="only files created at least this long ago (default FILEGATE_SWEEP_OLDER_THAN_MINUTES, else "
        f"{DEFAULT_SWEEP_OLDER_THAN_MINUTES}); keep it above Event Grid's first retries so live deliveries go first",
    )
    add_target_option(parser, "which cloud's landing location")
    parser.add_argument("--dry-run", action="store_true", help="list the due files without touching them")
    args = parser.parse_args(argv)
    if args.older_than is not None and not 0 <= args.older_than <= MAX_OLDER_THAN_MINUTES:  # nan fails too
        parser.error(f"--older-than must be a number of minutes from 0 to {MAX_OLDER_THAN_MINUTES} (a century)")
    from filegate.cli import quiet_outcome_log
    from filegate.stores import open_gate

    outcomes: list[Outcome] = []
    try:
        settings = Settings.from_env()
        gate = open_gate(args.target, settings, check=not args.dry_run)
        if not args.dry_run:
            gate.ensure_ready()
        older_than = settings.sweep_older_than_minutes if args.older_than is None else args.older_than
        with quiet_outcome_log():
            for outcome in sweep_all(gate, timedelta(minutes=older_than), dry_run=args.dry_run):
                print(outcome.to_json(), flush=True)
                outcomes.append(outcome)
    except FilegateError as exc:
        moved = ", after the files listed above" if outcomes else ", nothing was moved"
        again = (
            "stopped after the files listed above; run it again"
            if outcomes
            else "cannot start, nothing was moved; try again"
        )
        code = exits.report_failure("filegate sweep", exc, config_note=moved, try_again=again)
        # The files handled before the stop count as much as the stop: one whose run-now was denied still wants
        # its grant first, whatever stopped the pass after it.
        return _left_over(outcomes, [code])
    code = _left_over(outcomes, [])
    if code != exits.OK:
        return code
    if not outcomes:
        # Silence read as "did it run?": say what was looked at (a dry run does not look at the batches).
        batches = "" if args.dry_run else ", no batch to finish"
        print(
            f"filegate sweep: nothing to do: no landing file older than {older_than:g} min{batches}, "
            "no archived file without its run",
            file=sys.stderr,
        )
    return exits.OK


def _left_over(outcomes: list[Outcome], codes: list[int]) -> int:
    """Say on stderr what the outcomes leave to finish, and the most urgent of `codes` and theirs.

    A setting or permission to fix (no such job, run-now denied) outranks a file a person must look at,
    which outranks the ones the next sweep finishes: a scheduler retrying on 75 would retry forever.
    """
    # Left in landing unreadable, or archived with no run a re-drive starts: no retry helps, a person acts.
    needs_a_person = any(left_in_landing(outcome) or redrive_cannot_start(outcome) for outcome in outcomes)
    left = [outcome for outcome in outcomes if outcome.status in (FAILED, RUN_PENDING)]
    if not (needs_a_person or left):
        return exits.most_urgent(codes)
    print(f"filegate sweep: {summary(outcomes)}", file=sys.stderr)
    codes = [*codes, exits.TRY_AGAIN] if left else list(codes)
    codes += [exits.CONFIG] if any(outcome.to_fix for outcome in left) else []
    codes += [exits.FAILED] if needs_a_person else []
    return exits.most_urgent(codes)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    sys.exit(main(sys.argv[1:]))
