"""Validation: decide from a bounded prefix of a file whether it may enter the archive."""

from __future__ import annotations

import codecs
import csv
import functools
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath

from filegate.contracts import Contract, Contracts

MAX_ROW_REASONS = 20
# Lines a multiline record cut by the sample may already span; a quote open longer is never closed.
MAX_CUT_RECORD_LINES = 100
MAX_SHOWN_NAME = 100
# The csv module's words for a quote that is opened and never closed before the sample ends.
_UNCLOSED_QUOTE = "unexpected end of data"
_OTHER_DELIMITERS = (";", "\t", "|", ",")
# Python's csv module refuses a field over 131,072 characters unless told otherwise, and would call a
# file with a long description or a JSON text malformed; the Spark job reads such a field. The sample's
# size bounds what is read anyway.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


@dataclass(frozen=True)
class Validation:
    """The verdict on one upload: every reason it cannot be archived, or none."""

    contract: Contract | None
    business_date: date | None
    reasons: tuple[str, ...]
    rows_sampled: int = 0
    bad_rows: int = 0
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return self.contract is not None and self.business_date is not None and not self.reasons


# The contract a file name belongs to, its business date, and why either is missing.
DatasetMatch = tuple[Contract | None, date | None, list[str]]


def match_dataset(contracts: Contracts, file_name: str) -> DatasetMatch:
    """Which dataset a file name belongs to and its business date, or why neither is known."""
    contract = contracts.match(file_name)
    if contract is None:
        guess = contracts.guess(file_name)
        if guess is None:
            patterns = ", ".join(sorted(c.file_pattern for c in contracts.values())) or "none"
            reason = f"unknown dataset: no contract matches the name {_shown(file_name)} (known: {patterns})"
            return None, None, [reason]
        suffix = PurePosixPath(file_name).suffix.lower()
        if suffix != guess.extension:
            reason = f"extension {suffix or '(none)'!r} is not allowed for {guess.name}: expected {guess.extension!r}"
        else:
            shown = _shown(file_name)
            reason = f"name {shown} does not match {guess.file_pattern!r}: business date missing or malformed"
        return guess, None, [reason]
    try:
        return contract, contract.business_date(file_name), []
    except ValueError:
        return contract, None, [f"the business date in {_shown(file_name)} is not a real calendar date"]


def _shown(text: str, limit: int = MAX_SHOWN_NAME) -> str:
    """A name as a reason quotes it: whole when short, else its start and end around the length."""
    if len(text) <= limit:
        return repr(text)
    half = limit // 2
    return f"{text[:half]!r}...{text[-half:]!r} ({len(text)} characters)"


def validate_upload(
    file_name: str,
    size: int,
    head: bytes,
    contracts: Contracts,
    max_file_bytes: int,
) -> Validation:
    """Check name, size, encoding, header and a sample of rows. `head` is the file's first bytes."""
    return validate_matched(match_dataset(contracts, file_name), size, head, max_file_bytes)


def validate_matched(match: DatasetMatch, size: int, head: bytes, max_file_bytes: int) -> Validation:
    """`validate_upload` for a file whose name `match_dataset` already matched: size, encoding, header, rows."""
    contract, business_date, matched_reasons = match
    reasons = list(matched_reasons)
    if size == 0:
        reasons.append("the file is empty (0 bytes)")
    elif size > max_file_bytes:
        reasons.append(f"the file has {size} bytes, above the limit of {max_file_bytes} (FILEGATE_MAX_FILE_BYTES)")
    if contract is None or size == 0:
        return Validation(contract, business_date, tuple(reasons), bytes_read=len(head))
    truncated = len(head) < size
    text, problem = _decode(head, truncated)
    if problem:
        return Validation(contract, business_date, (*reasons, problem), bytes_read=len(head))
    rows_sampled, bad_rows, content_reasons = _check_content(text, truncated, contract, len(head))
    return Validation(
        contract, business_date, tuple(reasons + content_reasons), rows_sampled, bad_rows, bytes_read=len(head)
    )


