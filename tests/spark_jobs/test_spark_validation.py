"""Row validation in Spark agrees with the function's `Column.check_text`, value for value."""

from __future__ import annotations

import csv
import io
import random
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from filegate.contracts import COLUMN_RULE_KINDS, Column, load_contracts
from filegate.validation import line_break_reason, not_well_formed_reason, text_records, validate_matched
from spark_jobs.columns import RAW_LINE, RULES
from spark_jobs.row_rules import apply_row_rules
from spark_jobs.stage import Batch, stage_file
from spark_jobs.validation import (
    NOT_UTF8,
    NUL_BYTES,
    HeaderMismatch,
    column_reason,
    column_rule_id,
    column_rules,
    parse_fields,
    read_lines,
    split_records,
    split_rows,
)
from tests.spark_jobs.conftest import Lake

pytestmark = pytest.mark.spark

# A quoted field of a multiline file may end in a line break: Java's `$` matched before it and Spark's
# cast trimmed it, where Python refused it or kept it.
BREAKS = ("\n", "\r\n", "\r")
TEXTS = {
    "long": [
        "1", "+12", "-0", "123456789012345678", "1234567890123456789", "1.0", "1e3", "", " 1", "x",
        # The 64-bit bounds, each side of them; 20 digits.
        "9223372036854775807", "-9223372036854775808", "9223372036854775808", "-9223372036854775809",
        "+0009223372036854775", "12345678901234567890",
        "5\n", "5\r\n", "\t5", "5\\",
        # Shown as they are, in single quotes, on both sides (Python's repr would pick other quotes, escape more).
        "'5'", "\ufeff5", "5\x01",
    ],
    # 1e999 reads as infinity on both sides; 1e-999 as 0, as any parser rounds it.
    "double": ["1", "1.", ".5", "-2.5e-3", "1e", "e5", "NaN", "inf", "", "1,5", "1e999", "-1e999", "1e-999", "2.5\n"],
    # Java's (?i) folds ASCII only, Python's also the long s (U+017F) into s.
    "boolean": ["true", "FALSE", "True", "yes", "1", "", "t", "fal\u017fe", "TRUE\n"],
    "date": [
        "2024-02-29", "2023-02-29", "2024-13-01", "2024-1-01", "20240101", "", "0000-01-01", "0001-01-01", "9999-12-31",
        *(f"2025-01-05{end}" for end in BREAKS),
    ],
    "timestamp": [
        "2024-03-01T10:00:00Z", "2024-03-01 10:00:00", "2024-03-01T10:00:00.123456+02:00", "2024-03-01T24:00:00",
        "2024-02-30T10:00:00", "2024-03-01T10:00", "2024-03-01T10:00:00+0200", "2024-03-01T10:00:00.1234567", "",
        # Year 0, and instants that leave the years 1 to 9999 once moved to UTC.
        "0000-06-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "0001-01-01T01:00:00+01:00", "9999-12-31T23:00:00-02:00",
        # Spark takes offsets up to +/-18:00, Python up to 23:59.
        "2024-03-01T10:00:00+18:00", "2024-03-01T10:00:00-18:00", "2024-03-01T10:00:00+18:01",
        "2024-03-01T10:00:00-19:00", "2024-03-01T10:00:00+23:59", "2024-03-01T10:00:00+05:60",
        "2024-03-01T10:00:00Z\n",
    ],
    "decimal(10,3)": ["1", "1234567.123", "12345678.1", "1.1234", "-0.5", "+3.", "1e2", "", "1.5\n"],
    "decimal(2,2)": ["0", "0.12", "-0.5", "5.12", "0.123", "1", ".5", ""],
}  # fmt: skip


@pytest.mark.parametrize("type_name", sorted(TEXTS))
@pytest.mark.parametrize("nullable", [True, False])
def test_spark_rules_match_check_text(spark: SparkSession, type_name: str, nullable: bool) -> None:
    column = Column("value", type_name, nullable=nullable)
    texts = spark.createDataFrame([(text,) for text in TEXTS[type_name]], "value string")

    verdicts = dict(texts.select("value", column_reason(column, "value").alias("reason")).collect())

    assert verdicts == {text: column.check_text(text) for text in TEXTS[type_name]}


