"""Delta Lake's jars for a local Spark: where `make jars` puts them, checked before a JVM is started with them.

Databricks ships Delta Lake; a local Spark (tests, `make demo`, benchmarks) loads the pinned release
from the project's `.jars/delta/`, filled once from Maven Central by `make jars` (spark_jobs/jars/pom.xml).
Nothing here imports pyspark: the local Jobs API starts its Spark Connect server with these jars too.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from filegate.errors import FilegateError

# Delta 4.0.x is built for Spark 4.0.x and Scala 2.13 (the pinned pyspark); spark_jobs/jars/pom.xml pins the same.
DELTA_VERSION = "4.0.0"
JAR_NAMES = (f"delta-spark_2.13-{DELTA_VERSION}.jar", f"delta-storage-{DELTA_VERSION}.jar")
# A class each jar must hold: a download cut short or a proxy's error page fails here, not in the JVM.
_PROBES = {
    JAR_NAMES[0]: "io/delta/sql/DeltaSparkSessionExtension.class",
    JAR_NAMES[1]: "io/delta/storage/LogStore.class",
}
FETCH_COMMAND = "make jars"
EXTENSIONS = "io.delta.sql.DeltaSparkSessionExtension"
CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


class DeltaJarsMissing(FilegateError):
    """Delta Lake's jars are not where a local Spark loads them from, or are damaged."""


def jars_folder() -> Path:
    """`.jars/delta` of the checkout this package lives in."""
    return Path(__file__).resolve().parents[1] / ".jars" / "delta"


def delta_jars(folder: Path | None = None) -> list[Path]:
    """The pinned Delta jars, each checked to be a whole jar; DeltaJarsMissing says what to run otherwise."""
    folder = folder or jars_folder()
    found = []
    for name in JAR_NAMES:
        path = folder / name
        if not path.is_file():
            raise DeltaJarsMissing(
                f"Delta Lake's jar {name} is missing from {folder}: run `{FETCH_COMMAND}` in the repository "
                "(it fetches Delta Lake from Maven Central once; see README, 'Delta Lake jars')"
            )
        try:
            with zipfile.ZipFile(path) as jar:
                jar.getinfo(_PROBES[name])
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise DeltaJarsMissing(
                f"Delta Lake's jar {path} is damaged ({type(exc).__name__}: {exc}): delete {folder} and run "
                f"`{FETCH_COMMAND}` again"
            ) from exc
        found.append(path)
    return found


def delta_spark_conf(warehouse_dir: Path | None = None, folder: Path | None = None) -> dict[str, str]:
    """The Spark settings that make a local Spark run Delta Lake: jars, SQL extension, catalog."""
    conf = {
        "spark.jars": ",".join(str(path) for path in delta_jars(folder)),
        "spark.sql.extensions": EXTENSIONS,
        "spark.sql.catalog.spark_catalog": CATALOG,
        # A local table's log is a few dozen files: 50 partitions (the default) to rebuild its state
        # would cost more than the reading.
        "spark.databricks.delta.snapshotPartitions": "2",
    }
    if warehouse_dir is not None:
        # Where Spark would put managed tables; the tasks address theirs by path, but Spark still makes the folder.
        conf["spark.sql.warehouse.dir"] = str(warehouse_dir)
    return conf
