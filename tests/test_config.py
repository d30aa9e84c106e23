from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from retrieval import config
from retrieval.config import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_defaults_round_trip_through_asdict() -> None:
    cfg = config.Config()
    assert config.from_dict(dataclasses.asdict(cfg)) == cfg


@pytest.mark.parametrize("name", ["local", "test", "cluster"])
def test_shipped_configs_load(name: str) -> None:
    cfg = config.load(str(REPO / "conf" / f"{name}.yaml"))
    assert cfg.paths.root


def test_set_overrides_are_typed() -> None:
    cfg = config.load(
        None, ["synth.sessions=123", "synth.zipf_a=2", "spark.conf={spark.foo: bar}", "paths.root=/x"]
    )
    assert cfg.synth.sessions == 123
    assert cfg.synth.zipf_a == 2.0 and isinstance(cfg.synth.zipf_a, float)
    assert cfg.spark.conf == {"spark.foo": "bar"}
    assert cfg.paths.root == "/x"


def test_unknown_key_in_override_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'synth\.sesions'"):
        config.load(None, ["synth.sesions=5"])


def test_unknown_section_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'synht'"):
        config.load(None, ["synht.sessions=5"])


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"'synth\.sessions' must be an integer; got 'many'"):
        config.load(None, ["synth.sessions=many"])
    with pytest.raises(ConfigError, match=r"'synth\.sessions' must be an integer; got 2\.5"):
        config.load(None, ["synth.sessions=2.5"])
    with pytest.raises(ConfigError, match=r"'synth\.zipf_a' must be a number; got True"):
        config.load(None, ["synth.zipf_a=true"])


def test_yaml_file_errors_name_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("synth:\n  products: 100\n  colour: blue\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown config key 'synth\.colour'"):
        config.load(str(bad))
    bad.write_text("ingest:\n  max_session_events: lots\n")
    with pytest.raises(ConfigError, match=r"'ingest\.max_session_events' must be an integer"):
        config.load(str(bad))
    bad.write_text("synth: 3\n")
    with pytest.raises(ConfigError, match=r"section 'synth' must be a mapping"):
        config.load(str(bad))


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match=r"config file not found: nope\.yaml"):
        config.load("nope.yaml")


def test_cross_field_checks() -> None:
    with pytest.raises(ConfigError, match="listing_min"):
        config.load(None, ["synth.listing_min=50", "synth.listing_max=40"])
    with pytest.raises(ConfigError, match="bad_row_rate"):
        config.load(None, ["synth.bad_row_rate=2"])


def test_override_needs_equals() -> None:
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        config.load(None, ["synth.sessions"])


def test_to_yaml_reloads(tmp_path: Path) -> None:
    cfg = config.load(None, ["synth.sessions=77", "spark.conf={a: b}"])
    p = tmp_path / "used.yaml"
    p.write_text(config.to_yaml(cfg))
    assert config.load(str(p)) == cfg


def test_set_adds_one_entry_to_a_mapping_with_dots_in_its_key() -> None:
    """--set spark.conf.spark.ui.port=4050: the rest of the key names one spark.* setting, added to the
    config's others (as text, the way spark-submit takes it); mappings of numbers keep numbers."""
    cfg = config.load(
        str(REPO / "conf" / "cluster.yaml"),
        ["spark.conf.spark.ui.port=4050", "spark.conf.spark.x.enabled=true"],
    )
    assert cfg.spark.conf["spark.ui.port"] == "4050" and cfg.spark.conf["spark.x.enabled"] == "true"
    assert cfg.spark.conf["spark.task.maxFailures"] == "4"  # from the file, kept
    assert config.load(None, ["pairs.event_weights.click=2"]).pairs.event_weights["click"] == 2.0
    with pytest.raises(config.ConfigError, match=r"unknown config key 'pairs\.nosuch'"):
        config.load(None, ["pairs.nosuch.x=2"])


def test_choices_are_checked_by_the_loader() -> None:
    with pytest.raises(ConfigError, match=r"'training\.feed' must be one of arrow, petastorm; got 'parquet'"):
        config.load(None, ["training.feed=parquet"])
    with pytest.raises(ConfigError, match=r"'ranker\.losses\[1\]\.name' must be one of ndcg_loss2pp"):
        config.load(None, ["ranker.losses=[ndcg_loss2pp, lambdamart]"])
    with pytest.raises(ConfigError, match=r"'visual\.variants\[0\]' must be one of shop_only"):
        config.load(None, ["visual.variants=[night]"])
    with pytest.raises(ConfigError, match=r"'synth\.zipf_a' must be a finite number"):
        config.load(None, ["synth.zipf_a=.nan"])


