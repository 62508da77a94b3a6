"""Reading a contract's file as raw lines and splitting them into typed rows and rejects."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from filegate.contracts import (
    DOUBLE_OUT_OF_RANGE,
    SHOWN_ESCAPES,
    Column,
    Contract,
    quoted_name,
    sql_literal,
    typed_value,
)
from filegate.errors import FilegateError
from filegate.patterns import shared_pattern
from filegate.validation import (
    QUOTED_FIELD,
    line_break_reason,
    max_counted_fields,
    not_well_formed_reason,
    open_record_pattern,
    record_pattern,
    well_formed_pattern,
)
from spark_jobs.columns import RAW_LINE as RAW_COLUMN
from spark_jobs.columns import REASON as REASON_COLUMN
from spark_jobs.columns import RULES, SHAPE_OK, spark_type_name

_FIELD_COUNT = "_field_count"
_MAX_PARSED_DELIMITERS = 20_000
_WELL_FORMED = "_well_formed"
# Whether a record holds a NUL byte (`parse_fields`): asked once per line, read by three rules.
_HOLDS_NUL = "_holds_nul"
_VERDICTS = "_verdicts"
_SHAPE_REASON = "_shape_reason"
_SHAPE_RULE = "_shape_rule"
_RULE = "rule"
_REASON = "reason"
_VERDICT_TYPE = f"struct<{_RULE}: string, {_REASON}: string>"
# Appended to a line as one more field before parsing: the parser puts it where the line's own fields
# end, so its position is the field count as the very parser that reads the values sees it. Searched
# for from the end, so a field of the line that happens to hold the same text comes before it. Control
# characters only, and the first that does not hold the contract's delimiter (which may be any one
# character): a marker the delimiter splits would never be found.
_END_MARKERS = ("\u0001\u0002\u0003", "\u0004\u0005\u0006")
# Whether a record's bytes are UTF-8 (`read_lines`); the parser reads other bytes as U+FFFD.
_UTF8 = "_utf8"
_BLOCK = "_block"
_POSITION = "_position"


# Why a row whose bytes are not UTF-8 is rejected (the function rejects a file whose sample holds such bytes).
NOT_UTF8 = "row holds bytes that are not UTF-8 (raw_line shows them as U+FFFD): save the file as UTF-8"
# Why a row holding a NUL byte is rejected (the function rejects a file whose sample holds one): text that
# readers of the table, and the tools they export to, cut or refuse at the NUL.
NUL_BYTES = "row holds NUL bytes: binary data, not CSV text"
# A NUL anywhere in a record, as a Java regex (no NUL in the pattern's own text).
_NUL = "\\x00"


class HeaderMismatch(FilegateError):
    """The file's first line is not the contract's column list."""


@dataclass(frozen=True)
class SplitRows:
    """A file's data rows: those that passed every rule (typed) and those that did not."""

    # Every row: typed columns (NULL where the text is not a value), reason (NULL when good), raw text.
    checked: DataFrame
    good: DataFrame
    rejects: DataFrame


def opens_a_record(line: SparkColumn, delimiter: str) -> SparkColumn:
    """Whether a line ends inside a quoted field it opened (`filegate.validation.open_record_pattern`)."""
    return line.rlike(open_record_pattern(delimiter))


def split_records(text: SparkColumn, delimiter: str) -> SparkColumn:
    """The records of a whole file's text (see `record_pattern`), each without its line break."""
    return F.regexp_extract_all(text, F.lit(f"({record_pattern(delimiter)})(?:\r\n|\n|\r|$)"), F.lit(1))


