"""The local world's storage: Azurite from node_modules on a free loopback port, started and stopped cleanly."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filegate.errors import FilegateError

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key: the same for every Azurite install, not a secret.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class EmulatorError(FilegateError):
    """A local service did not start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 30.0) -> None:
    """Return once something listens on the port; fail early if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise EmulatorError(f"the process exited with code {process.returncode} before it listened on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise EmulatorError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Azurite:
    """A running Azurite blob service."""

    port: int

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};"
        )


@contextmanager
def run_azurite(root: Path, location: Path) -> Iterator[Azurite]:
    """Azurite's blob service from `root`/node_modules on a free port, its data in `location`."""
    binary = root / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        raise EmulatorError(f"Azurite is not installed ({binary} is missing): run `make setup`")
    location.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location)]
    command += ["--skipApiVersionCheck", "--loose", "--silent"]
    with (location / "azurite.log").open("wb") as sink:
        # Its own session: Ctrl-C reaches only the caller, which then stops Azurite in order.
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "AZURITE_ACCEPT_EULA": "true"},
            start_new_session=True,
        )
        try:
            wait_for_port(port, process)
            yield Azurite(port)
        finally:
            stop_process(process)
