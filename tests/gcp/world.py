"""The GCP test world: the emulator, fresh buckets, and the environment a deployed function gets."""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from google.cloud import storage

from filegate.gcs_storage import GcsStore
from filegate.settings import Location, Settings
from local_world.emulators import gcs_emulator_client
from local_world.jobs_api import LocalJobsServer

BIN = Path(sys.executable).parent
PROJECT = "filegate-test"
# Variables the function or its SDKs read: a developer's own settings must not leak into a test.
_OWN_PREFIXES = ("FILEGATE_", "DATABRICKS_", "GOOGLE_", "STORAGE_EMULATOR_HOST", "CLOUDSDK_")
# The virtualenv holds the checkout as an editable install, whose import hook answers for any `filegate`
# module the copy on PYTHONPATH lacks: a module the build left out would load from the checkout, and the
# served function would work where the deployed one cannot start. Dropped before the function is imported.
_CHECKOUT_HIDDEN = (
    "import sys; sys.meta_path[:] = "
    "[finder for finder in sys.meta_path if not getattr(finder, '__module__', '').startswith('__editable__')]; "
)


def package_python(code: str) -> list[str]:
    """`python -c code` that imports `filegate` from PYTHONPATH alone, as the deployed function does."""
    return [sys.executable, "-c", _CHECKOUT_HIDDEN + code]


def functions_framework(*arguments: str) -> list[str]:
    """The `functions-framework` command, the checkout hidden as in `package_python`."""
    runs = "import runpy; runpy.run_module('functions_framework', run_name='__main__')"
    return [*package_python(runs), *arguments]


@dataclass(frozen=True)
class GcsEmulator:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> storage.Client:
        """A plain google-cloud-storage client: what a user uploading files would use."""
        client: storage.Client = gcs_emulator_client(self.url, PROJECT)
        return client


def fresh_settings(store: GcsStore) -> Settings:
    """Landing, archive and rejected buckets of their own (GCS triggers filter by bucket only)."""
    suffix = uuid.uuid4().hex[:10]
    landing, archive, rejected = f"landing-{suffix}", f"archive-{suffix}", f"rejected-{suffix}"
    store.create_buckets(landing, archive, rejected)
    return Settings(landing=Location(landing), archive=Location(archive), rejected=Location(rejected))


def function_env(emulator: GcsEmulator, settings: Settings, jobs_url: str, **extra: str) -> dict[str, str]:
    """The environment a deployed function gets, pointed at the emulator and the local Jobs API."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(_OWN_PREFIXES)}
    env.update(
        STORAGE_EMULATOR_HOST=emulator.url,
        GOOGLE_CLOUD_PROJECT=PROJECT,
        FILEGATE_LANDING=str(settings.landing),
        FILEGATE_ARCHIVE=str(settings.archive),
        FILEGATE_REJECTED=str(settings.rejected),
        DATABRICKS_HOST=jobs_url,
        DATABRICKS_TOKEN="local-test-token",  # the local Jobs API accepts any token
        **extra,
    )
    return env


@dataclass(frozen=True)
class GcpWorld:
    """One served function with its buckets, the emulator and the Jobs API it talks to."""

    url: str
    settings: Settings
    store: GcsStore
    client: storage.Client
    jobs: LocalJobsServer
    log: Path

    def runs(self) -> list[dict[str, str]]:
        """Job parameters of every run started so far, oldest first."""
        runs = sorted(self.jobs.runs(), key=lambda run: run["run_id"])
        return [{p["name"]: p["value"] for p in run["job_parameters"]} | {"run_id": run["run_id"]} for run in runs]

    def run_now_tokens(self) -> list[str]:
        return [request.body.get("idempotency_token", "") for request in self.jobs.requests("run-now")]
