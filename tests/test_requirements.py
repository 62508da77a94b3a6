"""Each function's requirements file covers every third-party import of the code deployed with it.

The suite runs in one virtualenv that holds everything, so an import test alone cannot show that a
deployed function would find its packages: this reads the imports of the deployed files and checks
each against the installed distributions that the requirements file pulls in.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

from local_world import ROOT


def _gcp_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gcp_build", ROOT / "gcp_function" / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# What each function deploys of the core: the modules its entry point reaches, as the GCP build finds them.
NEEDED_MODULES = _gcp_build().needed_modules
# Imports on a path the other cloud never takes, each with the reason.
OTHER_CLOUD_ONLY: dict[str, dict[str, str]] = {
    "gcp": {
        "azure.identity": "jobs.py, only with FILEGATE_DATABRICKS_AUTH=azure-identity, an Azure setting",
        "azure.core.exceptions": "jobs.py, azure-identity's errors, only with FILEGATE_DATABRICKS_AUTH=azure-identity",
    },
    "azure": {},
}
# Pinned names: `name==version`.
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==")


def pinned_names(requirements: Path) -> set[str]:
    """Normalised names of the distributions the file pins itself."""
    pins = (_PIN.match(line.strip()) for line in requirements.read_text().splitlines())
    return {_normalise(metadata.distribution(pin[1]).metadata["Name"]) for pin in pins if pin}


def requirement_closure(requirements: Path) -> set[str]:
    """Normalised names of the pinned distributions and everything they require, as installed here."""
    pins = (_PIN.match(line.strip()) for line in requirements.read_text().splitlines())
    pending = [pin[1] for pin in pins if pin]
    found: set[str] = set()
    while pending:
        name = metadata.distribution(pending.pop()).metadata["Name"]
        key = _normalise(name)
        if key in found:
            continue
        found.add(key)
        for requirement in metadata.requires(name) or []:
            if "extra ==" in requirement:
                continue  # optional extras are not installed by the bare requirement
            if ";" in requirement and not _marker_holds(requirement.split(";", 1)[1]):
                continue
            pending.append(re.split(r"[\s<>=!~\[;(]", requirement, maxsplit=1)[0])
    return found


def _marker_holds(marker: str) -> bool:
    from packaging.markers import Marker

    return bool(Marker(marker).evaluate())


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def third_party_imports(files: list[Path]) -> dict[str, Path]:
    """Top-level modules the files import (anywhere, lazy imports too) that are neither stdlib nor ours."""
    found: dict[str, Path] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("filegate", "main", "__future__"):
                    found.setdefault(name, path)
    return found


def deployed_core(entry: Path) -> list[Path]:
    core: list[Path] = NEEDED_MODULES(entry, ROOT)
    assert ROOT / "filegate" / "ingest.py" in core, "the import walk found no core: it is broken"
    return core


def providers(module: str) -> set[str]:
    """Distributions that provide a module (or its namespace package's sub-package)."""
    by_module = metadata.packages_distributions()
    top, _, rest = module.partition(".")
    names = set(by_module.get(top, []))
    if rest and len(names) > 1:
        # A namespace such as `google` or `azure`: find who ships the sub-package itself.
        sub = rest.split(".")[0]
        names = {name for name in names if _ships(name, f"{top}/{sub}/")} or names
    return {_normalise(name) for name in names}


def _ships(distribution: str, prefix: str) -> bool:
    return any(str(file).startswith(prefix) for file in metadata.files(distribution) or [])


@pytest.mark.parametrize(
    ("cloud", "requirements", "entry"),
    [
        pytest.param("azure", ROOT / "requirements.txt", ROOT / "function_app.py", id="azure"),
        pytest.param("gcp", ROOT / "gcp_function" / "requirements.txt", ROOT / "gcp_function" / "main.py", id="gcp"),
    ],
)
def test_the_requirements_pin_every_import_of_the_deployed_code(cloud: str, requirements: Path, entry: Path) -> None:
    # Pinned by name, not only reached through another package: a dependency that allows a range of it
    # would give a redeploy months later another version of a module the code calls itself.
    pinned = pinned_names(requirements)
    imports = third_party_imports([entry, *deployed_core(entry)])

    unpinned = {
        module: str(path.relative_to(ROOT))
        for module, path in imports.items()
        if not providers(module) & pinned and module not in OTHER_CLOUD_ONLY[cloud]
    }

    assert imports, "no third-party import found: the scan is broken"
    assert unpinned == {}


@pytest.mark.parametrize(
    "requirements",
    [
        pytest.param(ROOT / "requirements.txt", id="azure"),
        pytest.param(ROOT / "gcp_function" / "requirements.txt", id="gcp"),
    ],
)
def test_every_distribution_a_function_installs_is_pinned_at_the_version_the_suite_runs(requirements: Path) -> None:
    # The packages a function imports were pinned, what they require was not: each deploy resolved those anew
    # (a protobuf or urllib3 the suite never ran with, months later), and two deploys of one commit could differ.
    pins = pinned_versions(requirements)

    unpinned = sorted(requirement_closure(requirements) - set(pins))
    other_versions = {
        name: (pin, metadata.version(name)) for name, pin in pins.items() if metadata.version(name) != pin
    }

    assert unpinned == [], f"pin these in {requirements.relative_to(ROOT)} at their installed versions"
    assert other_versions == {}, "(pinned, installed): pin what the suite runs with"


def pinned_versions(requirements: Path) -> dict[str, str]:
    """Normalised name to pinned version, for each `name==version` of the file."""
    pins = (line.strip().split("==", 1) for line in requirements.read_text().splitlines() if _PIN.match(line.strip()))
    return {_normalise(re.sub(r"\[.*\]$", "", name)): version for name, version in pins}


def test_the_scan_notices_a_module_no_requirement_provides() -> None:
    closure = requirement_closure(ROOT / "gcp_function" / "requirements.txt")

    assert not providers("pyspark.sql") & closure
    assert providers("google.cloud.storage") & closure


def test_every_requirement_file_and_the_build_system_pin_exact_versions() -> None:
    # A range resolves anew on every install: a setuptools released after its license-table deadline
    # would have refused pyproject.toml on every `make setup` and `bundle deploy`.
    import tomllib

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]["requires"]
    for path in sorted(ROOT.glob("**/requirements*.txt")):
        if not {".venv", "node_modules", "build"} & set(path.relative_to(ROOT).parts):
            lines = (line.split("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
            listed += [line for line in lines if line and not line.startswith("-r ")]
    assert listed, "no requirement found"
    assert [entry for entry in listed if not re.fullmatch(r"[A-Za-z0-9_.\[\],-]+==[0-9][0-9A-Za-z.+-]*", entry)] == []
