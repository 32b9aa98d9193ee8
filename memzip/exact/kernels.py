"""Attention of one decoding step as one compiled CPU kernel (numba), in integers only.

A decoding step attends, for every stream and key head, a few query rows over a window of up to
~1024 positions. In torch that is a handful of calls per (stream, key head) and layer: small
GEMMs whose per-call overhead, not arithmetic, bounds a step of many streams. This kernel does
the whole of it in one parallel loop, reading the integer keys and values (int16, 2 bytes each)
once.

It computes what ExactLlama._step computes with torch, bit for bit, because every operation in
it is on integers (exact in any order and under any compiler, so LLVM's vectorization cannot
change a bit):

- scores s_j = q . k_j: |q| <= 2^7, |k| < 2^11, 64-128 terms: int32;
- the softmax bucket of s_j: the float path computes fl32(peak - s_j) * 2^e, clamped to the
  table's last entry and truncated; peak - s_j is an integer below 2^25 whose float32 rounding
  (`_float32_round`) matters only above 2^24; times 2^e is a shift;
- weights from the integer table, totals and weighted sums of values in int64 (each product
  w * v below 2^31, checked by `fits`).

The division numerator / total stays in torch, one correctly rounded operation.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # the engine falls back to torch (memzip/exact/model.py)
    numba = None


def available() -> bool:
    return numba is not None


def fits(table_max: int, value_bits: int, head_dim: int, query_bits: int, key_bits: int) -> bool:
    """The kernel's integer types hold these sizes: queries, keys and values in int16, a weight
    times a value in int32, scores below 2^24 (so a difference of two is below 2^25, the one
    binade where `_bucket` rounds as float32 does)."""
    value_max = 2 ** (value_bits - 1) - 1
    score_max = 2 ** (query_bits - 1) * (2 ** (key_bits - 1) - 1) * head_dim
    return (table_max * value_max < 2 ** 31 and score_max < 2 ** 24
            and max(query_bits, key_bits, value_bits) <= 16)


def _compiled(function):
    """numba's parallel compilation of `function`, cached on disk where numba finds a writable
    place (next to this file or the user's cache directory); without one, compiled anew in each
    process (~2.5 s)."""
    try:
        return numba.njit(parallel=True, cache=True, nogil=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(parallel=True, nogil=True)(function)


if numba is not None:

    @numba.njit(inline="always")
    def _bucket(difference, shift, last):
        """min(last, floor(fl32(difference) * 2^shift)) for an integer 0 <= difference < 2^25."""
        d = np.int64(difference)
        if d >= (1 << 24):  # float32 holds even integers only here: round half to even
            half = d >> 1
            if (d & 1) and (half & 1):
                half += 1
            d = half << 1
        if shift >= 0:
            if shift > 40 or d > (last >> shift):
                return last
            d = d << shift
        else:
            d = d >> (-shift)
        return last if d > last else d

    @_compiled
    def _step_attention(queries, shifts, sink_keys, sink_values, keys, values_t, first, count, table,
                        numerator, total):
        streams, kv_heads, group, head_dim = queries.shape
        last = table.shape[0] - 1
        for task in numba.prange(streams * kv_heads):
            b = task // kv_heads
            h = task % kv_heads
            window = keys[b, h, first:first + count]
            scores = np.empty((group, count), np.int32)
            weights = np.empty(count, np.int32)
            for g in range(group):
                q = queries[b, h, g]
                for j in range(count):
                    key = window[j]
                    s = np.int32(0)
                    for c in range(head_dim):
                        s = np.int32(s + np.int32(q[c] * key[c]))
                    scores[g, j] = s
            for g in range(group):
                q = queries[b, h, g]
                sink = 0
                for c in range(head_dim):
                    sink += q[c] * sink_keys[b, h, c]
                peak = sink
                for j in range(count):
                    peak = max(peak, scores[g, j])
                shift = shifts[b, h, g]
                sink_weight = np.int64(table[_bucket(peak - sink, shift, last)])
                sum_weights = sink_weight
                for j in range(count):
                    w = table[_bucket(peak - scores[g, j], shift, last)]
                    weights[j] = w
                    sum_weights += w
                total[b, h, g] = sum_weights
                for c in range(head_dim):
                    column = values_t[b, h, c, first:first + count]
                    acc = sink_weight * sink_values[b, h, c]
                    for j in range(count):
                        acc += np.int32(weights[j] * column[j])  # below 2^31 (fits)
                    numerator[b, h, g, c] = acc


def step_attention(queries: np.ndarray, shifts: np.ndarray, sink_keys: np.ndarray, sink_values: np.ndarray,
                   keys: np.ndarray, values_t: np.ndarray, first: int, count: int,
                   table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Attention sums of one position per stream over the sink and window slots first..first+count-1.

    queries [B, kv, G, hd] int16; shifts [B, kv, G] int32 (a score times 2^shift is in table
    buckets); sink_keys [B, kv, hd] int16 (rotated for this position); sink_values [B, kv, hd]
    int32; keys [B, kv, capacity, hd] int16; values_t [B, kv, hd, capacity] int16; table int32.
    Returns the integer numerators [B, kv, G, hd] and totals [B, kv, G], int64."""
    streams, kv_heads, group, head_dim = queries.shape
    numerator = np.empty((streams, kv_heads, group, head_dim), np.int64)
    total = np.empty((streams, kv_heads, group), np.int64)
    arrays = [np.ascontiguousarray(a) for a in (queries, shifts, sink_keys, sink_values, keys, values_t, table)]
    _step_attention(*arrays[:6], first, count, arrays[6], numerator, total)
    return numerator, total
