"""The bundle's batch job run by the local Jobs API from a sealed manifest in Azurite, as the function starts it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from databricks.sdk.service.jobs import RunResultState

from filegate.azure_storage import AzureBlobStore
from local_world import ROOT
from local_world.emulators import Azurite
from local_world.jobs_api import LocalJobsServer, SourceStorage, load_bundle_files, local_table, local_variables
from local_world.jobs_api.recording import BATCH_BUNDLE, FIXTURE_BUNDLE, workspace_client
from spark_jobs.pipeline_tables import parse_tables
from tests.spark_jobs.batch_world import DAYS, ECOMMERCE, batch_id, ecommerce
from tests.spark_jobs.conftest import read_with_delta_rs

# Two members keep the run short; every member of the manifest is fetched alike.
MEMBERS = ("customers", "orders")


def archive_day(store: AzureBlobStore, container: str, day: str) -> str:
    """Archive a sample day's members and seal them as filegate.batches does; the seal's URI."""
    trigger = json.loads((ECOMMERCE / f"trigger_{day.replace('-', '_')}.json").read_text())
    members = []
    for entry in (e for e in trigger["files"] if e["dataset"] in MEMBERS):
        path = f"{entry['dataset']}/{entry['file']}"
        store.put(container, path, (ECOMMERCE / entry["file"]).read_bytes(), "text/csv", {})
        members.append(
            {
                "dataset": entry["dataset"],
                "uri": store.spark_uri(container, path),
                "container": container,
                "path": path,
                "expected_rows": entry["rows"],
            }
        )
    seal = {"pipeline": "ecommerce", "business_date": day, "revision": 1, "batch_id": batch_id(day), "members": members}
    path = f"_batches/ecommerce/{day.replace('-', '/')}/_sealed.r1.json"
    store.put(container, path, json.dumps(seal).encode(), "application/json", {})
    return store.spark_uri(container, path)


def test_the_local_jobs_api_runs_the_batch_job_over_every_member_of_a_sealed_manifest(
    azurite: Azurite, tmp_path: Path
) -> None:
    store = AzureBlobStore.from_setting(azurite.connection_string)
    container = f"archive-{uuid.uuid4().hex[:8]}"
    store.create_containers(container)
    manifest = archive_day(store, container, DAYS[0])
    jobs = load_bundle_files([FIXTURE_BUNDLE, BATCH_BUNDLE], local_variables())
    warehouse = tmp_path / "warehouse"
    storage = SourceStorage(azure_connection_string=azurite.connection_string)

    with LocalJobsServer(jobs, tmp_path / "state", storage=storage, workdir=ROOT, warehouse=warehouse) as server:
        client = workspace_client(server)
        [job] = client.jobs.list(name="filegate-batch")
        parameters = {"source_path": manifest, "pipeline": "ecommerce", "batch_id": batch_id(DAYS[0])}
        run_id = client.jobs.run_now(job_id=job.job_id, job_parameters=parameters).run_id
        server.wait_idle(900)
        run = client.jobs.get_run(run_id)

    assert [t.task_key for t in run.tasks] == ["stage_members", "validate", "merge_targets", "derive_tables"]
    assert run.state.result_state is RunResultState.SUCCESS, [t.state for t in run.tasks]
    log = read_with_delta_rs(local_table(warehouse, "processing_log")).to_pylist()
    staged = {r["dataset"]: r for r in log if r["task"] == "stage_members"}
    # Every member was fetched from the archive and staged with its archived URI as lineage.
    assert {d: (r["rows_read"], r["source_file"]) for d, r in staged.items()} == {
        entry["dataset"]: (entry["rows"], store.spark_uri(container, f"{entry['dataset']}/{entry['file']}"))
        for entry in json.loads((ECOMMERCE / "trigger_2025_01_15.json").read_text())["files"]
        if entry["dataset"] in MEMBERS
    }
    assert {r["run_id"] for r in log} == {run_id}
    # The last task built every derived table the pipeline declares, readable by the demo's light reader.
    built = {r["table_name"] for r in log if r["task"] == "derive_tables" and r["status"] == "SUCCEEDED"}
    assert built == {t.name for t in parse_tables(*ecommerce())}
    (summary,) = read_with_delta_rs(local_table(warehouse, "analytics_summary")).to_pylist()
    assert (summary["as_of_date"].isoformat(), summary["total_customers"]) == (DAYS[0], 56)
    orders = read_with_delta_rs(local_table(warehouse, "orders_target"))
    assert orders.num_rows == 72 - 3 - 1  # rejected rows out, the exact duplicate once
