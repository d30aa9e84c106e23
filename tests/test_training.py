"""What every training shares (retrieval.training), on toy models in one process: the epoch loop's
history, resuming from a checkpoint, one save/load for every model, components by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from retrieval.config import ConfigError, TrainingSection
from retrieval.training.components import resolve
from retrieval.training.loop import run_epochs
from retrieval.training.models import load_model, load_part, save_model


def test_run_epochs_reports_loss_steps_and_throughput_per_unit() -> None:
    seen: list[int] = []

    def step(batch: int) -> tuple[float, dict[str, float]]:
        return float(batch), {"examples": 10, "offers": 3}

    history = run_epochs(
        "toy",
        3,
        lambda e: range(e, e + 4),
        step,
        units=("examples", "offers"),
        start=1,
        on_epoch_end=lambda e, h: seen.append(e),
    )
    assert [h["epoch"] for h in history] == [1, 2] and seen == [1, 2]
    assert history[0]["loss"] == pytest.approx((1 + 2 + 3 + 4) / 4) and history[0]["steps"] == 4
    assert set(history[0]) == {"epoch", "loss", "steps", "examples_per_s", "offers_per_s"}
    assert history[0]["examples_per_s"] > history[0]["offers_per_s"] > 0


def test_an_epoch_without_batches_fails_loudly() -> None:
    with pytest.raises(ValueError, match="epoch 0 had no batches"):
        run_epochs("toy", 1, lambda e: [], lambda b: 0.0)


class Toy(torch.nn.Module):
    CONFIG_KEY = "toy"

    class Cfg:
        def __init__(self, width: int) -> None:
            self.width = width

        def to_dict(self) -> dict[str, Any]:
            return {"width": self.width}

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> Toy:
        return cls(Toy.Cfg(**d))

    def __init__(self, cfg: Toy.Cfg) -> None:
        super().__init__()
        self.cfg, self.lin = cfg, torch.nn.Linear(cfg.width, 1)


def test_save_model_and_load_model_round_trip_with_parts(tmp_path: Path) -> None:
    model, part = Toy(Toy.Cfg(3)), torch.nn.Linear(2, 2)
    save_model(model, str(tmp_path), {"history": [1]}, parts={"pool": part})
    again = load_model(Toy, str(tmp_path))
    assert again.cfg.width == 3 and torch.equal(again.lin.weight, model.lin.weight)
    other = torch.nn.Linear(2, 2)
    assert load_part(other, str(tmp_path), "pool") and torch.equal(other.weight, part.weight)
    assert not load_part(other, str(tmp_path), "missing")


def test_a_worker_resumes_from_its_checkpoint_in_one_process(tmp_path: Path) -> None:
    """TrainingRun: begin / epochs / finish in this process; a second run with resume goes on from
    the last epoch's checkpoint instead of starting again."""
    from retrieval.training.run import TrainingRun

    class Feed:
        steps = 2

        def epoch(self, epoch: int) -> list[torch.Tensor]:
            return [torch.ones(4, 3), torch.zeros(4, 3)]

    def train(epochs: int, resume: bool) -> dict[str, Any]:
        run = TrainingRun({"epochs": epochs}, str(tmp_path), TrainingSection(num_processes=1), 0, 0, resume)
        model = Toy(Toy.Cfg(3))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        start, history = run.begin(model, [opt])

        def step(x: torch.Tensor) -> float:
            loss = model.lin(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return float(loss.detach())

        history = run.epochs("toy", epochs, Feed(), step, (), model, [opt], start, history)
        return run.finish(model, {"history": history}, Feed())

    first = train(2, resume=False)
    again = train(3, resume=True)
    assert [h["epoch"] for h in again["history"]] == [0, 1, 2] and again["history"][:2] == first["history"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch-0001.pt", "epoch-0002.pt"]
    assert load_model(Toy, str(tmp_path)).cfg.width == 3


def test_components_are_resolved_by_name_with_their_arguments() -> None:
    def margin_loss(x: float, margin: float = 0.2) -> float:
        return x + margin

    fn = resolve("m", {"margin": 1.0}, {"m": margin_loss}, "visual.loss")
    assert fn(1.0) == 2.0
    with pytest.raises(ConfigError, match=r"visual\.loss\.name: unknown 'n'; choose one of m"):
        resolve("n", {}, {"m": margin_loss}, "visual.loss")
    with pytest.raises(ConfigError, match=r"visual\.loss\.args: m takes no temperature"):
        resolve("m", {"temperature": 2}, {"m": margin_loss}, "visual.loss")


def _average_on_rank(rank: int, world: int, store: str, out: str) -> None:
    import os

    import torch.distributed as dist

    from retrieval.training.distributed import average_gradients

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world)})
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.EmbeddingBag(50, 4, mode="sum", sparse=True), torch.nn.Linear(4, 1))
    ids = (
        torch.tensor([[1, 2, 3], [3, 4, 5]]) if rank == 0 else torch.tensor([[3, 7, 8], [9, 9, 1], [2, 2, 2]])
    )
    model(ids).sum().backward()
    average_gradients(model)
    emb, lin = model[0].weight.grad.to_dense(), model[1].weight.grad
    torch.save({"emb": emb, "lin": lin}, f"{out}-{rank}.pt")
    dist.destroy_process_group()


def test_sparse_gradients_are_averaged_across_ranks_as_ddp_would(tmp_path: Path) -> None:
    """Two gloo processes, each with its own batch: after average_gradients both hold the mean of the
    two ranks' gradients (the sparse embedding's as rows, the dense layer's by all-reduce)."""
    import torch.multiprocessing as mp

    out = str(tmp_path / "grad")
    mp.spawn(_average_on_rank, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    got = [torch.load(f"{out}-{r}.pt") for r in range(2)]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.EmbeddingBag(50, 4, mode="sum", sparse=True), torch.nn.Linear(4, 1))
    for ids in (torch.tensor([[1, 2, 3], [3, 4, 5]]), torch.tensor([[3, 7, 8], [9, 9, 1], [2, 2, 2]])):
        model(ids).sum().backward()  # gradients add up: the sum of both ranks' batches
    want_emb, want_lin = model[0].weight.grad.to_dense() / 2, model[1].weight.grad / 2
    for g in got:
        assert torch.allclose(g["emb"], want_emb) and torch.allclose(g["lin"], want_lin)
