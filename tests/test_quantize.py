"""Vector storage: what the optimizer sees is exactly what extraction reads back."""

import numpy as np
import pytest
import torch

from memzip import quantize

ALL = quantize.STORAGE_DTYPES
# SplitMix64 from state 0 begins 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F:
# top bits 1, 0, 0 give the signs -, +, + of the first row.
PINNED_2x6 = [[-1, 1, 1, -1, 1, 1], [1, -1, 1, -1, 1, -1]]
PINNED_64x576_SHA = "68ef70f8d63fd22b"


@pytest.mark.parametrize("dtype", ALL)
def test_unpack_of_pack_equals_the_optimizers_view(dtype):
    vectors = torch.randn(5, 2, 37) * 0.3  # 37: packed rows end mid-byte
    stored, scales = quantize.pack(vectors, dtype)
    assert stored.shape == (5, 2, quantize.stored_width(dtype, 37))
    assert stored.dtype == quantize.numpy_dtype(dtype)
    assert torch.equal(quantize.unpack(stored, scales, dtype, 37), quantize.fake_quantize(vectors, dtype))


@pytest.mark.parametrize("dtype", list(quantize.INT_BITS))
def test_integer_codes_use_the_full_symmetric_range(dtype):
    vectors = torch.linspace(-1, 1, 255).reshape(1, 1, 255)
    stored, _ = quantize.pack(vectors, dtype)
    q = quantize.unpack_integers(stored, dtype, 255)
    limit = quantize.levels(dtype)
    assert q.min() == -limit and q.max() == limit
    assert len(np.unique(q)) == 2 * limit + 1


def test_bytes_per_vector_shrink_with_bits():
    sizes = [quantize.bytes_per_vector(d, 576) for d in ALL]
    assert sizes == [2304, 1152, 580, 436, 364, 292, 220, 148]


def test_straight_through_gradient():
    vectors = torch.randn(1, 1, 16, requires_grad=True)
    quantize.fake_quantize(vectors, "int3").sum().backward()
    assert torch.equal(vectors.grad, torch.ones_like(vectors))


def test_the_code_basis_is_pinned():
    """Archives depend on these exact signs: changing `basis` would break every archive made
    with --code-dims, so its first entries and a digest of a real-size basis are fixed here."""
    import hashlib

    small = quantize.basis(2, 6)
    assert small.dtype == torch.float32
    scale = np.float32(1 / np.sqrt(2))
    assert (small / scale).round().int().tolist() == PINNED_2x6
    big = quantize.basis(64, 576).numpy()
    assert hashlib.sha256(big.tobytes()).hexdigest()[:16] == PINNED_64x576_SHA


def test_code_basis_keeps_the_vector_scale():
    codes = torch.randn(2000, 64) * 0.05
    vectors = quantize.expand(codes, quantize.basis(64, 576))
    assert vectors.shape == (2000, 576)
    assert abs(float(vectors.std()) - 0.05) < 0.003
