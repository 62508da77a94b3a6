"""A corpus of hostile uploads and events, generated deterministically (no committed binaries)."""

from __future__ import annotations

import codecs
import gzip
import io
import json
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local_world.inputs import COLUMNS, blob_created, csv_bytes, tracking_row

NAME = "order_tracking_2024_03_05.csv"
ARCHIVED = "archived"
REJECTED = "rejected"
IGNORED = "ignored"
BIG_LINE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class HostileFile:
    """An upload, what a user would expect to happen to it, and a fragment of the reason they should see."""

    case: str
    name: str
    data: Callable[[], bytes]
    expected: str
    reason: str = ""


def _rows(count: int = 20, **overrides: str) -> list[dict[str, str]]:
    return [tracking_row(i, **overrides) for i in range(count)]


def _text(newline: str = "\n") -> str:
    return csv_bytes(_rows(), newline=newline).decode()


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("order_tracking_2024_03_05.csv", csv_bytes())
    return buffer.getvalue()


def _binary() -> bytes:
    return bytes(random.Random(42).getrandbits(8) for _ in range(4096)) + b"\x00"


def _single_line() -> bytes:
    """50 MB without a line break: only a bounded read keeps validating it cheap."""
    return b"tracking_num" + b"x" * (BIG_LINE_BYTES - len(b"tracking_num"))


def _with_bad_rows(bad: int, total: int = 20, **overrides: str) -> bytes:
    rows = [tracking_row(i, **(overrides if i < bad else {})) for i in range(total)]
    return csv_bytes(rows)


def _swap(header: list[str], a: int, b: int) -> list[str]:
    header = list(header)
    header[a], header[b] = header[b], header[a]
    return header


HEADER = list(COLUMNS)
LONG_NAME = "order_tracking_2024_03_05_" + "x" * 960 + ".csv"

