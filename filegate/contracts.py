"""Dataset contracts: the declarative description of each dataset, shared by function and Spark job."""

from __future__ import annotations

import math
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

from filegate import tables
from filegate.errors import ContractError, UnsafeSql
from filegate.patterns import shared_pattern

BUILTIN_DATASETS = Path(__file__).with_name("datasets")

SCALAR_TYPES = ("string", "long", "double", "boolean", "date", "timestamp")
_DECIMAL_TYPE = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")

# The text forms a value may take in a file, as Java regular expressions: the Spark job checks rows
# with them (`rlike`), and the function with their Python form (`_text_regex`), so a file the function
# accepts parses the same way in the job. Each ends at `\z`, the very end of the value: Java's `$`
# also matches before a final line break (a quoted field of a `multiline_records` file may end in
# one), which Spark's cast then trims away, where Python's `date.fromisoformat` refuses it. No inline
# flags either: Java's `(?i)` folds ASCII letters only, Python's also folds non-ASCII ones (the long s into s).
TEXT_PATTERNS: Mapping[str, str] = {
    # Up to 19 digits: the shape; whether it fits in 64 bits is `_check_calendar`'s (and try_cast's) question.
    "long": r"^[+-]?[0-9]{1,19}\z",
    "double": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\z",
    "boolean": r"^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])\z",
    "date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\z",
    # Offsets up to +/-18:00, the most Spark (java.time.ZoneOffset) accepts; Python would take up to 23:59.
    "timestamp": (
        r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
        r"(Z|[+-](0[0-9]|1[0-7]):[0-5][0-9]|[+-]18:00)?\z"
    ),
}
# What a double's text may not say although its form is right: a number beyond the type's range, which
# both sides would read as infinity. The Spark job gives the same reason (`spark_jobs.validation`).
DOUBLE_OUT_OF_RANGE = "is beyond the range of a double"

_DATE_TOKENS = {"{yyyy}": r"(?P<yyyy>[0-9]{4})", "{mm}": r"(?P<mm>[0-9]{2})", "{dd}": r"(?P<dd>[0-9]{2})"}


def decimal_pattern(precision: int, scale: int) -> str:
    """Text form of a decimal(precision, scale): no more digits than the type holds, no rounding."""
    whole = precision - scale
    fraction = rf"(\.[0-9]{{1,{scale}}})?" if scale else ""
    # decimal(p, p) holds no whole digit: its values lie between -1 and 1, written 0.xx.
    digits = rf"[0-9]{{1,{whole}}}" if whole else "0"
    return rf"^[+-]?{digits}{fraction}\z"


# Severity of a column rule when the contract names none (design 3.9): a value that is missing or
# not of its type breaks the row; a value outside a list, a pattern, a length or a range is a quality
# problem of the row.
SEVERITIES = ("HIGH", "MEDIUM", "LOW")
# The kinds of rule a column's values obey: a rejected row's rule id is `<dataset>.<column>.<kind>`.
COLUMN_RULE_KINDS = ("required", "type", "allowed", "pattern", "min_length", "max_length", "min", "max")
_DEFAULT_SEVERITY = {"required": "HIGH", "type": "HIGH"}
NUMERIC_BOUND_TYPES = ("long", "double")


@dataclass(frozen=True)
class Column:
    """One column of a dataset: its name, type, nullability and the rules its values obey."""

    name: str
    type: str
    nullable: bool = True
    allowed: tuple[str, ...] = ()
    description: str = ""
    # A regular expression in the dialect Python and Spark share (filegate.patterns), searched for.
    pattern: str | None = None
    # Inclusive bounds, as text of the column's type: numbers for long/double/decimal, ISO for dates.
    min: str | None = None
    max: str | None = None
    # Inclusive bounds on the number of characters (Unicode code points, as Spark's length() counts).
    min_length: int | None = None
    max_length: int | None = None
    severity: str | None = None

    @property
    def text_pattern(self) -> str | None:
        """The regular expression a non-empty value must match, or None for free text."""
        return _text_pattern(self.type)

    @property
    def has_rules(self) -> bool:
        """Whether a non-empty value can be wrong (free text without rules cannot)."""
        return bool(
            self.text_pattern is not None
            or self.allowed
            or self.pattern
            or self.min_length is not None
            or self.max_length is not None
        )

    @property
    def rule_kinds(self) -> tuple[str, ...]:
        """The kinds of rule this column's values obey (`COLUMN_RULE_KINDS`), as its rejected rows' ids name them."""
        given = {
            "required": not self.nullable,
            "type": self.text_pattern is not None,
            "allowed": bool(self.allowed),
            "pattern": self.pattern is not None,
            "min_length": self.min_length is not None,
            "max_length": self.max_length is not None,
            "min": self.min is not None,
            "max": self.max is not None,
        }
        return tuple(kind for kind in COLUMN_RULE_KINDS if given[kind])

    def severity_of(self, kind: str) -> str:
        """The reported severity of this column's rule `kind`."""
        return self.severity or _DEFAULT_SEVERITY.get(kind, "MEDIUM")

    @property
    def allowed_values(self) -> frozenset[Any]:
        """The allowed values of a typed column, as the values `typed_value` gives.

        A number, a boolean, a date or a time is allowed by its value, not by how it is written: with
        `allowed = [0.00, 0.20]` (which TOML reads as 0.0 and 0.2) a file's "0.20" is allowed, and so is
        "TRUE" for `allowed = [true]`. An allowed entry that is not a valid value of the type can never
        be met and is left out. Free-text columns compare the text itself (`allowed`).
        """
        return _allowed_values(self.type, self.allowed)

    @property
    def unmeetable_allowed(self) -> tuple[str, ...]:
        """The allowed entries of a typed column that are no valid value of its type: no value can meet them."""
        if _text_regex(self.type) is None:
            return ()
        return tuple(text for text in self.allowed if not _valid_value(self.type, text))

    def _not_allowed(self, text: str) -> str:
        return f"{self.name} value {shown(text)} is not one of {', '.join(self.allowed)}"

    def check_text(self, text: str) -> str | None:
        """Why `text` is not a valid value of this column, or None when it is."""
        found = self.violation(text)
        return found[1] if found else None

    def violation(self, text: str) -> tuple[str, str] | None:
        """The first rule `text` breaks, as (kind, reason), or None. Spark's `column_reason` mirrors it."""
        if text == "":
            return None if self.nullable else ("required", f"{self.name} is empty but required")
        regex = _text_regex(self.type)
        if regex is None:
            if self.allowed and text not in self.allowed:
                return "allowed", self._not_allowed(text)
        else:
            if not regex.match(text):
                return "type", f"{self.name} value {shown(text)} is not a valid {self.type}"
            problem = _check_calendar(self.type, text)
            if problem:
                return "type", f"{self.name} value {shown(text)} {problem}"
            if self.allowed and typed_value(self.type, text) not in self.allowed_values:
                return "allowed", self._not_allowed(text)
        if self.pattern is not None and not shared_pattern(self.pattern).matches(text):
            return "pattern", f"{self.name} value {shown(text)} does not match the pattern {self.pattern}"
        if self.min_length is not None and len(text) < self.min_length:
            return "min_length", f"{self.name} value {shown(text)} is shorter than {self.min_length} characters"
        if self.max_length is not None and len(text) > self.max_length:
            return "max_length", f"{self.name} value {_clipped(text)} is longer than {self.max_length} characters"
        if self.min is not None and typed_value(self.type, text) < typed_value(self.type, self.min):
            return "min", f"{self.name} value {shown(text)} is below the minimum {self.min}"
        if self.max is not None and typed_value(self.type, text) > typed_value(self.type, self.max):
            return "max", f"{self.name} value {shown(text)} is above the maximum {self.max}"
        return None


