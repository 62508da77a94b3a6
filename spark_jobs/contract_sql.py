"""A contract's SQL as Spark columns: derived columns, row checks, and the check that they resolve.

Derived columns see the row alone (their value must not move with the date, or an SCD2 target would
open a version every day); checks see the row, the derived columns and `_business_date`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from pyspark.errors import PySparkException
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DateType, StructType

from filegate.contracts import BUSINESS_DATE, Check, Contract, Derived, Problem, band_bound, typed_value
from spark_jobs.columns import contract_fields, data_type, spark_type_name

T = TypeVar("T")


def is_data_exception(exc: PySparkException) -> bool:
    """Whether Spark raised on a value (SQLSTATE class 22, data exception: a cast, an overflow, a division by
    zero under ANSI SQL), not on the query or the platform."""
    return (exc.getSqlState() or "").startswith("22")


def spark_message(exc: PySparkException) -> str:
    """Spark's message, first line, without its advice to turn ANSI SQL off (the values would turn NULL unseen)."""
    return re.sub(r'\s*If necessary set "spark\.sql\.ansi\.enabled" to "false"[^.]*\.', "", first_line(exc)).strip()


def first_to_raise(probes: Iterable[tuple[T, DataFrame]]) -> tuple[T, PySparkException] | None:
    """The first probe whose query raises a data exception, with that exception; None when none does, or when one
    fails otherwise first (a lost connection, a query error): the caller's original error then stands.

    For naming what raised after a statement that evaluated them all together failed; each probe runs alone.
    """
    for label, probe in probes:
        try:
            probe.collect()
        except PySparkException as found:
            return (label, found) if is_data_exception(found) else None
        except Exception:
            return None
    return None


def derived_column(contract: Contract, derived: Derived, only_where: SparkColumn | None = None) -> SparkColumn:
    """The derived column's value, cast to its declared type; NULL, and not computed, where `only_where` is not true."""
    value = _banded(contract, derived) if derived.bands_on else F.expr(contract.sql(derived.expr))
    typed = value.cast(spark_type_name(derived.type))
    return (typed if only_where is None else F.when(only_where, typed)).alias(derived.name)


def _banded(contract: Contract, derived: Derived) -> SparkColumn:
    """The first band whose inclusive bounds hold the value; the default otherwise; NULL for NULL."""
    on = contract.column(derived.bands_on)
    source = F.col(on.name)
    result = F.when(source.isNull(), F.lit(None).cast("string"))
    for band in derived.bands:
        condition = F.lit(True)
        if band.min is not None:
            condition = condition & (source >= F.lit(typed_value(on.type, band_bound(contract, band.min))))
        if band.max is not None:
            condition = condition & (source <= F.lit(typed_value(on.type, band_bound(contract, band.max))))
        result = result.when(condition, F.lit(band.label))
    return result.otherwise(F.lit(derived.default))


def check_passes(contract: Contract, check: Check) -> SparkColumn:
    """True when the row passes the check; a NULL verdict (unknown) counts as passing, as in SQL CHECK."""
    return F.coalesce(F.expr(contract.sql(check.expr)), F.lit(True))


def deletes(contract: Contract) -> SparkColumn:
    """True when the row is a delete (`delete_when`); a NULL verdict is no delete, nor is a contract without one."""
    if not contract.delete_when:
        return F.lit(False)
    return F.coalesce(F.expr(contract.sql(contract.delete_when)), F.lit(False))


def expression_problems(spark: SparkSession, contract: Contract) -> list[Problem]:
    """Every derived, check or delete_when expression that does not resolve against the contract's schema, or has
    the wrong type."""
    with _quiet_query_errors():
        return _expression_problems(spark, contract)


@contextmanager
def _quiet_query_errors() -> Iterator[None]:
    """PySpark logs every analysis error with its JVM trace as it raises it; here each is a finding."""
    loggers = [logging.getLogger(name) for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger")]
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, before, strict=True):
            logger.disabled = disabled


def _expression_problems(spark: SparkSession, contract: Contract) -> list[Problem]:
    problems: list[Problem] = []
    row_fields = contract_fields(contract)
    # Analysis only: no row is ever read.
    frame = spark.createDataFrame([], StructType(row_fields))
    for derived in contract.derived:
        try:
            frame = frame.select("*", derived_column(contract, derived))
            _ = frame.schema
        except Exception as exc:  # Spark's AnalysisException and ParseException share no narrower base
            problems.append(Problem(f"derived.{derived.name}", first_line(exc)))
            frame = frame.select("*", F.lit(None).cast(data_type(derived.type)).alias(derived.name))
    if contract.delete_when:
        problems.extend(_boolean_problems(frame, contract, contract.delete_when, "delete_when"))
    with_date = frame.select("*", F.lit(None).cast(DateType()).alias(BUSINESS_DATE))
    for check in contract.checks:
        problems.extend(_boolean_problems(with_date, contract, check.expr, f"checks.{check.name}"))
    return problems


def _boolean_problems(frame: DataFrame, contract: Contract, expr: str, where: str) -> list[Problem]:
    """Why `expr` is no boolean over `frame`'s columns: it does not parse, resolve, or gives another type.

    Beside the row's columns, as the job computes it: alone, an aggregate (`sum(v) > 0`) resolved as a global
    aggregate, and every run then failed with MISSING_GROUP_BY, naming no check."""
    try:
        result = frame.select("*", F.expr(contract.sql(expr)).alias("_fg_verdict")).schema["_fg_verdict"]
    except Exception as exc:  # Spark's AnalysisException and ParseException share no narrower base
        return [Problem(where, first_line(exc))]
    if not isinstance(result.dataType, BooleanType):
        return [Problem(where, f"expr gives {result.dataType.simpleString()}, not a boolean")]
    return []


def first_line(exc: Exception) -> str:
    """Spark's message without its plan and JVM trace."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return re.sub(r"(SQLSTATE: [0-9A-Z]+).*", r"\1", first)