FILES: tuple[HostileFile, ...] = (
    # A zero-byte Put Blob is how a streamed upload (.NET OpenWrite) begins: left for its data (the sweep rejects it).
    HostileFile("empty", NAME, lambda: b"", IGNORED, "a zero-byte Put Blob"),
    HostileFile("only-a-newline", NAME, lambda: b"\n", REJECTED, "the file has no header line"),
    HostileFile("header-only", NAME, lambda: csv_bytes([]), REJECTED, "header but no data rows"),
    HostileFile(
        "header-renamed",
        NAME,
        lambda: csv_bytes(_rows(), header=["tracking_number", *HEADER[1:]]),
        REJECTED,
        "header is missing columns: tracking_num",
    ),
    HostileFile(
        "header-reordered",
        NAME,
        lambda: csv_bytes(_rows(), header=_swap(HEADER, 0, 1)),
        REJECTED,
        "header columns are out of order: expected tracking_num, order_id, status",
    ),
    HostileFile(
        "header-duplicated-column",
        NAME,
        lambda: csv_bytes(_rows(), header=[*HEADER, "status"]),
        REJECTED,
        "header repeats columns: status",
    ),
    HostileFile(
        "header-extra-column",
        NAME,
        lambda: csv_bytes(_rows(), header=[*HEADER, "comment"]),
        REJECTED,
        "unexpected columns: 'comment'",
    ),
    HostileFile(
        "header-upper-case",
        NAME,
        lambda: csv_bytes(_rows(), header=[c.upper() for c in HEADER]),
        REJECTED,
        "must match the contract exactly (letter case, no spaces): 'TRACKING_NUM' for 'tracking_num'",
    ),
    HostileFile(
        "header-padded-with-spaces",
        NAME,
        lambda: csv_bytes(_rows(), header=[f" {c}" for c in HEADER]),
        REJECTED,
        "must match the contract exactly (letter case, no spaces): ' tracking_num' for 'tracking_num'",
    ),
    HostileFile(
        "excel-sep-line",
        NAME,
        lambda: b"sep=,\n" + csv_bytes(_rows()),
        REJECTED,
        "the first line is Excel's 'sep=,' hint, not the header: remove that line",
    ),
    HostileFile("utf8-bom", NAME, lambda: codecs.BOM_UTF8 + csv_bytes(_rows()), ARCHIVED),
    HostileFile("crlf", NAME, lambda: _text("\r\n").encode(), ARCHIVED),
    HostileFile("bom-and-crlf", NAME, lambda: codecs.BOM_UTF8 + _text("\r\n").encode(), ARCHIVED),
    HostileFile("cr-only-line-ends", NAME, lambda: _text("\r").encode(), ARCHIVED),
    HostileFile("blank-lines-between-rows", NAME, lambda: _text().replace("\n", "\n\n").encode(), ARCHIVED),
    HostileFile("one-bad-row-in-twenty", NAME, lambda: _with_bad_rows(1, status="LOST"), ARCHIVED),
    HostileFile("utf16-le", NAME, lambda: _text().encode("utf-16"), REJECTED, "UTF-16"),
    HostileFile("utf16-be", NAME, lambda: codecs.BOM_UTF16_BE + _text().encode("utf-16-be"), REJECTED, "UTF-16"),
    HostileFile(
        "latin1",
        NAME,
        lambda: csv_bytes(_rows(destination_city="Zürich")).decode().encode("latin-1"),
        REJECTED,
        "not valid UTF-8 (byte 0xfc",
    ),
    HostileFile("binary", NAME, _binary, REJECTED, "the file contains NUL bytes (first at byte"),
    HostileFile(
        "nul-inside-text",
        NAME,
        lambda: csv_bytes(_rows()).replace(b"Denver", b"Den\x00ver", 1),
        REJECTED,
        "contains NUL bytes (first at byte 270)",
    ),
    HostileFile("gzip-named-csv", NAME, lambda: gzip.compress(csv_bytes(_rows()), mtime=0), REJECTED, "gzip"),
    HostileFile("zip-named-csv", NAME, _zip_bytes, REJECTED, "ZIP archive"),
    HostileFile("50mb-single-line", NAME, _single_line, REJECTED, "no line break in the first"),
    HostileFile(
        "semicolon-delimiter",
        NAME,
        lambda: csv_bytes(_rows(), delimiter=";"),
        REJECTED,
        "the header is split by ';'",
    ),
    HostileFile("tab-delimiter", NAME, lambda: csv_bytes(_rows(), delimiter="\t"), REJECTED, "split by '\\t'"),
    HostileFile(
        "keys-missing-in-sample",
        NAME,
        lambda: _with_bad_rows(20, tracking_num=""),
        REJECTED,
        "tracking_num is empty but required",
    ),
    HostileFile("bad-status-values", NAME, lambda: _with_bad_rows(10, status="LOST"), REJECTED, "'LOST' is not one of"),
    HostileFile(
        "impossible-timestamps",
        NAME,
        lambda: _with_bad_rows(20, status_ts="2024-02-30T10:00:00Z"),
        REJECTED,
        "is not a real timestamp",
    ),
    HostileFile(
        "short-rows",
        NAME,
        lambda: b"\n".join(
            line.rsplit(b",", 1)[0] if i else line for i, line in enumerate(csv_bytes(_rows()).split(b"\n"))
        ),
        REJECTED,
        "has 12 fields, expected 13",
    ),
    # A quote never closed is one bad row, as the job reads it: past the contract's share, the file is rejected.
    HostileFile("unterminated-quote", NAME, lambda: csv_bytes(_rows()) + b'1Z9,"ORD-1,IN_TRANSIT\n', ARCHIVED),
    HostileFile(
        "unterminated-quotes",
        NAME,
        lambda: csv_bytes(_rows()) + b'1Z9,"ORD-1,IN_TRANSIT\n' * 3,
        REJECTED,
        "line 22: row is not well-formed CSV",
    ),
    HostileFile("unknown-dataset", "suppliers_2024_03_05.csv", lambda: csv_bytes(_rows()), REJECTED, "unknown dataset"),
    HostileFile(
        "calendar-impossible-date",
        "order_tracking_2024_02_30.csv",
        lambda: csv_bytes(_rows()),
        REJECTED,
        "not a real calendar date",
    ),
    HostileFile(
        "malformed-date",
        "order_tracking_2024_3_5.csv",
        lambda: csv_bytes(_rows()),
        REJECTED,
        "'order_tracking_2024_3_5.csv' does not match 'order_tracking_{yyyy}_{mm}_{dd}.csv': business date missing",
    ),
    HostileFile(
        "wrong-extension", "order_tracking_2024_03_05.txt", lambda: csv_bytes(_rows()), REJECTED, "extension '.txt'"
    ),
    HostileFile(
        "browser-copy-suffix",
        "order_tracking_2024_03_05 (1).csv",
        lambda: csv_bytes(_rows()),
        REJECTED,
        "name 'order_tracking_2024_03_05 (1).csv' does not match",
    ),
    HostileFile(
        "double-dot",
        "order_tracking_2024_03_05..csv",
        lambda: csv_bytes(_rows()),
        REJECTED,
        "name 'order_tracking_2024_03_05..csv' does not match 'order_tracking_{yyyy}_{mm}_{dd}.csv'",
    ),
    HostileFile(
        "leading-dots", "..order_tracking_2024_03_05.csv", lambda: csv_bytes(_rows()), REJECTED, "unknown dataset"
    ),
    HostileFile("spaces", "order tracking 2024 03 05.csv", lambda: csv_bytes(_rows()), REJECTED, "unknown dataset"),
    HostileFile("latin1-name", "commandes_été_2024_03_05.csv", lambda: csv_bytes(_rows()), REJECTED, "unknown dataset"),
    HostileFile("unicode-name", "заказы_2024_03_05.csv", lambda: csv_bytes(_rows()), REJECTED, "unknown dataset"),
    HostileFile(
        "valid-file-in-unicode-folder",
        "東京/order_tracking_2024_03_05.csv",
        lambda: csv_bytes(_rows()),
        ARCHIVED,
        "",
    ),
    HostileFile("very-long-name", LONG_NAME, lambda: csv_bytes(_rows()), REJECTED, "(990 characters) does not match"),
)


