"""The plan of the house, checked from the code itself: which package may import which, how thin a job
is, the stage registry against the jobs and the table contracts, and each name-chosen component's
registry against the config's choices. Read from the source (AST), no Spark."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from conftest import REPO
from retrieval import stages, tables
from retrieval.config import sections

LIB = REPO / "lib" / "retrieval"
JOBS = REPO / "jobs"
MAX_JOB_LINES = 85  # "about 80" (STYLE.md says about 40; the docstring with its commands is half of it)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every import in a file, at any depth: (module, names imported from it)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
    return out


def sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("package", ["ranking", "visual"])
def test_ranking_and_visual_take_only_the_text_features_from_the_encoder(package: str) -> None:
    allowed = {("retrieval.encoder.features", None), ("retrieval.encoder.model", "text_vectors")}
    found = []
    for path in sources(LIB / package):
        for module, names in imports(path):
            if module == "retrieval.encoder" or module.startswith("retrieval.encoder."):
                bad = [
                    n for n in names or ["*"] if (module, None) not in allowed and (module, n) not in allowed
                ]
                found += [f"{path.relative_to(REPO)}: {module}.{n}" for n in bad]
    assert found == [], "the shared training code is retrieval.training; the encoder keeps its model"


def test_no_job_imports_another_job() -> None:
    found = [
        f"{path.name}: {module}"
        for path in sources(JOBS)
        for module, _ in imports(path)
        if module == "jobs" or module.startswith("jobs.")
    ]
    assert found == []


def test_jobs_are_thin() -> None:
    """A job reads, calls the library, writes and reports (STYLE.md); the logic lives in lib/."""
    long = {
        p.name: n
        for p in sources(JOBS)
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_JOB_LINES
    }
    assert long == {}, f"jobs over {MAX_JOB_LINES} lines: move their logic into lib/retrieval"


def test_only_spark_modules_import_pyspark() -> None:
    """Pure modules run without a JVM: only retrieval/spark.py and */spark_*.py import pyspark (plus
    the command-line layer that starts Spark)."""
    allowed = {"spark.py", "cli.py", "submit.py", "standalone.py"}
    found = [
        str(path.relative_to(LIB))
        for path in sources(LIB)
        if any(m == "pyspark" or m.startswith("pyspark.") for m, _ in imports(path))
        and not path.name.startswith("spark_")
        and path.name not in allowed
    ]
    assert found == []


def test_every_stage_is_a_job_and_every_job_a_stage() -> None:
    jobs = {p.stem for p in sources(JOBS) if "job_main(" in p.read_text(encoding="utf-8")}
    assert jobs == set(stages.BY_NAME), "jobs/*.py with job_main and the registry's stages must match"
    for stage in stages.STAGES:
        assert callable(stage.run_function()), stage.name


def test_the_registry_writes_what_the_table_contracts_say_their_producers_write() -> None:
    writers = {out: s.name for s in stages.STAGES for out in s.writes}
    for name, contract in tables.CONTRACTS.items():
        if contract.producer.startswith("generate (or"):
            continue  # raw inputs: a data importer may write them instead
        assert name in writers, f"no stage writes {name}"
        assert contract.producer.split(" ")[0] == writers[name], name
    names = (
        set(tables.CONTRACTS)
        | set(stages.ARTIFACTS)
        | {"encoder/offer_features", "encoder/train_examples", "encoder/uniform_pool"}
    )
    for stage in stages.STAGES:
        unknown = set(stage.reads + stage.writes + stage.optional_reads) - names
        assert not unknown, f"{stage.name} names {unknown}: neither a table contract nor an artifact"


def test_pipeline_order_respects_the_dependencies() -> None:
    order = [s.name for s in stages.pipeline_stages()]
    for stage, deps in stages.dependencies().items():
        assert all(order.index(d) < order.index(stage) for d in deps), stage
    assert stages.dependencies()["evaluate"] == [
        "precompute_recs",
        "train_ranker",
        "embed_images",
        "evaluate_visual",
    ]
    assert stages.dependencies()["train_ranker"] == ["mine_listings", "train_encoder"]


def test_pipeline_from_and_only_select_stages() -> None:
    assert [s.name for s in stages.select(start="train_ranker")][:2] == ["train_ranker", "visual_pairs"]
    assert [s.name for s in stages.select(only="evaluate,ingest")] == ["ingest", "evaluate"]
    with pytest.raises(ValueError, match="not a pipeline stage"):
        stages.select(start="eval_ltr")
    with pytest.raises(ValueError, match=r"unknown \['nope'\]"):
        stages.select(only="ingest,nope")


def test_config_choices_are_the_registries_of_the_components() -> None:
    from retrieval.ranking.losses import LOSSES as RANKING
    from retrieval.training.feed import FEEDS
    from retrieval.visual.losses import LOSSES as TRIPLET
    from retrieval.visual.train import VARIANTS

    assert tuple(RANKING) == typing.get_args(sections.RankingLoss)
    assert tuple(TRIPLET) == typing.get_args(sections.TripletMining)
    assert tuple(VARIANTS) == typing.get_args(sections.VisualVariant)
    assert tuple(FEEDS) == typing.get_args(sections.Feed)


def test_loss_modules_have_one_layout() -> None:
    """One module per loss in every losses package, each function registered under its own name."""
    from retrieval.ranking import losses as ranking_losses
    from retrieval.visual import losses as visual_losses

    for package in (ranking_losses, visual_losses):
        folder = Path(package.__file__).parent
        modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "common"}
        assert {fn.__module__.rsplit(".", 1)[-1] for fn in package.LOSSES.values()} == modules
        assert all(fn.__name__ == name for name, fn in package.LOSSES.items())
