"""Pure transforms from a batch's stage rows to the rows a MERGE applies."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from filegate.contracts import Contract
from spark_jobs.columns import EFFECTIVE_FROM, EFFECTIVE_TO, IS_CURRENT, target_schema
from spark_jobs.merge import content_text

_RANK = "_rank"
_ORIGIN = "_origin"
_PREVIOUS_TO = "_previous_effective_to"
_PREVIOUS_CURRENT = "_previous_is_current"


def content_order(contract: Contract) -> Column:
    """A tie-break on the row's content: equal sequence values resolve the same way on every run.

    File order is no tie-break: Spark does not keep it across partitions, and the same two rows
    may arrive in either order in a corrected file. The MERGE breaks ties across files by the same text.
    """
    return F.expr(content_text(contract)).desc()


def latest_per_key(rows: DataFrame, contract: Contract) -> DataFrame:
    """One row per key: the newest by the sequence column, ties broken by content."""
    window = Window.partitionBy(*contract.keys).orderBy(F.col(contract.sequence_by).desc(), content_order(contract))
    return rows.withColumn(_RANK, F.row_number().over(window)).where(F.col(_RANK) == 1).drop(_RANK)


def distinct_versions(rows: DataFrame, contract: Contract) -> DataFrame:
    """One row per key and sequence value: the versions SCD2 keeps, duplicates dropped."""
    window = Window.partitionBy(*contract.keys, contract.sequence_by).orderBy(content_order(contract))
    return rows.withColumn(_RANK, F.row_number().over(window)).where(F.col(_RANK) == 1).drop(_RANK)


def history_changes(versions: DataFrame, existing: DataFrame, contract: Contract) -> DataFrame:
    """New versions to insert and existing versions whose validity changes, for the touched keys.

    The touched keys' timeline is rebuilt from the target's versions plus the batch's: each version
    is valid until the next one's sequence value, and only the last is current. Two versions of one
    instant (a correction sent with the original's timestamp) resolve as inside a file, by content
    (`content_order`), so the result does not depend on which file came first; with equal content the
    target's copy stays, so a repeated or late batch yields only the rows that really change.
    `existing` may hold the whole target.
    """
    keys = list(contract.keys)
    sequence = contract.sequence_by
    columns = target_schema(contract).fieldNames()
    touched = versions.select(*keys).distinct()
    current = existing.join(touched, on=keys, how="left_semi").select(
        *columns,
        F.col(EFFECTIVE_TO).alias(_PREVIOUS_TO),
        F.col(IS_CURRENT).alias(_PREVIOUS_CURRENT),
        F.lit(0).alias(_ORIGIN),
    )
    incoming = versions.select(
        *(F.col(name) for name in columns if name not in (EFFECTIVE_FROM, EFFECTIVE_TO, IS_CURRENT)),
        F.col(sequence).alias(EFFECTIVE_FROM),
        F.lit(None).cast(existing.schema[EFFECTIVE_TO].dataType).alias(EFFECTIVE_TO),
        F.lit(None).cast("boolean").alias(IS_CURRENT),
        F.lit(None).cast(existing.schema[EFFECTIVE_TO].dataType).alias(_PREVIOUS_TO),
        F.lit(None).cast("boolean").alias(_PREVIOUS_CURRENT),
        F.lit(1).alias(_ORIGIN),
    ).select(*columns, _PREVIOUS_TO, _PREVIOUS_CURRENT, _ORIGIN)
    combined = current.unionByName(incoming)
    same_version = Window.partitionBy(*keys, EFFECTIVE_FROM).orderBy(content_order(contract), F.col(_ORIGIN))
    timeline = combined.withColumn(_RANK, F.row_number().over(same_version)).where(F.col(_RANK) == 1)
    by_time = Window.partitionBy(*keys).orderBy(F.col(EFFECTIVE_FROM))
    rebuilt = timeline.withColumn(EFFECTIVE_TO, F.lead(EFFECTIVE_FROM).over(by_time)).withColumn(
        IS_CURRENT, F.col(EFFECTIVE_TO).isNull()
    )
    changed = (
        (F.col(_ORIGIN) == 1)
        | ~F.col(EFFECTIVE_TO).eqNullSafe(F.col(_PREVIOUS_TO))
        | (F.col(IS_CURRENT) != F.col(_PREVIOUS_CURRENT))
    )
    return rebuilt.where(changed).select(*columns)
