"""Shared fixtures: real emulators started once per session, fresh containers per test, the local Jobs API,
the GCP function served as Cloud Run serves it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import WorkerController

from filegate.azure_storage import AzureBlobStore
from filegate.gcs_storage import GcsStore
from filegate.settings import Location, Settings
from local_world import ROOT
from local_world.emulators import (
    Azurite,
    free_port,
    run_gcs_emulator,
    run_temporary_azurite,
    stop_process,
    wait_for_port,
)
from local_world.jobs_api import LocalJobsServer
from local_world.jobs_api.recording import local_jobs_api
from tests.faults.world import World, open_azure_world, open_gcs_world
from tests.gcp.world import PROJECT, GcpWorld, GcsEmulator, fresh_settings, function_env, functions_framework

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

# A test that uses one of these starts (or shares) a real service: an emulator, a served function, a
# JVM. It is marked `services`, and `make check` leaves such tests to `make test`.
SERVICE_FIXTURES = frozenset(
    {
        "azurite",
        "gcs_emulator",
        "world",
        "azure_store",
        "azure_settings",
        "gcs_store",
        "gcp_world",
        "gcp_sweeper",
        "function_source",
        "spark",
        "lake",
    }
)


# Files whose tests share a fixture of module (or class, package) scope: under pytest-xdist each
# worker that runs one of their tests builds it, so `make test` keeps each such file on one worker
# (the batch job's two sample days take minutes) and hands out every other test on its own.
SHARED_FIXTURE_FILES = frozenset(
    {
        "tests/gcp/test_gcp_function.py",
        "tests/hostile/test_hostile.py",
        "tests/infra/test_variable_validations.py",
        "tests/local_world/test_watch.py",
        "tests/spark_jobs/test_batch_job.py",
        "tests/spark_jobs/test_batch_validate.py",
        "tests/spark_jobs/test_derived_tables.py",
        "tests/spark_jobs/test_spark_connect.py",
        "tests/test_wheel.py",
    }
)
_SHARED_SCOPES = frozenset({"module", "class", "package"})

# The tests that use a worker's own Spark session (the `spark` fixture) live here, and under
# pytest-xdist only the first JVM_WORKERS workers run them: a third worker starts no JVM of its own and
# runs the other tests (emulators, served functions, the demo and Spark Connect servers, which start
# their own). Each worker JVM loads and compiles Spark's code once, and on the suite's 2 cores that CPU
# is wall time: with two sessions instead of three they used 221 s less CPU, the third one's share of
# the tests running on warm JVMs (bench/results/test-time.md, session 42).
SPARK_TESTS = "tests/spark_jobs/"
# Files there that start a Spark Connect server of their own and never touch the worker's session.
OWN_SPARK_FILES = frozenset({"tests/spark_jobs/test_spark_connect.py"})
JVM_WORKERS = 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("spark"):
            item.add_marker(pytest.mark.services)
        if uses_the_worker_session(item) and not on_a_jvm_worker(item.nodeid):
            raise pytest.UsageError(
                f"{item.nodeid} uses the worker's Spark session: move it under {SPARK_TESTS} (make test runs those "
                "on the workers that start a JVM), or another worker starts one more"
            )
        if shares_a_fixture(item) and file_of(item.nodeid) not in SHARED_FIXTURE_FILES:
            raise pytest.UsageError(
                f"{item.nodeid} uses a module-scoped fixture: add {file_of(item.nodeid)} to SHARED_FIXTURE_FILES "
                "in tests/conftest.py, or each pytest-xdist worker builds the fixture again"
            )
    items[:] = spread(items)


def spread(items: list[pytest.Item]) -> list[pytest.Item]:
    """The order in which the workers take the tests: the Spark files that share a fixture first (the longest
    units of work), then each other Spark test followed by an even share of the tests that start no JVM.

    The JVMs keep the 2 cores busy; the tests that start none mostly wait on emulators and processes.
    Run last, as they were (ci104), they left the machine half idle for the suite's last 3 minutes; spread
    between the Spark tests, they run while the other workers' JVMs use the cores. Each file keeps its
    order.
    """
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(unit_of(item.nodeid), []).append(item)
    shared, single, light = [], [], []
    for unit, members in units.items():
        if not any(runs_spark(item) for item in members):
            light.append(members)
        else:
            (shared if unit in SHARED_FIXTURE_FILES else single).append(members)
    # The file with most tests first: in this suite also the longest (the derived tables', the batch job's).
    ordered = [item for members in sorted(shared, key=len, reverse=True) for item in members]
    for index, members in enumerate(single):
        share = light[len(light) * index // len(single) : len(light) * (index + 1) // len(single)]
        ordered += [*members, *(item for unit in share for item in unit)]
    return ordered if single else [*ordered, *(item for members in light for item in members)]


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def unit_of(nodeid: str) -> str:
    """The unit of work a worker takes whole: a file of SHARED_FIXTURE_FILES, or one test."""
    path = file_of(nodeid)
    return path if path in SHARED_FIXTURE_FILES else nodeid


def shares_a_fixture(item: pytest.Item) -> bool:
    """Whether the test uses a fixture that outlives it but not the worker (module, class or package scope)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    definitions = [definition for found in info.name2fixturedefs.values() for definition in found]
    return any(definition.scope in _SHARED_SCOPES for definition in definitions)


