"""Table and column names live in filegate/tables.py only: no module spells one out by hand."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from filegate import tables
from local_world import ROOT

NAMES = {
    value
    for name, value in vars(tables).items()
    if name.isupper() and isinstance(value, str) and value not in (tables.REASON, tables.RULES)
}
# `reason` and `rules` are also plain words (an exception's reason, a contract's band rules): not checked.
SUFFIXES = ("_stage", "_rejects")
SOURCES = [
    path
    for package in ("filegate", "spark_jobs", "local_world")
    for path in sorted((ROOT / package).rglob("*.py"))
    if path != ROOT / "filegate" / "tables.py"
]


def spelled_out(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and (node.value in NAMES or node.value.startswith(SUFFIXES)):
            found.append(f"line {node.lineno}: {node.value!r}")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_module_spells_out_a_table_or_column_name(path: Path) -> None:
    assert spelled_out(path) == []


def test_the_job_and_the_readers_agree_on_the_names() -> None:
    assert "processing_log" in NAMES
    assert tables.stage_table("orders") == "orders_stage"
    assert tables.rejects_table("orders") == "orders_rejects"
