"""compress_bytes -> .memz bytes -> extract_bytes on a tiny random model: every input comes back,
in model-only mode and with [mem] vectors, and every way extraction can go wrong is caught."""

import dataclasses

import numpy as np
import pytest

from inputs import INPUTS
from memzip.engine import compress_bytes, extract_bytes, group_digest
from memzip.errors import ModelMismatchError, PayloadFormatError, VerificationError
from memzip.format.container import decode_archive, encode_archive
from memzip.options import CompressOptions

MODEL_ONLY = CompressOptions(chunk_tokens=12, batch_size=4)
VECTORS = CompressOptions(mem_vectors=1, chunk_tokens=12, batch_size=4, max_steps=8)


def round_trip(data, loaded, options):
    archive, report = compress_bytes(data, loaded, options)
    raw = encode_archive(archive)
    return extract_bytes(decode_archive(raw), loaded), raw, report


@pytest.mark.parametrize("name", sorted(INPUTS))
@pytest.mark.parametrize("options", [MODEL_ONLY, VECTORS], ids=["model-only", "vectors"])
def test_every_input_comes_back_identical(name, options, tiny):
    data = INPUTS[name]
    out, _, _ = round_trip(data, tiny, options)
    assert out == data


@pytest.mark.parametrize("vector_dtype", ["float32", "float16", "int8", "int5", "int4", "int2"])
def test_vector_storage_dtypes_are_exact(vector_dtype, tiny):
    data = INPUTS["emoji_multilingual"]
    out, raw, _ = round_trip(data, tiny, dataclasses.replace(VECTORS, vector_dtype=vector_dtype))
    assert out == data
    assert decode_archive(raw).header.vectors.dtype == vector_dtype


@pytest.mark.parametrize("recipe", ["paper", "no-sink", "long-hinge"])
def test_recipes_and_their_layouts_are_exact(recipe, tiny):
    data = INPUTS["crlf"]
    out, raw, _ = round_trip(data, tiny, dataclasses.replace(VECTORS, recipe=recipe, max_steps=3))
    assert out == data
    decode = decode_archive(raw).header.decode
    # the authors' layout puts nothing before the vectors; memzip's puts the document start there
    assert (decode.prefix_tokens == []) == (recipe in ("paper", "no-sink"))


def test_codes_in_a_subspace_are_exact_and_smaller(tiny):
    data = INPUTS["emoji_multilingual"]
    options = dataclasses.replace(VECTORS, vector_dtype="int4", mem_vectors=2)
    out, raw, _ = round_trip(data, tiny, dataclasses.replace(options, code_dims=16))
    assert out == data
    coded, whole = decode_archive(raw), decode_archive(round_trip(data, tiny, options)[1])
    assert coded.header.vectors.code_dims == 16
    assert coded.arrays["vectors"].nbytes * 4 == whole.arrays["vectors"].nbytes  # 16 of 64 dims


def test_more_mem_vectors_and_odd_batches(tiny):
    data = INPUTS["crlf"] * 3
    out, _, report = round_trip(data, tiny, dataclasses.replace(VECTORS, mem_vectors=3, batch_size=3, chunk_tokens=7))
    assert out == data
    assert len(report.chunks) > 3  # several groups, the last one partial


def test_model_only_archives_hold_no_vectors_and_say_what_the_text_cost(tiny):
    archive, _ = compress_bytes(INPUTS["ascii"] * 4, tiny, MODEL_ONLY)
    assert "vectors" not in archive.arrays and archive.header.vectors.mem_vectors == 0
    encode = archive.header.encode
    assert encode["model_only_ce_bits"] > 0 and encode["recipe"] is None
    assert 0 <= encode["misses"] <= archive.header.text.tokens


def test_vector_archives_record_what_the_vectors_saved(tiny):
    archive, report = compress_bytes(b"abc abc abc abc", tiny, dataclasses.replace(VECTORS, max_steps=40, chunk_tokens=64))
    encode = archive.header.encode
    assert encode["ce_without_vectors_bits"] > encode["ce_with_vectors_bits"]  # the fitted vector helps
    assert report.chunks[0].steps > 0 and encode["recipe"]["name"] == "default"


def test_untrained_vectors_still_decode_exactly(tiny):
    """With zero optimizer steps the vectors are random; the residual carries the text."""
    data = INPUTS["ascii"]
    out, _, report = round_trip(data, tiny, dataclasses.replace(VECTORS, max_steps=0))
    assert out == data
    assert sum(c.misses for c in report.chunks) > 0


def test_optimization_reduces_loss(tiny):
    """A random tiny model can barely be steered by one vector (flat logits), so only the loss is
    checked here; tests/test_embedded.py checks on the real model that misses fall."""
    options = dataclasses.replace(VECTORS, chunk_tokens=64)
    _, untrained = compress_bytes(b"abc abc abc abc", tiny, dataclasses.replace(options, max_steps=0))
    _, trained = compress_bytes(b"abc abc abc abc", tiny, dataclasses.replace(options, max_steps=40))
    assert trained.chunks[0].loss < untrained.chunks[0].loss - 0.05


