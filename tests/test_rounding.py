"""The optimizer sees exactly what storage keeps: as_stored agrees with format.vectors.pack."""

import numpy as np
import pytest
import torch

from memzip.format import vectors as storage
from memzip.vectors.rounding import code_basis, expand, as_stored, stored_vectors


@pytest.mark.parametrize("dtype", storage.STORAGE_DTYPES)
def test_fake_quantize_is_what_storage_keeps(dtype):
    vectors = torch.randn(3, 2, 40, generator=torch.Generator().manual_seed(1)) * 0.1
    packed, scales = storage.pack(vectors.numpy(), dtype)
    kept = stored_vectors(packed, scales, dtype, None, 40)
    assert torch.allclose(as_stored(vectors, dtype), kept, rtol=0, atol=1e-7)


def test_the_gradient_passes_straight_through():
    vectors = torch.randn(1, 1, 16, requires_grad=True)
    (as_stored(vectors, "int4") * torch.arange(16.0)).sum().backward()
    assert torch.equal(vectors.grad[0, 0], torch.arange(16.0))


def test_codes_expand_through_the_basis():
    codes = torch.randn(2, 1, 4)
    basis = code_basis(4, 10)
    assert torch.allclose(expand(codes, basis), codes @ torch.from_numpy(storage.basis(4, 10)))
    assert expand(codes, None) is codes and code_basis(None, 10) is None
    packed, _ = storage.pack(codes.numpy(), "float32")
    assert np.allclose(stored_vectors(packed, None, "float32", 4, 10).numpy(), (codes @ basis).numpy())
