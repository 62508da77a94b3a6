"""Cloud object URIs, written and read in one place: `abfss://` for Azure, `gs://` for GCS.

The function writes them into run parameters and manifests (the URI Spark on Databricks reads an
archived object with), the local Jobs API reads them back to fetch the object from an emulator, and
`status` shortens them for a table. One grammar for all three, so a URI one writes the others read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from filegate.errors import FilegateError
from filegate.events import AZURE, GCS

# Azure Data Lake Storage Gen2's DNS suffix: Spark on Databricks reads blobs through the dfs endpoint.
_AZURE_DFS = "dfs.core.windows.net"
_AZURE = re.compile(r"^(?:abfss?|wasbs?)://(?P<container>[^@/]+)@(?P<host>[^/]+)/(?P<path>.+)$")
_GCS = re.compile(r"^gs://(?P<container>[^/]+)/(?P<path>.+)$")


class NotACloudUri(FilegateError):
    """A text that names no object in Azure Blob Storage or Google Cloud Storage."""


@dataclass(frozen=True)
class CloudUri:
    """An object in a cloud store: which cloud, the account (Azure only), container or bucket, and path."""

    cloud: str
    container: str
    path: str
    account: str = ""

    def __str__(self) -> str:
        if self.cloud == AZURE:
            return f"abfss://{self.container}@{self.account}.{_AZURE_DFS}/{self.path}"
        return f"gs://{self.container}/{self.path}"

    def short(self) -> str:
        """The URI without the account's DNS suffix, for tables people read."""
        if self.cloud == AZURE:
            return f"abfss://{self.container}@{self.account}/{self.path}"
        return str(self)


def azure_uri(account: str, container: str, path: str) -> str:
    return str(CloudUri(AZURE, container, path, account))


def gcs_uri(bucket: str, path: str) -> str:
    return str(CloudUri(GCS, bucket, path))


def parse(uri: str) -> CloudUri:
    """The object a cloud URI names; raises NotACloudUri for anything else (a local path, say)."""
    if found := _AZURE.match(uri):
        account = found["host"].split(".", 1)[0]
        return CloudUri(AZURE, found["container"], found["path"], account)
    if found := _GCS.match(uri):
        return CloudUri(GCS, found["container"], found["path"])
    raise NotACloudUri(f"not a cloud URI (abfss:// or gs://): {uri}")


def is_cloud_uri(text: str) -> bool:
    return bool(_AZURE.match(text) or _GCS.match(text))


def short(uri: str) -> str:
    """A cloud URI without the account's DNS suffix; any other text as it is."""
    return parse(uri).short() if is_cloud_uri(uri) else uri
