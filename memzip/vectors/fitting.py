"""Fitting [mem] vectors for a group of chunks, as both engines ask for them: fitted in float
with the storage rounding in the loop (memzip/vectors/optimize.py), then rounded to storage; and
what the chunks cost without them (the vectors' worth, set against their bytes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memzip.format import vectors as storage
from memzip.layout import Layout
from memzip.vectors.chunking import token_costs
from memzip.vectors.optimize import ChunkFit, VectorSpace, fit_chunks
from memzip.vectors.recipes import Recipe


@dataclass
class StoredFit:
    """Chunks fitted together and their vectors as stored."""

    fits: list[ChunkFit]
    packed: np.ndarray  # stored vectors [n, M, width]
    scales: np.ndarray | None  # per-vector scales of integer storage


def fit_and_store(loaded, chunks: list[list[int]], recipe: Recipe, space: VectorSpace, layout: Layout,
                  seed: int = 0, on_step=None) -> StoredFit:
    """Fit [mem] vectors (with the storage rounding in the loop) and round them to storage."""
    fits = fit_chunks(loaded.model, chunks, recipe, space, layout, seed=seed, on_step=on_step)
    packed, scales = storage.pack(np.stack([f.vectors.numpy() for f in fits]), space.storage)
    return StoredFit(fits, packed, scales)


def cost_without_vectors(loaded, layout: Layout, chunks: list[list[int]]) -> list[float]:
    """What each chunk costs (bits) from the same start without its vectors: what they saved."""
    start = list(layout.prefix + layout.infix)
    return [sum(token_costs(loaded.model, chunk, start, window=len(chunk))) / np.log(2) for chunk in chunks]
