"""The batch job's validation config, read from the pipeline file: relations, rules, lookups, params, weights.

Plain Python (no Spark), so that `filegate check` reports a broken rule before any run; the job
evaluates them in `spark_jobs.cross_checks`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from filegate.contracts import Contract, Contracts, param_problem, quoted_name
from filegate.errors import ContractError
from filegate.pipelines import Link, Pipeline, cycle_message, relation_cycles
from filegate.tables import rejects_table
from spark_jobs.pipeline_tables import (
    PLACEHOLDER,
    QUOTED_INPUT,
    array_of_tables,
    misspelt_placeholder,
    names_field,
    placeholders,
    quoted_inputs,
    repeated,
    text_field,
)

SEVERITIES = ("HIGH", "MEDIUM", "LOW")
ACTIONS = ("warn", "quarantine", "fail")
DEFAULT_WEIGHTS = {"HIGH": 5.0, "MEDIUM": 3.0, "LOW": 1.0}
# The rules `validate` adds to every dataset's results itself (spark_jobs/batch_validate.py).
ROWS_MATCH_MANIFEST, BAD_ROW_SHARE = "rows_match_manifest", "bad_row_share"
# The middle of the id a quarantined row carries in `<d>_rejects.rules` (`shipping.validate.<rule>`).
QUARANTINE_SCOPE = "validate"


def quarantine_rule_id(dataset: str, rule: str) -> str:
    """The id a quarantined row carries in `rules`, in the stage's form (`shipping.validate.<rule>`)."""
    return f"{dataset}.{QUARANTINE_SCOPE}.{rule}"


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
    """A small static table from the pipeline file, with one Spark SQL type per column (`_lookups` infers it)."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    types: tuple[str, ...] = ()

    def ddl(self) -> str:
        """The table's schema as Spark DDL: explicit, so an empty lookup or a NULL column has one too."""
        types = self.types or ("string",) * len(self.columns)
        return ", ".join(f"{quoted_name(column)} {kind}" for column, kind in zip(self.columns, types, strict=True))


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
                # parse_pipeline refuses a cycle at load; this names it should a pipeline reach here unchecked.
                links = [Link(r.name, r.child, r.parent, r.columns, r.parent_columns) for r in self.relations]
                cycle = relation_cycles(links, [m for m in members if m not in ordered])[0]
                raise ContractError(cycle_message(*cycle))
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


_COMMON_KEYS = {"name", "severity", "action", "fail_if_ratio", "description"}
_RELATION_KEYS = _COMMON_KEYS | {"child", "columns", "parent", "parent_columns", "nulls"}
_RULE_KEYS = _COMMON_KEYS | {"dataset", "sql"}
_LOOKUP_KEYS = {"name", "columns", "rows", "description"}
_SCORING_KEYS = {"weights"}


def _relation_column_problems(
    pipeline: Pipeline, contracts: Contracts, child: tuple[str, Sequence[str]], parent: tuple[str, Sequence[str]]
) -> list[str]:
    """A relation's datasets are members, its columns theirs (read or derived), paired one to one."""
    problems = []
    for role, (dataset, names) in (("child", child), ("parent", parent)):
        if dataset not in pipeline.members:
            problems.append(f"{role} {dataset!r} is not a member of {pipeline.name}")
        elif not names or not set(names) <= set(row_types(contracts[dataset])):
            problems.append(f"{role} columns {list(names)} are not all columns or derived columns of {dataset}")
    if len(child[1]) != len(parent[1]):
        problems.append("columns and parent_columns must pair up")
    return problems


