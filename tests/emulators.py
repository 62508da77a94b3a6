"""Start real local services for tests: free loopback ports, readiness waits, clean shutdown."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filegate.emulators import AZURITE_ACCOUNT, Azurite, free_port, stop_process, wait_for_port
from filegate.emulators import run_azurite as start_azurite

__all__ = [
    "AZURITE_ACCOUNT",
    "ROOT",
    "Azurite",
    "free_port",
    "run_azurite",
    "run_gcs_emulator",
    "stop_process",
    "wait_for_port",
]

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def run_azurite() -> Iterator[Azurite]:
    """Azurite's blob service on a free port, with its data in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="azurite-") as location, start_azurite(ROOT, Path(location)) as azurite:
        yield azurite


@contextmanager
def run_gcs_emulator(project: str = "filegate-local") -> Iterator[int]:
    """gcp-storage-emulator (from the virtualenv) on a free loopback port, in memory; yields the port."""
    port = free_port()
    binary = Path(sys.executable).parent / "gcp-storage-emulator"
    command = [str(binary), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        # The port opens before the storage layer is ready; listing buckets answers once it is.
        url = f"http://127.0.0.1:{port}/storage/v1/b?project={project}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            if answer.status != 200:
                raise RuntimeError(f"the GCS emulator answered {answer.status} to its first listing")
        yield port
    finally:
        stop_process(process)
