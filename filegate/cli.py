"""The `filegate` command: what operators run against real clouds (the local world has `python -m local_world`)."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from filegate import exits
from filegate.errors import FilegateError
from filegate.events import AZURE, GCS, event_stores

if TYPE_CHECKING:
    from filegate.ingest import Outcome

OUTCOME_LOGGER = "filegate.outcome"

# Subcommands that live in their own modules, each with `main(argv) -> int`; imported on use so
# `filegate handle` stays quick.
_MODULE_COMMANDS = {
    "status": ("filegate.status", "Recent runs, or one run, with state and run page URL"),
    "sweep": ("filegate.sweep_command", "Process files that sat in landing too long; start archived files' runs"),
    "batches": ("filegate.batches_command", "Pipeline batches: state, members, seal revision, run"),
    "check": ("filegate.check", "Check dataset contracts (fields, rules, patterns, SQL) with file and line"),
    "doctor": ("filegate.doctor", "Check settings, storage, the job and local tools; each line OK or a fix"),
    "rejected": ("filegate.files:rejected_main", "Rejected files with reasons; --reprocess a fixed one"),
    "archived": ("filegate.files:archived_main", "Archived files per dataset and date, with run and state"),
    "reconcile": ("filegate.files:reconcile_main", "Archived files without a successful run; --redrive them"),
    "backfill": ("filegate.files:backfill_main", "A folder of existing files through the gate, with a summary"),
    "deadletters": ("filegate.files:deadletters_main", "Dead-lettered events with reasons; --redrive them"),
}


def _store_kind(payload: Any) -> str:
    """The store the payload's events name: GCS when its events are all GCS ones (`google.cloud.storage.*`,
    read as `parse_event` reads the type) besides those no store names (malformed, each reported as such),
    else Azure. Not the first event's alone: a malformed first event made a GCS payload open Azure storage,
    and every good event was ignored as the other cloud's."""
    return GCS if event_stores(payload) == {GCS} else AZURE


def business_date(text: str) -> date:
    """A date argument (`--since`, `--reseal`, `--date`): argparse's error says the form and what is wrong."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        why = "" if text in str(exc) else f" ({exc})"  # Python's "Invalid isoformat string" only repeats it
        raise argparse.ArgumentTypeError(f"{text!r} is not a date, YYYY-MM-DD{why}") from exc


@contextmanager
def quiet_outcome_log() -> Iterator[None]:
    """Commands that print each outcome on stdout do not log it again on stderr (restored after)."""
    logger = logging.getLogger(OUTCOME_LOGGER)
    level = logger.level
    logger.setLevel(logging.WARNING + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_event_file(source: str) -> str:
    """The event file's text; SettingsError-free, an OSError or UnicodeError names the problem."""
    # Without a byte order mark: Windows PowerShell's `Out-File -Encoding utf8` and Notepad write one before the
    # JSON, which json.loads refuses ("Unexpected UTF-8 BOM"), and an event saved from the portal failed exit 2.
    if source == "-":
        return sys.stdin.buffer.read().decode("utf-8-sig")
    path = Path(source)
    if path.is_dir():
        raise IsADirectoryError(f"{source} is a folder; give one event file (or '-' for stdin)")
    return path.read_text(encoding="utf-8-sig")


