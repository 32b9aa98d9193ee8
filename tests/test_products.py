"""Exact integer products (memzip/exact/products.py): every backend that runs here gives the int64
reference's integers, in every form its consumers read, at the largest magnitudes the settings
allow; the choice among them is measured, cached per machine, and can be forced."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from memzip.exact import kernels, products
from memzip.exact.products import IntegerWeight

HERE = products.available("cpu")


def extreme_case(bits: int, n_out: int, n_in: int, rows: int, seed: int):
    """Integer weights and rows with their largest magnitudes in some rows, and the int64 product."""
    generator = torch.Generator().manual_seed(seed)
    limit = 2 ** (bits - 1) - 1
    w = torch.randint(-limit, limit + 1, (n_out, n_in), generator=generator, dtype=torch.int32)
    w[0], w[-1] = limit, -limit  # every product at its maximum
    a = torch.randint(-(2 ** 14), 2 ** 14 + 1, (rows, n_in), generator=generator, dtype=torch.int32)
    a[0], a[-1] = 2 ** 14, -(2 ** 14)
    return IntegerWeight.of(w, torch.ones(n_out), bits, 15), a, a.long() @ w.long().t()


def test_the_development_machine_runs_every_backend():
    """CI and the development machines are CPUs with numba and oneDNN: all four backends run, so the
    tests below compare all four (a machine without one skips its cases, and says so here)."""
    assert set(HERE) == set(products.BACKENDS), f"backends that run here: {HERE}"


@pytest.mark.parametrize("backend", HERE)
@pytest.mark.parametrize("bits", [8, 12])
def test_every_backend_gives_the_exact_integers(backend, bits):
    """The torch path's product (float32 of the exact integers), over a depth of 1536 (the MLP's
    down projection) where float32 blocks and int32 sums both meet their bounds."""
    weight, a, reference = extreme_case(bits, 96, 1536, 7, seed=bits)
    assert torch.equal(products.matmul(weight, a, backend), reference.to(torch.float32))


@pytest.mark.parametrize("backend", HERE)
@pytest.mark.parametrize("bits", [8, 12])
def test_the_compiled_forms_hold_the_exact_integers(backend, bits):
    """product() for kernels.py: EXACT int64, or the split rows' int32 partial products, which the
    kernels recombine (scaled_outputs with unit scales gives float32 of the integers); and the
    scaled product of a weight as wide as a vocabulary, in tiles of columns at many rows."""
    weight, a, reference = extreme_case(bits, 96, 1536, 9, seed=10 + bits)
    rows = a.to(torch.int16).numpy()
    got, form = products.product(weight, rows, backend)
    ones = np.ones(96, np.float32)
    assert np.array_equal(kernels.scaled_outputs(got, form, ones, np.ones(9, np.float32)),
                          reference.to(torch.float32).numpy())
    if form == kernels.EXACT:
        assert np.array_equal(got, reference.numpy())

    n_out = 4 * products.TILE_OUTPUTS + 37  # a last, partial tile
    wide, a, reference = extreme_case(bits, n_out, 64, products.TILED_FROM_ROWS + 3, seed=20 + bits)
    for m in (products.TILED_FROM_ROWS + 3, products.TILED_FROM_ROWS - 1):  # tiled, and whole
        scaled = products.scaled_product(wide, a[:m].to(torch.int16).numpy(), np.ones(n_out, np.float32),
                                         np.ones(m, np.float32), backend)
        assert np.array_equal(scaled, reference[:m].to(torch.float32).numpy()), m


def test_products_summed_in_any_order_are_the_same():
    """The argument for float64: partial sums of integers below 2^53 are exact, so the products
    summed block by block in reverse order are the int64 reference's integers."""
    weight, a, reference = extreme_case(12, 96, 1536, 7, seed=3)
    w = weight.integers().double()
    blocks = sum(a[:, k:k + 128].double() @ w[:, k:k + 128].t() for k in reversed(range(0, 1536, 128)))
    assert torch.equal(blocks, reference.double())


