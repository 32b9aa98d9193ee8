"""The compiled kernels (memzip/exact/kernels.py, simd.py) against integer arithmetic and the
reference's torch calls, at the extremes of their bounds, and compiled for other CPUs."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from memzip.exact import integer, products, tables
from memzip.exact.integer import (exponent, quantize_rows, split_int8)
from memzip.exact.model import _rope




@pytest.mark.parametrize("depth", [576, 1536, 70, 32, 5])
def test_small_products_are_exact(depth):
    """kernels.small_product (the vector loops of simd.py) against int64 arithmetic: 1 to 9 rows
    (tiles of 4, 2 and 1 rows), one and two weight slices, widths that leave columns and depths
    that leave k beyond the whole tiles and vectors, and the largest magnitudes, where a sum of
    more than `chunk` terms would overflow int32."""
    from memzip.exact import kernels
    generator = torch.Generator().manual_seed(depth)
    chunk = kernels.small_product_chunk(15)
    assert chunk * 2 ** 14 * 128 < 2 ** 31 <= (chunk + 32) * 2 ** 14 * 128
    for rows in range(1, 10):
        for n, two_slices in ((22, True), (37, False), (4, False)):
            a = torch.randint(-2 ** 14, 2 ** 14 + 1, (rows, depth), generator=generator, dtype=torch.int16)
            w = torch.randint(-128, 128, ((2 if two_slices else 1) * n, depth), generator=generator, dtype=torch.int8)
            a[0], w[0] = -2 ** 14, -128  # the extremes: every product 2^21
            a[-1, : depth // 2] = 2 ** 14
            got = kernels.small_product(a.numpy(), w.numpy(), n, chunk)
            whole = a.long() @ w.long().t()
            expected = whole[:, :n] * 256 + whole[:, n:] if two_slices else whole
            assert np.array_equal(got, expected.numpy()), (rows, n, two_slices)
    with pytest.raises(ValueError, match="overflow"):
        kernels.small_product_chunk(20)


_KERNEL_DIGEST = """
import hashlib, numpy as np
from memzip.exact import kernels, tables
g = np.random.default_rng(9)
digest = hashlib.sha256()
for rows, depth, n, two in ((5, 576, 37, True), (3, 1536, 22, True), (9, 100, 41, False)):
    a = g.integers(-2 ** 14, 2 ** 14 + 1, (rows, depth), dtype=np.int16)
    w = g.integers(-128, 128, ((2 if two else 1) * n, depth), dtype=np.int8)
    digest.update(kernels.small_product(a, w, n, kernels.small_product_chunk(15)).tobytes())
table = np.array(tables.exp_table(20, 8), dtype=np.int32)
q = g.integers(-128, 129, (2, 3, 3, 64), dtype=np.int16)
keys = g.integers(-2047, 2048, (2, 3, 90, 64), dtype=np.int16)
values = g.integers(-2047, 2048, (2, 3, 64, 90), dtype=np.int16)
for out in kernels.step_attention(q, np.full((2, 3, 3), -12, np.int32), keys[:, :, 0], values[:, :, :, 0].astype(np.int32),
                                  keys, values, 3, 80, table):
    digest.update(out.tobytes())
