"""The pipeline's derived tables (`[[tables]]`) and their bands (`[[segments]]`), read from the pipeline file.

Plain Python (no Spark), so that `filegate check` reports a broken table before any run; the batch
job's `derive_tables` task builds them (spark_jobs/batch_derive.py).

A table is Spark SQL over named inputs (`${current.d}`, `${history.d}`, `${batch.d}`, `${table.t}`,
`${lookup.n}`, `${validation_results}`, `${validation_failures}`, `${processing_log}`, `${param.x}`,
`${as_of}`). The `${table.t}` it reads order the build. `refresh = "full"` replaces the table whole in
one commit; `refresh = "as_of"` keeps a daily series: one slice per business date, replaced when that
date is built again.

A segment adds one column to a table from bands, never from constants in code: the first band whose
every bound holds wins (`min` and `max` inclusive, `equals` exact), else the default. With
`method = "quantiles"` each bound is on the row's `percent_rank()` of that column within the table.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from filegate.contracts import Contracts, param_problem, quoted_name, sql_literal
from filegate.errors import ContractError
from filegate.pipelines import Pipeline
from filegate.tables import AS_OF_DATE, job_tables

REFRESHES = ("full", "as_of")
METHODS = ("thresholds", "quantiles")
_TABLE_KEYS = {"name", "sql", "refresh", "grain", "description"}
_SEGMENT_KEYS = {"table", "column", "method", "default", "bands", "description"}
_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Every `${...}` a table's SQL may name; anything else is reported by `filegate check`.
PLACEHOLDER = re.compile(
    r"\$\{(?:(batch|current|history|latest|table|lookup|param)\.([A-Za-z_][A-Za-z0-9_]*)"
    r"|(as_of|validation_results|validation_failures|processing_log))\}"
)
ANY_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")
# What SQL does not read as code: string literals (backslash escapes, as Spark's) and comments.
# Read left to right, so a quote inside a comment or a backticked name opens nothing. Raw strings (r'...')
# take a backslash as it is.
_NOT_CODE = re.compile(
    r"(?<![A-Za-z0-9_])[rR]'[^']*'|(?<![A-Za-z0-9_])[rR]\"[^\"]*\"|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
    r"|`(?:[^`]|``)*`|--[^\n]*|/\*.*?\*/",
    re.DOTALL,
)
Bound = float | int | str


@dataclass(frozen=True)
class Band:
    """One label and the bounds a row must meet for it: column -> lowest, highest or exact value."""

    label: str
    min: Mapping[str, Bound]
    max: Mapping[str, Bound]
    equals: Mapping[str, Bound | bool]


@dataclass(frozen=True)
class Segment:
    """A column of a derived table computed from bands: the first band that holds, else the default."""

    table: str
    column: str
    method: str
    default: str
    bands: tuple[Band, ...]

    def case_sql(self) -> str:
        """The bands as one `CASE WHEN ... END` over the table's columns (placeholders still in it)."""

        def metric(column: str) -> str:
            quoted = quoted_name(column)
            return f"percent_rank() OVER (ORDER BY {quoted})" if self.method == "quantiles" else quoted

        branches = []
        for band in self.bands:
            tests = [f"{metric(c)} >= {_bound(v)}" for c, v in band.min.items()]
            tests += [f"{metric(c)} <= {_bound(v)}" for c, v in band.max.items()]
            tests += [f"{quoted_name(c)} = {_bound(v)}" for c, v in band.equals.items()]
            branches.append(f"WHEN {' AND '.join(tests)} THEN {sql_literal(band.label)}")
        return f"CASE {' '.join(branches)} ELSE {sql_literal(self.default)} END"


@dataclass(frozen=True)
class DerivedTable:
    """A table the batch job builds from its SQL, then its segments' columns."""

    name: str
    sql: str
    refresh: str
    grain: tuple[str, ...]
    segments: tuple[Segment, ...] = ()
    description: str = ""

    def inputs(self) -> set[str]:
        """The inputs the SQL and the bands name, as `kind.name` (or the bare name: `as_of`)."""
        texts = [self.sql, *(s.case_sql() for s in self.segments)]
        return {f"{m[1]}.{m[2]}" if m[1] else m[3] for text in texts for m in PLACEHOLDER.finditer(text)}

    def tables_read(self) -> set[str]:
        return {name.split(".", 1)[1] for name in self.inputs() if name.startswith("table.")}


