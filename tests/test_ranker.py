"""The ranker's pure parts: slate metrics against brute force, slates in and out of Arrow, the DNN."""

from __future__ import annotations

import math
import typing

import numpy as np
import pyarrow as pa
import pytest
import torch

from retrieval.config.sections import RankingLoss
from retrieval.ranking import evaluation
from retrieval.ranking.dnn import Reranker, RerankerConfig, feature_stats, score, slate_batch
from retrieval.ranking.losses import LOSSES


def brute_ndcg(scores: list[float], labels: list[int], k: int) -> float:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))  # ties: input order
    dcg = sum((2 ** labels[i] - 1) / math.log2(r + 2) for r, i in enumerate(order[:k]))
    ideal = sorted(labels, reverse=True)
    idcg = sum((2**g - 1) / math.log2(r + 2) for r, g in enumerate(ideal[:k]))
    return dcg / idcg if idcg else float("nan")


def test_ndcg_and_mrr_against_brute_force() -> None:
    rng = np.random.default_rng(3)
    slates = [(rng.normal(size=n).round(1).tolist(), rng.integers(0, 4, n).tolist()) for n in (1, 4, 7, 12)]
    slates.append(([0.5, 0.1, 0.3], [0, 0, 0]))  # nothing relevant: left out (NaN)
    width = max(len(s) for s, _ in slates)
    s = np.full((len(slates), width), -np.inf)
    y = np.full((len(slates), width), -1)
    for i, (sc, lab) in enumerate(slates):
        s[i, : len(sc)], y[i, : len(lab)] = sc, lab
    for k in (1, 3, 10):
        got = evaluation.ndcg(s, y, k)
        for i, (sc, lab) in enumerate(slates):
            want = brute_ndcg(sc, lab, k)
            assert (math.isnan(want) and math.isnan(got[i])) or got[i] == pytest.approx(want)
    rr = evaluation.reciprocal_rank(np.array([[0.1, 0.9, 0.5]]), np.array([[1, 0, 3]]), relevant=3)
    assert rr[0] == pytest.approx(1 / 2)
    assert math.isnan(evaluation.reciprocal_rank(np.array([[1.0]]), np.array([[0]]))[0])
    assert evaluation.mean(np.array([1.0, np.nan, 0.0])) == 0.5


def test_ties_keep_the_logged_order() -> None:
    """A constant scorer is the production order: ties never reorder a slate."""
    y = np.array([[0, 3, 1, -1]])
    assert evaluation.ndcg(np.zeros((1, 4)), y, 3)[0] == pytest.approx(brute_ndcg([0, 0, 0], [0, 3, 1], 3))


def test_pad_groups_and_bootstrap() -> None:
    out = evaluation.pad_groups(np.array([1, 2, 3, 4, 5, 6]), np.array([2, 3, 1]))
    np.testing.assert_array_equal(out, [[1, 2, -1], [3, 4, 5], [6, -1, -1]])
    lo, hi = evaluation.bootstrap_interval(np.array([0.2, 0.4, 0.6, 0.8, np.nan]), np.random.default_rng(0))
    assert 0.2 < lo < 0.5 < hi < 0.8


def test_loss_names_match_the_config() -> None:
    assert tuple(LOSSES) == typing.get_args(RankingLoss)


def slate_table(rng: np.random.Generator, sizes: list[int], n_feat: int, dim: int) -> pa.Table:
    rows = []
    for n in sizes:
        rows.append(
            {
                "n": n,
                "label": rng.integers(0, 3, n).tolist(),
                "x": rng.normal(size=n * n_feat).astype(np.float32).tolist(),
                "q_vec": rng.normal(size=dim).astype(np.float32).tolist(),
                "t_vec": rng.normal(size=n * dim).astype(np.float32).tolist(),
            }
        )
    return pa.Table.from_pylist(rows)


def test_slate_batch_pads_and_honours_slices() -> None:
    rng = np.random.default_rng(0)
    table = slate_table(rng, [3, 1, 4], n_feat=2, dim=5)
    b = slate_batch(table.slice(1, 2), 2, 5)  # a slice: offsets do not start at 0
    assert b.x.shape == (2, 4, 2) and b.t.shape == (2, 4, 5) and b.q.shape == (2, 5)
    np.testing.assert_array_equal(b.y[0], [table["label"][1].as_py()[0], -1, -1, -1])
    np.testing.assert_allclose(b.x[1].ravel(), table["x"][2].as_py(), rtol=1e-6)
    np.testing.assert_allclose(b.t[0, 0], table["t_vec"][1].as_py(), rtol=1e-6)
    assert not b.x[0, 1:].any()  # padding stays zero
    with pytest.raises(ValueError, match="x holds"):
        slate_batch(table, 3, 5)


@pytest.mark.parametrize("kind", ["mlp", "attention"])
def test_reranker_ignores_padding_and_learns_a_listwise_loss(kind: str) -> None:
    """Scores of real offers do not depend on the padding; a few steps of NDCGLoss2++ on slates
    where feature 0 is the label reach a higher nDCG than the untrained model."""
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    table = slate_table(rng, [6, 9, 4, 12] * 8, n_feat=3, dim=4)
    b = slate_batch(table, 3, 4)
    b.x[..., 0] = np.where(b.y >= 0, b.y, 0)  # a feature that reveals the label
    cfg = RerankerConfig(features=["a", "b", "c"], text_dim=4, kind=kind, hidden=16, dropout=0.0)
    mean, std = feature_stats(b.x, b.y)
    model = Reranker(cfg, mean, std)
    short = slate_batch(table.slice(0, 1), 3, 4)
    short.x[..., 0] = np.where(short.y >= 0, short.y, 0)
    s_alone = score(model, short)[0, :6]
    np.testing.assert_allclose(s_alone, score(model, b)[0, :6], rtol=1e-5, atol=1e-6)
    before = np.nanmean(evaluation.ndcg(score(model, b), b.y, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, q, t, y = (torch.as_tensor(a) for a in (b.x, b.q, b.t, b.y))
    for _ in range(60):
        model.train()
        loss = LOSSES["ndcg_loss2pp"](model(x, q, t, y != -1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = np.nanmean(evaluation.ndcg(score(model, b), b.y, 3))
    assert after > max(before, 0.95)


def test_rerank_top_reorders_the_head_only() -> None:
    from retrieval.ranking.spark_ranker import rerank_top

    final = np.array(rerank_top(np.array([0.1, 0.9, 0.5, 7.0, -3.0]), k=3))
    # the first 3 by the DNN (1, 2, 0), then offers 3 and 4 as the first stage had them
    assert np.argsort(-final, kind="stable").tolist() == [1, 2, 0, 3, 4]
    assert np.argsort(-np.array(rerank_top(np.array([2.0, 1.0]), k=300))).tolist() == [0, 1]


def test_feed_buckets_slates_of_similar_length() -> None:
    from retrieval.training.feed import _rebatch

    sizes = np.random.default_rng(0).integers(1, 300, 256)
    table = pa.table({"n": sizes})
    rng = np.random.default_rng(1)
    batches = list(
        _rebatch(
            iter([table]),
            32,
            8,
            rng,
            1000,
            to_batch=lambda t: t["n"].to_numpy(),
            bucket=lambda t: t["n"].to_numpy(),
        )
    )
    assert len(batches) == 8 and sorted(np.concatenate(batches).tolist()) == sorted(sizes.tolist())
    spread = np.mean([b.max() - b.min() for b in batches])
    assert spread < 60  # unbucketed batches of 32 span nearly the whole 1..300 range
    assert [b.min() for b in batches] != sorted(b.min() for b in batches)  # batch order is shuffled
