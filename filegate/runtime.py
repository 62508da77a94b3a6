"""Assemble the core once per process from settings: the store for the cloud, the job trigger, contracts."""

from __future__ import annotations

from filegate.batches import batch_job_trigger
from filegate.contracts import load_contracts
from filegate.errors import SettingsError
from filegate.events import AZURE, GCS
from filegate.ingest import Gate
from filegate.jobs import DatabricksJobs
from filegate.pipelines import load_pipelines
from filegate.readiness import Readiness
from filegate.settings import Settings
from filegate.storage import Store


def open_store(kind: str, settings: Settings) -> Store:
    """The store for one cloud; its SDK is imported only here, when that cloud is used."""
    if kind == AZURE:
        if not settings.azure_storage:
            raise SettingsError("FILEGATE_AZURE_STORAGE is not set (a connection string or an account URL)")
        from filegate.azure_storage import AzureBlobStore

        return AzureBlobStore.from_setting(settings.azure_storage)
    if kind == GCS:
        from filegate.gcs_storage import GcsStore

        return GcsStore.from_environment()
    raise SettingsError(f"unknown store kind {kind!r}")


def build_gate(kind: str, settings: Settings, *, check: bool = True) -> Gate:
    """The gate for one cloud; with `check`, its first event checks storage and the job before moving bytes."""
    folders = [settings.contracts_dir] if settings.contracts_dir else []
    contracts = load_contracts(*folders)
    return Gate(
        settings=settings,
        store=open_store(kind, settings),
        jobs=DatabricksJobs(settings),
        contracts=contracts,
        pipelines=load_pipelines(contracts, *folders),
        batch_jobs=batch_job_trigger(settings),
        readiness=Readiness() if check else None,
    )
