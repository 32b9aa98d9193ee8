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

Integer matrix products (`IntegerWeight.matmul`) return float32(exact integer product): one
rounding of an exact value, whatever computed it. Two backends compute the same integers:
`int8` (8-bit slices through `torch._int_mm`, int8 x int8 -> int32, recombined in int64; 2-3x
faster than float64 on CPUs with VNNI/AMX) and `float64` (one GEMM, any device).
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


def _split_weight(q: torch.Tensor) -> torch.Tensor:
    """split_int8 of a weight matrix, in one compiled pass on CPUs with numba (the model's
    weights are split once, as it is built: 10x faster than torch's passes for the output head)."""
    from memzip.exact import kernels

    if q.device.type == "cpu" and kernels.available():
        return torch.from_numpy(kernels.split_rows(q.detach().contiguous().numpy()))
    return split_int8(q)


# Products with many output columns (the output head: 49,152 of them for the embedded model) are
# computed in tiles of columns: the int32 partial products of a tile stay in the CPU's cache
# while they are combined, instead of a [2m, 2n] array (50 MB at m = 64) going through memory
# four times. Same integers; measured 2x faster for the head at m = 64, slower below ~32 rows.
TILE_OUTPUTS = 2048
TILED_FROM_ROWS = 32


class IntegerWeight:
    """A weight matrix [n_out, n_in] of integers (|w| <= 2^(bits-1)) with a power-of-two scale
    per output row (float32 [1, n_out]), ready for either backend. With the int8 backend, weights
    of up to 8 bits are one int8 slice, wider ones two."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bits: int, backend: str, activation_bits: int):
        self.bits, self.backend = bits, backend
        self.scale = scale.reshape(1, -1).to(torch.float32)
        self.n_out, self.n_in = q.shape
        if backend == "int8":
            if bits > 16 or activation_bits > 16:
                raise ValueError("int8 slices hold weights and activations of at most 16 bits")
            # the int32 sums of slice products, bounded: |a_hi| <= 2^(A-9) + 1, |a_lo| <= 128
            hi_a = 2 ** (activation_bits - 9) + 1
            largest_slice = 128 if bits <= 8 else max(128, 2 ** (bits - 9) + 1)
            if max(hi_a, 128) * largest_slice * self.n_in >= 2 ** 31:
                raise ValueError(f"int8 slice products over {self.n_in} inputs overflow int32")
            if bits <= 8:
                worst = self.n_in * (hi_a * 128 * 256 + 128 * 128)
                self.slices = q.to(torch.int8)  # [n_out, n_in]
            else:
                hi_w = 2 ** (bits - 9) + 1
                worst = self.n_in * (hi_a * hi_w * 256 + hi_a * 128 + 128 * hi_w)
                self.slices = _split_weight(q)  # [w_hi; w_lo]: [2 * n_out, n_in]
            self._views()
            self.combine_in_int32 = worst < 2 ** 31
        else:
            self.matrix_t = q.t().contiguous().to(torch.float64)  # [n_in, n_out]

    def _views(self) -> None:
        # row-major; _int_mm takes the transpose (a column-major view), the layout oneDNN's int8
        # GEMM is fastest with; kernels.small_product reads the same memory as numpy
        self.slices_t = self.slices.t()
        self.slices_numpy = self.slices.numpy() if self.slices.device.type == "cpu" else None

    def to(self, device) -> "IntegerWeight":
        for name in ("scale", "slices", "matrix_t"):
            if hasattr(self, name):
                setattr(self, name, getattr(self, name).to(device))
        if hasattr(self, "slices"):
            self._views()
        return self

    def matmul(self, q: torch.Tensor) -> torch.Tensor:
        """q [m, n_in] (int32, |q| <= 2^(A-1)) times this matrix transposed: the exact integer
        products [m, n_out], each rounded once to float32."""
        if self.backend == "float64":
            return (q.to(torch.float64) @ self.matrix_t).to(torch.float32)
        m, n = q.shape[0], self.n_out
        a = split_int8(q)  # [a_hi; a_lo]
        if m >= TILED_FROM_ROWS and n >= 4 * TILE_OUTPUTS:
            out = torch.empty(m, n, dtype=torch.float32, device=q.device)
            for first in range(0, n, TILE_OUTPUTS):
                last = min(n, first + TILE_OUTPUTS)
                out[:, first:last] = self._outputs(a, m, first, last)
            return out
        return self._outputs(a, m, 0, n)

    def _outputs(self, a: torch.Tensor, m: int, first: int, last: int) -> torch.Tensor:
        """Output columns first..last-1 from the split activations `a` [2m, n_in]."""
        n = self.n_out
        if self.bits <= 8:  # a.w = h 2^8 + l
            r = torch._int_mm(a, self.slices[first:last].t())
            high = r[:m] if self.combine_in_int32 else r[:m].to(torch.int64)
            return (high * 256 + r[m:]).to(torch.float32)
        if first == 0 and last == n:  # one call: [a_hi; a_lo] @ [w_hi; w_lo]^T
            r = torch._int_mm(a, self.slices_t)
            by_high, by_low = r[:, :n], r[:, n:]
        else:
            by_high = torch._int_mm(a, self.slices[first:last].t())
            by_low = torch._int_mm(a, self.slices[n + first:n + last].t())
        # a.w = (hh 2^8 + hl + lh) 2^8 + ll: the bracket in int32 (bounded above), the rest in int64
        middle = by_high[:m] * 256 if self.combine_in_int32 else by_high[:m].to(torch.int64) * 256
        middle += by_low[:m]
        middle += by_high[m:]
        exact = middle.to(torch.int64)
        exact <<= 8
        exact += by_low[m:]
        return exact.to(torch.float32)


def int8_available(device) -> bool:
    """torch._int_mm exists and runs here (CPU builds with oneDNN; CUDA needs other shapes)."""
    if torch.device(device).type != "cpu" or not hasattr(torch, "_int_mm"):
        return False
    try:
        a = torch.ones(2, 8, dtype=torch.int8)
        return int(torch._int_mm(a, a.t())[0, 0]) == 8
    except RuntimeError:
        return False
