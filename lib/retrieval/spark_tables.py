"""Reading, validating and atomically writing the tables of ``retrieval.tables`` with Spark.

A table is a committed object (``retrieval.commit``): each write goes to a new version directory, and
the table's ``CURRENT`` names it only once the data is complete (with the stage's other tables when the
stage runs in a transaction). A job killed while writing leaves the previous version current; the next
writer removes what the dead one left behind. Spark writes the data through the path's Hadoop
filesystem (``file://``, ``hdfs://``, ``s3a://`` ...); the pointers are small files written through fsspec.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from retrieval import commit, storage
from retrieval.tables import Contract, quarantine

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


class TableError(ValueError):
    """A table is missing or does not match its contract."""

    stage: str | None = None  # the pipeline stage that met it, when a pipeline ran it


def validate(df: DataFrame, contract: Contract, *, exact: bool = False) -> None:
    """Checks that ``df`` has every column of ``contract`` with its type.

    Args:
        exact: also reject columns the contract does not name (unless the contract allows extras).

    Raises:
        TableError: naming the table, the column and the expected type.
    """
    fields = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    problems = []
    for col in contract.columns:
        if col.name not in fields:
            problems.append(f"column '{col.name}' is missing (expected {col.dtype})")
        elif fields[col.name] != col.dtype:
            problems.append(f"column '{col.name}' has type {fields[col.name]}, expected {col.dtype}")
    if exact and not contract.extra_columns:
        extra = [n for n in fields if n not in contract.column_names]
        if extra:
            problems.append(f"unexpected columns {extra} (the contract has {contract.column_names})")
    if problems:
        raise TableError(f"table '{contract.name}': " + "; ".join(problems))


def exists(root: str, table: Contract | str) -> bool:
    """True when ``table`` under ``root`` has a committed version."""
    return commit.resolve(root, table.name if isinstance(table, Contract) else table) is not None


def read_table(spark: SparkSession, root: str, contract: Contract) -> DataFrame:
    """Reads the committed version of table ``contract`` under ``root`` and validates its schema.

    Raises:
        TableError: if the table does not exist (naming it and the stage that writes it) or does not
            match its contract.
    """
    uri = commit.resolve(root, contract.name)
    if uri is None:
        hint = f"; it is written by the '{contract.producer}' stage" if contract.producer else ""
        where = storage.to_uri(storage.join(root, contract.name))
        raise TableError(f"table '{contract.name}' not found at {where}{hint}")
    df = spark.read.parquet(storage.to_uri(uri))
    validate(df, contract)
    return df


def write_table(df: DataFrame, root: str, contract: Contract) -> str:
    """Validates ``df`` and writes it as parquet to a new version of ``<root>/<contract.name>``.

    The version is committed (``commit``) with the stage's other outputs when a stage transaction is
    open, else alone at once: readers see the previous version until then. Returns the version's URI.
    """
    validate(df, contract, exact=True)
    with commit.committed(root, contract.name) as uri:
        df.write.mode("overwrite").parquet(storage.to_uri(uri))
    return storage.to_uri(uri)


def spark_jvm(df: DataFrame) -> Any:
    jvm = df.sparkSession.sparkContext._jvm
    assert jvm is not None
    return jvm


def quarantine_rows(
    bad: DataFrame, raw_columns: list[str], job: str, when: datetime | None = None
) -> DataFrame:
    """Shapes rejected rows for ``quarantine/<table>``: the raw row as JSON, its reason, the job, the time.

    Args:
        bad: rows with the raw columns and a ``reason`` string column (and optionally ``_raw``, the
            original text of a record that did not parse, which then stands for the raw row).
        raw_columns: the columns that make up the raw row (in order).
    """
    from pyspark.sql import functions as F

    when = when or datetime.now(UTC)
    raw = F.to_json(F.struct(*[F.col(c) for c in raw_columns]), {"ignoreNullFields": "false"})
    if "_raw" in bad.columns:  # the original text of a record that did not parse (ingest.spark_read)
        raw = F.coalesce(F.col("_raw"), raw)
    return bad.select(
        raw.alias("raw"),
        F.col("reason").cast("string").alias("reason"),
        F.lit(job).alias("job"),
        # via a string: a naive datetime literal would be read in the Python process's local time zone
        F.to_timestamp(F.lit(when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"))).alias("ts"),
    )


def write_quarantine(bad: DataFrame, root: str, table: str) -> str:
    """Writes the quarantine table of ``table`` (rows shaped by :func:`quarantine_rows`)."""
    return write_table(bad, root, quarantine(table))
