"""Cutting tokens into chunks: by length, and by information (cross-entropy) budget."""

from hypothesis import given
from hypothesis import strategies as st


import pytest

from memzip.vectors.chunking import information_chunks, token_costs
from memzip.pipeline import compress_bytes, extract_bytes
from memzip.errors import UsageError
from memzip.models import RegistryEntry
from memzip.options import CompressOptions


@given(st.lists(st.floats(0, 20), max_size=300), st.floats(1, 100), st.integers(1, 50))
def test_information_chunks_respect_budget_and_cover(costs, budget, max_tokens):
    spans = information_chunks(costs, budget, max_tokens)
    assert sum(b - a for a, b in spans) == len(costs)
    assert all(a2 == b1 for (_, b1), (a2, _) in zip(spans, spans[1:]))
    for a, b in spans:
        assert 1 <= b - a <= max_tokens
        assert b - a == 1 or sum(costs[a:b]) <= budget + 1e-9


def test_easy_text_gets_longer_chunks():
    costs = [0.5] * 40 + [5.0] * 40  # predictable, then surprising
    spans = information_chunks(costs, budget=10.0, max_tokens=64)
    first, last = spans[0], spans[-1]
    assert first[1] - first[0] == 20 and last[1] - last[0] == 2


def test_token_costs_shape_and_prefix(tiny):
    tokens = tiny.tokenizer.encode("The quick brown fox jumps over the lazy dog.", add_special_tokens=False)
    assert len(token_costs(tiny.model, tokens, [0], window=4)) == len(tokens)
    assert len(token_costs(tiny.model, tokens, [], window=5)) == len(tokens)


@pytest.fixture
def calibrated(tiny):
    """The tiny model as if it were in the registry, with a 40-nat budget per vector."""
    entry = RegistryEntry("tiny", None, "0M", tiny.d_model, 400, chunk_tokens=16, nats_per_chunk=40.0)
    return tiny.replace(entry=entry)


def test_information_chunking_round_trips(calibrated):
    data = b"aaaa aaaa aaaa aaaa " * 3 + "Ünïcödé 🎉 ξένος".encode()
    options = CompressOptions(mem_vectors=1, max_steps=2, chunking="information", store_fallback=False)
    archive, report = compress_bytes(data, calibrated, options)
    assert archive.header.encode["chunking"] == "information"
    assert extract_bytes(archive, calibrated) == data
    # The random tiny model charges every token ~ln(400) = 6 nats, so a 40-nat budget cuts
    # chunks of ~6 tokens, well under the 16-token default length.
    sizes = [c.tokens for c in report.chunks]
    assert sum(sizes) == archive.header.text.tokens and max(sizes) <= 8


def test_explicit_chunk_tokens_means_length(calibrated):
    archive, _ = compress_bytes(b"word " * 30, calibrated, CompressOptions(mem_vectors=1, max_steps=1, chunk_tokens=10,
                                                                                   store_fallback=False))
    assert archive.header.encode["chunking"] == "length"


def test_information_chunking_needs_a_calibrated_model(tiny):
    with pytest.raises(UsageError, match="registry"):
        compress_bytes(b"word", tiny, CompressOptions(mem_vectors=1, chunking="information"))


def test_model_only_chunks_are_cut_by_length(calibrated):
    archive, _ = compress_bytes(b"word " * 30, calibrated, CompressOptions(chunk_tokens=10, engine="float",
                                                                          store_fallback=False))
    assert archive.header.encode["chunking"] == "length" and archive.header.encode["chunk_tokens"] == 10
