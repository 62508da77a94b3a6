"""Shared fixtures: real emulators started once per session, fresh containers per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from filegate.azure_storage import AzureBlobStore
from filegate.settings import Location, Settings
from tests.emulators import Azurite, run_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with run_azurite() as service:
        yield service


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
