"""Validation of a file's name and bounded prefix: every reason, each one a person can act on."""

from __future__ import annotations

import codecs
import gzip
from dataclasses import replace

import pytest

from filegate.contracts import Contracts, load_contracts
from filegate.validation import MAX_CUT_RECORD_LINES, Validation, validate_upload
from local_world import ROOT
from local_world.inputs import COLUMNS, csv_bytes, tracking_row

CONTRACTS = load_contracts()
NAME = "order_tracking_2024_03_05.csv"
LIMIT = 10**9


def check(data: bytes, name: str = NAME, sample: int | None = None, size: int | None = None):
    head = data if sample is None else data[:sample]
    return validate_upload(name, len(data) if size is None else size, head, CONTRACTS, LIMIT)


def test_a_good_file_passes_with_its_dataset_and_business_date() -> None:
    result = check(csv_bytes())

    assert result.ok, result.reasons
    assert result.contract is not None
    assert result.contract.name == "order_tracking"
    assert result.business_date.isoformat() == "2024-03-05"
    assert result.rows_sampled == 5


@pytest.mark.parametrize(
    "data",
    [
        codecs.BOM_UTF8 + csv_bytes(),
        csv_bytes(newline="\r\n"),
        codecs.BOM_UTF8 + csv_bytes(newline="\r\n"),
        csv_bytes([tracking_row(1, destination_city='Zürich, Kanton "ZH"')]),
    ],
    ids=["bom", "crlf", "bom-crlf", "quoted-unicode"],
)
def test_variants_a_user_expects_to_pass(data: bytes) -> None:
    assert check(data).ok, check(data).reasons


def test_unknown_dataset_names_the_known_patterns() -> None:
    result = check(csv_bytes(), name="suppliers_2024_03_05.csv")

    assert not result.ok
    assert "unknown dataset" in result.reasons[0]
    assert "order_tracking_{yyyy}_{mm}_{dd}.csv" in result.reasons[0]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("order_tracking_2024_02_30.csv", "not a real calendar date"),
        ("order_tracking_2024-03-05.csv", "business date missing or malformed"),
        ("order_tracking_2024_03_05.txt", "extension '.txt' is not allowed"),
    ],
)
def test_name_problems(name: str, expected: str) -> None:
    result = check(csv_bytes(), name=name)

    assert any(expected in reason for reason in result.reasons), result.reasons


def test_empty_file() -> None:
    assert check(b"").reasons == ("the file is empty (0 bytes)",)


def test_above_the_size_limit() -> None:
    result = validate_upload(NAME, 2000, csv_bytes(), CONTRACTS, 1000)

    assert any("above the limit of 1000" in reason for reason in result.reasons)


def test_header_only() -> None:
    assert check(csv_bytes([])).reasons == ("the file has a header but no data rows",)


def test_header_reports_missing_extra_and_duplicated_columns_together() -> None:
    header = [c for c in COLUMNS if c != "carrier"] + ["notes", "status"]

    reasons = check(csv_bytes(header=header)).reasons

    assert "header is missing columns: carrier" in reasons
    assert "header has unexpected columns: 'notes'" in reasons
    assert "header repeats columns: status" in reasons


def test_reordered_header() -> None:
    header = list(COLUMNS)
    header[0], header[1] = header[1], header[0]

    assert check(csv_bytes(header=header)).reasons[0].startswith("header columns are out of order")


def test_wrong_delimiter() -> None:
    reasons = check(csv_bytes(delimiter=";")).reasons

    assert reasons == ("the header is split by ';', but order_tracking files use ','",)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (csv_bytes().decode().encode("utf-16"), "UTF-16"),
        (gzip.compress(csv_bytes()), "gzip"),
        (b"\x00\x01\x02binary", "NUL bytes"),
        (csv_bytes([tracking_row(1, destination_city="Malmö")]).decode().encode("latin-1"), "not valid UTF-8"),
    ],
    ids=["utf16", "gzip", "binary", "latin1"],
)
def test_encoding_problems(data: bytes, expected: str) -> None:
    reasons = check(data).reasons

    assert any(expected in reason for reason in reasons), reasons


