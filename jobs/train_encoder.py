"""train_encoder: the two-tower offer encoder, trained on co-click pairs with TorchDistributor.

    ./submit.sh train_encoder [--config conf/local.yaml] [--set training.feed=petastorm] [--set training.resume=true]

Featurizes every offer (hashed title words and character n-grams, category, price bucket, seller,
offer id), materialises the training pairs with both sides' features as parquet, and trains the
tower with sampled softmax over in-batch negatives (logQ-corrected) in `training.num_processes` DDP
processes fed by the `training.feed` reader; a checkpoint per epoch under models/encoder/runs/<config hash>/; the final weights are published
to models/encoder/<weights hash>/, the version that embeddings, the index and the recs name.
Then Recall@{10,50,100} and MRR on the test pairs for the encoder, the same model without id
embeddings (content only), item co-occurrence and popularity, for warm and for cold query offers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from retrieval import commit, storage, tables
from retrieval.artifacts import content_version, publish_model, retain_models, run_dir
from retrieval.cli import job_main
from retrieval.config import Config, runtime
from retrieval.encoder.model import OfferTower, TowerConfig
from retrieval.encoder.spark_encoder import featurize_offers, training_examples
from retrieval.encoder.spark_eval import encoder_metrics, evaluate_encoder
from retrieval.encoder.worker import EncoderWorkerArgs, train_worker
from retrieval.spark_tables import read_table, write_table
from retrieval.training.models import load_model
from retrieval.training.spark_launch import launch


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, enc, rt = cfg.paths.root, cfg.encoder, runtime(cfg, "encoder")
    offers, pairs = read_table(spark, root, tables.OFFERS), read_table(spark, root, tables.PAIRS)
    tower = TowerConfig.from_section(enc)
    write_table(featurize_offers(offers, tower.vocab), root, tables.ENCODER_FEATURES)
    features = read_table(spark, root, tables.ENCODER_FEATURES)
    examples = training_examples(pairs, features).repartition(max(4, 2 * rt.num_processes))
    examples_uri = write_table(examples, root, tables.ENCODER_EXAMPLES)
    n_examples = read_table(spark, root, tables.ENCODER_EXAMPLES).count()
    hyper = {
        k: v for k, v in dataclasses.asdict(enc).items() if k not in ("eval_queries", "eval_k", "training")
    }
    described = {"tower": tower.to_dict(), "encoder": hyper, "examples": n_examples, "seed": cfg.seed}
    out_dir = storage.absolute(run_dir(root, "encoder", content_version(described)))
    args = EncoderWorkerArgs(
        examples=storage.absolute(examples_uri),
        model_dir=out_dir,
        tower=tower.to_dict(),
        encoder=dataclasses.asdict(enc),
        runtime=dataclasses.asdict(rt),
        seed=cfg.seed,
        progress_s=cfg.progress_s,
        resume=rt.resume,
    )
    trained = launch(train_worker, dataclasses.asdict(args), rt)
    data = {"examples": commit.version_of(examples_uri)}
    version, final = publish_model(root, "encoder", out_dir, {**described, "data_version": data})
    retain_models(root, "encoder", {version}, {out_dir})
    model = load_model(OfferTower, final)
    figures = evaluate_encoder(spark, model, pairs, features, enc.eval_queries, enc.eval_k, cfg.seed)
    metrics = encoder_metrics(figures, trained, n_examples, version, rt.feed)
    return {**metrics, "outputs": {"encoder/train_examples": examples_uri, "encoder model": final}}


if __name__ == "__main__":
    job_main("train_encoder", run, __doc__)