def test_int8_products_of_any_depth_are_exact():
    """products.int8_matmul, which compression's attention sums go through, for any number of keys
    (torch 2.13's _int_mm returns wrong sums for a depth of one on the development CPUs: a block
    whose first query sees a single key went wrong before this guard)."""
    generator = torch.Generator().manual_seed(2)
    for rows, depth, columns in ((1, 1, 16), (24, 1, 128), (12, 2, 16), (96, 3, 32), (7, 40, 128)):
        a = torch.randint(-128, 128, (rows, depth), dtype=torch.int8, generator=generator)
        b = torch.randint(-128, 128, (columns, depth), dtype=torch.int8, generator=generator)
        assert np.array_equal(products.int8_matmul(a.numpy(), b.numpy()), (a.long() @ b.long().t()).numpy())


def test_weights_whose_slices_could_overflow_int32_are_refused():
    with pytest.raises(ValueError, match="int32"):
        IntegerWeight.of(torch.ones(2, 1 << 17, dtype=torch.int32), torch.ones(2), 15, 15)


@pytest.mark.parametrize("bits, activation_bits", [(16, 15), (12, 16)])
def test_sixteen_bit_weights_or_activations_are_refused(bits, activation_bits):
    """A 16-bit integer's high int8 slice reaches 2^7 + 1 (32,767 = 128 x 256 - 1), which int8
    cannot hold: such weights once decoded, the same on every backend but far from the float
    model (a row whose max is 32,767 lost 256 x 256 in its largest weight)."""
    with pytest.raises(ValueError, match="at most 15 bits"):
        IntegerWeight.of(torch.ones(2, 8, dtype=torch.int32), torch.ones(2), bits, activation_bits)


# --- the choice ---------------------------------------------------------------------------------------

SHAPES = {"qkv": (96, 64, 12), "out": (64, 64, 8), "gate_up": (192, 64, 8), "down": (64, 96, 12),
          "head": (500, 64, 12)}
ATTENTION = (48, 80, 16)


def test_the_choice_is_measured_once_per_machine_and_cached(monkeypatch, tmp_path):
    """The first call measures every backend on every shape (and says so), keeps the fastest; the
    second reads the cache; another machine (here: another thread count) measures anew."""
    monkeypatch.setenv("MEMZIP_CACHE", str(tmp_path))
    monkeypatch.delenv(products.ENVIRONMENT, raising=False)
    said = []
    first = products.choose(SHAPES, ATTENTION, "cpu", on_prepare=said.append)
    assert first.source == "measured" and len(said) == 1
    for role in SHAPES:
        rates = first.rates[role]
        assert first.roles[role] == max(rates, key=rates.get) and set(rates) <= set(HERE)
        assert all(rate > 0 for rate in rates.values())
    assert first.attention == max(first.rates["attention"], key=first.rates["attention"].get)
    again = products.choose(SHAPES, ATTENTION, "cpu", on_prepare=said.append)
    assert again.source == "cached" and again.roles == first.roles and len(said) == 1
    stored = json.loads((tmp_path / "backends.json").read_text())
    assert len(stored) == 1 and next(iter(stored.values()))["machine"]["threads"] == torch.get_num_threads()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads > 1 else 2)
        assert products.choose(SHAPES, ATTENTION, "cpu").source == "measured"
    finally:
        torch.set_num_threads(threads)
    assert len(json.loads((tmp_path / "backends.json").read_text())) == 2


@pytest.mark.parametrize("backend", HERE)
def test_a_backend_can_be_forced(backend, monkeypatch):
    monkeypatch.setenv(products.ENVIRONMENT, backend)
    choice = products.choose(SHAPES, ATTENTION, "cpu")
    assert choice.source == "forced" and set(choice.roles.values()) == {backend}
    assert choice.attention == (backend if backend in products.ATTENTION_BACKENDS else "float64")


def test_an_unknown_or_unavailable_backend_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="unknown backend"):
        products.choose(SHAPES, ATTENTION, "cpu", backend="int4")
    monkeypatch.setattr(products, "_AVAILABLE", {"cpu": ["float64"]})
    with pytest.raises(ValueError, match="does not run"):
        products.choose(SHAPES, ATTENTION, "cpu", backend="int8")
