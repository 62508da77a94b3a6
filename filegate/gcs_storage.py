"""Google Cloud Storage behind the storage protocol (works against gcp-storage-emulator too).

Every move relies on generation preconditions that GCS enforces on the server: a read, copy or
delete names the generation the event described (`ifGenerationMatch` / `ifSourceGenerationMatch`),
and a copy or write lands only where nothing exists yet (`ifGenerationMatch=0`).

Limit of local testing: gcp-storage-emulator accepts these preconditions but ignores them (a
create-only copy onto an existing object succeeds). With `STORAGE_EMULATOR_HOST` set the store
therefore also checks by reading first, which gives the same answers as GCS when nothing races.
Only the server-side preconditions close the races, so tests/gcp/test_gcs_storage.py records the
preconditions every request carries instead of trusting the emulator's answers.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO

from filegate.errors import (
    AccessDenied,
    ConditionFailed,
    DamagedLeftBehind,
    DestinationExists,
    FilegateError,
    Leased,
    LocationMissing,
    ObjectNotFound,
    SettingsError,
    SourceChanged,
    StorageError,
    StorageUnreachable,
    TransientError,
    Unreadable,
)
from filegate.events import GCS, GCS_ACCOUNT
from filegate.storage import Body, ObjectInfo, body_size
from filegate.uris import gcs_uri

if TYPE_CHECKING:
    from google.cloud.storage import Blob, Client

LOCAL_PROJECT = "filegate-local"
# An event-driven function gets at most 9 minutes. Every call here ends within about a minute:
# each attempt times out (connect, read; GCS asks for >= 30 s on rewrite) and the retries on
# 429/5xx/connection errors stop after a bounded window. A store that keeps failing therefore ends
# the event with TransientError and Eventarc's redelivery takes over, rather than the platform
# killing the function mid-call or a call hanging forever.
_TIMEOUT = (10.0, 30.0)
# Chunks of a streamed upload (a multiple of 256 KiB, as resumable uploads require).
_UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024
_RETRY_SECONDS = 30.0
# A rewrite between locations or storage classes takes several calls; give up before 9 minutes.
_REWRITE_SECONDS = 240.0
_TRANSIENT_STATUS = frozenset({408, 429})
# GCS's 403 for an object under an event-based or temporary hold, or still inside a retention period
# ("Object 'b/o' is under active Event-Based hold and cannot be deleted, overwritten or archived until
# hold is removed.", "... is subject to bucket's retention policy or object retention and cannot be
# deleted or overwritten until ..."): not a missing grant.
_HELD = re.compile(r"under active .*hold|subject to .*retention", re.IGNORECASE)
# GCS's 400 for reading or copying an object encrypted with a customer-supplied key (CSEK) without that key. The
# JSON API names it in the error's reasons; a download's error carries the answer's body in its message only.
_CUSTOMER_KEY = "resourceIsEncryptedWithCustomerEncryptionKey"


@contextmanager
def _gcs_errors(
    what: str, precondition: type[ConditionFailed] = SourceChanged, reading: tuple[str, str] = ("", "")
) -> Iterator[None]:
    """Translate the SDK's errors into Filegate's; a 412 becomes `precondition`, an object no retry can read
    an Unreadable naming `reading` (the container and path whose bytes the call reads)."""
    from google.api_core import exceptions as api
    from google.auth.exceptions import GoogleAuthError, TransportError
    from google.cloud.storage.exceptions import InvalidResponse
    from requests import RequestException

    try:
        yield
    except FilegateError:
        raise
    except api.NotFound as exc:
        raise ObjectNotFound(f"{what}: not found") from exc
    except api.PreconditionFailed as exc:
        raise precondition(f"{what}: precondition failed ({exc.message})") from exc
    except api.Conflict as exc:
        raise DestinationExists(f"{what}: destination exists") from exc
    except (api.Unauthorized, api.Forbidden) as exc:
        if _HELD.search(exc.message or ""):
            # Refused for the object's sake, not the caller's: it may not be deleted or replaced while held.
            raise Leased(
                f"{what}: the object is under a hold or a retention period ({exc.message}); Filegate never "
                "releases a hold: a delivery that meets it is retried until the hold is released or the period ends"
            ) from exc
        # IAM grants take minutes to propagate: a redelivery may succeed.
        raise TransientError(
            f"{what}: access denied ({exc.code} {exc.message}); check the service account's roles"
        ) from exc
    except api.RetryError as exc:
        raise StorageUnreachable(f"{what}: still failing after retries: {exc.cause}") from exc
    except api.GoogleAPICallError as exc:
        status = int(exc.code or 0)
        reasons = [error.get("reason") for error in exc.errors if isinstance(error, dict)]
        if status == 400 and (_CUSTOMER_KEY in reasons or _CUSTOMER_KEY in str(exc.message)):
            raise Unreadable(
                f"{what}: the object is encrypted with a customer-supplied key, which Filegate does not hold; "
                "upload it again without one",
                *reading,
            ) from exc
        if status >= 500 or status in _TRANSIENT_STATUS:
            raise StorageUnreachable(f"{what}: storage answered {status}: {exc.message}") from exc
        raise StorageError(f"{what}: storage answered {status}: {exc.message}") from exc
    except InvalidResponse as exc:
        status = int(getattr(exc.response, "status_code", 0) or 0)
        if status >= 500 or status in _TRANSIENT_STATUS:
            raise StorageUnreachable(f"{what}: storage answered {status}") from exc
        raise StorageError(f"{what}: storage answered {status}: {exc}") from exc
    except (RequestException, TransportError, ConnectionError, TimeoutError) as exc:
        raise StorageUnreachable(f"{what}: storage unreachable: {exc}") from exc
    except GoogleAuthError as exc:
        # The metadata server (or the token endpoint) did not answer: the same for every bucket.
        raise StorageUnreachable(f"{what}: cannot get credentials: {exc}") from exc


def _info(container: str, blob: Blob) -> ObjectInfo:
    return ObjectInfo(
        container=container,
        path=str(blob.name),
        size=int(blob.size or 0),
        version=str(blob.generation or ""),
        metadata=dict(blob.metadata or {}),
        # The generation's creation: a metadata patch moves `updated`, not this.
        written=blob.time_created.timestamp() if blob.time_created else 0.0,
        content_type=str(blob.content_type or ""),
        content_md5=str(blob.md5_hash or ""),
        crc32c=str(blob.crc32c or ""),
    )


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether `exc` or an exception it was raised from or while handling (a bounded chain) is a `kind`."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _generation(version: str) -> int:
    if not (version.isascii() and version.isdigit()):
        raise StorageError(f"GCS versions are generation numbers, got {version!r}")
    return int(version)


def anonymous_client(endpoint: str, project: str = LOCAL_PROJECT, *, http: Any = None) -> Any:
    """A google-cloud-storage client without credentials for `endpoint` (the GCS emulator): the one way
    this project builds one, for the store, the watcher, the uploads and the tests (`http`: a session to
    record or fake the requests)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint.rstrip("/")},
        _http=http,
    )