@pytest.mark.parametrize("options", [MODEL_ONLY, VECTORS], ids=["model-only", "vectors"])
def test_same_input_and_seed_give_the_same_bytes(options, tiny):
    data = INPUTS["ascii"]
    assert round_trip(data, tiny, options)[1] == round_trip(data, tiny, options)[1]


def test_another_seed_gives_other_vectors(tiny):
    data = INPUTS["ascii"]
    first = round_trip(data, tiny, dataclasses.replace(VECTORS, seed=7))[1]
    assert first != round_trip(data, tiny, dataclasses.replace(VECTORS, seed=8))[1]


def test_chunks_are_even_and_groups_follow_the_batch(tiny):
    archive, _ = compress_bytes(b"word " * 40, tiny, MODEL_ONLY)
    sizes = archive.arrays["chunk_tokens"].tolist()
    assert max(sizes) - min(sizes) <= 1 and max(sizes) <= MODEL_ONLY.chunk_tokens
    assert archive.arrays["group_digests"].shape == (-(-len(sizes) // 4), 8)
    assert archive.arrays["residual_offsets"][-1] == archive.arrays["residual"].size


def test_a_larger_margin_costs_bytes_and_is_recorded(tiny):
    data = INPUTS["ascii"] * 6
    small, _ = compress_bytes(data, tiny, dataclasses.replace(MODEL_ONLY, margin=0.0))
    large, _ = compress_bytes(data, tiny, dataclasses.replace(MODEL_ONLY, margin=0.5))
    assert (small.header.decode.margin, large.header.decode.margin) == (0.0, 0.5)
    assert large.arrays["residual"].size > small.arrays["residual"].size
    assert extract_bytes(large, tiny) == data == extract_bytes(small, tiny)


def test_the_default_margin_follows_the_model_dtype(tiny):
    archive, _ = compress_bytes(b"abc", tiny, CompressOptions())
    assert archive.header.decode.margin == 0.01  # float32


def test_another_model_is_refused_then_forced_fails_verification(tiny):
    from tiny import tiny_model

    archive, _ = compress_bytes(INPUTS["ascii"] * 3, tiny, MODEL_ONLY)
    other = tiny_model(seed=1)
    with pytest.raises(ModelMismatchError, match="weights fingerprint"):
        extract_bytes(archive, other)
    with pytest.raises(VerificationError):
        extract_bytes(archive, other, force=True)


def test_a_residual_from_another_group_fails_the_group_digest(tiny):
    data = INPUTS["special_token_text"] + INPUTS["emoji_multilingual"]
    archive, _ = compress_bytes(data, tiny, dataclasses.replace(MODEL_ONLY, batch_size=1))
    arrays = dict(archive.arrays)
    offsets = arrays["residual_offsets"]
    # group 0's stream replaced by group 1's: valid choices that name other tokens
    first, second = arrays["residual"][offsets[0]:offsets[1]], arrays["residual"][offsets[1]:offsets[2]]
    assert first.tobytes() != second.tobytes()
    arrays["residual"] = np.concatenate([second, second, arrays["residual"][offsets[2]:]])
    arrays["residual_offsets"] = offsets + (len(second) - len(first)) * (np.arange(len(offsets)) > 0)
    with pytest.raises((VerificationError, PayloadFormatError)):
        extract_bytes(dataclasses.replace(archive, arrays=arrays), tiny)


def test_tampered_vectors_fail_the_group_digest(tiny):
    archive, _ = compress_bytes(INPUTS["ascii"] * 2, tiny, dataclasses.replace(VECTORS, vector_dtype="float32"))
    arrays = dict(archive.arrays)
    arrays["vectors"] = arrays["vectors"] * -3
    with pytest.raises(VerificationError):
        extract_bytes(dataclasses.replace(archive, arrays=arrays), tiny)


def test_group_digest_is_sha256_of_int32_tokens():
    import hashlib

    assert group_digest([[1, 2], [3]]) == hashlib.sha256(np.array([1, 2, 3], "<i4").tobytes()).digest()[:8]


def test_progress_reports_every_chunk(tiny):
    events = []
    archive, _ = compress_bytes(INPUTS["ascii"] * 3, tiny, dataclasses.replace(VECTORS, max_steps=2),
                                on_progress=events.append)
    chunks = archive.header.text.chunks
    assert events[-1].done == events[-1].total == chunks
    assert any(e.step is not None for e in events)  # the optimizer's steps are reported too
    extracted = []
    extract_bytes(archive, tiny, on_progress=extracted.append)
    assert [e.done for e in extracted][-1] == chunks and all(e.stage == "extract" for e in extracted)
