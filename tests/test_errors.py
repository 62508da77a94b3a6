"""One exception family: every error Filegate defines is a FilegateError, and the Spark job raises no bare
built-in exception, so callers (and the exit-code policy) can tell Filegate's failures from bugs."""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
from pathlib import Path

import pytest

from filegate.errors import FilegateError
from local_world import ROOT

PACKAGES = ("filegate", "spark_jobs", "local_world")
# AssertionError marks a path that cannot run (an invariant), not an error a caller handles.
BUILTIN_ERRORS = {
    name for name, value in vars(builtins).items() if inspect.isclass(value) and issubclass(value, Exception)
} - {"AssertionError"}


def modules() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] != "__main__":
                found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


@pytest.mark.parametrize("module", modules())
def test_every_error_class_is_a_filegate_error(module: str) -> None:
    loaded = importlib.import_module(module)
    own = [
        value
        for value in vars(loaded).values()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module
    ]

    assert [error.__name__ for error in own if not issubclass(error, FilegateError)] == []


@pytest.mark.parametrize("path", sorted((ROOT / "spark_jobs").glob("*.py")), ids=lambda path: path.name)
def test_the_spark_job_raises_no_bare_builtin_error(path: Path) -> None:
    raised = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            called = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(called, ast.Name) and called.id in BUILTIN_ERRORS:
                raised.append(f"line {node.lineno}: {called.id}")

    assert raised == []
