"""Trigger files: the producer's "this business day is complete" note, read whole and checked for every fault."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from filegate.contracts import Contracts, same_name
from filegate.pipelines import Pipeline

MAX_TRIGGER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Expected:
    """One member file a trigger announces, with what the producer says about it."""

    dataset: str
    file: str
    rows: int | None = None
    bytes: int | None = None
    md5: str | None = None  # as 32 lowercase hex digits


def md5_hex(text: str) -> str | None:
    """An MD5 written as 32 hex digits or as base64 of its 16 bytes (how both stores list it), as lowercase hex;
    None when it is neither."""
    text = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{32}", text):
        return text.lower()
    try:
        digest = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest.hex() if len(digest) == 16 else None


@dataclass(frozen=True)
class Trigger:
    """A checked trigger: the batch's date, the member files it expects, and every reason it is unusable."""

    business_date: date | None
    expected: tuple[Expected, ...]
    reasons: tuple[str, ...]
    content: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.business_date is not None and not self.reasons


def member_file(pipeline: Pipeline, contracts: Contracts, dataset: str, business_date: date) -> str:
    """The file name a member's pattern gives for a date."""
    return contracts[dataset].file_name(business_date)


def read_trigger(pipeline: Pipeline, contracts: Contracts, file_name: str, size: int, data: bytes) -> Trigger:
    """Check a trigger's name and bytes; `data` is the whole file (the caller reads at most the limit)."""
    reasons: list[str] = []
    try:
        name_date = pipeline.trigger_date(file_name)
    except ValueError:
        name_date = None
        reasons.append(f"the business date in {file_name!r} is not a real calendar date")
    if size > MAX_TRIGGER_BYTES:
        reasons.append(f"the trigger has {size} bytes, above the limit of {MAX_TRIGGER_BYTES} for a trigger file")
        return Trigger(name_date, (), tuple(reasons), {})
    if not data.strip():
        # "not JSON: Expecting value at line 1 column 1" would send a producer looking for a syntax error.
        reasons.append("the trigger is empty (0 bytes)" if size == 0 else "the trigger holds nothing but blank space")
        return Trigger(name_date, (), tuple(reasons), {})
    if data.startswith(b"\x1f\x8b"):
        # Stored compressed (`--content-encoding gzip`, `gsutil cp -Z`): the stores' raw bytes are what is read.
        reasons.append("the trigger is gzip-compressed (stored with Content-Encoding gzip?); upload it uncompressed")
        return Trigger(name_date, (), tuple(reasons), {})
    try:
        # utf-8-sig: a byte-order mark, as some Windows tools write one, is not an error.
        content = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        reasons.append(f"the trigger is not UTF-8 text (byte {exc.start} cannot be decoded)")
        return Trigger(name_date, (), tuple(reasons), {})
    except json.JSONDecodeError as exc:
        reasons.append(f"the trigger is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        return Trigger(name_date, (), tuple(reasons), {})
    except RecursionError:
        reasons.append("the trigger nests JSON arrays or objects too deeply to be a batch manifest")
        return Trigger(name_date, (), tuple(reasons), {})
    if not isinstance(content, dict):
        reasons.append(f"the trigger must be a JSON object, not {type(content).__name__}")
        return Trigger(name_date, (), tuple(reasons), {})
    stated = content.get("batch_date")
    if not isinstance(stated, str):
        reasons.append('"batch_date" is missing or not text (expected YYYY-MM-DD)')
    elif name_date is not None and stated != name_date.isoformat():
        reasons.append(f'"batch_date" {stated!r} differs from the date in the file name ({name_date.isoformat()})')
    expected = _expected(pipeline, contracts, content, name_date, reasons) if name_date else ()
    return Trigger(name_date, expected, tuple(reasons), content)


def _expected(
    pipeline: Pipeline, contracts: Contracts, content: dict[str, Any], business_date: date, reasons: list[str]
) -> tuple[Expected, ...]:
    files = content.get("files")
    if files is None:
        if pipeline.manifest_lists_files:
            reasons.append(f'"files" is missing; pipeline {pipeline.name} requires the trigger to list its files')
        # Without a listing the required members' files for that date are the batch.
        return tuple(
            Expected(dataset, member_file(pipeline, contracts, dataset, business_date))
            for dataset in pipeline.required_members
        )
    if not isinstance(files, list):
        reasons.append('"files" must be a list of {"dataset", "file"} objects')
        return ()
    found: dict[str, Expected] = {}
    for index, entry in enumerate(files):
        where = f"files[{index}]"
        if not isinstance(entry, dict):
            reasons.append(f"{where} must be an object")
            continue
        dataset, file = entry.get("dataset"), entry.get("file")
        if not isinstance(dataset, str) or dataset not in pipeline.members:
            reasons.append(
                f"{where}: dataset {dataset!r} is not a member of {pipeline.name} ({', '.join(pipeline.members)})"
            )
            continue
        if dataset in found:
            reasons.append(f"{where}: dataset {dataset} is listed twice")
            continue
        wanted = member_file(pipeline, contracts, dataset, business_date)
        if not isinstance(file, str) or not same_name(file, wanted):  # as patterns match: any case, Unicode form
            reasons.append(f"{where}: file {file!r} is not {dataset}'s file for {business_date.isoformat()} ({wanted})")
        counts = {}
        for key in ("rows", "bytes"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                reasons.append(f"{where}: {key} must be a non-negative whole number, got {value!r}")
                value = None
            counts[key] = value
        md5, given = None, entry.get("md5")
        if given not in (None, ""):  # an empty md5 states nothing
            md5 = md5_hex(given) if isinstance(given, str) else None
            if md5 is None:
                reasons.append(f"{where}: md5 must be 32 hex digits or the base64 of 16 bytes, got {given!r}")
        found[dataset] = Expected(dataset, wanted, counts["rows"], counts["bytes"], md5)
    for dataset in pipeline.required_members:
        if dataset not in found:
            reasons.append(f'required member {dataset} is not listed in "files"')
    return tuple(found.values())