def relation_type_problems(checks: Checks, contracts: Contracts) -> list[str]:
    """Each relation pairing columns of different kinds (text, number, time): Spark casts one side to the other's
    type, so validate fails on the first value that does not cast (CAST_INVALID_INPUT, naming no relation), and
    '05' matches 5. For `filegate check` only: the job keeps running a pipeline that ran before."""
    problems = []
    for index, relation in enumerate(checks.relations):
        for name, parent_name in zip(relation.columns, relation.parent_columns, strict=True):
            one = row_types(contracts[relation.child])[name]
            other = row_types(contracts[relation.parent])[parent_name]
            if _kind(one) != _kind(other):
                problems.append(
                    f"relations[{index}] {relation.name}: {relation.child}.{name} is {one} but "
                    f"{relation.parent}.{parent_name} is {other}; declare them of one type"
                )
    return problems


def row_types(contract: Contract) -> dict[str, str]:
    """The declared type of each column a staged row holds: the contract's columns, then its derived ones. A
    relation may pair either kind: validate reads both from the stage and the targets (`row_fields`)."""
    return {**{c.name: c.type for c in contract.columns}, **{d.name: d.type for d in contract.derived}}


def _kind(type_name: str) -> str:
    """What a relation may compare a column with: numbers with numbers, dates with timestamps, text with text."""
    if type_name in ("long", "double") or type_name.startswith("decimal"):
        return "number"
    return "time" if type_name in ("date", "timestamp") else type_name


def _name_problems(rule_names: Sequence[str]) -> list[str]:
    problems = [
        f"rule name {rule_name!r} must be lower case letters, digits and _"
        for rule_name in rule_names
        if not re.fullmatch(r"[a-z][a-z0-9_]*", rule_name)
    ]
    if len(set(rule_names)) != len(rule_names):
        problems.append("relation and rule names must be unique")
    # Its rows would sit beside validate's own under one name, in validation_results and in what reads it by name
    # (the shipped analytics_summary sums `bad_row_share`'s rows as the stage's rejects).
    problems += [
        f"rule name {name!r} is the name of validate's own reconciliation rule; name it otherwise"
        for name in sorted(set(rule_names) & {ROWS_MATCH_MANIFEST, BAD_ROW_SHARE})
    ]
    return problems


def _quarantine_id_problems(relations: Sequence[Relation], rules: Sequence[Rule], contracts: Contracts) -> list[str]:
    """Each quarantining relation or rule whose rows' id in `<d>_rejects.rules` is that of a rule of a column named
    `validate` (`Contract.rule_id`): a rejected row would name one of two rules, and nobody could tell which."""
    entries: list[tuple[str, int, str, Relation | Rule]] = [
        ("relation", index, r.child, r) for index, r in enumerate(relations)
    ]
    entries += [("rule", index, r.dataset, r) for index, r in enumerate(rules)]
    problems = []
    for noun, index, dataset, check in entries:
        contract = contracts.get(dataset)
        if check.action != "quarantine" or contract is None or QUARANTINE_SCOPE not in contract.column_names:
            continue
        if check.name in contract.column(QUARANTINE_SCOPE).rule_kinds:
            problems.append(
                f"{noun}s[{index}] {check.name}: quarantines {dataset} rows as "
                f"{quarantine_rule_id(dataset, check.name)}, the id of column {QUARANTINE_SCOPE}'s {check.name} rule "
                f"in {rejects_table(dataset)}.rules; rename the {noun} (or the column {QUARANTINE_SCOPE})"
            )
    return problems


