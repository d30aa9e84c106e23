"""Session queries: examples, pooling, the id-only tower, and the eval_sessions job end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.conftest import make_config

from retrieval.encoder.features import Vocab
from retrieval.encoder.losses import sampled_softmax
from retrieval.encoder.model import OfferTower, SessionPool, TowerConfig, pool_sessions
from retrieval.encoder.sessions import histories, id_features, log_q_mixed, session_examples


def test_every_prefix_becomes_an_example_right_aligned() -> None:
    ex = session_examples([[5, 6, 7, 8], [9], [1, 2]], max_len=2)
    assert ex.target.tolist() == [6, 7, 8, 2]
    assert ex.history.tolist() == [[0, 5], [5, 6], [6, 7], [0, 1]]
    assert ex.lengths.tolist() == [1, 2, 2, 1]
    h, lengths = histories([[1, 2, 3], [4]], max_len=4)
    assert h.tolist() == [[0, 1, 2, 3], [0, 0, 0, 4]] and lengths.tolist() == [3, 1]


def test_session_pool_starts_as_the_recency_decay_and_ignores_padding() -> None:
    cfg = TowerConfig(session_len=4, session_decay=0.5)
    items = torch.nn.functional.normalize(torch.randn(3, 4, 8), dim=2)
    lengths = torch.tensor([4, 2, 1])
    got = SessionPool(cfg)(items, lengths)
    assert torch.allclose(got, pool_sessions(items, lengths, 0.5), atol=1e-6)
    padded = items.clone()
    padded[1, :2] = 100.0  # padding positions of the 2-item session: must not count
    assert torch.allclose(SessionPool(cfg)(padded, lengths)[1], got[1], atol=1e-6)
    assert torch.allclose(got[2], items[2, -1], atol=1e-6)  # one item: the session is that item


def test_id_only_tower_embeds_ids_and_refuses_to_drop_them() -> None:
    cfg = TowerConfig(dim=8, embed_dim=8, content=False, id_dropout=0.0, vocab=Vocab(ids=50))
    tower = OfferTower(cfg).eval()
    out = tower(id_features()(np.array([1, 2, 1])))
    assert out.shape == (3, 8) and torch.allclose(out[0], out[2])
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    assert not hasattr(tower, "words")  # no content tables in id-only mode
    with pytest.raises(ValueError, match="id-only"):
        OfferTower(TowerConfig(content=False, use_id=False))


def test_mixed_log_q_is_the_expected_count_among_negatives() -> None:
    counts = np.array([0.0, 3.0, 1.0, 0.0])  # items 1..3, item 3 never a target
    lq = log_q_mixed(counts, batch_size=4, uniform=6, n_items=3)
    assert np.allclose(np.exp(lq[1:]), [4 * 0.75 + 2, 4 * 0.25 + 2, 2], atol=1e-5)
    # a uniform draw equal to a row's positive is an accidental hit: masked for that row only
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(2, 4), dim=1)
    c = torch.nn.functional.normalize(torch.randn(2, 4), dim=1)
    ids, zeros = torch.tensor([1, 2]), torch.zeros(2)
    plain = sampled_softmax(q, c, ids, zeros, 0.1, reduction="none")
    mixed = sampled_softmax(
        q, c, ids, zeros, 0.1, extra=c[:1].clone(), extra_ids=ids[:1], extra_log_q=zeros[:1], reduction="none"
    )
    assert torch.allclose(mixed[0], plain[0]) and mixed[1] > plain[1]


def _walk_sessions(n_items: int, sessions: int, rng: np.random.Generator) -> list[list[int]]:
    """Sessions that walk a ring of items by small steps: the next item is predictable from the last."""
    out = []
    for _ in range(sessions):
        cur = int(rng.integers(1, n_items + 1))
        s = [cur]
        for _ in range(int(rng.integers(2, 8))):
            cur = (cur - 1 + int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))) % n_items + 1
            s.append(cur)
        out.append(s)
    return out


@pytest.mark.spark
def test_eval_sessions_imports_trains_and_beats_popularity(spark: Any, tmp_path: Path) -> None:
    from jobs import eval_sessions
    from retrieval import tables
    from retrieval.cli import run_stage
    from retrieval.sessions.spark_import import read_sessions
    from retrieval.spark_tables import read_table

    rng = np.random.default_rng(3)
    folder = tmp_path / "walk"
    folder.mkdir()
    train = _walk_sessions(150, 1500, rng)
    test = _walk_sessions(150, 200, rng)
    (folder / "train_sessions.txt").write_text(
        "\n".join(" ".join(map(str, s)) for s in train) + "\n7 x 9\n"  # one bad line
    )
    rows = [f"{' '.join(map(str, s[:t]))}\t{s[t]}" for s in test for t in range(1, len(s))]
    (folder / "test_prefix_label.tsv").write_text("prefix\tlabel\n" + "\n".join([*rows, "\t5"]) + "\n")
    results = tmp_path / "results"
    cfg = make_config(
        tmp_path / "root",
        f"sessions.dir={folder}",
        "sessions.name=walk",
        f"paths.results={results}",
        "sessions.epochs=4",
        "sessions.batch_size=128",
        "sessions.dim=16",
        "sessions.lr=0.01",
    )
    out = run_stage(spark, cfg, "eval_sessions", eval_sessions.run)

    # The import: every good line, in order, equals what the plain loader reads; bad lines quarantined.
    root = str(tmp_path / "root" / "sessions" / "walk")
    back = read_sessions(spark, root)
    assert [back.item_ids[np.asarray(s) - 1].tolist() for s in back.train] == train
    assert back.item_ids[back.labels - 1].tolist() == [s[t] for s in test for t in range(1, len(s))]
    quarantined = read_table(spark, root, tables.quarantine("events")).collect()
    assert sorted(r["reason"] for r in quarantined) == ["bad_session_line", "bad_session_line"]
    assert out["dataset"]["quarantined_lines"] == 2 and out["dataset"]["test_examples"] == len(rows)

    written = json.loads((results / "walk.json").read_text())
    m = written["methods"]
    assert set(m) >= {"encoder_session", "encoder_last_item", "pop", "s_pop", "item_knn"}
    assert written["published"] == {"source": None, "methods": {}}
    # The walk is predictable from the last item: both encoder queries must beat popularity by far.
    assert m["encoder_session"]["p_at_20"] > m["pop"]["p_at_20"] + 30, m
    assert m["encoder_last_item"]["p_at_20"] > m["pop"]["p_at_20"] + 30, m
