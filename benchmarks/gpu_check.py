"""GPU check of the pure torch training code (no Spark, no pyarrow): run where CUDA is, e.g. the lent GPU.

    python benchmarks/gpu_check.py [--steps 40]

Trains for a few steps on random data of the pipeline's shapes and prints examples/s on CPU and on
CUDA (when present), side by side: the DNN reranker (13 features + 64-d text vectors, slates of 120
and 300 offers, NDCGLoss2++ and NeuralNDCG@10, MLP and self-attention) and the two-tower encoder
(batch 1024 pairs, sampled softmax, dense embeddings on CUDA as train_encoder uses with nccl), and
the image encoder (P x K = 32 x 4 images of 64x64 and 128x128, triplet loss with batch-all mining, the
CPU width 16 and a GPU width 32); and the training checkpoints (save after each epoch through
retrieval.storage, prune to the last two, resume onto the device) of an encoder of the default size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))


def rerank_rate(device: str, kind: str, loss: str, length: int, steps: int) -> float:
    import numpy as np
    import torch

    from retrieval.ranking.dnn import Reranker, RerankerConfig
    from retrieval.ranking.losses import LOSSES

    torch.manual_seed(0)
    b, f, d = 32, 13, 64
    cfg = RerankerConfig(features=[f"f{i}" for i in range(f)], text_dim=d, kind=kind)
    model = Reranker(cfg, np.zeros(f), np.ones(f)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(b, length, f, device=device)
    q, t = torch.randn(b, d, device=device), torch.randn(b, length, d, device=device)
    y = torch.randint(0, 3, (b, length), device=device)
    valid = torch.ones(b, length, dtype=torch.bool, device=device)
    kw = {"k": 10, "sinkhorn_iterations": 20} if loss == "neural_ndcg" else {}
    for i in range(steps + 3):
        if i == 3:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        out = LOSSES[loss](model(x, q, t, valid), y, **kw)
        opt.zero_grad()
        out.backward()
        opt.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * b * length / (time.perf_counter() - t0)


def encoder_rate(device: str, steps: int) -> float:
    import numpy as np
    import torch

    from retrieval.encoder.features import OfferFeatures
    from retrieval.encoder.model import OfferTower, TowerConfig, make_optimizers
    from retrieval.encoder.train import PairBatch, train_step

    torch.manual_seed(0)
    cfg = TowerConfig(sparse=not device.startswith("cuda"))
    model = OfferTower(cfg).to(device)
    opts = make_optimizers(model, 0.01)
    rng = np.random.default_rng(0)
    bsz, v = 1024, cfg.vocab

    def side() -> OfferFeatures:
        return OfferFeatures(
            rng.integers(1, v.words, (bsz, v.max_words)),
            rng.integers(1, v.chars, (bsz, v.max_chars)),
            rng.integers(1, v.categories, bsz),
            rng.integers(1, v.prices, bsz),
            rng.integers(1, v.sellers, bsz),
            rng.integers(1, v.ids, bsz),
        )

    batch = PairBatch(side(), side(), np.arange(bsz), np.arange(bsz) + bsz, np.zeros(bsz, np.float32))
    model.train()
    for i in range(steps + 3):
        if i == 3:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        train_step(model, opts, batch, 0.05, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * bsz / (time.perf_counter() - t0)


def visual_rate(device: str, size: int, width: int, steps: int) -> float:
    import torch

    from retrieval.visual.losses import batch_all
    from retrieval.visual.model import ImageEncoder, ImageEncoderConfig

    torch.manual_seed(0)
    model = ImageEncoder(ImageEncoderConfig(width=width, size=size)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    x = torch.rand(128, 3, size, size, device=device)
    y = torch.arange(32, device=device).repeat_interleave(4)
    for i in range(steps + 3):
        if i == 3:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        loss = batch_all(model(x), y, margin=0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * 128 / (time.perf_counter() - t0)


def checkpoint_roundtrip(device: str, epochs: int = 3) -> dict[str, object]:
    """The training checkpoints on ``device`` (encoder/distributed.py, through retrieval.storage): an
    encoder of the pipeline's size with its optimizers' state saved after each of ``epochs`` epochs
    (pruned to the last two), then resumed onto the device: the loaded tensors equal the saved ones.
    Returns the checkpoint size, save and resume MB/s and what was kept."""
    import tempfile

    import torch

    from retrieval import storage
    from retrieval.encoder.model import OfferTower, TowerConfig, make_optimizers
    from retrieval.training.checkpoints import begin, save_checkpoint

    cfg = TowerConfig(sparse=not device.startswith("cuda"))
    model = OfferTower(cfg).to(device)
    optimizers = make_optimizers(model, 0.01)
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "model")
        begin(root, model, optimizers, device, 0, resume=False)
        t0 = time.perf_counter()
        for epoch in range(epochs):
            save_checkpoint(root, epoch, model, optimizers, [{"epoch": epoch}], {"device": device})
        save_s = (time.perf_counter() - t0) / epochs
        kept = [f.rsplit("/", 1)[-1] for f in storage.list_files(os.path.join(root, "checkpoints"))]
        size = os.path.getsize(os.path.join(root, "checkpoints", kept[-1]))
        again = OfferTower(cfg).to(device)
        t0 = time.perf_counter()
        start, history = begin(root, again, make_optimizers(again, 0.01), device, 0, resume=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        load_s = time.perf_counter() - t0
    same = all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    )
    where = {str(t.device) for t in again.state_dict().values()}
    return {
        "checkpoint_mb": round(size / 1e6, 1),
        "save_mb_per_s": round(size / 1e6 / save_s),
        "resume_mb_per_s": round(size / 1e6 / load_s),
        "kept": kept,
        "resumed_at_epoch": start,
        "history": len(history),
        "equal": same,
        "loaded_on": sorted(where),
    }


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--cpu-steps", type=int, default=5)
    a = p.parse_args()
    devices = ["cpu"] + (["cuda:0"] if torch.cuda.is_available() else [])
    out: dict[str, object] = {
        "kind": "speed",
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
    }
    print(json.dumps(out))
    for dev in devices:
        steps = a.steps if dev != "cpu" else a.cpu_steps
        for size, width in ((64, 16), (64, 32), (128, 32)):
            rate = visual_rate(dev, size, width, steps)
            out[f"visual_{size}px_w{width}_images_per_s@{dev}"] = round(rate)
            print(f"visual   {dev:<7} {size}px width {width:<3} {rate:>12,.0f} images/s", flush=True)
        try:
            ck = checkpoint_roundtrip(dev)
        except ImportError as e:  # fsspec missing where this runs
            ck = {"skipped": str(e)}
        out[f"checkpoint@{dev}"] = ck
        print(f"checkpoint {dev:<7} {ck}", flush=True)
        rate = encoder_rate(dev, steps)
        out[f"encoder_examples_per_s@{dev}"] = round(rate)
        print(f"encoder  {dev:<7} {rate:>12,.0f} pairs/s", flush=True)
        for kind in ("mlp", "attention"):
            for loss in ("ndcg_loss2pp", "neural_ndcg"):
                for length in (120, 300):
                    rate = rerank_rate(dev, kind, loss, length, steps)
                    out[f"reranker_{kind}_{loss}_L{length}_offers_per_s@{dev}"] = round(rate)
                    print(
                        f"reranker {dev:<7} {kind:<9} {loss:<12} L={length:<3} {rate:>12,.0f} offers/s",
                        flush=True,
                    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
