"""How [mem] vectors are stored, and the same rounding inside the optimizer.

A vector is fitted in float32 but stored smaller (docs/format.md §3):

- `float32`, `float16`: plain floats.
- `int8`: symmetric integers in -127..127 with one float32 scale per vector.
- `int6`, `int5`, `int4`, `int3`, `int2`: symmetric integers in -L..L, L = 2^(bits-1) - 1
  (int2 is ternary: -1, 0, +1), one float32 scale per vector, stored as `q + 2^(bits-1)` in
  `bits` bits each, packed big-endian into a uint8 row of ceil(D * bits / 8) bytes.

A vector can also be stored as a shorter *code* z of `code_dims` numbers: the vector is then
z @ B, with B a fixed random sign matrix (`basis`, defined bit for bit below and in
docs/format.md). The optimizer searches that subspace directly. A vector holds far fewer
tokens than its bits could index (the paper's Eq. 1 utilization is a few percent), so a
subspace of a fraction of d_model dimensions still holds much of the text at a fraction of the
bytes (the idea of measuring a landscape's intrinsic dimension with random subspaces).

The optimizer sees the stored values, not the float32 ones (`fake_quantize`): its forward pass
uses exactly what `unpack(pack(v))` returns, and its gradient passes straight through the
rounding. So a chunk is "done" by the same vectors that extraction will read, and low
precisions that would fail if rounded after the fact still decode (quantization-aware training).
"""

from __future__ import annotations

import math

import numpy as np
import torch

FLOAT_DTYPES = ("float32", "float16")
INT_BITS = {"int8": 8, "int6": 6, "int5": 5, "int4": 4, "int3": 3, "int2": 2}
STORAGE_DTYPES = FLOAT_DTYPES + tuple(INT_BITS)


def levels(dtype: str) -> int:
    """Largest integer magnitude of an integer storage dtype."""
    return 2 ** (INT_BITS[dtype] - 1) - 1


def is_packed(dtype: str) -> bool:
    """Stored as a bit-packed uint8 row rather than one element per dimension."""
    return dtype in INT_BITS and INT_BITS[dtype] < 8


def has_scales(dtype: str) -> bool:
    return dtype in INT_BITS


def numpy_dtype(dtype: str) -> np.dtype:
    if dtype in FLOAT_DTYPES:
        return np.dtype(dtype)
    return np.dtype(np.int8) if dtype == "int8" else np.dtype(np.uint8)


def stored_width(dtype: str, d_model: int) -> int:
    """Last dimension of the stored `vectors` tensor."""
    return math.ceil(d_model * INT_BITS[dtype] / 8) if is_packed(dtype) else d_model


def bytes_per_vector(dtype: str, d_model: int) -> int:
    return stored_width(dtype, d_model) * numpy_dtype(dtype).itemsize + (4 if has_scales(dtype) else 0)


def _scale(vectors: torch.Tensor, dtype: str) -> torch.Tensor:
    return vectors.abs().amax(dim=-1).clamp_min(1e-12) / levels(dtype)


def fake_quantize(vectors: torch.Tensor, dtype: str) -> torch.Tensor:
    """The stored values of float32 `vectors`, with a straight-through gradient."""
    if dtype == "float32":
        return vectors
    if dtype == "float16":
        stored = vectors.detach().half().float()
    else:
        scale = _scale(vectors.detach().float(), dtype)
        limit = levels(dtype)
        stored = torch.round(vectors.detach().float() / scale[..., None]).clamp(-limit, limit) * scale[..., None]
    return vectors + (stored - vectors).detach()


def pack(vectors: torch.Tensor, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """float32 [C, M, D] -> (stored array, float32 scales [C, M] or None)."""
    vectors = vectors.detach().float().cpu()
    if dtype in FLOAT_DTYPES:
        return vectors.numpy().astype(dtype), None
    scale = _scale(vectors, dtype)
    limit = levels(dtype)
    q = torch.round(vectors / scale[..., None]).clamp(-limit, limit).to(torch.int64).numpy()
    if dtype == "int8":
        return q.astype(np.int8), scale.numpy()
    bits = INT_BITS[dtype]
    unsigned = (q + 2 ** (bits - 1)).astype(np.uint8)  # 1 .. 2^bits - 1
    bit_planes = np.unpackbits(unsigned[..., None], axis=-1)[..., 8 - bits:]  # [C, M, D, bits]
    flat = bit_planes.reshape(*unsigned.shape[:-1], -1)
    return np.packbits(flat, axis=-1), scale.numpy()


def unpack_integers(stored: np.ndarray, dtype: str, d_model: int) -> np.ndarray:
    """The signed integers of a stored integer array, [C, M, D] int64."""
    if dtype == "int8":
        return stored.astype(np.int64)
    bits = INT_BITS[dtype]
    flat = np.unpackbits(stored, axis=-1)[..., :d_model * bits]
    planes = flat.reshape(*stored.shape[:-1], d_model, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)
    return planes.astype(np.int64) @ weights - 2 ** (bits - 1)


def unpack(stored: np.ndarray, scales: np.ndarray | None, dtype: str, d_model: int) -> torch.Tensor:
    """Stored array (+ scales) -> float32 [C, M, D], exactly what `fake_quantize` produced."""
    if dtype in FLOAT_DTYPES:
        return torch.from_numpy(np.ascontiguousarray(stored)).float()
    q = torch.from_numpy(unpack_integers(stored, dtype, d_model)).float()
    return q * torch.from_numpy(np.ascontiguousarray(scales)).float()[..., None]


# --- codes in a random subspace -----------------------------------------------------------------


def _splitmix64(index: np.ndarray) -> np.ndarray:
    """SplitMix64 output for states (index + 1) * golden ratio: a fixed, portable bit stream."""
    with np.errstate(over="ignore"):
        z = (index + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def basis(code_dims: int, d_model: int) -> torch.Tensor:
    """B [code_dims, d_model] float32: entry (i, j) is +-1/sqrt(code_dims), + when the top bit of
    SplitMix64(i * d_model + j) is 0. Same on every machine; an iid code of std s expands to a
    vector whose entries have std s."""
    index = np.arange(code_dims * d_model, dtype=np.uint64)
    signs = 1.0 - 2.0 * (_splitmix64(index) >> np.uint64(63)).astype(np.float32)
    scale = np.float32(1.0 / math.sqrt(code_dims))
    return torch.from_numpy((signs * scale).astype(np.float32).reshape(code_dims, d_model))


def expand(codes: torch.Tensor, code_basis: torch.Tensor | None) -> torch.Tensor:
    """Codes [..., code_dims] -> vectors [..., d_model]; without a basis codes are the vectors."""
    return codes if code_basis is None else codes @ code_basis.to(codes.device)
