"""Planning: how tokens are cut (even spans, streams), and how many chunks go side by side
(memory planned from the model's shape).

The batch planner's estimate covers what a real forward pass keeps, and is not absurdly loose."""

import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import LlamaConfig

from memzip import planning as memory
from memzip.ranks.decoder import _cache_of, start_embeddings
from memzip.layout import Layout
from memzip.vectors.optimize import VectorSpace, fit_chunks
from memzip.vectors.recipes import get_recipe


def test_kv_cache_is_what_the_estimate_says(tiny):
    shape = memory.MemoryShape.of(tiny.model.config, 4)
    with torch.no_grad():
        output = tiny.model(inputs_embeds=start_embeddings(tiny.model, 3, Layout(prefix=(0,)), None), use_cache=True)
        output = tiny.model(input_ids=torch.tensor([[5], [6], [7]]), use_cache=True, cache=_cache_of(output))
    cache = _cache_of(output)
    held = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert held == 3 * 2 * shape.layers * shape.kv_width * 2 * 4  # 3 chunks, 2 positions, float32


def test_fitting_estimate_covers_the_tensors_autograd_keeps(tiny):
    tokens = 40
    saved = {}

    def pack(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fit_chunks(tiny.model, [list(range(3, 3 + tokens))], get_recipe("default", 1), VectorSpace(), Layout(prefix=(0,)))
    kept = sum(saved.values())
    estimate = memory.chunk_bytes(memory.MemoryShape.of(tiny.model.config, 4), tokens + 2, fitting=True)
    assert kept <= estimate <= 8 * kept


def test_auto_batch_for_llama_3_1_8b_on_an_80_gb_gpu():
    """Llama-3.1-8B's published shape in bfloat16: weights 16 GB, 64 GB free."""
    config = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256)
    shape = memory.MemoryShape.of(config, 2)
    assert shape.kv_width == 1024
    free = 64 * 2**30
    decode = memory.auto_batch_size(shape, 1024, fitting=False, free=free)
    fit = memory.auto_batch_size(shape, 1030, fitting=True, free=free)
    # a 1024-token chunk's KV cache is 2 x 32 layers x 1024 x 1024 x 2 bytes = 128 MiB
    assert decode == int(0.7 * free) // (128 * 2**20 + 6 * 128256 * 4) == 350
    assert 1 <= fit < decode
    assert fit * memory.chunk_bytes(shape, 1030, True) <= memory.MEMORY_SHARE * free


def test_cpu_batches_are_the_fixed_defaults(tiny):
    from memzip.pipeline import plan
    from memzip.options import CPU_BATCH_SIZE, CompressOptions

    assert plan(CompressOptions(engine="float"), tiny).batch_size == CPU_BATCH_SIZE[False] == 32
    assert plan(CompressOptions(mem_vectors=1), tiny).batch_size == CPU_BATCH_SIZE[True] == 8
    assert plan(CompressOptions(engine="float", batch_size=3), tiny).batch_size == 3
    assert plan(CompressOptions(), tiny).batch_size is None  # exact model-only: streams, any batch


def test_stream_batches_fit_memory_and_are_even():
    # 42 streams under a cap of 32: two even rounds of 21, not 32 and a slow tail of 10
    assert memory.stream_batch(42, 10, None, cap=32) == 21
    assert memory.stream_batch(5, 10, None, cap=32) == 5
    assert memory.stream_batch(64, 10, None, cap=32) == 32
    # memory binds before the cap: 0.7 x 1000 bytes hold 7 streams of 100; 20 -> 3 rounds of 7
    assert memory.stream_batch(20, 100, 1000, cap=32) == 7
    assert memory.stream_batch(20, 10**9, 1000, cap=32) == 1  # never zero
    assert memory.stream_batch(0, 10, None) == 1


def test_extraction_batch_comes_from_memory(tiny):
    from memzip.exact.engine import exact_model, planned_batch
    from memzip.options import MAX_STREAMS_AT_ONCE

    model = exact_model(tiny)
    assert planned_batch(model, 3, 64) == 3
    assert planned_batch(model, MAX_STREAMS_AT_ONCE + 2, 64) == (MAX_STREAMS_AT_ONCE + 2) // 2


@given(st.integers(0, 500), st.integers(1, 64))
def test_even_spans_cover_everything_evenly(total, longest):
    spans = memory.even_spans(total, longest)
    assert [b for _, b in spans][-1:] == ([total] if total else [])
    assert all(a2 == b1 for (_, b1), (a2, _) in zip(spans, spans[1:]))
    lengths = [b - a for a, b in spans]
    assert all(1 <= n <= longest for n in lengths) and (not lengths or max(lengths) - min(lengths) <= 1)
    assert lengths == sorted(lengths, reverse=True)  # the longer ones first
    assert memory.even_spans(25, 10) == [(0, 9), (9, 17), (17, 25)]


def test_small_files_get_one_stream_and_large_ones_streams_of_bounded_length():
    assert memory.default_streams(0) == 1 and memory.default_streams(1000) == 1
    assert memory.default_streams(8191) == 1 and memory.default_streams(8192) == 2  # streams of >= 4,096
    assert memory.default_streams(20000) == 4  # up to SMALL_FILE_STREAMS of at least SMALL_STREAM_TOKENS
    assert memory.default_streams(12288 * 10 + 1) == 11


def test_best_is_one_stream_with_the_longest_window_where_the_stream_fills_it(tiny):
    """--best: one stream, and a window of 8,192 only where the stream is longer than that (a
    shorter one, which the defaults code in one stream anyway, would pay a byte of settings for a
    window it never fills); --streams and --window still choose; without --best, several streams
    keep 2,048."""
    from memzip.options import BEST_WINDOW, EXACT_WINDOW, ONE_STREAM_WINDOW, CompressOptions

    def window_and_streams(tokens: int, **options) -> tuple[int, int]:
        job = memory.plan(CompressOptions(engine="exact", **options), tiny)
        spans = memory.chunk_spans(tiny, job, [5] * tokens)
        return memory.with_stream_window(job, spans).window, len(spans)

    assert BEST_WINDOW == 8192 and BEST_WINDOW > ONE_STREAM_WINDOW
    assert window_and_streams(40000, best=True) == (BEST_WINDOW, 1)
    assert window_and_streams(BEST_WINDOW + 1, best=True) == (BEST_WINDOW, 1)
    assert window_and_streams(BEST_WINDOW, best=True) == (ONE_STREAM_WINDOW, 1)
    assert window_and_streams(5000, best=True) == window_and_streams(5000) == (ONE_STREAM_WINDOW, 1)
    assert window_and_streams(40000) == (EXACT_WINDOW, 4)
    assert window_and_streams(40000, best=True, streams=4) == (EXACT_WINDOW, 4)
    assert window_and_streams(40000, best=True, window=2048) == (2048, 1)
