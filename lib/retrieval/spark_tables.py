"""Reading, validating and atomically writing the tables of ``retrieval.tables`` with Spark.

Writes go to a hidden sibling ``.<name>.tmp-<uuid>`` and are renamed into place through the Hadoop
filesystem of the path (so ``file://``, ``hdfs://`` ... all work the same way). A job killed while
writing leaves the previous table untouched; a re-run cleans up what the dead one left behind.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from retrieval import storage
from retrieval.tables import Contract, quarantine

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


class TableError(ValueError):
    """A table is missing or does not match its contract."""


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


def _fs(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def _siblings(spark: SparkSession, uri: str, marker: str) -> list[str]:
    """Hidden siblings ``.<name>.<marker>-*`` of ``uri`` left by earlier writes."""
    fs, path = _fs(spark, uri)
    parent = path.getParent()
    if parent is None or not fs.exists(parent):
        return []
    prefix = f".{path.getName()}.{marker}-"
    return [
        str(s.getPath().toString()) for s in fs.listStatus(parent) if s.getPath().getName().startswith(prefix)
    ]


def exists(spark: SparkSession, uri: str) -> bool:
    fs, path = _fs(spark, storage.to_uri(uri))
    return bool(fs.exists(path))


def _recover(spark: SparkSession, uri: str) -> None:
    """If a writer died between its two renames, the previous table sits in ``.old-*``: put it back."""
    fs, path = _fs(spark, uri)
    if fs.exists(path):
        return
    old = _siblings(spark, uri, "old")
    if old:
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        log.warning("restoring %s from %s (an earlier write was interrupted)", uri, old[-1])
        fs.rename(jvm.org.apache.hadoop.fs.Path(old[-1]), path)


def read_table(spark: SparkSession, root: str, contract: Contract) -> DataFrame:
    """Reads the table ``contract`` under ``root`` and validates its schema.

    Raises:
        TableError: if the table does not exist (naming it and the stage that writes it) or does not
            match its contract.
    """
    uri = storage.to_uri(storage.join(root, contract.name))
    _recover(spark, uri)
    fs, path = _fs(spark, uri)
    if not fs.exists(path):
        hint = f"; it is written by the '{contract.producer}' stage" if contract.producer else ""
        raise TableError(f"table '{contract.name}' not found at {uri}{hint}")
    df = spark.read.parquet(uri)
    validate(df, contract)
    return df


def write_table(df: DataFrame, root: str, contract: Contract) -> str:
    """Validates ``df`` and writes it as parquet to ``<root>/<contract.name>``, atomically.

    The data lands in a hidden temporary sibling first; only a complete write is renamed into place
    (the previous version is moved aside first and deleted last). Returns the table's URI.
    """
    validate(df, contract, exact=True)
    uri = storage.to_uri(storage.join(root, contract.name))
    jvm = spark_jvm(df)
    fs, path = _fs(df.sparkSession, uri)
    for stale in _siblings(df.sparkSession, uri, "tmp"):
        fs.delete(jvm.org.apache.hadoop.fs.Path(stale), True)
    _recover(df.sparkSession, uri)
    token = uuid.uuid4().hex[:12]
    parent = path.getParent()
    tmp = jvm.org.apache.hadoop.fs.Path(parent, f".{path.getName()}.tmp-{token}")
    df.write.mode("overwrite").parquet(str(tmp.toString()))
    old = jvm.org.apache.hadoop.fs.Path(parent, f".{path.getName()}.old-{token}")
    had_old = bool(fs.exists(path))
    if had_old and not fs.rename(path, old):
        raise OSError(f"could not move {uri} aside to replace it")
    if not fs.rename(tmp, path):
        if had_old:
            fs.rename(old, path)
        raise OSError(f"could not rename {tmp} to {uri}")
    if had_old:
        fs.delete(old, True)
    return uri


def spark_jvm(df: DataFrame) -> Any:
    jvm = df.sparkSession.sparkContext._jvm
    assert jvm is not None
    return jvm


def quarantine_rows(
    bad: DataFrame, raw_columns: list[str], job: str, when: datetime | None = None
) -> DataFrame:
    """Shapes rejected rows for ``quarantine/<table>``: the raw row as JSON, its reason, the job, the time.

    Args:
        bad: rows with the raw columns and a ``reason`` string column.
        raw_columns: the columns that make up the raw row (in order).
    """
    from pyspark.sql import functions as F

    when = when or datetime.now(UTC)
    return bad.select(
        F.to_json(F.struct(*[F.col(c) for c in raw_columns]), {"ignoreNullFields": "false"}).alias("raw"),
        F.col("reason").cast("string").alias("reason"),
        F.lit(job).alias("job"),
        # via a string: a naive datetime literal would be read in the Python process's local time zone
        F.to_timestamp(F.lit(when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"))).alias("ts"),
    )


def write_quarantine(bad: DataFrame, root: str, table: str) -> str:
    """Writes the quarantine table of ``table`` (rows shaped by :func:`quarantine_rows`)."""
    return write_table(bad, root, quarantine(table))
