"""The Azure store with the archive in an account of its own (FILEGATE_AZURE_ARCHIVE_STORAGE), on Azurite."""

from __future__ import annotations

import base64
import gzip
import ipaddress
import json
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.storage.blob import BlobServiceClient, ContentSettings

from filegate.azure_storage import AzureBlobStore
from filegate.errors import DestinationExists, SettingsError, SourceChanged, StorageError
from filegate.events import Upload, parse_event
from filegate.settings import Location, Settings
from local_world import ROOT
from local_world.emulators import (
    AZURITE_ACCOUNT,
    AZURITE_ARCHIVE_ACCOUNT,
    AZURITE_ARCHIVE_KEY,
    AZURITE_KEY,
    Azurite,
    run_azurite,
)
from local_world.inputs import blob_created

DATA = b"order_id,status\n1,shipped\n"


def _containers(connection_string: str) -> set[str]:
    return {c.name for c in BlobServiceClient.from_connection_string(connection_string).list_containers()}


def test_the_archive_is_copied_into_its_own_account_under_the_same_conditions(
    azurite: Azurite, two_accounts: tuple[AzureBlobStore, Settings]
) -> None:
    store, settings = two_accounts
    landing, archive = settings.landing, settings.archive
    uploaded = store.put(landing.container, landing.path("a.csv"), DATA, "text/csv", {})
    assert archive.container in _containers(azurite.archive_connection_string)
    assert archive.container not in _containers(azurite.connection_string)
    assert landing.container not in _containers(azurite.archive_connection_string)

    source = landing.path("a.csv")
    copied = store.copy(landing.container, source, uploaded.version, archive.container, "a.csv", {"k": "v"})

    assert (copied.size, copied.metadata, copied.copy_status) == (len(DATA), {"k": "v"}, "success")
    assert store.read_prefix(archive.container, "a.csv", 100, copied.version) == DATA
    direct = BlobServiceClient.from_connection_string(azurite.archive_connection_string)
    assert direct.get_blob_client(archive.container, "a.csv").download_blob().readall() == DATA
    # The run reads the copy where it is: in the archive's account, whose name the URI carries.
    assert store.spark_uri(archive.container, "a.csv").startswith(
        f"abfss://{archive.container}@{AZURITE_ARCHIVE_ACCOUNT}."
    )
    assert store.spark_uri(landing.container, "x").startswith(f"abfss://{landing.container}@{AZURITE_ACCOUNT}.")
    assert store.account == AZURITE_ACCOUNT, "events name the landing account"
    assert [o.path for o in store.list(archive.container, "")] == ["a.csv"]
    assert store.check_signing().endswith(f"signed with {AZURITE_ACCOUNT}'s account key")

    # Create-only onto the destination, and only from the version the event named, across accounts too.
    with pytest.raises(DestinationExists):
        store.copy(landing.container, source, uploaded.version, archive.container, "a.csv", {})
    newer = store.put(landing.container, landing.path("b.csv"), DATA, "text/csv", {})
    store.delete(landing.container, landing.path("b.csv"), newer.version)
    again = store.put(landing.container, landing.path("b.csv"), DATA + b"2,late\n", "text/csv", {})
    with pytest.raises(SourceChanged):
        store.copy(landing.container, landing.path("b.csv"), newer.version, archive.container, "b.csv", {})
    assert store.stat(archive.container, "b.csv") is None
    assert again.version != newer.version


def test_a_blob_stored_gzip_encoded_is_read_as_its_stored_bytes_never_more_than_asked(
    azurite: Azurite, two_accounts: tuple[AzureBlobStore, Settings], tmp_path: Path
) -> None:
    # A producer's `az storage blob upload --content-encoding gzip`: Spark reads the stored (compressed) bytes,
    # so validation must see them too, and a bounded read must stay bounded however far they expand.
    store, settings = two_accounts
    landing = settings.landing
    packed = gzip.compress(DATA * 200_000, compresslevel=9)  # 5.2 MB of CSV in a few kB
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        landing.container, landing.path("a.csv")
    )
    blob.upload_blob(packed, content_settings=ContentSettings(content_type="text/csv", content_encoding="gzip"))
    info = store.stat(landing.container, landing.path("a.csv"))
    assert info is not None
    assert info.size == len(packed)

    assert store.read_prefix(landing.container, info.path, 1024, info.version) == packed[:1024]
    store.download(landing.container, info.path, str(tmp_path / "a.csv"))
    assert (tmp_path / "a.csv").read_bytes() == packed


