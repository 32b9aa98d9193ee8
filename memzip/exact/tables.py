"""Tables of transcendental functions, built from integer arithmetic so they are the same everywhere.

`torch.exp`, `sin`, `cos` and `rsqrt` are computed differently by every math library (glibc,
MKL, CUDA's libdevice) and differ in their last bits. The exact engine never calls them: it
looks up these tables, built once per process with Python integers and `decimal` (both exact
and platform-independent), and converted to float64 by correctly rounded division. The same
Python code gives the same tables on every machine, so the tables are part of the format: a
change to any function here changes every archive (`ENGINE` in memzip/exact/model.py names the
version).

- `exp_table(value_bits, grid_bits)`: round(2^value_bits * exp(-(i + 1/2) / 2^grid_bits)), the
  exponential of a *bucket* of non-positive logit differences (the midpoint of bucket i), as
  integers; used for attention weights and for the coding distribution.
- `sigmoid_table(grid_bits, limit)`: sigmoid(i / 2^grid_bits) for |i| <= limit * 2^grid_bits, for SiLU.
- `rope_tables(...)`: cos and sin of position * frequency for RoPE, per position and frequency.
"""

from __future__ import annotations

import decimal
import functools

import numpy as np

# Fixed-point precision of the integer computations: far beyond float64's 53 bits, so the
# rounding errors of the recurrences below never reach the float64 result in practice (and
# where one would, it does so identically on every machine).
_PREC = 160
_ONE = 1 << _PREC
_PI = decimal.Decimal("3.14159265358979323846264338327950288419716939937510582097494459")


def _context() -> decimal.Context:
    return decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)


def decimal_sqrt(value: int) -> decimal.Decimal:
    return _context().sqrt(decimal.Decimal(value))


def _fixed_exp(numerator: int, denominator: int) -> int:
    """floor-ish(exp(numerator / denominator) * 2^_PREC) for |numerator / denominator| <= 1,
    by the Taylor series in integers."""
    term, total, n = _ONE, _ONE, 1
    while term:
        term = term * numerator // (denominator * n)
        total += term
        n += 1
    return total


def _to_float(fixed: int) -> float:
    """A fixed-point number (scale 2^_PREC) as the nearest float64 (Python's int / int is
    correctly rounded)."""
    return fixed / _ONE


@functools.lru_cache(maxsize=8)
def exp_table(value_bits: int, grid_bits: int, floor: int = 0) -> np.ndarray:
    """int64 [N + 1]: entry i = max(floor, round(2^value_bits * exp(-(i + 1/2) / 2^grid_bits))),
    i = 0..N, where N is the first bucket whose rounded value is at most `floor` (every later
    bucket is clamped to N). A difference d <= 0 between a logit and the largest one falls in
    bucket floor(-d * 2^grid_bits)."""
    step = _fixed_exp(-1, 1 << grid_bits)  # exp(-1/2^F)
    value = _fixed_exp(-1, 1 << (grid_bits + 1)) << value_bits  # 2^P exp(-1/2^(F+1)): bucket 0's midpoint
    out = []
    while True:
        rounded = max(floor, (value + (_ONE >> 1)) >> _PREC)
        out.append(rounded)
        if rounded <= floor:
            break
        value = value * step >> _PREC
    return np.asarray(out, dtype=np.int64)


