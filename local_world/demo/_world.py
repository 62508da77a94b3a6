"""Starting the demo's world: Azurite and the local Jobs API on free ports, the containers, the state folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from filegate.errors import FilegateError
from filegate.settings import Location, Settings
from local_world.emulators import run_azurite

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

    from local_world.jobs_api import JobSpec, LocalJobsServer


LOCAL_TOKEN = "local-demo-token"  # noqa: S105 - the local Jobs API accepts any token
DEMO_SETTINGS = Settings(landing=Location("landing"), archive=Location("archive"), rejected=Location("rejected"))
# Failed tasks are retried as the bundle says, but this far apart instead of its minute or more: the
# demo shows a retry without waiting for it.
DEMO_RETRY_INTERVAL_MS = 100
# The local Jobs API's state folder under the demo's: `python -m local_world jobs-api` may serve it again.
JOBS_FOLDER = "jobs"
# What the demo owns under its state folder; only these are removed when it starts again.
_STATE_PARTS = ("azurite", JOBS_FOLDER, "warehouse", "watch", "late", "demo.log")


class DemoError(FilegateError):
    """Something the demo needs is missing or did not start."""


# -- the local world ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalWorld:
    """Everything the demo started: storage, the Jobs API, the function's core, a workspace client."""

    connection_string: str
    jobs: LocalJobsServer
    job: JobSpec
    client: WorkspaceClient
    settings: Settings
    warehouse: Path
    state: Path
    # The job a sealed pipeline batch runs; None when the bundle given has none (then no e-commerce scene).
    batch_job: JobSpec | None = None

    def table(self, name: str) -> Path:
        """The Delta folder of one of the jobs' tables in the demo's warehouse."""
        from local_world.jobs_api import local_table

        return local_table(self.warehouse, name)


@contextmanager
def local_world(
    state: Path,
    root: Path,
    bundle: Path | None = None,
    *,
    spark: str = "connect",
    notify: Callable[[str], None] | None = None,
) -> Iterator[LocalWorld]:
    """Start Azurite and the local Jobs API with the bundle's jobs, create the containers; stop all on exit.

    Without `bundle`, every job file of the repository's bundle (the ingest job first, then the batch job).
    """
    from filegate.azure_storage import AzureBlobStore
    from filegate.jobs import create_workspace_client
    from local_world.jobs_api import (
        LocalJobsServer,
        SourceStorage,
        bundle_job_files,
        load_bundle_files,
        local_variables,
    )

    files = [bundle] if bundle else bundle_job_files()
    for path in files:
        if not path.is_file():
            raise DemoError(f"the job bundle {path} is missing")
    warehouse = state / "warehouse"
    warehouse.mkdir(parents=True, exist_ok=True)
    jobs = load_bundle_files(files, local_variables())
    # The function triggers the bundle's first job for a standalone file, whatever it is called, and the
    # batch job, found by its name as the function finds it, for a sealed batch.
    job = jobs[0]
    batch_job = next((spec for spec in jobs[1:] if spec.name == DEMO_SETTINGS.batch_job_name), None)
    with run_azurite(root, state / "azurite") as azurite:
        connection = azurite.connection_string
        settings = replace(
            DEMO_SETTINGS,
            azure_storage=connection,
            azure_archive_storage=azurite.archive_connection_string,
            job_id=job.job_id,
            job_name=job.name,
        )
        if batch_job is not None:
            settings = replace(settings, batch_job_id=batch_job.job_id, batch_job_name=batch_job.name)
        AzureBlobStore.from_settings(settings).create_containers(
            settings.landing.container, settings.archive.container, settings.rejected.container
        )
        server = LocalJobsServer(
            jobs,
            state / JOBS_FOLDER,
            storage=SourceStorage(connection, azure_archive_connection_string=azurite.archive_connection_string),
            workdir=root,
            spark=spark,
            warehouse=warehouse,
            notify=notify,
            retry_interval_ms=DEMO_RETRY_INTERVAL_MS,
        )
        try:
            server.start()
            # Explicit host, token and auth type: a developer's own DATABRICKS_* settings must not leak in.
            client = create_workspace_client(settings, host=server.url, token=LOCAL_TOKEN, auth_type="pat")
            yield LocalWorld(connection, server, job, client, settings, warehouse, state, batch_job)
        finally:
            server.stop()


def reset_state(state: Path) -> None:
    """Remove what an earlier demo left, so every demo starts from the same empty world."""
    for part in _STATE_PARTS:
        target = state / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    state.mkdir(parents=True, exist_ok=True)
