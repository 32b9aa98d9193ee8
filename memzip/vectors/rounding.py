"""The optimizer's view of vector storage: the rounding of memzip/format/vectors.py, in torch,
with a gradient.

The optimizer sees the stored values, not the float32 ones (`as_stored`): its forward pass
uses what storage will keep, and its gradient passes straight through the rounding. So a chunk
is judged by the same vectors that extraction will read, and low precisions that would fail if
rounded after the fact still decode (quantization-aware training).

A vector held as a code in a random subspace is code @ basis (`expand`); the optimizer searches
the subspace directly. A vector holds far fewer tokens than its bits could index (the paper's
Eq. 1 utilization is a few percent), so a subspace of a fraction of d_model dimensions might
hold much of the text at a fraction of the bytes (docs/capacity.md has what it measured).
"""

from __future__ import annotations

import numpy as np
import torch

from memzip.format import vectors as storage


def as_stored(vectors: torch.Tensor, dtype: str) -> torch.Tensor:
    """The stored values of float32 `vectors` (as `storage.pack` rounds them), with a
    straight-through gradient."""
    if dtype == "float32":
        return vectors
    if dtype == "float16":
        stored = vectors.detach().half().float()
    else:
        values = vectors.detach().float()
        scale = values.abs().amax(dim=-1).clamp_min(1e-12) / storage.levels(dtype)
        limit = storage.levels(dtype)
        stored = torch.round(values / scale[..., None]).clamp(-limit, limit) * scale[..., None]
    return vectors + (stored - vectors).detach()


def code_basis(code_dims: int | None, d_model: int) -> torch.Tensor | None:
    return None if not code_dims else torch.from_numpy(storage.basis(code_dims, d_model))


def expand(codes: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    """Codes [..., code_dims] -> vectors [..., d_model]; without a basis codes are the vectors."""
    return codes if basis is None else codes @ basis.to(codes.device)


def stored_vectors(stored: np.ndarray, scales: np.ndarray | None, dtype: str, code_dims: int | None,
                   d_model: int) -> torch.Tensor:
    """What extraction feeds the model: the stored rows unpacked (and expanded), float32 [C, M, d]."""
    rows = torch.from_numpy(storage.unpack(stored, scales, dtype, code_dims or d_model))
    return expand(rows, code_basis(code_dims, d_model))
