"""train_encoder: the two-tower offer encoder, trained on co-click pairs with TorchDistributor.

    ./submit.sh train_encoder [--config conf/local.yaml] [--set train.feed=petastorm] [--set train.resume=true]

Featurizes every offer (hashed title words and character n-grams, category, price bucket, seller,
offer id), materialises the training pairs with both sides' features as parquet, and trains the
tower with sampled softmax over in-batch negatives (logQ-corrected) in `train.num_processes` DDP
processes fed by the `train.feed` reader; a checkpoint per epoch under models/encoder/<version>/.
Then Recall@{10,50,100} and MRR on the test pairs for the encoder, the same model without id
embeddings (content only), item co-occurrence and popularity, for warm and for cold query offers.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from retrieval import storage, tables
from retrieval.artifacts import content_version, model_dir
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.encoder.distributed import TrainArgs, launch, train_worker
from retrieval.encoder.features import Vocab
from retrieval.encoder.model import EncoderConfig, load
from retrieval.encoder.spark_encoder import featurize_offers, training_examples
from retrieval.encoder.spark_eval import (
    cooccurrence_top_k,
    encoder_top_k,
    popularity_top_k,
    sample_queries,
    warm_offers,
)
from retrieval.evaluation import mrr, recall_at_k
from retrieval.spark_tables import read_table, write_table

log = logging.getLogger(__name__)


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, t = cfg.paths.root, cfg.train
    offers = read_table(spark, root, tables.OFFERS)
    pairs = read_table(spark, root, tables.PAIRS)
    enc = EncoderConfig(**dataclasses.asdict(cfg.encoder), vocab=Vocab())
    write_table(featurize_offers(offers, enc.vocab), root, tables.ENCODER_FEATURES)
    features = read_table(spark, root, tables.ENCODER_FEATURES)
    examples_uri = write_table(
        training_examples(pairs, features).repartition(max(4, 2 * t.num_processes)),
        root,
        tables.ENCODER_EXAMPLES,
    )
    n_examples = read_table(spark, root, tables.ENCODER_EXAMPLES).count()
    version = content_version(
        {
            "encoder": enc.to_dict(),
            "train": {
                k: v
                for k, v in dataclasses.asdict(t).items()
                if k not in ("resume", "progress_s", "retries", "fallback_single")
            },
            "examples": n_examples,
            "seed": cfg.seed,
        }
    )
    out_dir = storage.absolute(model_dir(root, "encoder", version))
    args = dataclasses.asdict(
        TrainArgs(
            examples=storage.absolute(examples_uri),
            model_dir=out_dir,
            encoder=enc.to_dict(),
            feed=t.feed,
            epochs=t.epochs,
            batch_size=t.batch_size,
            lr=t.lr,
            temperature=t.temperature,
            queue_size=t.queue_size,
            seed=cfg.seed,
            resume=t.resume,
            use_gpu=t.use_gpu,
            threads=t.threads,
            progress_s=t.progress_s,
        )
    )
    trained = launch(
        train_worker, args, t.num_processes, t.local_mode, t.use_gpu, t.retries, t.fallback_single
    )
    model = load(out_dir)
    # Evaluation on the test pairs, every method on the same sampled queries.
    queries, targets = sample_queries(pairs, t.eval_queries, cfg.seed)
    warm = warm_offers(pairs)
    warm_ids = {r["offer_id"] for r in warm.where(warm.offer_id.isin([int(q) for q in queries])).collect()}
    is_warm = np.array([int(q) in warm_ids for q in queries])
    k = t.eval_k
    ranked = {
        "encoder": encoder_top_k(spark, model, features, warm, queries, k, use_ids=True),
        "content_only": encoder_top_k(spark, model, features, warm, queries, k, use_ids=False),
        "cooccurrence": cooccurrence_top_k(pairs, queries, k),
        "popularity": popularity_top_k(pairs, queries, k),
    }
    figures: dict[str, dict[str, Any]] = {}
    for subset, mask in (("warm", is_warm), ("cold", ~is_warm)):
        tg = [targets[i] for i in np.flatnonzero(mask)]
        figures[subset] = {
            name: {
                f"recall_at_{kk}": round(recall_at_k(r[mask], tg, kk), 4) for kk in (10, 50, 100) if kk <= k
            }
            | {"mrr": round(mrr(r[mask], tg, k), 4)}
            for name, r in ranked.items()
        } | {"queries": int(mask.sum())}
    r50 = {name: figures["warm"][name].get("recall_at_50") for name in ranked}
    c50 = {name: figures["cold"][name].get("recall_at_50") for name in ranked}
    last = trained["history"][-1]
    return {
        "recall_at_50": r50,
        "cold_recall_at_50": c50,
        "examples_per_s": round(last["examples_per_s"], 1),
        "feed": t.feed,
        "evaluation": figures,
        "training": {**trained, "examples": n_examples, "model_version": version},
        "rows_out": n_examples,
        "outputs": {"encoder/train_examples": examples_uri, "encoder model": out_dir},
        "summary": [
            f"{n_examples:,} training pairs, {len(trained['history'])} epochs on {trained['world']} processes "
            f"({t.feed} feed), last epoch loss {last['loss']:.3f}, {last['examples_per_s']:,.0f} examples/s",
            *([f"WARNING: {trained['fallback']}"] if "fallback" in trained else []),
            "Recall@50 warm: " + ", ".join(f"{m} {v}" for m, v in r50.items()),
            "Recall@50 cold: "
            + ", ".join(f"{m} {v}" for m, v in c50.items())
            + f" ({figures['cold']['queries']} cold of {len(queries)} queries)",
        ],
    }


if __name__ == "__main__":
    job_main("train_encoder", run, __doc__)
