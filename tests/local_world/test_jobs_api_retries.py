"""Task retries and timeouts in the local Jobs API: real task processes, the real SDK over HTTP."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from local_world.jobs_api import BundleError, load_bundle, local_variables
from local_world.jobs_api.recording import BATCH_BUNDLE

SUCCEEDS = "print('done')"


def test_the_bundles_retry_and_timeout_settings_are_read_with_the_tasks() -> None:
    [batch] = load_bundle(BATCH_BUNDLE, local_variables())

    settings = {t.task_key: (t.max_retries, t.min_retry_interval_millis, t.retry_on_timeout) for t in batch.tasks}
    assert settings == {
        "stage_members": (1, 60000, False),
        "validate": (0, 0, False),
        "merge_targets": (2, 60000, True),
        "derive_tables": (0, 0, False),
    }
    assert {t.timeout_seconds for t in batch.tasks} == {3600}
    assert batch.timeout_seconds == 18000


def test_a_retry_setting_that_is_not_a_count_is_refused(tmp_path: Path) -> None:
    bundle = _bundle(
        tmp_path,
        {"t": SUCCEEDS},
        """
        job:
          tasks: [{task_key: t, max_retries: often, spark_python_task: {python_file: ../tasks/t.py}}]
        """,
    )

    with pytest.raises(BundleError, match="max_retries of task t must be a whole number of at least -1"):
        load_bundle(bundle)


def _bundle(root: Path, scripts: dict[str, str], jobs: str) -> Path:
    """A bundle file whose jobs run the given scripts, each `../tasks/<name>.py`."""
    (root / "tasks").mkdir()
    for name, code in scripts.items():
        (root / "tasks" / f"{name}.py").write_text(textwrap.dedent(code))
    bundle = root / "bundle" / "job.yml"
    bundle.parent.mkdir()
    bundle.write_text("resources:\n  jobs:\n" + textwrap.indent(textwrap.dedent(jobs), "    "))
    return bundle
