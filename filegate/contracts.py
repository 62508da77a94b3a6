"""Dataset contracts: the declarative description of each dataset, shared by function and Spark job."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

from filegate.errors import ContractError

BUILTIN_DATASETS = Path(__file__).with_name("datasets")

SCALAR_TYPES = ("string", "long", "double", "boolean", "date", "timestamp")
_DECIMAL_TYPE = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")

# The text forms a value may take in a file. The Spark job checks rows with the same expressions
# (`rlike`), so a file the function accepts parses the same way in the job.
TEXT_PATTERNS: Mapping[str, str] = {
    "long": r"^[+-]?[0-9]{1,18}$",
    "double": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$",
    "boolean": r"^(?i)(true|false)$",
    "date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    # Offsets up to +/-18:00, the most Spark (java.time.ZoneOffset) accepts; Python would take up to 23:59.
    "timestamp": (
        r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
        r"(Z|[+-](0[0-9]|1[0-7]):[0-5][0-9]|[+-]18:00)?$"
    ),
}
_PY_PATTERNS = {name: re.compile(pattern.replace("^(?i)", "(?i)^")) for name, pattern in TEXT_PATTERNS.items()}

_DATE_TOKENS = {"{yyyy}": r"(?P<yyyy>[0-9]{4})", "{mm}": r"(?P<mm>[0-9]{2})", "{dd}": r"(?P<dd>[0-9]{2})"}


def decimal_pattern(precision: int, scale: int) -> str:
    """Text form of a decimal(precision, scale): no more digits than the type holds, no rounding."""
    whole = precision - scale
    fraction = rf"(\.[0-9]{{1,{scale}}})?" if scale else ""
    return rf"^[+-]?[0-9]{{1,{max(whole, 1)}}}{fraction}$"


@dataclass(frozen=True)
class Column:
    """One column of a dataset: its name, type, nullability and allowed values."""

    name: str
    type: str
    nullable: bool = True
    allowed: tuple[str, ...] = ()
    description: str = ""

    @property
    def text_pattern(self) -> str | None:
        """The regular expression a non-empty value must match, or None for free text."""
        return _text_pattern(self.type)

    def check_text(self, text: str) -> str | None:
        """Why `text` is not a valid value of this column, or None when it is."""
        if text == "":
            return None if self.nullable else f"{self.name} is empty but required"
        if self.allowed and text not in self.allowed:
            return f"{self.name} value {text!r} is not one of {', '.join(self.allowed)}"
        regex = _text_regex(self.type)
        if regex is not None:
            if not regex.match(text):
                return f"{self.name} value {text!r} is not a valid {self.type}"
            problem = _check_calendar(self.type, text)
            if problem:
                return f"{self.name} value {text!r} {problem}"
        return None


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
    return _PY_PATTERNS.get(type_name) or re.compile(pattern)


def _check_calendar(type_name: str, text: str) -> str | None:
    """Shape is right; catch impossible dates and times such as 2024-02-30, or year 0.

    A real date or time lies in the years 1 to 9999, for a timestamp once moved to UTC: what Python
    (and so every reader of the tables in Python) can represent. The Spark job applies the same
    bounds (`spark_jobs.validation.column_reason`); Spark's own cast would accept year 0.
    """
    try:
        if type_name == "date":
            date.fromisoformat(text)
        elif type_name == "timestamp":
            utc_timestamp(text).astimezone(UTC)
        elif type_name.startswith("decimal"):
            Decimal(text)
    except (ValueError, InvalidOperation, OverflowError):
        return f"is not a real {type_name}"
    return None


@dataclass(frozen=True)
class Contract:
    """A dataset: how its files are named and what their rows hold."""

    name: str
    file_pattern: str
    columns: tuple[Column, ...]
    keys: tuple[str, ...]
    sequence_by: str
    scd_type: int = 1
    delimiter: str = ","
    # A file whose sampled rows fail more often than this is rejected whole; below it, bad rows
    # travel on and the Spark job routes them to the rejects table with their reasons.
    max_bad_row_ratio: float = 0.1
    description: str = ""
    source: Path | None = field(default=None, compare=False)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def extension(self) -> str:
        """The file extension the pattern demands, e.g. `.csv`."""
        return Path(self.file_pattern).suffix.lower()

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def name_regex(self) -> re.Pattern[str]:
        return _compile_file_pattern(self.file_pattern)

    def business_date(self, file_name: str) -> date:
        """The business date in a file name this contract matches; ValueError when it has none."""
        found = self.name_regex.match(file_name)
        if not found:
            raise ValueError(f"{file_name!r} does not match {self.file_pattern!r}")
        return date(int(found["yyyy"]), int(found["mm"]), int(found["dd"]))


@cache
def _compile_file_pattern(file_pattern: str) -> re.Pattern[str]:
    regex = re.escape(file_pattern)
    for token, group in _DATE_TOKENS.items():
        regex = regex.replace(re.escape(token), group)
    return re.compile(f"^{regex}$", re.IGNORECASE)


def _stem_regex(file_pattern: str) -> re.Pattern[str]:
    """The pattern without its extension and date: tells which dataset a misnamed file meant."""
    literal = Path(file_pattern).stem.split("{", 1)[0]
    return re.compile(rf"^{re.escape(literal)}", re.IGNORECASE)


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
        """The contract a misnamed file most likely meant (same leading literal), for reports."""
        candidates = [c for c in self._by_name.values() if _stem_regex(c.file_pattern).match(file_name)]
        return max(candidates, key=lambda c: len(c.file_pattern), default=None)


def parse_contract(document: Mapping[str, Any], source: Path | None = None) -> Contract:
    """Build a contract from its TOML document, checking it is coherent."""
    where = str(source) if source else "contract"
    try:
        columns = tuple(
            Column(
                name=str(raw["name"]),
                type=str(raw["type"]).strip().lower(),
                nullable=bool(raw.get("nullable", True)),
                allowed=tuple(str(v) for v in raw.get("allowed", ())),
                description=str(raw.get("description", "")),
            )
            for raw in _table_list(document["columns"])
        )
        contract = Contract(
            name=str(document["name"]),
            file_pattern=str(document["file_pattern"]),
            columns=columns,
            keys=tuple(str(k) for k in _str_list(document["keys"])),
            sequence_by=str(document["sequence_by"]),
            scd_type=int(str(document.get("scd_type", 1))),
            delimiter=str(document.get("delimiter", ",")),
            max_bad_row_ratio=float(str(document.get("max_bad_row_ratio", 0.1))),
            description=str(document.get("description", "")),
            source=source,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ContractError(f"{where}: missing or malformed field {exc}") from exc
    problems = _contract_problems(contract)
    if problems:
        raise ContractError(f"{where}: " + "; ".join(problems))
    return contract


def _table_list(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise TypeError("columns must be an array of tables")
    return value


def _str_list(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise TypeError("keys must be a non-empty array")
    return [str(v) for v in value]


def _contract_problems(contract: Contract) -> list[str]:
    problems = []
    names = contract.column_names
    if len(set(names)) != len(names):
        problems.append("column names repeat")
    for column in contract.columns:
        if column.type not in SCALAR_TYPES and not _DECIMAL_TYPE.match(column.type):
            problems.append(f"column {column.name} has unknown type {column.type!r}")
    for key in contract.keys:
        if key not in names:
            problems.append(f"key {key} is not a column")
        elif contract.column(key).nullable:
            problems.append(f"key {key} must not be nullable")
    if contract.sequence_by not in names:
        problems.append(f"sequence_by {contract.sequence_by} is not a column")
    elif contract.column(contract.sequence_by).nullable:
        # The merge compares sequence values (`s.seq > t.seq`) and SCD2 bounds versions by them; a
        # NULL compares as unknown, so such a row would never update its key nor close a version.
        problems.append(f"sequence_by {contract.sequence_by} must not be nullable (set nullable = false)")
    if contract.scd_type not in (1, 2):
        problems.append("scd_type must be 1 or 2")
    if not 0 <= contract.max_bad_row_ratio <= 1:
        problems.append("max_bad_row_ratio must be between 0 and 1")
    if len(contract.delimiter) != 1:
        problems.append("delimiter must be one character")
    if not all(token in contract.file_pattern for token in _DATE_TOKENS):
        problems.append("file_pattern must contain {yyyy}, {mm} and {dd}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", contract.name):
        problems.append("name must be lower-case letters, digits and underscores")
    return problems


def load_contract(path: Path) -> Contract:
    with path.open("rb") as handle:
        return parse_contract(tomllib.load(handle), source=path)


@cache
def load_contracts(*directories: Path) -> Contracts:
    """Every `*.toml` contract in the built-in datasets folder and the given folders."""
    found: dict[str, Contract] = {}
    for directory in (BUILTIN_DATASETS, *directories):
        for path in sorted(directory.glob("*.toml")):
            contract = load_contract(path)
            if contract.name in found and found[contract.name].source != path:
                raise ContractError(f"dataset {contract.name} is defined twice: {path}")
            found[contract.name] = contract
    return Contracts(found)


def utc_timestamp(text: str) -> datetime:
    """Parse a contract timestamp; a value without offset is UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
