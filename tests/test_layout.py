"""The house rules, checked on the import graph: the product (`filegate`, `spark_jobs`, the two function
adapters) never imports the local world, the tests or the benchmarks, not even lazily inside a function."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from local_world import ROOT

PRODUCT_PACKAGES = ("filegate", "spark_jobs")
ADAPTERS = ("function_app.py", "gcp_function/main.py")
OUTSIDE_THE_PRODUCT = ("local_world", "tests", "bench")
# "package.module" or "package.module:function", as a command table names what it imports on use.
_MODULE_STRING = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+(:\w+)?")


def product_files() -> list[Path]:
    files = [path for package in PRODUCT_PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    return files + [ROOT / adapter for adapter in ADAPTERS]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module `source` names in an import statement, wherever it stands (module level, function,
    TYPE_CHECKING block), plus module names given as strings (`importlib.import_module("...")`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                package = module.split(".")
                base = ".".join(package[: len(package) - node.level + is_package])
                target = f"{base}.{target}" if target else base
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_STRING.fullmatch(node.value):
            found.add(node.value.split(":", 1)[0])
    return found


def imports_of(path: Path) -> set[str]:
    return imported_modules(path.read_text(encoding="utf-8"), module_name(path), is_package=path.name == "__init__.py")


def is_outside(module: str) -> bool:
    return module.split(".", 1)[0] in OUTSIDE_THE_PRODUCT


@pytest.mark.parametrize("path", product_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_product_module_imports_the_local_world_tests_or_benchmarks(path: Path) -> None:
    outside = sorted(module for module in imports_of(path) if is_outside(module))
    assert outside == [], f"{path.relative_to(ROOT)} imports {outside}: the product must not depend on them"


def test_the_walk_sees_lazy_relative_and_string_imports() -> None:
    source = (
        "import importlib\n"
        "from . import sibling\n"
        "def later():\n"
        "    from local_world.emulators import run_azurite\n"
        "    import tests.conftest\n"
        "    return importlib.import_module('bench.bench_merge')\n"
    )
    walked = imported_modules(source, "filegate.probe")
    assert {"filegate.sibling", "local_world.emulators", "tests.conftest", "bench.bench_merge"} <= walked


def test_importing_every_product_module_loads_nothing_of_the_local_world() -> None:
    """The same direction at run time: import each module of the product in a fresh interpreter."""
    modules = [module_name(path) for path in product_files() if path.parent.name != "gcp_function"]
    modules = [module for module in modules if module != "function_app"]
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{list(OUTSIDE_THE_PRODUCT)!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_the_local_jobs_api_modules_import_each_other_without_a_circle() -> None:
    # TYPE_CHECKING imports count: a circle there still means two modules that cannot be read apart.
    package = ROOT / "local_world" / "jobs_api"
    modules = {module_name(path): path for path in sorted(package.glob("*.py"))}
    graph = {
        name: {m for m in imports_of(path) if m in modules and m not in (name, "local_world.jobs_api")}
        for name, path in modules.items()
    }
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import circle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for imported in graph[name]:
            visit(imported, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())