def test_a_loss_carries_its_arguments() -> None:
    cfg = config.load(None, ["ranker.losses=[{name: neural_ndcg, args: {k: 5}}, ranknet]"])
    assert [(s.name, s.args) for s in cfg.ranker.losses] == [("neural_ndcg", {"k": 5}), ("ranknet", {})]
    assert config.from_dict(dataclasses.asdict(cfg)).ranker.losses == cfg.ranker.losses


def test_a_stage_overrides_the_shared_training_runtime() -> None:
    cfg = config.load(
        None, ["training.num_processes=4", "training.threads=3", "visual.training.num_processes=2"]
    )
    assert config.runtime(cfg, "encoder").num_processes == 4
    visual = config.runtime(cfg, "visual")
    assert (visual.num_processes, visual.threads) == (
        2,
        2,
    )  # visual's own default threads win over training's
    with pytest.raises(ConfigError, match=r"unknown config key 'ranker\.training\.gpus'"):
        config.load(None, ["ranker.training.gpus=1"])
    with pytest.raises(ConfigError, match=r"'visual\.training\.num_processes' must be an integer"):
        config.load(None, ["visual.training.num_processes=two"])


@pytest.mark.parametrize(
    ("old", "new", "value"),
    [
        ("train.epochs=7", lambda c: c.encoder.epochs, 7),
        ("train.feed=petastorm", lambda c: c.training.feed, "petastorm"),
        ("train.progress_s=5", lambda c: c.progress_s, 5.0),
        ("ranker.num_processes=1", lambda c: c.ranker.training["num_processes"], 1),
        ("ranker.sinkhorn_iterations=9", lambda c: c.ranker.losses[1].args["sinkhorn_iterations"], 9),
        ("ranker.neural_ndcg_k=0", lambda c: c.ranker.losses[1].args["k"], None),
        ("visual.mining=semi_hard", lambda c: c.visual.loss.name, "semi_hard"),
        ("visual.margin=0.5", lambda c: c.visual.loss.args["margin"], 0.5),
        ("visual.num_processes=3", lambda c: c.visual.training["num_processes"], 3),
        ("ltr.results_dir=out", lambda c: c.paths.results, "out"),
    ],
)
def test_renamed_keys_still_work_with_a_warning(old: str, new: object, value: object) -> None:
    with pytest.warns(config.ConfigWarning, match=f"config key '{old.split('=')[0]}' is deprecated"):
        cfg = config.load(None, [old])
    assert new(cfg) == value  # type: ignore[operator]


def test_a_renamed_section_in_a_file_still_loads(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text("train:\n  batch_size: 64\n  num_processes: 1\n")
    with pytest.warns(config.ConfigWarning):
        cfg = config.load(str(old))
    assert (cfg.encoder.batch_size, cfg.training.num_processes) == (64, 1)
    old.write_text("train:\n  colour: blue\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.colour' \(its section moved"):
        config.load(str(old))


def test_unreadable_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("synth:\n  products: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+ not valid YAML"):
        config.load(str(bad))
    bad.write_bytes(b"synth:\n  products: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not UTF-8"):
        config.load(str(bad))


def test_what_stages_collect_must_fit_the_drivers_result_size() -> None:
    """Every bounded collect (and a broadcast join's build side) is checked against
    spark.driver.maxResultSize, naming the key that bounds it."""
    from retrieval.config.sections import driver_bytes, spark_bytes

    assert [spark_bytes(t) for t in ("4m", "1G", "512k", "2048", "4096kb", "10b", "-1")] == [
        4 * 2**20,
        2**30,
        512 * 2**10,
        2048,
        4 * 2**20,
        10,
        -1,
    ]
    for bad in ("lots", "1.5m", "", "m"):  # Spark takes whole numbers only
        with pytest.raises(ConfigError, match="not a size"):
            spark_bytes(bad)
    # no maxResultSize given: Spark's 1g, which the defaults fit
    assert max(driver_bytes(config.load(None, [])).values()) < 2**30
    with pytest.raises(ConfigError, match=r"spark\.sql\.autoBroadcastJoinThreshold"):
        config.load(None, ["spark.conf.spark.driver.maxResultSize=4m"])
    with pytest.raises(ConfigError, match=r"listings\.propensity_max_rows"):
        config.load(
            None,
            [
                "spark.conf.spark.driver.maxResultSize=4m",
                "spark.conf.spark.sql.autoBroadcastJoinThreshold=2m",
                "listings.propensity_max_rows=1000000",
            ],
        )
    small = config.load(
        None,
        [
            "spark.conf.spark.driver.maxResultSize=4m",
            "spark.conf.spark.sql.autoBroadcastJoinThreshold=2m",
            "listings.propensity_max_rows=20000",
            "encoder.eval_queries=200",
            "index.train_size=1000",
            "index.eval_queries=100",
            "recs.eval_queries=200",
        ],
    )
    assert max(driver_bytes(small).values()) < 4 * 2**20