def test_rows_that_do_not_parse_are_reported_by_line_when_too_many() -> None:
    rows = [tracking_row(1), tracking_row(2, status="LOST", weight_kg="heavy"), tracking_row(3, tracking_num="")]

    reasons = check(csv_bytes(rows)).reasons

    assert reasons[0] == "2 of 3 sampled rows are invalid, more than the contract allows (10%)"
    assert "line 3: status value 'LOST' is not one of" in reasons[1]
    assert "weight_kg value 'heavy' is not a valid decimal(10,3)" in reasons[1]
    assert reasons[2] == "line 4: tracking_num is empty but required"


def test_a_few_bad_rows_travel_on_to_the_job_rejects_table() -> None:
    rows = [tracking_row(i) for i in range(20)] + [tracking_row(99, status_ts="yesterday")]

    result = check(csv_bytes(rows))

    assert result.ok
    assert (result.rows_sampled, result.bad_rows) == (21, 1)


def test_a_line_break_inside_a_quoted_field_is_a_bad_row_because_the_job_reads_lines() -> None:
    data = csv_bytes([tracking_row(1, destination_city="Den\nver")])

    reasons = check(data).reasons

    assert any("line 2: a quoted field holds a line break" in reason for reason in reasons), reasons


def test_short_rows_are_counted_as_bad() -> None:
    data = csv_bytes([tracking_row(1)]) + b"only,three,fields\n"

    assert any("has 3 fields, expected 13" in reason for reason in check(data).reasons)


def test_only_whole_lines_of_a_cut_sample_are_judged() -> None:
    data = csv_bytes([tracking_row(i, destination_city="Kraków") for i in range(200)])

    result = check(data, sample=4096)

    assert result.ok, result.reasons
    assert 0 < result.rows_sampled < 200
    assert result.bytes_read == 4096


PRODUCTS = ROOT / "data" / "samples" / "ecommerce" / "products_2025_01_15.csv"
# The sample products file's third record has a description on two lines, as `multiline_records` allows.
OPEN_QUOTE = b'"Two-part set.\n'


def test_a_multiline_record_cut_by_the_sample_is_left_out_not_called_malformed() -> None:
    data = PRODUCTS.read_bytes()
    # The sample's last line break is the one inside the quoted description.
    cut = data.index(OPEN_QUOTE) + len(OPEN_QUOTE)

    result = check(data, name=PRODUCTS.name, sample=cut)

    assert result.ok, result.reasons
    assert (result.rows_sampled, result.bad_rows) == (2, 0)