@pytest.mark.parametrize(
    ("type_name", "text"),
    [
        *(("long", f"5{end}") for end in BREAKS),
        *(("date", f"2025-01-05{end}") for end in BREAKS),
        ("decimal(10,3)", "1.5\n"),
        ("boolean", "fal\u017fe"),
        ("double", "1e999"),
        ("double", "-1e999"),
    ],
)
def test_a_value_with_a_line_break_or_beyond_its_type_is_refused(type_name: str, text: str) -> None:
    # The parity above says both sides agree; this says on what: neither takes these values.
    reason = Column("value", type_name).check_text(text)

    assert reason is not None
    assert reason.endswith("is beyond the range of a double" if "e999" in text else f"is not a valid {type_name}")


def test_allowed_values_and_required_reasons_read_like_the_function(spark: SparkSession) -> None:
    column = load_contracts()["order_tracking"].column("status")
    texts = ["DELIVERED", "delivered", "LOST", ""]
    rows = spark.createDataFrame([(text,) for text in texts], "value string")

    verdicts = dict(rows.select("value", column_reason(column, "value")).collect())

    assert verdicts == {text: column.check_text(text) for text in texts}


def write(path: Path, *lines: str) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_quoting_blank_lines_and_field_counts(spark: SparkSession, tmp_path: Path) -> None:
    contract = load_contracts()["order_tracking"]
    header = ",".join(contract.column_names)
    good = '1Z9,"ORD-1",DELIVERED,2025-03-03T10:00:00Z,UPS,"Memphis, TN",US,Paris,"75 001",FR,,,'
    quoted_quote = '1Z8,"ORD ""2""",DELIVERED,2025-03-03T10:00:00Z,UPS,,,Paris,75001,FR,,,'
    short = "1Z7,ORD-3,DELIVERED,2025-03-03T10:00:00Z,UPS"
    long = good + ",extra"
    # A byte-order mark on a later line (files concatenated) is that line's text, and so is the header
    # repeated there: only the file's first line is its header.
    marked = "\ufeff" + good.replace("1Z9", "1Z6")
    lines = ("\ufeff" + header, good, "", "   ", quoted_quote, short, long, marked, header)
    path = write(tmp_path / "f.csv", *lines)

    split = split_rows(parse_fields(read_lines(spark, path, contract), contract), contract)
    function = validate_matched((contract, date(2025, 3, 3), []), 1, Path(path).read_bytes(), 10**9)

    good_rows = {row["tracking_num"]: row for row in split.good.collect()}
    assert set(good_rows) == {"1Z9", "1Z8", "\ufeff1Z6"}
    assert good_rows["1Z9"]["origin_city"] == "Memphis, TN"
    assert good_rows["1Z8"]["order_id"] == 'ORD "2"'
    assert good_rows["1Z8"]["origin_city"] is None
    reasons = {row["raw_line"]: row["reason"] for row in split.rejects.collect()}
    # The empty line is skipped, the line of spaces is a row of one field: as the function's csv reads them.
    header_reasons = (column.check_text(column.name) for column in contract.columns)
    assert reasons == {
        "   ": "row has 1 fields, expected 13",
        short: "row has 5 fields, expected 13",
        long: "row has 14 fields, expected 13",
        header: "; ".join(reason for reason in header_reasons if reason),
    }
    # The function counts the same rows bad: every line but the empty one and the three good ones.
    assert (function.rows_sampled, function.bad_rows) == (len(lines) - 2, len(reasons))
    assert [function_verdict(line, 13) for line in ("   ", short)] == [
        "row has 1 fields, expected 13",
        "row has 5 fields, expected 13",
    ]