print(digest.hexdigest())
"""


@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["haswell", "generic"])
def test_the_vector_loops_give_the_same_integers_compiled_for_other_cpus(cpu, tmp_path):
    """simd.py's loops and the attention kernel compiled for a CPU without AVX-512 (haswell: AVX2)
    and for any x86-64 (generic: SSE2), in a fresh process with its own numba cache, give the
    same integers as here: LLVM lowers the same integer IR to other instructions, and integer
    sums do not depend on which."""
    import os
    import subprocess
    import sys
    here = subprocess.run([sys.executable, "-c", _KERNEL_DIGEST], capture_output=True, text=True, check=True)
    env = {**os.environ, "NUMBA_CPU_NAME": cpu, "NUMBA_CACHE_DIR": str(tmp_path)}
    there = subprocess.run([sys.executable, "-c", _KERNEL_DIGEST], capture_output=True, text=True, check=True, env=env)
    assert there.stdout == here.stdout and len(here.stdout.strip()) == 64


def test_the_step_kernels_round_as_torch_s_calls_do(compiled):
    """Each row kernel of the compiled path against the reference's torch calls it replaces, on
    many rows at magnitudes from 1e-3 to 1e3 (an error of one rounding shows in the floats
    compared here, or flips some of the tens of thousands of integers)."""
    from memzip.exact import kernels
    generator = torch.Generator().manual_seed(11)
    exact = compiled
    shape, s, layer, arrays = exact.shape, exact.settings, exact.layers[0], exact._layer_arrays[0]
    heads, kv, hd, rows = shape.heads, shape.kv_heads, shape.head_dim, 8192
    h = torch.randn(rows, shape.d_model, generator=generator) * 10.0 ** (torch.rand(rows, 1, generator=generator) * 6 - 3)
    constants = np.float32(exact._inverse_d), np.float32(shape.eps)

    def projected(weight, role, scales):  # the kernels' (x @ W) * scales * factor, added to zeros
        integers, factors = kernels.normalize_rows(h.numpy(), s.activation_bits, *constants)
        product, form = products.product(weight, integers, "int8")  # many rows: torch._int_mm's slices
        out = np.zeros((rows, weight.n_out), np.float32)
        kernels.add_product(out, product, form, scales, factors)
        return torch.from_numpy(out), (product, form), factors
    for weight, role, scales in ((layer.qkv, "qkv", arrays.qkv_scale), (layer.gate_up, "gate_up", arrays.gate_up_scale)):
        assert torch.equal(projected(weight, role, scales)[0], exact._project(weight, role, h))

    # queries, keys and values: RoPE at a far position, static and per-row scales; keys here on a
    # 16-bit grid of their largest (the model's static scale is too coarse to show one rounding)
    qkv = exact._project(layer.qkv, "qkv", h)
    cos, sin = exact._rope_at(torch.tensor([123_457]))
    rotated = _rope(qkv[:, :(heads + kv) * hd].view(1, rows, heads + kv, hd), cos, sin)[0]
    key_inverse = integer.pow2(15 - exponent(rotated[:, heads:].abs().amax()), torch.float32).expand(kv, 1)
    keys = np.zeros((rows, kv, 3, hd), np.int16)
    values = np.zeros((rows, kv, hd, 3), np.int16)
    _, product, factors = projected(layer.qkv, "qkv", arrays.qkv_scale)
    angles = [np.broadcast_to(x[0].numpy(), (rows, x.shape[1])) for x in (cos, sin)]
    queries, shifts = kernels.qkv_outputs(
        *product, arrays.qkv_scale, factors, heads, *angles,
        key_inverse[:, 0].contiguous().numpy(), np.float32(2 ** 15 - 1), arrays.value_inverse,
        np.float32(2 ** (s.value_bits - 1) - 1), arrays.head_step, s.query_bits, keys, values, np.arange(rows),
        np.ones(rows, np.int64))
    q_int, q_scale = quantize_rows(rotated[:, :heads], s.query_bits)
    assert torch.equal(torch.from_numpy(queries).reshape(rows, heads, hd).float(), q_int)
    assert torch.equal(torch.from_numpy(shifts).reshape(rows, heads, 1),
                       exponent(q_scale * exact._head_step[0].view(1, heads, 1)) - 1)
    assert torch.equal(torch.from_numpy(keys[:, :, 1]).float(), integer.quantize_with(rotated[:, heads:], key_inverse, 16))
    assert torch.equal(torch.from_numpy(values[..., 1]).float(), integer.quantize_with(
        qkv[:, (heads + kv) * hd:].view(rows, kv, hd), exact._value_inverse[0], s.value_bits))

    # silu(gate) * up, beyond the sigmoid table too, quantized for the down projection
    _, product, factors = projected(layer.gate_up, "gate_up", arrays.gate_up_scale)
    factors = factors * (10.0 ** (np.random.default_rng(3).random(rows) * 3)).astype(np.float32)  # gates to ~700
    integers, scales = kernels.gated_outputs(*product, arrays.gate_up_scale, factors, shape.ffn,
                                             exact._sigmoid_array, s.silu_grid_bits, s.activation_bits)
    whole = quantize_rows(h, s.activation_bits)[0].to(torch.int32)
    gate_up = products.matmul(layer.gate_up, whole, "float64") * layer.gate_up.scale * torch.from_numpy(factors)[:, None]
    assert gate_up.abs().max() > 2 * s.silu_limit
    x, scale = quantize_rows(exact._silu(gate_up[:, :shape.ffn]) * gate_up[:, shape.ffn:], s.activation_bits)
    assert torch.equal(torch.from_numpy(integers).float(), x) and torch.equal(torch.from_numpy(scales), scale[:, 0])

    # attention's quotient, scaled and quantized for the output projection
    group = heads // kv
    numerator = torch.randint(-2 ** 45, 2 ** 45, (rows, kv, group, hd), generator=generator)
    total = torch.randint(1, 2 ** 31, (rows, kv, group), generator=generator)
    integers, scales = kernels.attention_outputs(numerator.numpy(), total.numpy(), arrays.value_scale,
                                                 s.activation_bits)
    out = (numerator.double() / total.double()[..., None]).float() * layer.value_scale[None, :, None, :]
    x, scale = quantize_rows(out.reshape(rows, heads * hd), s.activation_bits)
    assert torch.equal(torch.from_numpy(integers).float(), x) and torch.equal(torch.from_numpy(scales), scale[:, 0])
    assert torch.equal(torch.from_numpy(kernels.split_rows(integers)), split_int8(x))


def test_the_compiled_step_attention_matches_the_float_formula_at_its_extremes():
    """kernels.step_attention against the float path's formula (memzip/exact/model.py _step) on
    random integers at their bounds: 8-bit queries up to 128, 12-bit keys and values, score
    differences beyond 2^24 (where float32 rounds), shifts of both signs, weights of zero."""
    from memzip.exact import kernels
    generator = torch.Generator().manual_seed(5)
    table = torch.tensor(tables.exp_table(20, 8), dtype=torch.float32)
    streams, kv, group, hd, capacity, first, count = 3, 2, 3, 64, 50, 4, 40
    q = torch.randint(-128, 129, (streams, kv, group, hd), generator=generator).float()
    q[0, 0, 0] = 128
    q[0, 0, 0, 0] = 127
    keys = torch.randint(-2047, 2048, (streams, kv, capacity, hd), generator=generator).float()
    keys[0, 0, first] = 2047  # scores of about +-128 * 2047 * 64: an odd difference above 2^24
    keys[0, 0, first + 1] = -2047
    keys[0, 0, first + 1, 0] = -2046
    values = torch.randint(-2047, 2048, (streams, kv, capacity, hd), generator=generator).float()
    sink_keys = torch.randint(-2047, 2048, (streams, kv, 1, hd), generator=generator).float()
    sink_values = torch.randint(-2047, 2048, (streams, kv, hd), generator=generator).double()
    shifts = torch.randint(-16, 3, (streams, kv, group, 1), generator=generator)
    shifts[0, 0, 0] = -14  # that difference in buckets: inside the table
    step = integer.pow2(shifts, torch.float32)
    window = slice(first, first + count)
    # the float path, as ExactLlama._step computes it
    scores = (q @ keys[:, :, window].transpose(-1, -2)).mul_(step)
    sink = (q * sink_keys).sum(dim=-1, keepdim=True).mul_(step)
    both = torch.cat([sink, scores], dim=-1)
    difference = torch.sub(both.amax(dim=-1, keepdim=True), both).clamp_(max=table.numel() - 1)
    weights = table.index_select(0, difference.to(torch.int32).view(-1)).view(difference.shape)
    total = weights.sum(dim=-1, dtype=torch.float64)
    numerator = weights[..., 1:].double() @ values[:, :, window].double() + weights[..., :1].double() * sink_values[:, :, None]
    assert (weights == 0).any() and (weights > 0).any()
    got_numerator, got_total = kernels.step_attention(
        q.to(torch.int16).numpy(), shifts[..., 0].to(torch.int32).numpy(), sink_keys[:, :, 0].to(torch.int16).numpy(),
        sink_values.to(torch.int32).numpy(), keys.to(torch.int16).numpy(),
        values.transpose(-1, -2).to(torch.int16).contiguous().numpy(), first, count, table.to(torch.int32).numpy())
    assert np.array_equal(got_numerator, numerator.long().numpy())
    assert np.array_equal(got_total, total.long().numpy())
    assert kernels.fits(int(table.max()), 12, hd, 8, 12) and not kernels.fits(2 ** 21, 12, hd, 8, 12)
    # buckets of differences where float32 rounds (odd integers above 2^24), shifts of both signs;
    # m 2^k - 1 rounds up to m 2^k, which changes the bucket (m - 1 unrounded) at shift -k
    last = table.numel() - 1
    cases = [(m * 2 ** k - 1, -k) for k in (13, 14, 15, 16) for m in range(2 ** (24 - k) + 1, min(last, 2 ** (25 - k)), 7)]
    odd = torch.randint(2 ** 24, 2 ** 25, (300,), generator=generator) | 1
    cases += list(zip(odd.tolist(), torch.randint(-16, 3, (300,), generator=generator).tolist()))
    for d, shift in cases:
        expected = int((torch.tensor(float(d), dtype=torch.float32) * 2.0 ** shift).clamp(max=last))
        assert kernels._bucket(d, shift, last) == expected, (d, shift)


@pytest.mark.slow  # a fresh interpreter
def test_the_compiled_kernels_keep_torch_s_thread_count():
    """numba's parallel loops share torch's OpenMP runtime; starting them must not raise torch's
    thread count above what OMP_NUM_THREADS asked for."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np, torch\n"
            "from memzip.exact import kernels\n"
            "logits = np.random.default_rng(0).standard_normal((64, 300)).astype(np.float32)\n"
            "kernels.coded_rows(logits, np.zeros(64, np.int64), np.arange(1, 9, dtype=np.int64)[::-1].copy(), 2)\n"
            "print(torch.get_num_threads())\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("NUMBA_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split()[-1] == "1"
