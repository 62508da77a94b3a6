"""Fault-test worlds: each real store behind a fault proxy, fresh locations, and the local Jobs API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.world import World, open_azure_world, open_gcs_world
from tests.gcp.conftest import gcs_emulator  # noqa: F401 - the session's GCS emulator fixture


@pytest.fixture(params=["azure", "gcs"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The same scenario on each cloud's real store (emulated locally)."""
    if request.param == "azure":
        with open_azure_world(request.getfixturevalue("azurite"), tmp_path / "jobs") as opened:
            yield opened
    else:
        emulator = request.getfixturevalue("gcs_emulator")
        with open_gcs_world(emulator.port, tmp_path / "jobs") as opened:
            yield opened
