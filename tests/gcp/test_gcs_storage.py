"""GcsStore on the GCS emulator, the preconditions its requests carry, and how it reads GCS's refusals."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from filegate.errors import (
    AccessDenied,
    DamagedLeftBehind,
    DestinationExists,
    FilegateError,
    LocationMissing,
    ObjectNotFound,
    SourceChanged,
    StorageError,
    StorageUnreachable,
    TransientError,
    Unreadable,
)
from filegate.gcs_storage import GcsStore, anonymous_client
from filegate.storage import Store
from local_world.emulators import free_port
from tests.gcp.world import PROJECT, GcsEmulator, fresh_settings

META = {"filegate_source": "landing/a.csv", "filegate_source_version": "1"}


def test_the_store_meets_the_protocol(gcs_store: GcsStore) -> None:
    store: Store = gcs_store
    assert (store.kind, gcs_store.account) == ("gcs", "_")
    assert (
        store.spark_uri("archive", "order_tracking/2024/04/01/x.csv") == "gs://archive/order_tracking/2024/04/01/x.csv"
    )


def test_read_prefix_reads_only_the_prefix_of_that_generation(gcs_store: GcsStore) -> None:
    settings = fresh_settings(gcs_store)
    info = gcs_store.put(settings.landing.container, "in/a.csv", b"0123456789" * 100, "text/csv", {})

    assert gcs_store.read_prefix(settings.landing.container, "in/a.csv", 15, info.version) == b"012345678901234"
    assert gcs_store.read_range(settings.landing.container, "in/a.csv", 993, 15, info.version) == b"3456789"
    assert gcs_store.read_range(settings.landing.container, "in/a.csv", 993, 15, "") == b"3456789"  # any generation
    with pytest.raises(SourceChanged):
        gcs_store.read_prefix(settings.landing.container, "in/a.csv", 15, str(int(info.version) + 1))
    with pytest.raises(ObjectNotFound):
        gcs_store.read_prefix(settings.landing.container, "in/missing.csv", 15, info.version)


def test_copy_is_create_only_and_marks_the_copy_with_metadata(gcs_store: GcsStore) -> None:
    settings = fresh_settings(gcs_store)
    landing, archive = settings.landing.container, settings.archive.container
    source = gcs_store.put(landing, "a.csv", b"a,b\n1,2\n", "text/csv", {})

    copy = gcs_store.copy(landing, "a.csv", source.version, archive, "x/a.csv", META)

    assert (copy.container, copy.path, copy.size) == (archive, "x/a.csv", 8)
    stat = gcs_store.stat(archive, "x/a.csv")
    assert stat is not None
    assert stat.metadata == META
    assert stat.version == copy.version
    with pytest.raises(DestinationExists):
        gcs_store.copy(landing, "a.csv", source.version, archive, "x/a.csv", META)
    with pytest.raises(SourceChanged):
        gcs_store.copy(landing, "a.csv", "1", archive, "x/b.csv", META)
    with pytest.raises(ObjectNotFound):
        gcs_store.copy(landing, "gone.csv", source.version, archive, "x/c.csv", META)


def test_put_is_create_only(gcs_store: GcsStore) -> None:
    settings = fresh_settings(gcs_store)
    first = gcs_store.put(settings.rejected.container, "r.json", b"{}", "application/json", {"k": "v"})

    with pytest.raises(DestinationExists):
        gcs_store.put(settings.rejected.container, "r.json", b"[]", "application/json", {})
    assert first.metadata == {"k": "v"}
    assert gcs_store.read_prefix(settings.rejected.container, "r.json", 10, first.version) == b"{}"


def test_put_streams_a_file_in_chunks_create_only_and_a_file_that_shrank_is_a_storage_error(
    gcs_store: GcsStore, tmp_path: Path
) -> None:
    # 9 MiB: past the multipart limit (8 MiB), so the resumable upload sends two chunks from the file.
    settings = fresh_settings(gcs_store)
    data = bytes(range(256)) * (9 * 1024**2 // 256)
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    with path.open("rb") as body:
        body.read(10)  # wherever the caller left it, the file goes up from its start
        info = gcs_store.put(settings.landing.container, "big.csv", body, "text/csv", {})

    assert (info.size, info.content_md5) == (
        len(data),
        gcs_store.stat(settings.landing.container, "big.csv").content_md5,
    )
    assert gcs_store.read_range(settings.landing.container, "big.csv", len(data) - 5, 5, info.version) == data[-5:]
    with path.open("rb") as body, pytest.raises(DestinationExists):
        gcs_store.put(settings.landing.container, "big.csv", body, "text/csv", {})

    class Shrinking(io.BytesIO):
        """A file still being written over: shorter when read than when measured."""

        def read(self, size: int | None = -1) -> bytes:
            return super().read(size)[: max(0, (size or 0) // 2)]

    with pytest.raises(StorageError, match="the upload stopped"):
        gcs_store.put(settings.landing.container, "other.csv", Shrinking(data), "text/csv", {})


class CorruptingSession(requests.Session):
    """The client's real HTTP session, flipping one bit of each upload chunk it sends: bytes damaged on the
    way, which GCS stores as they arrived. Deletes are answered 403 instead of reaching GCS as `refuse` says:
    "blind" ones (no generation precondition: the library's own clean-up), "all", or "none"."""

    def __init__(self, refuse: str) -> None:
        super().__init__()
        self.refuse = refuse

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        data = kwargs.get("data")
        if str(method) == "PUT" and isinstance(data, bytes) and data:
            kwargs["data"] = bytes([data[0] ^ 1]) + data[1:]
        blind = "ifGenerationMatch" not in str(url)
        if str(method) == "DELETE" and (self.refuse == "all" or (self.refuse == "blind" and blind)):
            refused = requests.Response()
            refused.status_code = 403
            refused._content = json.dumps({"error": {"code": 403, "message": "injected"}}).encode()
            refused.headers["Content-Type"] = "application/json"
            refused.url = str(url)
            refused.request = requests.Request(str(method), str(url)).prepare()
            return refused
        return super().request(method, url, *args, **kwargs)


@pytest.mark.parametrize("refuse", ["none", "blind", "all"])
def test_a_file_whose_bytes_were_damaged_on_the_way_is_removed_or_named_for_a_person_to_remove(
    gcs_emulator: GcsEmulator, tmp_path: Path, refuse: str
) -> None:
    # The client checks the object's CRC32C once GCS has finalized it: the object exists by then, with
    # other bytes, and must not stay (it would pass for the file). The library deletes it itself and, when
    # that delete fails, raises the delete's error instead; the store then deletes it by its generation.
    # An identity that may not delete at all (an uploader's objectCreator) gets the object named.
    store = GcsStore(anonymous_client(gcs_emulator.url, PROJECT, http=CorruptingSession(refuse)))
    settings = fresh_settings(store)
    path = tmp_path / "big.csv"
    path.write_bytes(bytes(range(256)) * (9 * 1024**2 // 256))  # resumable: checked by the client

    with path.open("rb") as body, pytest.raises(FilegateError) as raised:
        store.put(settings.landing.container, "big.csv", body, "text/csv", {})

    left = store.stat(settings.landing.container, "big.csv")
    if refuse == "all":
        assert isinstance(raised.value, DamagedLeftBehind)  # exit 1: a person's look, not "run again"
        assert f": delete the damaged object {settings.landing.container}/big.csv before anything reads it" in str(
            raised.value
        )
        assert left is not None
    else:
        assert isinstance(raised.value, TransientError)
        assert "checksum did not match; removed, try again" in str(raised.value)
        assert left is None


def test_delete_only_removes_the_named_generation(gcs_store: GcsStore) -> None:
    settings = fresh_settings(gcs_store)
    info = gcs_store.put(settings.landing.container, "d.csv", b"x", "text/csv", {})

    assert gcs_store.delete(settings.landing.container, "d.csv", str(int(info.version) + 1)) is False
    assert gcs_store.stat(settings.landing.container, "d.csv") is not None
    assert gcs_store.delete(settings.landing.container, "d.csv", info.version) is True
    assert gcs_store.delete(settings.landing.container, "d.csv", info.version) is False
    assert gcs_store.stat(settings.landing.container, "d.csv") is None


def test_list_and_download(gcs_store: GcsStore, tmp_path: Path) -> None:
    settings = fresh_settings(gcs_store)
    for name in ("in/1.csv", "in/2.csv", "out/3.csv"):
        gcs_store.put(settings.landing.container, name, name.encode(), "text/csv", {})

    listed = sorted(info.path for info in gcs_store.list(settings.landing.container, "in/"))
    gcs_store.download(settings.landing.container, "out/3.csv", str(tmp_path / "3.csv"))

    assert listed == ["in/1.csv", "in/2.csv"]
    assert (tmp_path / "3.csv").read_bytes() == b"out/3.csv"


def test_an_object_stored_gzip_encoded_is_read_as_its_stored_bytes(
    gcs_emulator: GcsEmulator, gcs_store: GcsStore, tmp_path: Path
) -> None:
    # `gsutil cp -Z`: Spark reads the stored (compressed) bytes, so the function and the local Jobs API do too
    # (GCS serves such an object decompressed unless asked for its raw bytes; the emulator never does).
    settings = fresh_settings(gcs_store)
    packed = gzip.compress(b"order_id,status\n1,shipped\n" * 100_000, compresslevel=9)
    blob = gcs_emulator.client().bucket(settings.landing.container).blob("in/a.csv")
    blob.content_encoding = "gzip"
    blob.upload_from_string(packed, content_type="text/csv")
    info = gcs_store.stat(settings.landing.container, "in/a.csv")
    assert info is not None
    assert info.size == len(packed)

    assert gcs_store.read_prefix(info.container, info.path, 1024, info.version) == packed[:1024]
    gcs_store.download(info.container, info.path, str(tmp_path / "a.csv"))
    assert (tmp_path / "a.csv").read_bytes() == packed


# -- the preconditions on the wire ---------------------------------------------------------------------------


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class RecordingSession(requests.Session):
    """The client's real HTTP session, noting each request before sending it on."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Sent] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(str(url))
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        query.update({str(k): str(v) for k, v in (kwargs.get("params") or {}).items()})
        body = kwargs.get("data")
        with contextlib.suppress(ValueError):  # a media upload's bytes are not JSON
            body = json.loads(body) if isinstance(body, str | bytes) else body
        headers = {str(k).lower(): str(v) for k, v in (kwargs.get("headers") or {}).items()}
        self.sent.append(Sent(str(method), parts.path, query, headers, body))
        return super().request(method, url, *args, **kwargs)

    def take(self) -> list[Sent]:
        sent, self.sent = self.sent, []
        return sent


def test_every_move_carries_its_generation_preconditions(gcs_emulator: GcsEmulator) -> None:
    """The emulator ignores preconditions, so this checks what the real client sends GCS.

    The store runs as in the cloud (no read-first checks): each operation is one request whose
    preconditions GCS enforces atomically.
    """
    session = RecordingSession()
    store = GcsStore(anonymous_client(gcs_emulator.url, PROJECT, http=session))
    settings = fresh_settings(store)
    landing, archive = settings.landing.container, settings.archive.container
    session.take()

    source = store.put(landing, "p.csv", b"a,b\n1,2\n", "text/csv", {})
    [put] = session.take()
    assert (put.method, put.query["ifGenerationMatch"]) == ("POST", "0")

    store.read_prefix(landing, "p.csv", 4, source.version)
    [read] = session.take()
    assert read.method == "GET"
    assert read.query["ifGenerationMatch"] == source.version
    assert read.headers["range"] == "bytes=0-3"

    copy = store.copy(landing, "p.csv", source.version, archive, "x/p.csv", META)
    rewrite, *patches = session.take()
    assert rewrite.method == "POST"
    assert rewrite.path.endswith(f"/b/{landing}/o/p.csv/rewriteTo/b/{archive}/o/x%2Fp.csv")
    assert rewrite.query["ifSourceGenerationMatch"] == source.version
    assert rewrite.query["ifGenerationMatch"] == "0"
    assert rewrite.body["metadata"] == META
    # The emulator drops the rewrite body, so the store patches the copy it just made, and only that one.
    [patch] = patches
    assert (patch.method, patch.query["ifGenerationMatch"]) == ("PATCH", copy.version)
    assert patch.query["ifMetagenerationMatch"].isdigit()

    assert store.delete(landing, "p.csv", source.version) is True
    [delete] = session.take()
    assert (delete.method, delete.query["ifGenerationMatch"]) == ("DELETE", source.version)


# -- what GCS answers and the emulator never does ------------------------------------------------------------


@dataclass
class ScriptedGcs:
    """An HTTP stand-in for GCS refusals (412, 403, 503) the emulator cannot produce; the real client talks to it."""

    routes: list[tuple[str, str, int, dict[str, Any]]] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    port: int = 0

    def answer(self, method: str, pattern: str, status: int, body: dict[str, Any] | None = None) -> None:
        self.routes.insert(0, (method, pattern, status, body or {}))

    def respond(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        self.seen.append(f"{method} {path}")
        for route_method, pattern, status, body in self.routes:
            if route_method == method and re.search(pattern, path):
                return status, body
        return 404, {"error": {"code": 404, "message": "No such object"}}


def object_resource(bucket: str, name: str, generation: str) -> dict[str, Any]:
    return {"kind": "storage#object", "bucket": bucket, "name": name, "generation": generation, "size": "8"}


def refusal(status: int) -> dict[str, Any]:
    return {"error": {"code": status, "message": f"scripted {status}"}}


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedGcs, GcsStore]]:
    script = ScriptedGcs()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            status, body = script.respond(self.command, self.path)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._reply()

        def do_POST(self) -> None:
            self._reply()

        def do_DELETE(self) -> None:
            self._reply()

        def do_PATCH(self) -> None:
            self._reply()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        yield script, GcsStore(anonymous_client(url, PROJECT), retry_seconds=0.5)
    finally:
        server.shutdown()
        server.server_close()


REWRITE = r"^/storage/v1/b/src/o/a\.csv/rewriteTo/b/dst/o/a\.csv"


def test_a_refused_copy_onto_an_existing_object_is_destination_exists(scripted: tuple[ScriptedGcs, GcsStore]) -> None:
    script, store = scripted
    script.answer("POST", REWRITE, 412, refusal(412))
    script.answer("GET", r"^/storage/v1/b/dst/o/a\.csv", 200, object_resource("dst", "a.csv", "7"))

    with pytest.raises(DestinationExists):
        store.copy("src", "a.csv", "5", "dst", "a.csv", META)


def test_a_refused_copy_from_a_replaced_source_is_source_changed(scripted: tuple[ScriptedGcs, GcsStore]) -> None:
    script, store = scripted
    script.answer("POST", REWRITE, 412, refusal(412))
    script.answer("GET", r"^/storage/v1/b/src/o/a\.csv", 200, object_resource("src", "a.csv", "6"))

    with pytest.raises(SourceChanged):
        store.copy("src", "a.csv", "5", "dst", "a.csv", META)


def test_a_refused_copy_of_a_deleted_source_is_object_not_found(scripted: tuple[ScriptedGcs, GcsStore]) -> None:
    script, store = scripted
    script.answer("POST", REWRITE, 412, refusal(412))
    script.answer("GET", r"^/storage/v1/b/dst/o\?", 200, {"kind": "storage#objects"})

    with pytest.raises(ObjectNotFound):
        store.copy("src", "a.csv", "5", "dst", "a.csv", META)


def test_a_copy_into_a_missing_bucket_is_a_configuration_error(scripted: tuple[ScriptedGcs, GcsStore]) -> None:
    script, store = scripted
    script.answer("POST", REWRITE, 404, {"error": {"code": 404, "message": "The specified bucket does not exist."}})

    with pytest.raises(LocationMissing, match="bucket dst does not exist"):
        store.copy("src", "a.csv", "5", "dst", "a.csv", META)


def test_a_write_refused_with_403_onto_an_existing_object_is_destination_exists(
    scripted: tuple[ScriptedGcs, GcsStore],
) -> None:
    # Replacing needs storage.objects.delete, which archive and rejected do not grant: GCS may say 403, not 412.
    script, store = scripted
    script.answer("POST", REWRITE, 403, refusal(403))
    script.answer("POST", r"^/upload/storage/v1/b/dst/o", 403, refusal(403))
    script.answer("GET", r"^/storage/v1/b/dst/o/(a\.csv|r\.json)", 200, object_resource("dst", "a.csv", "7"))

    with pytest.raises(DestinationExists, match="refused, 403"):
        store.copy("src", "a.csv", "5", "dst", "a.csv", META)
    with pytest.raises(DestinationExists, match="refused, 403"):
        store.put("dst", "r.json", b"{}", "application/json", {})


def test_a_write_refused_with_403_onto_nothing_stays_an_access_error(scripted: tuple[ScriptedGcs, GcsStore]) -> None:
    script, store = scripted
    script.answer("POST", REWRITE, 403, {"error": {"code": 403, "message": "lacks storage.objects.create"}})

    with pytest.raises(TransientError, match=r"access denied .*storage\.objects\.create"):
        store.copy("src", "a.csv", "5", "dst", "a.csv", META)


def test_a_bucket_is_checked_by_listing_one_name_which_object_viewer_allows(
    scripted: tuple[ScriptedGcs, GcsStore],
) -> None:
    script, store = scripted
    script.answer("GET", r"^/storage/v1/b/dst/o\?", 200, {"kind": "storage#objects"})
    # What GCS answers buckets.get to an identity with object roles only. (google-cloud-storage fetches a
    # bucket's metadata in the background for its telemetry and shrugs a 403 off; the check must not need it.)
    script.answer("GET", r"^/storage/v1/b/[a-z]+(\?|$)", 403, refusal(403))

    assert store.container_exists("dst") is True
    assert store.container_exists("gone") is False
    listings = [seen for seen in script.seen if re.match(r"GET /storage/v1/b/\w+/o\?", seen)]
    assert [listing.split("?")[0] for listing in listings] == ["GET /storage/v1/b/dst/o", "GET /storage/v1/b/gone/o"]
    assert all("maxResults=1" in listing for listing in listings)


def test_a_bucket_the_identity_may_not_list_names_the_permission_to_grant(
    scripted: tuple[ScriptedGcs, GcsStore],
) -> None:
    script, store = scripted
    script.answer("GET", r"^/storage/v1/b/dst/o\?", 403, refusal(403))

    with pytest.raises(AccessDenied, match=r"storage\.objects\.list .*roles/storage\.objectViewer"):
        store.container_exists("dst")


def test_an_object_encrypted_with_a_customer_supplied_key_is_unreadable_not_transient(
    scripted: tuple[ScriptedGcs, GcsStore],
) -> None:
    # What GCS answers a read or a copy of a CSEK object without its key. A plain StorageError failed the delivery,
    # and Eventarc retried it for a day where Azure leaves such a file in landing with one WARNING (Unreadable).
    script, store = scripted
    customer_key = {
        "error": {
            "code": 400,
            "message": "The target object is encrypted by a customer-supplied encryption key.",
            "errors": [{"reason": "resourceIsEncryptedWithCustomerEncryptionKey", "domain": "global"}],
        }
    }
    script.answer("GET", r"^/download/storage/v1/b/src/o/a\.csv", 400, customer_key)
    script.answer("POST", REWRITE, 400, customer_key)

    for act in (
        lambda: store.read_prefix("src", "a.csv", 10, "5"),
        lambda: store.copy("src", "a.csv", "5", "dst", "a.csv", META),
    ):
        with pytest.raises(Unreadable, match="customer-supplied key") as raised:
            act()
        assert (raised.value.container, raised.value.path) == ("src", "a.csv")


def test_refused_reads_writes_and_deletes(scripted: tuple[ScriptedGcs, GcsStore]) -> None:
    script, store = scripted
    script.answer("GET", r"^/download/storage/v1/b/src/o/a\.csv", 412, refusal(412))
    script.answer("POST", r"^/upload/storage/v1/b/dst/o", 412, refusal(412))
    script.answer("DELETE", r"^/storage/v1/b/src/o/a\.csv", 412, refusal(412))

    with pytest.raises(SourceChanged):
        store.read_prefix("src", "a.csv", 10, "5")
    with pytest.raises(DestinationExists):
        store.put("dst", "r.json", b"{}", "application/json", {})
    assert store.delete("src", "a.csv", "5") is False


@pytest.mark.parametrize(
    ("status", "error"),
    # Unavailable after the client's retries is StorageUnreachable (readiness asks such storage once); a refusal
    # of this identity is a plain TransientError (grants propagate), per bucket.
    [(503, StorageUnreachable), (429, StorageUnreachable), (403, TransientError), (400, StorageError)],
)
def test_service_answers_become_filegate_errors(
    scripted: tuple[ScriptedGcs, GcsStore], status: int, error: type[Exception]
) -> None:
    script, store = scripted
    script.answer("GET", r"^/storage/v1/b/src/o/a\.csv", status, refusal(status))

    with pytest.raises(error) as raised:
        store.stat("src", "a.csv")

    assert type(raised.value) is error
    if status in (503, 429):
        assert len([seen for seen in script.seen if seen.startswith("GET")]) > 1, "the client should have retried"


def test_an_unreachable_service_is_transient() -> None:
    client = anonymous_client(f"http://127.0.0.1:{free_port()}", PROJECT)

    with pytest.raises(StorageUnreachable):
        GcsStore(client, retry_seconds=0.5).stat("src", "a.csv")