def read_lines(spark: SparkSession, path: str, contract: Contract, *, joined: bool = False) -> DataFrame:
    """The file's data records as one `raw_line` column, checked against the contract's header.

    A record is a line, or with `multiline_records` a line whose quoted fields may run over line
    breaks; such a file is read whole into one value and split into records by `record_pattern`, so keep
    those files to what one task's memory holds (a catalogue, not a transaction log). `joined` (without
    `multiline_records`): a line that opens a quoted field and the next line that closes it are one record
    (`_join_broken_lines`), which `split_rows` rejects as the function's validator counts it: one bad row,
    where the line after the break was a row of its own.

    Bytes that are not UTF-8 are read as U+FFFD by the parser; `_utf8` says so of each record, and
    the record is rejected for it (`split_rows`) rather than staged with its text changed.
    """
    if contract.multiline_records:
        whole = spark.read.text(_literal_path(path), wholetext=True)
        # The records are split from the file's text, where other bytes already read as U+FFFD: a record
        # holding U+FFFD in a file that is not all UTF-8 is taken for one that held such bytes.
        lines = whole.select(
            F.posexplode(split_records(F.col("value"), contract.delimiter)).alias(_POSITION, RAW_COLUMN),
            F.is_valid_utf8("value").alias("_file_utf8"),
        ).select(
            F.lit(0).cast("long").alias(_BLOCK),
            _POSITION,
            RAW_COLUMN,
            (F.col("_file_utf8") | ~F.col(RAW_COLUMN).contains("\ufffd")).alias(_UTF8),
        )
    else:
        # The file's first line is the first row of the split that starts at its byte 0, whichever partition
        # Spark gives that split (usually the first): a split as long as Spark makes them fills its
        # partition alone, and a partition's rows come in file order.
        lines = spark.read.text(_literal_path(path)).select(
            F.col("_metadata.file_block_start").alias(_BLOCK),
            F.monotonically_increasing_id().alias(_POSITION),
            F.make_valid_utf8("value").alias(RAW_COLUMN),
            F.is_valid_utf8("value").alias(_UTF8),
        )
    first = lines.where(F.col(_BLOCK) == 0).first()
    if first is None:
        return lines.limit(0).drop(_BLOCK, _POSITION)
    # A byte-order mark belongs to the file, not to its first column name. On any other line it is the
    # line's text, as the function's validator (Python's `utf-8-sig` codec) reads it.
    header = first[RAW_COLUMN].removeprefix("\ufeff")
    expected = contract.column_names
    found = tuple(name.strip().strip('"').strip().lower() for name in header.split(contract.delimiter))
    if found != tuple(name.lower() for name in expected):
        raise HeaderMismatch(f"header {header!r} does not list the columns {', '.join(expected)} in order")
    # Only the first line is the header: one repeated further down (files concatenated) is a row, whose
    # values are rejected with their rules, as the function's validator counts it a bad row. Empty lines
    # are skipped as Python's csv module skips them. A line of spaces is a row of one field there, so
    # it is one here too, and its shape is rejected on both sides rather than vanishing here.
    header_row = (F.col(_BLOCK) == 0) & (F.col(_POSITION) == first[_POSITION])
    rows = lines.where(~header_row & (F.col(RAW_COLUMN) != F.lit("")))
    if joined and not contract.multiline_records:
        rows = _join_broken_lines(rows, contract)
    return rows.drop(_BLOCK, _POSITION)


def _literal_path(path: str) -> str:
    """The path as Spark reads exactly that file: it reads a path as a Hadoop glob, in which a name's own `[eu]` or
    `{x}` is a pattern that matches other names (the file is then not found), so those characters are escaped."""
    return re.sub(r"([\\\[\]{}*?])", r"\\\1", path)