def _rule_input_problems(
    rules: Sequence[Rule], pipeline: Pipeline, lookups: Sequence[Lookup], params: Mapping[str, Any]
) -> list[str]:
    """Each placeholder of a rule's SQL that names no input `cross_checks.register_inputs` gives a rule: found
    here, not in the batch's validate once every file of it has landed."""
    problems = []
    for rule, placeholder in ((each, p) for each in rules for p in placeholders(each.sql)):
        found = PLACEHOLDER.fullmatch(placeholder)
        kind, item, bare = found.groups() if found else (None, None, None)
        where = f"rules {rule.name}: {placeholder}"
        if found is None:
            problems.append(f"{where} is not an input a rule can read{misspelt_placeholder(placeholder)}")
        elif kind == "table" or bare not in (None, "as_of"):
            problems.append(f"{where} is not an input a rule can read (it runs before the merge)")
        elif kind in ("batch", "current", "history", "latest") and item not in pipeline.members:
            problems.append(f"{where}: {item} is not a member of {pipeline.name}")
        elif kind == "lookup" and item not in {lookup.name for lookup in lookups}:
            problems.append(f"{where}: no lookup is named {item}")
        elif kind == "param" and item not in params:
            problems.append(f"{where}: no parameter is named {item} in [params]")
    problems += [f"rules {rule.name}: {p} {QUOTED_INPUT}" for rule in rules for p in quoted_inputs(rule.sql)]
    return problems


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
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1):
            problems.append(f"{where}: fail_if_ratio must be a share between 0 and 1")
            ratio = None
        elif action == "fail" and ratio == 1:
            # A `fail` rule fails only past its share, and no share of rows passes every row.
            problems.append(f'{where}: action = "fail" with fail_if_ratio = 1 never fails: give a smaller share')
        return severity, action, None if ratio is None else float(ratio)

    relations = []
    for index, entry in enumerate(array_of_tables(document, "relations", _RELATION_KEYS, problems)):
        where = f"relations[{index}] {entry.get('name', '')}"
        severity, action, ratio = common(entry, where)
        child, parent = str(entry.get("child", "")), str(entry.get("parent", ""))
        columns = names_field(entry, "columns", where, problems)
        parent_columns = names_field(entry, "parent_columns", where, problems) if "parent_columns" in entry else columns
        # The parents' columns are selected and joined by name: one twice is ambiguous there.
        given = parent_columns if "parent_columns" in entry else ()
        for key, listed in (("columns", columns), ("parent_columns", given)):
            problems += [f"{where}: {key} lists {name} twice: list it once" for name in repeated(listed or ())]
        if columns is not None and parent_columns is not None:
            pairs = (child, columns), (parent, parent_columns)
            problems += [f"{where}: {problem}" for problem in _relation_column_problems(pipeline, contracts, *pairs)]
        nulls = str(entry.get("nulls", "ignore"))
        if nulls not in ("ignore", "fail"):
            problems.append(f"{where}: nulls must be ignore or fail")
        relations.append(
            Relation(
                str(entry.get("name", "")),
                child,
                columns or (),
                parent,
                parent_columns or (),
                severity,
                action,
                nulls,
                ratio,
                text_field(entry, "description", where, problems),
            )
        )
    rules = []
    for index, entry in enumerate(array_of_tables(document, "rules", _RULE_KEYS, problems)):
        where = f"rules[{index}] {entry.get('name', '')}"
        severity, action, ratio = common(entry, where)
        dataset = str(entry.get("dataset", ""))
        if dataset not in members:
            problems.append(f"{where}: dataset {dataset!r} is not a member of {pipeline.name}")
        sql = text_field(entry, "sql", where, problems).strip()
        if not sql and isinstance(entry.get("sql", ""), str):
            problems.append(f"{where}: sql must not be empty")
        rules.append(
            Rule(
                str(entry.get("name", "")),
                dataset,
                sql,
                severity,
                action,
                ratio,
                text_field(entry, "description", where, problems),
            )
        )
    lookups = _lookups(document.get("lookups", []), problems)
    params = _params(document, problems)
    problems += _rule_input_problems(rules, pipeline, lookups, params)
    problems += _name_problems([r.name for r in relations] + [r.name for r in rules])
    problems += _quarantine_id_problems(relations, rules, contracts)
    weights = _weights(_declared_weights(document, problems), problems)
    if problems:
        raise ContractError(f"{pipeline.source or pipeline.name}: " + "; ".join(problems))
    return Checks(tuple(relations), tuple(rules), lookups, dict(params), weights)