@dataclass(frozen=True)
class HostileEvent:
    """A delivery that must end as an ignored outcome whose reason says why."""

    case: str
    payload: Callable[[str, str], Any]
    reason: str


def _event(container: str, path: str, **data: Any) -> dict[str, Any]:
    event = blob_created(container, path, 100, "0x8DC0000000000000")
    event["data"].update(data)
    return event


def _without(container: str, key: str, data_key: str | None = None) -> dict[str, Any]:
    event = _event(container, f"incoming/{NAME}")
    if data_key:
        del event["data"][data_key]
    else:
        del event[key]
    return event


def _event_at(container: str, path: str, **data: Any) -> dict[str, Any]:
    return _event(container, path, **data)


def _gcs_event(container: str, path: str) -> dict[str, Any]:
    from local_world.inputs import gcs_finalized

    return gcs_finalized(container, path, 100, 1)


EVENTS: tuple[HostileEvent, ...] = (
    HostileEvent("not-an-object", lambda c, p: "hello", "must be a JSON object"),
    HostileEvent("null", lambda c, p: None, "must be a JSON object"),
    HostileEvent("number", lambda c, p: 42, "must be a JSON object"),
    HostileEvent("empty-array", lambda c, p: [], "empty array"),
    HostileEvent("nested-array", lambda c, p: [[_event(c, p)]], "must be a JSON object"),
    HostileEvent("no-event-type", lambda c, p: _without(c, "eventType"), "no eventType/type"),
    HostileEvent("event-type-number", lambda c, p: {**_event(c, p), "eventType": 7}, "no eventType/type"),
    HostileEvent("no-subject", lambda c, p: _without(c, "subject"), "'subject' must be a non-empty string"),
    HostileEvent("subject-not-a-blob", lambda c, p: {**_event(c, p), "subject": "/x/y"}, "is not a blob subject"),
    HostileEvent("no-data", lambda c, p: _without(c, "data"), "data must be an object"),
    HostileEvent("data-is-a-list", lambda c, p: {**_event(c, p), "data": [1, 2]}, "data must be an object"),
    HostileEvent("data-is-truncated-json-text", lambda c, p: {**_event(c, p), "data": '{"api": "PutB'}, "data must"),
    HostileEvent("no-etag", lambda c, p: _without(c, "", "eTag"), "'eTag' must be a non-empty string"),
    HostileEvent("no-api", lambda c, p: _without(c, "", "api"), "'api' must be a non-empty string"),
    HostileEvent("no-length", lambda c, p: _without(c, "", "contentLength"), "size must be a whole number"),
    HostileEvent("length-is-text", lambda c, p: _event(c, p, contentLength="abc"), "size must be a whole number"),
    HostileEvent("length-is-bool", lambda c, p: _event(c, p, contentLength=True), "got a boolean"),
    HostileEvent("length-negative", lambda c, p: _event(c, p, contentLength=-5), "size is negative"),
    HostileEvent("etag-is-number", lambda c, p: _event(c, p, eTag=12345), "'eTag' must be a non-empty string"),
    HostileEvent("path-too-long", lambda c, p: _event_at(c, "incoming/" + "a" * 5000 + ".csv"), "not a valid name"),
    HostileEvent("huge-extra-field", lambda c, p: _event(c, p, padding="x" * 8_000_000), "gone"),
    HostileEvent(
        "blob-deleted-event",
        lambda c, p: {**_event(c, p), "eventType": "Microsoft.Storage.BlobDeleted"},
        "event type Microsoft.Storage.BlobDeleted is neither Microsoft.Storage.BlobCreated",
    ),
    HostileEvent(
        "dot-dot-segment-escaping-the-prefix",
        lambda c, p: _event_at(c, f"incoming/../private/{NAME}"),
        "has '.' or '..' segments",
    ),
    HostileEvent("dot-segment", lambda c, p: _event_at(c, f"incoming/./{NAME}"), "has '.' or '..' segments"),
    HostileEvent("create-file-not-committed", lambda c, p: _event(c, p, api="CreateFile"), "not a committed write"),
    HostileEvent("folder-marker", lambda c, p: _event_at(c, "incoming/folder", contentLength=0), "folder marker"),
    HostileEvent("other-container", lambda c, p: _event_at("elsewhere", p), "outside the landing location"),
    HostileEvent("outside-prefix", lambda c, p: _event_at(c, f"other/{NAME}"), "outside the landing location"),
    HostileEvent(
        "other-account",
        lambda c, p: _event(c, p, url=f"https://otheraccount.blob.core.windows.net/{c}/{p}"),
        "storage account otheraccount",
    ),
    HostileEvent("gcs-event-on-azure", _gcs_event, "a gcs event"),
    HostileEvent("blob-never-existed", _event, "gone"),
)


