"""The local world: emulators, the local Jobs API, the event watcher, the demo and sample data.

Everything here stands in for a cloud on this machine; the product (`filegate`, `spark_jobs`) never
imports it. Run it with `python -m local_world COMMAND` from the repository root.
"""

import sys
import threading
from pathlib import Path
from typing import TextIO

# The checkout this package lives in: node_modules, .jars, infra/ and data/ are found from here.
ROOT = Path(__file__).resolve().parents[1]

_LINES = threading.Lock()


def print_line(text: str, out: TextIO | None = None) -> None:
    """Write one whole line and flush it, safe beside other threads doing the same.

    `print` writes the text and its newline as two writes; to a pipe, another thread's line can land
    between them, and the two lines come out as one (the demo's progress and the local Jobs API's
    notifications come from several threads).
    """
    stream = sys.stdout if out is None else out
    with _LINES:
        stream.write(f"{text}\n")
        stream.flush()
