"""Azure Blob Storage behind the storage protocol (works against Azurite too)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from filegate.errors import (
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
from filegate.events import AZURE
from filegate.storage import Body, ObjectInfo, size_and_md5
from filegate.uris import azure_uri

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

    from filegate.settings import Settings

# Event Grid gives the whole handler 30 s; fail fast and let it redeliver rather than outlive it.
# The SDK's default back-off (15 s, then 18 s, 24 s) alone would outlast that.
_CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 3,
    "initial_backoff": 0.5,
    "increment_base": 2,
    "connection_timeout": 5,
    "read_timeout": 15,
}
_COPY_WAIT_SECONDS = 20.0
# A copy from another account reads its source through a read-only SAS for that one blob. An
# asynchronous copy reads the source while it runs, so the SAS outlives any copy worth waiting for;
# it is signed with the account key, or with a user delegation key the identity asks for (reused
# while it outlives a new SAS), since the accounts have shared keys off.
_SOURCE_SAS_LIFETIME = timedelta(hours=6)
_DELEGATION_KEY_LIFETIME = timedelta(days=1)
_CLOCK_SKEW = timedelta(minutes=5)
# On an account with a hierarchical namespace (the archive's) a listing also shows each directory as an
# empty blob with this metadata: a folder, never a file.
_FOLDER = "hdi_isfolder"


def _wrong_key(setting: str) -> str:
    return (
        f"the key in {setting} is wrong or was rotated: copy the connection string again from the "
        "storage account's Access keys, or use the account URL with a managed identity"
    )


def _unquote(etag: str | None) -> str:
    return (etag or "").strip('"')


def _quote(etag: str) -> str:
    return f'"{_unquote(etag)}"'


@contextmanager
def _azure_errors(
    what: str, setting: str = "FILEGATE_AZURE_STORAGE", *, blob: tuple[str, str] = ("", "")
) -> Iterator[None]:
    """Translate the SDK's errors into Filegate's, keeping the service's own message; `blob`: the container
    and path a read is of, which an Unreadable names."""
    from azure.core.exceptions import (
        HttpResponseError,
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except FilegateError:
        raise
    except ResourceNotFoundError as exc:
        if _code(exc) == "ContainerNotFound":
            raise LocationMissing(f"{what}: the container does not exist") from exc
        raise ObjectNotFound(f"{what}: not found") from exc
    except (ResourceModifiedError, ResourceExistsError, HttpResponseError) as exc:
        status = getattr(exc, "status_code", None) or 0
        code = _code(exc)
        if code == "AuthenticationFailed":
            # The signature did not verify: a wrong or rotated key, which no retry fixes.
            raise SettingsError(
                f"{what}: storage refused the account key (AuthenticationFailed); {_wrong_key(setting)}"
            ) from exc
        if code in ("BlobAlreadyExists", "TargetConditionNotMet") or (status == 409 and "Exists" in code):
            raise DestinationExists(f"{what}: destination exists") from exc
        if code.startswith("Lease"):
            # Another client holds a lease on the blob (LeaseIdMissing: a writer, a copy tool), which
            # forbids deleting or changing it. Filegate never breaks a lease it does not own: it waits
            # for the redelivery (`ingest.release_source`). Without this the 412 read as "changed",
            # and the file stayed in landing with no error.
            raise Leased(f"{what}: another client holds a lease on the blob ({code}); retried until it ends") from exc
        if code == "SnapshotsPresent":
            # Azure deletes no blob that has snapshots, and they are someone's earlier contents of it (a backup
            # tool's): Filegate never deletes them. Without this, the 409 failed every retry before the run.
            # Raised as a lease is: the delete is tried again later, where it succeeds once the snapshots are gone.
            raise Leased(
                f"{what}: the blob has snapshots, which Filegate never deletes ({code}); delete them, and the delete "
                "is tried again (for a file in landing, by the event's redelivery or the sweep)"
            ) from exc
        if status == 412 or code in ("SourceConditionNotMet", "ConditionNotMet"):
            raise SourceChanged(f"{what}: object changed ({code or status})") from exc
        if status in (401, 403):
            raise TransientError(f"{what}: access denied ({code}); check the identity's role assignments") from exc
        if status >= 500 or status in (408, 429):
            raise StorageUnreachable(f"{what}: storage answered {status} {code}") from exc
        if code == "BlobArchived":
            raise Unreadable(
                f"{what}: the blob is in the Archive access tier, which cannot be read; set its tier to Hot or "
                "Cool (rehydration takes hours), and the sweep takes it from landing then",
                *blob,
            ) from exc
        if code == "BlobUsesCustomerSpecifiedEncryption":
            raise Unreadable(
                f"{what}: the blob is encrypted with a customer-provided key, which Filegate does not hold; "
                "upload it again without one",
                *blob,
            ) from exc
        # The message's first line: the rest is the request id, the time and the XML answer again, which split
        # a `filegate doctor` line and an outcome's reason over a dozen lines.
        message = str(getattr(exc, "message", None) or exc).strip().splitlines()
        said = f": {message[0]}" if message else ""
        raise StorageError(f"{what}: storage answered {status} {code}{said}") from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise StorageUnreachable(f"{what}: storage unreachable: {exc}") from exc


def _info(container: str, path: str, blob: Any) -> ObjectInfo:
    """From the SDK's BlobProperties, which a stat and a listing both answer with."""
    settings = blob.content_settings
    digest = getattr(settings, "content_md5", None)
    copy = getattr(blob, "copy", None)
    return ObjectInfo(
        container=container,
        path=path,
        size=int(blob.size),
        version=_unquote(blob.etag),
        metadata=dict(blob.metadata or {}),
        # Last-Modified, not Creation-Time: an overwritten blob keeps its creation time.
        written=blob.last_modified.timestamp() if blob.last_modified else 0.0,
        content_type=str(getattr(settings, "content_type", None) or ""),
        content_md5=base64.b64encode(bytes(digest)).decode() if digest else "",
        copy_status=str(getattr(copy, "status", None) or ""),
        blob_type=_enum_text(getattr(blob, "blob_type", None)),  # BlockBlob, AppendBlob or PageBlob
    )


