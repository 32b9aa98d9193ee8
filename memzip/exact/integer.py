"""Arithmetic that cannot drift: integer sums, powers of two, single rounded operations.

Why each step of the exact engine gives the same bits on any device, BLAS, thread count and
batch shape:

- Sums whose order is not fixed (matrix products, reductions) only ever add *integers* whose
  exact total is representable: below 2^53 in float64, 2^24 in float32, 2^31 in int32, 2^63 in
  int64. Such sums are exact in any order, with or without fused multiply-adds. Each product's
  bound is checked where its shapes are fixed (`check_exact`).
- Multiplying by a power of two only changes the exponent: exact (the scales here never reach
  overflow or the subnormal range).
- Everything else is a fixed sequence of single IEEE-754 operations (+ - * / and
  conversions), which are correctly rounded on every CPU and GPU, applied one torch call at a
  time: never fused (no `torch.compile`, no `addcmul`), so no fused multiply-add changes a
  rounding. `round` (half to even), `floor`, comparisons and `amax` are exact.
- Square roots are the exception that proves the rule: IEEE-754 requires sqrt to be correctly
  rounded, but `torch.sqrt` on CPUs goes through a vector math library whose last bit depends
  on the CPU (measured with torch 2.13.0+cpu on an AMD EPYC: one float32 result in five, one
  float64 result in seventy, an ulp away from the correctly rounded value; numpy's were exact).
  `sqrt_float32` therefore uses it only as a first guess and settles the last bit with exact
  comparisons; on the CPU numpy's is used instead (`correctly_rounded_sqrt`, `sqrt_float64_cpu`).

A quantized row's scale is a power of two read off the bits of its *exact* max |x|, so the
integers are the same everywhere.

Integer matrix products (memzip/exact/products.py) return float32(exact integer product): one
rounding of an exact value, whatever computed it; four backends compute the same integers.
"""

from __future__ import annotations

import math

import torch

# Rows whose max |x| is below this are treated as zero rows (their scale stays finite).
TINY = {torch.float32: 2.0 ** -100, torch.float64: 2.0 ** -900}
EXACT_BITS = {torch.float32: 24, torch.float64: 53, torch.int32: 31, torch.int64: 63}


def exponent(x: torch.Tensor) -> torch.Tensor:
    """e with 2^(e-1) <= x < 2^e (the exponent frexp returns), read from the bits of positive
    normal float32 or float64 x."""
    if x.dtype == torch.float32:
        return ((x.view(torch.int32) >> 23) & 0xFF) - 126
    return ((x.view(torch.int64) >> 52) & 0x7FF) - 1022