def test_one_container_name_cannot_be_in_both_accounts(azurite: Azurite) -> None:
    settings = Settings(
        landing=Location("data", "incoming/"),
        archive=Location("data", "archive/"),
        azure_storage=azurite.connection_string,
        azure_archive_storage=azurite.archive_connection_string,
    )
    with pytest.raises(SettingsError, match="FILEGATE_ARCHIVE's container 'data' is also a landing or rejected"):
        AzureBlobStore.from_settings(settings)
    # One account may hold both, told apart by their prefixes, however its setting is written.
    for same in (None, azurite.connection_string.rstrip(";"), azurite.connection_string):
        single = AzureBlobStore.from_settings(replace(settings, azure_archive_storage=same))
        assert single.spark_uri("data", "archive/a.csv").startswith(f"abfss://data@{AZURITE_ACCOUNT}.")
        assert single.check_signing() == "one storage account: copies need no SAS"


def test_a_listing_leaves_out_the_folders_a_namespace_shows(
    azurite: Azurite, two_accounts: tuple[AzureBlobStore, Settings]
) -> None:
    # With a hierarchical namespace (the archive's account on Azure) List Blobs also returns each
    # directory, as an empty blob marked hdi_isfolder; Azurite stores such a blob as any other.
    store, settings = two_accounts
    archive = settings.archive.container
    direct = BlobServiceClient.from_connection_string(azurite.archive_connection_string)
    for folder in ("order_tracking", "order_tracking/2025"):
        direct.get_blob_client(archive, folder).upload_blob(b"", metadata={"hdi_isfolder": "true"})
    store.put(archive, "order_tracking/2025/a.csv", DATA, "text/csv", {})

    assert [o.path for o in store.list(archive, "")] == ["order_tracking/2025/a.csv"]


def test_a_wrong_archive_key_names_the_archive_setting(
    azurite: Azurite, two_accounts: tuple[AzureBlobStore, Settings]
) -> None:
    _, settings = two_accounts
    wrong = azurite.archive_connection_string.replace(f"AccountKey={AZURITE_ARCHIVE_KEY}", f"AccountKey={AZURITE_KEY}")
    store = AzureBlobStore.from_settings(replace(settings, azure_archive_storage=wrong))
    with pytest.raises(SettingsError, match="the key in FILEGATE_AZURE_ARCHIVE_STORAGE is wrong"):
        store.container_exists(settings.archive.container)
    assert store.container_exists(settings.landing.container)


def test_an_answer_without_a_case_of_its_own_is_said_in_one_line(azure_store: AzureBlobStore) -> None:
    # A container name Azure refuses (capitals): the request id, time and XML answer followed, and split the
    # `filegate doctor` line (and an outcome's reason) over a dozen lines.
    with pytest.raises(StorageError) as raised:
        azure_store.container_exists("Landing")

    assert str(raised.value) == (
        "container Landing: storage answered 400 InvalidResourceName: "
        "The specified resource name contains invalid characters."
    )


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, PEM: Azurite takes bearer tokens over HTTPS only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class _Identity:
    """An Entra token for storage as a managed identity gets one: Azurite checks its claims, not its signature."""

    def __init__(self) -> None:
        self.tenant, self.object_id = str(uuid.uuid4()), str(uuid.uuid4())

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        now = int(time.time())
        claims = {
            "aud": "https://storage.azure.com",
            "iss": f"https://sts.windows.net/{self.tenant}/",
            "iat": now,
            "nbf": now - 60,
            "exp": now + 3600,
            "oid": self.object_id,
            "tid": self.tenant,
        }

        def part(value: dict[str, Any] | bytes) -> str:
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        token = ".".join([part({"alg": "RS256", "typ": "JWT"}), part(claims), part(b"unsigned")])
        return AccessToken(token, now + 3600)