def function_verdict(line: str, width: int) -> str | None:
    """What the function's validator (Python's csv module, strict) says of a row's shape; None when it is whole."""
    try:
        (fields,) = list(csv.reader([line], strict=True))
    except csv.Error:
        return "malformed"
    return None if len(fields) == width else f"row has {len(fields)} fields, expected {width}"


# A backslash passed check and the function, and failed every run (Spark's INVALID_DELIMITER_VALUE.SINGLE_BACKSLASH).
@pytest.mark.parametrize("delimiter", [":", "\x01", "\x04", "\\"], ids=["colon", "ctrl-a", "ctrl-d", "backslash"])
def test_fields_are_counted_whatever_one_character_the_delimiter_is(
    spark: SparkSession, tmp_path: Path, delimiter: str
) -> None:
    # The parser's end-of-record marker must not hold the delimiter, or the delimiter splits it.
    contract = replace(load_contracts()["order_tracking"], delimiter=delimiter)
    good = ["1Z1", "ORD-1", "DELIVERED", "2025-03-03T10:00:00Z", "UPS", "Memphis, TN", "US", "Paris", "75001", "FR"]
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows(
        [contract.column_names, [*good, "", "", ""], good[:5]]
    )
    path = tmp_path / "f.csv"
    path.write_text(buffer.getvalue())

    split = split_rows(parse_fields(read_lines(spark, str(path), contract), contract), contract)

    [row] = split.good.collect()
    assert (row["tracking_num"], row["status_ts"].isoformat(), row["origin_city"]) == (
        "1Z1",
        "2025-03-03T10:00:00",
        "Memphis, TN",
    )
    assert [r["reason"] for r in split.rejects.collect()] == ["row has 5 fields, expected 13"]


def test_a_file_read_in_many_splits_has_one_header_and_every_row(spark: SparkSession, tmp_path: Path) -> None:
    # Small splits, as a big file gets: the header is the line at byte 0, wherever Spark puts that split,
    # and the header repeated in a later split is a row like any other.
    contract = load_contracts()["order_tracking"]
    header = ",".join(contract.column_names)
    rows = [f"1Z{n},ORD-{n},DELIVERED,2025-03-03T10:00:00Z,UPS,,,Paris,75001,FR,,," for n in range(400)]
    path = write(tmp_path / "f.csv", header, *rows[:300], header, *rows[300:])
    spark.conf.set("spark.sql.files.maxPartitionBytes", "4096")
    try:
        lines = read_lines(spark, path, contract)
        assert lines.rdd.getNumPartitions() > 4
        split = split_rows(parse_fields(lines, contract), contract)
        good = sorted(row["tracking_num"] for row in split.good.collect())
        rejects = [row["raw_line"] for row in split.rejects.collect()]
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")

    assert good == sorted(f"1Z{n}" for n in range(400))
    assert rejects == [header]


