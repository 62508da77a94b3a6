"""The rules only the job can run on a file's rows: derived columns, row checks and unique keys.

Input: the file's checked rows (typed contract columns, the column rules' `reason` and `rules`, the
raw text). Output: the same rows with the derived columns (NULL, not computed, on a row a column rule
rejected), every broken rule's id in `rules`, and the ids of failed `warn` checks in `_warnings`. A
row sent twice with the same values is no conflict: both copies stage, and the merge keeps one per key and
counts the other as superseded, as it does for any repeated version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from filegate.contracts import BUSINESS_DATE, Check, Contract
from spark_jobs.columns import REASON, RULES, SHAPE_OK, WARNINGS
from spark_jobs.contract_sql import check_passes, derived_column
from spark_jobs.merge import content_text
from spark_jobs.validation import column_rules, field_count_rule, well_formed_rule

_KEY_ROWS = "_key_rows"
_KEY_VERSIONS = "_key_versions"


def duplicate_key_rule(contract: Contract) -> str:
    """The rule id of a key sent twice in one file with different content."""
    return f"{contract.name}.row.duplicate_key"


@dataclass(frozen=True)
class StageRule:
    """A rule the stage runs on every row of a member: its id, kind (column, row, check) and action."""

    rule: str
    kind: str
    action: str


def stage_rules(contract: Contract) -> list[StageRule]:
    """Every rule the stage can break a row of `contract` with, in the ids its rows carry.

    Read from the same definitions the stage runs (`column_rules`, the checks, the key rule), so a
    rule that rejected nothing still has its row in validation_results.
    """
    rules = [StageRule(rule, "row", "reject") for rule in (well_formed_rule(contract), field_count_rule(contract))]
    for column in contract.columns:
        kinds = dict.fromkeys(kind for _, kind, _ in column_rules(column, column.name))
        rules.extend(StageRule(contract.rule_id(column.name, kind), "column", "reject") for kind in kinds)
    if contract.unique_keys:
        rules.append(StageRule(duplicate_key_rule(contract), "row", "reject"))
    rules.extend(StageRule(contract.check_id(check), "check", check.action) for check in contract.checks)
    return rules


def apply_row_rules(checked: DataFrame, contract: Contract, business_date: date | None) -> DataFrame:
    """Add derived columns, run the checks and the unique-key rule; see the module's docstring."""
    rows = checked
    # A derived column is computed only for a row that broke no column rule: its expression may rely on
    # what those rules promise (dimensions that match their pattern), and Spark's ANSI mode raises on a
    # value it cannot cast or that overflows, which would stop the whole file for one row that is
    # rejected anyway. A rejected row's derived columns are NULL (its raw text is kept).
    passed = F.col(REASON).isNull()
    for derived in contract.derived:
        rows = rows.select("*", derived_column(contract, derived, only_where=passed))
    rows = rows.select("*", F.lit(business_date).cast("date").alias(BUSINESS_DATE))
    rejecting = [check for check in contract.checks if check.action == "reject"]
    warning = [check for check in contract.checks if check.action == "warn"]
    # A misshapen row has its values in the wrong columns: checks on them would name rules it did not break.
    # A CASE, not an AND, keeps them off such a row: Spark does not promise that AND short-circuits.
    failed_rejects = [(failed_check(contract, check), F.lit(_check_reason(check))) for check in rejecting]
    rows = _with_broken(rows, failed_rejects)
    rows = rows.withColumn(
        WARNINGS,
        _ids([failed_check(contract, check) for check in warning]),
    )
    if contract.unique_keys:
        rows = _unique_keys(rows, contract)
    return rows if contract.sequence_by == BUSINESS_DATE else rows.drop(BUSINESS_DATE)


def failed_check(contract: Contract, check: Check) -> SparkColumn:
    """The check's id where a row of the contract's shape fails it; NULL elsewhere (the check not evaluated)."""
    return F.when(F.col(SHAPE_OK), F.when(~check_passes(contract, check), F.lit(contract.check_id(check))))


def _check_reason(check: Check) -> str:
    return f"fails the check {check.name}: {check.description or check.expr}"


def _ids(candidates: list[SparkColumn]) -> SparkColumn:
    """The non-NULL ids among `candidates`, as an array (empty when none)."""
    if not candidates:
        return F.array().cast("array<string>")
    return F.filter(F.array(*candidates), lambda rule: rule.isNotNull())


def _with_broken(rows: DataFrame, broken: list[tuple[SparkColumn, SparkColumn]]) -> DataFrame:
    """Append each rule id that is not NULL to `rules`, and its sentence to `reason`."""
    if not broken:
        return rows
    ids = _ids([rule for rule, _ in broken])
    sentences = F.concat_ws("; ", *(F.when(rule.isNotNull(), text) for rule, text in broken))
    reason = F.when(F.col(REASON).isNull() & (sentences != F.lit("")), sentences).when(
        sentences != F.lit(""), F.concat_ws("; ", F.col(REASON), sentences)
    )
    return rows.withColumn(REASON, F.coalesce(reason, F.col(REASON))).withColumn(RULES, F.concat(F.col(RULES), ids))


def _unique_keys(rows: DataFrame, contract: Contract) -> DataFrame:
    """A key with two different rows in the file rejects every row of that key.

    Different by their typed values, as the merge compares them (`content_text`), not by their text:
    `12.5` and `12.50`, or `10:00:00Z` and `10:00:00+00:00`, are one content written two ways.
    """
    # Misshapen rows are kept out of the key's group (their "key" may be another column's value).
    by_key = Window.partitionBy(F.col(SHAPE_OK), *(F.col(key) for key in contract.keys))
    keyed = F.col(SHAPE_OK)
    for key in contract.keys:
        keyed = keyed & F.col(key).isNotNull()
    rows = rows.select(
        "*",
        F.size(F.collect_set(F.expr(content_text(contract))).over(by_key)).alias(_KEY_VERSIONS),
        F.count(F.lit(1)).over(by_key).alias(_KEY_ROWS),
    )
    conflict = keyed & (F.col(_KEY_VERSIONS) > F.lit(1))
    rule = F.when(conflict, F.lit(duplicate_key_rule(contract)))
    names = ", ".join(contract.keys)
    text = F.concat(
        F.lit(f"key ({names}) appears in "),
        F.col(_KEY_ROWS).cast("string"),
        F.lit(" rows of this file with "),
        F.col(_KEY_VERSIONS).cast("string"),
        F.lit(" different contents; none of them can be chosen"),
    )
    return _with_broken(rows, [(rule, text)]).drop(_KEY_VERSIONS, _KEY_ROWS)
