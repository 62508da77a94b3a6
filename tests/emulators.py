"""Start real local services for tests: free loopback ports, readiness waits, clean shutdown."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filegate.emulators import AZURITE_ACCOUNT, Azurite, free_port, stop_process, wait_for_port
from filegate.emulators import run_azurite as start_azurite

__all__ = ["AZURITE_ACCOUNT", "ROOT", "Azurite", "free_port", "run_azurite", "stop_process", "wait_for_port"]

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def run_azurite() -> Iterator[Azurite]:
    """Azurite's blob service on a free port, with its data in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="azurite-") as location, start_azurite(ROOT, Path(location)) as azurite:
        yield azurite
