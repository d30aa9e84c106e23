"""Ranking losses against brute-force definitions, padded slates and all-zero lists included."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from retrieval.ranking.losses import (
    LOSSES,
    listnet,
    ndcg_loss2pp,
    neural_ndcg,
    neural_sort,
    ranknet,
    sinkhorn,
)


def slates() -> tuple[torch.Tensor, torch.Tensor]:
    y_pred = torch.tensor([[0.3, 2.0, -1.0, 0.5, 0.0], [1.0, -0.5, 0.2, 9.0, 9.0], [0.1, 0.4, 0.2, 9.0, 9.0]])
    y_true = torch.tensor(
        [[2, 0, 3, 1, 0], [0, 1, 2, -1, -1], [0, 0, 0, -1, -1]]
    )  # padding, an all-zero list
    return y_pred, y_true


def brute_ndcg_loss2pp(y_pred: np.ndarray, y_true: np.ndarray, mu: float = 10.0) -> float:
    total = 0.0
    for s, y in zip(y_pred, y_true, strict=True):
        real = [i for i in range(len(y)) if y[i] != -1]
        order = sorted(real, key=lambda i: -s[i])  # positions 1.. by predicted score
        rank = {item: p + 1 for p, item in enumerate(order)}
        ideal = sorted((y[i] for i in real), reverse=True)
        idcg = sum((2**g - 1) / math.log2(1 + p) for p, g in enumerate(ideal, 1))
        if idcg == 0:
            continue

        def D(n: int) -> float:
            return math.log2(1 + n)

        for i, j in itertools.permutations(real, 2):
            if y[i] <= y[j]:
                continue
            gi, gj = (2 ** y[i] - 1) / idcg, (2 ** y[j] - 1) / idcg
            ri, rj = rank[i], rank[j]
            gap = abs(ri - rj)
            delta = abs(1 / D(gap) - 1 / D(gap + 1))
            lam = abs(1 / D(ri) - 1 / D(rj))
            w = abs(gi - gj) * (mu * delta + lam)
            total += -w * math.log2(1 / (1 + math.exp(-(s[i] - s[j]))))
    return total


def brute_ndcg(scores: np.ndarray, labels: np.ndarray, k: int | None = None) -> float:
    real = [i for i in range(len(labels)) if labels[i] != -1]
    order = sorted(real, key=lambda i: -scores[i])[:k]
    ideal = sorted((labels[i] for i in real), reverse=True)[:k]
    dcg = sum((2 ** labels[i] - 1) / math.log2(p + 1) for p, i in enumerate(order, 1))
    idcg = sum((2**g - 1) / math.log2(p + 1) for p, g in enumerate(ideal, 1))
    return dcg / idcg if idcg > 0 else float("nan")


def test_ndcg_loss2pp_matches_brute_force() -> None:
    y_pred, y_true = slates()
    got = float(ndcg_loss2pp(y_pred, y_true))
    assert got == pytest.approx(brute_ndcg_loss2pp(y_pred.numpy(), y_true.numpy()), rel=1e-5)
    # padded entries' scores do not matter; an all-zero slate adds nothing
    y_pred2 = y_pred.clone()
    y_pred2[1, 3:] = -7.0
    y_pred2[2] = torch.tensor([5.0, -5.0, 0.0, 1.0, 1.0])
    assert float(ndcg_loss2pp(y_pred2, y_true)) == pytest.approx(got, rel=1e-6)


def test_neural_sort_and_sinkhorn_approach_the_hard_sort() -> None:
    y_pred, y_true = slates()
    valid = y_true != -1
    p = neural_sort(y_pred, valid, temperature=1e-3)
    hard = torch.zeros_like(p)
    for b in range(len(y_pred)):
        real = [i for i in range(5) if valid[b, i]]
        for r, item in enumerate(sorted(real, key=lambda i: -float(y_pred[b, i]))):
            hard[b, r, item] = 1.0
    assert torch.allclose(p, hard, atol=1e-4)
    ds = sinkhorn(neural_sort(y_pred, valid, temperature=2.0), valid)
    assert torch.allclose(ds.sum(dim=2), valid.float(), atol=1e-4)  # rows of real places sum to 1
    assert torch.allclose(ds.sum(dim=1), valid.float(), atol=1e-4)  # columns of real items sum to 1


def test_neural_ndcg_at_low_temperature_is_ndcg() -> None:
    y_pred, y_true = slates()
    want = np.nanmean([brute_ndcg(s, y) for s, y in zip(y_pred.numpy(), y_true.numpy(), strict=True)])
    assert float(neural_ndcg(y_pred, y_true, temperature=1e-3)) == pytest.approx(-want, abs=1e-4)
    want3 = np.nanmean([brute_ndcg(s, y, 3) for s, y in zip(y_pred.numpy(), y_true.numpy(), strict=True)])
    assert float(neural_ndcg(y_pred, y_true, temperature=1e-3, k=3)) == pytest.approx(-want3, abs=1e-4)
    assert float(neural_ndcg(y_pred[2:], y_true[2:])) == 0.0  # only an all-zero slate: nothing to rank


def test_listnet_and_ranknet_match_their_definitions() -> None:
    y_pred, y_true = slates()
    want_ln, want_rn, pairs = [], 0.0, 0
    for s, y in zip(y_pred.numpy(), y_true.numpy(), strict=True):
        real = [i for i in range(len(y)) if y[i] != -1]
        t = np.exp([y[i] for i in real]) / np.exp([y[i] for i in real]).sum()
        logp = np.array([s[i] for i in real]) - np.log(np.exp([s[i] for i in real]).sum())
        want_ln.append(-(t * logp).sum())
        for i, j in itertools.permutations(real, 2):
            if y[i] > y[j]:
                want_rn += math.log(1 + math.exp(-(s[i] - s[j])))
                pairs += 1
    assert float(listnet(y_pred, y_true)) == pytest.approx(np.mean(want_ln), rel=1e-5)
    assert float(ranknet(y_pred, y_true)) == pytest.approx(want_rn / pairs, rel=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_learns_to_rank_a_toy_problem(name: str) -> None:
    """Scores from a linear model of features that determine the label: training must raise NDCG@5."""
    torch.manual_seed(0)
    x = torch.randn(64, 8, 6)  # 64 slates of 8 items, 6 features
    w_true = torch.randn(6)
    y = (x @ w_true).argsort(dim=1).argsort(dim=1).div(2, rounding_mode="floor").clamp(max=3)  # grades 0..3
    y[:, -2:] = -1  # padded tail
    model = torch.nn.Linear(6, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)

    def ndcg() -> float:
        s = model(x).squeeze(-1).detach().numpy()
        return float(np.nanmean([brute_ndcg(a, b, 5) for a, b in zip(s, y.numpy(), strict=True)]))

    before = ndcg()
    for _ in range(60):
        opt.zero_grad()
        loss = LOSSES[name](model(x).squeeze(-1), y)
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
    assert ndcg() > before + 0.1 and ndcg() > 0.9, (name, before, ndcg())
