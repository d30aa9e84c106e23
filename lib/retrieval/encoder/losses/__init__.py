"""Retrieval losses, one module each, chosen by name from config (``getattr(losses, name)``)."""

from retrieval.encoder.losses.sampled_softmax import sampled_softmax

__all__ = ["sampled_softmax"]