@pytest.mark.services
def test_an_identity_copies_across_accounts_with_a_user_delegation_sas(tmp_path: Path) -> None:
    # Shared keys are off on Azure: the function signs the copy's source with a user delegation key
    # that its identity asks the landing account for. Azurite with OAuth issues and checks such keys.
    cert, key = _self_signed(tmp_path)
    identity = _Identity()
    with run_azurite(ROOT, tmp_path / "azurite", oauth_tls=(cert, key)) as azurite:

        def service(account: str) -> BlobServiceClient:
            url = f"https://127.0.0.1:{azurite.port}/{account}"
            return BlobServiceClient(url, credential=identity, connection_verify=str(cert))

        landing, archive = service(AZURITE_ACCOUNT), service(AZURITE_ARCHIVE_ACCOUNT)
        store = AzureBlobStore(landing, {"archive": archive})
        store.create_containers("landing", "archive")
        first = store.put("landing", "incoming/a.csv", DATA, "text/csv", {})
        second = store.put("landing", "incoming/b.csv", DATA + b"2,late\n", "text/csv", {})
        # Which account issued each key: Azurite derives delegation keys from a fixed seed, so it would
        # accept a key of the wrong account, which Azure refuses.
        asked: list[str] = []
        for client in (landing, archive):
            original = client.get_user_delegation_key

            def counted(
                *args: Any, _original: Any = original, _account: str = client.account_name, **kwargs: Any
            ) -> Any:
                asked.append(_account)
                return _original(*args, **kwargs)

            client.get_user_delegation_key = counted  # type: ignore[method-assign]

        a = store.copy("landing", "incoming/a.csv", first.version, "archive", "a.csv", {"k": "v"})
        b = store.copy("landing", "incoming/b.csv", second.version, "archive", "b.csv", {})

        assert store.read_prefix("archive", "a.csv", 100, a.version) == DATA
        assert store.read_prefix("archive", "b.csv", 100, b.version) == DATA + b"2,late\n"
        assert asked == [AZURITE_ACCOUNT], "the source account's key, reused while it outlives a new SAS"
        # Readiness asks for the same key before the first event; the cached one answers.
        assert store.check_signing().endswith(f"a user delegation key of {AZURITE_ACCOUNT}")
        assert asked == [AZURITE_ACCOUNT]
        with pytest.raises(DestinationExists):
            store.copy("landing", "incoming/a.csv", first.version, "archive", "a.csv", {})
        # The other way (a trigger rejected from the archive): signed with a key of the archive's account.
        back = store.copy("archive", "b.csv", b.version, "landing", "rejected/b.csv", {})
        assert store.read_prefix("landing", "rejected/b.csv", 100, back.version) == DATA + b"2,late\n"
        assert asked == [AZURITE_ACCOUNT, AZURITE_ARCHIVE_ACCOUNT]


def test_an_account_url_written_in_capitals_names_the_account_its_events_name() -> None:
    # DNS names are case-blind, so the store worked; but the SDK kept the URL's spelling as the account, and
    # every event (whose URL Azure writes in lower case) was ignored as "not this function's account".
    event = blob_created("landing", "incoming/a.csv", 10, "0x1", account="filegatelanding")
    event["data"]["url"] = "https://filegatelanding.blob.core.windows.net/landing/incoming/a.csv"
    upload = parse_event(event)
    settings = (
        "https://FilegateLanding.blob.core.windows.net/",
        "BlobEndpoint=https://FilegateLanding.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&sig=x",
        "DefaultEndpointsProtocol=https;AccountName=FilegateLanding;AccountKey=a2V5;EndpointSuffix=core.windows.net",
    )

    for setting in settings:
        store = AzureBlobStore.from_setting(setting)
        assert isinstance(upload, Upload)
        assert store.account == upload.account == "filegatelanding", setting
        assert store.spark_uri("archive", "a.csv") == "abfss://archive@filegatelanding.dfs.core.windows.net/a.csv"
        assert store.account_of("archive")[0] == "filegatelanding"
    # The archive's setting spelling the same account otherwise is that account, not a second one whose copies
    # need a signature (or a refusal, where the containers' names are shared).
    one = Settings(
        landing=Location("data", "incoming/"),
        archive=Location("data", "archive/"),
        azure_storage=settings[0],
        azure_archive_storage=settings[0].lower(),
    )
    assert AzureBlobStore.from_settings(one).check_signing() == "one storage account: copies need no SAS"
