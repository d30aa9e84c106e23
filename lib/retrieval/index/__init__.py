"""Sharded faiss indices and recommendation tables."""
