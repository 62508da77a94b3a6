"""The wheel the Databricks bundle installs: the product (`filegate`, `spark_jobs`) and nothing of the local world.

Built the way the bundle's artifact builds it (`pip wheel --no-deps`), from a copy of the checkout so
that stale build output cannot leak in, then opened and listed.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from local_world import ROOT
from tests.test_layout import imported_modules

# pip builds the wheel in an isolated environment it installs setuptools into: not a unit test.
pytestmark = pytest.mark.services

BUNDLE_JOBS = sorted((ROOT / "infra" / "databricks" / "resources").glob("*.job.yml"))
# Everything the checkout holds beside the product, copied along so that leaving it out is a real test.
_COPIED = ("pyproject.toml", "README.md", "filegate", "spark_jobs", "local_world", "tests", "bench", "gcp_function")


def copy_checkout(source: Path) -> Path:
    for name in _COPIED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copyfile(ROOT / name, source / name)
    return source


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    source = copy_checkout(tmp_path_factory.mktemp("checkout"))
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*command, "--wheel-dir", str(out), str(source)], check=True, capture_output=True, timeout=300)
    [built] = out.glob("*.whl")
    return zipfile.ZipFile(built)


def task_files() -> list[Path]:
    """The Python files the bundle's jobs run (`python_file:`), relative to each job file."""
    found = []
    for job in BUNDLE_JOBS:
        for match in re.finditer(r"python_file:\s*(\S+)", job.read_text(encoding="utf-8")):
            found.append((job.parent / match.group(1)).resolve())
    return sorted(set(found))


def reached_modules(entries: list[Path]) -> set[str]:
    """The product's modules the tasks reach through imports, lazy ones included."""
    reached: set[str] = set()
    todo = [(path, path.stem) for path in entries]
    while todo:
        path, module = todo.pop()
        for name in imported_modules(path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py"):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                candidate = ".".join(parts[:depth])
                base = ROOT.joinpath(*candidate.split("."))
                source = next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)
                if parts[0] in ("filegate", "spark_jobs") and source is not None and candidate not in reached:
                    reached.add(candidate)
                    todo.append((source, candidate))
    return reached


def test_the_wheel_holds_the_product_and_nothing_else(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    top = {name.split("/", 1)[0] for name in names}

    assert top == {"filegate", "spark_jobs", "filegate-0.1.0.dist-info"}
    assert not [name for name in names if name.endswith(".pyc") or "/tests/" in name]
    assert "filegate/datasets/order_tracking.toml" in names


def test_every_module_the_tasks_import_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    tasks = task_files()
    assert tasks, "the bundle names the tasks' python files"

    missing = [
        module
        for module in sorted(reached_modules(tasks))
        if f"{module.replace('.', '/')}.py" not in names and f"{module.replace('.', '/')}/__init__.py" not in names
    ]

    assert missing == []
    assert "spark_jobs/stage_load.py" in names


def test_the_wheel_installs_only_the_operators_command(wheel: zipfile.ZipFile) -> None:
    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel.read("filegate-0.1.0.dist-info/entry_points.txt").decode())

    assert dict(entry_points["console_scripts"]) == {"filegate": "filegate.cli:main"}


def test_a_redeploy_leaves_out_what_the_checkout_no_longer_holds(tmp_path: Path) -> None:
    # pip builds in the source tree and setuptools keeps its build/lib between builds: a contract deleted
    # (or renamed) since the last `bundle deploy` stayed in the jobs' wheel, where a stale copy of a renamed
    # dataset could even replace the new one.
    bundle = ROOT / "infra" / "databricks"
    artifact = yaml.safe_load((bundle / "databricks.yml").read_text(encoding="utf-8"))["artifacts"]["filegate"]
    assert (bundle / artifact["path"]).resolve() == ROOT, "the wheel is built at the repository root"
    source = copy_checkout(tmp_path)
    retired = source / "filegate" / "datasets" / "retired.toml"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def deploy() -> set[str]:
        subprocess.run(artifact["build"], shell=True, cwd=source, env=env, check=True, capture_output=True, timeout=300)
        [built] = (source / "dist").glob("*.whl")
        with zipfile.ZipFile(built) as archive:
            return set(archive.namelist())

    retired.write_text('name = "retired"\n', encoding="utf-8")
    assert "filegate/datasets/retired.toml" in deploy()
    retired.unlink()

    assert "filegate/datasets/retired.toml" not in deploy()


def test_the_wheel_declares_its_license_as_an_spdx_expression(wheel: zipfile.ZipFile) -> None:
    # setuptools warns since 77 that a `license = { text = ... }` table stops building on 2027-02-18, and with
    # it every `bundle deploy` and `make setup` that takes a newer setuptools.
    metadata = wheel.read("filegate-0.1.0.dist-info/METADATA").decode()

    assert "License-Expression: Apache-2.0" in metadata.splitlines()
