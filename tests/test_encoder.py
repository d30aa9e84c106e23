"""The encoder's pure parts: features, the tower, session pooling, and the sampled-softmax loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from retrieval.encoder.features import (
    Vocab,
    char_ngrams,
    collate,
    offer_row_features,
    price_bucket,
    stable_hash,
)
from retrieval.encoder.losses import sampled_softmax
from retrieval.encoder.model import OfferTower, TowerConfig, pool_sessions, to_tensors
from retrieval.training.models import load_model, save_model, saved_config

SMALL = Vocab(words=1024, chars=2048, categories=64, prices=32, sellers=128, ids=4096)


def brute_force_loss(q, c, ids, log_q, t, qids=None, extra=None, extra_ids=None, extra_lq=None):  # type: ignore[no-untyped-def]
    """The definition, one logit at a time."""
    cands = list(c) + (list(extra) if extra is not None else [])
    all_ids = list(ids) + (list(extra_ids) if extra is not None else [])
    all_lq = list(log_q) + (list(extra_lq) if extra is not None else [])
    total = 0.0
    for i in range(len(q)):
        logits = []
        for j, cj in enumerate(cands):
            accidental = j != i and (all_ids[j] == ids[i] or (qids is not None and all_ids[j] == qids[i]))
            if not accidental:
                logits.append((j == i, float(np.dot(q[i], cj)) / t - all_lq[j]))
        m = max(v for _, v in logits)
        log_z = m + math.log(sum(math.exp(v - m) for _, v in logits))
        total += log_z - next(v for pos, v in logits if pos)
    return total / len(q)


def unit(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_sampled_softmax_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    q, c = unit(rng, 6), unit(rng, 6)
    ids = np.array([10, 11, 12, 10, 13, 14])  # rows 0 and 3 share their positive: accidental hits
    qids = np.array([11, 20, 21, 22, 23, 24])  # row 0's query item is row 1's candidate
    log_q = np.log(rng.uniform(0.01, 0.2, size=6))
    got = sampled_softmax(
        torch.tensor(q), torch.tensor(c), torch.tensor(ids), torch.tensor(log_q), 0.1, torch.tensor(qids)
    )
    assert float(got) == pytest.approx(brute_force_loss(q, c, ids, log_q, 0.1, qids), rel=1e-6)


def test_sampled_softmax_with_extra_negatives() -> None:
    rng = np.random.default_rng(1)
    q, c, e = unit(rng, 4), unit(rng, 4), unit(rng, 5)
    ids, eids = (
        np.array([1, 2, 3, 4]),
        np.array([2, 9, 9, 8, 1]),
    )  # queue items 2 and 1 are positives of rows 1, 0
    lq, elq = np.zeros(4), np.log(np.full(5, 0.1))
    got = sampled_softmax(
        torch.tensor(q),
        torch.tensor(c),
        torch.tensor(ids),
        torch.tensor(lq),
        0.2,
        extra=torch.tensor(e),
        extra_ids=torch.tensor(eids),
        extra_log_q=torch.tensor(elq),
    )
    assert float(got) == pytest.approx(brute_force_loss(q, c, ids, lq, 0.2, None, e, eids, elq), rel=1e-6)


def test_logq_correction_lowers_the_weight_of_popular_negatives() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    c = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    ids = torch.tensor([1, 2])
    flat = sampled_softmax(q, c, ids, torch.zeros(2), 1.0, reduction="none")
    popular = sampled_softmax(q, c, ids, torch.tensor([0.0, math.log(10.0)]), 1.0, reduction="none")
    assert float(popular[0]) < float(flat[0])  # row 0's negative (item 2) is frequent: it counts less
    assert float(popular[1]) > float(flat[1])  # and a frequent positive is explained less by chance


def test_sampled_softmax_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[B, d\]"):
        sampled_softmax(torch.zeros(3, 2), torch.zeros(2, 2), torch.zeros(3), torch.zeros(3))


def test_features_are_stable_and_handle_missing_content() -> None:
    assert stable_hash("red", "w", 1000) == stable_hash("red", "w", 1000) != stable_hash("red", "c", 1000)
    assert char_ngrams("ab", (3,)) == ["#ab", "ab#"]
    assert price_bucket(None, 64) == 0 and price_bucket(float("nan"), 64) == 0 and price_bucket(0.0, 64) == 1
    assert price_bucket(100.0, 64) > price_bucket(10.0, 64) and price_bucket(1e30, 64) == 63
    f = offer_row_features({"offer_id": 5, "title": None}, SMALL)
    assert set(f["word_ids"]) == {0} and f["category"] == 0 and f["offer"] > 0
    g = offer_row_features(
        {"offer_id": 5, "title": "Red Shoe", "category_id": 3, "price": 9.5, "seller_id": 7}, SMALL
    )
    assert all(0 < i < SMALL.words for i in g["word_ids"][:2]) and set(g["word_ids"][2:]) == {0}


def batch(rows: list[dict]) -> dict[str, torch.Tensor]:
    return to_tensors(collate([offer_row_features(r, SMALL) for r in rows]))


def test_tower_outputs_unit_vectors_and_drops_ids_for_cold_offers() -> None:
    torch.manual_seed(0)
    model = OfferTower(TowerConfig(dim=16, embed_dim=8, hidden=32, vocab=SMALL)).eval()
    rows = [
        {"offer_id": 1, "title": "red shoe", "category_id": 2, "price": 10.0, "seller_id": 3},
        {"offer_id": 2, "title": "red shoe", "category_id": 2, "price": 10.0, "seller_id": 3},
        {"offer_id": 3, "title": None},
    ]
    x = batch(rows)
    out = model(x)
    assert out.shape == (3, 16) and torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(out[0], out[1])  # same content, different ids
    cold = model(x, use_id=torch.tensor([False, False, False]))
    assert torch.allclose(cold[0], cold[1], atol=1e-6)  # without ids, same content = same vector


def test_take_equals_collating_the_chosen_rows() -> None:
    from retrieval.encoder.features import take

    rows = [offer_row_features({"offer_id": i, "title": "w" * (i + 1) + " x" * i}, SMALL) for i in range(6)]
    f = collate(rows)
    assert f.words.shape == (6, SMALL.max_words) and f.chars.shape == (6, SMALL.max_chars)
    idx = np.array([4, 0, 4, 2])
    got, want = take(f, idx), collate([rows[i] for i in idx])
    for name in ("words", "chars", "category", "offer"):
        assert getattr(got, name).tolist() == getattr(want, name).tolist(), name


def test_long_titles_are_truncated_and_short_ones_padded() -> None:
    f = offer_row_features({"offer_id": 1, "title": " ".join(f"w{i}" for i in range(40))}, SMALL)
    assert len(f["word_ids"]) == SMALL.max_words and 0 not in f["word_ids"]
    g = offer_row_features({"offer_id": 1, "title": "ab"}, SMALL)
    assert g["word_ids"][1:] == [0] * (SMALL.max_words - 1)


def test_session_pooling_weights_recent_offers_more() -> None:
    items = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])  # padding, older, newest
    out = pool_sessions(items, torch.tensor([2]), decay=0.5)
    expected = torch.tensor([0.5, 1.0]) / math.sqrt(1.25)
    assert torch.allclose(out[0], expected, atol=1e-6)


def test_save_and_load_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = OfferTower(TowerConfig(dim=8, embed_dim=4, hidden=8, vocab=SMALL)).eval()
    save_model(model, str(tmp_path / "m"), {"trained_on": "test"})
    again = load_model(OfferTower, str(tmp_path / "m")).eval()
    assert saved_config(str(tmp_path / "m"))["trained_on"] == "test"
    x = batch([{"offer_id": 1, "title": "red shoe"}])
    assert torch.allclose(model(x), again(x))


def test_candidate_queue_keeps_the_most_recent_and_feeds_the_loss() -> None:
    from retrieval.encoder.negatives import CandidateQueue

    queue = CandidateQueue(size=3, dim=2)
    assert queue.negatives() == {}
    queue.push(torch.ones(2, 2, requires_grad=True), torch.tensor([1, 2]), torch.zeros(2))
    queue.push(torch.full((2, 2), 2.0), torch.tensor([3, 4]), torch.ones(2))
    neg = queue.negatives()
    assert neg["extra_ids"].tolist() == [3, 4, 1]  # newest first, oldest dropped beyond size
    assert not neg["extra"].requires_grad and neg["extra_log_q"].tolist() == [1.0, 1.0, 0.0]
    q = torch.nn.functional.normalize(torch.randn(2, 2), dim=1)
    c = torch.nn.functional.normalize(torch.randn(2, 2), dim=1)
    base = sampled_softmax(q, c, torch.tensor([7, 8]), torch.zeros(2), 0.1)
    assert sampled_softmax(q, c, torch.tensor([7, 8]), torch.zeros(2), 0.1, **neg) > base


def test_training_learns_co_clicks_better_than_popularity() -> None:
    """End to end on the pure path: synthetic offers and sessions -> pairs -> train -> Recall@10 on test pairs."""
    from collections import defaultdict

    from retrieval.config import PairsSection, SynthSection
    from retrieval.encoder.model import embed
    from retrieval.encoder.train import in_memory_batches, log_q_of, train
    from retrieval.evaluation import exact_search, recall_at_k
    from retrieval.mining.pairs import mine_pairs
    from retrieval.synth.catalog import Catalog
    from retrieval.synth.offers import generate_offers
    from retrieval.synth.sessions import SessionSimulator

    cat = Catalog(
        SynthSection(products=600, listing_min=10, listing_max=20, bad_row_rate=0.0, sellers=200), 7
    )
    offers = generate_offers(cat, 0, 600, 0).to_pylist()
    events = SessionSimulator(cat).simulate(0, 0, 2000).events.to_pylist()
    pairs = mine_pairs(events, PairsSection(min_support=1), "2026-10-12")
    vocab = Vocab(words=1 << 14, chars=1 << 15, categories=256, prices=64, sellers=1024, ids=1 << 14)
    feats = {o["offer_id"]: offer_row_features(o, vocab) for o in offers}
    ids = np.array([o["offer_id"] for o in offers])
    every = collate([feats[i] for i in ids])
    train_pairs = np.array([(p.query_offer_id, p.item_offer_id) for p in pairs if p.split == "train"])
    test: dict[int, set[int]] = defaultdict(set)
    for p in pairs:
        if p.split == "test":
            test[p.query_offer_id].add(p.item_offer_id)
    queries = np.array(sorted(test))
    targets = [test[q] for q in queries]
    row = {int(i): k for k, i in enumerate(ids)}
    lq = log_q_of(train_pairs[:, 1])
    lq = {int(i): lq.get(int(i), min(lq.values())) for i in ids}

    def recall10(model: OfferTower) -> float:
        v = embed(model, every)
        return recall_at_k(
            exact_search(v[[row[q] for q in queries]], v, ids, 10, exclude=queries)[1], targets, 10
        )

    torch.manual_seed(0)
    model = OfferTower(TowerConfig(dim=32, embed_dim=32, hidden=64, vocab=vocab))
    untrained = recall10(model)
    rng = np.random.default_rng(0)
    history = train(
        model,
        3,
        lambda e: in_memory_batches(train_pairs, every, ids, lq, 512, rng),
        lr=0.02,
        progress_s=0,
    )
    assert history[-1]["loss"] < history[0]["loss"]
    counts: dict[int, int] = defaultdict(int)
    for c in train_pairs[:, 1]:
        counts[int(c)] += 1
    popular = sorted(counts, key=lambda x: -counts[x])[:11]
    pop = recall_at_k(np.array([[x for x in popular if x != q][:10] for q in queries]), targets, 10)
    trained = recall10(model)
    assert trained > 1.5 * pop and trained > 10 * max(untrained, 0.005)


def test_exact_top_k_and_metrics_by_hand() -> None:
    from retrieval.evaluation import NO_ITEM, exact_search, mrr, recall_at_k

    xb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
    ids = np.array([10, 11, 12, 13])
    top = exact_search(xb[:2], xb, ids, 3, exclude=np.array([10, 11]))[1]
    assert top.tolist() == [[11, 13, 12], [10, 13, 12]]
    d, i = exact_search(xb[:1], xb, ids, 5, exclude=np.array([10]))
    assert (
        i.tolist() == [[11, 13, 12, NO_ITEM, NO_ITEM]]
        and d[0, :3] == pytest.approx([0.9, 0.5, 0.0])
        and d[0, 3] == -np.inf
    )
    assert recall_at_k(top, [{13, 12}, {99}], 2) == pytest.approx(0.25)  # 0.5 and 0 averaged
    assert mrr(top, [{13}, {12}]) == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_dense_embeddings_train_with_adamw() -> None:
    """The GPU path (sparse=False: nccl has no sparse all-reduce) must not hand dense gradients to
    SparseAdam (found on a CUDA run: it raised at the first step)."""
    import torch

    from retrieval.encoder.model import OfferTower, TowerConfig, make_optimizers

    for sparse in (True, False):
        model = OfferTower(TowerConfig(sparse=sparse))
        opts = make_optimizers(model, 0.01)
        kinds = [type(o).__name__ for o in opts]
        assert kinds == (["SparseAdam", "AdamW"] if sparse else ["AdamW"])
        n = sum(len(g["params"]) for o in opts for g in o.param_groups)
        assert n == len(list(model.parameters()))
        x = {
            k: torch.randint(1, 50, (4, 3)) if k in ("words", "chars") else torch.randint(1, 50, (4,))
            for k in ("words", "chars", "category", "price", "seller", "offer")
        }
        model(x).sum().backward()
        for o in opts:
            o.step()


def _features(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randint(1, 30, (n, 5), generator=g)
        if k in ("words", "chars")
        else torch.randint(1, 30, (n,), generator=g)
        for k in ("words", "chars", "category", "price", "seller", "offer")
    }


@pytest.mark.parametrize("combine", ["sum", "gate", "concat"])
def test_every_way_of_combining_the_halves_gives_unit_vectors_and_uses_the_ids(combine: str) -> None:
    torch.manual_seed(0)
    model = OfferTower(
        TowerConfig(dim=8, embed_dim=4, hidden=16, id_dim=6, combine=combine, vocab=SMALL)
    ).eval()
    x = _features(5)
    on, off = model(x, torch.ones(5, dtype=torch.bool)), model(x, torch.zeros(5, dtype=torch.bool))
    assert torch.allclose(on.norm(dim=1), torch.ones(5), atol=1e-5)
    assert not torch.allclose(on, off)  # the id half moves the vector
    x2 = dict(x, offer=torch.randint(1, 30, (5,)))
    assert torch.allclose(off, model(x2, torch.zeros(5, dtype=torch.bool)))  # ids off: ids do not matter
    assert model.offer.weight.shape == (SMALL.ids, 6)


def test_a_content_only_tower_has_no_id_parameters() -> None:
    model = OfferTower(TowerConfig(dim=8, embed_dim=4, hidden=16, use_id=False, vocab=SMALL))
    assert not hasattr(model, "offer") and not hasattr(model, "id_proj")
    assert all(p.grad is None for p in model.parameters())
    model(_features(3)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())  # DDP needs every parameter used


def test_a_tower_set_trains_each_tower_as_if_alone() -> None:
    """Two towers in one TowerSet step on the sum of their losses: each one's update is what training it
    alone on the same batch gives (they share no weights)."""
    from retrieval.encoder.model import TowerSet, make_optimizers
    from retrieval.encoder.train import PairBatch, train_step

    cfgs = {
        "encoder": TowerConfig(dim=8, embed_dim=4, hidden=16, vocab=SMALL, sparse=False, id_dropout=0.0),
        "content_trained": TowerConfig(
            dim=8, embed_dim=4, hidden=16, vocab=SMALL, sparse=False, use_id=False
        ),
    }
    torch.manual_seed(0)
    both = TowerSet(cfgs)
    alone = {n: TowerSet({n: c}) for n, c in cfgs.items()}
    for n, m in alone.items():
        m.tower(n).load_state_dict(both.tower(n).state_dict())
    rng = np.random.default_rng(0)
    offers = [{"offer_id": i, "title": f"item {i % 7} kind {i % 3}", "category_id": i % 5} for i in range(16)]
    f = collate([offer_row_features(o, SMALL) for o in offers])
    from retrieval.encoder.features import take

    batch = PairBatch(
        take(f, np.arange(8)),
        take(f, np.arange(8, 16)),
        np.arange(8),
        np.arange(8, 16),
        np.full(8, -2.0, np.float32),
    )
    train_step(both, make_optimizers(both, 0.01), batch, 0.1, "cpu")
    for n, m in alone.items():
        train_step(m, make_optimizers(m, 0.01), batch, 0.1, "cpu")
        for a, b in zip(both.tower(n).parameters(), m.tower(n).parameters(), strict=True):
            assert torch.allclose(a, b, atol=1e-6), n
    del rng


def test_mixed_negatives_correct_by_the_mixture_and_draw_from_the_pool() -> None:
    from retrieval.encoder.negatives import UniformPool

    f = collate([offer_row_features({"offer_id": i, "title": f"t{i}"}, SMALL) for i in range(10)])
    pool = UniformPool(
        f, np.arange(10), np.full(10, -np.inf, np.float32), catalogue=1000, draws=4, batch_size=6, seed=1
    )
    feats, ids, _ = pool.sample()
    assert len(ids) == 4 and feats.words.shape[0] == 4 and set(ids.tolist()) <= set(range(10))
    lq = pool.mixture_log_q(torch.tensor([math.log(0.5), -math.inf]))
    # (B p + M / N) / (B + M) with B = 6, M = 4, N = 1000
    expected = [math.log((6 * 0.5 + 4 / 1000) / 10), math.log((4 / 1000) / 10)]
    assert torch.allclose(lq, torch.tensor(expected, dtype=lq.dtype))


def test_a_momentum_copy_follows_its_model_slowly() -> None:
    from retrieval.encoder.negatives import MomentumCopy

    model = torch.nn.Linear(2, 2)
    copy = MomentumCopy(model, 0.9)
    before = copy.model.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    copy.update(model)
    assert torch.allclose(copy.model.weight, 0.9 * before + 0.1 * model.weight)
    assert not copy.model.weight.requires_grad


@pytest.mark.parametrize("negatives", ["in_batch", "mixed", "queue"])
def test_every_kind_of_negatives_trains(negatives: str) -> None:
    from retrieval.encoder.model import TowerSet
    from retrieval.encoder.negatives import UniformPool
    from retrieval.encoder.train import in_memory_batches, make_negatives, train

    offers = [
        {"offer_id": i, "title": f"brand{i // 4} item {i % 4}", "category_id": i // 8} for i in range(64)
    ]
    f = collate([offer_row_features(o, SMALL) for o in offers])
    ids = np.arange(64)
    pairs = np.array([(i, i ^ 1) for i in range(64)] * 4)
    cfg = TowerConfig(dim=8, embed_dim=8, hidden=16, vocab=SMALL)
    torch.manual_seed(0)
    model = TowerSet(
        {"encoder": cfg, "content_trained": TowerConfig(**{**cfg.to_dict(), "use_id": False, "vocab": SMALL})}
    )
    pool = UniformPool(f, ids, np.full(64, math.log(1 / 64), np.float32), 64, 8, 32, 0)
    neg = make_negatives(negatives, ["encoder", "content_trained"], 8, "cpu", model, 64, 0.9, pool)
    rng = np.random.default_rng(0)
    history = train(
        model,
        4,
        lambda e: in_memory_batches(pairs, f, ids, dict.fromkeys(range(64), -4.0), 32, rng),
        lr=0.02,
        progress_s=0,
        negatives=neg,
    )
    assert history[-1]["loss"] < history[0]["loss"]
    if negatives == "queue":
        assert len(neg.queues["encoder"].ids) == 64 and neg.momentum is not None
