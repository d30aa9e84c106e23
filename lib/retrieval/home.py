"""Where the job modules, the default configs and the build outputs are: in a checkout, or in an
installed wheel (``pip install .``), with nothing found relative to the working directory.

- In a checkout (an editable install, or ``lib/`` on ``sys.path``): ``<repo>/jobs``, ``<repo>/conf`` and
  ``<repo>/build``, so an edit to ``conf/local.yaml`` is what the next run reads.
- From a wheel: the ``jobs`` package, the configs shipped as package data (``retrieval/defaults``, built
  from ``conf/``), and a cache directory for the ``--py-files`` zip (``RETRIEVAL_BUILD_DIR``, else
  ``$XDG_CACHE_HOME/retrieval-at-scale``).

Pure Python; imports neither Spark nor the jobs.
"""

from __future__ import annotations

import importlib.util
import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))  # .../retrieval
_CHECKOUT = os.path.dirname(os.path.dirname(PACKAGE_DIR))  # <repo> when this is lib/retrieval


def checkout() -> str | None:
    """The repository this package runs from, or None for an installed wheel."""
    marker = os.path.join(_CHECKOUT, "lib", "retrieval", "__init__.py")
    if os.path.exists(marker) and os.path.isdir(os.path.join(_CHECKOUT, "jobs")):
        return _CHECKOUT
    return None


def jobs_dir() -> str:
    """The directory of the ``jobs`` package (``jobs/<stage>.py``)."""
    repo = checkout()
    if repo is not None:
        return os.path.join(repo, "jobs")
    spec = importlib.util.find_spec("jobs")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'jobs' package is not installed beside 'retrieval' (pip install the wheel)")
    return os.path.abspath(next(iter(spec.submodule_search_locations)))


def conf_dir() -> str:
    """The default configs: ``<repo>/conf`` in a checkout, else the wheel's ``retrieval/defaults``."""
    repo = checkout()
    return os.path.join(repo, "conf") if repo is not None else os.path.join(PACKAGE_DIR, "defaults")


def default_config() -> str:
    """The embedded synthetic marketplace's config: what a run uses when no ``--config`` is given."""
    return os.path.join(conf_dir(), "local.yaml")


def config_path(name: str) -> str:
    """``name`` when it is a file; else, for ``conf/X.yaml``, ``X.yaml`` or ``X``, the shipped config of
    that name, so ``--config conf/test.yaml`` works from a checkout and from anywhere once the wheel is
    installed. Any other path is left as it is (the loader's error names it)."""
    if os.path.exists(name) or os.path.dirname(os.path.normpath(name)) not in ("", "conf"):
        return name
    base = os.path.basename(name)
    for candidate in (base, f"{base}.yaml"):
        shipped = os.path.join(conf_dir(), candidate)
        if os.path.exists(shipped):
            return shipped
    return name  # the loader's error names it


def log4j_config() -> str:
    """Spark's log4j2 settings (quieter than Spark's own)."""
    return os.path.join(conf_dir(), "log4j2.properties")


def build_dir() -> str:
    """Where the ``--py-files`` zip is built: ``<repo>/build``, else a per-user cache directory."""
    if os.environ.get("RETRIEVAL_BUILD_DIR"):
        return os.environ["RETRIEVAL_BUILD_DIR"]
    repo = checkout()
    if repo is not None:
        return os.path.join(repo, "build")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "retrieval-at-scale")