def huge_batch(container: str, path: str, count: int = 5000) -> list[dict[str, Any]]:
    """Thousands of events in one delivery, all for objects in another container."""
    return [_event_at("elsewhere", f"{path}-{n}") for n in range(count)] + [_event(container, path)]


# Trigger files of the `ecommerce` pipeline: each must be rejected with a reason a producer can act on,
# while its batch's members stay archived.
TRIGGER = "trigger_2025_01_15.json"


def _trigger(**changes: Any) -> Callable[[], bytes]:
    def build() -> bytes:
        content: dict[str, Any] = {
            "batch_date": "2025-01-15",
            "files": [
                {"dataset": d, "file": f"{d}_2025_01_15.csv", "rows": 10, "bytes": 1000}
                for d in ("customers", "products", "inventory", "orders", "shipping")
            ],
        }
        for key, value in changes.items():
            if value is None:
                content.pop(key, None)
            else:
                content[key] = value(content) if callable(value) else value
        return json.dumps(content).encode()

    return build


def _with_file(entry: dict[str, Any]) -> Callable[[dict[str, Any]], list[Any]]:
    return lambda content: [*content["files"], entry]


def _nested() -> bytes:
    return b"[" * 200_000 + b"]" * 200_000


TRIGGERS = [
    HostileFile("trigger-not-json", TRIGGER, lambda: b'{"batch_date": "2025-01-15",', REJECTED, "not JSON"),
    HostileFile("trigger-empty", TRIGGER, lambda: b"", IGNORED, "a zero-byte Put Blob"),
    HostileFile(
        "trigger-not-utf8", TRIGGER, lambda: '{"batch_date": "2025-01-15é"}'.encode("latin-1"), REJECTED, "not UTF-8"
    ),
    HostileFile("trigger-gzip", TRIGGER, lambda: gzip.compress(_trigger()()), REJECTED, "gzip-compressed"),
    HostileFile("trigger-array", TRIGGER, lambda: b"[]", REJECTED, "must be a JSON object"),
    HostileFile("trigger-deeply-nested", TRIGGER, _nested, REJECTED, "too deeply"),
    HostileFile("trigger-wrong-date", TRIGGER, _trigger(batch_date="2025-01-16"), REJECTED, "differs from the date"),
    HostileFile("trigger-no-date", TRIGGER, _trigger(batch_date=None), REJECTED, '"batch_date" is missing'),
    HostileFile("trigger-impossible-date", "trigger_2025_02_30.json", _trigger(), REJECTED, "not a real calendar date"),
    HostileFile(
        "trigger-unknown-dataset",
        TRIGGER,
        _trigger(files=_with_file({"dataset": "returns", "file": "returns_2025_01_15.csv"})),
        REJECTED,
        "'returns' is not a member of ecommerce",
    ),
    HostileFile(
        "trigger-repeated-dataset",
        TRIGGER,
        _trigger(files=_with_file({"dataset": "orders", "file": "orders_2025_01_15.csv"})),
        REJECTED,
        "dataset orders is listed twice",
    ),
    HostileFile(
        "trigger-wrong-member-file",
        TRIGGER,
        _trigger(files=lambda c: [{**c["files"][0], "file": "customers_2025_01_14.csv"}, *c["files"][1:]]),
        REJECTED,
        "is not customers's file for 2025-01-15",
    ),
    HostileFile(
        "trigger-required-member-missing",
        TRIGGER,
        _trigger(files=lambda c: c["files"][1:]),
        REJECTED,
        "required member customers is not listed",
    ),
    HostileFile(
        "trigger-negative-rows",
        TRIGGER,
        _trigger(files=lambda c: [{**c["files"][0], "rows": -1}, *c["files"][1:]]),
        REJECTED,
        "rows must be a non-negative whole number",
    ),
    HostileFile(
        "trigger-bytes-as-text",
        TRIGGER,
        _trigger(files=lambda c: [{**c["files"][0], "bytes": "1000"}, *c["files"][1:]]),
        REJECTED,
        "bytes must be a non-negative whole number",
    ),
    HostileFile("trigger-files-not-a-list", TRIGGER, _trigger(files={"orders": 1}), REJECTED, '"files" must be a list'),
    HostileFile(
        "trigger-too-big",
        TRIGGER,
        lambda: _trigger()()[:-1] + b', "padding": "' + b"x" * (1024 * 1024) + b'"}',
        REJECTED,
        "above the limit of 1048576",
    ),
]
