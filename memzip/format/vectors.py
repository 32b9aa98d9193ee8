"""How [mem] vectors are stored (docs/format.md §3.1-3.2), in numpy alone.

A vector is fitted in float32 and stored in one of these dtypes:

- `float32`, `float16`: plain floats.
- `int8`: symmetric integers in -127..127 with one float32 scale per vector.
- `int6`, `int5`, `int4`, `int3`, `int2`: symmetric integers in -L..L, L = 2^(bits-1) - 1
  (int2 is ternary: -1, 0, +1), one float32 scale per vector, stored as `q + 2^(bits-1)` in
  `bits` bits each, packed most significant bit first into a uint8 row of ceil(D * bits / 8) bytes.

A vector can also be stored as a shorter *code* z of `code_dims` numbers: the vector is z @ B with
B the fixed random sign matrix of `basis`, defined bit for bit here and in the spec.

The optimizer's view of the same rounding (with a gradient) is memzip/vectors/rounding.py, which uses
these tables.
"""

from __future__ import annotations

import math

import numpy as np

FLOAT_DTYPES = ("float32", "float16")
INT_BITS = {"int8": 8, "int6": 6, "int5": 5, "int4": 4, "int3": 3, "int2": 2}
STORAGE_DTYPES = FLOAT_DTYPES + tuple(INT_BITS)
_MIN_SCALE = np.float32(1e-12)  # an all-zero vector still gets a positive scale


def levels(dtype: str) -> int:
    """Largest integer magnitude of an integer storage dtype."""
    return 2 ** (INT_BITS[dtype] - 1) - 1


def is_packed(dtype: str) -> bool:
    """Stored as a bit-packed uint8 row rather than one element per number."""
    return dtype in INT_BITS and INT_BITS[dtype] < 8


def has_scales(dtype: str) -> bool:
    return dtype in INT_BITS


def numpy_dtype(dtype: str) -> np.dtype:
    if dtype in FLOAT_DTYPES:
        return np.dtype(dtype)
    return np.dtype(np.int8) if dtype == "int8" else np.dtype(np.uint8)


def stored_width(dtype: str, dims: int) -> int:
    """Last dimension of the stored `vectors` tensor for rows of `dims` numbers."""
    return math.ceil(dims * INT_BITS[dtype] / 8) if is_packed(dtype) else dims


def bytes_per_vector(dtype: str, dims: int) -> int:
    return stored_width(dtype, dims) * numpy_dtype(dtype).itemsize + (4 if has_scales(dtype) else 0)


def scales_of(vectors: np.ndarray, dtype: str) -> np.ndarray:
    """float32 scale of each row: largest magnitude / L."""
    peak = np.abs(vectors.astype(np.float32)).max(axis=-1)
    return (np.maximum(peak, _MIN_SCALE) / np.float32(levels(dtype))).astype(np.float32)


def pack(vectors: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """float32 [C, M, D] -> (stored array, float32 scales [C, M] or None)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if dtype in FLOAT_DTYPES:
        return vectors.astype(dtype), None
    scale = scales_of(vectors, dtype)
    limit = levels(dtype)
    q = np.clip(np.rint(vectors / scale[..., None]), -limit, limit).astype(np.int64)
    if dtype == "int8":
        return q.astype(np.int8), scale
    bits = INT_BITS[dtype]
    unsigned = (q + 2 ** (bits - 1)).astype(np.uint8)  # 1 .. 2^bits - 1
    planes = np.unpackbits(unsigned[..., None], axis=-1)[..., 8 - bits:]  # [C, M, D, bits]
    return np.packbits(planes.reshape(*unsigned.shape[:-1], -1), axis=-1), scale


def unpack_integers(stored: np.ndarray, dtype: str, dims: int) -> np.ndarray:
    """The signed integers of a stored integer array, [C, M, dims] int64."""
    if dtype == "int8":
        return stored.astype(np.int64)
    bits = INT_BITS[dtype]
    flat = np.unpackbits(stored, axis=-1)[..., :dims * bits]
    planes = flat.reshape(*stored.shape[:-1], dims, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)
    return planes.astype(np.int64) @ weights - 2 ** (bits - 1)


def unpack(stored: np.ndarray, scales: np.ndarray | None, dtype: str, dims: int) -> np.ndarray:
    """Stored array (+ scales) -> float32 [C, M, dims]: the numbers extraction feeds the model."""
    if dtype in FLOAT_DTYPES:
        return np.ascontiguousarray(stored).astype(np.float32)
    q = unpack_integers(stored, dtype, dims).astype(np.float32)
    return q * np.ascontiguousarray(scales, dtype=np.float32)[..., None]


# --- codes in a random subspace ---------------------------------------------------------------


def _splitmix64(index: np.ndarray) -> np.ndarray:
    """SplitMix64 output for states (index + 1) * golden ratio: a fixed, portable bit stream."""
    with np.errstate(over="ignore"):
        z = (index + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def basis(code_dims: int, d_model: int) -> np.ndarray:
    """B [code_dims, d_model] float32: entry (i, j) is +-1/sqrt(code_dims), + when the top bit of
    SplitMix64(i * d_model + j) is 0. The same on every machine; a code of iid numbers with std s
    expands to a vector whose numbers have std s."""
    index = np.arange(code_dims * d_model, dtype=np.uint64)
    signs = 1.0 - 2.0 * (_splitmix64(index) >> np.uint64(63)).astype(np.float32)
    scale = np.float32(1.0 / math.sqrt(code_dims))
    return (signs * scale).astype(np.float32).reshape(code_dims, d_model)
