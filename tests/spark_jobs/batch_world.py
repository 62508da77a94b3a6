"""Sealed manifests of the e-commerce samples, and running the batch job's tasks in this process."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from filegate.contracts import Contracts, load_contracts
from filegate.pipelines import Pipeline, load_pipelines
from spark_jobs import batch_derive, batch_merge, batch_stage, batch_validate
from tests.spark_jobs.conftest import SAMPLES, Lake

ECOMMERCE = SAMPLES / "ecommerce"
DAYS = ("2025-01-15", "2025-01-16")
TASKS = (batch_stage, batch_validate, batch_merge, batch_derive)


def ecommerce() -> tuple[Pipeline, Contracts]:
    """The shipped e-commerce pipeline and the contracts it reads."""
    contracts = load_contracts()
    return load_pipelines(contracts)["ecommerce"], contracts


def batch_id(day: str, revision: int = 1) -> str:
    return f"ecommerce-{day}-r{revision}"


def seal(folder: Path, day: str, *, only: Sequence[str] = (), revision: int = 1) -> Path:
    """A sealed manifest of one sample day (`only` some members: a partial batch), in the form filegate.batches
    writes, with local paths as URIs."""
    trigger = json.loads((ECOMMERCE / f"trigger_{day.replace('-', '_')}.json").read_text())
    members = []
    for entry in trigger["files"]:
        if only and entry["dataset"] not in only:
            continue
        source = ECOMMERCE / entry["file"]
        copy = folder / day / entry["dataset"] / entry["file"]
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy)
        members.append({"dataset": entry["dataset"], "uri": str(copy), "expected_rows": entry["rows"]})
    manifest = folder / day / f"_sealed.r{revision}.json"
    document = {
        "pipeline": "ecommerce",
        "business_date": day,
        "revision": revision,
        "partial": bool(only),
        "batch_id": batch_id(day, revision),
        "members": members,
    }
    manifest.write_text(json.dumps(document, indent=2))
    return manifest


def arguments(lake: Lake, manifest: Path, extra: Sequence[str] = (), run_id: int = 1) -> list[str]:
    document = json.loads(manifest.read_text())
    return [
        "--manifest",
        str(manifest),
        "--pipeline",
        "ecommerce",
        "--batch-id",
        document["batch_id"],
        "--run-id",
        str(run_id),
        *lake.arguments(),
        *extra,
    ]


def run_batch(lake: Lake, manifest: Path, run_id: int, extra: Sequence[str] = ()) -> list[int]:
    """Run the job's tasks in order, as the job's depends_on would: a failed task ends the run."""
    codes = []
    for task in TASKS:
        code = task.main(arguments(lake, manifest, extra, run_id))
        codes.append(code)
        if code != 0:
            break
    return codes
