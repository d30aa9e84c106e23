"""``./submit.sh``: runs a job of ``jobs/`` through spark-submit, configured from the job's config.

    ./submit.sh [--dry-run] <job> [--config conf/X.yaml] [--set section.key=value ...]
    ./submit.sh --help | <job> --help

The library (``lib/retrieval``) and the job modules are shipped as one zip with ``--py-files``; the
master, deploy mode, resources and every ``spark.*`` setting come from the config's ``spark`` section,
so the same command runs on ``local[*]``, ``spark://``, ``yarn`` or ``k8s://`` masters.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shlex
import sys
import zipfile
from collections.abc import Sequence

from retrieval import config, home, runlock, storage
from retrieval.spark import is_local_master, local_dirs, spark_conf

PYTHON_ENV_DIR = "environment"  # where executors unpack spark.python_env (--archives ...#environment)

USAGE = """usage: ./submit.sh [--dry-run] <job> [--config conf/X.yaml] [--set section.key=value ...]
       ./submit.sh <job> --help      options of one job
       ./submit.sh --help            this text

Runs jobs/<job>.py with spark-submit (the venv's, or $SPARK_HOME/bin/spark-submit when SPARK_HOME
is set), shipping the retrieval and jobs packages as a zip with --py-files. ./submit.sh is the
`retrieval submit` command of the installed package; its first run creates .venv.

  --dry-run        print the exact spark-submit command (and its environment) instead of running it
  --print-config   print the resolved config (after --config and every --set) instead of running
  --config FILE    YAML config; default conf/local.yaml (the embedded synthetic marketplace).
                   conf/test.yaml: tiny, for tests; conf/cluster.yaml: a real cluster.
  --set K=V        override one config value, repeatable (e.g. --set paths.root=/tmp/run1)

