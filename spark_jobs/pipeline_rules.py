"""The batch job's validation config, read from the pipeline file: relations, rules, lookups, params, weights.

Plain Python (no Spark), so that `filegate check` reports a broken rule before any run; the job
evaluates them in `spark_jobs.cross_checks`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from filegate.contracts import Contracts
from filegate.errors import ContractError
from filegate.pipelines import Pipeline

SEVERITIES = ("HIGH", "MEDIUM", "LOW")
ACTIONS = ("warn", "quarantine", "fail")
DEFAULT_WEIGHTS = {"HIGH": 5.0, "MEDIUM": 3.0, "LOW": 1.0}


@dataclass(frozen=True)
class Relation:
    """Child rows whose columns must name a parent key."""

    name: str
    child: str
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]
    severity: str = "HIGH"
    action: str = "warn"
    nulls: str = "ignore"
    fail_if_ratio: float | None = None
    description: str = ""


@dataclass(frozen=True)
class Rule:
    """A SQL query returning the failing rows of `dataset`."""

    name: str
    dataset: str
    sql: str
    severity: str = "MEDIUM"
    action: str = "warn"
    fail_if_ratio: float | None = None
    description: str = ""


@dataclass(frozen=True)
class Lookup:
    """A small static table from the pipeline file."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Checks:
    """Everything `validate` runs, read from the pipeline file."""

    relations: tuple[Relation, ...] = ()
    rules: tuple[Rule, ...] = ()
    lookups: tuple[Lookup, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    def merge_order(self, members: Sequence[str]) -> list[str]:
        """Members with every relation's parent before its child (members' order otherwise)."""
        parents = {m: {r.parent for r in self.relations if r.child == m and r.parent != m} for m in members}
        ordered: list[str] = []
        while len(ordered) < len(members):
            ready = [m for m in members if m not in ordered and parents[m] <= set(ordered)]
            if not ready:
                raise ContractError(f"the relations form a cycle among {sorted(set(members) - set(ordered))}")
            ordered.append(ready[0])
        return ordered


def _weights(declared: dict[str, Any], problems: list[str]) -> dict[str, float]:
    """The severities' weights in a score, the defaults replaced by those declared (`[scoring.weights]`).

    A score is a weighted mean: a negative weight could take it out of 0-100, and weights that cancel
    out would leave a dataset without one, so each must be a number above 0.
    """
    weights = dict(DEFAULT_WEIGHTS)
    for severity, weight in declared.items():
        if str(severity).upper() not in DEFAULT_WEIGHTS:
            problems.append(f"scoring.weights: {severity!r} is not a severity (HIGH, MEDIUM, LOW)")
        elif isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            problems.append(f"scoring.weights.{severity} must be a number above 0, got {weight!r}")
        else:
            weights[str(severity).upper()] = float(weight)
    return weights


def parse_checks(pipeline: Pipeline, contracts: Contracts) -> Checks:
    """The pipeline's relations, rules, lookups, params and weights; every problem named at once."""
    document = pipeline.document
    problems: list[str] = []
    members = set(pipeline.members)

    def common(entry: Mapping[str, Any], where: str) -> tuple[str, str, float | None]:
        severity = str(entry.get("severity", "HIGH")).upper()
        action = str(entry.get("action", "warn"))
        ratio = entry.get("fail_if_ratio")
        if severity not in SEVERITIES:
            problems.append(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
        if action not in ACTIONS:
            problems.append(f"{where}: action must be one of {', '.join(ACTIONS)}")
        if ratio is not None and (not isinstance(ratio, int | float) or not 0 <= ratio <= 1):
            problems.append(f"{where}: fail_if_ratio must be a share between 0 and 1")
            ratio = None
        return severity, action, None if ratio is None else float(ratio)

    relations = []
    for index, entry in enumerate(document.get("relations", [])):
        where = f"relations[{index}] {entry.get('name', '')}"
        severity, action, ratio = common(entry, where)
        child, parent = str(entry.get("child", "")), str(entry.get("parent", ""))
        columns = tuple(entry.get("columns", ()))
        parent_columns = tuple(entry.get("parent_columns", columns))
        for role, dataset, names in (("child", child, columns), ("parent", parent, parent_columns)):
            if dataset not in members:
                problems.append(f"{where}: {role} {dataset!r} is not a member of {pipeline.name}")
            elif not names or not set(names) <= set(contracts[dataset].column_names):
                problems.append(f"{where}: {role} columns {list(names)} are not all columns of {dataset}")
        if len(columns) != len(parent_columns):
            problems.append(f"{where}: columns and parent_columns must pair up")
        nulls = str(entry.get("nulls", "ignore"))
        if nulls not in ("ignore", "fail"):
            problems.append(f"{where}: nulls must be ignore or fail")
        relations.append(
            Relation(
                str(entry.get("name", "")),
                child,
                columns,
                parent,
                parent_columns,
                severity,
                action,
                nulls,
                ratio,
                str(entry.get("description", "")),
            )
        )
    rules = []
    for index, entry in enumerate(document.get("rules", [])):
        where = f"rules[{index}] {entry.get('name', '')}"
        severity, action, ratio = common(entry, where)
        dataset = str(entry.get("dataset", ""))
        if dataset not in members:
            problems.append(f"{where}: dataset {dataset!r} is not a member of {pipeline.name}")
        sql = str(entry.get("sql", "")).strip()
        if not sql:
            problems.append(f"{where}: sql must not be empty")
        rules.append(
            Rule(str(entry.get("name", "")), dataset, sql, severity, action, ratio, str(entry.get("description", "")))
        )
    lookups = tuple(
        Lookup(str(entry["name"]), tuple(entry["columns"]), tuple(tuple(row) for row in entry["rows"]))
        for entry in document.get("lookups", [])
    )
    rule_names = [r.name for r in relations] + [r.name for r in rules]
    for rule_name in rule_names:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", rule_name):
            problems.append(f"rule name {rule_name!r} must be lower case letters, digits and _")
    if len(set(rule_names)) != len(rule_names):
        problems.append("relation and rule names must be unique")
    weights = _weights(document.get("scoring", {}).get("weights", {}), problems)
    if problems:
        raise ContractError(f"{pipeline.source or pipeline.name}: " + "; ".join(problems))
    return Checks(tuple(relations), tuple(rules), lookups, dict(document.get("params", {})), weights)
