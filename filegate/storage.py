"""The storage protocol the core moves bytes through; one implementation per cloud."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

# What `Store.put` writes: bytes, or an open binary file, written from its start (GCS's resumable
# upload refuses a stream anywhere else).
Body = bytes | BinaryIO


def body_size(data: Body) -> int:
    """How many bytes a body holds; a file is left at its start."""
    if isinstance(data, bytes):
        return len(data)
    size = data.seek(0, 2)
    data.seek(0)
    return size


def size_and_md5(data: Body) -> tuple[int, bytes]:
    """A body's size and MD5; a file is read through once, in chunks, and left at its start."""
    if isinstance(data, bytes):
        return len(data), hashlib.md5(data, usedforsecurity=False).digest()
    data.seek(0)
    digest, size = hashlib.md5(usedforsecurity=False), 0
    for chunk in iter(lambda: data.read(1 << 20), b""):
        digest.update(chunk)
        size += len(chunk)
    data.seek(0)
    return size, digest.digest()


# Metadata Filegate writes on every object it places, so a redelivered event can recognise its own
# earlier work. Azure metadata names must be identifiers, hence the underscores.
META_SOURCE = "filegate_source"
META_SOURCE_VERSION = "filegate_source_version"
META_EVENT_ID = "filegate_event_id"
# Written on an archived copy once its run exists: an archived file without it still needs its run.
META_RUN_ID = "filegate_run_id"
# The run the file's own token names, once Databricks skipped it and a re-drive replaced it: a redelivery's
# run-now finds that run again and must not record it over the replacement.
META_TOKEN_RUN = "filegate_token_run"  # noqa: S105 - a metadata name, not a secret
# `<run id>:<why>` when Databricks skipped the recorded run as it was started (`jobs.never_ran`): the sweep
# replaces it. It applies while META_RUN_ID names that run, so recording the replacement retires it.
META_SKIPPED = "filegate_skipped"
# On the copy `filegate rejected --reprocess` puts into landing: the rejected file it copies (its `container/path`,
# percent-encoded), which that command deletes next. The copy's own event must not find it identical to that file.
META_REPROCESSED = "filegate_reprocessed_from"


def skip_note(run_id: int, why: str) -> dict[str, str]:
    """The metadata that notes Databricks skipped run `run_id` as it was started, and why (`jobs.never_ran`)."""
    return {META_SKIPPED: f"{run_id}:{why}"}


def noted_skip(metadata: Mapping[str, str]) -> int | None:
    """The run an object's META_SKIPPED note names, or None without one."""
    run_id = metadata.get(META_SKIPPED, "").partition(":")[0]
    return int(run_id) if run_id.isascii() and run_id.isdigit() else None


# Azure's copy status of a blob a server-side copy made. Until `success` the blob may hold only part of
# the source (a failed or aborted copy leaves it, often empty, with the metadata the copy set).
COPY_PENDING = "pending"
COPY_SUCCESS = "success"


@dataclass(frozen=True)
class ObjectInfo:
    """One object version as a store's listing, stat or write shows it: the one type for a stored object."""

    container: str
    path: str
    size: int
    version: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    # When this version was last written (epoch seconds, 0.0 when the store did not say), not when the
    # name first appeared: an overwrite is a new version with a new time. Azure's Last-Modified (which a
    # metadata write moves too), GCS's timeCreated of the generation.
    written: float = 0.0
    content_type: str = ""
    # The store's checksums of the content, base64, "" where it keeps none: MD5 (not for Azure block-list
    # uploads or GCS composite objects) and CRC32C (GCS keeps one for every object, Azure none).
    content_md5: str = ""
    crc32c: str = ""
    # `pending`, `success`, `failed` or `aborted` for a blob an Azure copy made; "" where there is no copy
    # status (an upload, or GCS, whose rewrite answers only once the object is complete).
    copy_status: str = ""
    # Azure's blob type (`BlockBlob`, `AppendBlob`, `PageBlob`); "" on GCS, whose objects are all whole.
    blob_type: str = ""

    @property
    def copy_finished(self) -> bool:
        """Whether the object holds all its bytes: not an Azure copy still pending, failed or aborted."""
        return self.copy_status in ("", COPY_SUCCESS)


class Store(Protocol):
    """Conditional object operations. Every method raises TransientError for failures worth retrying."""

    # The cloud (events.AZURE or events.GCS) and the account its events name (GCS: events.GCS_ACCOUNT).
    kind: str
    account: str
    # Whether every MD5 the store shows was computed from the object's bytes (GCS). Azure keeps whatever
    # Content-MD5 the client set when it committed a blob from blocks, unchecked: equal MD5s prove nothing.
    computes_md5: bool

    def read_prefix(self, container: str, path: str, length: int, version: str) -> bytes:
        """Up to `length` bytes from the start, only if the object is still `version` ("" for any).

        Raises ObjectNotFound, or SourceChanged when the object is another version now.
        """
        ...

    def read_range(self, container: str, path: str, offset: int, length: int, version: str) -> bytes:
        """Up to `length` bytes from `offset` (the stored bytes, never decoded), as `read_prefix`."""
        ...

    def stat(self, container: str, path: str) -> ObjectInfo | None:
        """The object's properties and metadata, or None when it does not exist."""
        ...

    def copy(
        self,
        src_container: str,
        src_path: str,
        src_version: str,
        dst_container: str,
        dst_path: str,
        metadata: Mapping[str, str],
    ) -> ObjectInfo:
        """Server-side copy, only from `src_version` and only onto a missing destination.

        Raises ObjectNotFound, SourceChanged, or DestinationExists.
        """
        ...

    def put(self, container: str, path: str, data: Body, content_type: str, metadata: Mapping[str, str]) -> ObjectInfo:
        """Create an object from bytes or an open binary file (past the store's single-request size, sent
        in blocks, never held whole), with its MD5 recorded whatever its size; raises DestinationExists
        when something is there."""
        ...

    def delete(self, container: str, path: str, version: str) -> bool:
        """Delete the object only if it is still `version`; False when it is gone or changed."""
        ...

    def update_metadata(self, container: str, path: str, version: str, metadata: Mapping[str, str]) -> None:
        """Add `metadata` to the object's own, only if it is still `version`; raises SourceChanged otherwise."""
        ...

    def container_exists(self, container: str) -> bool:
        """Whether the container (or bucket) exists; SettingsError: wrong credentials, AccessDenied: a missing grant."""
        ...

    def list(self, container: str, prefix: str) -> Iterator[ObjectInfo]:
        """Objects under a prefix, with their metadata; raises LocationMissing for a missing container."""
        ...

    def spark_uri(self, container: str, path: str) -> str:
        """A URI Spark on Databricks reads the object with (abfss:// or gs://)."""
        ...

    def download(self, container: str, path: str, destination: str) -> None:
        """Stream the whole object into a local file."""
        ...