def test_fields_are_counted_by_the_parser_that_reads_them(spark: SparkSession, tmp_path: Path) -> None:
    contract = load_contracts()["order_tracking"]
    header = ",".join(contract.column_names)
    base = "1Z{n},ORD-1,DELIVERED,2025-03-03T10:00:00Z,UPS,{city},US,Paris,75001,FR,,,"
    lines = {
        # An inch mark inside an unquoted field is text: 13 fields (the old count said 12).
        "inch": base.format(n=1, city='12" crate'),
        # A quoted field holding a delimiter and quotes, then an extra field: 14 (the old count said 13).
        "fourteen": base.format(n=2, city='"a, ""b"""') + ',"x"',
        # A space before a quote: the field is unquoted, so its comma splits it, as Python's csv does.
        "space": base.format(n=3, city=' "Memphis, TN"'),
        # Text after a closing quote: Python's strict csv refuses the line, so does the job.
        "after": base.format(n=4, city='"Memphis"TN'),
        "unclosed": base.format(n=5, city='"Memphis, TN'),
        "many": base.format(n=6, city="x") + "," * 40,
        # More fields than the CSV parser holds (20480): refused like any other wide row, not a failed read.
        "thousands": base.format(n=8, city="x") + "," * 25_000,
        # As many delimiters inside a quoted field: 13 fields, as Python's csv reads them.
        "quoted thousands": base.format(n=10, city='"' + "," * 25_000 + '"'),
        # A long quoted field, with quotes in it (the well-formed check overflowed Java's stack on these).
        "long quoted": base.format(n=9, city='"' + 'Memphis ""TN"", ' * 2_000 + '"'),
        # A field of one control character is a value (it was taken for the parser's end marker).
        "control": base.format(n=7, city="\x01"),
        # Text after the last closing quote, a line separator: Java's `$` matched before it.
        "separator after quote": base.format(n=11, city="x") + '"FR"\u2028',
        "next line after quote": base.format(n=12, city="x") + '"FR"\u0085',
        "paragraph after quote": base.format(n=13, city="x") + '"FR"\u2029',
    }
    path = write(tmp_path / "f.csv", header, *lines.values())

    split = split_rows(parse_fields(read_lines(spark, path, contract), contract), contract)

    reasons = {row["raw_line"]: row["reason"] for row in split.rejects.collect()}
    good = {row["tracking_num"]: row for row in split.good.collect()}
    assert set(good) == {"1Z1", "1Z7", "1Z9", "1Z10"}
    assert good["1Z1"]["origin_city"] == '12" crate'
    assert good["1Z7"]["origin_city"] == "\x01"
    for name, line in lines.items():
        expected = function_verdict(line, len(contract.columns))
        if expected == "malformed":
            assert reasons[line].startswith("row is not well-formed CSV"), name
        elif name in ("many", "thousands"):
            assert reasons[line] == "row has more than 27 fields, expected 13"
        else:
            assert reasons.get(line) == expected, name


def python_rows(text: str) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(text, newline="")) if row]


def test_multiline_records_are_the_records_pythons_csv_reads(spark: SparkSession) -> None:
    # Random texts of quotes, delimiters, line breaks and letters, split by Java's regex in Spark: each
    # record parsed alone must give what Python's csv gives for the whole text, so no record is glued
    # from pieces of others and no character is dropped between them.
    rng = random.Random(29)
    texts = ["".join(rng.choice('ab,"\n\r ') for _ in range(rng.randint(0, 16))) for _ in range(3000)]
    texts += ['1,Monitor 27" 4K,5\n2,"box\nlid",6\n3,TV 55" OLED,8\n', 'x,y,"abc,def,ghi\n4,k,8\n']

    split = spark.createDataFrame([(text,) for text in texts], "value string").select(
        "value", split_records(F.col("value"), ",").alias("records")
    )

    for row in split.collect():
        records = [python_rows(record) for record in row["records"]]
        assert [fields for rows in records for fields in rows] == python_rows(row["value"]), row["value"]
        assert all(len(rows) <= 1 for rows in records), row["value"]
        # The function's sample is split by the same pattern in Python's regex: the same records.
        assert [record for _, record in text_records(row["value"], ",")] == row["records"], row["value"]