def pow2(e: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """2^e as float32 or float64, built from the bits (exact); e an integer tensor in range."""
    if dtype == torch.float32:
        return ((e.to(torch.int32) + 127) << 23).view(torch.float32)
    return ((e.to(torch.int64) + 1023) << 52).view(torch.float64)


def power_of_two_at_least(x: torch.Tensor) -> torch.Tensor:
    """The scale 2^e with 2^(e-1) <= x < 2^e, for positive x (elementwise)."""
    return pow2(exponent(x.clamp(min=TINY[x.dtype])), x.dtype)


def sqrt_float32(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root of float32 x >= 0, on any device. A first guess within an
    ulp (torch.sqrt in float64, rounded to float32) moves to the neighbour whose rounding interval
    holds x until none does: the midpoint m between a float32 and its neighbour has 25
    significant bits, so m * m is exact in float64, as x is, and the comparison x >= m * m is
    exact (never equal: a square root is never such a midpoint)."""
    wide = x.to(torch.float64)
    root = torch.sqrt(wide).to(torch.float32)
    for _ in range(2):  # the guess is at most an ulp off; a second pass checks the first
        bits = root.view(torch.int32)
        up, down = (bits + 1).view(torch.float32), (bits - 1).view(torch.float32)
        centre = root.to(torch.float64)
        high = (centre + up.to(torch.float64)) * 0.5  # exact: two float32 of one binade
        low = (centre + down.to(torch.float64)) * 0.5
        root = torch.where(wide >= high * high, up, torch.where(wide < low * low, down, root))
    return root


def correctly_rounded_sqrt(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root of float32 x >= 0: numpy's on the CPU (the hardware's
    square-root instruction, which IEEE-754 binds; one call instead of sqrt_float32's ~25 small
    ones, which a decoding step makes 61 times), sqrt_float32 elsewhere."""
    if x.device.type == "cpu" and x.dtype == torch.float32:
        import numpy as np

        return torch.from_numpy(np.sqrt(x.detach().contiguous().numpy()))
    return sqrt_float32(x)


def sqrt_float64_cpu(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root of float64 x on the CPU: numpy's (the C library's, which
    IEEE-754 binds), not torch's (see the module docstring)."""
    import numpy as np

    return torch.from_numpy(np.sqrt(x.detach().to("cpu", torch.float64).numpy()))


def quantize(x: torch.Tensor, bits: int, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """x as integers q (held in x's dtype, |q| <= 2^(bits-1)) and a power-of-two scale per slice
    along `dim`: x ~ q * scale."""
    peak = x.abs().amax(dim=dim, keepdim=True).clamp_(min=TINY[x.dtype])
    e = exponent(peak) - (bits - 1)  # peak / 2^e in [2^(bits-2), 2^(bits-1))
    return torch.round(x * pow2(-e, x.dtype)), pow2(e, x.dtype)


def quantize_rows(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`quantize` of float32 rows (the last dimension), in fewer operations: the scale 2^(e-bits+1)
    and its inverse are built straight from the exponent bits of the exact max |x|
    (peak = m 2^E, m in [1, 2): biased exponent b = E + 127, frexp's e = E + 1)."""
    peak = x.abs().amax(dim=-1, keepdim=True).clamp_(min=TINY[torch.float32])
    biased = peak.view(torch.int32) & 0x7F800000  # b << 23
    inverse = (((bits + 252) << 23) - biased).view(torch.float32)  # 2^(bits - 2 - E)
    scale = (biased + ((2 - bits) << 23)).view(torch.float32)  # 2^(E + 2 - bits)
    return torch.round(x * inverse), scale


def quantize_with(x: torch.Tensor, inverse_scale: torch.Tensor, bits: int) -> torch.Tensor:
    """x times a fixed power of two (the inverse of a static scale from a bound on x), rounded
    and clamped to +-(2^(bits-1) - 1)."""
    limit = float(2 ** (bits - 1) - 1)
    return torch.round(x * inverse_scale).clamp_(-limit, limit)


def check_exact(bits_a: int, bits_b: int, terms: int, what: str, dtype: torch.dtype = torch.float64) -> None:
    """Refuse a configuration in which a sum of `terms` products of a `bits_a`-bit and a
    `bits_b`-bit integer (magnitudes up to 2^(bits-1)) could exceed what `dtype` holds exactly."""
    need = (bits_a - 1) + (bits_b - 1) + math.ceil(math.log2(max(terms, 1)))
    if need > EXACT_BITS[dtype]:
        raise ValueError(f"{what}: sums need {need} bits, more than {dtype} holds exactly")


# --- integer matrix products ---------------------------------------------------------------------


def split_int8(q: torch.Tensor) -> torch.Tensor:
    """Integers |q| <= 2^15 - 2^7 ([m, k], int32 or integer-valued float) as hi * 256 + lo with hi,
    lo int8 (lo in -128..127, hi = floor((q + 128) / 256)), stacked [hi; lo] as [2m, k]."""
    whole = q if q.dtype == torch.int32 else q.to(torch.int32)
    hi = (whole + 128) >> 8  # arithmetic shift: floor division
    return torch.cat([hi, whole - (hi << 8)]).to(torch.int8)
