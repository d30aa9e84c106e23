"""train_encoder: the two-tower offer encoder, trained on co-click pairs with TorchDistributor.

    ./submit.sh train_encoder [--config conf/local.yaml] [--set training.feed=petastorm] [--set training.resume=true]

Featurizes every offer (hashed title words and character n-grams, category, price bucket, seller,
offer id), materialises the training pairs with both sides' features as parquet, and trains the
tower with sampled softmax over in-batch negatives (logQ-corrected) in `training.num_processes` DDP
processes fed by the `training.feed` reader; a checkpoint per epoch under models/encoder/runs/<config
hash>/; the weights are published to models/encoder/<weights hash>/, which the embeddings name.
With `encoder.baseline` a content-only tower (content_trained, models/encoder_content/) trains beside
it on the same batches. Then Recall@{10,50,100} and MRR on the test pairs for the encoder, it without
ids (content_only), content_trained, co-occurrence and popularity, for warm and cold query offers; on
the synthetic marketplace also the generator's own ranking (the ceiling, and content alone's part).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from retrieval import commit, storage, tables
from retrieval.artifacts import content_version, publish_towers, run_dir
from retrieval.cli import job_main
from retrieval.config import Config, runtime
from retrieval.encoder.model import OfferTower, TowerConfig, TowerSet
from retrieval.encoder.spark_encoder import (
    featurize_offers,
    training_examples,
    uniform_pool,
    with_trained_ids,
)
from retrieval.encoder.spark_eval import encoder_metrics, evaluate_encoder
from retrieval.encoder.worker import EncoderWorkerArgs, towers, train_worker
from retrieval.spark_tables import read_table, write_table
from retrieval.synth.oracle import ceiling_rankings
from retrieval.training.models import load_model
from retrieval.training.spark_launch import launch

MODEL_NAMES = {"encoder": "encoder", "content_trained": "encoder_content"}  # tower -> models/<name>
EVALUATION = ("eval_queries", "eval_k", "ceiling_queries")  # encoder settings that do not change the model


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, enc, rt = cfg.paths.root, cfg.encoder, runtime(cfg, "encoder")
    offers, pairs = read_table(spark, root, tables.OFFERS), read_table(spark, root, tables.PAIRS)
    tower = TowerConfig.from_section(enc)
    write_table(featurize_offers(offers, tower.vocab), root, tables.ENCODER_FEATURES)
    features = with_trained_ids(read_table(spark, root, tables.ENCODER_FEATURES), pairs, enc.min_id_pairs)
    examples = training_examples(pairs, features).repartition(max(4, 2 * rt.num_processes))
    outputs = {"encoder/train_examples": write_table(examples, root, tables.ENCODER_EXAMPLES)}
    n_examples = read_table(spark, root, tables.ENCODER_EXAMPLES).count()
    pool, catalogue = "", 0
    if enc.negatives == "mixed":
        drawn, catalogue = uniform_pool(features, pairs, enc.uniform_pool, cfg.seed)
        pool = outputs["encoder/uniform_pool"] = write_table(drawn, root, tables.ENCODER_UNIFORM_POOL)
    hyper = {k: v for k, v in dataclasses.asdict(enc).items() if k not in ("training", *EVALUATION)}
    described = {"tower": tower.to_dict(), "encoder": hyper, "examples": n_examples, "seed": cfg.seed}
    out_dir = storage.absolute(run_dir(root, "encoder", content_version(described)))
    args = EncoderWorkerArgs(
        examples=storage.absolute(outputs["encoder/train_examples"]),
        model_dir=out_dir,
        tower=tower.to_dict(),
        encoder=dataclasses.asdict(enc),
        runtime=dataclasses.asdict(rt),
        seed=cfg.seed,
        progress_s=cfg.progress_s,
        resume=rt.resume,
        pool=storage.absolute(pool) if pool else "",
        catalogue=catalogue,
    )
    trained = launch(train_worker, dataclasses.asdict(args), rt)
    data = {"examples": commit.version_of(outputs["encoder/train_examples"])}
    provenance = {**described, "data_version": data}
    names = {t: MODEL_NAMES[t] for t in towers(tower.to_dict(), enc.baseline)}
    published = publish_towers(root, out_dir, names, provenance)
    outputs |= {f"{t} model": path for t, (_, path) in published.items()}
    models = {t: load_model(OfferTower, path) for t, (_, path) in published.items()}
    ceiling = ceiling_rankings(root)
    figures = evaluate_encoder(spark, TowerSet.of(models), pairs, features, enc, cfg.seed, ceiling)
    version = published["encoder"][0]
    return {**encoder_metrics(figures, trained, n_examples, version, rt.feed), "outputs": outputs}


if __name__ == "__main__":
    job_main("train_encoder", run, __doc__)
