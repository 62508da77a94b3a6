"""Entry point of the batch job's `derive_tables` task: the pipeline's derived tables (`[[tables]]`).

The enrichment issue (17) fills this task. Until then a pipeline without `[[tables]]` gets a SKIPPED
log row saying so, and a pipeline that declares tables fails here rather than pretending to build them.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from filegate.errors import FilegateError
from spark_jobs.batch import BatchContext, run_batch_task
from spark_jobs.processing_log import SKIPPED, append_run

TASK = "derive_tables"


class DerivedTablesUnsupported(FilegateError):
    """The pipeline declares derived tables, which this release cannot build yet."""


def derive_tables(context: BatchContext) -> None:
    """Build nothing over an empty `[[tables]]`, and say so; refuse a non-empty one."""
    tables = context.pipeline.document.get("tables") or []
    if tables:
        names = ", ".join(str(t.get("name")) for t in tables if isinstance(t, dict))
        raise DerivedTablesUnsupported(
            f"pipeline {context.pipeline.name} declares derived tables ({names}), which this release cannot build"
        )
    append_run(
        context.spark,
        context.warehouse,
        context.record(TASK, status=SKIPPED, details='{"tables": 0, "why": "the pipeline declares no [[tables]]"}'),
    )
    print(f"{TASK}: pipeline {context.pipeline.name} declares no derived tables; nothing to build")


def main(argv: list[str] | None = None) -> int:
    return run_batch_task(TASK, sys.argv[1:] if argv is None else argv, derive_tables)


if __name__ == "__main__":
    sys.exit(main())
