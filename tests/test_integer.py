"""The exact arithmetic (memzip/exact/integer.py): scales read off the exact maximum, correctly
rounded square roots, int8 slices, refused settings."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from memzip.exact.integer import (check_exact, exponent, pow2, quantize, quantize_rows, split_int8,
                                  correctly_rounded_sqrt, sqrt_float32, sqrt_float64_cpu)




@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quantize_reads_the_scale_off_the_exact_maximum(dtype):
    x = torch.randn(50, 33, dtype=dtype) * torch.logspace(-30, 30, 50, dtype=dtype)[:, None]
    x[3] = 0
    q, scale = quantize(x, 15)
    assert torch.equal(q, torch.round(q)) and q.abs().max() <= 2 ** 14
    assert torch.equal(scale, pow2(exponent(scale) - 1, dtype))  # powers of two
    assert (q.abs().amax(dim=1)[torch.arange(50) != 3] >= 2 ** 13).all()  # the top bits are used
    if dtype == torch.float32:
        fast_q, fast_scale = quantize_rows(x, 15)
        assert torch.equal(fast_q, q) and torch.equal(fast_scale, scale)


def test_square_roots_are_correctly_rounded():
    """sqrt_float32 against numpy's float32 sqrt (the C library's, correctly rounded as IEEE-754
    requires), on values spread over many binades, powers of two and their neighbours. torch.sqrt
    itself is the control: on some CPUs its last bit differs (it did on the AMD EPYC this was
    written on), and the exact engine's RMSNorm must not depend on it."""
    generator = torch.Generator().manual_seed(0)
    spread = torch.exp2(torch.rand(1 << 20, generator=generator, dtype=torch.float64) * 80 - 40).to(torch.float32)
    powers = torch.exp2(torch.arange(-40, 41, dtype=torch.float64)).to(torch.float32)
    neighbours = torch.cat([(powers.view(torch.int32) + d).view(torch.float32) for d in (-2, -1, 1, 2)])
    for x in (spread, powers, neighbours, torch.tensor([0.0, 1e-5, 2.0, 3.0])):
        expected = torch.from_numpy(np.sqrt(x.numpy()))
        assert torch.equal(sqrt_float32(x), expected) and torch.equal(correctly_rounded_sqrt(x), expected)
        # and correctly rounded by a criterion of its own: x lies between the squares (exact in
        # float64) of the midpoints to the root's float32 neighbours
        root = expected.double()
        bits = expected.view(torch.int32)
        up, down = (bits + 1).view(torch.float32).double(), (bits - 1).view(torch.float32).double()
        wide = x.double()
        positive = wide > 0
        assert bool(((wide < ((root + up) / 2) ** 2) & (wide >= ((root + down) / 2) ** 2))[positive].all())
        assert torch.equal(sqrt_float64_cpu(x.double()), torch.from_numpy(np.sqrt(x.double().numpy())))


def test_split_into_int8_slices_is_exact():
    q = torch.arange(-(2 ** 14), 2 ** 14 + 1, dtype=torch.int32)[:, None]
    slices = split_int8(q)
    hi, lo = slices[:q.shape[0]].int(), slices[q.shape[0]:].int()
    assert torch.equal(hi * 256 + lo, q) and lo.min() >= -128 and lo.max() <= 127


def test_settings_that_would_overflow_an_exact_sum_are_refused():
    check_exact(15, 12, 1536, "fits")
    with pytest.raises(ValueError, match="bits"):
        check_exact(30, 20, 1 << 12, "too wide")