def test_a_multiline_file_agrees_with_the_function_on_quotes_inside_fields(spark: SparkSession, tmp_path: Path) -> None:
    contract = replace(load_contracts()["order_tracking"], multiline_records=True)
    header = ",".join(contract.column_names)
    base = "1Z{n},ORD-1,DELIVERED,2025-03-03T10:00:00Z,UPS,{city},US,Paris,75001,FR,,,"
    good = [
        base.format(n=1, city='Monitor 27" 4K'),
        base.format(n=2, city='"Memphis\nTN"'),
        base.format(n=3, city='TV 55" OLED'),
        base.format(n=4, city="Lyon"),
    ]
    path = write(tmp_path / "f.csv", header, *good)
    unclosed = base.format(n=5, city='"Memphis, TN') + "\n" + base.format(n=6, city="Lyon")
    broken = write(tmp_path / "broken.csv", header, *good, unclosed)

    split = split_rows(parse_fields(read_lines(spark, path, contract), contract), contract)
    function = validate_matched(
        (contract, date(2025, 3, 3), []), Path(path).stat().st_size, Path(path).read_bytes(), 10**9
    )
    broken_split = split_rows(parse_fields(read_lines(spark, broken, contract), contract), contract)

    rows = {row["tracking_num"]: row["origin_city"] for row in split.good.collect()}
    assert rows == {"1Z1": 'Monitor 27" 4K', "1Z2": "Memphis\nTN", "1Z3": 'TV 55" OLED', "1Z4": "Lyon"}
    assert split.rejects.count() == 0
    assert (function.rows_sampled, function.bad_rows, function.reasons) == (4, 0, ())
    # A quote never closed runs to the end of the file: one malformed record holding every byte after it,
    # never a row made up of the pieces.
    assert {row["tracking_num"] for row in broken_split.good.collect()} == set(rows)
    rejected = broken_split.rejects.collect()
    assert [(row["raw_line"], row["reason"].startswith("row is not well-formed CSV")) for row in rejected] == [
        (unclosed + "\n", True)
    ]


def test_a_line_break_in_a_quoted_field_without_multiline_records_is_one_bad_row_as_the_function_counts(
    lake: Lake, tmp_path: Path
) -> None:
    # Read as lines, `said refund, ok",2,...` was a well-formed row of its own: a made-up key was merged,
    # while the function counted the record as one bad row.
    contract = load_contracts()["order_tracking"]
    base = "1Z{n},ORD-{n},DELIVERED,2025-03-03T10:00:00Z,UPS,{city},US,Paris,75001,FR,,,"
    spanning = base.format(n=1, city='"Memphis,\nTN",x,"y') + '",z'
    path = tmp_path / "order_tracking_2025_03_03.csv"
    lines = [",".join(contract.column_names), base.format(n=0, city="Lyon"), spanning, base.format(n=2, city="Nice")]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    batch = Batch(contract.name, "b-spanning", str(path), datetime.now(UTC))

    counts = stage_file(lake.spark, lake.warehouse(), contract, str(path), batch)
    function = validate_matched((contract, date(2025, 3, 3), []), path.stat().st_size, path.read_bytes(), 10**9)

    assert (counts.staged, counts.rejected) == (2, 1)
    assert sorted(row["tracking_num"] for row in lake.staged(contract.name)) == ["1Z0", "1Z2"]
    [reject] = lake.table("order_tracking_rejects").to_pylist()
    assert reject["reason"] == line_break_reason(contract)
    assert reject["rules"] == ["order_tracking.row.well_formed"]
    assert reject["raw_line"] == spanning
    assert (function.rows_sampled, function.bad_rows) == (3, 1)
    assert f"line 3: {line_break_reason(contract)}" in function.reasons


