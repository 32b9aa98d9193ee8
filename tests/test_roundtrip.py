"""compress -> .memz bytes -> extract, through the engine, on a tiny random model."""

import dataclasses

import numpy as np
import pytest

from inputs import INPUTS
from memzip.archive import CompressSettings, compress_bytes, extract_archive
from memzip.container import decode_archive, encode_archive
from memzip.errors import ModelMismatchError, VerificationError

FAST = dict(max_steps=8, chunk_tokens=12, batch_size=4)


def round_trip(data, loaded, **overrides):
    archive, report = compress_bytes(data, loaded, CompressSettings(**{**FAST, **overrides}))
    raw = encode_archive(archive)
    return extract_archive(decode_archive(raw), loaded), raw, report


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_every_input_comes_back_identical(name, tiny):
    data = INPUTS[name]
    out, _, _ = round_trip(data, tiny)
    assert out == data


@pytest.mark.parametrize("vector_dtype", ["float32", "float16", "int8", "int5", "int4", "int2"])
def test_vector_storage_dtypes_are_exact(vector_dtype, tiny):
    data = INPUTS["emoji_multilingual"]
    out, _, _ = round_trip(data, tiny, vector_dtype=vector_dtype)
    assert out == data


@pytest.mark.parametrize("vector_dtype", ["float16", "int4", "int2"])
def test_codes_in_a_subspace_are_exact_and_smaller(vector_dtype, tiny):
    data = INPUTS["emoji_multilingual"]
    out, raw, _ = round_trip(data, tiny, vector_dtype=vector_dtype, code_dims=16, mem_vectors=2)
    assert out == data
    archive = decode_archive(raw)
    assert archive.header.vectors.code_dims == 16
    full = decode_archive(round_trip(data, tiny, vector_dtype=vector_dtype, mem_vectors=2)[1])
    assert archive.arrays["vectors"].nbytes * 4 == full.arrays["vectors"].nbytes  # 16 of 64 dims


def test_more_mem_vectors_and_odd_batches(tiny):
    data = INPUTS["crlf"] * 3
    out, _, report = round_trip(data, tiny, mem_vectors=3, batch_size=3, chunk_tokens=7)
    assert out == data
    assert len(report.chunks) > 3  # several groups, the last one partial


def test_corrections_make_untrained_vectors_exact(tiny):
    """With zero optimizer steps the vectors are random, yet extraction is exact."""
    data = INPUTS["ascii"]
    out, _, report = round_trip(data, tiny, max_steps=0)
    assert out == data
    assert sum(c.corrections for c in report.chunks) > 0


def test_optimization_reduces_loss(tiny):
    """A random tiny model can barely be steered by one vector (flat logits), so only the loss is
    checked here; tests/test_embedded.py checks that corrections fall on the real model."""
    data = b"abc abc abc abc"
    _, _, untrained = round_trip(data, tiny, max_steps=0, chunk_tokens=64)
    _, _, trained = round_trip(data, tiny, max_steps=40, chunk_tokens=64)
    assert trained.chunks[0].loss < untrained.chunks[0].loss - 0.05


def test_same_seed_same_bytes_and_other_seed_differs(tiny):
    data = INPUTS["ascii"]
    _, first, _ = round_trip(data, tiny, seed=7)
    _, second, _ = round_trip(data, tiny, seed=7)
    _, third, _ = round_trip(data, tiny, seed=8)
    assert first == second
    assert first != third


def test_chunks_are_even(tiny):
    archive, _ = compress_bytes(b"word " * 40, tiny, CompressSettings(**FAST))
    sizes = archive.arrays["chunk_tokens"].tolist()
    assert max(sizes) - min(sizes) <= 1 and max(sizes) <= FAST["chunk_tokens"]


def test_other_model_is_refused_then_forced_fails_verification(tiny):
    from tiny import tiny_model

    data = INPUTS["ascii"] * 3
    archive, _ = compress_bytes(data, tiny, CompressSettings(**{**FAST, "force_margin": 0.0}))
    # Precondition: some tokens are left to the model (otherwise any model would decode it).
    assert archive.arrays["correction_positions"].size < archive.header.text.tokens
    other = tiny_model(seed=1)
    with pytest.raises(ModelMismatchError, match="weights fingerprint"):
        extract_archive(archive, other)
    with pytest.raises(VerificationError, match="decoded differently"):
        extract_archive(archive, other, force=True)


def test_tampered_vectors_fail_the_chunk_digest(tiny):
    data = INPUTS["ascii"] * 2
    archive, _ = compress_bytes(data, tiny, CompressSettings(**{**FAST, "max_steps": 0}))
    arrays = dict(archive.arrays)
    arrays["correction_offsets"] = np.zeros_like(arrays["correction_offsets"])
    arrays["correction_positions"] = arrays["correction_positions"][:0]
    arrays["correction_tokens"] = arrays["correction_tokens"][:0]
    with pytest.raises(VerificationError, match="decoded differently"):
        extract_archive(dataclasses.replace(archive, arrays=arrays), tiny)
