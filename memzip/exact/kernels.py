"""The exact engine's CPU work around and between its integer products, as compiled kernels (numba).

Five groups, each doing in one call what took the torch path many small calls (whose per-call
overhead and passes over memory, not arithmetic, bounded both decoding and compression):

- a decoding step's attention, in integers only (just below);
- compression's attention: its weights in one pass and p @ v in int8 slices (`block_weights`,
  `block_outputs`);
- the stretches between the weight products of any block of rows: RMSNorm and quantizing,
  recombining int8 slices, RoPE, SiLU (`normalize_rows` and the rest);
- the weight products of a few rows, a decoding step's (`small_product`, in simd.py's vector
  loops), and a whole step's layers in one call (`step_layers`);
- the arithmetic coder's intervals from rows of logits (`coded_rows`).

Each computes what the torch path computes, bit for bit (tests/test_exact.py compares them and
catches a one-rounding change): integer sums are exact in any order, and the few float32
operations are the torch path's, one correctly rounded operation at a time (see the section
"the rest of a decoding step" for how numba is kept to that).

A decoding step attends, for every stream and key head, a few query rows over a window of up to
~1024 positions. In torch that is a handful of calls per (stream, key head) and layer: small
GEMMs whose per-call overhead, not arithmetic, bounds a step of many streams. This kernel does
the whole of it in one parallel loop, reading the integer keys and values (int16, 2 bytes each)
once, its dot products in simd.py's vector loops.

It computes what the reference's _attention computes with torch, bit for bit, because every
operation in it is on integers (exact in any order and under any compiler, so LLVM's
vectorization cannot change a bit):

- scores s_j = q . k_j: |q| <= 2^7, |k| < 2^11, 64-128 terms: int32;
- the softmax bucket of s_j: the float path computes fl32(peak - s_j) * 2^e, clamped to the
  table's last entry and truncated; peak - s_j is an integer below 2^25 whose float32 rounding
  (`_bucket`) matters only above 2^24; times 2^e is a shift;
- weights from the integer table (below 2^20), cut into 10-bit halves w = h 2^10 + l, so that
  each half times a 12-bit value sums over up to 1,024 keys in int32 (`fits` checks the bound);
  totals and the recombined sums in int64.

The division numerator / total follows, one correctly rounded operation
(`_attention_outputs`).
"""

from __future__ import annotations

import math

import numpy as np

import os

# numba's parallel loops run on the OpenMP runtime torch uses, and starting its pool sets that
# runtime's thread count to NUMBA_NUM_THREADS (every CPU by default): torch would then run on
# every CPU whatever OMP_NUM_THREADS or torch.set_num_threads said. Giving numba torch's count
# keeps one thread count for both (found when OMP_NUM_THREADS=1 ran torch on 2 threads).
if "NUMBA_NUM_THREADS" not in os.environ:
    import torch

    os.environ["NUMBA_NUM_THREADS"] = str(torch.get_num_threads())

try:
    import numba
except ImportError:  # the engine falls back to torch (memzip/exact/model.py)
    numba = None
else:
    from memzip.exact import simd


def available() -> bool:
    return numba is not None


# Keys whose weighted values the attention kernel sums in int32 at once.
KEY_CHUNK = 1024


def fits(table_max: int, value_bits: int, head_dim: int, query_bits: int, key_bits: int) -> bool:
    """The kernel's integer types hold these sizes: queries, keys and values in int16, a weight's
    10-bit halves in int16 and their products with values summed over KEY_CHUNK keys in int32,
    scores below 2^24 (so a difference of two is below 2^25, the one binade where `_bucket`
    rounds as float32 does)."""
    value_max = 2 ** (value_bits - 1) - 1
    score_max = 2 ** (query_bits - 1) * (2 ** (key_bits - 1) - 1) * head_dim
    half_max = max(2 ** 10 - 1, table_max >> 10)
    return (half_max < 2 ** 15 and half_max * value_max * KEY_CHUNK < 2 ** 31 and score_max < 2 ** 24
            and max(query_bits, key_bits, value_bits) <= 16)