def test_a_stray_quote_stays_one_bad_line_and_takes_no_line_after_it(lake: Lake, tmp_path: Path) -> None:
    # Read as records, a quote never closed ran to the next quote anywhere in the file: every row between was
    # gone, within the bad-row ratio. Joined only to a next line that closes it, it stays the one bad line.
    contract = load_contracts()["order_tracking"]
    base = "1Z{n},ORD-{n},DELIVERED,2025-03-03T10:00:00Z,UPS,{city},US,Paris,75001,FR,,,"
    stray = base.format(n=1, city='"Memphis')
    rows = [base.format(n=n, city="Lyon") for n in (2, 3)] + [base.format(n=4, city='"Blue, large"')]
    # A quoted field over three lines: the job joins a line only to the next, so each line is a bad row. Then
    # lines of one quote each: the first two are one record, and the third, which closes the second, opens
    # none (the job joined it to the fourth as well, and the fourth was in no row at all).
    rows += [base.format(n=5, city="Lyon") + '"a\nb\nc"', '"\n"\n"\n"']
    path = tmp_path / "order_tracking_2025_03_03.csv"
    path.write_text("\n".join([",".join(contract.column_names), base.format(n=0, city="Nice"), stray, *rows]) + "\n")
    batch = Batch(contract.name, "b-stray", str(path), datetime.now(UTC))

    counts = stage_file(lake.spark, lake.warehouse(), contract, str(path), batch)
    function = validate_matched((contract, date(2025, 3, 3), []), path.stat().st_size, path.read_bytes(), 10**9)

    assert (counts.staged, counts.rejected) == (4, 7)
    assert sorted(row["tracking_num"] for row in lake.staged(contract.name)) == ["1Z0", "1Z2", "1Z3", "1Z4"]
    rejects = lake.table("order_tracking_rejects").to_pylist()
    reasons = {row["raw_line"]: row["reason"] for row in rejects}
    assert [row["rules"] for row in rejects if row["raw_line"] == stray] == [["order_tracking.row.well_formed"]]
    quote, pair = '"', '"\n"'
    assert sorted(row["raw_line"] for row in rejects if row["raw_line"].startswith(quote)) == [quote, quote, pair]
    # The function's sample counts the same bad rows, for the same reasons (it refused the whole file).
    lines = path.read_text().splitlines()
    assert (function.rows_sampled, function.bad_rows) == (11, 7)
    assert function.reasons[1:] == (
        *(f"line {n}: {reasons[lines[n - 1]]}" for n in (3, 7, 8, 9)),
        f"line 10: {reasons[pair]}",
        f"line 12: {reasons[quote]}",
        f"line 13: {reasons[quote]}",
    )
    assert reasons[stray] == not_well_formed_reason(contract)
    assert reasons[pair] == line_break_reason(contract)


@pytest.mark.parametrize("multiline", [False, True])
def test_a_row_with_bytes_that_are_not_utf8_is_rejected_not_staged_changed(
    spark: SparkSession, tmp_path: Path, multiline: bool
) -> None:
    # The function reads a bounded sample, so a Latin-1 byte further down reaches the job, whose parser
    # reads it as U+FFFD. A U+FFFD written as UTF-8 is text like any other.
    contract = replace(load_contracts()["order_tracking"], multiline_records=multiline)
    base = "1Z{n},ORD-1,DELIVERED,2025-03-03T10:00:00Z,UPS,{city},US,Paris,75001,FR,,,"
    header = ",".join(contract.column_names).encode()
    nice = base.format(n=3, city="Nice").encode()
    latin1, utf8 = tmp_path / "latin1.csv", tmp_path / "utf8.csv"
    latin1.write_bytes(b"\n".join([header, base.format(n=1, city="Besan\xe7on").encode("latin-1"), nice]) + b"\n")
    utf8.write_bytes(b"\n".join([header, base.format(n=2, city="Lyon \ufffd").encode(), nice]) + b"\n")

    split = split_rows(parse_fields(read_lines(spark, str(latin1), contract), contract), contract)
    kept = split_rows(parse_fields(read_lines(spark, str(utf8), contract), contract), contract)

    assert [row["tracking_num"] for row in split.good.collect()] == ["1Z3"]
    [reject] = split.rejects.collect()
    assert reject["reason"] == NOT_UTF8
    assert reject["raw_line"] == base.format(n=1, city="Besan\ufffdon")
    [rules] = [row[RULES] for row in split.checked.collect() if row[RULES]]
    assert rules == ["order_tracking.row.well_formed"]
    assert sorted((row["tracking_num"], row["origin_city"]) for row in kept.good.collect()) == [
        ("1Z2", "Lyon \ufffd"),
        ("1Z3", "Nice"),
    ]


