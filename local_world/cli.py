"""`python -m local_world COMMAND`: the local world's command line (the `filegate` command is for real clouds)."""

from __future__ import annotations

import importlib
import logging
import sys

PROG = "python -m local_world"

# Each command lives in its own module with `main(argv) -> int`, imported on use.
COMMANDS = {
    "demo": ("local_world.demo", "The whole flow on this machine (what `make demo` runs)"),
    "watch": ("local_world.watch", "Emulate Event Grid / Eventarc for local storage emulators"),
    "jobs-api": ("local_world.jobs_api", "Run the local Databricks Jobs API stand-in"),
    "locations": ("local_world.locations", "Create the landing, archive and rejected containers (GCS: buckets)"),
    "samples": ("local_world.samples.order_tracking", "Write deterministic order-tracking sample files"),
    "ecommerce-samples": (
        "local_world.samples.ecommerce",
        "Write a deterministic e-commerce batch (members + trigger)",
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("azure").setLevel(logging.WARNING)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        known = not argv or argv[0] in ("-h", "--help")
        out = sys.stdout if known else sys.stderr
        if not known:
            print(f"{PROG}: unknown command {argv[0]!r}", file=out)
        print(f"usage: {PROG} COMMAND [ARGS]   ({PROG} COMMAND --help for its options)", file=out)
        print("\ncommands:", file=out)
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:<18} {help_text}", file=out)
        return 0 if known else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    result: int = module.main(argv[1:])
    return result
