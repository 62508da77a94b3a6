"""GCP fixtures: the GCS emulator, the built function served by functions-framework, finalize events."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from filegate.gcs_storage import GcsStore
from tests.emulators import ROOT, free_port, stop_process, wait_for_port
from tests.gcp.world import BIN, PROJECT, GcpWorld, GcsEmulator, fresh_settings, function_env
from tests.jobs_api import local_jobs_api


@pytest.fixture
def gcs_store(gcs_emulator: GcsEmulator) -> GcsStore:
    return GcsStore.from_environment({"STORAGE_EMULATOR_HOST": gcs_emulator.url, "GOOGLE_CLOUD_PROJECT": PROJECT})


@pytest.fixture(scope="session")
def function_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployable folder, built by the same script `make gcp-package` runs."""
    out = tmp_path_factory.mktemp("gcp-build")
    subprocess.run([sys.executable, str(ROOT / "gcp_function" / "build.py"), "--out", str(out)], check=True)
    return out / "gcp_function"


@pytest.fixture(scope="module")
def gcp_world(
    gcs_emulator: GcsEmulator, function_source: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GcpWorld]:
    """functions-framework serving the built function as a real HTTP server, as Cloud Run does."""
    store = GcsStore.from_environment({"STORAGE_EMULATOR_HOST": gcs_emulator.url, "GOOGLE_CLOUD_PROJECT": PROJECT})
    settings = fresh_settings(store)
    state = tmp_path_factory.mktemp("gcp-world")
    with local_jobs_api(state / "jobs") as jobs:
        port = free_port()
        log = state / "function.log"
        # PYTHONPATH puts the vendored copy of filegate ahead of the checkout installed in .venv,
        # so the test serves what would be deployed.
        env = function_env(gcs_emulator, settings, jobs.url, PYTHONPATH=str(function_source))
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    str(BIN / "functions-framework"),
                    "--target", "on_object_finalized",
                    "--source", str(function_source / "main.py"),
                    "--host", "127.0.0.1",
                    "--port", str(port),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=function_source,
            )  # fmt: skip
            try:
                wait_for_port(port, process, timeout=60)
                yield GcpWorld(f"http://127.0.0.1:{port}", settings, store, gcs_emulator.client(), jobs, log)
            finally:
                stop_process(process)