@pytest.mark.parametrize("multiline", [False, True])
def test_a_row_holding_a_nul_byte_is_rejected_as_the_function_rejects_a_sample_holding_one(
    spark: SparkSession, tmp_path: Path, multiline: bool
) -> None:
    # Past the function's sample a NUL reached the job, which merged it into the target, the key too.
    contract = replace(load_contracts()["order_tracking"], multiline_records=multiline, unique_keys=True)
    base = "{key},ORD-1,DELIVERED,2025-03-03T10:00:00Z,UPS,{city},US,Paris,75001,FR,,,"
    lines = [base.format(key="1Z1", city="Den\x00ver"), base.format(key="\x001Z2", city="Lyon")]
    good = [base.format(key="1Z1", city="Denver"), base.format(key="1Z3", city="Nice")]
    path = tmp_path / "nul.csv"
    path.write_text("\n".join([",".join(contract.column_names), *lines, *good]) + "\n")

    split = split_rows(parse_fields(read_lines(spark, str(path), contract), contract), contract)
    # Its shape is its one fault: no row rule reads it, and its key is not counted beside the good 1Z1.
    ruled = apply_row_rules(split.checked, contract, None).collect()

    assert sorted(row["tracking_num"] for row in split.good.collect()) == ["1Z1", "1Z3"]
    rejects = split.rejects.collect()
    assert sorted((row["raw_line"], row["reason"]) for row in rejects) == sorted((line, NUL_BYTES) for line in lines)
    assert sorted((row[RAW_LINE], row[RULES]) for row in ruled if row[RULES]) == sorted(
        (line, ["order_tracking.row.well_formed"]) for line in lines
    )


@pytest.mark.parametrize("multiline_records", [False, True])
def test_a_file_whose_name_holds_glob_characters_is_read_as_named(
    spark: SparkSession, tmp_path: Path, multiline_records: bool
) -> None:
    # A file name a contract may match (`sales [eu] {yyyy}-{mm}-{dd}.csv`): Spark reads a path as a glob pattern.
    contract = replace(load_contracts()["order_tracking"], multiline_records=multiline_records)
    row = "1Z1,ORD-1,DELIVERED,2025-03-03T10:00:00Z,UPS,,,Paris,75001,FR,,,"
    path = write(tmp_path / "sales [eu] {x} 2025-03-03.csv", ",".join(contract.column_names), row)

    assert [line[RAW_LINE] for line in read_lines(spark, path, contract).collect()] == [row]


def test_a_header_that_is_not_the_contract_is_refused(spark: SparkSession, tmp_path: Path) -> None:
    contract = load_contracts()["order_tracking"]
    path = write(tmp_path / "f.csv", "tracking_num,status", "1Z1,DELIVERED")

    with pytest.raises(HeaderMismatch, match="does not list the columns"):
        read_lines(spark, path, contract)