def _join_broken_lines(lines: DataFrame, contract: Contract) -> DataFrame:
    """Each line that opens a quoted field (`opens_a_record`) joined with the next line, when the two make a
    well-formed record (the field's quote closes on it, as Python's csv reads them): one record holding the
    line break; the next line is then no row of its own.

    Only the next line: a stray quote never closed stays the one bad line it was (a read of records would let
    it swallow every line up to the next quote anywhere in the file), and no file is read whole. Lines read in
    a split follow each other in `_position` (`monotonically_increasing_id` counts within a partition); a line
    broken across two splits, or a field over three lines or more, stays lines. Read only for the rare file
    with such a line (`stage.stage_file`): the small sides are broadcast.
    """
    opened = lines.where(opens_a_record(F.col(RAW_COLUMN), contract.delimiter)).select(
        F.col(_BLOCK).alias("_open_block"),
        (F.col(_POSITION) + 1).alias("_open_next"),
        F.col(RAW_COLUMN).alias("_open_line"),
        F.col(_UTF8).alias("_open_utf8"),
    )
    record = F.concat(F.col("_open_line"), F.lit("\n"), F.col(RAW_COLUMN))
    next_line = (F.col(_BLOCK) == F.col("_open_block")) & (F.col(_POSITION) == F.col("_open_next"))
    pairs = (
        lines.join(F.broadcast(opened), next_line)
        .where(record.rlike(well_formed_pattern(contract.delimiter)))
        .select(
            F.col(_BLOCK).alias("_close_block"),
            F.col(_POSITION).alias("_close_position"),
            record.alias("_record"),
            (F.col(_UTF8) & F.col("_open_utf8")).alias("_record_utf8"),
        )
    )
    # A line that closes the line before it opens no record itself: in `"`, `"`, `"` the second line closes
    # the first and would be joined to the third, and the third, taken out as the second's closing line, was
    # then in no record at all. `filegate.validation._line_records` pairs lines by the same rule.
    closers = pairs.select(F.col("_close_block").alias("_closer_block"), F.col("_close_position").alias("_closer"))
    opened_by_a_closer = (F.col("_close_block") == F.col("_closer_block")) & (
        F.col("_close_position") - 1 == F.col("_closer")
    )
    closing = pairs.join(F.broadcast(closers), opened_by_a_closer, "left_anti")
    block, position = F.col(_BLOCK) == F.col("_close_block"), F.col(_POSITION)
    kept = lines.join(F.broadcast(closing), block & (position == F.col("_close_position")), "left_anti")
    return kept.join(F.broadcast(closing), block & (position == F.col("_close_position") - 1), "left").select(
        _BLOCK,
        _POSITION,
        F.coalesce(F.col("_record"), F.col(RAW_COLUMN)).alias(RAW_COLUMN),
        F.coalesce(F.col("_record_utf8"), F.col(_UTF8)).alias(_UTF8),
    )


def _occurrences(text: SparkColumn, delimiter: str) -> SparkColumn:
    """How many times `delimiter` occurs in `text`."""
    removed = F.length(text) - F.length(F.replace(text, F.lit(delimiter), F.lit("")))
    return F.floor(removed / F.lit(len(delimiter)))


def parse_fields(lines: DataFrame, contract: Contract) -> DataFrame:
    """One text column per contract column ("" when empty or missing), the field count and `raw_line`.

    The count comes from the same parse as the values (see `_END_MARKERS`), so a quote inside a field
    (`12" crate`) or a delimiter inside a quoted one never makes the two disagree.
    """
    width = max_counted_fields(contract) + 1
    slots = [f"c{index}" for index in range(width)]
    fields = StructType([StructField(name, StringType()) for name in slots])
    options = {
        # Spark reads `sep` with escapes (`\t` is a tab, a lone backslash refused): a backslash is written twice.
        "sep": contract.delimiter.replace("\\", "\\\\"),
        # RFC 4180 quoting, as Python's csv module (the function's validator) reads it.
        "quote": '"',
        "escape": '"',
        "mode": "PERMISSIVE",
    }
    marker = next(marker for marker in _END_MARKERS if contract.delimiter not in marker)
    marked = F.concat(F.col(RAW_COLUMN), F.lit(contract.delimiter + marker))
    # The parser fails the whole read on a record of more fields than it holds (univocity's maxColumns,
    # 20480): a line with that many delimiters outside quoted fields is not parsed, and counts as too
    # many fields. Quoted fields are taken out for the count only when the line has that many in all.
    limit = F.lit(_MAX_PARSED_DELIMITERS)
    unquoted = F.regexp_replace(F.col(RAW_COLUMN), F.lit(QUOTED_FIELD), F.lit(""))
    wide = F.when(_occurrences(F.col(RAW_COLUMN), contract.delimiter) < limit, F.lit(False)).otherwise(
        _occurrences(unquoted, contract.delimiter) >= limit
    )
    marked = F.when(~wide, marked)
    parsed = lines.select(
        F.col(RAW_COLUMN),
        _UTF8,
        F.col(RAW_COLUMN).rlike(well_formed_pattern(contract.delimiter)).alias(_WELL_FORMED),
        F.col(RAW_COLUMN).rlike(_NUL).alias(_HOLDS_NUL),
        # Through a generator, so that the parse runs once per line: the optimizer would otherwise
        # inline `from_csv` into every field taken out of its result.
        F.explode(F.array(F.from_csv(marked, fields.simpleString(), options))).alias("f"),
    )
    values = F.array(*(F.col(f"f.{name}") for name in slots))
    # array_position is 1-based: the marker at position k from the end follows width - k fields; 0 means
    # more fields than fit.
    position = F.array_position(F.reverse(values), F.lit(marker))
    # The CSV reader turns empty fields into NULL; the rules work on text, where empty is "".
    return parsed.select(
        RAW_COLUMN,
        _UTF8,
        _WELL_FORMED,
        _HOLDS_NUL,
        F.when(position > 0, width - position).alias(_FIELD_COUNT),
        *(
            F.coalesce(F.col(f"f.{slot}"), F.lit("")).alias(name)
            for slot, name in zip(slots, contract.column_names, strict=False)
        ),
    )


