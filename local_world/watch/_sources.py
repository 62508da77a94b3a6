"""Where the watcher looks: listings of committed objects in Azurite or the GCS emulator, and their events.

Listings go through the core's stores, so the watcher sees objects exactly as the function does.
"Committed" comes from the listings themselves. Azure's List Blobs leaves out uncommitted blobs
(blocks staged with Put Block but never committed with Put Block List) unless `include` asks for
them, which `AzureBlobStore.list` never does; so a blob appears only once it is whole, as Event Grid
sends BlobCreated only on commit. A GCS object exists only once its upload is finalized.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from filegate.events import BLOCK_BLOB
from filegate.settings import Location, Settings
from filegate.storage import ObjectInfo
from local_world.watch._envelopes import Event, blob_created_event, finalized_event

if TYPE_CHECKING:
    from filegate.azure_storage import AzureBlobStore


class Source(Protocol):
    """Where objects are listed and what their creation events look like."""

    description: str

    def list_objects(self, location: Location) -> Iterator[ObjectInfo]:
        """Committed objects under a location."""
        ...

    def event_for(self, obj: ObjectInfo, sequencer: str) -> Event:
        """The event the cloud sends when `obj` is committed."""
        ...

    def sends_event(self, before: ObjectInfo, now: ObjectInfo) -> bool:
        """Whether the cloud sends an event for `now`, a later version of the same name as `before`."""
        ...


class AzuriteSource:
    """Blob listings of an Azure storage account (Azurite locally) and BlobCreated events."""

    def __init__(self, connection: str | AzureBlobStore) -> None:
        """A connection string, or a store (`AzureBlobStore.from_settings`: the archive may have its own account)."""
        from filegate.azure_storage import AzureBlobStore

        self._store = connection if isinstance(connection, AzureBlobStore) else AzureBlobStore.from_setting(connection)
        self.account = self._store.account
        self.description = f"Azure storage {self._store.endpoint}"

    def list_objects(self, location: Location) -> Iterator[ObjectInfo]:
        return self._store.list(location.container, location.prefix)

    def event_for(self, obj: ObjectInfo, sequencer: str) -> Event:
        # An archive in its own account (`--include-filegate-locations`) is that account's event, as Azure sends it.
        account, endpoint = self._store.account_of(obj.container)
        return blob_created_event(obj, account, endpoint, sequencer)

    def sends_event(self, before: ObjectInfo, now: ObjectInfo) -> bool:
        return blob_created_sent(before, now)


class GcsEmulatorSource:
    """Object listings of the GCS emulator (or of Cloud Storage) and finalize CloudEvents."""

    def __init__(self, endpoint: str, project: str = "local") -> None:
        from filegate.gcs_storage import GcsStore, anonymous_client

        self.endpoint = endpoint.rstrip("/")
        self._store = GcsStore(anonymous_client(self.endpoint, project))
        self.description = f"GCS emulator {self.endpoint}"

    def list_objects(self, location: Location) -> Iterator[ObjectInfo]:
        return self._store.list(location.container, location.prefix)

    def event_for(self, obj: ObjectInfo, sequencer: str) -> Event:
        return finalized_event(obj, self.endpoint)

    def sends_event(self, before: ObjectInfo, now: ObjectInfo) -> bool:
        # A listed version is a generation, and only a new generation (an upload, a copy, a rewrite: even of
        # the same bytes) gets one; each is finalized. A metadata patch keeps the generation, and its event
        # is `metadataUpdated`, not `finalized`: such a version never gets here.
        return True


def blob_created_sent(before: ObjectInfo, now: ObjectInfo) -> bool:
    """Whether Azure sends BlobCreated for `now`, the ETag that followed `before` on the same blob name.

    Event Grid sends one for each Put Blob, Put Block List and Copy Blob, and none for a metadata or
    property write, an Append Block or a Put Page, though each of those moves the ETag too. A listing shows
    only what came out of a write, so the call is told by the content: a block blob whose size and MD5 are
    those of before was not rewritten. What cannot be told apart: an overwrite with the very same bytes
    (taken for a metadata write: no event), and a metadata write on a blob that has no MD5 (Put Block
    List keeps none unless the client sets it; taken for an overwrite: an event the cloud would not send,
    which the core settles as a duplicate).
    """
    if now.blob_type != before.blob_type:
        return True  # a blob of another type was put under the name
    if now.blob_type not in ("", BLOCK_BLOB):
        # An append or page blob's only event is its creation (a Put Blob): it grows by Append Block or
        # Put Page without events. A put again starts it empty, so a smaller one is a new blob; one put
        # again at the same size or larger (appended to since) cannot be told from one written to.
        return now.size < before.size
    return not (now.size == before.size and now.content_md5 and now.content_md5 == before.content_md5)


def watched_locations(settings: Settings, include_filegate_locations: bool = False) -> tuple[Location, ...]:
    """The landing location; archive and rejected only when asked (to see the function ignore its own writes)."""
    if include_filegate_locations:
        return (settings.landing, settings.archive, settings.rejected)
    return (settings.landing,)
