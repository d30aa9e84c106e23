"""The Spark session, built from the config, and the spark-submit arguments that the same config implies.

Under ``spark-submit`` the master, deploy mode and resources come from the command line (submit.py
puts them there from the config); here we only fill in what is still missing, so a job behaves the
same whether it is launched by spark-submit or by plain ``python -m jobs.X`` (tests, notebooks).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from retrieval.config import Config

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
        conf["spark.local.dir"] = s.local_dir or os.path.join(REPO_ROOT, "work", ".spark-local")
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    else:
        shuffle = s.shuffle_partitions or 200
    conf["spark.sql.shuffle.partitions"] = str(shuffle)
    if s.executor_gpus > 0:
        conf["spark.executor.resource.gpu.amount"] = _num(s.executor_gpus)
        conf["spark.task.resource.gpu.amount"] = _num(s.task_gpus or 1.0)
        if s.gpu_discovery_script:
            conf["spark.executor.resource.gpu.discoveryScript"] = s.gpu_discovery_script
    conf.update(s.conf)
    return conf


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def get_spark(cfg: Config, stage: str) -> SparkSession:
    """The active session, or a new one configured from ``cfg`` (settings given by spark-submit win)."""
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the hostname resolves oddly on some machines
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    given = SparkConf()  # under spark-submit this holds what the command line set
    builder = SparkSession.builder
    if not given.contains("spark.master"):
        builder = builder.master(cfg.spark.master)
    for key, value in spark_conf(cfg, stage).items():
        if not given.contains(key):
            builder = builder.config(key, value)
    local_dir = spark_conf(cfg, stage).get("spark.local.dir")
    if local_dir and not given.contains("spark.local.dir"):
        os.makedirs(local_dir, exist_ok=True)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("spark %s master=%s", spark.version, spark.sparkContext.master)
    return spark
