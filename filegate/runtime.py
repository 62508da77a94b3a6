"""Assemble the core once per process from settings and a store: the job trigger, contracts, pipelines."""

from __future__ import annotations

from filegate.batches import batch_job_trigger
from filegate.contracts import load_contracts
from filegate.ingest import Gate
from filegate.jobs import DatabricksJobs
from filegate.pipelines import load_pipelines
from filegate.readiness import Readiness
from filegate.settings import Settings
from filegate.storage import Store


def build_gate(store: Store, settings: Settings, *, check: bool = True) -> Gate:
    """The gate over one cloud's store; with `check`, its first event checks storage and the job before moving bytes."""
    folders = [settings.contracts_dir] if settings.contracts_dir else []
    contracts = load_contracts(*folders)
    jobs = DatabricksJobs(settings)
    return Gate(
        settings=settings,
        store=store,
        jobs=jobs,
        contracts=contracts,
        pipelines=load_pipelines(contracts, *folders),
        batch_jobs=batch_job_trigger(settings, client_of=jobs),
        readiness=Readiness() if check else None,
    )