def _declared_weights(document: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """`[scoring.weights]` as written; a problem for any other key of `[scoring]` (a misspelt `weight` gave the
    default weights without a word) and for a section of another shape."""
    scoring = document.get("scoring", {})
    if not isinstance(scoring, dict):
        problems.append("scoring must be a table ([scoring])")
        return {}
    problems.extend(
        f"scoring: {key} is not a field of scoring (a typo?)" for key in scoring if key not in _SCORING_KEYS
    )
    weights = scoring.get("weights", {})
    if not isinstance(weights, dict):
        problems.append("scoring.weights must be a table of severity = weight ({ HIGH = 5, MEDIUM = 3, LOW = 1 })")
        return {}
    return weights


# A TOML value's Spark SQL type; an integer column with a float in it is a double.
_TOML_TYPES = (
    (bool, "boolean"),
    (int, "bigint"),
    (float, "double"),
    (str, "string"),
    (datetime, "timestamp"),
    (date, "date"),
)


def _params(document: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """`[params]`: each a number, text or true/false, as a dataset contract's (a TOML date has no SQL literal), or
    a list of them, which SQL reads as the values of an `IN (...)`."""
    params = document.get("params", {})
    if not isinstance(params, dict):
        problems.append("params must be a table ([params])")
        return {}
    for name, value in params.items():
        if value == []:
            problems.append(f"params.{name} must list at least one value (IN () is no SQL)")
        values = value if isinstance(value, list) else [value]
        problems.extend(
            f"params.{name} {problem}"
            for problem in dict.fromkeys(param_problem(each, name) for each in values)
            if problem
        )
    return params


def _lookups(entries: Any, problems: list[str]) -> tuple[Lookup, ...]:
    """Each `[[lookups]]` table: a name, unique column names, rows as long as the columns, one type per column
    (a column mixing text and numbers is refused here, not by Spark's type inference in the middle of a run)."""
    if not isinstance(entries, list):
        problems.append("lookups must be an array of tables ([[lookups]])")
        return ()
    lookups, names = [], set()
    for index, entry in enumerate(entries):
        where = f"lookups[{index}] {entry.get('name', '') if isinstance(entry, dict) else ''}".rstrip()
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a table with name, columns and rows")
            continue
        problems.extend(
            f"{where}: {key} is not a field of lookups (a typo?)" for key in entry if key not in _LOOKUP_KEYS
        )
        text_field(entry, "description", where, problems)  # for people only, but text like every description
        name, columns, rows = entry.get("name"), entry.get("columns"), entry.get("rows")
        found = len(problems)
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            problems.append(f"{where}: name must be lower case letters, digits and _")
        elif name in names:
            problems.append(f"{where}: another lookup is named {name}")
        else:
            names.add(name)
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
            problems.append(f"{where}: columns must be a non-empty list of names")
            columns = []
        elif not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", c) for c in columns) or len(set(columns)) != len(columns):
            problems.append(f"{where}: columns must be unique names of letters, digits and _")
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            problems.append(f"{where}: rows must be a list of rows, each a list of values")
            rows = []
        for number, row in enumerate(rows, start=1):
            if len(row) != len(columns):
                problems.append(f"{where}: row {number} has {len(row)} values for {len(columns)} columns")
        types = []
        for position, column in enumerate(columns):
            kinds = {
                next(
                    (kind for python, kind in _TOML_TYPES if isinstance(row[position], python)),
                    type(row[position]).__name__,
                )
                for row in rows
                if position < len(row) and row[position] is not None
            }
            if kinds == {"bigint", "double"}:
                types.append("double")
            elif len(kinds) == 1 and next(iter(kinds)) in dict(_TOML_TYPES).values():
                types.append(next(iter(kinds)))
            elif not kinds:
                types.append("string")
            else:
                problems.append(
                    f"{where}: column {column} holds {', '.join(sorted(kinds))} values; give it one type (text, "
                    "number, boolean, date or timestamp)"
                )
        if len(problems) == found:
            widened = tuple(
                tuple(float(v) if kind == "double" and v is not None else v for v, kind in zip(row, types, strict=True))
                for row in rows
            )
            lookups.append(Lookup(str(name), tuple(columns), widened, tuple(types)))
    return tuple(lookups)