class GcsStore:
    """Object operations with the generation preconditions that make moves safe under duplicate events."""

    kind = GCS
    computes_md5 = True

    def __init__(self, client: Client, *, check_first: bool = False, retry_seconds: float = _RETRY_SECONDS):
        from google.cloud.storage.retry import DEFAULT_RETRY

        self._client = client
        # Events name the project as `_` (projects/_/buckets/...); the store does not need more.
        self.account = GCS_ACCOUNT
        self._check_first = check_first
        # The client's default retry (429, 408, 5xx, connection errors), bounded in time. Every call
        # uses it, writes included: each write carries a generation precondition, so a retried
        # request can never apply twice.
        # The first back-off scales with the budget, so even a short budget retries at least once.
        self._retry: Any = DEFAULT_RETRY.with_timeout(retry_seconds).with_delay(initial=min(1.0, retry_seconds / 5))

    @classmethod
    def from_environment(
        cls, env: Mapping[str, str] | None = None, *, retry_seconds: float = _RETRY_SECONDS
    ) -> GcsStore:
        """Application Default Credentials in the cloud; anonymous against `STORAGE_EMULATOR_HOST`."""
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage

        env = os.environ if env is None else env
        emulator = env.get("STORAGE_EMULATOR_HOST", "").strip()
        project = env.get("GOOGLE_CLOUD_PROJECT", "").strip()
        if emulator:
            client = anonymous_client(emulator, project or LOCAL_PROJECT)
            return cls(client, check_first=True, retry_seconds=retry_seconds)
        try:
            # Without a project the client takes it from Application Default Credentials.
            return cls(storage.Client(project=project) if project else storage.Client(), retry_seconds=retry_seconds)
        except DefaultCredentialsError as exc:
            raise SettingsError(f"no Google credentials for Cloud Storage: {exc}") from exc

    def _blob(self, container: str, path: str) -> Blob:
        return self._client.bucket(container).blob(path)

    def _require(self, container: str, path: str, version: str) -> None:
        """The emulator-only read-first check (see the module docstring)."""
        current = self.stat(container, path)
        if current is None:
            raise ObjectNotFound(f"{container}/{path}: not found")
        if version and current.version != version:
            raise SourceChanged(f"{container}/{path}: generation is {current.version}, not {version}")

    def _require_missing(self, container: str, path: str) -> None:
        if self.stat(container, path) is not None:
            raise DestinationExists(f"{container}/{path}: destination exists")

    def read_prefix(self, container: str, path: str, length: int, version: str) -> bytes:
        return self.read_range(container, path, 0, length, version)

    def read_range(self, container: str, path: str, offset: int, length: int, version: str) -> bytes:
        if length <= 0:
            return b""
        if self._check_first:
            self._require(container, path, version)
        blob = self._blob(container, path)
        with _gcs_errors(f"read {container}/{path}", reading=(container, path)):
            # raw_download: a gzip-encoded object would otherwise be transcoded, and GCS ignores
            # the range on transcoded reads; the sample must stay bounded. No checksum: a
            # prefix cannot be checked against the whole object's hash.
            data: bytes = blob.download_as_bytes(
                start=offset,
                end=offset + max(length, 1) - 1,
                raw_download=True,
                if_generation_match=_generation(version) if version else None,  # "": any generation
                checksum=None,
                timeout=_TIMEOUT,
                retry=self._retry,
            )
        return data

    def stat(self, container: str, path: str) -> ObjectInfo | None:
        with _gcs_errors(f"stat {container}/{path}"):
            blob = self._client.bucket(container).get_blob(path, timeout=_TIMEOUT, retry=self._retry)
        return None if blob is None else _info(container, blob)

    def copy(
        self,
        src_container: str,
        src_path: str,
        src_version: str,
        dst_container: str,
        dst_path: str,
        metadata: Mapping[str, str],
    ) -> ObjectInfo:
        try:
            return self._copy(src_container, src_path, src_version, dst_container, dst_path, metadata)
        except ObjectNotFound:
            # GCS answers 404 alike for a missing source and a missing destination bucket; the latter
            # is a configuration error that must not pass for "the upload is gone".
            missing = self._missing_bucket(dst_container)
            if missing is not None:
                raise missing from None
            raise

    def _copy(
        self,
        src_container: str,
        src_path: str,
        src_version: str,
        dst_container: str,
        dst_path: str,
        metadata: Mapping[str, str],
    ) -> ObjectInfo:
        what = f"copy {src_container}/{src_path} to {dst_container}/{dst_path}"
        if self._check_first:
            self._require(src_container, src_path, src_version)
            self._require_missing(dst_container, dst_path)
        source = self._blob(src_container, src_path)
        target = self._blob(dst_container, dst_path)
        # The metadata travels in the rewrite's body, so the copy is born recognisable as
        # Filegate's: a crash right after it cannot leave an anonymous copy behind.
        target.metadata = dict(metadata)
        try:
            reading = (src_container, src_path)
            with _gcs_errors(what, reading=reading), self._refused_if_present(dst_container, dst_path, what):
                self._rewrite(source, target, _generation(src_version), what)
        except SourceChanged:
            # GCS answers 412 for either precondition without saying which one failed.
            raise self._failed_condition(src_container, src_path, dst_container, dst_path, what) from None
        stored = dict(target.metadata or {})
        if any(stored.get(key) != value for key, value in metadata.items()):
            # Only the emulator drops the rewrite body; patch just the object we created.
            target.metadata = dict(metadata)
            with _gcs_errors(f"{what}: set metadata"):
                target.patch(
                    if_generation_match=target.generation,
                    if_metageneration_match=target.metageneration,
                    timeout=_TIMEOUT,
                    retry=self._retry,
                )
        return _info(dst_container, target)

    def _rewrite(self, source: Blob, target: Blob, generation: int, what: str) -> None:
        """Both conditions travel with every rewrite call: source still `generation`, target missing.

        That is what makes two concurrent deliveries of one event produce exactly one copy.
        """
        deadline = time.monotonic() + _REWRITE_SECONDS
        token: str | None = None
        while True:
            token, _, _ = target.rewrite(
                source,
                token=token,
                if_source_generation_match=generation,
                if_generation_match=0,
                timeout=_TIMEOUT,
                retry=self._retry,
            )
            if token is None:
                return
            if time.monotonic() > deadline:
                raise TransientError(f"{what}: rewrite unfinished after {_REWRITE_SECONDS:.0f} s")

    @contextmanager
    def _refused_if_present(self, container: str, path: str, what: str) -> Iterator[None]:
        """A 403 on a create-only write onto an existing object is DestinationExists.

        Replacing an object needs storage.objects.delete as well as create, which the archive and rejected
        grants leave out on purpose; whether GCS then answers 403 before it checks ifGenerationMatch=0 is
        not documented. Either way the object is there and the write would not have happened, so the
        caller gets the same answer as from a 412 and can find its own earlier copy.
        """
        from google.api_core import exceptions as api

        try:
            yield
        except api.Forbidden:
            if self.stat(container, path) is not None:
                raise DestinationExists(f"{what}: destination exists (the write was refused, 403)") from None
            raise

    def _failed_condition(
        self, src_container: str, src_path: str, dst_container: str, dst_path: str, what: str
    ) -> StorageError:
        if self.stat(dst_container, dst_path) is not None:
            return DestinationExists(f"{what}: destination exists")
        if self.stat(src_container, src_path) is None:
            return ObjectNotFound(f"{what}: the source is gone")
        return SourceChanged(f"{what}: the source is another generation now")

    def put(self, container: str, path: str, data: Body, content_type: str, metadata: Mapping[str, str]) -> ObjectInfo:
        # GCS records every uploaded object's MD5 itself.
        if self._check_first:
            self._require_missing(container, path)
        blob = self._blob(container, path)
        blob.metadata = dict(metadata)
        try:
            what = f"write {container}/{path}"
            with _gcs_errors(what, precondition=DestinationExists), self._refused_if_present(container, path, what):
                if isinstance(data, bytes):
                    blob.upload_from_string(
                        data, content_type=content_type, if_generation_match=0, timeout=_TIMEOUT, retry=self._retry
                    )
                else:
                    self._upload_file(blob, data, content_type, what)
        except ObjectNotFound:
            raise self._missing_bucket(container) or StorageError(f"write {container}/{path}: not found") from None
        return _info(container, blob)

    def _upload_file(self, blob: Blob, data: BinaryIO, content_type: str, what: str) -> None:
        """A file, create-only, in chunks of `_UPLOAD_CHUNK_BYTES` (the library's default holds 100 MiB)."""
        from google.cloud.storage.exceptions import DataCorruption

        blob.chunk_size = _UPLOAD_CHUNK_BYTES
        size = body_size(data)
        try:
            blob.upload_from_file(
                data, size=size, content_type=content_type, if_generation_match=0, timeout=_TIMEOUT, retry=self._retry
            )
        except ValueError as exc:
            # Raised before the last chunk went: the file shrank while it was sent (still being written?).
            raise StorageError(f"{what}: the upload stopped, nothing was written: {exc}") from exc
        except Exception as exc:
            # Checked once GCS had finalized the object: the object is there, with other bytes. The library
            # deletes it, and when that delete fails, raises the delete's error (after its retries, a
            # RetryError), the mismatch further down the chain: the damaged object must not stay either way.
            # No one else could write the name meanwhile (create-only), so this delete takes the generation found.
            if not _caused_by(exc, DataCorruption):
                raise
            damaged = f"{what}: the upload's checksum did not match"
            try:
                created = self.stat(blob.bucket.name, blob.name)
                if created is not None:
                    self.delete(created.container, created.path, created.version)
            except FilegateError as failed:
                # A person must remove it: its finalize event, or a sweep, would take the damaged bytes as the file.
                # The instruction first: a command's one-line report cuts a long reason.
                raise DamagedLeftBehind(
                    f"{what}: delete the damaged object {blob.bucket.name}/{blob.name} before anything reads it, "
                    f"then send the file again (the upload's checksum did not match, and removing it failed: {failed})"
                ) from exc
            raise TransientError(f"{damaged}; removed, try again") from exc

    def delete(self, container: str, path: str, version: str) -> bool:
        blob = self._blob(container, path)
        try:
            if self._check_first:
                self._require(container, path, version)
            with _gcs_errors(f"delete {container}/{path}"):
                blob.delete(if_generation_match=_generation(version), timeout=_TIMEOUT, retry=self._retry)
        except (ObjectNotFound, SourceChanged):
            return False
        return True

    def update_metadata(self, container: str, path: str, version: str, metadata: Mapping[str, str]) -> None:
        current = self.stat(container, path)
        if current is None:
            raise ObjectNotFound(f"update metadata of {container}/{path}: not found")
        blob = self._blob(container, path)
        # GCS merges a patch's keys into the object's own, the emulator replaces them: sending the
        # whole set gives the same result on both. The precondition pins the generation.
        blob.metadata = {**current.metadata, **metadata}
        with _gcs_errors(f"update metadata of {container}/{path}"):
            blob.patch(if_generation_match=_generation(version), timeout=_TIMEOUT, retry=self._retry)

    def container_exists(self, container: str) -> bool:
        # A one-name listing, not the bucket's metadata: buckets.get needs storage.buckets.get, which no
        # object role grants; objects.list is in roles/storage.objectViewer, which every location has.
        from google.api_core import exceptions as api

        try:
            with _gcs_errors(f"bucket {container}"):
                try:
                    blobs = self._client.list_blobs(container, max_results=1, timeout=_TIMEOUT, retry=self._retry)
                    next(iter(blobs), None)
                except api.Forbidden as exc:
                    # A grant to add, not an outage: say which one (a fresh grant takes a few minutes to apply).
                    raise AccessDenied(
                        f"bucket {container}: this identity may not list it ({exc.message}); "
                        "grant it storage.objects.list there (roles/storage.objectViewer; infra/gcp does)"
                    ) from exc
        except ObjectNotFound:
            return False
        return True

    def _missing_bucket(self, *containers: str) -> LocationMissing | None:
        for container in containers:
            if not self.container_exists(container):
                return LocationMissing(f"bucket {container} does not exist")
        return None

    def list(self, container: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            with _gcs_errors(f"list {container}/{prefix}"):
                blobs = self._client.list_blobs(container, prefix=prefix or None, timeout=_TIMEOUT, retry=self._retry)
                for blob in blobs:
                    yield _info(container, blob)
        except ObjectNotFound:
            raise LocationMissing(f"list {container}/{prefix}: bucket {container} does not exist") from None

    def spark_uri(self, container: str, path: str) -> str:
        return gcs_uri(container, path)

    def download(self, container: str, path: str, destination: str) -> None:
        blob = self._blob(container, path)
        with _gcs_errors(f"download {container}/{path}", reading=(container, path)):
            blob.download_to_filename(destination, raw_download=True, timeout=_TIMEOUT, retry=self._retry)

    def create_buckets(self, *names: str) -> None:
        """Create buckets that do not exist yet (local world and tests)."""
        for name in names:
            try:
                with _gcs_errors(f"create bucket {name}", precondition=DestinationExists):
                    self._client.create_bucket(name, timeout=_TIMEOUT, retry=self._retry)
            except DestinationExists:
                continue
