"""Validation: decide from a bounded prefix of a file whether it may enter the archive."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath
from typing import Any

from filegate.contracts import Contract, Contracts
from filegate.errors import FilegateError

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
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=contract.delimiter, strict=True)
    header: list[str] | None = None
    try:
        header = next(reader, None)
        if header is None or header == []:
            return 0, 0, ["the file has no header line"]
        reasons = _check_header(header, contract)
        if reasons:
            return 0, 0, reasons
        rows_sampled, bad_rows, reasons = _check_rows(reader, contract, truncated)
    except csv.Error as exc:
        start = exc.start if isinstance(exc, _RecordError) else reader.line_num
        if _UNCLOSED_QUOTE in str(exc):
            # Said where the quote opened (line 1 while the header was read): the reader notices only at the
            # end of the data, lines later.
            opened = start if header is not None else 1
            return 0, 0, [f"the CSV is malformed at line {opened}: a quoted field opened there is never closed ({exc})"]
        if start < reader.line_num:
            # A quote that opened the record lines earlier and a later quote closed: both lines are suspects.
            return 0, 0, [f"the CSV is malformed in the record from line {start} to line {reader.line_num}: {exc}"]
        return 0, 0, [f"the CSV is malformed at line {reader.line_num}: {exc}"]
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
    if bad_rows > contract.max_bad_row_ratio * rows_sampled:
        summary = (
            f"{bad_rows} of {rows_sampled} sampled rows are invalid, more than the contract allows "
            f"({contract.max_bad_row_ratio:.0%})"
        )
        return rows_sampled, bad_rows, [summary, *reasons]
    return rows_sampled, bad_rows, []


def _after_first_line(text: str) -> str:
    """What follows the text's first line (the header's), any line break."""
    return "".join(re.split(r"\r\n|\r|\n", text, maxsplit=1)[1:])


def _whole_records(reader: Any, truncated: bool) -> Iterator[list[str]]:
    """The reader's records, without the one a cut sample leaves open inside a quoted field.

    The sample is cut at its last line break, which may lie inside a quoted field that holds line
    breaks (`multiline_records`): that record goes on past the sample, so it is not judged. Read whole,
    a file that ends inside quotes is malformed, and so is a sample whose open record began more than
    MAX_CUT_RECORD_LINES before the cut: that is a quote never closed (the job would read every later
    row into one rejected record), not a long description.
    """
    last = reader.line_num
    try:
        for record in reader:
            last = reader.line_num
            yield record
    except csv.Error as exc:
        cut = truncated and reader.line_num - last <= MAX_CUT_RECORD_LINES
        if not (cut and _UNCLOSED_QUOTE in str(exc)):
            raise _RecordError(str(exc), last + 1) from exc


class _RecordError(FilegateError, csv.Error):
    """The csv module's error for a record, with the line the record starts on (`start`); caught within this
    module, where it becomes a reason."""

    def __init__(self, message: str, start: int) -> None:
        super().__init__(message)
        self.start = start


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


def line_break_reason(contract: Contract) -> str:
    """Why a record whose quoted field runs over a line break is a bad row where the contract does not say
    `multiline_records` (the Spark job reads such a record as one bad row too)."""
    return (
        "a quoted field holds a line break; records must stay on one line "
        f"(or set multiline_records = true in the {contract.name} contract)"
    )


def _check_rows(reader: Any, contract: Contract, truncated: bool) -> tuple[int, int, list[str]]:
    """Rows sampled, bad rows, and a reason per bad row (the first MAX_ROW_REASONS of them, by line)."""
    width = len(contract.columns)
    whole: list[tuple[int, list[str]]] = []
    problems: dict[int, list[str]] = {}
    last_line = reader.line_num
    # Only a record that may span lines can be cut by the sample; elsewhere a quote still open at the
    # sample's end was opened on an earlier line, and the file is malformed as when read whole.
    for row in _whole_records(reader, truncated and contract.multiline_records):
        first_line, spans_lines, last_line = last_line + 1, reader.line_num - last_line > 1, reader.line_num
        if not row:
            continue
        if spans_lines and not contract.multiline_records:
            problems[first_line] = [line_break_reason(contract)]
        elif len(row) != width:
            problems[first_line] = [f"has {len(row)} fields, expected {width}"]
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
