"""Job trigger: one Databricks run per file, however often its event arrives."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Protocol

from filegate.errors import SettingsError, TransientError
from filegate.events import Upload
from filegate.settings import Settings

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.credentials_provider import CredentialsProvider

log = logging.getLogger(__name__)

# Entra ID application id of the Azure Databricks resource: the audience of tokens for it.
AZURE_DATABRICKS_RESOURCE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"
TOKEN_PREFIX = "fg1-"  # noqa: S105 - a prefix for idempotency tokens, not a secret
# Event Grid waits 30 s for the whole handler. The SDK would retry 429/503 for 300 s by default;
# stopping earlier lets Event Grid's own retry schedule take over instead of timing out mid-call.
RETRY_TIMEOUT_SECONDS = 20
HTTP_TIMEOUT_SECONDS = 10
# Jobs API run states (`status.state`) of a run that has not ended yet.
ACTIVE_STATES = frozenset({"BLOCKED", "PENDING", "QUEUED", "RUNNING", "TERMINATING", "WAITING"})


def idempotency_token(upload: Upload) -> str:
    """Derived from the file's identity (store, account, container, path, version): <= 64 chars.

    Databricks keeps a token reserved even after its run is gone, so the same file can never
    start a second run, whether the duplicate comes from Event Grid or from the SDK's retries.
    """
    return TOKEN_PREFIX + hashlib.sha256(upload.identity.encode()).hexdigest()[:56]


def batch_id(dataset: str, business_date: date, token: str) -> str:
    """Stable per file, readable per day: the Spark job replaces stage rows by this id."""
    return f"{dataset}-{business_date:%Y%m%d}-{token.removeprefix(TOKEN_PREFIX)[:12]}"


@dataclass(frozen=True)
class TriggeredRun:
    """A run that exists for a file."""

    job_id: int
    run_id: int
    run_page_url: str


class RunTrigger(Protocol):
    """Starts (or finds) the run for a file."""

    def trigger_run(self, parameters: Mapping[str, str], token: str) -> TriggeredRun: ...


class _AzureIdentityCredentials:
    """Entra tokens for Azure Databricks from azure-identity (managed identity in Azure).

    The Databricks SDK has no managed-identity support of its own (databricks-sdk-py#164).
    """

    def auth_type(self) -> str:
        return "azure-identity"

    def __call__(self, cfg: object) -> CredentialsProvider:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()

        def headers() -> dict[str, str]:
            # azure-identity caches the token and refreshes it before it expires.
            token = credential.get_token(f"{AZURE_DATABRICKS_RESOURCE}/.default")
            return {"Authorization": f"Bearer {token.token}"}

        return headers


def create_workspace_client(settings: Settings, **config: object) -> WorkspaceClient:
    """A WorkspaceClient with the SDK's own auth chain, or managed identity when asked for."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    config.setdefault("retry_timeout_seconds", RETRY_TIMEOUT_SECONDS)
    config.setdefault("http_timeout_seconds", HTTP_TIMEOUT_SECONDS)
    if settings.databricks_auth == "azure-identity":
        config["credentials_strategy"] = _AzureIdentityCredentials()
    return WorkspaceClient(config=Config(**config))  # type: ignore[arg-type]


class DatabricksJobs:
    """`run-now` through databricks-sdk; the job is resolved by name once per process."""

    def __init__(
        self,
        settings: Settings,
        client: WorkspaceClient | None = None,
        *,
        job_id: int | None = None,
        job_name: str | None = None,
        setting: str = "FILEGATE_JOB_ID",
    ):
        """The ingest job by default; `job_name` (with `job_id` and its `setting`) picks another one."""
        self._settings = settings
        self._client = client
        self._job_id = settings.job_id if job_name is None else job_id
        self._job_name = settings.job_name if job_name is None else job_name
        self._setting = setting
        self._lock = threading.Lock()

    @property
    def client(self) -> WorkspaceClient:
        with self._lock:
            if self._client is None:
                self._client = create_workspace_client(self._settings)
            return self._client

    def job_id(self) -> int:
        if self._job_id is not None:
            return self._job_id
        from databricks.sdk.errors.base import DatabricksError

        name = self._job_name
        try:
            found = [job.job_id for job in self.client.jobs.list(name=name) if job.job_id is not None]
        except DatabricksError as exc:
            raise TransientError(f"cannot list jobs to resolve {name!r}: {exc}") from exc
        if not found:
            # Retrying is right: the bundle may be deployed after the function.
            raise TransientError(f"no Databricks job named {name!r}; deploy the bundle or set {self._setting}")
        if len(found) > 1:
            raise SettingsError(f"{len(found)} jobs are named {name!r}; set {self._setting}")
        self._job_id = found[0]
        return found[0]

    def trigger_run(self, parameters: Mapping[str, str], token: str) -> TriggeredRun:
        from databricks.sdk.errors.base import DatabricksError

        job_id = self.job_id()
        try:
            waiter = self.client.jobs.run_now(job_id=job_id, job_parameters=dict(parameters), idempotency_token=token)
        except (DatabricksError, TimeoutError, OSError) as exc:
            # Every failure is handed back for redelivery, a 4xx too (job deleted, permission
            # missing): the file is already archived and still needs its run, so the event must
            # stay alive (Event Grid's retries, then its dead-letter and `filegate handle`) rather
            # than be acknowledged and forgotten. The token makes every retry harmless.
            raise TransientError(f"run-now for job {job_id} failed after the SDK's retries: {exc}") from exc
        run_id = int(waiter.run_id)
        try:
            run_page_url = self.client.jobs.get_run(run_id).run_page_url or ""
        except (DatabricksError, TimeoutError, OSError) as exc:
            # The run exists; a missing link is not worth a redelivery.
            log.warning("run %s started but runs/get failed: %s", run_id, exc)
            run_page_url = ""
        return TriggeredRun(job_id, run_id, run_page_url)
