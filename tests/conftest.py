"""Shared fixtures: real emulators started once per session, fresh containers per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from filegate.azure_storage import AzureBlobStore
from filegate.settings import Location, Settings
from tests.emulators import Azurite, run_azurite, run_gcs_emulator
from tests.faults.world import World, open_azure_world, open_gcs_world
from tests.gcp.world import PROJECT, GcsEmulator


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with run_azurite() as service:
        yield service


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """gcp-storage-emulator on a free loopback port, in memory, for the whole session."""
    with run_gcs_emulator(PROJECT) as port:
        yield GcsEmulator(port)


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
