"""Event parsing: both Azure schemas, GCS finalize, what is ignored and what is malformed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from filegate.errors import InvalidEvent
from filegate.events import GCS_ACCOUNT, Ignored, Upload, named_object, parse_event, parse_events
from local_world.inputs import as_cloudevent, blob_created, gcs_finalized


def test_event_grid_schema_becomes_an_upload() -> None:
    event = blob_created("landing", "daily/order_tracking_2024_03_05.csv", 1234, "0x8DC1", port=10000)

    upload = parse_event(event)

    assert upload == Upload(
        store="azure",
        account="devstoreaccount1",
        container="landing",
        path="daily/order_tracking_2024_03_05.csv",
        size=1234,
        version="0x8DC1",
        event_id=event["id"],
        content_type="text/csv",
        sequencer=event["data"]["sequencer"],
        api="PutBlob",
        event_time=event["eventTime"],
    )
    assert upload.name == "order_tracking_2024_03_05.csv"


def test_cloudevents_schema_gives_the_same_upload() -> None:
    event = blob_created("landing", "order_tracking_2024_03_05.csv", 10, "0x1")

    assert parse_event(as_cloudevent(event)) == parse_event(event)


def test_account_comes_from_a_real_azure_url() -> None:
    event = blob_created("landing", "f.csv", 10, "0x1")
    event["data"]["url"] = "https://contosodata.blob.core.windows.net/landing/f.csv"

    upload = parse_event(event)

    assert isinstance(upload, Upload)
    assert upload.account == "contosodata"


@pytest.mark.parametrize(
    ("url", "topic", "account"),
    [
        # Azure DNS zone endpoints (`<account>.z<NN>.blob.storage.azure.net`): the zone label varies.
        ("https://contosodata.z23.blob.storage.azure.net/landing/f.csv", "", "contosodata"),
        ("https://contosodata.z05.dfs.storage.azure.net/landing/f.csv", "", "contosodata"),
        # A host that names no account the parser knows: its path starts with the container, not the account.
        ("https://files.contoso.example/landing/f.csv", "/subscriptions/s/storageAccounts/contosodata", "contosodata"),
        # Azurite's path style, on an IP address or a single-label host (a container's name).
        ("http://127.0.0.1:10000/devstoreaccount1/landing/f.csv", "", "devstoreaccount1"),
        ("http://azurite:10000/devstoreaccount1/landing/f.csv", "", "devstoreaccount1"),
    ],
)
def test_the_account_is_read_from_where_each_url_style_puts_it(url: str, topic: str, account: str) -> None:
    event = blob_created("landing", "f.csv", 10, "0x1")
    event["data"]["url"] = url
    event["topic"] = topic

    upload = parse_event(event)

    assert isinstance(upload, Upload)
    assert upload.account == account


def test_a_url_that_names_no_account_without_a_topic_is_malformed() -> None:
    event = blob_created("landing", "f.csv", 10, "0x1")
    event["data"]["url"] = "https://files.contoso.example/landing/f.csv"
    event["topic"] = ""

    with pytest.raises(InvalidEvent, match="cannot tell the storage account"):
        parse_event(event)


def test_a_url_that_cannot_be_parsed_is_malformed_not_a_crash() -> None:
    # A ValueError would escape handle_payload, and the platform would retry a malformed event for a day.
    event = blob_created("landing", "f.csv", 10, "0x1")
    event["data"]["url"] = "https://[bad/landing/f.csv"

    with pytest.raises(InvalidEvent, match=r"data\.url is not a URL"):
        parse_event(event)


def test_an_array_yields_one_result_per_event() -> None:
    events = [blob_created("landing", f"f{i}.csv", 10, f"0x{i}") for i in range(3)]

    results = parse_events(events)

    assert [r.path for r in results if isinstance(r, Upload)] == ["f0.csv", "f1.csv", "f2.csv"]


@pytest.mark.parametrize("api", ["PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"])
def test_committed_writes_are_processed(api: str) -> None:
    assert isinstance(parse_event(blob_created("landing", "f.csv", 10, "0x1", api=api)), Upload)


@pytest.mark.parametrize("api", ["CreateFile", "PutBlock", "SetBlobMetadata"])
def test_uncommitted_writes_are_ignored_with_a_reason(api: str) -> None:
    result = parse_event(blob_created("landing", "f.csv", 0, "0x1", api=api))

    assert isinstance(result, Ignored)
    assert api in result.reason


def test_other_event_types_are_ignored() -> None:
    event = blob_created("landing", "f.csv", 10, "0x1")
    event["eventType"] = "Microsoft.Storage.BlobDeleted"

    result = parse_event(event)

    assert isinstance(result, Ignored)
    assert "BlobDeleted" in result.reason


@pytest.mark.parametrize("path", ["incoming/order_tracking_2024_03_05.csv\n", "in\nc/order_tracking_2024_03_05.csv"])
def test_a_blob_name_with_a_line_break_is_the_blob_its_subject_names(path: str) -> None:
    # Azure takes any character in a blob name, a script's stray line break too. The subject's pattern stopped
    # at it: a final one was dropped (the event named another blob, `...csv`), one inside made the event
    # malformed; either way the file stayed in landing for the sweep.
    upload = parse_event(blob_created("landing", path, 10, "0x1"))

    assert isinstance(upload, Upload)
    assert upload.path == path


@pytest.mark.parametrize("path", ["incoming/", "incoming/2024"])
def test_zero_byte_folder_markers_are_ignored(path: str) -> None:
    result = parse_event(blob_created("landing", path, 0, "0x1"))

    assert isinstance(result, Ignored)
    assert "folder marker" in result.reason


def test_a_zero_byte_file_is_an_upload_so_it_gets_rejected_with_its_reason() -> None:
    name = "order_tracking_2024_03_05.csv"
    for api in ("PutBlockList", "CopyBlob"):
        assert isinstance(parse_event(blob_created("landing", name, 0, "0x1", api=api)), Upload)
    assert isinstance(parse_event(gcs_finalized("landing", name, 0, 1)), Upload)


def test_a_zero_byte_put_blob_is_left_for_the_data_a_streamed_upload_commits_onto_it() -> None:
    result = parse_event(blob_created("landing", "order_tracking_2024_03_05.csv", 0, "0x1", api="PutBlob"))

    assert isinstance(result, Ignored)
    assert "OpenWrite" in result.reason
    assert "sweep" in result.reason


def _broken(mutate: str) -> object:
    event = copy.deepcopy(blob_created("landing", "f.csv", 10, "0x1"))
    if mutate == "no subject":
        del event["subject"]
    elif mutate == "no data":
        del event["data"]
    elif mutate == "data is a string":
        event["data"] = "oops"
    elif mutate == "size is text":
        event["data"]["contentLength"] = "ten"
    elif mutate == "size is a boolean":
        event["data"]["contentLength"] = True
    elif mutate == "negative size":
        event["data"]["contentLength"] = -1
    elif mutate == "etag missing":
        del event["data"]["eTag"]
    elif mutate == "subject is not a blob":
        event["subject"] = "/containers/landing"
    elif mutate == "no type":
        del event["eventType"]
    elif mutate == "not an object":
        return ["nested", "list"]
    return event


@pytest.mark.parametrize(
    "mutate",
    [
        "no subject",
        "no data",
        "data is a string",
        "size is text",
        "size is a boolean",
        "negative size",
        "etag missing",
        "subject is not a blob",
        "no type",
        "not an object",
    ],
)
def test_malformed_events_raise_invalid_event_with_a_message(mutate: str) -> None:
    with pytest.raises(InvalidEvent) as raised:
        parse_event(_broken(mutate))

    assert str(raised.value)


def gcs_event(
    name: str = "order_tracking_2024_03_05.csv", size: str = "120", generation: str = "1700000000000001"
) -> dict[str, Any]:
    """The finalize event as Eventarc sends it, with size and generation as given (they arrive as strings)."""
    event = gcs_finalized("landing-bucket", name, 0, 0, event_id="8242069212437547")
    event["data"].update(size=size, generation=generation)
    return event


def test_gcs_finalize_sizes_and_generations_arrive_as_strings() -> None:
    upload = parse_event(gcs_event())

    assert isinstance(upload, Upload)
    assert (upload.store, upload.container, upload.path) == ("gcs", "landing-bucket", "order_tracking_2024_03_05.csv")
    assert (upload.size, upload.version) == (120, "1700000000000001")


@pytest.mark.parametrize("generation", ["abc", "\uff11\uff12", "²"])
def test_gcs_event_with_a_non_numeric_generation_is_malformed(generation: str) -> None:
    # Full-width digits would be a second identity (and run token) of generation 12; `²` is a digit int() refuses.
    with pytest.raises(InvalidEvent):
        parse_event(gcs_event(generation=generation))


@pytest.mark.parametrize("size", ["²", "\uff11\uff12"])
def test_gcs_event_with_a_size_in_other_digits_is_malformed_not_a_crash(size: str) -> None:
    with pytest.raises(InvalidEvent, match="size must be a whole number"):
        parse_event(gcs_event(size=size))


def test_a_gcs_upload_has_one_identity_whatever_else_the_event_carries() -> None:
    # The sweep builds a GCS upload from a listing, which names no project: any account-like field
    # in the event must not change the identity, or the event and the sweep would get two run tokens.
    plain = parse_event(gcs_event())
    event = gcs_event()
    event["data"]["projectNumber"] = "123456789012"

    assert isinstance(plain, Upload)
    assert parse_event(event) == plain
    assert plain.account == GCS_ACCOUNT


@pytest.mark.parametrize("path", ["incoming/../private/f.csv", "incoming/./f.csv", "../f.csv", "a/.."])
def test_azure_blob_paths_with_dot_segments_are_malformed(path: str) -> None:
    with pytest.raises(InvalidEvent, match=r"'\.' or '\.\.' segments"):
        parse_event(blob_created("landing", path, 10, "0x1"))


def test_gcs_object_names_are_taken_literally_even_with_dot_segments() -> None:
    # The GCS client quotes the whole name, `/` included, so nothing resolves `..`: the object is
    # exactly the one the event names.
    upload = parse_event(gcs_event(name="incoming/../order_tracking_2024_03_05.csv"))

    assert isinstance(upload, Upload)
    assert upload.path == "incoming/../order_tracking_2024_03_05.csv"


@pytest.mark.parametrize("blob_type", ["AppendBlob", "PageBlob"])
def test_a_blob_that_is_not_a_block_blob_is_ignored_with_a_warning(blob_type: str) -> None:
    event = blob_created("landing", "order_tracking_2024_03_05.csv", 0, "0x1", api="PutBlockList")
    assert event["data"]["blobType"] == "BlockBlob"
    assert isinstance(parse_event(event), Upload)
    event["data"]["blobType"] = blob_type

    parsed = parse_event(event)

    assert isinstance(parsed, Ignored)
    assert parsed.reason.startswith(f"a {blob_type}: Filegate takes block blobs")
    assert parsed.warn
    del event["data"]["blobType"]  # a delivery that does not say: taken as a block blob, as before
    assert isinstance(parse_event(event), Upload)


def test_a_malformed_event_still_names_the_object_it_was_about() -> None:
    # Its log line is all a person gets: the object stays where it is, and an event id names nothing in a store.
    gcs = gcs_finalized("landing", "in/order_tracking_2024_03_05.csv", 10, 7)
    del gcs["data"]["size"]
    gcs_without_data = {**gcs, "data": "not an object"}
    azure = blob_created("landing", "in/order_tracking_2024_03_05.csv", 10, "0x1")
    del azure["data"]["eTag"]

    for event in (gcs, gcs_without_data, azure, as_cloudevent(azure)):
        with pytest.raises(InvalidEvent):
            parse_event(event)
        assert named_object(event) == "landing/in/order_tracking_2024_03_05.csv"
    assert named_object(["not", "an", "event"]) == ""
    assert named_object({"id": "x", "type": "google.cloud.storage.object.v1.finalized"}) == ""
