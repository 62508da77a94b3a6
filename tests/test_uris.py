"""Cloud URIs: what the function writes, the local Jobs API and `status` read back."""

from __future__ import annotations

import pytest

from filegate import uris
from filegate.events import AZURE, GCS


def test_a_written_uri_parses_back_to_its_object() -> None:
    azure = uris.azure_uri("shop", "archive", "orders/2025/01/15/orders_2025_01_15.csv")
    gcs = uris.gcs_uri("shop-archive", "orders/2025/01/15/orders_2025_01_15.csv")

    assert azure == "abfss://archive@shop.dfs.core.windows.net/orders/2025/01/15/orders_2025_01_15.csv"
    assert gcs == "gs://shop-archive/orders/2025/01/15/orders_2025_01_15.csv"
    assert uris.parse(azure) == uris.CloudUri(AZURE, "archive", "orders/2025/01/15/orders_2025_01_15.csv", "shop")
    assert uris.parse(gcs) == uris.CloudUri(GCS, "shop-archive", "orders/2025/01/15/orders_2025_01_15.csv")
    assert str(uris.parse(azure)) == azure


@pytest.mark.parametrize("scheme", ["abfss", "abfs", "wasbs", "wasb"])
def test_every_azure_scheme_names_the_same_object(scheme: str) -> None:
    found = uris.parse(f"{scheme}://landing@shop.blob.core.windows.net/a/b.csv")

    assert (found.cloud, found.account, found.container, found.path) == (AZURE, "shop", "landing", "a/b.csv")


def test_short_drops_the_dns_suffix_and_leaves_anything_else_alone() -> None:
    assert uris.short("abfss://archive@shop.dfs.core.windows.net/x/y.csv") == "abfss://archive@shop/x/y.csv"
    assert uris.short("gs://bucket/x/y.csv") == "gs://bucket/x/y.csv"
    assert uris.short("/tmp/local.csv") == "/tmp/local.csv"


@pytest.mark.parametrize("text", ["/tmp/orders.csv", "s3://bucket/key", "gs://bucket-only", "abfss://no-account/x"])
def test_anything_else_is_not_a_cloud_uri(text: str) -> None:
    assert not uris.is_cloud_uri(text)
    with pytest.raises(uris.NotACloudUri, match="not a cloud URI"):
        uris.parse(text)
