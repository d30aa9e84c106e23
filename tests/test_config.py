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