# One list of values per rule kind, checked by the function (`Column.violation`) and by the job
# (`column_rules`): the verdict, the reason and the rule id must agree for every value.
RULE_CASES: list[tuple[Column, list[str]]] = [
    (
        Column("email", "string", pattern=r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"),
        ["a@b.co", "a.b+c@d-e.example.org", "a@b", "a@@b.co", "ä@b.co", "a@b.co\n", "a@b.c", " a@b.co", ""],
    ),
    (
        Column("phone", "string", pattern=r"^\+[1-9][0-9]{7,14}$"),
        ["+14155550100", "+4930123456", "+0123456789", "14155550100", "+1415555010012345", "+١٤١٥٥٥٥٠١٠٠", ""],
    ),
    (Column("code", "string", pattern="^A.C$"), ["ABC", "A\nC", "A\rC", "A\u2028C", "A\u00e9C", "AC", "ABCD"]),
    (Column("zip", "string", nullable=False, pattern="^[A-Za-z0-9 -]{3,10}$"), ["02134", "0213", "SW1A 1AA", "12", ""]),
    (
        Column("name", "string", min_length=2, max_length=5),
        ["ab", "abcde", "a", "abcdef", "éé", "日本語", "😀", "😀😀😀😀😀😀", ""],
    ),
    (Column("note", "string", max_length=3), ["abc", "abcd", "x" * 60]),
    (Column("quantity", "long", min="1", max="1000"), ["1", "1000", "0", "1001", "-5", "0001", "+7", "1e3", ""]),
    (Column("amount", "decimal(12,2)", min="0.01"), ["0.01", "0.00", "0.009", "-1", "1", "007.50", "0.1", ""]),
    (Column("weight", "double", min="0.001", max="70"), ["0.001", "70", "70.0000001", "0.0009", "1e1", ".5", ""]),
    (
        Column("born", "date", min="1900-01-01", max="2024-12-31"),
        ["1900-01-01", "1899-12-31", "2024-12-31", "2025-01-01", ""],
    ),
    (
        Column("seen", "timestamp", min="2024-01-01T00:00:00Z"),
        [
            "2024-01-01T00:00:00Z",
            "2023-12-31T23:59:59Z",
            "2024-01-01T00:30:00+01:00",
            "2024-01-01T01:30:00+01:00",
            "2024-01-01 00:00:00",
        ],
    ),
    (Column("tier", "string", allowed=("BASIC", "GOLD"), pattern="^[A-Z]+$"), ["GOLD", "gold", "PLATINUM", ""]),
    # Typed columns allow by value: TOML reads `allowed = [0.00, 0.20]` as 0.0 and 0.2, `[true]` as True.
    (
        Column("rate", "double", allowed=("0.0", "0.2")),
        ["0.20", "0.2", ".2", "2e-1", "0", "-0.0", "0.3", "abc", "1e999", ""],
    ),
    (Column("flag", "boolean", allowed=("True",)), ["true", "TRUE", "True", "false", "yes", ""]),
    (Column("qty", "long", allowed=("1", "10", "1.5"), max="5"), ["1", "01", "+10", "1.5", "2", ""]),
    (Column("price", "decimal(5,2)", allowed=("9.9", "0.205")), ["9.90", "9.9", "9.91", "0.205", "0.21"]),
    (Column("day", "date", allowed=("2024-01-01",)), ["2024-01-01", "2024-1-1", "2024-01-02", "2024-02-30"]),
    (
        Column("at", "timestamp", allowed=("2024-01-01 00:00:00+00:00",)),
        ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00", "2024-01-01 00:00:00", "2024-01-01T00:00:01Z"],
    ),
    (Column("never", "long", allowed=("x",)), ["1", "x"]),
]  # fmt: skip


def test_the_rule_kinds_a_column_names_are_those_the_job_gives_it() -> None:
    # `filegate check` keeps a check from taking a rule id that a column named `check` gives (`Column.rule_kinds`).
    every = Column("all", "long", nullable=False, allowed=("1",), pattern="^1", min_length=1, max_length=2, min="1")
    columns = [column for column, _ in RULE_CASES] + [every, replace(every, max="5")]

    for column in columns:
        assert column.rule_kinds == tuple(dict.fromkeys(kind for _, kind, _ in column_rules(column, "value")))
    assert {kind for column in columns for kind in column.rule_kinds} == set(COLUMN_RULE_KINDS)


@pytest.mark.parametrize(("column", "texts"), RULE_CASES, ids=[column.name for column, _ in RULE_CASES])
def test_column_rules_give_the_functions_verdict_reason_and_rule(
    spark: SparkSession, column: Column, texts: list[str]
) -> None:
    contract = load_contracts()["customers"]
    rows = spark.createDataFrame([(text,) for text in texts], "value string")

    found = {
        row["value"]: (row["reason"], row["rule"])
        for row in rows.select(
            "value",
            column_reason(column, "value").alias("reason"),
            column_rule_id(contract, column, "value").alias("rule"),
        ).collect()
    }

    expected = {}
    for text in texts:
        violation = column.violation(text)
        expected[text] = (violation[1], contract.rule_id(column.name, violation[0])) if violation else (None, None)
    assert {text: rule for text, (_, rule) in found.items()} == {text: rule for text, (_, rule) in expected.items()}
    # Reasons read alike where Python's repr shows the text as it is (no escaped control characters).
    plain = [text for text in texts if repr(text) == f"'{text}'"]
    assert {text: found[text][0] for text in plain} == {text: expected[text][0] for text in plain}