def _enum_text(value: Any) -> str:
    """The text of one of the SDK's enums (BlobType, StorageErrorCode), or of plain text; "" when absent."""
    return str(getattr(value, "value", value) or "")


def _code(exc: Exception) -> str:
    return _enum_text(getattr(exc, "error_code", None))


def _account_name(service: BlobServiceClient) -> str:
    """The account's name as Azure's events and the URIs Spark reads spell it: lower case.

    The SDK keeps the name as the setting spells it (URL, BlobEndpoint or AccountName): a capital there
    made every event another account's.
    """
    return str(service.account_name).lower()


def _account_identity(service: BlobServiceClient) -> tuple[str, str]:
    """An account's host and name in the case Azure gives them (DNS and account names are case-blind)."""
    return str(service.primary_hostname).lower(), _account_name(service)


def _service(setting: str, name: str) -> BlobServiceClient:
    """A connection string (Azurite, keys) or an account URL used with the managed identity."""
    from azure.storage.blob import BlobServiceClient

    if setting.startswith(("https://", "http://")):
        from azure.identity import DefaultAzureCredential

        return BlobServiceClient(setting, credential=DefaultAzureCredential(), **_CLIENT_OPTIONS)
    try:
        return BlobServiceClient.from_connection_string(setting, **_CLIENT_OPTIONS)
    except ValueError as exc:
        raise SettingsError(
            f"{name} is not a storage connection string ({exc}); expected "
            "`DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...` or an account URL "
            "`https://ACCOUNT.blob.core.windows.net`"
        ) from exc


def _account_key(service: BlobServiceClient) -> str | None:
    """The account key a client signs with, or None when it uses an identity.

    With a key, "access denied" means the key is wrong (Azurite says AuthorizationFailure, Azure
    AuthenticationFailed); with an identity it means a missing role assignment.
    """
    key = getattr(getattr(service, "credential", None), "account_key", None)
    return str(key) if key else None