def on_a_jvm_worker(nodeid: str) -> bool:
    """Whether a test runs on the workers whose Spark session the `spark` fixture starts."""
    path = file_of(nodeid)
    return path.startswith(SPARK_TESTS) and path not in OWN_SPARK_FILES


def uses_the_worker_session(item: pytest.Item) -> bool:
    """Whether the test asks for the worker's own Spark session (the `spark` fixture, itself or through another)."""
    return "spark" in getattr(item, "fixturenames", ())


def runs_spark(item: pytest.Item) -> bool:
    """Whether the test runs Spark: in the worker's session, or in a server it starts (marked `spark`)."""
    return uses_the_worker_session(item) or item.get_closest_marker("spark") is not None


class _SharedFilesTogether(LoadScopeScheduling):
    """pytest-xdist's loadgroup with SHARED_FIXTURE_FILES as the groups and every other test on its own; with
    more than JVM_WORKERS workers, the tests of a worker's Spark session go to the first JVM_WORKERS only.

    pytest-xdist 3.8 marks a test's group by rewriting its node id, which pytest 9 no longer reads, so
    `xdist_group` marks are ignored; the grouping is done here, where the scheduler splits the ids.
    A JVM worker takes the next unit of Spark tests while any is left, then any unit; another worker
    takes only units that are not, and waits (its tests done) when none of those is left.
    """

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)

    def _assign_work_unit(self, node: WorkerController) -> None:
        if len(self.nodes) > JVM_WORKERS:
            jvm_workers = sorted(self.nodes, key=lambda n: n.gateway.id)[:JVM_WORKERS]
            if node in jvm_workers:
                chosen = next((unit for unit in self.workqueue if on_a_jvm_worker(unit)), next(iter(self.workqueue)))
            else:
                chosen = next((unit for unit in self.workqueue if not on_a_jvm_worker(unit)), None)
            if chosen is None:
                return
            self.workqueue.move_to_end(chosen, last=False)
        super()._assign_work_unit(node)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadScopeScheduling | None:
    if config.getoption("dist") != "loadgroup":
        return None
    # The units in the order `spread` gives, not re-sorted by how many tests each holds.
    config.option.loadscopereorder = False
    return _SharedFilesTogether(config, log)


def frozen_in_archive_tier(azurite: Azurite, container: str, path: str, data: bytes | None = None) -> BlobClient:
    """A blob of Azurite's default account put in the Archive tier, whose bytes no read gets until its tier is set
    back: uploaded so when `data` is given, else the existing blob tiered down. Its client sets the tier again."""
    from azure.storage.blob import BlobServiceClient, StandardBlobTier

    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(container, path)
    if data is None:
        blob.set_standard_blob_tier(StandardBlobTier.ARCHIVE)
    else:
        blob.upload_blob(data, standard_blob_tier=StandardBlobTier.ARCHIVE)
    return blob


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with run_temporary_azurite(ROOT) as service:
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