def _shown(value: str) -> str:
    """How the function's reasons show a value (`contracts.shown`): in single quotes, backslashes and line
    breaks escaped."""
    quote = sql_literal("'")
    for char, escaped in SHOWN_ESCAPES:
        value = f"replace({value}, {sql_literal(char)}, {sql_literal(escaped)})"
    return f"concat({quote}, {value}, {quote})"


def _typed_literal(type_name: str, text: str) -> str:
    """A min or max bound as the Spark SQL literal of the value `typed_value` gives (its exact type)."""
    return _sql_value(typed_value(type_name, text))


def _sql_value(value: Any) -> str:
    """A value `typed_value` gives as the Spark SQL literal of its exact type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return f"TIMESTAMP'{value.isoformat()}'"
    if isinstance(value, date):
        return f"DATE'{value.isoformat()}'"
    if isinstance(value, int):
        return f"{value}L"
    if isinstance(value, float):
        return f"CAST({sql_literal(repr(value))} AS DOUBLE)"
    return f"{value:f}BD"


def column_rules(column: Column, value: str) -> list[tuple[str, str, str]]:
    """The rules of `Column.violation`, in its order: (broken when true, rule kind, reason), as Spark SQL
    over `value`, an expression of the field's text.

    SQL text rather than `pyspark.sql.functions`: each function or operator there is a round trip to
    the JVM (about 0.3 ms), and a contract's rules took a few thousand of them for every file staged.
    """
    present = f"({value} <> '')"
    rules: list[tuple[str, str, str]] = []

    def rule(condition: str, kind: str, *reason: str) -> None:
        rules.append((condition, kind, f"concat({', '.join(reason)})"))

    def value_rule(broken: str, kind: str, says: str, shown: str = _shown(value)) -> None:
        """A rule of a value that is there: its reason names the column, shows the value, says what is wrong."""
        rule(f"({present} AND {broken})", kind, sql_literal(f"{column.name} value "), shown, sql_literal(f" {says}"))

    if not column.nullable:
        rule(f"({value} = '')", "required", sql_literal(f"{column.name} is empty but required"))
    not_allowed = f"is not one of {', '.join(column.allowed)}"
    if column.allowed and column.text_pattern is None:
        allowed = ", ".join(sql_literal(option) for option in column.allowed)
        value_rule(f"NOT ({value} IN ({allowed}))", "allowed", not_allowed)
    typed = f"try_cast({value} AS {spark_type_name(column.type)})"
    if column.text_pattern is not None:
        value_rule(f"NOT ({value} RLIKE {sql_literal(column.text_pattern)})", "type", f"is not a valid {column.type}")
        # The shape is right but the calendar or the type disagrees, e.g. 2024-02-30; dates and times
        # also outside the years 1 to 9999 in UTC (`filegate.contracts._check_calendar`: one definition).
        unreal = f"({typed} IS NULL)"
        if column.type in ("date", "timestamp"):
            unreal = f"({unreal} OR NOT (year({typed}) BETWEEN 1 AND 9999))"
        value_rule(unreal, "type", f"is not a real {column.type}")
        if column.type == "double":
            value_rule(f"(abs({typed}) = double('Infinity'))", "type", DOUBLE_OUT_OF_RANGE)
        if column.allowed:
            # By value, as `Column.allowed_values`: "0.20" is one of `allowed = [0.2]`. No allowed entry is
            # a valid value: nothing is allowed (an empty IN list is no SQL).
            values = sorted(column.allowed_values, key=repr)
            allowed = ", ".join(_sql_value(option) for option in values)
            value_rule(f"NOT ({typed} IN ({allowed}))" if values else "true", "allowed", not_allowed)
    if column.pattern is not None:
        java = shared_pattern(column.pattern).java
        value_rule(
            f"NOT ({value} RLIKE {sql_literal(java)})", "pattern", f"does not match the pattern {column.pattern}"
        )
    if column.min_length is not None:
        value_rule(
            f"length({value}) < {column.min_length}", "min_length", f"is shorter than {column.min_length} characters"
        )
    if column.max_length is not None:
        value_rule(
            f"length({value}) > {column.max_length}",
            "max_length",
            f"is longer than {column.max_length} characters",
            _clipped_shown(value),
        )
    if column.min is not None:
        value_rule(f"{typed} < {_typed_literal(column.type, column.min)}", "min", f"is below the minimum {column.min}")
    if column.max is not None:
        value_rule(f"{typed} > {_typed_literal(column.type, column.max)}", "max", f"is above the maximum {column.max}")
    return rules


def _clipped_shown(value: str, limit: int = 40) -> str:
    """`_clipped` of the function: a long value as its start and its length."""
    clipped = _shown(f"substring({value}, 1, {limit})")
    return (
        f"CASE WHEN length({value}) <= {limit} THEN {_shown(value)} "
        f"ELSE concat({clipped}, '... (', CAST(length({value}) AS STRING), ' characters)') END"
    )


def column_verdict(contract: Contract, column: Column, value: str) -> str:
    """The first rule a field breaks, as a struct of its id (`customers.email.pattern`) and reason, or NULL;
    Spark SQL over `value`, an expression of the field's text.

    Id and reason come out of one evaluation of the rules (regular expressions, casts), not one each.
    """
    return _verdict(column, value, lambda kind: contract.rule_id(column.name, kind))


def _verdict(column: Column, value: str, rule_id: Callable[[str], str]) -> str:
    """The first of `column_rules` that holds, as a struct of `rule_id(kind)` and its reason, or NULL."""
    rules = column_rules(column, value)
    if not rules:
        return f"CAST(NULL AS {_VERDICT_TYPE})"
    cases = " ".join(
        f"WHEN {condition} THEN named_struct('{_RULE}', {sql_literal(rule_id(kind))}, '{_REASON}', {reason})"
        for condition, kind, reason in rules
    )
    return f"CASE {cases} END"


def column_reason(column: Column, value: str) -> SparkColumn:
    """Why a field's text (the SQL expression `value`) is not a valid value of `column` (the rules of
    `Column.check_text`), or NULL.

    No contract names the rule here, and only the reason is read: the rule's kind stands in for its id.
    """
    return F.expr(f"({_verdict(column, value, lambda kind: kind)}).{_REASON}")


def column_rule_id(contract: Contract, column: Column, value: str) -> SparkColumn:
    """The id of the first rule a field (the SQL expression `value`) breaks (`customers.email.pattern`), or NULL."""
    return F.expr(f"({column_verdict(contract, column, value)}).{_RULE}")


def _shape_reason(contract: Contract) -> SparkColumn:
    """Why a parsed row's shape is wrong (not well-formed CSV, or another number of fields), or NULL."""
    expected = len(contract.columns)
    return (
        F.when(~F.col(_UTF8), F.lit(NOT_UTF8))
        .when(F.col(_HOLDS_NUL), F.lit(NUL_BYTES))
        .when(_spans_lines(contract), F.lit(line_break_reason(contract)))
        .when(~F.col(_WELL_FORMED), F.lit(not_well_formed_reason(contract)))
        .when(
            F.col(_FIELD_COUNT).isNull(),
            F.lit(f"row has more than {max_counted_fields(contract)} fields, expected {expected}"),
        )
        .when(
            F.col(_FIELD_COUNT) != F.lit(expected),
            F.concat(F.lit("row has "), F.col(_FIELD_COUNT).cast("string"), F.lit(f" fields, expected {expected}")),
        )
    )


