"""Delta Lake's jars: the pom and the code pin one release, and a missing or damaged jar says what to run."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from spark_jobs.delta_jars import (
    DELTA_VERSION,
    JAR_NAMES,
    DeltaJarsMissing,
    delta_jars,
    delta_spark_conf,
    jars_folder,
)

REPO = Path(__file__).resolve().parents[2]
POM = REPO / "spark_jobs" / "jars" / "pom.xml"
NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def test_the_pom_pins_the_release_the_code_loads() -> None:
    pom = ET.parse(POM).getroot()
    (dependency,) = pom.findall("m:dependencies/m:dependency", NS)

    assert dependency.findtext("m:artifactId", namespaces=NS) == "delta-spark_2.13"
    assert dependency.findtext("m:version", namespaces=NS) == DELTA_VERSION
    text = POM.read_text(encoding="utf-8")
    # No repository address: Maven's own settings say where to fetch from.
    assert "<repositor" not in text
    assert "https://" not in text


def test_the_fetched_jars_are_whole_and_configure_spark() -> None:
    conf = delta_spark_conf()

    assert [path.name for path in delta_jars()] == list(JAR_NAMES)
    assert conf["spark.jars"].split(",") == [str(jars_folder() / name) for name in JAR_NAMES]
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"


def test_a_missing_jar_says_which_command_fetches_it(tmp_path: Path) -> None:
    with pytest.raises(DeltaJarsMissing, match=r"delta-spark_2\.13-4\.0\.0\.jar is missing .* run `make jars`"):
        delta_jars(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "html"])
def test_a_damaged_jar_says_to_fetch_it_again(tmp_path: Path, damage: str) -> None:
    for name in JAR_NAMES:
        shutil.copyfile(jars_folder() / name, tmp_path / name)
    spark_jar = tmp_path / JAR_NAMES[0]
    data = spark_jar.read_bytes()
    # A download cut short, or a proxy's error page saved under the jar's name.
    spark_jar.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"<html>407 Proxy Authentication</html>")

    with pytest.raises(DeltaJarsMissing, match=r"is damaged .* run `make jars` again"):
        delta_jars(tmp_path)