def _bound(value: Bound | bool) -> str:
    """A bound as SQL: a number or text literal, or a `${param.x}` left for the resolver."""
    if isinstance(value, str) and PLACEHOLDER.fullmatch(value):
        return value
    return sql_literal(value)


def parse_tables(pipeline: Pipeline, contracts: Contracts) -> tuple[DerivedTable, ...]:
    """The pipeline's derived tables in build order (every table after those it reads); all problems at once."""
    document = pipeline.document
    problems: list[str] = []
    params = table_params(pipeline)
    currency = document.get("base_currency", "USD")
    if not isinstance(currency, str) or not currency.strip():
        # `${param.base_currency}` is written into the tables' SQL as a literal: a date, list or table has none
        # (the job raised a bare TypeError naming no field), and a number never equals a currency code.
        problems.append(f'base_currency must be a currency code in quotes (base_currency = "EUR"), not {currency!r}')
    # A malformed [[lookups]] is parse_checks' to name: here only the names of the well-formed ones.
    listed = document.get("lookups", [])
    lookups = (
        {str(entry.get("name")) for entry in listed if isinstance(entry, dict)} if isinstance(listed, list) else set()
    )
    entries = array_of_tables(document, "tables", _TABLE_KEYS, problems)
    names = [str(entry.get("name", "")) for entry in entries]
    owned = job_tables(contracts.values())
    for name in names:
        if not _NAME.fullmatch(name):
            problems.append(f"table name {name!r} must be lower case letters, digits and _")
        if name in owned:
            problems.append(f"table {name} would replace {owned[name]}; give it another name")
    if len(set(names)) != len(names):
        problems.append("derived table names must be unique")
    segments: dict[str, list[Segment]] = {}
    for index, entry in enumerate(array_of_tables(document, "segments", _SEGMENT_KEYS, problems, "column")):
        segment = _parse_segment(entry, f"segments[{index}] {entry.get('column', '')}", params, problems)
        if segment.table not in names:
            problems.append(f"segments[{index}]: table {segment.table!r} is not a derived table of {pipeline.name}")
        segments.setdefault(segment.table, []).append(segment)
    tables = []
    for entry in entries:
        name = str(entry.get("name", ""))
        refresh = str(entry.get("refresh", "full"))
        if refresh not in REFRESHES:
            problems.append(f"table {name}: refresh must be one of {', '.join(REFRESHES)}")
        sql = text_field(entry, "sql", f"table {name}", problems).strip()
        if not sql and isinstance(entry.get("sql", ""), str):
            problems.append(f"table {name}: sql must not be empty")
        grain = names_field(entry, "grain", f"table {name}", problems)
        if grain == ():
            problems.append(f"table {name}: grain must name the columns that identify a row")
        problems += [f"table {name}: grain lists {column} twice: list it once" for column in repeated(grain or ())]
        added = [segment.column for segment in segments.get(name, ())]
        problems += [f"table {name}: segments add {column} twice" for column in repeated(added)]
        if AS_OF_DATE in added:
            problems.append(f"table {name}: a segment adds {AS_OF_DATE}, which the job sets; name its column otherwise")
        description = text_field(entry, "description", f"table {name}", problems)
        table = DerivedTable(name, sql, refresh, grain or (), tuple(segments.get(name, ())), description)
        problems += [f"table {name}: {p}" for p in _input_problems(table, pipeline, contracts, params, lookups, names)]
        tables.append(table)
    if problems:
        raise ContractError(f"{pipeline.source or pipeline.name}: " + "; ".join(problems))
    return build_order(tables)


def text_field(entry: Mapping[str, Any], key: str, where: str, problems: list[str]) -> str:
    """The text of `key` (empty when absent); a problem for a number, list or table (`sql = 5` would be run
    as the SQL `5`)."""
    value = entry.get(key, "")
    if isinstance(value, str):
        return value
    problems.append(f"{where}: {key} must be text (in quotes), not {value!r}")
    return ""


def names_field(entry: Mapping[str, Any], key: str, where: str, problems: list[str]) -> tuple[str, ...] | None:
    """The column names `key` lists (empty when absent), or None and a problem for any other value:
    `grain = "order_id"`, text where a list is meant, would be read letter by letter."""
    value = entry.get(key, [])
    if isinstance(value, list) and all(isinstance(item, str) and item for item in value):
        return tuple(value)
    example = value if isinstance(value, str) and value else "column"
    problems.append(f'{where}: {key} must be a list of column names, e.g. {key} = ["{example}"], not {value!r}')
    return None