@pytest.fixture
def two_accounts(azurite: Azurite) -> tuple[AzureBlobStore, Settings]:
    """The local world's Azure layout: landing and rejected in one account, the archive in a second one."""
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        landing=Location(f"landing-{suffix}", "incoming/"),
        archive=Location(f"archive-{suffix}"),
        rejected=Location(f"rejected-{suffix}"),
        azure_storage=azurite.connection_string,
        azure_archive_storage=azurite.archive_connection_string,
    )
    store = AzureBlobStore.from_settings(settings)
    store.create_containers(settings.landing.container, settings.archive.container, settings.rejected.container)
    return store, settings


@pytest.fixture
def jobs_api(tmp_path: Path) -> Iterator[LocalJobsServer]:
    """A local Jobs API with a RecordingRunner (reach it as `jobs_api.runner`)."""
    with local_jobs_api(tmp_path / "jobs") as server:
        yield server


@pytest.fixture
def gcs_store(gcs_emulator: GcsEmulator) -> GcsStore:
    return GcsStore.from_environment({"STORAGE_EMULATOR_HOST": gcs_emulator.url, "GOOGLE_CLOUD_PROJECT": PROJECT})


@pytest.fixture(scope="session")
def function_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployable folder, built by the same script `make gcp-package` runs."""
    out = tmp_path_factory.mktemp("gcp-build")
    subprocess.run([sys.executable, str(ROOT / "gcp_function" / "build.py"), "--out", str(out)], check=True)
    return out / "gcp_function"


@contextlib.contextmanager
def served_function(
    target: str, emulator: GcsEmulator, function_source: Path, state: Path, **env: str
) -> Iterator[GcpWorld]:
    """functions-framework serving one entry point of the built function as a real HTTP server, as Cloud Run does."""
    store = GcsStore.from_environment({"STORAGE_EMULATOR_HOST": emulator.url, "GOOGLE_CLOUD_PROJECT": PROJECT})
    settings = fresh_settings(store)
    with local_jobs_api(state / "jobs") as jobs:
        port = free_port()
        log = state / "function.log"
        # PYTHONPATH puts the vendored copy of filegate ahead of the checkout installed in .venv, and the
        # launcher hides the checkout's import hook, so the test serves what would be deployed and nothing else.
        served_env = function_env(emulator, settings, jobs.url, PYTHONPATH=str(function_source), **env)
        with log.open("wb") as sink:
            process = subprocess.Popen(
                functions_framework(
                    "--target", target,
                    "--source", str(function_source / "main.py"),
                    "--host", "127.0.0.1",
                    "--port", str(port),
                ),
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=served_env,
                cwd=function_source,
            )  # fmt: skip
            try:
                wait_for_port(port, process, timeout=60)
                yield GcpWorld(f"http://127.0.0.1:{port}", settings, store, emulator.client(), jobs, log)
            finally:
                stop_process(process)


@pytest.fixture(scope="module")
def gcp_world(
    gcs_emulator: GcsEmulator, function_source: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GcpWorld]:
    """The event function, fed CloudEvents over HTTP as Eventarc delivers them."""
    state = tmp_path_factory.mktemp("gcp-world")
    with served_function("on_object_finalized", gcs_emulator, function_source, state) as world:
        yield world


@pytest.fixture(scope="module")
def gcp_sweeper(
    gcs_emulator: GcsEmulator, function_source: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GcpWorld]:
    """The sweep function, with buckets of its own, sweeping every landing file however young."""
    state = tmp_path_factory.mktemp("gcp-sweeper")
    with served_function(
        "on_sweep_tick", gcs_emulator, function_source, state, FILEGATE_SWEEP_OLDER_THAN_MINUTES="0"
    ) as world:
        yield world