@functools.lru_cache(maxsize=8)
def sigmoid_table(grid_bits: int, limit: int) -> np.ndarray:
    """float64 [2 * limit * 2^F + 1]: entry j = sigmoid((j - limit * 2^F) / 2^F)."""
    half = limit << grid_bits
    step = _fixed_exp(-1, 1 << grid_bits)
    down = [_ONE]  # exp(-i / 2^F), i = 0..half
    for _ in range(half):
        down.append(down[-1] * step >> _PREC)
    # sigmoid(x) = 1 / (1 + exp(-x)); sigmoid(-x) = exp(-x) / (1 + exp(-x))
    positive = [_ONE * _ONE // (_ONE + e) for e in down]
    negative = [e * _ONE // (_ONE + e) for e in down]
    values = negative[:0:-1] + positive
    return np.asarray([_to_float(v) for v in values], dtype=np.float64)


def inverse_frequencies(head_dim: int, theta: float, scaling: dict | None = None) -> list[decimal.Decimal]:
    """RoPE's frequencies theta^(-2j / head_dim), j < head_dim / 2, in 60-digit decimal; with the
    Llama 3 frequency scaling when `scaling` (the config's rope_parameters) says rope_type llama3."""
    ctx = _context()
    log_theta = ctx.ln(decimal.Decimal(repr(float(theta))))
    freqs = [ctx.exp(ctx.minus(ctx.multiply(decimal.Decimal(2 * j) / head_dim, log_theta)))
             for j in range(head_dim // 2)]
    if not scaling or scaling.get("rope_type", "default") == "default":
        return freqs
    if scaling.get("rope_type") != "llama3":
        raise ValueError(f"rope_type {scaling.get('rope_type')!r} is not supported by the exact engine")
    d = lambda key: decimal.Decimal(repr(float(scaling[key])))  # noqa: E731
    factor, low, high, original = d("factor"), d("low_freq_factor"), d("high_freq_factor"), d(
        "original_max_position_embeddings")
    low_wavelen, high_wavelen = original / low, original / high
    out = []
    for f in freqs:
        wavelen = 2 * _PI / f
        if wavelen < high_wavelen:
            out.append(f)
        elif wavelen > low_wavelen:
            out.append(f / factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            out.append((1 - smooth) * f / factor + smooth * f)
    return out


def _fixed(value: decimal.Decimal) -> int:
    """A decimal as a fixed-point integer (scale 2^_PREC), truncated toward zero."""
    return int(_context().multiply(value, decimal.Decimal(_ONE)))


def _cos_sin(angle: decimal.Decimal) -> tuple[int, int]:
    """cos and sin of an angle in [0, 1] radian, as fixed-point integers, by Taylor series."""
    ctx = _context()
    cos = sin = decimal.Decimal(0)
    term = decimal.Decimal(1)
    n = 0
    while True:
        if n % 4 == 0:
            cos += term
        elif n % 4 == 1:
            sin += term
        elif n % 4 == 2:
            cos -= term
        else:
            sin -= term
        n += 1
        term = ctx.divide(ctx.multiply(term, angle), n)
        if term < decimal.Decimal("1e-58"):
            break
    return _fixed(cos), _fixed(sin)


ROPE_FINE_BITS = 12  # positions are split as p = high * 4096 + low (memzip/exact/model.py)


@functools.lru_cache(maxsize=4)
def rope_tables(head_dim: int, theta: float, positions: int, scaling_items: tuple = (),
                stride_bits: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float64 cos and sin, each [positions, head_dim / 2], of (p * 2^stride_bits) * f_j for
    p < positions. Built by the angle-addition recurrence in 160-bit fixed point from cos and
    sin of each f_j (doubled stride_bits times)."""
    freqs = inverse_frequencies(head_dim, theta, dict(scaling_items) or None)
    cos = np.empty((positions, len(freqs)), dtype=np.float64)
    sin = np.empty_like(cos)
    for j, f in enumerate(freqs):
        c1, s1 = _cos_sin(f)
        for _ in range(stride_bits):  # cos 2x = c^2 - s^2, sin 2x = 2 s c
            c1, s1 = (c1 * c1 - s1 * s1) >> _PREC, (2 * s1 * c1) >> _PREC
        c, s = _ONE, 0
        for p in range(positions):
            cos[p, j], sin[p, j] = _to_float(c), _to_float(s)
            c, s = (c * c1 - s * s1) >> _PREC, (s * c1 + c * s1) >> _PREC
    return cos, sin


def rope_coarse_tables(head_dim: int, theta: float, positions: int, scaling_items: tuple = ()):
    """cos and sin of (p * 4096) * f_j: the coarse half of a position's angle."""
    return rope_tables(head_dim, theta, positions, scaling_items, ROPE_FINE_BITS)