# How a reason shows a value, in single quotes: these characters escaped, every other one as it is. The
# Spark job writes its reasons the same way (`spark_jobs.validation`), so both sides' reasons are equal.
SHOWN_ESCAPES = (("\\", "\\\\"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))


def shown(text: str) -> str:
    """A value as a reason shows it: in single quotes, its backslashes and line breaks escaped (`SHOWN_ESCAPES`)."""
    for char, escaped in SHOWN_ESCAPES:
        text = text.replace(char, escaped)
    return f"'{text}'"


def _clipped(text: str, limit: int = 40) -> str:
    """A long value as a reason quotes it: its start and its length."""
    return shown(text) if len(text) <= limit else f"{shown(text[:limit])}... ({len(text)} characters)"


# What a value of each type looks like, for messages (a decimal's says its digits: `value_form`).
_VALUE_FORMS = {
    "long": "a whole number of up to 19 digits",
    "double": "a finite number",
    "boolean": "true or false",
    "date": "a real date, YYYY-MM-DD",
    "timestamp": "a real time, YYYY-MM-DDTHH:MM:SS with an optional offset",
}


def value_form(type_name: str) -> str:
    """What a value of a typed column looks like, in words."""
    decimal = _DECIMAL_TYPE.match(type_name)
    if decimal:
        return f"at most {int(decimal[1]) - int(decimal[2])} digits before the point and {decimal[2]} after it"
    return _VALUE_FORMS.get(type_name, "")


def _allowed_text(value: object, type_name: str) -> str:
    """An allowed entry or a bound as text. A TOML float for a decimal column in plain notation: str() writes
    0.00001 as 1e-05, which no decimal's text is."""
    if isinstance(value, float) and type_name.strip().lower().startswith("decimal") and math.isfinite(value):
        return format(Decimal(repr(value)), "f")
    return str(value)


def typed_value(type_name: str, text: str) -> Any:
    """A valid value's text as the Python value Spark compares it as, for min/max and allowed values."""
    if type_name == "boolean":
        return text.lower() == "true"
    if type_name == "long":
        return int(text)
    if type_name == "double":
        # A double compares as a double in Spark: 0.30000000000000001 equals 0.3 there.
        return float(text)
    if type_name == "date":
        return date.fromisoformat(text)
    if type_name == "timestamp":
        return _utc_timestamp(text)
    if type_name == "string":
        return text  # a band on a text column compares text, as Spark does (`surname >= 'A'`)
    return Decimal(text)


@cache
def _allowed_values(type_name: str, allowed: tuple[str, ...]) -> frozenset[Any]:
    """`Column.allowed_values`, computed once per column: validation checks every sampled value."""
    if _text_regex(type_name) is None:
        return frozenset()
    return frozenset(typed_value(type_name, text) for text in allowed if _valid_value(type_name, text))


def _valid_value(type_name: str, text: str) -> bool:
    """Whether `text` is a value of a typed column's type: its form, and a real date, time or number."""
    regex = _text_regex(type_name)
    return regex is not None and regex.match(text) is not None and _check_calendar(type_name, text) is None


@cache
def _text_pattern(type_name: str) -> str | None:
    decimal = _DECIMAL_TYPE.match(type_name)
    if decimal:
        return decimal_pattern(int(decimal.group(1)), int(decimal.group(2)))
    return TEXT_PATTERNS.get(type_name)


@cache
def _text_regex(type_name: str) -> re.Pattern[str] | None:
    """Compiled once per type: validation checks every sampled value with it."""
    pattern = _text_pattern(type_name)
    if pattern is None:
        return None
    # Python's `re` spells Java's `\z` as `\Z` (Python 3.11 has no `\z`).
    return re.compile(pattern.replace(r"\z", r"\Z"))


def _check_calendar(type_name: str, text: str) -> str | None:
    """Shape is right; catch impossible dates and times such as 2024-02-30, or year 0, doubles such as
    1e999, which would be read as infinity, and longs beyond 64 bits.

    A real date or time lies in the years 1 to 9999, for a timestamp once moved to UTC: what Python
    (and so every reader of the tables in Python) can represent. The Spark job applies the same
    bounds (`spark_jobs.validation.column_rules`); Spark's own cast would accept year 0.
    """
    try:
        if type_name == "date":
            date.fromisoformat(text)
        elif type_name == "timestamp":
            _utc_timestamp(text).astimezone(UTC)
        elif type_name.startswith("decimal"):
            Decimal(text)
        elif type_name == "double" and math.isinf(float(text)):
            return DOUBLE_OUT_OF_RANGE
        elif type_name == "long" and not -(2**63) <= int(text) < 2**63:
            raise OverflowError(text)
    except (ValueError, InvalidOperation, OverflowError):
        return f"is not a real {type_name}"
    return None


