"""Encoder data on Spark and the two training feeds: featurization parity, examples, same multiset per
epoch; the encoder worker under TorchDistributor and through storage URIs; launch's retries."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.encoder.features import Vocab, offer_row_features

pytestmark = [pytest.mark.spark, pytest.mark.both_lanes]  # CI runs these in the Petastorm lane too

SMALL = Vocab(words=1024, chars=2048, categories=64, prices=32, sellers=128, ids=4096)


def worker_args(examples: str, model_dir: str, feed: str = "arrow", epochs: int = 1) -> dict[str, Any]:
    """The encoder worker's arguments for a small tower, 40 pairs per step, in this process's runtime."""
    import dataclasses

    from retrieval.config import EncoderSection, TrainingSection
    from retrieval.encoder.model import TowerConfig
    from retrieval.encoder.worker import EncoderWorkerArgs

    tower = TowerConfig(dim=16, embed_dim=8, hidden=16, vocab=SMALL)
    # in-batch negatives: mixed ones need the uniform pool train_encoder writes (tests/test_train_encoder)
    enc = EncoderSection(dim=16, embed_dim=8, hidden=16, epochs=epochs, batch_size=40, negatives="in_batch")
    args = EncoderWorkerArgs(
        examples=examples,
        model_dir=model_dir,
        tower=tower.to_dict(),
        encoder=dataclasses.asdict(enc),
        runtime=dataclasses.asdict(TrainingSection(feed=feed)),  # type: ignore[arg-type]
        progress_s=0,
    )
    return dataclasses.asdict(args)


@pytest.fixture(scope="module")
def examples(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from retrieval.encoder.spark_encoder import featurize_offers, training_examples

    rng = np.random.default_rng(0)
    offers = [
        (int(i), f"brand{i % 7} thing {i}" if i % 9 else None, int(i % 5), float(i) * 1.5, int(i % 11))
        for i in range(1, 51)
    ]
    offers_df = spark.createDataFrame(
        offers, "offer_id bigint, title string, category_id int, price double, seller_id bigint"
    )
    q = rng.integers(1, 51, size=600)
    c = (q + rng.integers(1, 5, size=600)) % 50 + 1
    pairs = spark.createDataFrame(
        [(int(a), int(b), 1.0, "train") for a, b in zip(q, c, strict=True)] + [(1, 2, 1.0, "test")],
        "query_offer_id bigint, item_offer_id bigint, weight double, split string",
    )
    features = featurize_offers(offers_df, SMALL)
    path = tmp_path_factory.mktemp("examples") / "train"
    training_examples(pairs, features).repartition(3).write.parquet(str(path))
    return {
        "offers": offers,
        "features": features,
        "path": str(path),
        "pairs": list(zip(q.tolist(), c.tolist(), strict=True)),
    }


def test_spark_featurization_equals_the_pure_function(examples: dict[str, Any]) -> None:
    got = {r.offer_id: r.asDict() for r in examples["features"].collect()}
    for offer_id, title, cat, price, seller in examples["offers"]:
        want = offer_row_features(
            {"offer_id": offer_id, "title": title, "category_id": cat, "price": price, "seller_id": seller},
            SMALL,
        )
        row = got[offer_id]
        assert {k: row[k] for k in want} == want


def test_examples_carry_log_q_of_the_candidates(spark: Any, examples: dict[str, Any]) -> None:
    rows = spark.read.parquet(examples["path"]).select("item_offer_id", "log_q").collect()
    counts = Counter(c for _, c in examples["pairs"])
    assert len(rows) == 600  # the test pair is not a training example
    for r in rows:
        assert r.log_q == pytest.approx(np.log(counts[r.item_offer_id] / 600))


def test_ids_are_kept_only_for_offers_with_enough_training_pairs(
    spark: Any, examples: dict[str, Any]
) -> None:
    """encoder.min_id_pairs: an offer with fewer training pairs (as query; test pairs do not count)
    gets the padding id bucket 0, whose embedding is zero."""
    from retrieval.encoder.spark_encoder import with_trained_ids

    pairs = spark.createDataFrame(
        [(q, c, 1.0, "train") for q, c in examples["pairs"]] + [(7, 8, 1.0, "test")] * 50,
        "query_offer_id bigint, item_offer_id bigint, weight double, split string",
    )
    n = Counter(q for q, _ in examples["pairs"])
    need = sorted(n.values())[len(n) // 2]  # about half the offers have enough
    before = {r.offer_id: r.offer for r in examples["features"].collect()}
    after = {r.offer_id: r.offer for r in with_trained_ids(examples["features"], pairs, need).collect()}
    assert set(after) == set(before)
    for offer_id, bucket in after.items():
        assert bucket == (before[offer_id] if n[offer_id] >= need else 0), offer_id
    assert 0 < sum(b != 0 for b in after.values()) < len(after)
    assert with_trained_ids(examples["features"], pairs, 1) is examples["features"]


def multiset(feed: Any, epoch: int) -> Counter:
    out: Counter = Counter()
    for b in feed.epoch(epoch):
        assert len(b.query_ids) == feed.batch_size
        for q, c in zip(b.query_ids, b.candidate_ids, strict=True):
            out[(int(q), int(c))] += 1
    return out


@pytest.mark.petastorm
def test_arrow_and_petastorm_feeds_yield_the_same_examples(examples: dict[str, Any]) -> None:
    from retrieval.encoder.train import pair_batch
    from retrieval.training.feed import ArrowFeed, PetastormFeed

    arrow = ArrowFeed(examples["path"], 50, pair_batch, seed=1, buffer_rows=128)
    peta = PetastormFeed(examples["path"], 50, pair_batch, seed=1, buffer_rows=128)
    assert arrow.steps == peta.steps == 12
    a0, p0 = multiset(arrow, 0), multiset(peta, 0)
    assert a0 == p0 == Counter(examples["pairs"])
    assert multiset(arrow, 1) == a0  # another epoch, another order, the same examples


def test_the_petastorm_feed_outside_its_lane_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from retrieval.training import feed

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "petastorm" else real(n, *a))
    with pytest.raises(RuntimeError, match=r"setup_env.sh --petastorm"):
        feed.require_feed("petastorm")
    feed.require_feed("arrow")
    with pytest.raises(ValueError, match="unknown feed 'parquet'"):
        feed.require_feed("parquet")


def test_features_survive_the_feed(examples: dict[str, Any]) -> None:
    from retrieval.encoder.train import pair_batch
    from retrieval.training.feed import ArrowFeed

    by_id = {o[0]: o for o in examples["offers"]}
    batch = next(iter(ArrowFeed(examples["path"], 50, pair_batch, shuffle=False).epoch(0)))
    for i in range(5):
        oid, title, cat, price, seller = by_id[int(batch.candidate_ids[i])]
        want = offer_row_features(
            {"offer_id": oid, "title": title, "category_id": cat, "price": price, "seller_id": seller}, SMALL
        )
        assert batch.candidate.words[i].tolist() == want["word_ids"]
        assert batch.candidate.chars[i].tolist() == want["char_ids"]
        assert (
            int(batch.candidate.offer[i]) == want["offer"]
            and int(batch.candidate.category[i]) == want["category"]
        )


def test_ranks_get_disjoint_shares_and_equal_steps(examples: dict[str, Any]) -> None:
    from retrieval.encoder.train import pair_batch
    from retrieval.training.feed import ArrowFeed

    ranks = [ArrowFeed(examples["path"], 40, pair_batch, rank=r, world=2, seed=3) for r in range(2)]
    assert ranks[0].steps == ranks[1].steps > 0
    assert set(ranks[0].files).isdisjoint(ranks[1].files)
    assert [sum(1 for _ in f.epoch(0)) for f in ranks] == [ranks[0].steps] * 2
    with pytest.raises(ValueError, match="only 3 parquet files"):
        ArrowFeed(examples["path"], 10, pair_batch, rank=0, world=4)


def test_an_empty_feed_fails_loudly(tmp_path: Path) -> None:
    from retrieval.encoder.train import pair_batch
    from retrieval.training.feed import ArrowFeed

    with pytest.raises(FileNotFoundError, match="no parquet files"):
        ArrowFeed(str(tmp_path), 10, pair_batch)


@pytest.mark.slow
@pytest.mark.parametrize("feed", ["arrow", pytest.param("petastorm", marks=pytest.mark.petastorm)])
def test_torch_distributor_trains_two_processes_and_resumes(
    spark: Any, examples: dict[str, Any], tmp_path: Path, feed: str
) -> None:
    import os

    from pyspark.ml.torch.distributor import TorchDistributor

    from retrieval.encoder.model import OfferTower
    from retrieval.encoder.worker import train_worker
    from retrieval.training.models import load_model

    model_dir = str(tmp_path / "model")
    args = worker_args(examples["path"], model_dir, feed=feed, epochs=2)
    # 2 processes = the 2 task slots of these machines (more and the barrier stage would never start)
    first = TorchDistributor(num_processes=2, local_mode=True, use_gpu=False).run(train_worker, args)
    assert first["world"] == 2 and [h["epoch"] for h in first["history"]] == [0, 1]
    assert all(h["steps"] == first["steps_per_epoch"] > 0 for h in first["history"])
    assert sorted(os.listdir(os.path.join(model_dir, "checkpoints"))) == ["epoch-0000.pt", "epoch-0001.pt"]
    assert load_model(OfferTower, os.path.join(model_dir, "encoder")).cfg.dim == 16
    # continue to a third epoch from the last checkpoint: epochs 0 and 1 are not run again
    again = TorchDistributor(num_processes=2, local_mode=True, use_gpu=False).run(
        train_worker, {**args, "encoder": {**args["encoder"], "epochs": 3}, "resume": True}
    )
    assert [h["epoch"] for h in again["history"]] == [0, 1, 2]
    assert again["history"][:2] == first["history"]
    assert sorted(os.listdir(os.path.join(model_dir, "checkpoints"))) == ["epoch-0001.pt", "epoch-0002.pt"]


def test_training_reads_and_writes_through_storage_uris(examples: dict[str, Any]) -> None:
    """Examples, checkpoints and the model on a non-local filesystem (fsspec's in-memory one stands in
    for hdfs:// or s3a:// here): a training process on any executor needs no disk shared with the
    driver. Resume finds the checkpoints there."""
    import os

    import fsspec

    from retrieval import storage
    from retrieval.encoder.model import OfferTower
    from retrieval.encoder.worker import train_worker
    from retrieval.training.models import load_model

    root = "memory://train-uris"
    for f in sorted(os.listdir(examples["path"])):
        if f.endswith(".parquet"):
            storage.write_bytes_atomic(f"{root}/examples/{f}", storage.read_bytes(f"{examples['path']}/{f}"))
    try:
        args = worker_args(f"{root}/examples", f"{root}/model", epochs=1)
        first = train_worker(args)
        assert storage.list_files(f"{root}/model/checkpoints") == [f"{root}/model/checkpoints/epoch-0000.pt"]
        again = train_worker({**args, "encoder": {**args["encoder"], "epochs": 2}, "resume": True})
        assert [h["epoch"] for h in again["history"]] == [0, 1] and again["history"][0] == first["history"][0]
        assert load_model(OfferTower, f"{root}/model/encoder").cfg.dim == 16
    finally:
        fsspec.filesystem("memory").rm("/train-uris", recursive=True)


def test_launch_resumes_after_a_failed_attempt_then_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """launch's retry logic (the cluster test kills a real executor): a failed TorchDistributor run is
    retried with resume=True, and after the last retry the worker finishes in this process."""
    import pyspark.ml.torch.distributor as dist_mod

    from retrieval.config import TrainingSection
    from retrieval.training.spark_launch import launch

    calls: list[dict[str, Any]] = []
    failures = {"left": 1}

    class Distributor:
        def __init__(self, **kw: Any) -> None:
            assert kw["num_processes"] == 2 and not kw["use_gpu"]

        def run(self, worker: Any, args: dict[str, Any]) -> Any:
            if failures["left"] > 0:
                failures["left"] -= 1
                raise RuntimeError("executor lost\nstack ...")
            return worker(args)

    def worker(args: dict[str, Any]) -> dict[str, Any]:
        calls.append(args)
        return {"resumed": args["resume"]}

    monkeypatch.setattr(dist_mod, "TorchDistributor", Distributor)
    runtime = TrainingSection(num_processes=2, local_mode=False, retries=1, fallback_single=False)
    out = launch(worker, {"resume": False}, runtime)
    assert out == {"resumed": True, "attempts": 2} and calls == [{"resume": True}]
    failures["left"], calls[:] = 2, []
    out = launch(
        worker, {"resume": False}, dataclasses.replace(runtime, local_mode=True, fallback_single=True)
    )
    assert out["resumed"] and out["attempts"] == 2
    assert (
        out["fallback"] == "single process after 2 failed distributed attempts: RuntimeError: executor lost"
    )
    for local_mode, fallback in ((True, False), (False, True)):  # no fallback asked, or not on executors
        failures["left"] = 2
        with pytest.raises(RuntimeError, match="executor lost"):
            launch(
                worker,
                {"resume": False},
                dataclasses.replace(runtime, local_mode=local_mode, fallback_single=fallback),
            )
