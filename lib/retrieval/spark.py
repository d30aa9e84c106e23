"""The Spark session, built from the config, and the spark-submit arguments that the same config implies.

Under ``spark-submit`` the master, deploy mode and resources come from the command line (submit.py
puts them there from the config); here we only fill in what is still missing, so a job behaves the
same whether it is launched by spark-submit or by plain ``python -m jobs.X`` (tests, notebooks).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from retrieval import home
from retrieval.config import Config
from retrieval.stages import gpu_applications

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


# Applications that use GPUs (the registry's GPU stages, and the pipeline: one application for every
# stage). The others do not ask for them: spark.task.resource.gpu.amount would hold a GPU per task, so a
# CPU stage would run one task per GPU instead of one per core.
GPU_STAGES = gpu_applications()


def is_local_master(master: str) -> bool:
    return master.startswith("local")


def local_cores(master: str) -> int:
    """Cores a local master uses: ``local[4]`` -> 4, ``local[*]`` -> all of this machine's."""
    inner = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
    inner = inner.split(",")[0]
    return (os.cpu_count() or 1) if inner == "*" else max(1, int(inner))


def spark_conf(cfg: Config, stage: str) -> dict[str, str]:
    """Every ``spark.*`` setting the config implies (spark-submit passes them as --conf, python sets them)."""
    s = cfg.spark
    conf: dict[str, str] = {
        "spark.app.name": f"{s.app_name}-{stage}",
        "spark.sql.session.timeZone": "UTC",  # timestamps in tables and strings mean UTC everywhere
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "10000",
        "spark.sql.parquet.compression.codec": "zstd",
        # A job re-run must give the same output: no speculative duplicates of side-effecting tasks.
        "spark.speculation": "false",
        # Progress bars would garble the jobs' summaries; the Spark UI shows progress instead.
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.debug.maxToStringFields": "200",  # our wide plans would otherwise warn on every job
    }
    if s.driver_memory:
        conf["spark.driver.memory"] = s.driver_memory
    if s.executor_memory:
        conf["spark.executor.memory"] = s.executor_memory
    if s.executor_cores:
        conf["spark.executor.cores"] = str(s.executor_cores)
    if s.num_executors:
        conf["spark.executor.instances"] = str(s.num_executors)
    if is_local_master(s.master):
        shuffle = s.shuffle_partitions or 2 * local_cores(s.master)
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    else:
        shuffle = s.shuffle_partitions or 200
    conf["spark.sql.shuffle.partitions"] = str(shuffle)
    if s.executor_gpus > 0 and stage in GPU_STAGES:
        conf["spark.executor.resource.gpu.amount"] = _num(s.executor_gpus)
        conf["spark.task.resource.gpu.amount"] = _num(s.task_gpus or 1.0)
        if s.gpu_discovery_script:
            conf["spark.executor.resource.gpu.discoveryScript"] = s.gpu_discovery_script
    conf.update(s.conf)
    return conf


def local_dirs(cfg: Config) -> str | None:
    """Scratch space of a local master (``SPARK_LOCAL_DIRS``): spark.local_dir, else ./work/.spark-local.

    Given as the environment variable rather than ``spark.local.dir``, which Spark would warn about.
    """
    if not is_local_master(cfg.spark.master):
        return None
    return os.path.abspath(cfg.spark.local_dir or os.path.join("work", ".spark-local"))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def get_spark(cfg: Config, stage: str) -> SparkSession:
    """The active session, or a new one configured from ``cfg`` (settings given by spark-submit win)."""
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if under_submit:
        # spark-submit started the JVM with its settings: connect first, so SparkConf() can read them.
        SparkContext._ensure_initialized()
    else:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the hostname resolves oddly on some machines
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers run this interpreter, not PATH's
        scratch = local_dirs(cfg)
        if scratch:
            os.makedirs(scratch, exist_ok=True)
            os.environ.setdefault("SPARK_LOCAL_DIRS", scratch)
    given = SparkConf()  # under spark-submit this holds what the command line set
    builder = SparkSession.builder
    if not given.contains("spark.master"):
        builder = builder.master(cfg.spark.master)
    for key, value in spark_conf(cfg, stage).items():
        if not given.contains(key):
            builder = builder.config(key, value)
    log4j = home.log4j_config()
    if not under_submit and os.path.exists(log4j) and not given.contains("spark.driver.extraJavaOptions"):
        builder = builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={log4j}")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("spark %s master=%s", spark.version, spark.sparkContext.master)
    return spark


def map_in_pandas(
    df: DataFrame, fn: Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]], schema: str
) -> DataFrame:
    """``df.mapInPandas(fn, schema)``: ``fn`` runs once per partition over its pandas batches."""
    # pyspark's stubs type the function as a union of every pandas UDF shape; ours is this one
    return df.mapInPandas(cast(Any, fn), schema)


def map_in_arrow(
    df: DataFrame, fn: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]], schema: str
) -> DataFrame:
    """``df.mapInArrow(fn, schema)``: ``fn`` runs once per partition over its Arrow record batches."""
    return df.mapInArrow(cast(Any, fn), schema)