class AzureBlobStore:
    """Blob operations with the conditions that make moves safe under duplicate and late events."""

    kind = AZURE
    computes_md5 = False

    def __init__(self, service: BlobServiceClient, elsewhere: Mapping[str, BlobServiceClient] | None = None):
        """`service` is the account events come from; `elsewhere` names containers that live in other accounts.

        The archive may live in a second account: Unity Catalog reads only accounts with a hierarchical
        namespace, and the landing account must have none (its events would become CreateFile and
        FlushWithClose, and blob versioning would be gone). Each call goes to its container's account.
        """
        self._service = service
        self._elsewhere = dict(elsewhere or {})
        self.account = _account_name(service)
        self._delegation: dict[str, Any] = {}

    def _account(self, container: str) -> BlobServiceClient:
        return self._elsewhere.get(container, self._service)

    def _setting(self, container: str) -> str:
        """The setting that names `container`'s account, for errors a person fixes there."""
        return "FILEGATE_AZURE_ARCHIVE_STORAGE" if container in self._elsewhere else "FILEGATE_AZURE_STORAGE"

    def _blob(self, container: str, path: str) -> Any:
        return self._account(container).get_blob_client(container, path)

    @property
    def endpoint(self) -> str:
        """The blob service's address without a trailing slash (`https://ACCOUNT.blob.core.windows.net`, Azurite's
        `http://127.0.0.1:10000/devstoreaccount1`): where blob URLs start."""
        return self.account_of("")[1]

    def account_of(self, container: str) -> tuple[str, str]:
        """The account `container` lives in: its name and its blob service's address (as `endpoint`)."""
        service = self._account(container)
        return _account_name(service), f"{service.scheme}://{service.primary_hostname}"

    @classmethod
    def from_settings(cls, settings: Settings) -> AzureBlobStore:
        """The store FILEGATE_AZURE_STORAGE names; the archive in FILEGATE_AZURE_ARCHIVE_STORAGE's account if set."""
        if not settings.azure_storage:
            raise SettingsError("FILEGATE_AZURE_STORAGE is not set (a connection string or an account URL)")
        service = _service(settings.azure_storage, "FILEGATE_AZURE_STORAGE")
        if not settings.azure_archive_storage:
            return cls(service)
        archive = _service(settings.azure_archive_storage, "FILEGATE_AZURE_ARCHIVE_STORAGE")
        if _account_identity(archive) == _account_identity(service):
            return cls(service)  # the same account, however it is written
        container = settings.archive.container
        shared = {settings.landing.container, settings.rejected.container}
        if container in shared:
            # Containers are told apart by name alone, so one name cannot live in both accounts.
            raise SettingsError(
                f"FILEGATE_ARCHIVE's container {container!r} is also a landing or rejected container; with the "
                "archive in its own account (FILEGATE_AZURE_ARCHIVE_STORAGE) give it a name of its own"
            )
        return cls(service, {container: archive})

    @classmethod
    def from_setting(cls, setting: str) -> AzureBlobStore:
        """A connection string (Azurite, keys) or an account URL used with the managed identity."""
        return cls(_service(setting, "FILEGATE_AZURE_STORAGE"))

    def read_prefix(self, container: str, path: str, length: int, version: str) -> bytes:
        return self.read_range(container, path, 0, length, version)

    def read_range(self, container: str, path: str, offset: int, length: int, version: str) -> bytes:
        from azure.core import MatchConditions

        if length <= 0:
            return b""

        blob = self._blob(container, path)
        with _azure_errors(f"read {container}/{path}", self._setting(container), blob=(container, path)):
            conditions: dict[str, Any] = {}
            if version:
                conditions = {"etag": _quote(version), "match_condition": MatchConditions.IfNotModified}
            # The stored bytes, as Spark will read them: the SDK would otherwise decompress a blob stored with
            # Content-Encoding gzip, returning more than `length` (a small blob can expand a thousandfold) and
            # bytes the archived copy does not hold.
            stream = blob.download_blob(offset=offset, length=length, decompress=False, **conditions)
            data: bytes = stream.readall()
            return data

    def stat(self, container: str, path: str) -> ObjectInfo | None:
        blob = self._blob(container, path)
        try:
            with _azure_errors(f"stat {container}/{path}", self._setting(container)):
                props = blob.get_blob_properties()
        except ObjectNotFound:
            return None
        return _info(container, path, props)

    def _source_url(self, src_container: str, src_path: str, dst_container: str) -> str:
        """The copy's source URL; from another account it carries a read-only SAS for that one blob.

        Copy Blob authorizes a source in another account only by the URL (a SAS, or public access), never
        by the caller's own credential.
        """
        source = self._account(src_container)
        url = str(source.get_blob_client(src_container, src_path).url)
        if source is self._account(dst_container):
            return url
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        now = datetime.now(UTC)
        key = _account_key(source)
        signing: dict[str, Any] = (
            {"account_key": key}
            if key
            else {"user_delegation_key": self._delegation_key(source, self._setting(src_container))}
        )
        sas = generate_blob_sas(
            str(source.account_name),
            src_container,
            src_path,
            permission=BlobSasPermissions(read=True),
            start=now - _CLOCK_SKEW,
            expiry=now + _SOURCE_SAS_LIFETIME,
            **signing,
        )
        return f"{url}?{sas}"

    def _delegation_key(self, service: BlobServiceClient, setting: str) -> Any:
        """A user delegation key of `service`'s account that outlives a new SAS.

        The identity needs generateUserDelegationKey at that account's scope: Storage Blob Data Owner (or
        Contributor) on the landing account has it; on the archive account (a trigger rejected from the archive) the
        Storage Blob Delegator role gives it alone.
        """
        now = datetime.now(UTC)
        account = str(service.account_name)
        cached = self._delegation.get(account)
        if cached is not None and cached[0] > now + _SOURCE_SAS_LIFETIME:
            return cached[1]
        expiry = now + _DELEGATION_KEY_LIFETIME
        with _azure_errors(f"get a user delegation key of {account}", setting):
            key = service.get_user_delegation_key(now - _CLOCK_SKEW, expiry)
        self._delegation[account] = (expiry, key)
        return key

    def check_signing(self) -> str:
        """How a copy into the archive's own account signs its source; raises when it cannot.

        Readiness asks before the first event: without the landing account's user delegation key no
        file can be archived, and the first copy would otherwise be where that shows.
        """
        if not self._elsewhere:
            return "one storage account: copies need no SAS"
        if _account_key(self._service):
            return f"copies into the archive's account are signed with {self.account}'s account key"
        self._delegation_key(self._service, "FILEGATE_AZURE_STORAGE")
        return f"copies into the archive's account are signed with a user delegation key of {self.account}"

    def copy(
        self,
        src_container: str,
        src_path: str,
        src_version: str,
        dst_container: str,
        dst_path: str,
        metadata: Mapping[str, str],
    ) -> ObjectInfo:
        from azure.core import MatchConditions

        target = self._blob(dst_container, dst_path)
        what = f"copy {src_container}/{src_path} to {dst_container}/{dst_path}"
        with _azure_errors(what, self._setting(dst_container)):
            # Both conditions travel with the one server-side request: the source must still be
            # the version the event named, and the destination must not exist. That is what makes
            # two concurrent deliveries of one event produce exactly one archived object.
            result = target.start_copy_from_url(
                self._source_url(src_container, src_path, dst_container),
                metadata=dict(metadata),
                source_etag=_quote(src_version),
                source_match_condition=MatchConditions.IfNotModified,
                match_condition=MatchConditions.IfMissing,
            )
            status = result.get("copy_status")
            deadline = time.monotonic() + _COPY_WAIT_SECONDS
            while status == "pending":
                if time.monotonic() > deadline:
                    raise TransientError(f"{what}: copy still pending after {_COPY_WAIT_SECONDS:.0f} s")
                time.sleep(0.2)
                status = target.get_blob_properties().copy.status
            if status != "success":
                raise TransientError(f"{what}: copy ended {status}")
        info = self.stat(dst_container, dst_path)
        if info is None:
            raise TransientError(f"{what}: the copy is not visible yet")
        return info

    def put(self, container: str, path: str, data: Body, content_type: str, metadata: Mapping[str, str]) -> ObjectInfo:
        from azure.storage.blob import ContentSettings

        # The service records the MD5 of a blob written in one request only; past the SDK's single-put
        # size (64 MiB) the blob is committed from blocks, without one, and the byte-identical check
        # (which needs it) would take a backfill run twice for a new file. So the MD5 is given.
        size, md5 = size_and_md5(data)
        blob = self._blob(container, path)
        with _azure_errors(f"write {container}/{path}", self._setting(container)):
            result = blob.upload_blob(
                data,
                length=size,
                overwrite=False,
                metadata=dict(metadata),
                content_settings=ContentSettings(content_type=content_type, content_md5=bytearray(md5)),
            )
        written = result.get("last_modified")
        return ObjectInfo(
            container,
            path,
            size,
            _unquote(result.get("etag")),
            dict(metadata),
            written=written.timestamp() if written else 0.0,
            content_type=content_type,
            content_md5=base64.b64encode(md5).decode(),
        )

    def delete(self, container: str, path: str, version: str) -> bool:
        from azure.core import MatchConditions

        blob = self._blob(container, path)
        try:
            with _azure_errors(f"delete {container}/{path}", self._setting(container)):
                blob.delete_blob(etag=_quote(version), match_condition=MatchConditions.IfNotModified)
        except (ObjectNotFound, SourceChanged):
            return False
        return True

    def update_metadata(self, container: str, path: str, version: str, metadata: Mapping[str, str]) -> None:
        from azure.core import MatchConditions

        current = self.stat(container, path)
        if current is None:
            raise ObjectNotFound(f"update metadata of {container}/{path}: not found")
        if current.version != version:
            raise SourceChanged(f"update metadata of {container}/{path}: object changed")
        blob = self._blob(container, path)
        with _azure_errors(f"update metadata of {container}/{path}", self._setting(container)):
            # Azure replaces the whole metadata set, so the object's own travels along, under the same etag.
            blob.set_blob_metadata(
                {**current.metadata, **metadata}, etag=_quote(version), match_condition=MatchConditions.IfNotModified
            )

    def container_exists(self, container: str) -> bool:
        try:
            with _azure_errors(f"container {container}", self._setting(container)):
                self._account(container).get_container_client(container).get_container_properties()
        except (LocationMissing, ObjectNotFound):
            return False
        except TransientError as exc:
            if _account_key(self._account(container)) and "access denied" in str(exc):
                raise SettingsError(
                    f"container {container}: storage refused the account key; {_wrong_key(self._setting(container))}"
                ) from exc
            raise
        return True

    def list(self, container: str, prefix: str) -> Iterator[ObjectInfo]:
        client = self._account(container).get_container_client(container)
        with _azure_errors(f"list {container}/{prefix}", self._setting(container)):
            # Committed blobs only: `include` never asks for "uncommittedblobs", so a blob whose blocks
            # are staged but not yet committed (Put Block List) is not listed, as Event Grid is silent on it.
            # "copy" brings each blob's copy status, so a listing tells an unfinished copy as a stat does.
            for item in client.list_blobs(name_starts_with=prefix or None, include=["metadata", "copy"]):
                if (item.metadata or {}).get(_FOLDER) == "true":
                    continue
                yield _info(container, str(item.name), item)

    def spark_uri(self, container: str, path: str) -> str:
        return azure_uri(_account_name(self._account(container)), container, path)

    def download(self, container: str, path: str, destination: str) -> None:
        blob = self._blob(container, path)
        with _azure_errors(f"download {container}/{path}", self._setting(container)), open(destination, "wb") as handle:
            blob.download_blob(decompress=False).readinto(handle)

    def create_containers(self, *names: str) -> None:
        """Create containers that do not exist yet (local world and tests)."""
        from azure.core.exceptions import ResourceExistsError

        for name in names:
            try:
                with _azure_errors(f"create container {name}", self._setting(name)):
                    self._account(name).create_container(name)
            except (ResourceExistsError, DestinationExists):
                continue
