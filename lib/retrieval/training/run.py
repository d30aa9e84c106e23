"""One rank of a training run, the way every worker (encoder, reranker, image encoder) goes through it:

    run = TrainingRun(args, model_dir, runtime, seed, progress_s, resume)   # rank, world, device
    model = Model(cfg).to(run.device); net = run.wrap(model); optimizers = [...]
    feed = run.feed(examples, batch_size, to_batch)                          # this rank's share
    start, history = run.begin(model, optimizers)                            # resume, or from scratch
    history = run.epochs("encoder", epochs, feed, step, units, model, optimizers, start, history)
    return run.finish(model, extra, feed)                                    # rank 0 saves; a summary

A checkpoint after every epoch (rank 0 writes, every rank waits), the final model saved by rank 0, and
the same summary returned on every rank (TorchDistributor returns an arbitrary rank's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from retrieval.training import checkpoints
from retrieval.training.distributed import average_gradients, has_sparse_gradients, start_process, wrap
from retrieval.training.feed import Batcher, make_feed
from retrieval.training.loop import StepOutput, run_epochs
from retrieval.training.models import save_model


class TrainingRun:
    """This process's part of a training run (from the launcher's environment) and where it checkpoints."""

    def __init__(
        self, args: dict[str, Any], model_dir: str, runtime: Any, seed: int, progress_s: float, resume: bool
    ) -> None:
        self.args, self.model_dir, self.runtime, self.seed = args, model_dir, runtime, seed
        self.progress_s, self.resume = progress_s, resume
        self.rank, self.world, self.local_rank, self.device = start_process(
            runtime.use_gpu, runtime.threads, seed
        )

    def wrap(self, model: Any) -> Any:
        """``model`` in DDP when there are several ranks: what the training step calls (a model with
        sparse gradients stays as it is, and its step calls :meth:`sync_gradients`)."""
        self._sparse = self.world > 1 and has_sparse_gradients(model)
        self._model = model
        return wrap(model, self.world, self.local_rank, self.device)

    def sync_gradients(self) -> None:
        """After the backward pass: every rank's gradients averaged, where DDP does not (sparse ones)."""
        if self._sparse:
            average_gradients(self._model)

    def feed(self, path: str, batch_size: int, to_batch: Batcher, **kw: Any) -> Any:
        """This rank's feed (``runtime.feed``) over the parquet rows under ``path``."""
        return make_feed(
            self.runtime.feed,
            path,
            batch_size,
            to_batch,
            rank=self.rank,
            world=self.world,
            seed=self.seed,
            **kw,
        )

    def begin(self, model: Any, optimizers: list[Any]) -> tuple[int, list[Any]]:
        """(first epoch, history so far): resumed from the last checkpoint, or from scratch."""
        return checkpoints.begin(self.model_dir, model, optimizers, self.device, self.rank, self.resume)

    def epochs(
        self,
        name: str,
        epochs: int,
        feed: Any,
        step: Callable[[Any], StepOutput],
        units: Sequence[str],
        model: Any,
        optimizers: list[Any],
        start: int,
        history: list[Any],
    ) -> list[dict[str, Any]]:
        """``training.loop.run_epochs`` over ``feed``, a checkpoint of ``model`` and ``optimizers`` after each epoch."""

        def checkpoint(epoch: int, so_far: list[dict[str, Any]]) -> None:
            checkpoints.end_epoch(self.model_dir, epoch, model, optimizers, so_far, self.args, self.rank)

        return run_epochs(
            name,
            epochs,
            feed.epoch,
            step,
            units=units,
            steps=feed.steps,
            start=start,
            history=history,
            on_epoch_end=checkpoint,
            progress_s=self.progress_s,
            rank=self.rank,
        )

    def finish(
        self, model: Any, extra: dict[str, Any], feed: Any, save: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """Rank 0 saves the final model (``save_model``, with ``extra`` in its config, or ``save()``);
        the process group closes; the summary every rank returns."""
        checkpoints.finish(self.rank, save or (lambda: save_model(model.cpu(), self.model_dir, extra)))
        return {
            "history": extra["history"],
            "world": self.world,
            "feed": self.runtime.feed,
            "steps_per_epoch": feed.steps,
        }