def repeated(names: Iterable[str]) -> list[str]:
    """The names listed more than once, sorted."""
    return sorted(name for name, count in Counter(names).items() if count > 1)


def array_of_tables(
    document: Mapping[str, Any], key: str, known: set[str], problems: list[str], named_by: str = "name"
) -> list[Mapping[str, Any]]:
    """The `[[key]]` tables of the document; a problem for a value of another shape (`[key]` written for
    `[[key]]`), and for each field none of them has (a misspelt `acton` or `refesh` would leave the entry
    at its default without a word)."""
    entries = document.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        problems.append(f"{key} must be an array of tables ([[{key}]])")
        return []
    for index, entry in enumerate(entries):
        problems.extend(
            f"{key}[{index}] {entry.get(named_by, '')}: {field} is not a field of {key} (a typo?)"
            for field in entry
            if field not in known
        )
    return entries


def placeholders(sql: str) -> list[str]:
    """Each `${...}` of `sql` that the job resolves or that breaks the statement: every input placeholder
    (`resolve_sql` replaces them wherever they stand), and any other `${...}` outside string literals and
    comments. Inside those, `'${x}'` is text the job leaves as it is."""
    code = _NOT_CODE.sub(lambda found: " " * len(found.group()), sql)  # the same positions, text blanked
    inputs = [(found.start(), found.group()) for found in PLACEHOLDER.finditer(sql)]
    others = [(found.start(), found.group()) for found in ANY_PLACEHOLDER.finditer(code)]
    return [text for _, text in sorted(inputs + [other for other in others if not PLACEHOLDER.fullmatch(other[1])])]


def quoted_inputs(sql: str) -> list[str]:
    """Each input placeholder inside a string literal: the job puts a view's name, a quoted value or a DATE
    literal there, so `'%${param.code}%'` becomes `'%'CODE'%'`, which does not parse. (Inside a comment or a
    backticked name one is harmless.)"""
    literals = [found.span() for found in _NOT_CODE.finditer(sql) if _is_literal(found.group())]
    return [
        found.group()
        for found in PLACEHOLDER.finditer(sql)
        if any(start < found.start() < end for start, end in literals)
    ]


def _is_literal(text: str) -> bool:
    """Whether a span `_NOT_CODE` found is a string literal (raw or not), not a comment or a backticked name."""
    quote = text[1:2] if text[:1] in "rR" else text[:1]
    return quote in ("'", '"')


QUOTED_INPUT = "is inside quotes, where the job's view name or literal breaks the SQL: write it outside them"


def misspelt_placeholder(placeholder: str) -> str:
    """Why `placeholder` names no input, where the case is all that is wrong."""
    lower = placeholder.lower()
    return f" (inputs are written in lower case: {lower})" if PLACEHOLDER.fullmatch(lower) else ""


def _input_problems(
    table: DerivedTable,
    pipeline: Pipeline,
    contracts: Contracts,
    params: Mapping[str, Any],
    lookups: set[str],
    tables: Sequence[str],
) -> list[str]:
    problems = []
    for text in (table.sql, *(s.case_sql() for s in table.segments)):
        unknown = [p for p in placeholders(text) if not PLACEHOLDER.fullmatch(p)]
        problems += [f"{p} is not an input a table can read{misspelt_placeholder(p)}" for p in unknown]
        problems += [f"{p} {QUOTED_INPUT}" for p in quoted_inputs(text)]
    for name in sorted(table.inputs()):
        kind, _, item = name.partition(".")
        if kind == "latest":
            problems.append(f"${{{name}}} is for validation, before the merge; a table reads ${{current.{item}}}")
        elif kind == "batch" and item not in pipeline.members:
            problems.append(f"${{{name}}}: {item} is not a member of {pipeline.name}")
        elif kind in ("current", "history") and item not in contracts:
            problems.append(f"${{{name}}}: no dataset is named {item}")
        elif kind == "history" and contracts[item].scd_type != 2:
            problems.append(f"${{{name}}}: {item} keeps no history (scd_type 1)")
        elif kind == "table" and item not in tables:
            problems.append(f"${{{name}}}: no derived table is named {item}")
        elif kind == "table" and item == table.name:
            problems.append(f"${{{name}}}: a table cannot read itself")
        elif kind == "lookup" and item not in lookups:
            problems.append(f"${{{name}}}: no lookup is named {item}")
        elif kind == "param" and item not in params:
            problems.append(f"${{{name}}}: no parameter is named {item}")
    return problems