def _compiled(function):
    """numba's parallel compilation of `function`, cached on disk where numba finds a writable
    place (next to this file or the user's cache directory); without one, compiled anew in each
    process (~2.5 s)."""
    try:
        return numba.njit(parallel=True, cache=True, nogil=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(parallel=True, nogil=True)(function)


def _compiled_serial(function):
    """`_compiled` for kernels over one decoding step's few rows, where starting threads would cost
    more than the work."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:
        return numba.njit(nogil=True)(function)


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

    # tiles of simd.py's loops over int16 rows: 4 keys (or 1) by one query, for the scores; 4 value
    # channels (or 1) by a weight's two halves, for the sums
    _scores_4x1, _scores_1x1 = simd.tile(4, 1, (), 16), simd.tile(1, 1, (), 16)
    _values_4x2, _values_1x2 = simd.tile(4, 2, (), 16), simd.tile(1, 2, (), 16)

    @_compiled
    def _step_attention(queries, shifts, sink_keys, sink_values, keys, values_t, first, count, table,
                        numerator, total):
        streams, kv_heads, group, head_dim = queries.shape
        last = table.shape[0] - 1
        whole_dim = head_dim - head_dim % simd.LANES  # channels the vector loops cover
        whole_keys = count - count % simd.LANES
        for task in numba.prange(streams * kv_heads):
            b = task // kv_heads
            h = task % kv_heads
            window = keys[b, h, first:first + count]  # [count, hd]
            values = values_t[b, h, :, first:first + count]  # [hd, count]
            q = queries[b, h]  # [group, hd]
            scores = np.empty((group, count), np.int32)
            halves = np.empty((2 * group, count), np.int16)  # rows g: weights' low 10 bits; group + g: the rest
            for g in range(group):
                j = 0
                while j + 4 <= count:
                    sums = _scores_4x1(window, q, j, (g,), 0, whole_dim, 0)
                    for r in range(4):
                        scores[g, j + r] = sums[r]
                    j += 4
                while j < count:
                    scores[g, j] = _scores_1x1(window, q, j, (g,), 0, whole_dim, 0)[0]
                    j += 1
                for j in range(count):
                    for c in range(whole_dim, head_dim):
                        scores[g, j] += np.int32(q[g, c]) * np.int32(window[j, c])
            for g in range(group):
                sink = np.int64(0)
                for c in range(head_dim):
                    sink += q[g, c] * sink_keys[b, h, c]
                peak = sink
                for j in range(count):
                    peak = max(peak, scores[g, j])
                shift = shifts[b, h, g]
                sink_weight = np.int64(table[_bucket(peak - sink, shift, last)])
                sum_weights = sink_weight
                for j in range(count):
                    w = table[_bucket(peak - scores[g, j], shift, last)]
                    halves[g, j] = w & 1023
                    halves[group + g, j] = w >> 10
                    sum_weights += w
                total[b, h, g] = sum_weights
                for c in range(head_dim):
                    numerator[b, h, g, c] = sink_weight * sink_values[b, h, c]
                rows = (g, group + g)
                for k0 in range(0, whole_keys, KEY_CHUNK):
                    k1 = min(whole_keys, k0 + KEY_CHUNK)
                    c = 0
                    while c + 4 <= head_dim:
                        sums = _values_4x2(values, halves, c, rows, k0, k1, 0)
                        for r in range(4):
                            numerator[b, h, g, c + r] += np.int64(sums[2 * r]) + (np.int64(sums[2 * r + 1]) << 10)
                        c += 4
                    while c < head_dim:
                        sums = _values_1x2(values, halves, c, rows, k0, k1, 0)
                        numerator[b, h, g, c] += np.int64(sums[0]) + (np.int64(sums[1]) << 10)
                        c += 1
                for j in range(whole_keys, count):
                    w = np.int64(halves[g, j]) + (np.int64(halves[group + g, j]) << 10)
                    for c in range(head_dim):
                        numerator[b, h, g, c] += w * values[c, j]


# --- compression's attention ----------------------------------------------------------------------
#
# A compression block's attention is real GEMMs and, between them, some ten elementwise passes
# over the [rows, keys] scores (scaling, masking each row's window, the peak, differences,
# buckets, the table lookup, the weights' sums). `block_weights` makes the passes one: the same
# float32 operations as ExactLlama._block_attention's torch calls (scores times a power of two
# are exact, then one rounded subtraction, a clamp and a truncation), the rest integers.
#
# p @ v, float64 in the torch path (20-bit weights times 12-bit values over ~1,088 keys need
# 42-bit sums), goes through torch._int_mm instead, 3x faster at these shapes: each weight as
# three int8 slices (s2 2^16 + s1 2^8 + s0), each value as two, one [3 rows, keys] x [keys, 2 hd]
# product per stream and key head, whose six int32 partial sums `block_outputs` recombines in
# int64. The integers are the float64 path's; the one rounded division follows.

WEIGHT_SLICES = 3  # int8 slices of a softmax weight (up to 2^20 < 2^23)

if numba is not None:

    @numba.njit(inline="always")
    def _low_byte(x):
        """x - 256 floor((x + 128) / 256): the signed low byte of a signed-digit split."""
        return ((x + 128) & 255) - 128

    @_compiled
    def _block_weights(scores, steps, sink, first_position, group, lo, window, table, in_slices, slices, floats,
                       sink_weights, totals):
        streams, kv_heads, rows, count = scores.shape
        last = table.shape[0] - 1
        limit = np.float32(last)
        for task in numba.prange(streams * kv_heads * rows):
            b = task // (kv_heads * rows)
            h = (task // rows) % kv_heads
            r = task % rows
            step = steps[b, h, r]
            query = first_position + r // group  # the row's position; its keys are (query - window, query]
            low = max(0, query - window + 1 - lo)
            high = min(count, query + 1 - lo)
            peak = sink[b, h, r]
            for j in range(low, high):
                peak = max(peak, _f32(scores[b, h, r, j] * step))
            total = np.int64(table[np.int64(min(_f32(peak - sink[b, h, r]), limit))])  # truncation: floor
            sink_weights[b, h, r] = total
            outside = table[last]  # a masked score's difference is huge: clamped to the last bucket
            for j in range(count):
                if j < low or j >= high:
                    w = np.int64(outside)
                else:
                    w = np.int64(table[np.int64(min(_f32(peak - _f32(scores[b, h, r, j] * step)), limit))])
                total += w
                if in_slices:
                    s0 = _low_byte(w)
                    rest = (w - s0) >> 8
                    s1 = _low_byte(rest)
                    slices[b, h, 0, r, j] = s0
                    slices[b, h, 1, r, j] = s1
                    slices[b, h, 2, r, j] = (rest - s1) >> 8
                else:
                    floats[b, h, r, j] = np.float64(w)
            totals[b, h, r] = total

    @_compiled
    def _value_slices(values_t, first, count, slices):
        streams, kv_heads, head_dim = values_t.shape[:3]
        for task in numba.prange(streams * kv_heads):
            b, h = task // kv_heads, task % kv_heads
            for c in range(head_dim):
                for j in range(count):
                    v = np.int64(values_t[b, h, c, first + j])
                    low = _low_byte(v)
                    slices[b, h, 0, c, j] = (v - low) >> 8
                    slices[b, h, 1, c, j] = low

    @_compiled
    def _block_outputs(products, exact, sink_weights, sink_values, totals, value_scale, out):
        """`products`: int32 sums of the weights' and values' int8 slices [B, kv, 3 rows, 2 hd]; or,
        where it is empty, `exact`: float64 GEMM sums [B, kv, rows, hd] (integers below 2^53)."""
        streams, kv_heads, rows, head_dim = out.shape
        in_slices = products.shape[0] > 0
        for task in numba.prange(streams * kv_heads * rows):
            b = task // (kv_heads * rows)
            h = (task // rows) % kv_heads
            r = task % rows
            total = np.float64(totals[b, h, r])
            for c in range(head_dim):
                numerator = sink_weights[b, h, r] * sink_values[b, h, c]
                if in_slices:
                    for s in range(WEIGHT_SLICES):  # weight slice s times value slice t, at 2^(8 (s + 1 - t))
                        numerator += (np.int64(products[b, h, s * rows + r, c]) << (8 * s + 8)) \
                            + (np.int64(products[b, h, s * rows + r, head_dim + c]) << (8 * s))
                else:
                    numerator += np.int64(exact[b, h, r, c])  # converted exactly
                quotient = np.float64(numerator) / total  # exact integers below 2^53, one rounding
                out[b, h, r, c] = _f32(np.float32(quotient) * value_scale[h, c])


def block_weights(scores: np.ndarray, steps: np.ndarray, sink: np.ndarray, first_position: int, group: int,
                  lo: int, window: int, table: np.ndarray, in_slices: bool = True):
    """Softmax weights of a query block's scores, as the reference's _attention computes them.

    scores [B, kv, rows, L] float32 (q_int @ k_int, exact integers; column j is key position
    lo + j, row r query position first_position + r // group); steps [B, kv, rows] and the
    scaled sink scores [B, kv, rows] float32; table int32. Returns the weights, as int8 slices
    [B, kv, 3, rows, L] (s0, s1, s2) for torch._int_mm or as float64 [B, kv, rows, L] for a
    float64 GEMM (`in_slices` False), then the sink's weights and the totals [B, kv, rows] int64."""
    if in_slices:
        slices = np.empty(scores.shape[:2] + (WEIGHT_SLICES,) + scores.shape[2:], np.int8)
        floats = np.empty((0, 0, 0, 0), np.float64)
    else:
        slices = np.empty((0, 0, 0, 0, 0), np.int8)
        floats = np.empty(scores.shape, np.float64)
    sink_weights = np.empty(scores.shape[:3], np.int64)
    totals = np.empty(scores.shape[:3], np.int64)
    _block_weights(scores, steps, sink, first_position, group, lo, window, table, in_slices, slices, floats,
                   sink_weights, totals)
    return (slices if in_slices else floats), sink_weights, totals


def value_slices(values_t: np.ndarray, first: int, count: int) -> np.ndarray:
    """Values of slots first..first+count-1 from the int16 context [B, kv, hd, capacity] as int8
    slices [B, kv, 2, hd, count]: high (v + 128) // 256, then low."""
    streams, kv_heads, head_dim = values_t.shape[:3]
    slices = np.empty((streams, kv_heads, 2, head_dim, count), np.int8)
    _value_slices(values_t, first, count, slices)
    return slices


def block_outputs(products: np.ndarray | None, sink_weights: np.ndarray, sink_values: np.ndarray, totals: np.ndarray,
                  value_scale: np.ndarray, exact: np.ndarray | None = None) -> np.ndarray:
    """Attention's output rows of a query block: (weights @ values + sink weight * sink value) /
    total, times the values' scales, as the reference's _attention computes them, from the int32
    products [B, kv, 3 rows, 2 hd] of the weight slices [s0; s1; s2] and the value slices
    [high, low], or (`products` None) from the `exact` sums [B, kv, rows, hd] of a float64 GEMM;
    sink_values [B, kv, hd] int64. Returns [B, kv, rows, hd] float32."""
    if products is None:
        out = np.empty(exact.shape, np.float32)
        products = np.empty((0, 0, 0, 0), np.int32)
    else:
        streams, kv_heads, rows3, head_dim2 = products.shape
        out = np.empty((streams, kv_heads, rows3 // WEIGHT_SLICES, head_dim2 // 2), np.float32)
        exact = np.empty((0, 0, 0, 0), np.float64)
    _block_outputs(products, exact, sink_weights, sink_values, totals, value_scale, out)
    return out


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


# --- the rest of a decoding step: what lies between the GEMMs -------------------------------------
#
# A decoding step of a few streams is, per layer, four integer GEMMs and, between them, some
# seventy small torch calls (quantizing activations, RMSNorm, recombining int8 slices, RoPE, SiLU)
# whose per-call overhead, not arithmetic, costs more than the GEMMs. These kernels do each
# stretch between two GEMMs in one call, row by row, in parallel over the rows (that pays for a
# compression block's hundreds of rows and measured no slower at a step's four; the one kernel
# only steps use, attention's outputs, stays serial).
#
# Activations leave them as int16 rows (integers |x| <= 2^14 of 15 bits) with a scale per row;
# `product` multiplies them by a weight's int8 slices, either in `small_product`'s vector loops
# (few rows: a decoding step) or, split into int8 slices, with torch._int_mm (many rows). The
# kernels after a GEMM read its result in any of three forms (`_product`): EXACT, the exact
# integers [m, n] (int64); ONE_SLICE and TWO_SLICES, torch._int_mm's int32 partial products of
# the split activations [a_hi; a_lo] (2m rows) with one slice or with [w_hi; w_lo] (2n columns).
#
# Unlike the attention kernel they compute in float32, so they are exact only as the torch path
# is: one correctly rounded IEEE operation at a time, in the torch path's order. Each result is
# wrapped in np.float32(...), so even where numba computes a float32 operation in float64 the
# value is the correctly rounded float32 one (double rounding through float64 is innocuous for
# + - * / and sqrt of float32 operands: 53 >= 2 * 24 + 2); numba without fastmath emits no fused
# multiply-adds (checked: tests/test_exact.py compares the two paths bit for bit). Scalars the
# torch path takes as Python floats (1/d, eps) arrive here rounded to float32, as torch rounds
# them. Integers are combined in int64, where the torch path's int32 shortcuts give the same
# values.

EXACT, ONE_SLICE, TWO_SLICES = 0, 1, 2  # the forms of a product (`_product`)

# The weight tiles `small_product` runs ahead of itself when asking memory for weights: a few
# tiles (a few KB) is enough to keep the memory busy (measured: 2, 4 and 8 alike).
PREFETCH_TILES = 4

if numba is not None:
    # tiles of 4 weight rows: [w_hi; w_lo] rows j, j+1, n+j, n+j+1 (two runs of 2 rows in
    # memory), or one slice's rows j..j+3 (one run of 4)
    _tile_4x2s, _tile_2x2s, _tile_1x2s = (simd.tile(r, 4, ((0, 2), (2, 2))) for r in (4, 2, 1))
    _tile_4x1s, _tile_2x1s, _tile_1x1s = (simd.tile(r, 4, ((0, 4),)) for r in (4, 2, 1))

    @numba.njit(inline="always")
    def _f32(x):
        return np.float32(x)

    @numba.njit(inline="always")
    def _product(r, m, n, i, j, form):
        """Row i, column j of an exact integer product [m, n] held in `form` (see above)."""
        if form == EXACT:
            return np.int64(r[i, j])
        if form == TWO_SLICES:  # ((hh 2^8 + hl + lh) 2^8 + ll)
            return ((np.int64(r[i, j]) * 256 + r[i, n + j] + r[m + i, j]) << 8) + r[m + i, n + j]
        return np.int64(r[i, j]) * 256 + r[m + i, j]

    @numba.njit(inline="always")
    def _scaled(r, m, n, i, j, form, weight_scale, row_factor):
        """fl32(fl32(product) * weight_scale[j]) * row_factor, rounded: IntegerWeight.matmul's
        float32 result times the weight's and the row's scales, in the torch path's order."""
        return _f32(_f32(np.float32(_product(r, m, n, i, j, form)) * weight_scale[j]) * row_factor)

    @numba.njit(inline="always")
    def _quantize_row(x, bits, rows, i):
        """integer.quantize_rows of row x (float32) into rows[i] (int16). Returns the row's scale
        and the exact sum of its integers' squares."""
        peak = np.float32(2.0 ** -100)  # integer.TINY
        for k in range(x.shape[0]):
            peak = max(peak, abs(x[k]))
        e = math.frexp(peak)[1]  # 2^(e-1) <= peak < 2^e: the exponent bits quantize_rows reads
        inverse = np.float32(math.ldexp(1.0, bits - 1 - e))
        squares = np.int64(0)
        for k in range(x.shape[0]):
            whole = np.int64(np.rint(_f32(x[k] * inverse)))  # round half to even, as torch.round
            squares += whole * whole
            rows[i, k] = whole
        return np.float32(math.ldexp(1.0, e + 1 - bits)), squares

    @numba.njit(inline="always")
    def _quantize_to(x, inverse, limit):
        """integer.quantize_with of one value: round(x * inverse), clamped to +-limit."""
        q = np.rint(_f32(x * inverse))
        return min(max(q, -limit), limit)

    @_compiled
    def _normalize_rows(h, bits, inverse_d, eps, rows, factors):
        for i in numba.prange(h.shape[0]):
            scale, squares = _quantize_row(h[i], bits, rows, i)
            variance = _f32(np.float32(squares) * _f32(_f32(scale * scale) * inverse_d))
            root = _f32(np.sqrt(_f32(variance + eps)))  # the hardware's square root: correctly rounded
            inverse_rms = _f32(np.float32(1.0) / root)
            factors[i] = _f32(scale * inverse_rms)

    @_compiled
    def _quantize_rows(x, bits, rows, scales):
        for i in numba.prange(x.shape[0]):
            scales[i] = _quantize_row(x[i], bits, rows, i)[0]

    @_compiled
    def _split_rows(rows, split):
        m = rows.shape[0]
        for i in numba.prange(m):
            for k in range(rows.shape[1]):
                whole = np.int32(rows[i, k])
                high = (whole + 128) >> 8  # floor division, as integer.split_int8
                split[i, k] = high
                split[m + i, k] = whole - (high << 8)

    # small_product: the exact products of a few int16 rows and a weight's int8 slices, tile by
    # tile of 4 weight rows (two output columns' [w_hi, w_lo], or four columns of one slice). The
    # int32 sums of a tile are exact while |a| |w| k < 2^31 for the k summed at once: `chunk`.

    @numba.njit(inline="always")
    def _add_tile(out, i, j, sums, tile_rows, two_slices):
        for r in range(tile_rows):
            if two_slices:
                for c in range(2):
                    out[i + r, j + c] += np.int64(sums[4 * r + c]) * 256 + sums[4 * r + 2 + c]
            else:
                for c in range(4):
                    out[i + r, j + c] += sums[4 * r + c]

    @numba.njit(inline="always")
    def _exact_dot(a, w, i, row, k0, k1):
        total = np.int64(0)
        for k in range(k0, k1):
            total += np.int64(a[i, k]) * w[row, k]
        return total

    @_compiled
    def _small_product(a, w, n, two_slices, chunk, ahead, out):
        m, depth = a.shape
        vector_depth = depth - depth % simd.LANES
        width = 2 if two_slices else 4  # output columns of a tile
        tiles = n // width
        for t in numba.prange(tiles):
            j = width * t
            rows = (j, j + 1, n + j, n + j + 1) if two_slices else (j, j + 1, j + 2, j + 3)
            for i in range(m):  # the tile's columns start at zero (out comes uninitialized)
                for c in range(width):
                    out[i, j + c] = 0
            for k0 in range(0, vector_depth, chunk):
                k1 = min(vector_depth, k0 + chunk)
                i = 0
                while i + 4 <= m:
                    sums = _tile_4x2s(a, w, i, rows, k0, k1, ahead) if two_slices else \
                        _tile_4x1s(a, w, i, rows, k0, k1, ahead)
                    _add_tile(out, i, j, sums, 4, two_slices)
                    i += 4
                if i + 2 <= m:
                    sums = _tile_2x2s(a, w, i, rows, k0, k1, ahead) if two_slices else \
                        _tile_2x1s(a, w, i, rows, k0, k1, ahead)
                    _add_tile(out, i, j, sums, 2, two_slices)
                    i += 2
                if i < m:
                    sums = _tile_1x2s(a, w, i, rows, k0, k1, ahead) if two_slices else \
                        _tile_1x1s(a, w, i, rows, k0, k1, ahead)
                    _add_tile(out, i, j, sums, 1, two_slices)
            if vector_depth < depth:
                for i in range(m):
                    for c in range(width):
                        if two_slices:
                            out[i, j + c] += (_exact_dot(a, w, i, j + c, vector_depth, depth) * 256
                                              + _exact_dot(a, w, i, n + j + c, vector_depth, depth))
                        else:
                            out[i, j + c] += _exact_dot(a, w, i, j + c, vector_depth, depth)
        for j in range(tiles * width, n):  # columns beyond the last whole tile
            for i in range(m):
                if two_slices:
                    out[i, j] = _exact_dot(a, w, i, j, 0, depth) * 256 + _exact_dot(a, w, i, n + j, 0, depth)
                else:
                    out[i, j] = _exact_dot(a, w, i, j, 0, depth)

    @_compiled
    def _scaled_outputs(r, form, weight_scale, factors, out):
        m, n = out.shape
        for i in numba.prange(m):
            for j in range(n):
                out[i, j] = _scaled(r, m, n, i, j, form, weight_scale, factors[i])

    @_compiled
    def _scaled_tile(by_high, by_low, weight_scale, factors, out, first):
        m = factors.shape[0]
        for i in numba.prange(m):
            for j in range(by_high.shape[1]):  # _product's two-slice sum from two GEMMs' columns
                exact = ((np.int64(by_high[i, j]) * 256 + by_low[i, j] + by_high[m + i, j]) << 8) + by_low[m + i, j]
                out[i, first + j] = _f32(_f32(np.float32(exact) * weight_scale[first + j]) * factors[i])

    @_compiled
    def _scaled_exact_tile(exact, weight_scale, factors, out, first):
        m = factors.shape[0]
        for i in numba.prange(m):
            for j in range(exact.shape[1]):
                out[i, first + j] = _f32(_f32(np.float32(exact[i, j]) * weight_scale[first + j]) * factors[i])

    @_compiled
    def _add_product(h, r, form, weight_scale, scales):
        m, n = h.shape
        for i in numba.prange(m):
            for j in range(n):
                h[i, j] = _f32(h[i, j] + _scaled(r, m, n, i, j, form, weight_scale, scales[i]))

    @_compiled
    def _qkv_outputs(r, form, weight_scale, factors, heads, cos, sin, key_inverse, key_limit, value_inverse,
                     value_limit, head_step, query_bits, keys, values_t, streams, slots, queries, shifts):
        m = factors.shape[0]
        n = weight_scale.shape[0]
        kv_heads, head_dim = value_inverse.shape
        group, half = heads // kv_heads, head_dim // 2
        for i in numba.prange(m):
            row = np.empty(n, np.float32)
            rotated = np.empty(head_dim, np.float32)
            stream, slot, cos_i, sin_i = streams[i], slots[i], cos[i], sin[i]
            for j in range(n):
                row[j] = _scaled(r, m, n, i, j, form, weight_scale, factors[i])
            for head in range(heads + kv_heads):  # RoPE of query and key heads (model._rope_heads)
                base = head * head_dim
                for c in range(half):
                    x1, x2 = row[base + c], row[base + half + c]
                    rotated[c] = _f32(_f32(x1 * cos_i[c]) - _f32(x2 * sin_i[c]))
                    rotated[half + c] = _f32(_f32(x2 * cos_i[c]) + _f32(x1 * sin_i[c]))
                if head >= heads:  # a key head: static scale, into the context
                    kh = head - heads
                    for c in range(head_dim):
                        keys[stream, kh, slot, c] = np.int16(_quantize_to(rotated[c], key_inverse[kh], key_limit))
                    continue
                peak = np.float32(2.0 ** -100)  # quantize_rows of the query head's row
                for c in range(head_dim):
                    peak = max(peak, abs(rotated[c]))
                e = math.frexp(peak)[1]
                inverse = np.float32(math.ldexp(1.0, query_bits - 1 - e))
                scale = np.float32(math.ldexp(1.0, e + 1 - query_bits))
                kh, g = head // group, head % group
                for c in range(head_dim):
                    queries[i, kh, g, c] = np.int16(np.rint(_f32(rotated[c] * inverse)))
                shifts[i, kh, g] = math.frexp(_f32(scale * head_step[head]))[1] - 1  # a power of two
            base = (heads + kv_heads) * head_dim
            for kh in range(kv_heads):
                for c in range(head_dim):
                    values_t[stream, kh, c, slot] = np.int16(
                        _quantize_to(row[base + kh * head_dim + c], value_inverse[kh, c], value_limit))

    @_compiled_serial
    def _attention_outputs(numerator, total, value_scale, bits, rows, scales):
        streams, kv_heads, group, head_dim = numerator.shape
        row = np.empty(kv_heads * group * head_dim, np.float32)
        for i in range(streams):
            k = 0
            for kh in range(kv_heads):
                for g in range(group):
                    for c in range(head_dim):
                        quotient = np.float64(numerator[i, kh, g, c]) / np.float64(total[i, kh, g])
                        row[k] = _f32(np.float32(quotient) * value_scale[kh, c])
                        k += 1
            scales[i] = _quantize_row(row, bits, rows, i)[0]

    @_compiled
    def _gated_outputs(r, form, weight_scale, factors, ffn, sigmoid, grid, middle, bits, rows, scales):
        m = factors.shape[0]
        n = weight_scale.shape[0]
        for i in numba.prange(m):
            row = np.empty(ffn, np.float32)
            for j in range(ffn):
                gate = _scaled(r, m, n, i, j, form, weight_scale, factors[i])
                up = _scaled(r, m, n, i, ffn + j, form, weight_scale, factors[i])
                # model._silu: the sigmoid table at round(gate * 2^grid) + middle, clamped
                index = _f32(np.rint(_f32(gate * grid)) + np.float32(middle))
                index = min(max(index, np.float32(0.0)), np.float32(2 * middle))
                row[j] = _f32(_f32(gate * sigmoid[np.int64(index)]) * up)
            scales[i] = _quantize_row(row, bits, rows, i)[0]


# --- a whole decoding step in one call ---------------------------------------------------------------
#
# A decoding step calls the kernels above some ten times a layer; from Python each call costs
# microseconds of dispatch and allocation, which add up over 30 layers (docs/benchmarks.md §2:
# a step of 28 streams 94-96 -> 87 ms). `step_layers` makes the same calls, in the same order,
# from compiled code, its products all through small_product.

if numba is not None:

    @numba.njit(inline="always")
    def _product_of(rows, slices, n, two_slices, chunk):
        out = np.empty((rows.shape[0], n), np.int64)
        _small_product(rows, slices, n, two_slices, chunk, PREFETCH_TILES * (2 if two_slices else 4) * rows.shape[1],
                       out)
        return out

    @_compiled_serial
    def _step_layers(rows, model, cos, sin, keys, values, streams, slots, sink_keys, sink_values, first, count):
        (weights, sizes, two_slices, scales, settings, limits, key_inverse, value_inverse, value_scale, head_step,
         table, sigmoid) = model  # StepArrays.model
        qkv, out, gate_up, down = weights  # [layers, rows, n_in] int8 slices of each weight
        n_qkv, n_out, n_gate_up, n_down, heads, ffn, middle = sizes
        qkv_scale, out_scale, gate_up_scale, down_scale = scales
        bits, query_bits, chunk = settings
        inverse_d, eps, key_limit, value_limit, grid = limits
        m, d = rows.shape
        kv_heads, head_dim = value_inverse.shape[1:]
        for layer in range(len(qkv)):
            integers = np.empty((m, d), np.int16)
            factors = np.empty(m, np.float32)
            _normalize_rows(rows, bits, inverse_d, eps, integers, factors)
            product = _product_of(integers, qkv[layer], n_qkv, two_slices[0], chunk)
            queries = np.empty((m, kv_heads, heads // kv_heads, head_dim), np.int16)
            shifts = np.empty((m, kv_heads, heads // kv_heads), np.int32)
            _qkv_outputs(product, EXACT, qkv_scale[layer], factors, heads, cos, sin, key_inverse[layer], key_limit,
                         value_inverse[layer], value_limit, head_step[layer], query_bits, keys[layer], values[layer],
                         streams, slots, queries, shifts)
            numerator = np.empty((m, kv_heads, heads // kv_heads, head_dim), np.int64)
            total = np.empty((m, kv_heads, heads // kv_heads), np.int64)
            _step_attention(queries, shifts, sink_keys[layer], sink_values[layer], keys[layer], values[layer], first,
                            count, table, numerator, total)
            attended = np.empty((m, heads * head_dim), np.int16)
            attended_scales = np.empty(m, np.float32)
            _attention_outputs(numerator, total, value_scale[layer], bits, attended, attended_scales)
            _add_product(rows, _product_of(attended, out[layer], n_out, two_slices[1], chunk), EXACT, out_scale[layer],
                         attended_scales)
            _normalize_rows(rows, bits, inverse_d, eps, integers, factors)
            gated = np.empty((m, ffn), np.int16)
            gated_scales = np.empty(m, np.float32)
            _gated_outputs(_product_of(integers, gate_up[layer], n_gate_up, two_slices[2], chunk), EXACT,
                           gate_up_scale[layer], factors, ffn, sigmoid, grid, middle, bits, gated, gated_scales)
            _add_product(rows, _product_of(gated, down[layer], n_down, two_slices[3], chunk), EXACT, down_scale[layer],
                         gated_scales)


def step_layers(rows: np.ndarray, step: "StepArrays", cos: np.ndarray, sin: np.ndarray, keys: np.ndarray,
                values: np.ndarray, streams: np.ndarray, slots: np.ndarray, sink_keys: np.ndarray,
                sink_values: np.ndarray, first: int, count: int) -> None:
    """Every layer of a decoding step, rows [m, d] float32 updated in place: model._compiled_step's
    kernel calls made from compiled code (see above); `step` holds the model's arrays."""
    _step_layers(rows, step.model, cos, sin, keys, values, streams, slots, sink_keys, sink_values, first, count)


class StepArrays:
    """What step_layers reads of a model, gathered once: each weight's int8 slices of every layer
    [layers, rows, n_in] (the model's own arrays, no copies), the per-layer scales stacked, the
    sizes and settings as tuples."""

    def __init__(self, stacked_slices: dict, layers: list, arrays: list, heads: int, ffn: int, settings, inverse_d,
                 eps, table, sigmoid, chunk: int):
        names = ("qkv", "out", "gate_up", "down")
        first = layers[0]
        self.weights = tuple(stacked_slices[name].numpy() for name in names)
        self.two_slices = tuple(getattr(first, name).bits > 8 for name in names)
        self.sizes = (first.qkv.n_out, first.out.n_out, first.gate_up.n_out, first.down.n_out, heads, ffn,
                      sigmoid.shape[0] // 2)
        self.scales = tuple(np.stack([getattr(a, name + "_scale") for a in arrays]) for name in names)
        self.key_inverse = np.stack([a.key_inverse for a in arrays])
        self.value_inverse = np.stack([a.value_inverse for a in arrays])
        self.value_scale = np.stack([a.value_scale for a in arrays])
        self.head_step = np.stack([a.head_step for a in arrays])
        self.settings = (settings.activation_bits, settings.query_bits, chunk)
        self.limits = (inverse_d, eps, np.float32(2 ** (settings.key_bits - 1) - 1),
                       np.float32(2 ** (settings.value_bits - 1) - 1), np.float32(2.0 ** settings.silu_grid_bits))
        self.table, self.sigmoid = table, sigmoid
        # one argument for step_layers, unpacked there in this order
        self.model = (self.weights, self.sizes, self.two_slices, self.scales, self.settings, self.limits,
                      self.key_inverse, self.value_inverse, self.value_scale, self.head_step, self.table, self.sigmoid)


def normalize_rows(h: np.ndarray, bits: int, inverse_d: np.float32, eps: np.float32):
    """model._project's first half for rows h [m, d] float32: the integer rows [m, d] int16 and
    each row's factor, scale / rms, float32 [m]."""
    rows = np.empty(h.shape, np.int16)
    factors = np.empty(h.shape[0], np.float32)
    _normalize_rows(h, bits, inverse_d, eps, rows, factors)
    return rows, factors


def quantize_rows(x: np.ndarray, bits: int):
    """model._linear's first half for rows x [m, k] float32: the integer rows [m, k] int16 and each
    row's scale [m]."""
    rows = np.empty(x.shape, np.int16)
    scales = np.empty(x.shape[0], np.float32)
    _quantize_rows(x, bits, rows, scales)
    return rows, scales


def split_rows(rows: np.ndarray) -> np.ndarray:
    """Integer rows [m, k] (|x| < 2^15 - 2^7; int16, or integers held in another type) as int8
    slices [a_hi; a_lo] [2m, k], as integer.split_int8 splits them for torch._int_mm."""
    split = np.empty((2 * rows.shape[0], rows.shape[1]), np.int8)
    _split_rows(rows, split)
    return split


def small_product_chunk(activation_bits: int) -> int:
    """The most k `small_product` sums in int32 at once: |a| <= 2^(A-1), |w| <= 128, and
    chunk * 2^(A-1) * 128 < 2^31; a multiple of the vector length (992 for 15-bit activations)."""
    most = (2 ** 31 - 1) // (2 ** (activation_bits - 1) * 128)
    chunk = most - most % simd.LANES
    if chunk < simd.LANES:
        raise ValueError(f"{activation_bits}-bit activations overflow small_product's int32 sums")
    return chunk


def small_product(rows: np.ndarray, slices: np.ndarray, n: int, chunk: int) -> np.ndarray:
    """The exact integer product [m, n] (int64) of activation rows [m, k] (int16, |a| <= 2^14)
    and a weight's int8 slices: [n, k] (one slice) or [w_hi; w_lo] [2n, k] (two), each product
    w_hi 2^8 + w_lo. For a few rows (a decoding step); `chunk` from small_product_chunk."""
    m, depth = rows.shape
    two_slices = slices.shape[0] == 2 * n
    out = np.empty((m, n), np.int64)
    width = 2 if two_slices else 4
    _small_product(rows, slices, n, two_slices, chunk, PREFETCH_TILES * width * depth, out)
    return out


def scaled_outputs(product: np.ndarray, form: int, weight_scale: np.ndarray, factors: np.ndarray):
    """model._project's second half: the scaled product [m, n] float32 from a product in `form`."""
    out = np.empty((factors.shape[0], weight_scale.shape[0]), np.float32)
    _scaled_outputs(product, form, weight_scale, factors, out)
    return out


def scaled_tile(by_high: np.ndarray, by_low: np.ndarray, weight_scale: np.ndarray, factors: np.ndarray,
                out: np.ndarray, first: int) -> None:
    """scaled_outputs of a tile of a two-slice weight's columns first.. (int32 products of the split
    activations with the tile's high and low weight slices, [2m, columns] each) into out[:, first:]."""
    _scaled_tile(by_high, by_low, weight_scale, factors, out, first)


def scaled_exact_tile(exact: np.ndarray, weight_scale: np.ndarray, factors: np.ndarray, out: np.ndarray,
                      first: int) -> None:
    """scaled_outputs of a tile of columns first.. from their exact int64 products [m, columns],
    into out[:, first:]."""
    _scaled_exact_tile(exact, weight_scale, factors, out, first)


def add_product(h: np.ndarray, product: np.ndarray, form: int, weight_scale: np.ndarray,
                scales: np.ndarray) -> None:
    """h += the scaled product (model._linear's second half), in place."""
    _add_product(h, product, form, weight_scale, scales)


def qkv_outputs(product, form, weight_scale, factors, heads, cos, sin, key_inverse, key_limit, value_inverse,
                value_limit, head_step, query_bits, keys, values_t, streams, slots):
    """The queries, keys and values of rows of positions from the qkv product: RoPE (row i's
    angles cos[i], sin[i], [m, hd/2]), keys and values into the int16 context of stream
    streams[i] at slots[i], and the integer queries [m, kv, G, hd] int16 with their shifts
    [m, kv, G] int32, as the attention kernels take them (model._step's and _queries_and_keys'
    torch paths)."""
    kv_heads, head_dim = value_inverse.shape
    queries = np.empty((factors.shape[0], kv_heads, heads // kv_heads, head_dim), np.int16)
    shifts = np.empty(queries.shape[:3], np.int32)
    _qkv_outputs(product, form, weight_scale, factors, heads, cos, sin, key_inverse, key_limit, value_inverse,
                 value_limit, head_step, query_bits, keys, values_t, streams, slots, queries, shifts)
    return queries, shifts


def attention_outputs(numerator, total, value_scale, bits):
    """Attention's output rows (numerator / total times the values' scales) quantized for the
    output projection: integer rows [m, heads * hd] int16 and scales [m]."""
    streams, kv_heads, group, head_dim = numerator.shape
    rows = np.empty((streams, kv_heads * group * head_dim), np.int16)
    scales = np.empty(streams, np.float32)
    _attention_outputs(numerator, total, value_scale, bits, rows, scales)
    return rows, scales


def gated_outputs(product, form, weight_scale, factors, ffn, sigmoid, grid_bits, bits):
    """silu(gate) * up from the gate/up product (model._mlp), quantized for the down projection:
    integer rows [m, ffn] int16 and scales [m]."""
    rows = np.empty((factors.shape[0], ffn), np.int16)
    scales = np.empty(factors.shape[0], np.float32)
    middle = sigmoid.shape[0] // 2
    _gated_outputs(product, form, weight_scale, factors, ffn, sigmoid, np.float32(2.0 ** grid_bits), middle,
                   bits, rows, scales)
    return rows, scales


# --- coding: what the arithmetic coder needs of each row of logits ---------------------------------
#
# exact/coding.py's Distribution.rows computes each row's integer frequencies
# table[min(floor(fl32(max - logit) * 2^grid), last)], their running sums (exact in float64) and,
# at the target and the first choice, the intervals the coder takes: some ten passes over
# [rows, vocab] arrays. Here it is one pass a row: the same float32 subtraction, the rest integers.

if numba is not None:

    @numba.njit(inline="always")
    def _first_choice(row):
        """The largest logit of a row and its token, the lowest id among equal maxima (as argmax)."""
        peak, first = row[0], 0
        for t in range(1, row.shape[0]):
            if row[t] > peak:
                peak, first = row[t], t
        return peak, first

    @numba.njit(inline="always")
    def _frequency(table, last, peak, logit, step):
        """The token's integer frequency: the table at floor(fl32(peak - logit) * 2^grid) (>= 0:
        truncation is floor), clamped to its last entry."""
        return table[min(np.int64(_f32(_f32(peak - logit) * step)), last)]

    @_compiled
    def _coded_rows(logits, targets, table, step, lows, highs, totals, firsts, first_lows, first_freqs, peaks):
        rows, vocab = logits.shape
        last = table.shape[0] - 1
        for i in numba.prange(rows):
            peak, first = _first_choice(logits[i])
            peaks[i], firsts[i] = peak, first
            target = targets[i]  # -1: none (extraction's rows, whose tokens are not known yet)
            total = np.int64(0)
            for t in range(vocab):
                frequency = _frequency(table, last, peak, logits[i, t], step)
                if t == target:
                    lows[i] = total
                    highs[i] = total + frequency
                if t == first:
                    first_lows[i] = total
                    first_freqs[i] = frequency
                total += frequency
            totals[i] = total


def coded_rows(logits: np.ndarray, targets: np.ndarray, table: np.ndarray, grid_bits: int):
    """For logits [n, V] float32 and targets [n]: each row's target interval (lows, highs), total,
    first choice and its interval (first_lows, first_freqs), int64 arrays [n]; table int64."""
    n = logits.shape[0]
    out = [np.empty(n, np.int64) for _ in range(6)]
    _coded_rows(logits, targets, table, np.float32(2.0 ** grid_bits), *out, np.empty(n, np.float32))
    return out


# Extraction's side: each row's total, first choice and its interval (`decode_rows`: coded_rows'
# pass without a target), then, once the coders have read their values, the token whose interval
# holds each value (`find_tokens`): the same frequencies as coded_rows, and the same tokens as the
# torch path's cumulative sums and searchsorted, without [rows, vocab] arrays.

if numba is not None:

    @_compiled
    def _find_tokens(logits, rows, values, peaks, table, step, tokens, lows, highs):
        last = table.shape[0] - 1
        vocab = logits.shape[1]
        for k in numba.prange(rows.shape[0]):
            i = rows[k]
            total = np.int64(0)
            token = vocab - 1
            for t in range(vocab - 1):  # the first token whose running sum passes the value (else the last)
                frequency = _frequency(table, last, peaks[i], logits[i, t], step)
                if total + frequency > values[k]:
                    token = t
                    break
                total += frequency
            tokens[k], lows[k], highs[k] = token, total, total + _frequency(table, last, peaks[i], logits[i, token], step)


def decode_rows(logits: np.ndarray, table: np.ndarray, grid_bits: int):
    """For logits [n, V] float32: each row's peak (float32), total, first choice and its interval
    (first_lows, first_freqs), as coded_rows computes them; table int64."""
    n = logits.shape[0]
    peaks = np.empty(n, np.float32)
    lows, highs, totals, firsts, first_lows, first_freqs = (np.empty(n, np.int64) for _ in range(6))
    _coded_rows(logits, np.full(n, -1, np.int64), table, np.float32(2.0 ** grid_bits), lows, highs, totals, firsts,
                first_lows, first_freqs, peaks)
    return peaks, totals, firsts, first_lows, first_freqs


def find_tokens(logits: np.ndarray, rows: np.ndarray, values: np.ndarray, peaks: np.ndarray, table: np.ndarray,
                grid_bits: int):
    """For each row index in `rows` (int64) and coder value in `values` (int64, below the row's
    total): the token t with cumulative(t - 1) <= value < cumulative(t), and its interval
    [low, high), int64 arrays."""
    tokens, lows, highs = (np.empty(rows.shape[0], np.int64) for _ in range(3))
    _find_tokens(logits, rows, values, peaks, table, np.float32(2.0 ** grid_bits), tokens, lows, highs)
    return tokens, lows, highs


# --- the adaptive vocabulary bias (memzip/exact/adaptive.py): its keys, frequencies and update ----
#
# A token's frequency is table[min(peak - key, last)] with key = floor(logit * 2^grid) + (bias >>
# shift) and peak the row's largest key: integers after one exact float32 multiply. adaptive.py
# holds the torch path and the rule in words; these are the same integers in one pass a row.

if numba is not None:

    @numba.njit(inline="always")
    def _key(logit, step, bias, shift):
        return np.int64(np.floor(logit * step)) + (bias >> shift)

    @numba.njit(inline="always")
    def _biased_peak(row, bias, step, shift):
        """The largest key of a row and its token (the lowest id among equal maxima)."""
        peak, first = _key(row[0], step, bias[0], shift), 0
        for t in range(1, row.shape[0]):
            key = _key(row[t], step, bias[t], shift)
            if key > peak:
                peak, first = key, t
        return peak, first

    @numba.njit(inline="always")
    def _biased_frequency(table, last, peak, logit, bias, step, shift):
        return table[min(peak - _key(logit, step, bias, shift), last)]

    @numba.njit(inline="always")
    def _biased_row(row, bias, target, table, step, shift, out):
        """out = (low, high, total, first, first_low, first_freq, peak) of one row; target -1: none."""
        last = table.shape[0] - 1
        peak, first = _biased_peak(row, bias, step, shift)
        total = np.int64(0)
        low = high = first_low = first_freq = np.int64(0)
        for t in range(row.shape[0]):
            frequency = _biased_frequency(table, last, peak, row[t], bias[t], step, shift)
            if t == target:
                low, high = total, total + frequency
            if t == first:
                first_low, first_freq = total, frequency
            total += frequency
        out[0], out[1], out[2], out[3], out[4], out[5], out[6] = low, high, total, first, first_low, first_freq, peak

    @numba.njit(inline="always")
    def _learn(row, bias, fresh, token, peak, total, rate, fresh_rate, table, step, shift):
        """One step of gradient descent on the coded token's cost: every token's bias falls by
        floor(r * frequency / total) (its probability, in bias units) and the coded token's rises
        by r, where r is `fresh_rate` for a token the group has not coded yet (fresh[t] = 1) and
        `rate` once it has. Only frequencies of at least ceil(total / r) fall by one unit or more."""
        last = table.shape[0] - 1
        least = (total + rate - 1) // rate
        least_fresh = (total + fresh_rate - 1) // fresh_rate
        for t in range(row.shape[0]):
            frequency = _biased_frequency(table, last, peak, row[t], bias[t], step, shift)
            if fresh[t]:
                if frequency >= least_fresh:
                    bias[t] -= frequency * fresh_rate // total
            elif frequency >= least:
                bias[t] -= frequency * rate // total
        bias[token] += fresh_rate if fresh[token] else rate
        fresh[token] = 0

    @_compiled_serial
    def _adaptive_coded_rows(logits, targets, bias, fresh, table, step, shift, rate, fresh_rate, out):
        for i in range(logits.shape[0]):  # in order: each row's bias has learned the rows before it
            _biased_row(logits[i], bias, targets[i], table, step, shift, out[i])
            _learn(logits[i], bias, fresh, targets[i], out[i, 6], out[i, 2], rate, fresh_rate, table, step, shift)

    @_compiled
    def _adaptive_decode_rows(logits, biases, streams, table, step, shift, out):
        for i in numba.prange(logits.shape[0]):
            _biased_row(logits[i], biases[streams[i]], -1, table, step, shift, out[i])

    @_compiled
    def _adaptive_find_tokens(logits, biases, streams, rows, values, peaks, table, step, shift, out):
        last = table.shape[0] - 1
        vocab = logits.shape[1]
        for k in numba.prange(rows.shape[0]):
            i = rows[k]
            bias = biases[streams[i]]
            total = np.int64(0)
            token = vocab - 1
            for t in range(vocab - 1):
                frequency = _biased_frequency(table, last, peaks[i], logits[i, t], bias[t], step, shift)
                if total + frequency > values[k]:
                    token = t
                    break
                total += frequency
            out[k, 0], out[k, 1] = token, total
            out[k, 2] = total + _biased_frequency(table, last, peaks[i], logits[i, token], bias[token], step, shift)

    @_compiled
    def _adaptive_learn(logits, biases, fresh, streams, tokens, peaks, totals, rate, fresh_rate, table, step, shift):
        for i in numba.prange(logits.shape[0]):
            _learn(logits[i], biases[streams[i]], fresh[streams[i]], tokens[i], peaks[i], totals[i], rate, fresh_rate,
                   table, step, shift)


def adaptive_coded_rows(logits: np.ndarray, targets: np.ndarray, bias: np.ndarray, fresh: np.ndarray,
                        table: np.ndarray, grid_bits: int, shift: int, rate: int, fresh_rate: int) -> np.ndarray:
    """Rows [n, V] float32 of one stream coded in order, its bias [V] int64 learning after each
    (`fresh` [V] uint8: 1 for the tokens not coded yet, which learn at `fresh_rate`):
    [n, 7] int64 of (low, high, total, first, first_low, first_freq, peak); `bias` and `fresh` are
    updated."""
    out = np.empty((logits.shape[0], 7), np.int64)
    _adaptive_coded_rows(logits, targets, bias, fresh, table, np.float32(2.0 ** grid_bits), shift, rate, fresh_rate,
                         out)
    return out


def adaptive_decode_rows(logits: np.ndarray, biases: np.ndarray, streams: np.ndarray, table: np.ndarray,
                         grid_bits: int, shift: int) -> np.ndarray:
    """Row i of logits [B, V] with bias row streams[i] of biases [S, V]: adaptive_coded_rows'
    columns without a target (low and high 0), nothing learned."""
    out = np.empty((logits.shape[0], 7), np.int64)
    _adaptive_decode_rows(logits, biases, streams, table, np.float32(2.0 ** grid_bits), shift, out)
    return out


def adaptive_find_tokens(logits: np.ndarray, biases: np.ndarray, streams: np.ndarray, rows: np.ndarray,
                         values: np.ndarray, peaks: np.ndarray, table: np.ndarray, grid_bits: int,
                         shift: int) -> np.ndarray:
    """find_tokens with the biased frequencies: [len(rows), 3] int64 of (token, low, high)."""
    out = np.empty((rows.shape[0], 3), np.int64)
    _adaptive_find_tokens(logits, biases, streams, rows, values, peaks, table, np.float32(2.0 ** grid_bits), shift,
                          out)
    return out


def adaptive_learn(logits: np.ndarray, biases: np.ndarray, fresh: np.ndarray, streams: np.ndarray,
                   tokens: np.ndarray, peaks: np.ndarray, totals: np.ndarray, rate: int, fresh_rate: int,
                   table: np.ndarray, grid_bits: int, shift: int) -> None:
    """Each row's bias (biases[streams[i]], distinct rows) learns its decoded token, in place
    (and fresh[streams[i]] as adaptive_coded_rows)."""
    _adaptive_learn(logits, biases, fresh, streams, tokens, peaks, totals, rate, fresh_rate, table,
                    np.float32(2.0 ** grid_bits), shift)