BUSINESS_DATE = "_business_date"
LOADS = ("incremental", "snapshot")
CHECK_ACTIONS = ("reject", "warn")
_PARAM = re.compile(r"\$\{param\.([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
ParamValue = str | int | float | bool


@dataclass(frozen=True)
class Check:
    """A row rule only the Spark job runs: a Spark SQL boolean over the row and `_business_date`."""

    name: str
    expr: str
    action: str = "reject"
    severity: str = "HIGH"
    description: str = ""


@dataclass(frozen=True)
class Band:
    """One labelled range of a banded derived column; bounds inclusive, either may be open."""

    label: str
    min: str | None = None
    max: str | None = None


@dataclass(frozen=True)
class Derived:
    """A column computed at stage time from the row alone: a Spark SQL `expr`, or `bands` over a column."""

    name: str
    type: str
    expr: str = ""
    bands_on: str = ""
    bands: tuple[Band, ...] = ()
    default: str | None = None
    description: str = ""


@dataclass(frozen=True)
class Contract:
    """A dataset: how its files are named and what their rows hold."""

    name: str
    file_pattern: str
    columns: tuple[Column, ...]
    keys: tuple[str, ...]
    # A column, or `_business_date`: the date in the file's name (a daily snapshot has no version column).
    sequence_by: str
    scd_type: int = 1
    delimiter: str = ","
    # A file whose sampled rows fail more often than this is rejected whole; below it, bad rows
    # travel on and the Spark job routes them to the rejects table with their reasons.
    max_bad_row_ratio: float = 0.1
    description: str = ""
    source: Path | None = field(default=None, compare=False)
    target_table: str = ""
    # incremental: a file holds changed rows; snapshot: every live key as of its business date.
    load: str = "incremental"
    # A key twice in one file with different content rejects both rows (a snapshot cannot say which).
    unique_keys: bool = False
    # Quoted fields may hold line breaks (product descriptions); Spark then reads records, not lines.
    multiline_records: bool = False
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()
    derived: tuple[Derived, ...] = ()
    # SCD2: which columns open a new version when they change (all others update the current one).
    track_history: tuple[str, ...] = ()
    track_history_except: tuple[str, ...] = ()
    # A Spark SQL condition on the row (and derived columns): a row that matches deletes its key as of its
    # sequence value (SCD2 closes the version, SCD1 deletes the row), as AUTO CDC's `apply_as_deletes`.
    delete_when: str = ""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def target(self) -> str:
        """The target table's name."""
        return self.target_table or self.name

    @property
    def extension(self) -> str:
        """The file extension the pattern demands, e.g. `.csv`."""
        return Path(self.file_pattern).suffix.lower()

    @property
    def batch_job_settings(self) -> tuple[str, ...]:
        """Settings that only the batch job's history applies: the dataset must be a pipeline's member."""
        named = [name for name in ("delete_when", "track_history", "track_history_except") if getattr(self, name)]
        return (*named, 'load = "snapshot"') if self.load == "snapshot" else tuple(named)

    def too_many_bad_rows(self, bad_rows: int, rows: int) -> bool:
        """Whether `bad_rows` of `rows` is a greater share than `max_bad_row_ratio`, compared exactly: the ratio
        as written (0.29), not its binary float, by which 29 of 100 was more than 0.29 * 100."""
        return bad_rows > Decimal(repr(self.max_bad_row_ratio)) * rows

    @property
    def bad_row_limit(self) -> str:
        """`max_bad_row_ratio` as a percentage, with the digits it was written with (0.005: 0.5%, 1e-07: 0.00001%)."""
        return f"{(Decimal(repr(self.max_bad_row_ratio)) * 100).normalize():f}%"

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def rule_id(self, column: str, kind: str) -> str:
        """The id a rejected row carries for a column rule, e.g. `customers.email.pattern`."""
        return f"{self.name}.{column}.{kind}"

    def check_id(self, check: Check) -> str:
        return f"{self.name}.check.{check.name}"

    def sql(self, expr: str) -> str:
        """`expr` with every `${param.x}` replaced by the parameter's SQL literal."""
        return _PARAM.sub(lambda found: sql_literal(self.params[found[1]]), expr)

    @property
    def name_regex(self) -> re.Pattern[str]:
        return compile_file_pattern(self.file_pattern)

    def file_name(self, business_date: date) -> str:
        """The name the pattern gives for a date: the contract's spelling of every name it matches that day."""
        return name_on(self.file_pattern, business_date)

    def business_date(self, file_name: str) -> date:
        """The business date in a file name this contract matches; ValueError when it has none."""
        found = self.name_regex.match(file_name)
        if not found:
            raise ValueError(f"{file_name!r} does not match {self.file_pattern!r}")
        return date(int(found["yyyy"]), int(found["mm"]), int(found["dd"]))


def param_problem(value: object, name: str = "x") -> str | None:
    """What keeps `value` from being a parameter (a number, text or true/false that SQL can be given), or None.

    A TOML date is not one: SQL takes it as text, `DATE ${param.x}`. A float that is not finite has no
    literal (`nan` would be read as a column name).
    """
    if isinstance(value, date | time):
        kind, cast = (
            ("date-time", "TIMESTAMP ") if isinstance(value, datetime) else ("date", "DATE ") if isinstance(value, date)
            else ("time", "")
        )  # fmt: skip
        return (
            f"must be a number, text or true/false, not the TOML {kind} {value}: write it in quotes, "
            f'"{value.isoformat()}", and read it as {cast}${{param.{name}}} in the SQL'
        )
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, not {value!r}"
    if isinstance(value, str | int | float | bool):
        return None
    return f"must be a number, text or true/false, not {value!r}"


def sql_literal(value: ParamValue) -> str:
    """A parameter as a Spark SQL literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quoted_name(name: str) -> str:
    """One identifier in backticks, for Spark SQL.

    Every table, column and alias name the jobs write into SQL text goes through here: a column named
    `order`, `end` or `user` is otherwise a syntax error, or the current user, where a session enforces
    the reserved words (spark.sql.ansi.enforceReservedKeywords, which a Databricks workspace may set).
    """
    if "`" in name:
        raise UnsafeSql(f"a table, schema or column name cannot hold a backtick: {name!r}")
    return f"`{name}`"


def date_tokens_once(pattern: str) -> bool:
    """Whether a file or trigger pattern holds {yyyy}, {mm} and {dd}, each once: each is a named group of its
    regex (a second cannot compile), and a name holds one date."""
    return all(pattern.count(token) == 1 for token in _DATE_TOKENS)


def name_on(file_pattern: str, business_date: date) -> str:
    """The name a file or trigger pattern gives for a date."""
    return (
        file_pattern.replace("{yyyy}", f"{business_date:%Y}")
        .replace("{mm}", f"{business_date:%m}")
        .replace("{dd}", f"{business_date:%d}")
    )


@cache
def compile_file_pattern(file_pattern: str) -> re.Pattern[str]:
    """The regex of a file or trigger pattern: a named group per date token, its literal text in any case and
    in either Unicode form. A name typed on macOS may reach storage decomposed (`é` as `e` and a combining
    accent); both spellings are one name (`same_name`). `\\Z`: a name that goes on with a line break is another."""
    parts = re.split(r"(\{yyyy\}|\{mm\}|\{dd\})", unicodedata.normalize("NFC", file_pattern))
    regex = "".join(_DATE_TOKENS.get(part) or "".join(map(_either_form, part)) for part in parts)
    return re.compile(f"^{regex}\\Z", re.IGNORECASE)


def _either_form(char: str) -> str:
    decomposed = unicodedata.normalize("NFD", char)
    return re.escape(char) if decomposed == char else f"(?:{re.escape(char)}|{re.escape(decomposed)})"


def same_name(one: str, other: str) -> bool:
    """Whether two file names are one name as the patterns match them: in any case (as the regex folds it: İ
    and i are one letter) and Unicode form."""
    composed = unicodedata.normalize("NFC", one), unicodedata.normalize("NFC", other)
    return re.fullmatch(re.escape(composed[0]), composed[1], re.IGNORECASE) is not None


def _stem_literal(file_pattern: str) -> str:
    """The pattern's text before its extension and date: tells which dataset a misnamed file meant."""
    return Path(file_pattern).stem.split("{", 1)[0]


def _stem_regex(file_pattern: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(_stem_literal(file_pattern))}", re.IGNORECASE)


class Contracts(Mapping[str, Contract]):
    """The known datasets, by name."""

    def __init__(self, contracts: Mapping[str, Contract]):
        self._by_name = dict(contracts)

    def __getitem__(self, name: str) -> Contract:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def match(self, file_name: str) -> Contract | None:
        """The contract whose file pattern the name matches exactly."""
        for contract in self._by_name.values():
            if contract.name_regex.match(file_name):
                return contract
        return None

    def guess(self, file_name: str) -> Contract | None:
        """The contract a misnamed file most likely meant (same leading literal), for reports. A pattern that
        starts with its date has no such literal: it would claim every unknown file (rejected under its
        name, with a reason about its extension or date)."""
        candidates = [
            c
            for c in self._by_name.values()
            if _stem_literal(c.file_pattern) and _stem_regex(c.file_pattern).match(file_name)
        ]
        return max(candidates, key=lambda c: len(c.file_pattern), default=None)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a contract: where (a TOML key path such as `columns.email.pattern`) and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


def parse_contract(document: Mapping[str, Any], source: Path | None = None) -> Contract:
    """Build a contract from its TOML document, checking it is coherent."""
    contract, problems = read_contract(document, source)
    if problems or contract is None:
        where = str(source) if source else "contract"
        raise ContractError(f"{where}: " + "; ".join(str(problem) for problem in problems))
    return contract


def read_contract(document: Mapping[str, Any], source: Path | None = None) -> tuple[Contract | None, list[Problem]]:
    """The contract and every problem found in it (the contract is None when it cannot be built)."""
    reader = _Reader(document)
    columns = tuple(reader.column(raw, index) for index, raw in enumerate(reader.tables("columns", required=True)))
    params = reader.params()
    contract = Contract(
        name=reader.text("name", required=True),
        file_pattern=reader.text("file_pattern", required=True),
        columns=columns,
        keys=reader.names("keys", required=True),
        sequence_by=reader.text("sequence_by", required=True),
        scd_type=reader.integer("scd_type", 1),
        delimiter=reader.text("delimiter") or ",",
        max_bad_row_ratio=reader.number("max_bad_row_ratio", 0.1),
        description=reader.text("description"),
        source=source,
        target_table=reader.text("target_table"),
        load=reader.text("load") or "incremental",
        unique_keys=reader.flag("unique_keys"),
        multiline_records=reader.flag("multiline_records"),
        params=params,
        checks=tuple(reader.check(raw, index) for index, raw in enumerate(reader.tables("checks"))),
        derived=tuple(reader.derived(raw, index) for index, raw in enumerate(reader.tables("derived"))),
        track_history=reader.names("track_history"),
        track_history_except=reader.names("track_history_except"),
        delete_when=reader.text("delete_when"),
    )
    problems = reader.problems + _contract_problems(contract)
    return (None if problems else contract), problems


class _Reader:
    """Reads a contract document field by field, noting every malformed field instead of stopping."""

    def __init__(self, document: Mapping[str, Any]):
        self.document = document
        self.problems: list[Problem] = []
        known = {
            "name", "file_pattern", "columns", "keys", "sequence_by", "scd_type", "delimiter", "max_bad_row_ratio",
            "description", "target_table", "load", "unique_keys", "multiline_records", "params", "checks", "derived",
            "track_history", "track_history_except", "delete_when", "kind",
        }  # fmt: skip
        for key in document:
            if key not in known:
                self.note(key, "is not a contract field (a typo?)")

    def note(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))

    def text(self, key: str, required: bool = False, within: Mapping[str, Any] | None = None, at: str = "") -> str:
        table = self.document if within is None else within
        where = f"{at}.{key}" if at else key
        if key not in table:
            if required:
                self.note(where, "is missing")
            return ""
        value = table[key]
        if not isinstance(value, str):
            self.note(where, f"must be text, not {value!r}")
            return ""
        return value

    def flag(self, key: str) -> bool:
        value = self.document.get(key, False)
        if not isinstance(value, bool):
            self.note(key, f"must be true or false, not {value!r}")
            return False
        return value

    def integer(self, key: str, default: int) -> int:
        value = self.document.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.note(key, f"must be a whole number, not {value!r}")
            return default
        return value

    def number(self, key: str, default: float) -> float:
        value = self.document.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.note(key, f"must be a number, not {value!r}")
            return default
        return float(value)

    def names(self, key: str, required: bool = False) -> tuple[str, ...]:
        value = self.document.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.note(key, "must be an array of column names")
            return ()
        if required and not value:
            self.note(key, "is missing" if key not in self.document else "must name at least one column")
        return tuple(value)

    def tables(self, key: str, required: bool = False) -> list[Mapping[str, Any]]:
        value = self.document.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.note(key, f"must be an array of tables ([[{key}]])")
            return []
        if required and not value:
            self.note(key, "is missing: a contract lists its columns as [[columns]] tables")
        return value

    def params(self) -> dict[str, ParamValue]:
        raw = self.document.get("params", {})
        if not isinstance(raw, dict):
            self.note("params", "must be a table ([params])")
            return {}
        found: dict[str, ParamValue] = {}
        for name, value in raw.items():
            problem = param_problem(value, name)
            if problem is None:
                found[name] = value
            else:
                self.note(f"params.{name}", problem)
        return found

    def column(self, raw: Mapping[str, Any], index: int) -> Column:
        at = f"columns.{raw.get('name', index)}"
        for key in raw:
            if key not in _COLUMN_FIELDS:
                self.note(f"{at}.{key}", "is not a column field (a typo?)")
        allowed = raw.get("allowed", [])
        if not isinstance(allowed, list):
            self.note(f"{at}.allowed", "must be an array of values")
            allowed = []
        return Column(
            name=self.text("name", True, raw, at),
            type=self.text("type", True, raw, at).strip().lower(),
            nullable=self._column_flag(raw, "nullable", at),
            allowed=tuple(_allowed_text(v, str(raw.get("type", ""))) for v in allowed),
            description=self.text("description", within=raw, at=at),
            pattern=self.text("pattern", within=raw, at=at) or None,
            min=self._bound(raw, "min", at, str(raw.get("type", ""))),
            max=self._bound(raw, "max", at, str(raw.get("type", ""))),
            min_length=self._length(raw, "min_length", at),
            max_length=self._length(raw, "max_length", at),
            severity=self.text("severity", within=raw, at=at).upper() or None,
        )

    def _column_flag(self, raw: Mapping[str, Any], key: str, at: str) -> bool:
        value = raw.get(key, True)
        if not isinstance(value, bool):
            self.note(f"{at}.{key}", f"must be true or false, not {value!r}")
            return True
        return value

    def _bound(self, raw: Mapping[str, Any], key: str, at: str, type_name: str = "") -> str | None:
        if key not in raw:
            return None
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, str | int | float | date | datetime):
            self.note(f"{at}.{key}", f"must be a number or an ISO date or timestamp, not {value!r}")
            return None
        # TOML reads 2025-01-01 as a date; the rules compare text forms, so keep it as ISO text.
        return value.isoformat() if isinstance(value, date | datetime) else _allowed_text(value, type_name)

    def _length(self, raw: Mapping[str, Any], key: str, at: str) -> int | None:
        if key not in raw:
            return None
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.note(f"{at}.{key}", f"must be a whole number of characters, not {value!r}")
            return None
        return value

    def check(self, raw: Mapping[str, Any], index: int) -> Check:
        at = f"checks.{raw.get('name', index)}"
        for key in raw:
            if key not in ("name", "expr", "action", "severity", "description"):
                self.note(f"{at}.{key}", "is not a check field (a typo?)")
        return Check(
            name=self.text("name", True, raw, at),
            expr=self.text("expr", True, raw, at),
            action=self.text("action", within=raw, at=at) or "reject",
            severity=(self.text("severity", within=raw, at=at) or "HIGH").upper(),
            description=self.text("description", within=raw, at=at),
        )

    def derived(self, raw: Mapping[str, Any], index: int) -> Derived:
        at = f"derived.{raw.get('name', index)}"
        for key in raw:
            if key not in ("name", "type", "expr", "bands", "description"):
                self.note(f"{at}.{key}", "is not a derived-column field (a typo?)")
        bands_raw = raw.get("bands", {})
        if not isinstance(bands_raw, dict):
            self.note(f"{at}.bands", "must be a table: { on = COLUMN, default = LABEL, rules = [...] }")
            bands_raw = {}
        for key in bands_raw:
            if key not in ("on", "default", "rules"):
                self.note(f"{at}.bands.{key}", "is not a bands field (a typo?)")
        rules = bands_raw.get("rules", [])
        if not isinstance(rules, list) or not all(isinstance(rule, dict) for rule in rules):
            self.note(f"{at}.bands.rules", "must be an array of { label, min, max } tables")
            rules = []
        for number, rule in enumerate(rules):
            for key in rule:
                if key not in ("label", "min", "max"):
                    self.note(f"{at}.bands.rules.{number}.{key}", "is not a band field (label, min, max; a typo?)")
        bands = tuple(
            Band(
                label=self.text("label", True, rule, f"{at}.bands.rules.{number}"),
                min=self._bound(rule, "min", f"{at}.bands.rules.{number}"),
                max=self._bound(rule, "max", f"{at}.bands.rules.{number}"),
            )
            for number, rule in enumerate(rules)
        )
        default = bands_raw.get("default")
        return Derived(
            name=self.text("name", True, raw, at),
            type=(self.text("type", within=raw, at=at) or ("string" if bands_raw else "")).strip().lower(),
            expr=self.text("expr", within=raw, at=at),
            bands_on=self.text("on", within=bands_raw, at=f"{at}.bands") if bands_raw else "",
            bands=bands,
            default=None if default is None else str(default),
            description=self.text("description", within=raw, at=at),
        )