def handle_main(argv: list[str]) -> int:
    """`filegate handle EVENT.json`: process one delivery with the current settings, print outcomes."""
    from filegate.settings import Settings, settings_help

    parser = argparse.ArgumentParser(
        prog="filegate handle",
        description=handle_main.__doc__,
        epilog=settings_help()
        + f"\n\nexit codes: {exits.OK} a file was processed, {exits.FAILED} nothing was processed or a file "
        "stays in landing unreadable, "
        f"{exits.CONFIG} configuration, {exits.TRY_AGAIN} try again (or a run Databricks skipped, which the sweep "
        "replaces)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("event_file", help="an Event Grid, CloudEvents or GCS CloudEvent JSON file ('-' for stdin)")
    args = parser.parse_args(argv)
    from filegate.ingest import IGNORED, handle_payload
    from filegate.runtime import build_gate
    from filegate.stores import open_store

    try:
        text = read_event_file(args.event_file)
    except FileNotFoundError:
        print(f"filegate handle: {args.event_file}: no such file", file=sys.stderr)
        return exits.CONFIG
    except UnicodeDecodeError:
        print(f"filegate handle: {args.event_file} is not a text file; give an event as JSON", file=sys.stderr)
        return exits.CONFIG
    except OSError as exc:
        print(f"filegate handle: cannot read {args.event_file}: {exc}", file=sys.stderr)
        return exits.CONFIG
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"filegate handle: {args.event_file} is not JSON: {exc}", file=sys.stderr)
        return exits.CONFIG
    outcomes: list[Outcome] = []
    try:
        with quiet_outcome_log():
            settings = Settings.from_env()
            gate = build_gate(open_store(_store_kind(payload), settings), settings)
            handle_payload(gate, payload, outcomes)
    except FilegateError as exc:
        # The events that ended are reported too: a file rejected beside a failed one was moved to
        # rejected/, and handled again it would only read as a duplicate.
        for outcome in outcomes:
            print(outcome.to_json())
        code = exits.report_failure("filegate handle", exc, try_again="transient failure, try again")
        # As below: a file no retry reads outranks the failure a retry may fix.
        return exits.most_urgent([code, exits.FAILED if _left_unreadable(outcomes) else exits.OK])
    for outcome in outcomes:
        print(outcome.to_json())
    unreadable, pending = _left_unreadable(outcomes), _not_run(outcomes)
    if unreadable or pending:
        # As `filegate sweep`: a setting to fix, then a file a person must look at, then a run the sweep starts.
        codes = [exits.FAILED] if unreadable else []
        codes += [exits.CONFIG if any(outcome.to_fix for outcome in pending) else exits.TRY_AGAIN] if pending else []
        return exits.most_urgent(codes)
    if all(outcome.status == IGNORED for outcome in outcomes):
        print("filegate handle: nothing was processed (see each outcome's reasons)", file=sys.stderr)
        return exits.FAILED
    return exits.OK


def _left_unreadable(outcomes: list[Outcome]) -> bool:
    """Say on stderr how many files stay in landing unreadable, if any: no retry reads them; a person makes each
    readable (its reason says how), then the sweep takes it."""
    from filegate.ingest import left_in_landing

    unreadable = [outcome for outcome in outcomes if left_in_landing(outcome)]
    if unreadable:
        print(
            f"filegate handle: {len(unreadable)} file(s) stay in landing, unreadable; see their reasons",
            file=sys.stderr,
        )
    return bool(unreadable)


def _not_run(outcomes: list[Outcome]) -> list[Outcome]:
    """Say on stderr how many files were archived without a run (`run pending`: Databricks skipped the run it
    started), if any: the file is not loaded until the sweep or `filegate reconcile --redrive` starts one."""
    from filegate.ingest import RUN_PENDING

    pending = [outcome for outcome in outcomes if outcome.status == RUN_PENDING]
    if pending:
        print(
            f"filegate handle: {len(pending)} file(s) archived without a run: Databricks skipped it; see their reasons",
            file=sys.stderr,
        )
    return pending


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("filegate")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _PipeSafeStdout:
    """sys.stdout that outlives a reader gone away (`filegate sweep | head -1`): the rest of the output goes to
    /dev/null and the command finishes its work. A BrokenPipeError stopped a sweep mid-way, with a traceback
    (files stayed in landing for the next pass), and `filegate status` read it as the Jobs API unreachable."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        # The stream's own descriptor now writes nowhere, so its buffer's last flush (at exit too) succeeds.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    stdout = sys.stdout
    sys.stdout = cast(TextIO, _PipeSafeStdout(stdout))
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Every command converges when run again: what finished stays done, and nothing runs twice.
        print("filegate: interrupted; run the same command again to go on", file=sys.stderr)
        return exits.INTERRUPTED
    finally:
        sys.stdout.flush()  # what is still buffered, through the wrapper: the interpreter's own last flush finds none
        sys.stdout = stdout


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("azure").setLevel(logging.WARNING)
    commands = {"handle": "Process one event file (re-drive a dead-lettered event)"}
    commands.update({name: help_text for name, (_, help_text) in _MODULE_COMMANDS.items()})
    if argv and argv[0] == "--version":
        print(f"filegate {_version()}")
        return exits.OK
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        known = not argv or argv[0] in ("-h", "--help")
        out = sys.stdout if known else sys.stderr
        if not known:
            print(f"filegate: unknown command {argv[0]!r}", file=out)
        print("usage: filegate COMMAND [ARGS]   (filegate COMMAND --help for its options and settings)", file=out)
        print("\ncommands:", file=out)
        for name, help_text in commands.items():
            print(f"  {name:<12} {help_text}", file=out)
        return exits.OK if known else exits.CONFIG
    command, rest = argv[0], argv[1:]
    if command == "handle":
        return handle_main(rest)
    module_name, _, function = _MODULE_COMMANDS[command][0].partition(":")
    module = importlib.import_module(module_name)
    result: int = getattr(module, function or "main")(rest)
    return result


if __name__ == "__main__":
    sys.exit(main())
