"""The one epoch loop of every training: batches in, one optimisation step each, a history out.

What differs between trainings (the model, the loss, the optimizers, what a step counts) is the
``step`` function; what they share is here: progress lines on rank 0, totals over every rank (the
mean loss over all ranks' steps, throughput by the slowest rank), and the per-epoch history that the
stages' metrics show (``{"epoch", "loss", "steps", "<unit>_per_s", ...}``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from retrieval.progress import Progress
from retrieval.training.distributed import epoch_totals

log = logging.getLogger(__name__)

StepOutput = float | tuple[float, dict[str, float]]


def run_epochs(
    name: str,
    epochs: int,
    batches: Callable[[int], Iterable[Any]],
    step: Callable[[Any], StepOutput],
    units: Sequence[str] = (),
    steps: int | None = None,
    start: int = 0,
    history: list[dict[str, Any]] | None = None,
    on_epoch_end: Callable[[int, list[dict[str, Any]]], None] | None = None,
    progress_s: float = 30.0,
    rank: int = 0,
) -> list[dict[str, Any]]:
    """Runs epochs ``start .. epochs - 1``; returns the history (``history`` so far, plus one entry each).

    Args:
        name: what the progress lines say (``"encoder"``, ``"reranker neural_ndcg"``).
        batches: epoch -> its batches (a feed's ``epoch``).
        step: one optimisation step on a batch -> its loss, or (loss, {unit: count}) for the ``units``
            the throughput is reported in (``{"examples": 1024}``).
        units: the counts every step reports; the history gets ``<unit>_per_s`` for each (every rank
            must report the same units: they are summed across ranks).
        steps: batches per epoch, when known (progress lines then show the share done).
        on_epoch_end: ``(epoch, history)`` after each epoch (checkpoints).
        rank: only rank 0 logs.
    Raises:
        ValueError: an epoch had no batches (a feed that read nothing must not pass silently).
    """
    history = list(history or [])
    for epoch in range(start, epochs):
        t0, losses, counts = time.perf_counter(), [], dict.fromkeys(units, 0.0)
        progress = Progress(
            f"{name} epoch {epoch + 1}/{epochs}", steps, "steps", progress_s, log, enabled=rank == 0
        )
        with progress:
            for batch in batches(epoch):
                out = step(batch)
                loss, counted = out if isinstance(out, tuple) else (out, {})
                losses.append(float(loss))
                for unit, n in counted.items():
                    counts[unit] += float(n)
                progress.update(1, loss=f"{losses[-1]:.4f}")
        if not losses:
            raise ValueError(f"{name}: epoch {epoch} had no batches (the feed yielded nothing)")
        totals, seconds = epoch_totals(
            [sum(losses), float(len(losses)), *counts.values()], time.perf_counter() - t0
        )
        entry: dict[str, Any] = {
            "epoch": epoch,
            "loss": round(totals[0] / totals[1], 6),
            "steps": len(losses),
        }
        for unit, total in zip(units, totals[2:], strict=True):
            entry[f"{unit}_per_s"] = round(total / max(seconds, 1e-9), 1)
        history.append(entry)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    return history