_COLUMN_FIELDS = (
    "name", "type", "nullable", "allowed", "description", "pattern", "min", "max", "min_length", "max_length",
    "severity",
)  # fmt: skip


def _contract_problems(contract: Contract) -> list[Problem]:
    problems: list[Problem] = []

    def note(where: str, message: str) -> None:
        problems.append(Problem(where, message))

    names = contract.column_names
    for name in sorted({name for name in names if names.count(name) > 1}):
        note(f"columns.{name}", "is declared twice")
    named = [(f"columns.{name}", name) for name in names] + [(f"derived.{d.name}", d.name) for d in contract.derived]
    for where, name in named:
        if _is_reserved(name):
            note(where, f"{name} is a name the job's tables use for their own columns; rename it")
        elif not _NAME.fullmatch(name):
            # Delta compares columns without case: `Email` beside `email` would be one column there.
            note(
                where,
                f"{name!r} must be lower-case letters, digits and underscores; rename it in the files' header too",
            )
    for column in contract.columns:
        problems.extend(_column_problems(column))
    # The jobs select, join and MERGE on the keys: a key twice is a column twice there.
    for key in sorted({key for key in contract.keys if contract.keys.count(key) > 1}):
        note("keys", f"keys lists {key} twice: list it once")
    for key in dict.fromkeys(contract.keys):
        if key not in names:
            note("keys", f"key {key} is not a column")
        elif contract.column(key).nullable:
            note("keys", f"key {key} must not be nullable")
    if contract.sequence_by != BUSINESS_DATE:
        if contract.sequence_by not in names:
            note("sequence_by", f"sequence_by {contract.sequence_by} is not a column (or {BUSINESS_DATE})")
        elif contract.column(contract.sequence_by).nullable:
            # The merge compares sequence values (`s.seq > t.seq`) and SCD2 bounds versions by them; a
            # NULL compares as unknown, so such a row would never update its key nor close a version.
            note("sequence_by", f"sequence_by {contract.sequence_by} must not be nullable (set nullable = false)")
    if contract.scd_type not in (1, 2):
        note("scd_type", "scd_type must be 1 or 2")
    if not 0 <= contract.max_bad_row_ratio <= 1:
        note("max_bad_row_ratio", "max_bad_row_ratio must be between 0 and 1")
    problems.extend(_file_problems(contract))
    if not _NAME.fullmatch(contract.name):
        note("name", "name must be lower-case letters, digits and underscores")
    if contract.target_table and not _NAME.fullmatch(contract.target_table):
        note("target_table", "target_table must be lower-case letters, digits and underscores")
    if contract.load not in LOADS:
        note("load", f"load must be one of {', '.join(LOADS)}, not {contract.load!r}")
    elif contract.load == "snapshot" and contract.scd_type != 2:
        # A key a snapshot lacks is closed as a version on its date; an SCD1 target would keep it for good.
        note("load", 'load = "snapshot" applies to scd_type = 2 only (a key a snapshot lacks closes its version)')
    # A derived column is kept in the target's versions like any other, tracked when track_history names it
    # (`spark_jobs.history.tracked_columns`); track_history_except may name it too, though it is left out anyway.
    versioned = [*names, *(derived.name for derived in contract.derived)]
    for key in ("track_history", "track_history_except"):
        listed = getattr(contract, key)
        for name in listed:
            if name not in versioned:
                note(key, f"{name} is not a column")
        if listed and contract.scd_type != 2:
            note(key, f"{key} applies to scd_type = 2 only")
    if contract.track_history and contract.track_history_except:
        note("track_history", "give track_history or track_history_except, not both")
    problems.extend(_check_problems(contract))
    problems.extend(_derived_problems(contract))
    problems.extend(_param_problems(contract, contract.delete_when, "delete_when"))
    if BUSINESS_DATE in contract.delete_when:
        # The observations a version is rebuilt from keep the row, not the date it was loaded on.
        problems.append(Problem("delete_when", f"delete_when is computed from the row alone, not {BUSINESS_DATE}"))
    return problems