Environment: SPARK_HOME (use that Spark's spark-submit), PYSPARK_PYTHON (the executors' Python;
default: this venv's python), RETRIEVAL_VENV, PYTHON (see scripts/setup_env.sh).

jobs:
"""


def list_jobs() -> dict[str, str]:
    """Job name -> the first paragraph of its docstring, for every ``jobs/*.py``."""
    out = {}
    jobs_dir = home.jobs_dir()
    for name in sorted(os.listdir(jobs_dir)):
        if name.endswith(".py") and not name.startswith("_"):
            with open(os.path.join(jobs_dir, name), encoding="utf-8") as f:
                doc = ast.get_docstring(ast.parse(f.read())) or ""
            # the docstring's first paragraph (a summary may wrap over two lines)
            first = " ".join(doc.split("\n\n")[0].split()) if doc else ""
            out[name[:-3]] = first.removeprefix(f"{name[:-3]}: ")
    return out


def job_lines() -> str:
    """One line per job: its name and the first paragraph of its docstring (``list_jobs``)."""
    jobs = list_jobs()
    width = max(len(j) for j in jobs)
    return "\n".join(f"  {j:<{width}}  {d}" for j, d in jobs.items())


def job_doc(job: str) -> str:
    with open(os.path.join(home.jobs_dir(), f"{job}.py"), encoding="utf-8") as f:
        return ast.get_docstring(ast.parse(f.read())) or ""


def build_zip() -> str:
    """Zips the ``retrieval`` and ``jobs`` packages (pure Python only) into ``home.build_dir()``; reused
    while unchanged. From a checkout or an installed wheel alike."""
    files = []
    for package in (home.PACKAGE_DIR, home.jobs_dir()):
        base = os.path.dirname(package)
        for dirpath, dirnames, filenames in os.walk(package):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            files += [
                (os.path.join(dirpath, n), os.path.relpath(os.path.join(dirpath, n), base))
                for n in sorted(filenames)
                if n.endswith(".py")
            ]
    digest = hashlib.sha256()
    for path, arc in files:
        digest.update(arc.encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    build = home.build_dir()
    os.makedirs(build, exist_ok=True)
    target = os.path.join(build, f"retrieval-{digest.hexdigest()[:12]}.zip")
    if not os.path.exists(target):
        tmp = f"{target}.tmp-{os.getpid()}"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for path, arc in files:
                z.write(path, arc)
        os.replace(tmp, target)
    return target


def spark_submit_binary() -> str:
    home = os.environ.get("SPARK_HOME")
    if home:
        return os.path.join(home, "bin", "spark-submit")
    here = os.path.join(os.path.dirname(sys.executable), "spark-submit")
    if os.path.exists(here):
        return here
    import pyspark  # a venv layered over another (the wheel's test) has no bin/spark-submit of its own

    shipped = os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit")
    return shipped if os.path.exists(shipped) else "spark-submit"


# spark-submit's own flags for settings it also takes as --conf: whatever spark_conf ends with (the
# typed field, or a spark.conf entry that overrides it) goes here.
FLAGS = {
    "spark.driver.memory": "--driver-memory",
    "spark.executor.memory": "--executor-memory",
    "spark.executor.cores": "--executor-cores",
    "spark.executor.instances": "--num-executors",
}


def command(job: str, job_args: Sequence[str], cfg: config.Config, config_file: str | None) -> list[str]:
    """The spark-submit command line for ``job`` under ``cfg``."""
    s = cfg.spark
    cmd = [
        spark_submit_binary(),
        "--master",
        s.master,
        "--deploy-mode",
        s.deploy_mode,
        "--name",
        f"{s.app_name}-{job}",
    ]
    conf = spark_conf(cfg, job)
    for key, flag in FLAGS.items():
        if key in conf:
            cmd += [flag, conf[key]]
    zip_path = build_zip()
    if not is_local_master(s.master) and not s.master.startswith("yarn"):
        # Training processes (torchrun, started by TorchDistributor in a task) import our code by
        # module name from PYTHONPATH; Spark puts the --py-files zip on its Python workers' sys.path
        # only (YARN also on PYTHONPATH). The zip lands in the executor's working directory.
        conf.setdefault("spark.executorEnv.PYTHONPATH", os.path.basename(zip_path))
    for key, value in conf.items():
        if key not in FLAGS and key != "spark.app.name":
            cmd += ["--conf", f"{key}={value}"]
    log4j = home.log4j_config()
    if s.deploy_mode == "client" and os.path.exists(log4j):
        cmd += ["--driver-java-options", f"-Dlog4j2.configurationFile={log4j}"]
    if s.python_env:
        # The executors unpack the archive into ./environment and run its Python (spark.pyspark.python
        # wins over PYSPARK_PYTHON); in client mode the driver runs here, on this venv's Python.
        cmd += ["--archives", f"{storage.absolute(s.python_env)}#{PYTHON_ENV_DIR}"]
        cmd += ["--conf", f"spark.pyspark.python=./{PYTHON_ENV_DIR}/bin/python"]
        driver_python = f"./{PYTHON_ENV_DIR}/bin/python" if s.deploy_mode == "cluster" else sys.executable
        cmd += ["--conf", f"spark.pyspark.driver.python={driver_python}"]
    cmd += ["--py-files", zip_path]
    args = list(job_args)
    if config_file and s.deploy_mode == "cluster":
        # In cluster mode the driver runs on a node: ship the config and name it by its base name there.
        cmd += ["--files", os.path.abspath(config_file)]
        args = _replace_config(args, config_file, os.path.basename(config_file))
    if s.deploy_mode == "cluster" and os.environ.get(runlock.GROUP_ENV):
        # the driver runs on a node, without this environment: its run group goes as an argument
        args += ["--run-group", os.environ[runlock.GROUP_ENV]]
    cmd += [os.path.join(home.jobs_dir(), f"{job}.py"), *args]
    return cmd


def _this_machine(master: str) -> bool:
    """A local master, or a standalone master on this machine (retrieval.standalone, the tests)."""
    return is_local_master(master) or master.startswith(("spark://127.0.0.1", "spark://localhost"))


def environment(cfg: config.Config) -> dict[str, str]:
    """Variables spark-submit needs beside the command line."""
    env: dict[str, str] = {}
    if cfg.spark.python_env:
        pass  # the shipped environment's Python: set by --conf spark.pyspark.python
    elif os.environ.get("PYSPARK_PYTHON"):
        env["PYSPARK_PYTHON"] = os.environ["PYSPARK_PYTHON"]
    elif _this_machine(cfg.spark.master):
        # Executors on this machine run this venv's Python. Elsewhere this path means nothing: the
        # nodes' Python comes from spark.python_env, the image, or the cluster's own settings.
        env["PYSPARK_PYTHON"] = sys.executable
    if _this_machine(cfg.spark.master):
        env["SPARK_LOCAL_IP"] = os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")
    scratch = local_dirs(cfg)
    if scratch:
        os.makedirs(scratch, exist_ok=True)
        env["SPARK_LOCAL_DIRS"] = os.environ.get("SPARK_LOCAL_DIRS", scratch)
    return env


def _config_args(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """The --config file and --set overrides among a job's arguments (the job parses them again)."""
    config_file, sets = None, []
    it = iter(range(len(args)))
    for i in it:
        a = args[i]
        if a == "--config" and i + 1 < len(args):
            config_file = args[i + 1]
            next(it, None)
        elif a.startswith("--config="):
            config_file = a.split("=", 1)[1]
        elif a == "--set" and i + 1 < len(args):
            sets.append(args[i + 1])
            next(it, None)
        elif a.startswith("--set="):
            sets.append(a.split("=", 1)[1])
    return config_file, sets


def _replace_config(args: Sequence[str], old: str, new: str) -> list[str]:
    """``args`` with the config file ``old`` (``--config old`` or ``--config=old``) named ``new``."""
    return [new if a == old else f"--config={new}" if a == f"--config={old}" else a for a in args]


def print_config(args: Sequence[str]) -> int:
    """``--print-config``: the config that ``args`` (--config, --set) resolve to, as YAML."""
    config_file, sets = _config_args(args)
    path = home.config_path(config_file) if config_file else home.default_config()
    try:
        cfg = config.load(path, sets)
    except config.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"# {path}" + "".join(f" --set {s}" for s in sets))
    print(config.to_yaml(cfg), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    dry_run = False
    while argv and argv[0] in ("--dry-run", "-n"):
        dry_run = True
        argv.pop(0)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE + job_lines())
        return 0 if argv else 2
    job, job_args = argv[0], argv[1:]
    jobs = list_jobs()
    if job not in jobs:
        print(f"error: unknown job {job!r}; jobs: {', '.join(jobs)}", file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in job_args):
        from retrieval.cli import parser, pipeline_arguments

        p = parser(job, job_doc(job))
        if job == "pipeline":
            pipeline_arguments(p)
        p.print_help()
        return 0
    if "--print-config" in job_args:
        return print_config([a for a in job_args if a != "--print-config"])
    config_file, sets = _config_args(job_args)
    if config_file is None:
        config_file = os.path.relpath(home.default_config())
        job_args = ["--config", config_file, *job_args]
    elif home.config_path(config_file) != config_file:  # conf/test.yaml from a wheel: the shipped one
        job_args = _replace_config(job_args, config_file, home.config_path(config_file))
        config_file = home.config_path(config_file)
    try:
        cfg = config.load(config_file, sets)
    except config.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if cfg.spark.deploy_mode == "cluster" and "://" not in cfg.paths.root:
        print(
            f"error: paths.root={cfg.paths.root} is a path on this machine; in cluster deploy mode the driver "
            "runs on a node: give a URI every node reaches (hdfs://, s3a://, gs://, or file:// on a "
            "shared mount)",
            file=sys.stderr,
        )
        return 2
    cmd = command(job, job_args, cfg, config_file)
    env = environment(cfg)
    if dry_run:
        print(" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(cmd))
        return 0
    os.execvpe(cmd[0], cmd, {**os.environ, **env})
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
