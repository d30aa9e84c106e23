"""Encoder data on Spark and the two feeds: featurization parity, examples, same multiset per epoch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.encoder.features import Vocab, offer_row_features

pytestmark = pytest.mark.spark

SMALL = Vocab(words=1024, chars=2048, categories=64, prices=32, sellers=128, ids=4096)


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


def multiset(feed: Any, epoch: int) -> Counter:
    out: Counter = Counter()
    for b in feed.epoch(epoch):
        assert len(b.query_ids) == feed.batch_size
        for q, c in zip(b.query_ids, b.candidate_ids, strict=True):
            out[(int(q), int(c))] += 1
    return out


def test_arrow_and_petastorm_feeds_yield_the_same_examples(examples: dict[str, Any]) -> None:
    from retrieval.encoder.feed import ArrowFeed, PetastormFeed

    arrow = ArrowFeed(examples["path"], batch_size=50, seed=1, buffer_rows=128)
    peta = PetastormFeed(examples["path"], batch_size=50, seed=1, buffer_rows=128)
    assert arrow.steps == peta.steps == 12
    a0, p0 = multiset(arrow, 0), multiset(peta, 0)
    assert a0 == p0 == Counter(examples["pairs"])
    assert multiset(arrow, 1) == a0  # another epoch, another order, the same examples


def test_features_survive_the_feed(examples: dict[str, Any]) -> None:
    from retrieval.encoder.feed import ArrowFeed

    by_id = {o[0]: o for o in examples["offers"]}
    batch = next(iter(ArrowFeed(examples["path"], batch_size=50, shuffle=False).epoch(0)))
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
    from retrieval.encoder.feed import ArrowFeed

    ranks = [ArrowFeed(examples["path"], batch_size=40, rank=r, world=2, seed=3) for r in range(2)]
    assert ranks[0].steps == ranks[1].steps > 0
    assert set(ranks[0].files).isdisjoint(ranks[1].files)
    assert [sum(1 for _ in f.epoch(0)) for f in ranks] == [ranks[0].steps] * 2
    with pytest.raises(ValueError, match="only 3 parquet files"):
        ArrowFeed(examples["path"], batch_size=10, rank=0, world=4)


def test_an_empty_feed_fails_loudly(tmp_path: Path) -> None:
    from retrieval.encoder.feed import ArrowFeed

    with pytest.raises(FileNotFoundError, match="no parquet files"):
        ArrowFeed(str(tmp_path), batch_size=10)


@pytest.mark.slow
@pytest.mark.parametrize("feed", ["arrow", "petastorm"])
def test_torch_distributor_trains_two_processes_and_resumes(
    spark: Any, examples: dict[str, Any], tmp_path: Path, feed: str
) -> None:
    import dataclasses
    import os

    from pyspark.ml.torch.distributor import TorchDistributor

    from retrieval.encoder.distributed import TrainArgs, train_worker
    from retrieval.encoder.model import EncoderConfig, load

    model_dir = str(tmp_path / "model")
    enc = EncoderConfig(dim=16, embed_dim=8, hidden=16, vocab=SMALL).to_dict()
    args = dataclasses.asdict(
        TrainArgs(
            examples=examples["path"],
            model_dir=model_dir,
            encoder=enc,
            feed=feed,
            epochs=2,
            batch_size=40,
            progress_s=0,
        )
    )
    # 2 processes = the 2 task slots of these machines (more and the barrier stage would never start)
    first = TorchDistributor(num_processes=2, local_mode=True, use_gpu=False).run(train_worker, args)
    assert first["world"] == 2 and [h["epoch"] for h in first["history"]] == [0, 1]
    assert all(h["steps"] == first["steps_per_epoch"] > 0 for h in first["history"])
    assert sorted(os.listdir(os.path.join(model_dir, "checkpoints"))) == ["epoch-0000.pt", "epoch-0001.pt"]
    assert load(model_dir).cfg.dim == 16
    # continue to a third epoch from the last checkpoint: epochs 0 and 1 are not run again
    again = TorchDistributor(num_processes=2, local_mode=True, use_gpu=False).run(
        train_worker, {**args, "epochs": 3, "resume": True}
    )
    assert [h["epoch"] for h in again["history"]] == [0, 1, 2]
    assert again["history"][:2] == first["history"]
    assert sorted(os.listdir(os.path.join(model_dir, "checkpoints"))) == ["epoch-0001.pt", "epoch-0002.pt"]


def test_training_reads_and_writes_through_storage_uris(examples: dict[str, Any]) -> None:
    """Examples, checkpoints and the model on a non-local filesystem (fsspec's in-memory one stands in
    for hdfs:// or s3a:// here): a training process on any executor needs no disk shared with the
    driver. Resume finds the checkpoints there."""
    import dataclasses
    import os

    import fsspec

    from retrieval import storage
    from retrieval.encoder.distributed import TrainArgs, train_worker
    from retrieval.encoder.model import EncoderConfig, load

    root = "memory://train-uris"
    for f in sorted(os.listdir(examples["path"])):
        if f.endswith(".parquet"):
            storage.write_bytes_atomic(f"{root}/examples/{f}", storage.read_bytes(f"{examples['path']}/{f}"))
    try:
        enc = EncoderConfig(dim=16, embed_dim=8, hidden=16, vocab=SMALL).to_dict()
        args = dataclasses.asdict(
            TrainArgs(
                examples=f"{root}/examples",
                model_dir=f"{root}/model",
                encoder=enc,
                epochs=1,
                batch_size=40,
                progress_s=0,
            )
        )
        first = train_worker(args)
        assert storage.list_files(f"{root}/model/checkpoints") == [f"{root}/model/checkpoints/epoch-0000.pt"]
        again = train_worker({**args, "epochs": 2, "resume": True})
        assert [h["epoch"] for h in again["history"]] == [0, 1] and again["history"][0] == first["history"][0]
        assert load(f"{root}/model").cfg.dim == 16
    finally:
        fsspec.filesystem("memory").rm("/train-uris", recursive=True)


def test_launch_resumes_after_a_failed_attempt_then_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """launch's retry logic (the cluster test kills a real executor): a failed TorchDistributor run is
    retried with resume=True, and after the last retry the worker finishes in this process."""
    import pyspark.ml.torch.distributor as dist_mod

    from retrieval.encoder.distributed import launch

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
    out = launch(worker, {"resume": False}, 2, False, False, retries=1)
    assert out == {"resumed": True, "attempts": 2} and calls == [{"resume": True}]
    failures["left"], calls[:] = 2, []
    out = launch(worker, {"resume": False}, 2, True, False, retries=1, fallback_single=True)
    assert out["resumed"] and out["attempts"] == 2
    assert (
        out["fallback"] == "single process after 2 failed distributed attempts: RuntimeError: executor lost"
    )
    for local_mode, fallback in ((True, False), (False, True)):  # no fallback asked, or not on executors
        failures["left"] = 2
        with pytest.raises(RuntimeError, match="executor lost"):
            launch(worker, {"resume": False}, 2, local_mode, False, retries=1, fallback_single=fallback)
