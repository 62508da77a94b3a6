"""The deployable GCP folder: self-contained, only what the function needs, and reproducible."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from local_world import ROOT

BUILD = ROOT / "gcp_function" / "build.py"


def build(out: Path) -> Path:
    subprocess.run([sys.executable, str(BUILD), "--out", str(out)], check=True, capture_output=True)
    return out


def test_the_zip_is_byte_identical_across_builds(tmp_path: Path) -> None:
    first = build(tmp_path / "one") / "gcp_function.zip"
    second = build(tmp_path / "two") / "gcp_function.zip"

    assert first.read_bytes() == second.read_bytes()


def test_the_folder_holds_the_function_and_the_core_it_needs(function_source: Path) -> None:
    names = {path.relative_to(function_source).as_posix() for path in function_source.rglob("*") if path.is_file()}

    assert {"main.py", "requirements.txt", "filegate/gcs_storage.py", "filegate/datasets/order_tracking.toml"} <= names
    assert not any(
        name.startswith("filegate/local_jobs") or name.endswith((".pyc", "azure_storage.py")) for name in names
    )
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
        [sys.executable, "-c", probe], cwd=function_source, env=env, capture_output=True, text=True, check=True
    )

    location, datasets = done.stdout.splitlines()
    assert Path(location).is_relative_to(function_source)
    assert datasets == "['customers', 'inventory', 'order_tracking', 'orders', 'products', 'shipping']"