# The job's own columns beside a row's (lineage, verdict, history; `filegate.tables`), and every name
# that starts with an underscore (the job's working columns): a contract column of such a name would
# collide with them in `_stage`, `_rejects` or the target.
_RESERVED = frozenset(
    {tables.REASON, tables.RULES, tables.RAW_LINE, tables.EFFECTIVE_FROM, tables.EFFECTIVE_TO, tables.IS_CURRENT}
)


# A line break ends a row and the quote opens a quoted field, whatever the contract says.
_NOT_DELIMITERS = frozenset({"\n", "\r", '"'})
# The function refuses compressed files (it reads the CSV's first bytes): a pattern ending so matches only refusals.
_COMPRESSED = (".gz", ".zip", ".bz2", ".xz", ".zst", ".7z")


def _file_problems(contract: Contract) -> list[Problem]:
    """A delimiter that cannot split a row, and a file_pattern no file can meet: it is matched, literally,
    against the file's name alone."""
    problems = []
    pattern = contract.file_pattern
    if len(contract.delimiter) != 1:
        problems.append(Problem("delimiter", "delimiter must be one character"))
    elif contract.delimiter in _NOT_DELIMITERS:
        problems.append(
            Problem("delimiter", f"delimiter must not be {contract.delimiter!r}: it ends a row or quotes a field")
        )
    if not date_tokens_once(pattern):
        # Each token is a named group of the name's regex: a second one cannot be compiled, and a name holds one date.
        problems.append(Problem("file_pattern", "file_pattern must contain {yyyy}, {mm} and {dd}, each once"))
    if "/" in pattern or "\\" in pattern:
        problems.append(
            Problem("file_pattern", "file_pattern matches the file's name, not its folder: remove the path")
        )
    problems.extend(Problem("file_pattern", message) for message in literal_text_problems("file_pattern", pattern))
    if pattern.lower().endswith(_COMPRESSED):
        problems.append(
            Problem(
                "file_pattern", "file_pattern ends in a compressed file's extension, and compressed files are refused"
            )
        )
    return problems


