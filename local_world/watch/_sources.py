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


def watched_locations(settings: Settings, include_filegate_locations: bool = False) -> tuple[Location, ...]:
    """The landing location; archive and rejected only when asked (to see the function ignore its own writes)."""
    if include_filegate_locations:
        return (settings.landing, settings.archive, settings.rejected)
    return (settings.landing,)
