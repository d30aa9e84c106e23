"""Sampled softmax over in-batch negatives with logQ correction (Yi et al., RecSys 2019).

For a batch of (query, positive candidate) pairs, every other candidate of the batch is a negative.
In-batch negatives are sampled in proportion to how often items appear as positives, so popular
items are over-represented as negatives; subtracting log Q(item) from each logit corrects that
sampling bias. Accidental hits (a negative that is the row's positive item, or its query item) are
masked out, and extra negatives (e.g. a queue of recent candidate embeddings) can join the softmax.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def sampled_softmax(
    query: torch.Tensor,
    candidate: torch.Tensor,
    candidate_ids: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float = 0.05,
    query_ids: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
    extra_ids: torch.Tensor | None = None,
    extra_log_q: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean cross-entropy of each query against its own candidate among all candidates.

    Args:
        query: [B, d] query embeddings.
        candidate: [B, d] candidate embeddings; row i is query i's positive.
        candidate_ids: [B] int64 item ids of the candidates (accidental-hit detection).
        log_q: [B] log sampling probability of each candidate (e.g. log of its share of positives).
        temperature: logits are ``q . c / temperature - log_q``.
        query_ids: [B] int64 item ids of the queries, when queries are items too: a candidate equal to
            the query item is not a negative either.
        extra: [M, d] extra negatives (a cross-batch queue), with ``extra_ids`` [M] and ``extra_log_q`` [M].
        reduction: "mean" (scalar) or "none" ([B], one loss per query).

    Returns: the loss.
    """
    if query.shape != candidate.shape or query.dim() != 2:
        raise ValueError(
            f"query and candidate must both be [B, d]; got {tuple(query.shape)} and {tuple(candidate.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    cands, ids, lq = candidate, candidate_ids, log_q
    if extra is not None:
        if extra_ids is None or extra_log_q is None:
            raise ValueError("extra negatives need extra_ids and extra_log_q")
        cands = torch.cat([candidate, extra])
        ids = torch.cat([candidate_ids, extra_ids])
        lq = torch.cat([log_q, extra_log_q])
    logits = query @ cands.T / temperature - lq.unsqueeze(0)  # [B, B + M]
    b = len(query)
    positive = torch.arange(b, device=query.device)
    hit = ids.unsqueeze(0) == candidate_ids.unsqueeze(1)  # the row's positive item elsewhere in the batch
    if query_ids is not None:
        hit = hit | (ids.unsqueeze(0) == query_ids.unsqueeze(1))
    hit[positive, positive] = False  # the positive itself stays
    logits = logits.masked_fill(hit, torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, positive, reduction=reduction)