def literal_text_problems(key: str, pattern: str) -> list[str]:
    """What a file or trigger pattern holds that matches only itself: it is literal text but for the date's tokens."""
    problems = []
    literal = f"{key} is literal text and {{yyyy}}, {{mm}}, {{dd}}"
    if any(char in pattern for char in "*?"):
        problems.append(f"{literal}: * and ? match only themselves, not any text")
    # {hh} or {seq} for an hour or a sequence number: not a placeholder, so no real name has it.
    unknown = [token for token in re.findall(r"\{[^{}]*\}", pattern) if token not in _DATE_TOKENS]
    unknown += [group for group in re.findall(r"\[[^\[\]]*\]", pattern) if _is_regex_class(group)]
    if unknown := list(dict.fromkeys(unknown)):
        verb = "matches only itself" if len(unknown) == 1 else "match only themselves"
        problems.append(f"{literal}: {', '.join(unknown)} {verb}, not any text")
    if pattern != pattern.strip():
        problems.append(
            f"{key} {pattern!r} starts or ends with whitespace, which a file's name most likely does not: "
            f"write {pattern.strip()!r}"
        )
    return problems


# A regex class of ranges (`[0-9]`, `[A-Za-z0-9_]`): nothing else inside the brackets, so that a name's own
# brackets stay its text (`[eu]`, `[2020-2029]`).
_REGEX_CLASS = re.compile(r"\[\^?(?:[0-9]-[0-9]|[a-z]-[a-z]|[A-Z]-[A-Z]|[_.-])+\]")