def test_a_quote_left_open_in_a_one_line_record_is_one_bad_row_in_the_sample_as_beyond_it() -> None:
    # It rejected the whole file, where the job rejects that one row: the verdict hung on where the row lay.
    rows = [tracking_row(i, destination_city="CITY" if i == 3 else "Lyon") for i in range(50)]
    data = csv_bytes(rows).replace(b"CITY", b'"Krak')

    cut = check(data, sample=len(data) // 2)
    whole = check(data)
    many = check(csv_bytes(rows[:20]).replace(b"Lyon", b'"Krak', 3))

    assert cut.ok, cut.reasons
    assert whole.ok, whole.reasons
    assert (cut.bad_rows, whole.rows_sampled, whole.bad_rows) == (1, 50, 1)
    # Past the contract's share of bad rows, each such line is named as the job's rejects name it.
    assert many.reasons[:2] == (
        "3 of 20 sampled rows are invalid, more than the contract allows (10%)",
        "line 2: row is not well-formed CSV: a quoted field must end at its closing quote, right before ',' or "
        "the line's end, and a quote that opens a field must be closed",
    )


def test_a_quote_left_open_long_before_the_cut_is_malformed_even_in_a_multiline_file() -> None:
    header, first, second = PRODUCTS.read_bytes().split(b"\n")[:3]
    plain = second.replace(b", ", b" ").replace(b'"', b"")
    # A stray quote opens the first record's last field; 200 records without a quote follow it.
    stray = first.rsplit(b",", 1)[0] + b',"' + first.rsplit(b",", 1)[1]
    body = b"\n".join([header, stray, *[plain] * 200, b""])

    result = check(body, name=PRODUCTS.name, sample=len(body) - 10)

    assert not result.ok
    assert "a quoted field opened there is never closed" in result.reasons[0]


def test_a_whole_file_that_ends_inside_quotes_is_malformed() -> None:
    data = PRODUCTS.read_bytes()
    cut = data.index(OPEN_QUOTE) + len(OPEN_QUOTE)

    result = check(data[:cut], name=PRODUCTS.name)

    [reason] = result.reasons
    assert reason == "the CSV is malformed at line 4: a quoted field opened there is never closed"


def test_a_quote_never_closed_is_named_at_the_line_it_opens_not_where_the_data_ends() -> None:
    # It said line 9, the file's last: a person looked for the fault on a good line.
    data = csv_bytes([tracking_row(i, destination_city="CITY" if i == 1 else "Lyon") for i in range(8)])

    result = check(data.replace(b"CITY", b'"Krak'))

    assert result.reasons[0] == "1 of 8 sampled rows are invalid, more than the contract allows (10%)"
    [reason] = result.reasons[1:]
    assert reason.startswith("line 3: row is not well-formed CSV: ")


def test_a_first_row_longer_than_the_sample_is_named_as_such_not_as_a_file_without_rows() -> None:
    # It said "the file has a header but no data rows" of a file whose rows the job loads.
    data = csv_bytes([tracking_row(0, destination_city="x" * 3000), *(tracking_row(i) for i in range(1, 5))])

    result = check(data, sample=1024)

    [reason] = result.reasons
    assert reason.startswith("the first data row does not end within the 1024 bytes read")
    assert "raise that setting" in reason


def test_a_stray_quote_a_later_quote_closes_leaves_each_line_a_bad_row_of_its_own() -> None:
    # It named line 4, where the closing quote is, of a stray quote on line 3; the job reads each line apart.
    data = csv_bytes([tracking_row(i, destination_city="CITY" if i == 1 else "Lyon") for i in range(4)])
    lines = data.replace(b"CITY", b'"Krak').split(b"\n")
    lines[3] = lines[3].replace(b",Lyon,", b',"Lyon"x,')

    reasons = check(b"\n".join(lines)).reasons

    assert reasons[0] == "2 of 4 sampled rows are invalid, more than the contract allows (10%)"
    assert [reason.split(": ", 1)[0] for reason in reasons[1:]] == ["line 3", "line 4"]
    assert all(reason.split(": ", 1)[1].startswith("row is not well-formed CSV: ") for reason in reasons[1:])


def test_a_quote_the_next_line_closes_is_one_bad_row_of_two_lines_and_the_header_may_still_be_malformed() -> None:
    # As the job joins them: the second line is no row of its own.
    rows = [tracking_row(i, destination_city="Den\nver" if i == 1 else "Lyon") for i in range(12)]
    two_lines = check(csv_bytes(rows))
    header = check(b'tracking_num,"order_id\n' + csv_bytes([tracking_row(1)]).split(b"\n", 1)[1])

    assert two_lines.ok, two_lines.reasons
    assert (two_lines.rows_sampled, two_lines.bad_rows) == (12, 1)
    assert header.reasons == ("the CSV is malformed at line 1: a quoted field opened there is never closed",)


def test_a_sample_of_blank_lines_after_the_header_says_no_row_begins_in_it() -> None:
    data = csv_bytes([tracking_row(i) for i in range(3)])
    header, rows = data.split(b"\n", 1)

    [reason] = check(header + b"\n" * 2000 + rows, sample=1024).reasons

    assert reason == "no data row begins within the 1024 bytes read: only blank lines follow the header there"


def test_a_delimiter_ending_every_line_is_named_not_listed_as_an_unnamed_column() -> None:
    lines = csv_bytes([tracking_row(i) for i in range(3)]).decode().splitlines()

    result = check("".join(f"{line},\n" for line in lines).encode())

    assert result.reasons == ("the header ends with ',': remove it, and from the end of each row that has one",)


def test_a_single_huge_line_without_newline_is_rejected_from_the_sample() -> None:
    result = check(b"x" * 5000, sample=1024, size=50 * 1024 * 1024)

    assert any("no line break in the first 1024 characters" in reason for reason in result.reasons)


def test_at_most_twenty_bad_rows_are_listed_and_the_rest_counted() -> None:
    rows = [tracking_row(n, status="LOST") for n in range(1, 26)]

    reasons = check(csv_bytes(rows)).reasons

    assert reasons[0] == "25 of 25 sampled rows are invalid, more than the contract allows (10%)"
    assert len(reasons) == 1 + 20 + 1
    assert reasons[20].startswith("line 21: ")
    assert reasons[-1] == "... and 5 more invalid rows"


def test_bad_rows_exactly_at_the_allowed_share_pass_and_one_more_fails() -> None:
    at_limit = [tracking_row(n, status="LOST" if n <= 2 else "DELIVERED") for n in range(1, 21)]  # 2 of 20: 10 %
    over = [tracking_row(n, status="LOST" if n <= 3 else "DELIVERED") for n in range(1, 21)]  # 3 of 20

    assert check(csv_bytes(at_limit)).ok
    assert check(csv_bytes(over)).reasons[0] == "3 of 20 sampled rows are invalid, more than the contract allows (10%)"
    # 29 of 100 is 0.29 exactly, though 0.29 * 100 is 28.999999999999996 in floating point.
    contracts = Contracts({"order_tracking": replace(CONTRACTS["order_tracking"], max_bad_row_ratio=0.29)})
    share = [tracking_row(n, status="LOST" if n <= 29 else "DELIVERED") for n in range(1, 101)]
    assert validate_upload(NAME, len(csv_bytes(share)), csv_bytes(share), contracts, LIMIT).ok
    # A limit below one percent is named as it is, not rounded to 0%.
    contracts = Contracts({"order_tracking": replace(CONTRACTS["order_tracking"], max_bad_row_ratio=0.005)})
    reasons = validate_upload(NAME, len(csv_bytes(over)), csv_bytes(over), contracts, LIMIT).reasons
    assert reasons[0] == "3 of 20 sampled rows are invalid, more than the contract allows (0.5%)"
    # With every digit it was written with: `:g` kept six and wrote 1e-07 as 1e-05%.
    for ratio, shown in ((0.1234567, "12.34567%"), (1e-07, "0.00001%")):
        assert replace(CONTRACTS["order_tracking"], max_bad_row_ratio=ratio).bad_row_limit == shown


def test_a_file_of_exactly_the_size_limit_passes_and_one_byte_more_does_not() -> None:
    data = csv_bytes()

    assert validate_upload(NAME, len(data), data, CONTRACTS, len(data)).ok
    over = validate_upload(NAME, len(data) + 1, data, CONTRACTS, len(data)).reasons
    assert over[0] == f"the file has {len(data) + 1} bytes, above the limit of {len(data)} (FILEGATE_MAX_FILE_BYTES)"


def test_a_whole_file_ending_inside_a_utf8_character_is_not_valid_utf8_but_a_cut_sample_may() -> None:
    data = csv_bytes([tracking_row(1, destination_city="Malmö")])
    cut = data[: data.index("ö".encode()) + 1]  # the first of the character's two bytes

    assert any("not valid UTF-8" in reason for reason in check(cut).reasons)
    # The same bytes as the sample of a longer file: the character goes on after the cut.
    assert not any("UTF-8" in reason for reason in check(data, sample=len(cut)).reasons)


def test_a_field_longer_than_pythons_csv_default_limit_is_a_value_not_a_malformed_file() -> None:
    # 131,072 characters is the csv module's default limit; the Spark job has none.
    result = check(csv_bytes([tracking_row(1, destination_city="x" * 200_000)]))

    assert result.ok, result.reasons


def test_a_multiline_record_with_text_after_its_closing_quote_is_one_bad_row_as_the_job_splits_it() -> None:
    # It refused the whole file; the job, splitting the same records, rejects that one.
    data = PRODUCTS.read_bytes().replace(b'new.",', b'new."!,', 1)

    result = check(data, name=PRODUCTS.name)

    assert result.ok, result.reasons
    assert result.bad_rows == 1
    # The multiline record (lines 4 and 5) is one row: the record after it starts on line 6.
    many = check(
        data.replace(b'inside.",', b'inside."!,', 1).replace(b'classic.",', b'classic."!,', 2), name=PRODUCTS.name
    )
    assert [reason.split(":", 1)[0] for reason in many.reasons[1:]] == ["line 2", "line 3", "line 4", "line 6"]


def test_a_quoted_field_over_three_lines_is_three_bad_rows_as_the_job_reads_its_lines() -> None:
    # It was one bad row here and three in the job, which joins a line only to the next one.
    rows = [tracking_row(i, destination_city="Den\nv\ner" if i == 1 else "Lyon") for i in range(40)]

    result = check(csv_bytes(rows))

    assert (result.rows_sampled, result.bad_rows) == (42, 3)


def test_a_line_that_closes_the_line_before_it_opens_no_record_of_its_own() -> None:
    # Lines of one quote each: the first two make one record, the others are bad rows alone (the third closes
    # the second, so it opens nothing, and the fourth has nothing to close). The job joined the second to the
    # third too and dropped the third from every row; both sides pair lines by this one rule.
    header, rows = csv_bytes([tracking_row(i) for i in range(10)]).split(b"\n", 1)

    result = check(header + b'\n"\n"\n"\n"\n' + rows)

    assert (result.rows_sampled, result.bad_rows) == (13, 3)
    assert [reason.split(": ", 1)[0] for reason in result.reasons[1:]] == ["line 2", "line 4", "line 5"]
    assert "a quoted field holds a line break" in result.reasons[1]
    assert all("row is not well-formed CSV" in reason for reason in result.reasons[2:])


def test_a_cut_sample_leaves_its_last_line_unjudged_when_it_opens_a_field_the_next_line_may_close() -> None:
    rows = csv_bytes([tracking_row(i, destination_city="Den\nver" if i == 20 else "Lyon") for i in range(22)])
    cut = rows.index(b"Den\n") + len(b"Den\n")  # the sample ends right after the line that opens the field

    result = check(rows, sample=cut)

    assert result.ok, result.reasons
    assert (result.rows_sampled, result.bad_rows) == (20, 0)
    # A last line that closes the line before it opens nothing, whatever follows: the job judges it alone.
    header, good = csv_bytes([tracking_row(i) for i in range(2)]).split(b"\n", 1)
    closer = check(header + b'\n"\n"\n"\n' + good, sample=len(header) + 7 + 3)
    assert (closer.rows_sampled, closer.bad_rows) == (2, 2)


def test_a_multiline_record_the_sample_cuts_may_span_up_to_the_limit_of_lines() -> None:
    header, first = PRODUCTS.read_bytes().split(b"\n")[:2]

    def cut_inside(lines: int) -> Validation:
        # The last field of the second record opens and runs over `lines` lines up to the cut.
        opened = first.rsplit(b",", 1)[0] + b',"' + b"\n".join([b"part"] * lines) + b"\n"
        body = b"\n".join([header, first, opened]) + b"more\n" * 50
        return check(body, name=PRODUCTS.name, sample=len(header) + len(first) + len(opened) + 2)

    assert cut_inside(MAX_CUT_RECORD_LINES).ok
    [reason] = cut_inside(MAX_CUT_RECORD_LINES + 1).reasons
    assert reason == "the CSV is malformed at line 3: a quoted field opened there is never closed"


def test_only_cr_and_lf_break_lines_as_in_the_job_and_a_header_left_open_is_malformed() -> None:
    # Python's splitlines also breaks at U+2028, NEL, form feed: the job's reader of lines does not.
    rows = [tracking_row(i, destination_city="Mal\u2028mo\x85\x0c" if i == 1 else "Lyon") for i in range(5)]
    header, *products = PRODUCTS.read_bytes().split(b"\n")
    unquoted = [line for line in products if b'"' not in line]  # a multiline file whose one quote opens its header

    result = check(csv_bytes(rows))
    opened = check(b"\n".join([header.replace(b",description,", b',"description,'), *unquoted]), name=PRODUCTS.name)

    assert result.ok, result.reasons
    assert (result.rows_sampled, result.bad_rows) == (5, 0)
    assert opened.reasons == ("the CSV is malformed at line 1: a quoted field opened there is never closed",)


def test_a_row_past_twice_the_columns_is_counted_as_more_as_the_job_says() -> None:
    data = csv_bytes([tracking_row(i) for i in range(4)]) + b"x," * 30 + b"x\n"

    reasons = check(data).reasons

    assert "line 6: row has more than 27 fields, expected 13" in reasons