def _spans_lines(contract: Contract) -> SparkColumn:
    """A record of two lines (`read_lines(joined=True)`) that holds a line break, without `multiline_records`."""
    return F.lit(False) if contract.multiline_records else F.col(RAW_COLUMN).rlike("[\r\n]")


def _shape_rule(contract: Contract) -> SparkColumn:
    """The id of the rule `_shape_reason` names, or NULL."""
    return F.when(
        ~F.col(_UTF8) | F.col(_HOLDS_NUL) | ~F.col(_WELL_FORMED) | _spans_lines(contract),
        F.lit(well_formed_rule(contract)),
    ).when(
        F.col(_FIELD_COUNT).isNull() | (F.col(_FIELD_COUNT) != F.lit(len(contract.columns))),
        F.lit(field_count_rule(contract)),
    )


def field_count_rule(contract: Contract) -> str:
    """The rule id of a row with the wrong number of fields."""
    return f"{contract.name}.row.field_count"


def well_formed_rule(contract: Contract) -> str:
    """The rule id of a row that is not well-formed CSV (or not UTF-8 text)."""
    return f"{contract.name}.row.well_formed"


def typed_columns(contract: Contract) -> list[SparkColumn]:
    """The contract's columns cast from validated text; empty text is NULL."""
    return [
        F.expr(f"try_cast(CASE WHEN {name} = '' THEN NULL ELSE {name} END AS {spark_type_name(column.type)}) AS {name}")
        for column in contract.columns
        for name in (quoted_name(column.name),)
    ]


