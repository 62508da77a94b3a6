"""Where the watcher looks: listings of committed objects in Azurite or the GCS emulator, and their events.

"Committed" comes from the listings themselves. Azure's List Blobs leaves out uncommitted blobs
(blocks staged with Put Block but never committed with Put Block List) unless `include` asks for
them, which this code never does; so a blob appears only once it is whole, as Event Grid sends
BlobCreated only on commit. A GCS object exists only once its upload is finalized.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Protocol

from filegate.settings import Location, Settings
from local_world.watch._envelopes import Event, StoredObject, blob_created_event, finalized_event


class Source(Protocol):
    """Where objects are listed and what their creation events look like."""

    description: str

    def list_objects(self, location: Location) -> Iterator[StoredObject]:
        """Committed objects under a location."""
        ...

    def event_for(self, obj: StoredObject, sequencer: str) -> Event:
        """The event the cloud sends when `obj` is committed."""
        ...


class AzuriteSource:
    """Blob listings of an Azure storage account (Azurite locally) and BlobCreated events."""

    def __init__(self, connection: str) -> None:
        from filegate.azure_storage import AzureBlobStore

        # The store's client: one way to turn a connection string or account URL into a client.
        self._service = AzureBlobStore.from_setting(connection).service
        self.account = str(self._service.account_name)
        self.description = f"Azure storage {self._service.url.rstrip('/')}"

    def list_objects(self, location: Location) -> Iterator[StoredObject]:
        container = self._service.get_container_client(location.container)
        # No `include=["uncommittedblobs"]`: only committed blobs are listed (see the module docstring).
        for item in container.list_blobs(name_starts_with=location.prefix or None):
            blob_type = getattr(item.blob_type, "value", item.blob_type)
            yield StoredObject(
                container=location.container,
                path=str(item.name),
                size=int(item.size),
                version=str(item.etag).strip('"'),
                modified=item.last_modified,
                content_type=str(item.content_settings.content_type or ""),
                url=container.get_blob_client(str(item.name)).url,
                blob_type=str(blob_type or "BlockBlob"),
                created=item.creation_time,
            )

    def event_for(self, obj: StoredObject, sequencer: str) -> Event:
        return blob_created_event(obj, self.account, sequencer)


class GcsEmulatorSource:
    """Object listings of the GCS emulator (or of Cloud Storage) and finalize CloudEvents."""

    def __init__(self, endpoint: str, project: str = "local") -> None:
        from filegate.gcs_storage import anonymous_client

        self.endpoint = endpoint.rstrip("/")
        self._client = anonymous_client(self.endpoint, project)
        self.description = f"GCS emulator {self.endpoint}"

    def list_objects(self, location: Location) -> Iterator[StoredObject]:
        for blob in self._client.list_blobs(location.container, prefix=location.prefix or None):
            modified = blob.updated or blob.time_created or datetime.now(UTC)
            yield StoredObject(
                container=location.container,
                path=str(blob.name),
                size=int(blob.size or 0),
                version=str(blob.generation),
                modified=modified,
                content_type=str(blob.content_type or ""),
                etag=str(blob.etag or ""),
                metageneration=str(blob.metageneration or 1),
                md5_hash=str(blob.md5_hash or ""),
                crc32c=str(blob.crc32c or ""),
                created=blob.time_created,
            )

    def event_for(self, obj: StoredObject, sequencer: str) -> Event:
        return finalized_event(obj, self.endpoint)


def watched_locations(settings: Settings, include_filegate_locations: bool = False) -> tuple[Location, ...]:
    """The landing location; archive and rejected only when asked (to see the function ignore its own writes)."""
    if include_filegate_locations:
        return (settings.landing, settings.archive, settings.rejected)
    return (settings.landing,)