def table_params(pipeline: Pipeline) -> dict[str, Any]:
    """The parameters tables may name: the pipeline's `[params]`, and its `base_currency`."""
    params = pipeline.document.get("params", {})
    # A `params` of another shape is parse_checks' to name: here no parameter.
    return {
        "base_currency": pipeline.document.get("base_currency", "USD"),
        **(params if isinstance(params, dict) else {}),
    }


def build_order(tables: Sequence[DerivedTable]) -> tuple[DerivedTable, ...]:
    """The tables with every one after the tables it reads (declared order otherwise)."""
    ordered: list[DerivedTable] = []
    while len(ordered) < len(tables):
        built = {t.name for t in ordered}
        ready = [t for t in tables if t.name not in built and t.tables_read() <= built]
        if not ready:
            waiting = sorted(t.name for t in tables if t.name not in built)
            raise ContractError(f"the derived tables read each other in a cycle: {', '.join(waiting)}")
        ordered.append(ready[0])
    return tuple(ordered)


def _parse_segment(entry: Mapping[str, Any], where: str, params: Mapping[str, Any], problems: list[str]) -> Segment:
    method = str(entry.get("method", "thresholds"))
    if method not in METHODS:
        problems.append(f"{where}: method must be one of {', '.join(METHODS)}")
    column = str(entry.get("column", ""))
    if not _NAME.fullmatch(column):
        problems.append(f"{where}: column must be lower case letters, digits and _")
    text_field(entry, "description", where, problems)  # for people only, but text like every description
    default = entry.get("default")
    if not isinstance(default, str) or not default:
        problems.append(f"{where}: a default label is required (the band of a row no band holds for)")
    bands = []
    listed = entry.get("bands", [])
    if not isinstance(listed, list) or not all(isinstance(raw, dict) for raw in listed):
        problems.append(f"{where}: bands must be a list of tables ({{ label = ..., min = {{ column = bound }} }})")
        listed = []
    for position, raw in enumerate(listed):
        label = str(raw.get("label", ""))
        at = f"{where} band {position + 1} {label!r}"
        bounds = {kind: raw.get(kind, {}) for kind in ("min", "max", "equals")}
        for kind in [kind for kind, bound in bounds.items() if not isinstance(bound, dict)]:
            problems.append(f"{at}: {kind} must be a table of column = bound")
            bounds[kind] = {}
        if not label:
            problems.append(f"{at}: a label is required")
        if not any(bounds.values()):
            problems.append(f"{at}: needs at least one of min, max or equals (the default covers everything else)")
        unknown = set(raw) - {"label", "min", "max", "equals"}
        if unknown:
            problems.append(f"{at}: unknown keys {sorted(unknown)}")
        kept: dict[str, dict[str, Any]] = {}
        for kind, bound in bounds.items():
            found = {name: _bound_problems(value, method, params, kind) for name, value in bound.items()}
            problems += [f"{at}: {kind}.{name} {p}" for name, listed in found.items() for p in listed]
            # A bound of the wrong type is left out: the band is still compiled to name its inputs.
            kept[kind] = {name: value for name, value in bound.items() if not found[name]}
        bands.append(Band(label, kept["min"], kept["max"], kept["equals"]))
    if not bands:
        problems.append(f"{where}: at least one band is required")
    labels = [b.label for b in bands]
    if len(set(labels)) != len(labels):
        problems.append(f"{where}: band labels must be unique")
    return Segment(str(entry.get("table", "")), column, method, str(default or ""), tuple(bands))


def _bound_problems(value: Any, method: str, params: Mapping[str, Any], kind: str = "min") -> list[str]:
    """What is wrong with a band's bound: `min` and `max` take a number, `equals` also text or true/false (each
    as a value or a `${param.x}` of one; a list parameter would make `column = 'A', 'B'`)."""
    if isinstance(value, str):
        found = PLACEHOLDER.fullmatch(value)
        if found is None and kind == "equals":
            return []
        if found is None or found[1] != "param":
            return ["must be a value or ${param.x}" if kind == "equals" else "must be a number or ${param.x}"]
        if found[2] not in params:
            return [f"names no parameter {found[2]!r}"]
        value = params[found[2]]
    if kind == "equals":
        return [] if param_problem(value) is None else ["must be a number, text or true/false"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return ["must be a number"]
    if method == "quantiles" and not 0 <= value <= 1:
        return ["is a quantile: between 0 and 1"]
    return []