def _is_regex_class(group: str) -> bool:
    """Whether `[...]` reads as a regex class: ranges only, each ascending."""
    ranges = re.findall(r"[0-9]-[0-9]|[a-z]-[a-z]|[A-Z]-[A-Z]", group)
    return bool(_REGEX_CLASS.fullmatch(group)) and all(found[0] < found[2] for found in ranges)


def _is_reserved(name: str) -> bool:
    return name.startswith("_") or name.lower() in _RESERVED


def _check_problems(contract: Contract) -> list[Problem]:
    problems: list[Problem] = []
    for check in contract.checks:
        where = f"checks.{check.name}"
        if not _NAME.fullmatch(check.name):
            problems.append(Problem(where, "a check's name must be lower-case letters, digits and underscores"))
        if check.action not in CHECK_ACTIONS:
            problems.append(Problem(where, f"action must be one of {', '.join(CHECK_ACTIONS)}, not {check.action!r}"))
        if check.severity not in SEVERITIES:
            problems.append(Problem(where, f"severity must be one of {', '.join(SEVERITIES)}, not {check.severity!r}"))
        problems.extend(_param_problems(contract, check.expr, where))
        if "check" in contract.column_names and check.name in contract.column("check").rule_kinds:
            # Both would report as `<dataset>.check.<kind>` in validation_results, their counts added up.
            clash = f"shares its rule id {contract.check_id(check)} with column check's {check.name} rule; rename it"
            problems.append(Problem(where, clash))
    names = [check.name for check in contract.checks]
    problems.extend(
        Problem(f"checks.{name}", "is declared twice") for name in sorted({n for n in names if names.count(n) > 1})
    )
    return problems


def _derived_problems(contract: Contract) -> list[Problem]:
    problems: list[Problem] = []
    seen = set(contract.column_names)
    for derived in contract.derived:
        where = f"derived.{derived.name}"
        if derived.name in seen:
            problems.append(Problem(where, f"{derived.name} clashes with a column of the same name"))
        seen.add(derived.name)
        if not _is_type(derived.type):
            problems.append(Problem(where, f"unknown type {derived.type!r}"))
        elif unheld := _unheld_decimal(derived.type):
            problems.append(Problem(where, unheld))
        if bool(derived.expr) == bool(derived.bands_on):
            problems.append(Problem(where, "give either expr or bands"))
        if derived.bands_on:
            problems.extend(_band_problems(contract, derived, where))
        problems.extend(_param_problems(contract, derived.expr, where))
        if BUSINESS_DATE in derived.expr:
            # A value that moves with the date would open an SCD2 version every day without a change.
            problems.append(
                Problem(where, f"a derived column is computed from the row alone; {BUSINESS_DATE} belongs in checks")
            )
    return problems


def _is_type(type_name: str) -> bool:
    return type_name in SCALAR_TYPES or bool(_DECIMAL_TYPE.match(type_name))


def _unheld_decimal(type_name: str) -> str | None:
    """Why a decimal type is one Spark and Delta cannot hold (1 to 38 digits, the scale's among them), if it is."""
    decimal = _DECIMAL_TYPE.match(type_name)
    if decimal is None:
        return None
    precision, scale = int(decimal.group(1)), int(decimal.group(2))
    if 1 <= precision <= 38 and scale <= precision:
        return None
    return f"{type_name} is not a decimal Spark holds: precision 1 to 38, scale at most it"


def _column_problems(column: Column) -> list[Problem]:
    at = f"columns.{column.name}"
    problems: list[Problem] = []
    if not _is_type(column.type):
        return [Problem(at, f"column {column.name} has unknown type {column.type!r}")]
    if unheld := _unheld_decimal(column.type):
        problems.append(Problem(at, unheld))
    if column.pattern is not None:
        try:
            shared_pattern(column.pattern)
        except ContractError as exc:
            problems.append(Problem(f"{at}.pattern", str(exc)))
    for key in ("min", "max"):
        bound = getattr(column, key)
        if bound is None:
            continue
        if column.type in ("string", "boolean"):
            problems.append(
                Problem(f"{at}.{key}", f"{key} applies to numbers, dates and timestamps, not {column.type}")
            )
        elif Column("bound", column.type).check_text(bound) is not None:
            problems.append(Problem(f"{at}.{key}", f"{bound!r} is not a {column.type}"))
    if (
        column.min is not None
        and column.max is not None
        and not problems
        and typed_value(column.type, column.min) > typed_value(column.type, column.max)
    ):
        problems.append(Problem(at, f"min {column.min} is above max {column.max}"))
    if column.min_length is not None and column.max_length is not None and column.min_length > column.max_length:
        problems.append(Problem(at, f"min_length {column.min_length} is above max_length {column.max_length}"))
    if column.severity is not None and column.severity not in SEVERITIES:
        problems.append(Problem(f"{at}.severity", f"must be one of {', '.join(SEVERITIES)}"))
    return problems


def _band_problems(contract: Contract, derived: Derived, where: str) -> list[Problem]:
    if derived.bands_on not in contract.column_names:
        return [Problem(f"{where}.bands.on", f"{derived.bands_on} is not a column")]
    on = contract.column(derived.bands_on)
    problems = []
    if not derived.bands:
        problems.append(Problem(f"{where}.bands.rules", "lists no band"))
    for band in derived.bands:
        for bound in (band.min, band.max):
            if bound is None:
                continue
            resolved = _resolved_bound(contract, bound)
            if resolved is None:
                problems.append(Problem(f"{where}.bands", f"band {band.label}: unknown parameter in {bound!r}"))
            elif Column("bound", on.type).check_text(resolved) is not None:
                problems.append(Problem(f"{where}.bands", f"band {band.label}: {bound!r} is not a {on.type}"))
    return problems


def _resolved_bound(contract: Contract, bound: str) -> str | None:
    """A band bound with `${param.x}` replaced by the parameter's value, or None for an unknown one."""
    found = _PARAM.fullmatch(bound)
    if found is None:
        return bound
    value = contract.params.get(found[1])
    return None if value is None else str(value)


def band_bound(contract: Contract, bound: str) -> str:
    """A band bound as text of its column's type."""
    resolved = _resolved_bound(contract, bound)
    if resolved is None:
        raise ContractError(f"{contract.name}: unknown parameter in band bound {bound!r}")
    return resolved


