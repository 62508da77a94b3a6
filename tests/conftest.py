"""Shared fixtures: real emulators started once per session, fresh containers per test."""

from __future__ import annotations

import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from filegate.azure_storage import AzureBlobStore
from filegate.settings import Location, Settings
from tests.emulators import Azurite, free_port, run_azurite, stop_process, wait_for_port
from tests.faults.world import World, open_azure_world, open_gcs_world
from tests.gcp.world import BIN, PROJECT, GcsEmulator


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with run_azurite() as service:
        yield service


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """gcp-storage-emulator on a free loopback port, in memory, for the whole session."""
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        # The port opens before the storage layer is ready; listing buckets answers once it is.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/storage/v1/b?project={PROJECT}", timeout=10) as answer:
            assert answer.status == 200
        yield GcsEmulator(port)
    finally:
        stop_process(process)


@pytest.fixture(params=["azure", "gcs"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The same scenario on each cloud's real store (emulated locally), behind a fault proxy."""
    if request.param == "azure":
        with open_azure_world(request.getfixturevalue("azurite"), tmp_path / "jobs") as opened:
            yield opened
    else:
        emulator = request.getfixturevalue("gcs_emulator")
        with open_gcs_world(emulator.port, tmp_path / "jobs") as opened:
            yield opened


@pytest.fixture
def azure_store(azurite: Azurite) -> AzureBlobStore:
    return AzureBlobStore.from_setting(azurite.connection_string)


@pytest.fixture
def azure_settings(azure_store: AzureBlobStore) -> Settings:
    """Settings with landing, archive and rejected containers of this test's own."""
    suffix = uuid.uuid4().hex[:8]
    landing, archive, rejected = f"landing-{suffix}", f"archive-{suffix}", f"rejected-{suffix}"
    azure_store.create_containers(landing, archive, rejected)
    return Settings(landing=Location(landing, "incoming/"), archive=Location(archive), rejected=Location(rejected))
