"""The installable package: the wheel's contents, the ``retrieval`` command, ``--print-config``, each
job's ``--help`` listing the config keys it reads, and ``retrieval.run`` from Python."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO, TEST_CONFIG


def jobs() -> list[str]:
    return sorted(p.stem for p in (REPO / "jobs").glob("*.py") if not p.stem.startswith("_"))


def test_every_package_of_the_library_is_in_the_wheels_list() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(p.parent.relative_to(REPO / "lib").parts)
        for p in (REPO / "lib" / "retrieval").rglob("__init__.py")
    }
    assert on_disk - listed == set()
    assert {"jobs", "retrieval.defaults"} <= listed


@pytest.mark.parametrize("job", jobs())
def test_a_jobs_help_lists_the_config_keys_it_reads(job: str) -> None:
    """Every section the job module reads (``cfg.<section>``) is declared in the stage registry, so its
    --help lists those keys with their defaults."""
    from retrieval import stages
    from retrieval.config import Config, keys
    from retrieval.submit import main

    fields = set(Config.__dataclass_fields__)
    read = set(re.findall(r"\bcfg\.([a-z_]+)", (REPO / "jobs" / f"{job}.py").read_text())) & fields
    declared = set(stages.job_config(job))
    assert read - declared - set(keys.COMMON) == set(), f"declare them in stages.py's config of {job}"
    text = "\n".join(keys.describe(sorted(declared)))
    for name in declared:
        assert re.search(rf"^  {name}[ .]", text, re.M), name
    assert main([job, "--help"]) == 0


def test_help_shows_keys_defaults_and_meanings(capsys: pytest.CaptureFixture[str]) -> None:
    from retrieval.submit import main

    assert main(["mine_pairs", "--help"]) == 0
    out = capsys.readouterr().out
    assert "  pairs.window = 5  an interaction pairs with the next `window` interactions" in out
    assert "split.test_days = 3" in out and not re.search(r"^  synth\.", out, re.M)
    assert main(["train_encoder", "--help"]) == 0
    out = capsys.readouterr().out
    # a field documented by the comment block above it, not beside it
    assert re.search(r"encoder\.negatives = mixed  negatives beside the batch's own candidates", out)


def test_print_config_is_the_resolved_config(capsys: pytest.CaptureFixture[str]) -> None:
    from retrieval import config
    from retrieval.main import main

    assert main(["--print-config", "--config", "test", "--set", "pairs.window=8"]) == 0
    out = capsys.readouterr().out
    first, _, body = out.partition("\n")
    assert first.endswith("test.yaml --set pairs.window=8")
    printed = yaml.safe_load(body)
    want = config.load(TEST_CONFIG, ["pairs.window=8"])
    assert printed == yaml.safe_load(config.to_yaml(want)) and printed["pairs"]["window"] == 8
    assert main(["--print-config", "--set", "pairs.window=0"]) == 2  # a bad value: the loader's error
    assert "pairs.window" in capsys.readouterr().err


def test_the_console_command_and_submit_sh_agree() -> None:
    console = Path(sys.executable).parent / "retrieval"
    assert console.exists(), "the venv's install of the project made no `retrieval` command"
    ours = subprocess.run([str(console), "--help"], capture_output=True, text=True, check=True).stdout
    assert "retrieval <command>" in ours and "--print-config" in ours
    for job in jobs():
        assert re.search(rf"^  {job} ", ours, re.M), job
    version = subprocess.run([str(console), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.strip() == "retrieval-at-scale 0.1.0"
    text = (REPO / "submit.sh").read_text()
    assert 'exec "$venv/bin/retrieval" submit "$@"' in text


def test_run_from_python_takes_overrides_and_names_bad_ones(tmp_path: Path) -> None:
    from retrieval import config
    from retrieval.runner import resolve_config

    cfg = resolve_config(
        "test", {"paths.root": str(tmp_path), "pairs.window": 3, "pairs.event_weights": {"view": 2}}
    )
    assert (cfg.pairs.window, cfg.pairs.event_weights, cfg.paths.root) == (3, {"view": 2}, str(tmp_path))
    again = resolve_config(cfg, ["pairs.window=4"])
    assert again.pairs.window == 4 and cfg.pairs.window == 3  # a copy: the given Config is not changed
    with pytest.raises(config.ConfigError, match=r"pairs\.window"):
        resolve_config("test", {"pairs.window": -1})
    with pytest.raises(TypeError, match="a mapping"):
        resolve_config("test", "pairs.window=4")


@pytest.mark.spark
def test_run_from_a_notebook(spark: Any, tmp_path: Path) -> None:
    """``from retrieval import run`` on a live session: a pipeline slice, then one stage again with an
    override; each writes its metrics and the config it used, as ``retrieval submit`` would."""
    from retrieval import run

    small = {"paths.root": str(tmp_path)}
    results = run("pipeline", spark=spark, config="test", overrides=small, only="generate,ingest,mine_pairs")
    assert [r["rows_out"] > 0 for r in results] == [True, True, True]
    again = run("mine_pairs", spark=spark, config="conf/test.yaml", overrides={**small, "pairs.window": 2})
    assert again["pairs"] > 0
    used = yaml.safe_load((tmp_path / "_metrics" / "mine_pairs.config.yaml").read_text())
    assert used["pairs"]["window"] == 2
    with pytest.raises(ValueError, match="unknown stage 'mine'"):
        run("mine", spark=spark, config="test", overrides=small)


@pytest.mark.spark
@pytest.mark.slow
def test_the_wheel_holds_the_package_the_jobs_and_the_configs(
    installed: dict[str, Any], tmp_path: Path
) -> None:
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    for want in (
        "retrieval/__init__.py",
        "retrieval/main.py",
        "jobs/pipeline.py",
        "retrieval/defaults/local.yaml",
    ):
        assert want in names, want
    assert "retrieval/defaults/log4j2.properties" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "retrieval = retrieval.main:main" in zipfile.ZipFile(installed["wheel"]).read(entry).decode()
    run = dict(cwd=tmp_path, capture_output=True, text=True, env=installed["env"])
    where = subprocess.run(
        [str(installed["python"]), "-c", "import retrieval, jobs; print(retrieval.__file__, jobs.__file__)"],
        **run,
    )  # type: ignore[call-overload]
    assert str(REPO) not in where.stdout and "site-packages" in where.stdout
    shown = subprocess.run(
        [str(installed["retrieval"]), "--print-config", "--config", "conf/test.yaml"], **run
    )  # type: ignore[call-overload]
    assert shown.returncode == 0 and "retrieval/defaults/test.yaml" in shown.stdout.splitlines()[0]
