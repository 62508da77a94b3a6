"""The deployable GCP folder: self-contained, only what the function needs, and reproducible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from local_world import ROOT
from tests.gcp.world import package_python
from tests.test_layout import imported_modules

BUILD = ROOT / "gcp_function" / "build.py"


def build(out: Path) -> Path:
    subprocess.run([sys.executable, str(BUILD), "--out", str(out)], check=True, capture_output=True)
    return out


def test_the_zip_is_byte_identical_across_builds(tmp_path: Path) -> None:
    first = build(tmp_path / "one") / "gcp_function.zip"
    second = build(tmp_path / "two") / "gcp_function.zip"

    assert first.read_bytes() == second.read_bytes()


def _reached_from_main(folder: Path) -> set[str]:
    """The vendored modules main.py reaches, walked with the layout test's own import reader."""
    reached: set[str] = set()
    todo = ["main"]
    while todo:
        module = todo.pop()
        path = _source(folder, module)
        assert path is not None, f"{module} is imported but not in the folder"
        for name in imported_modules(path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py"):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                candidate = ".".join(parts[:depth])
                if parts[0] != "filegate" or candidate in reached or _source(ROOT, candidate) is None:
                    continue  # another package, seen already, or a name imported from a module
                assert _source(folder, candidate) is not None, f"{module} imports {candidate}, which is left out"
                reached.add(candidate)
                todo.append(candidate)
    return reached


def _source(folder: Path, module: str) -> Path | None:
    base = folder.joinpath(*module.split("."))
    return next((path for path in (base.with_suffix(".py"), base / "__init__.py") if path.is_file()), None)


def test_the_folder_holds_the_function_the_core_it_imports_and_nothing_else(function_source: Path) -> None:
    names = {path.relative_to(function_source).as_posix() for path in function_source.rglob("*") if path.is_file()}
    vendored = {
        name.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        for name in names
        if name.startswith("filegate/") and name.endswith(".py")
    }

    assert {"main.py", "requirements.txt", "filegate/gcs_storage.py", "filegate/datasets/order_tracking.toml"} <= names
    # Nothing main.py does not reach: the other cloud's store and the operator commands stay home.
    assert vendored == _reached_from_main(function_source)
    assert not {"filegate.azure_storage", "filegate.cli", "filegate.sweep_command", "filegate.status"} & vendored
    assert not any(name.startswith(("local_world", "spark_jobs", "tests")) or name.endswith(".pyc") for name in names)
    assert (function_source / "requirements.txt").read_text() == (
        ROOT / "gcp_function" / "requirements.txt"
    ).read_text()


def test_the_zip_holds_exactly_the_folder(function_source: Path) -> None:
    with zipfile.ZipFile(function_source.parent / "gcp_function.zip") as bundle:
        zipped = sorted(bundle.namelist())

    assert zipped == sorted(
        p.relative_to(function_source).as_posix() for p in function_source.rglob("*") if p.is_file()
    )


def test_main_imports_the_vendored_core(function_source: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(function_source)}
    probe = (
        "import main, filegate.contracts; print(filegate.__file__); print(sorted(filegate.contracts.load_contracts()))"
    )

    done = subprocess.run(
        package_python(probe), cwd=function_source, env=env, capture_output=True, text=True, check=True
    )

    location, datasets = done.stdout.splitlines()
    assert Path(location).is_relative_to(function_source)
    assert datasets == "['customers', 'inventory', 'order_tracking', 'orders', 'products', 'shipping']"


def test_the_function_logs_json_lines_also_when_the_framework_set_up_logging_first(function_source: Path) -> None:
    # With LOG_EXECUTION_ID the framework configures the root logger before importing main.py; basicConfig
    # then did nothing, and every line but the outcomes was plain text, without a severity.
    env = {**os.environ, "PYTHONPATH": str(function_source), "LOG_EXECUTION_ID": "true"}
    probe = (
        "import logging, functions_framework; "
        "functions_framework.create_app('on_object_finalized', 'main.py', 'cloudevent'); "
        "logging.getLogger('filegate.sweep').warning('sweep: stopped at its budget')"
    )

    done = subprocess.run(
        package_python(probe), cwd=function_source, env=env, capture_output=True, text=True, check=True
    )

    [line] = [line for line in done.stderr.splitlines() if "budget" in line]
    assert json.loads(line) == {
        "severity": "WARNING",
        "message": "sweep: stopped at its budget",
        "logger": "filegate.sweep",
    }
