"""The `filegate` command: operators' and developers' entry points."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from filegate.errors import FilegateError, SettingsError, TransientError
from filegate.events import AZURE, GCS, GCS_FINALIZED

# Subcommands that live in their own modules, each with `main(argv) -> int`; imported on use so
# `filegate handle` stays quick.
_MODULE_COMMANDS = {
    "local-jobs": ("filegate.local_jobs", "Run the local Databricks Jobs API stand-in"),
    "watch": ("filegate.watch", "Emulate Event Grid / Eventarc for local storage emulators"),
    "status": ("filegate.status", "Recent runs, or one run, with state and run page URL"),
    "sweep": ("filegate.sweep", "Process files that sat in the landing location too long"),
    "batches": ("filegate.batches_command", "Pipeline batches: state, members, seal revision, run"),
    "check": ("filegate.check", "Check dataset contracts (fields, rules, patterns, SQL) with file and line"),
    "demo": ("filegate.demo", "The whole flow on this machine (what `make demo` runs)"),
}


def _store_kind(payload: Any) -> str:
    first = payload[0] if isinstance(payload, list) and payload else payload
    if isinstance(first, dict) and first.get("type") == GCS_FINALIZED:
        return GCS
    return AZURE


def handle_main(argv: list[str]) -> int:
    """`filegate handle EVENT.json`: process one delivery with the current settings, print outcomes."""
    parser = argparse.ArgumentParser(prog="filegate handle", description=handle_main.__doc__)
    parser.add_argument(
        "event_file", type=Path, help="an Event Grid, CloudEvents or GCS CloudEvent JSON file ('-' for stdin)"
    )
    args = parser.parse_args(argv)
    from filegate.ingest import handle_payload
    from filegate.runtime import build_gate
    from filegate.settings import Settings

    text = sys.stdin.read() if str(args.event_file) == "-" else args.event_file.read_text(encoding="utf-8")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"filegate handle: {args.event_file} is not JSON: {exc}", file=sys.stderr)
        return 2
    try:
        outcomes = handle_payload(build_gate(_store_kind(payload), Settings.from_env()), payload)
    except SettingsError as exc:
        print(f"filegate handle: configuration error: {exc}", file=sys.stderr)
        return 2
    except TransientError as exc:
        print(f"filegate handle: transient failure, try again: {exc}", file=sys.stderr)
        return 75
    except FilegateError as exc:
        print(f"filegate handle: {exc}", file=sys.stderr)
        return 1
    for outcome in outcomes:
        print(outcome.to_json())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("azure").setLevel(logging.WARNING)
    commands = {"handle": "Process one event file (re-drive a dead-lettered event)"}
    commands.update({name: help_text for name, (_, help_text) in _MODULE_COMMANDS.items()})
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: filegate COMMAND [ARGS]\n\ncommands:")
        for name, help_text in commands.items():
            print(f"  {name:<11} {help_text}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    if command == "handle":
        return handle_main(rest)
    module = importlib.import_module(_MODULE_COMMANDS[command][0])
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    sys.exit(main())