def _decode(head: bytes, truncated: bool) -> tuple[str, str | None]:
    """UTF-8 text of the sample (a BOM is fine), or a reason a person can act on."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "", "the file is UTF-16 encoded; save it as UTF-8"
    if head.startswith(b"\x1f\x8b"):
        return "", "the file is gzip-compressed; upload the uncompressed CSV"
    if head.startswith(b"PK\x03\x04"):
        return "", "the file is a ZIP archive (or an Excel workbook), not CSV text"
    nul = head.find(b"\x00")
    if nul >= 0:
        return "", f"the file contains NUL bytes (first at byte {nul}): binary data, not CSV text"
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        # A sample cut mid-file may end inside a multi-byte character; final=False keeps it pending.
        text = decoder.decode(head, final=not truncated)
    except UnicodeDecodeError as exc:
        return "", (
            f"the file is not valid UTF-8 (byte 0x{head[exc.start]:02x} at offset {exc.start}); "
            "it may be Latin-1 or Windows-1252: save it as UTF-8"
        )
    return text, None


def _check_content(text: str, truncated: bool, contract: Contract, read: int) -> tuple[int, int, list[str]]:
    """Header and sampled rows (`read`: the sample's bytes); returns (rows sampled, bad rows, reasons)."""
    sample = text
    if truncated:
        # The last line of a cut sample is incomplete: judge only whole lines.
        cut = max(text.rfind("\n"), text.rfind("\r"))
        if cut < 0:
            reason = f"no line break in the first {len(text)} characters: the header is too long or the file is not CSV"
            return 0, 0, [reason]
        text = text[: cut + 1]
    if contract.multiline_records:
        checked = _check_records(text, truncated, contract)
    else:
        checked = _check_lines(text, truncated, contract)
    if isinstance(checked, list):
        return 0, 0, checked
    rows_sampled, bad_rows, reasons = checked
    if rows_sampled == 0 and truncated and _after_first_line(sample).strip():
        # The sample was cut back to its last line break, before the first row ended: no row could be judged.
        reason = (
            f"the first data row does not end within the {read} bytes read: the gate reads the first "
            "FILEGATE_SAMPLE_BYTES of a file, so raise that setting for rows this long, or look for a line break "
            "missing from the file"
        )
        return 0, 0, [reason]
    if rows_sampled == 0 and truncated:
        return 0, 0, [f"no data row begins within the {read} bytes read: only blank lines follow the header there"]
    if rows_sampled == 0:
        return 0, 0, ["the file has a header but no data rows"]
    if contract.too_many_bad_rows(bad_rows, rows_sampled):
        summary = (
            f"{bad_rows} of {rows_sampled} sampled rows are invalid, more than the contract allows "
            f"({contract.bad_row_limit})"
        )
        return rows_sampled, bad_rows, [summary, *reasons]
    return rows_sampled, bad_rows, []


def _after_first_line(text: str) -> str:
    """What follows the text's first line (the header's), any line break."""
    return "".join(_LINE_BREAK.split(text, maxsplit=1)[1:])


# A record of the sample: the line it starts on, and its fields, or why it is no row.
_Record = tuple[int, list[str] | str]
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# What `str.splitlines` also takes for a line break, which the job's reader of lines does not.
_OTHER_BREAKS = re.compile("[\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def _split_lines(text: str) -> list[str]:
    """The text's lines as the job's reader splits them (at \\r\\n, \\r or \\n); "" last after a final break."""
    if _OTHER_BREAKS.search(text):
        return _LINE_BREAK.split(text)
    lines = text.splitlines() or [""]  # a tenth of the time, where it splits alike
    return [*lines, ""] if text.endswith(("\n", "\r")) else lines


def _check_lines(text: str, truncated: bool, contract: Contract) -> tuple[int, int, list[str]] | list[str]:
    """The sample read as the Spark job reads a file whose records stay on one line: line by line. A line that is
    not well-formed CSV (text after a closing quote, a quote never closed) is one bad row, as there, and counts
    against `max_bad_row_ratio`; so the verdict on such a row does not depend on whether it lies in the sample.
    Returns (rows sampled, bad rows, reasons), or the reasons the file is refused for its header."""
    lines = _split_lines(text)
    return _header_reasons(lines[0], contract) or _check_rows(_line_records(lines[1:], truncated, contract), contract)


def _header_reasons(record: str, contract: Contract) -> list[str]:
    """Why the first record (the first line, or a multiline file's first record) is not the contract's header."""
    try:
        header = next(csv.reader([record], delimiter=contract.delimiter, strict=True), None)
    except csv.Error as exc:
        if _UNCLOSED_QUOTE in str(exc):
            return ["the CSV is malformed at line 1: a quoted field opened there is never closed"]
        return [f"the CSV is malformed at line 1: {exc}"]
    return _check_header(header, contract) if header else ["the file has no header line"]


def _line_records(lines: list[str], truncated: bool, contract: Contract) -> Iterator[_Record]:
    """Each data line (the header's is line 1) as a row, or why it is a bad one (`_check_lines`).

    A line that opens a quoted field the next line closes is one bad row of two lines, as the job joins them
    (`spark_jobs.validation._join_broken_lines`), unless it closes the line before it itself; the last whole
    line of a cut sample that may open such a pair is not judged, as its next line is not there to say.
    """
    well_formed, opens, _ = _patterns(contract.delimiter)

    def pairs(first: int) -> bool:
        """Whether lines[first], not well-formed, opens a quoted field the next line closes (as the job pairs
        lines); a blank next line closes nothing, as the quote stays open over the break."""
        if first + 1 >= len(lines) or not opens.match(lines[first]):
            return False
        return bool(well_formed.match(f"{lines[first]}\n{lines[first + 1]}"))

    parsed: list[tuple[int, str]] = []
    closes_previous = False  # whether the line before this one opens a field this one closes
    taken = False  # whether this line closed the line before it into one record
    for index, line in enumerate(lines):
        if taken:
            taken = False
            continue
        if not line or '"' not in line or well_formed.match(line):  # a line without a quote is well-formed
            if line:
                parsed.append((index + 2, line))
            closes_previous = False  # a well-formed or blank line opens nothing
            continue
        paired = pairs(index)
        if paired and not closes_previous:
            taken = True  # the next line closes this one's field: one record, not a row of its own
            yield index + 2, line_break_reason(contract)
            closes_previous = pairs(index + 1)
            continue
        # A cut sample ends with a line break, which leaves "" last: its last whole line, when it may open a
        # pair, is not judged (one that closes the line before it opens none: the job judges it alone).
        cut_off = truncated and index == len(lines) - 2 and not closes_previous and opens.match(line)
        closes_previous = paired
        if not cut_off:
            yield index + 2, not_well_formed_reason(contract)
    yield from _parsed(parsed, contract.delimiter)


def _parsed(records: list[tuple[int, str]], delimiter: str) -> Iterator[_Record]:
    """Well-formed records (each with its line) as rows: one parse of them all, at C speed, one row each."""
    rows = csv.reader([record for _, record in records], delimiter=delimiter, strict=True)
    for (number, _), row in zip(records, rows, strict=True):
        yield number, row


@functools.lru_cache(maxsize=8)
def _patterns(delimiter: str) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """In Python's syntax: a well-formed record, one still inside a quoted field at its end, and the job's split
    of a `multiline_records` text into records (`spark_jobs.validation.split_records`)."""
    splitter = f"({record_pattern(delimiter, PYTHON_END)})(?:\r\n|\n|\r|\\Z)"
    well_formed, opens = well_formed_pattern(delimiter, PYTHON_END), open_record_pattern(delimiter, PYTHON_END)
    return re.compile(well_formed), re.compile(opens), re.compile(splitter)


def _check_records(text: str, truncated: bool, contract: Contract) -> tuple[int, int, list[str]] | list[str]:
    """The sample of a `multiline_records` file split into records as the job splits the file (`record_pattern`),
    each judged on its own as there: one that is not well-formed CSV is one bad row. Only a quote never closed
    refuses the whole file: it runs to the end of the text, where the job would take every later row into
    that one rejected record. The last record of a cut sample that is still inside a quoted field at the cut
    is not judged, unless it began more than MAX_CUT_RECORD_LINES before (then its quote is never closed).
    Returns (rows sampled, bad rows, reasons), or the reasons the file is refused."""
    well_formed, opens, _ = _patterns(contract.delimiter)
    records = text_records(text, contract.delimiter)
    # The first record is the header, as in the job, even an empty one; blank records are no rows.
    header_text, data = records[0][1], [record for record in records[1:] if record[1]]
    start, last = data[-1] if data else records[0]
    if opens.match(last):
        if not data or not truncated or len(_LINE_BREAK.findall(last)) > MAX_CUT_RECORD_LINES:
            return [f"the CSV is malformed at line {start}: a quoted field opened there is never closed"]
        data.pop()  # cut by the sample inside a quoted field that holds line breaks: not judged
    return _header_reasons(header_text, contract) or _check_rows(_judged(data, well_formed, contract), contract)


def text_records(text: str, delimiter: str) -> list[tuple[int, str]]:
    """The records of a `multiline_records` text, each with the line it starts on, as the job splits a file's
    text (`spark_jobs.validation.split_records`: Java's regex there, Python's here, the same pattern)."""
    records = []
    number = 1
    for match in _patterns(delimiter)[2].finditer(text):
        records.append((number, match.group(1)))
        number += len(_LINE_BREAK.findall(match.group(0)))
    return records


def _judged(records: list[tuple[int, str]], well_formed: re.Pattern[str], contract: Contract) -> Iterator[_Record]:
    """Each record (with the line it starts on) as a row, or why it is a bad one: one parse of the well-formed
    records, each whole, so one row per record."""
    parsed = []
    for number, record in records:
        if '"' not in record or well_formed.match(record):
            parsed.append((number, record))
        else:
            yield number, not_well_formed_reason(contract)
    yield from _parsed(parsed, contract.delimiter)


def _check_header(header: list[str], contract: Contract) -> list[str]:
    expected = list(contract.column_names)
    if header == expected:
        return []
    if header and header[0].lower().startswith("sep="):
        line = contract.delimiter.join(header)
        return [f"the first line is Excel's {line!r} hint, not the header: remove that line"]
    if [name.strip().lower() for name in header] == [name.lower() for name in expected]:
        differing = [f"{got!r} for {want!r}" for got, want in zip(header, expected, strict=True) if got != want]
        return [f"header names must match the contract exactly (letter case, no spaces): {', '.join(differing)}"]
    if len(header) == 1:
        for other in _OTHER_DELIMITERS:
            if other != contract.delimiter and other in header[0]:
                return [f"the header is split by {other!r}, but {contract.name} files use {contract.delimiter!r}"]
    reasons = []
    counts = Counter(header)
    duplicated = sorted(name for name, count in counts.items() if count > 1)
    missing = [name for name in expected if name not in counts]
    extra = [name for name in header if name not in expected]
    if missing:
        reasons.append(f"header is missing columns: {', '.join(missing)}")
    if extra == [""] and header[-1] == "" and header[:-1] == expected:
        reasons.append(
            f"the header ends with {contract.delimiter!r}: remove it, and from the end of each row that has one"
        )
    elif extra:
        reasons.append(f"header has unexpected columns: {', '.join(repr(name) for name in extra)}")
    if duplicated:
        reasons.append(f"header repeats columns: {', '.join(duplicated)}")
    if not reasons:
        reasons.append(f"header columns are out of order: expected {', '.join(expected)}")
    return reasons


# A quoted field, doubled quotes inside, as one possessive match (see `well_formed_pattern`).
QUOTED_FIELD = '"[^"]*+(?:""[^"]*+)*+"'
# Where a line's text ends, in Java's regex (the Spark job's `rlike`) and in Python's.
JAVA_END, PYTHON_END = "\\z", "\\Z"


def well_formed_pattern(delimiter: str, end: str = JAVA_END) -> str:
    """A line whose every field is either quoted and ends at its closing quote, or unquoted (RFC 4180): the
    records Python's csv module with strict=True reads; the function and the Spark job reject the others
    (text after a closing quote, a quote never closed) as rows, where Spark's parser would read them, but
    differently.

    Every quantifier is possessive and a quoted field is written unrolled (`"[^"]*(""[^"]*)*"`): Java
    recurses once per repetition of a group that may backtrack, and `(?:[^"]|"")*` overflowed the
    executor's stack, killing its JVM, on a quoted field of 3,000 characters (a product description).
    The grammar is unambiguous (after a field comes a delimiter or the end), so no match needs to give
    anything back, and the lines matched are the same. Python reads the same pattern (3.11 and later).
    """
    sep = re.escape(delimiter)
    field = f'(?:{QUOTED_FIELD}|[^"{sep}][^{sep}]*+)?+'
    # Java: `\z`, not `$`, which also matches before a final line terminator (U+2028, U+0085), so text after a
    # closing quote would pass when it is one of those. Python's `\Z` is its `\z`.
    return f"^{field}(?:{sep}{field})*+{end}"


def open_record_pattern(delimiter: str, end: str = JAVA_END) -> str:
    """A line that ends inside a quoted field it opened: Python's csv module reads the next lines into that field,
    up to its closing quote, where a reader of lines stops at the break."""
    sep = re.escape(delimiter)
    # A field before it: a quoted one closed (text may follow its quote, as csv keeps it), or one that does not
    # start with a quote. Possessive: the grammar gives each character one reading.
    field = f'(?:"(?:[^"]++|"")*+"[^{sep}]*+|(?!")[^{sep}]*+)'
    return f'^(?:{field}{sep})*+"(?:[^"]++|"")*+{end}'


def record_pattern(delimiter: str, end: str = JAVA_END) -> str:
    """One CSV record of a `multiline_records` file, as Python's csv module reads it.

    A quote opens a quoted field only at a field's start, and only a quoted field may hold line breaks:
    `27" monitor` is text, whatever quote comes later in the file. A quote never closed runs to the end
    of the file, one malformed record, as in Python's csv; text after a closing quote stays in its field
    (the well-formed check rejects the record). So every character of the file lands in a record, and
    no record is made up of pieces of others. Possessive quantifiers: Java's regex would otherwise
    recurse once per character of a long field.
    """
    sep = re.escape(delimiter)
    field = f'(?:"(?:[^"]++|"")*+(?:"|{end}))?+[^{sep}\r\n]*+'
    return f"{field}(?:{sep}{field})*+"


def max_counted_fields(contract: Contract) -> int:
    """Up to how many fields the job counts a row's fields exactly; a longer row is reported as having more."""
    return 2 * len(contract.columns) + 1


def not_well_formed_reason(contract: Contract) -> str:
    """Why a line that `well_formed_pattern` refuses is a bad row, in the function's sample as in the job."""
    return (
        "row is not well-formed CSV: a quoted field must end at its closing quote, right before "
        f"{contract.delimiter!r} or the line's end, and a quote that opens a field must be closed"
    )


def line_break_reason(contract: Contract) -> str:
    """Why a record whose quoted field runs over a line break is a bad row where the contract does not say
    `multiline_records` (the Spark job reads such a record as one bad row too)."""
    return (
        "a quoted field holds a line break; records must stay on one line "
        f"(or set multiline_records = true in the {contract.name} contract)"
    )


def _check_rows(records: Iterable[_Record], contract: Contract) -> tuple[int, int, list[str]]:
    """Rows sampled, bad rows, and a reason per bad row (the first MAX_ROW_REASONS of them, by line)."""
    width = len(contract.columns)
    whole: list[tuple[int, list[str]]] = []
    problems: dict[int, list[str]] = {}
    for first_line, row in records:
        if isinstance(row, str):
            problems[first_line] = [row]
        elif len(row) > max_counted_fields(contract):
            problems[first_line] = [f"row has more than {max_counted_fields(contract)} fields, expected {width}"]
        elif len(row) != width:
            problems[first_line] = [f"row has {len(row)} fields, expected {width}"]
        else:
            whole.append((first_line, row))
    rows_sampled = len(whole) + len(problems)
    bad_values = _bad_values(contract, [row for _, row in whole])
    if bad_values:
        for line, row in whole:
            found = [bad[row[index]] for index, bad in bad_values if row[index] in bad]
            if found:
                problems[line] = found
    reasons = [f"line {line}: {'; '.join(problems[line])}" for line in sorted(problems)[:MAX_ROW_REASONS]]
    if len(problems) > len(reasons):
        reasons.append(f"... and {len(problems) - len(reasons)} more invalid rows")
    return rows_sampled, len(problems), reasons


def _bad_values(contract: Contract, rows: list[list[str]]) -> list[tuple[int, dict[str, str]]]:
    """Per column with invalid values, its index and each invalid value with the reason.

    Each distinct value is checked once: a sample of thousands of rows holds few distinct statuses,
    carriers or dates, so this costs a fraction of checking every cell.
    """
    if not rows:
        return []
    found = []
    for index, (column, values) in enumerate(zip(contract.columns, zip(*rows, strict=True), strict=True)):
        distinct = set(values)
        if not column.has_rules:
            # Free text: only emptiness can be wrong.
            candidates: Iterable[str] = ("",) if "" in distinct and not column.nullable else ()
        else:
            candidates = distinct
        bad = {value: problem for value in candidates if (problem := column.check_text(value))}
        if bad:
            found.append((index, bad))
    return found