def split_rows(parsed: DataFrame, contract: Contract) -> SplitRows:
    """Good rows typed by the contract, and rejected rows with their reason and raw text.

    A row's verdicts (the first rule each field breaks) are computed in one projection and read by
    the next twice, for the reason and for the rule ids: Spark keeps the two apart rather than run
    the rules twice. A row of the wrong shape has its values in the wrong columns: its shape is the
    one reason given, the per-column verdicts would mislead.
    """
    whole = F.coalesce(F.col(_FIELD_COUNT) == F.lit(len(contract.columns)), F.lit(False))
    # A record over two lines (or holding a NUL) is rejected for its shape alone, as any row not well-formed:
    # no check reads it, nor does `unique_keys` count its key.
    shape_ok = F.col(_UTF8) & ~F.col(_HOLDS_NUL) & F.col(_WELL_FORMED) & whole & ~_spans_lines(contract)
    verdicts = F.expr(
        f"array({', '.join(column_verdict(contract, column, quoted_name(column.name)) for column in contract.columns)})"
    )
    judged = parsed.select(
        *typed_columns(contract),
        F.filter(verdicts, lambda verdict: verdict.isNotNull()).alias(_VERDICTS),
        _shape_reason(contract).alias(_SHAPE_REASON),
        _shape_rule(contract).alias(_SHAPE_RULE),
        RAW_COLUMN,
        # Whether the values sit in their own columns: rules that read several columns need that.
        shape_ok.alias(SHAPE_OK),
    )
    found = F.col(_VERDICTS)
    per_column = F.concat_ws("; ", F.transform(found, lambda verdict: verdict[_REASON]))
    checked = judged.select(
        *contract.column_names,
        F.when(F.col(_SHAPE_REASON).isNotNull(), F.col(_SHAPE_REASON))
        .when(F.size(found) > 0, per_column)
        .alias(REASON_COLUMN),
        F.when(F.col(_SHAPE_RULE).isNotNull(), F.array(F.col(_SHAPE_RULE)))
        .otherwise(F.transform(found, lambda verdict: verdict[_RULE]))
        .alias(RULES),
        RAW_COLUMN,
        SHAPE_OK,
    )
    good = checked.where(F.col(REASON_COLUMN).isNull()).select(*contract.column_names)
    rejects = checked.where(F.col(REASON_COLUMN).isNotNull()).select(REASON_COLUMN, RAW_COLUMN)
    return SplitRows(checked=checked, good=good, rejects=rejects)
