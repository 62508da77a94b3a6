"""Trigger files: what a good one yields, and every reason a bad one gives at once."""

from __future__ import annotations

import base64
import gzip
import json
import unicodedata
from dataclasses import replace
from pathlib import Path

from filegate.contracts import Contracts, load_contracts
from filegate.manifest import MAX_TRIGGER_BYTES, read_trigger
from filegate.pipelines import load_pipelines

CONTRACTS = load_contracts()
PIPELINE = load_pipelines(CONTRACTS)["ecommerce"]
SAMPLE = Path(__file__).resolve().parents[1] / "data/samples/ecommerce/trigger_2025_01_15.json"


def read(name: str, data: bytes, pipeline=PIPELINE):  # type: ignore[no-untyped-def]
    return read_trigger(pipeline, CONTRACTS, name, len(data), data)


def test_the_sample_trigger_expects_each_member_with_its_size() -> None:
    trigger = read("trigger_2025_01_15.json", SAMPLE.read_bytes())

    assert trigger.ok
    assert (trigger.expected[0].dataset, trigger.expected[0].file) == ("customers", "customers_2025_01_15.csv")
    assert trigger.expected[0].bytes == 11371
    assert trigger.expected[0].rows == 60


def test_a_trigger_without_files_expects_the_required_members_by_pattern() -> None:
    trigger = read("trigger_2025_01_15.json", b'{"batch_date": "2025-01-15"}')

    assert trigger.ok
    assert [e.file for e in trigger.expected] == [
        f"{d}_2025_01_15.csv" for d in ("customers", "products", "inventory", "orders", "shipping")
    ]
    assert all(e.bytes is None for e in trigger.expected)


def test_a_pipeline_that_demands_a_listing_rejects_a_trigger_without_one() -> None:
    trigger = read(
        "trigger_2025_01_15.json", b'{"batch_date": "2025-01-15"}', replace(PIPELINE, manifest_lists_files=True)
    )

    assert not trigger.ok
    assert trigger.reasons == ('"files" is missing; pipeline ecommerce requires the trigger to list its files',)


def test_every_reason_is_given_at_once() -> None:
    content = json.loads(SAMPLE.read_bytes())
    content["batch_date"] = "2025-01-16"
    content["files"][0]["rows"] = -1
    content["files"].append({"dataset": "returns", "file": "returns_2025_01_15.csv"})
    content["files"].append({"dataset": "orders", "file": "orders_2025_01_15.csv"})

    trigger = read("trigger_2025_01_15.json", json.dumps(content).encode())

    assert len(trigger.reasons) == 4
    assert not trigger.ok


def test_a_trigger_above_the_limit_is_not_parsed() -> None:
    trigger = read_trigger(PIPELINE, CONTRACTS, "trigger_2025_01_15.json", MAX_TRIGGER_BYTES + 1, b"")

    assert trigger.reasons == ("the trigger has 1048577 bytes, above the limit of 1048576 for a trigger file",)


def test_an_empty_trigger_says_it_is_empty_not_that_its_json_is_malformed() -> None:
    # A GCS upload of zero bytes is finalized and read as a trigger (Azure's zero-byte Put Blob waits instead).
    assert read("trigger_2025_01_15.json", b"").reasons == ("the trigger is empty (0 bytes)",)
    assert read("trigger_2025_01_15.json", b" \r\n").reasons == ("the trigger holds nothing but blank space",)


def test_a_trigger_stored_gzip_compressed_says_so() -> None:
    # The stores' raw bytes are read (a blob stored with Content-Encoding gzip is not decoded on either cloud).
    trigger = read("trigger_2025_01_15.json", gzip.compress(SAMPLE.read_bytes()))

    assert trigger.reasons == (
        "the trigger is gzip-compressed (stored with Content-Encoding gzip?); upload it uncompressed",
    )


def test_an_md5_is_read_as_hex_or_base64_and_anything_else_is_refused() -> None:
    digest = bytes(range(16))
    content = json.loads(SAMPLE.read_bytes())
    content["files"][0]["md5"] = digest.hex().upper()
    content["files"][1]["md5"] = base64.b64encode(digest).decode()
    trigger = read("trigger_2025_01_15.json", json.dumps(content).encode())
    assert trigger.ok
    assert [e.md5 for e in trigger.expected[:3]] == [digest.hex(), digest.hex(), None]

    content["files"][0]["md5"] = "d41d8cd98f00b204e9800998ecf8427"  # 31 digits
    content["files"][1]["md5"] = 12345
    refused = read("trigger_2025_01_15.json", json.dumps(content).encode())
    assert refused.reasons == (
        "files[0]: md5 must be 32 hex digits or the base64 of 16 bytes, got 'd41d8cd98f00b204e9800998ecf8427'",
        "files[1]: md5 must be 32 hex digits or the base64 of 16 bytes, got 12345",
    )


def test_true_is_not_a_count_of_rows_or_bytes() -> None:
    content = json.loads(SAMPLE.read_bytes())
    content["files"][0]["rows"] = True
    content["files"][1]["bytes"] = False

    trigger = read("trigger_2025_01_15.json", json.dumps(content).encode())

    assert trigger.reasons == (
        "files[0]: rows must be a non-negative whole number, got True",
        "files[1]: bytes must be a non-negative whole number, got False",
    )


def test_a_listed_file_is_its_members_file_in_any_case_and_unicode_form() -> None:
    # Patterns match a name in any case and Unicode form (a Mac writes `é` as `e` and an accent); the trigger's
    # `files` compared letter case only, so a trigger listing the very name the member was archived under was
    # rejected ("is not customers's file").
    accented = replace(CONTRACTS["customers"], file_pattern="clientèle_{yyyy}_{mm}_{dd}.csv")
    contracts = Contracts({**CONTRACTS, "customers": accented})
    listed = unicodedata.normalize("NFD", "Clientèle_2025_01_15.csv")
    files = [{"dataset": "customers", "file": listed}] + [
        {"dataset": d, "file": f"{d}_2025_01_15.csv"} for d in ("products", "inventory", "orders", "shipping")
    ]
    data = json.dumps({"batch_date": "2025-01-15", "files": files}).encode()

    trigger = read_trigger(PIPELINE, contracts, "trigger_2025_01_15.json", len(data), data)

    assert trigger.ok, trigger.reasons
    assert trigger.expected[0].file == "clientèle_2025_01_15.csv"