def _param_problems(contract: Contract, expr: str, where: str) -> list[Problem]:
    return [
        Problem(where, f"${{param.{name}}} is not in [params]")
        for name in _PARAM.findall(expr)
        if name not in contract.params
    ]


def read_toml(path: Path) -> dict[str, Any]:
    """A contract or pipeline file's document; ContractError naming the file and the spot when it is not TOML."""
    try:
        # A byte-order mark (Windows editors write one) is not TOML, but says nothing wrong about the file.
        return tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ContractError(f"{path}: not UTF-8 text ({exc}); save it as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ContractError(f"{path}: not valid TOML ({exc}); `filegate check {path}` says more") from exc


def load_contract(path: Path) -> Contract:
    return parse_contract(read_toml(path), source=path)


def folder_problem(directory: Path) -> str:
    """Why a contracts folder cannot be read, or "" when it can."""
    return "" if directory.is_dir() else f"the contracts folder {directory} does not exist or is not a folder"


def distinct_folders(*directories: Path) -> list[Path]:
    """The folders, each once however it is spelt: FILEGATE_CONTRACTS_DIR may name the built-in one, whose
    files read twice would each be taken for a second definition of itself."""
    seen: set[Path] = set()
    distinct = []
    for directory in directories:
        if directory.resolve() not in seen:
            seen.add(directory.resolve())
            distinct.append(directory)
    return distinct


@cache
def load_contracts(*directories: Path) -> Contracts:
    """Every `*.toml` contract in the built-in datasets folder and the given folders."""
    found: dict[str, Contract] = {}
    for directory in distinct_folders(BUILTIN_DATASETS, *directories):
        if problem := folder_problem(directory):
            # A mistyped FILEGATE_CONTRACTS_DIR would leave every dataset of it unknown: each file rejected.
            raise ContractError(problem)
        for path in sorted(directory.glob("*.toml")):
            if _kind(path) != "dataset":
                continue
            contract = load_contract(path)
            earlier = found.get(contract.name)
            # A user's folder may replace a built-in dataset of the same name (theirs came first);
            # two of the user's own files naming one dataset is a mistake, and so are two built-in ones (a
            # stale copy left in a package): either way the later would win without a word.
            replaces_builtin = is_builtin(earlier.source if earlier else None) and not is_builtin(path)
            if earlier is not None and earlier.source != path and not replaces_builtin:
                raise ContractError(f"dataset {contract.name} is defined twice: {earlier.source} and {path}")
            found[contract.name] = contract
    # The user's file named first: a built-in one is not theirs to change.
    clashes = sorted(pattern_clashes(found.values()), key=lambda pair: is_builtin(pair[0].source))
    if clashes:
        one, other = clashes[0]
        raise ContractError(f"{one.source or one.name}: {clash_message(one, other)}")
    return Contracts(found)


def patterns_overlap(one: str, other: str) -> bool:
    """Whether some file name matches both patterns (of literal text and {yyyy}, {mm}, {dd}).

    Both are fixed-width and matched without regard to case, so they overlap exactly when they are as
    long and each position agrees: the same letter, or a digit where the other has a date digit. (A
    literal 1 against a date's day digit is an overlap on the 1st, 11th, 21st and 31st.)
    """
    first, second = _positions(one), _positions(other)
    return len(first) == len(second) and all(_agree(a, b) for a, b in zip(first, second, strict=True))


def _agree(one: str | None, other: str | None) -> bool:
    """Whether a character of a name can stand at a position of both patterns (None: a date digit)."""
    if one is None or other is None:
        given = other if one is None else one
        return given is None or given in "0123456789"  # the date's [0-9]: not ² or a fullwidth digit
    return same_name(one, other)


def _positions(pattern: str) -> list[str | None]:
    """The pattern's characters as `compile_file_pattern` reads them (composed: é is one, whichever form it was
    written in), with each date digit as None."""
    positions: list[str | None] = []
    rest = unicodedata.normalize("NFC", pattern)
    while rest:
        token = next((t for t in _DATE_TOKENS if rest.startswith(t)), None)
        if token is None:
            positions.append(rest[0])
            rest = rest[1:]
        else:
            positions.extend([None] * (len(token) - 2))  # {yyyy}: four digits, {mm} and {dd}: two
            rest = rest[len(token) :]
    return positions


def pattern_clashes(contracts: Iterable[Contract]) -> list[tuple[Contract, Contract]]:
    """Each pair of datasets whose file_patterns some file name matches both of.

    Every file goes to the first contract it matches, so the other would never get it, without a
    word: a copied contract whose pattern was left as it was, say.
    """
    by_name = {contract.name: contract for contract in contracts}
    return [(by_name[a], by_name[b]) for a, b in overlapping({n: c.file_pattern for n, c in by_name.items()})]


def overlapping(patterns: Mapping[str, str]) -> list[tuple[str, str]]:
    """Each pair of names (in both orders) whose patterns some name matches both of (`patterns_overlap`)."""
    return [
        (one, other)
        for one, mine in patterns.items()
        for other, theirs in patterns.items()
        if one != other and patterns_overlap(mine, theirs)
    ]


def clash_message(one: Contract, other: Contract) -> str:
    return (
        f"the file_pattern of {one.name} ({one.file_pattern}) also matches the files of {other.name} "
        f"({other.file_pattern}): every file would go to one of them; give each dataset a pattern of its own"
    )


def is_builtin(path: Path | None) -> bool:
    """Whether a contract or pipeline file is one of the built-in datasets' (a user's file may replace those)."""
    return path is not None and path.parent.resolve() == BUILTIN_DATASETS.resolve()


KINDS = ("dataset", "pipeline")


def kind_problem(kind: object) -> str | None:
    """Why a TOML file's `kind` is none Filegate reads; None for dataset and pipeline. A file of another
    kind would be left out without a word, and every file of its dataset rejected as unknown."""
    if kind in KINDS:
        return None
    return f"kind must be {' or '.join(repr(k) for k in KINDS)}, not {kind!r}"


def _kind(path: Path) -> str:
    """A TOML file's `kind` (dataset unless it says otherwise); pipelines live beside datasets."""
    kind = read_toml(path).get("kind", "dataset")
    problem = kind_problem(kind)
    if problem is not None:
        raise ContractError(f"{path}: {problem}")
    return str(kind)


def _utc_timestamp(text: str) -> datetime:
    """Parse a contract timestamp; a value without offset is UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
