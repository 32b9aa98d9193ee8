"""compress_bytes -> .memz bytes -> extract_bytes on a tiny random Llama: every input comes back
through each engine (exact, float) and mode (model-only, [mem] vectors, stored), and every way
extraction can go wrong is caught."""

import dataclasses

import numpy as np
import pytest

from inputs import INPUTS
from memzip.pipeline import compress_bytes, extract_bytes
from memzip.errors import ModelMismatchError, PayloadFormatError, UsageError, VerificationError
from memzip.exact.model import ENGINE
from memzip.format.container import decode_archive, encode_archive
from memzip.options import CompressOptions
from memzip.ranks.engine import group_digest

# The tiny model is random: storing would beat it on most inputs, so these keep the model's archive.
MODEL_ONLY = CompressOptions(streams=2, window=16, store_fallback=False)
VECTORS = CompressOptions(mem_vectors=1, chunk_tokens=12, batch_size=4, max_steps=8, store_fallback=False)
FLOAT = CompressOptions(engine="float", chunk_tokens=12, batch_size=4, store_fallback=False)
FLOAT_VECTORS = dataclasses.replace(VECTORS, engine="float")


def round_trip(data, loaded, options, batch_size=None):
    archive, report = compress_bytes(data, loaded, options)
    raw = encode_archive(archive)
    return extract_bytes(decode_archive(raw), loaded, batch_size=batch_size), raw, report


@pytest.mark.parametrize("name", sorted(INPUTS))
@pytest.mark.parametrize("options", [MODEL_ONLY, VECTORS, FLOAT, FLOAT_VECTORS, CompressOptions()],
                         ids=["exact", "exact-vectors", "float", "float-vectors", "defaults"])
def test_every_input_comes_back_identical(name, options, tiny):
    data = INPUTS[name]
    out, _, _ = round_trip(data, tiny, options)
    assert out == data


# --- the exact engine -----------------------------------------------------------------------------


def test_exact_archives_name_the_engine_and_every_setting(tiny):
    archive, _ = compress_bytes(INPUTS["ascii"] * 3, tiny, MODEL_ONLY)
    decode = archive.header.decode
    assert decode.engine == ENGINE and decode.window == 16 and decode.margin is None and decode.batch_size is None
    assert decode.exact["weight_bits"] == 12 and decode.exact["peak_scales"] == 1
    assert decode.coding == {"value_bits": 28, "grid_bits": 10, "bias_bits": 3, "bias_streams": 4, "fresh_bits": 1,
                             "kind": "distribution"}
    assert "group_digests" not in archive.arrays
    # the coder spends what the model's probabilities say (--no-adapt), and less with the bias on
    # a text that repeats itself (measured: 284.2 against 286.1 bits)
    plain, _ = compress_bytes(INPUTS["ascii"] * 3, tiny, dataclasses.replace(MODEL_ONLY, adaptive_bias=False))
    encode, plain_encode = archive.header.encode, plain.header.encode
    assert plain_encode["model_ce_bits"] > 0 and abs(plain_encode["coded_bits"] - plain_encode["model_ce_bits"]) < 0.01 * \
        plain_encode["model_ce_bits"] + 1
    assert encode["model_ce_bits"] == plain_encode["model_ce_bits"] and encode["coded_bits"] < plain_encode["coded_bits"]


def test_streams_split_the_text_evenly_and_decode_in_any_batch(tiny):
    data = INPUTS["emoji_multilingual"] * 4
    archive, _ = compress_bytes(data, tiny, dataclasses.replace(MODEL_ONLY, streams=5))
    sizes = archive.arrays["chunk_tokens"].tolist()
    assert len(sizes) == 5 and max(sizes) - min(sizes) <= 1
    assert archive.header.units == 2  # streams 0-3 share an adaptive bias and decode together, 4 has its own
    assert archive.arrays["residual_offsets"].tolist()[-1] == archive.arrays["residual"].size
    for batch in (1, 2, 5, None):
        assert extract_bytes(archive, tiny, batch_size=batch) == data


def test_the_residual_costs_what_the_model_says(tiny):
    """The coder is within a few bytes per stream of the frequencies' ideal cost."""
    archive, _ = compress_bytes(INPUTS["crlf"] * 8, tiny, MODEL_ONLY)
    ideal_bytes = archive.header.encode["coded_bits"] / 8
    assert ideal_bytes <= archive.arrays["residual"].size <= ideal_bytes + 4 * archive.header.text.chunks


def test_vector_chunks_are_coded_greedy_and_record_what_the_vectors_saved(tiny):
    archive, report = compress_bytes(b"abc abc abc abc", tiny, dataclasses.replace(VECTORS, max_steps=40, chunk_tokens=64))
    assert archive.header.decode.coding["kind"] == "greedy"
    encode = archive.header.encode
    assert encode["ce_without_vectors_bits"] > 0 and encode["recipe"]["name"] == "default"
    assert report.chunks[0].steps > 0


@pytest.mark.parametrize("vector_dtype", ["float32", "float16", "int8", "int5", "int4", "int2"])
@pytest.mark.parametrize("engine", ["exact", "float"])
def test_vector_storage_dtypes_are_exact(vector_dtype, engine, tiny):
    data = INPUTS["emoji_multilingual"]
    out, raw, _ = round_trip(data, tiny, dataclasses.replace(VECTORS, vector_dtype=vector_dtype, engine=engine))
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


@pytest.mark.parametrize("engine", ["exact", "float"])
def test_codes_in_a_subspace_are_exact_and_smaller(engine, tiny):
    data = INPUTS["emoji_multilingual"]
    options = dataclasses.replace(VECTORS, vector_dtype="int4", mem_vectors=2, engine=engine)
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


@pytest.mark.parametrize("options", [MODEL_ONLY, VECTORS, FLOAT], ids=["exact", "vectors", "float"])
def test_same_input_and_seed_give_the_same_bytes(options, tiny):
    data = INPUTS["ascii"]
    assert round_trip(data, tiny, options)[1] == round_trip(data, tiny, options)[1]


def test_another_seed_gives_other_vectors(tiny):
    data = INPUTS["ascii"]
    first = round_trip(data, tiny, dataclasses.replace(VECTORS, seed=7))[1]
    assert first != round_trip(data, tiny, dataclasses.replace(VECTORS, seed=8))[1]


@pytest.mark.parametrize("options", [MODEL_ONLY, FLOAT], ids=["exact", "float"])
def test_another_model_is_refused_then_forced_fails_verification(options, tiny):
    from tiny import tiny_model

    archive, _ = compress_bytes(INPUTS["ascii"] * 3, tiny, options)
    other = tiny_model(seed=1)
    with pytest.raises(ModelMismatchError, match="weights fingerprint"):
        extract_bytes(archive, other)
    with pytest.raises(VerificationError):
        extract_bytes(archive, other, force=True)


def residual_parts(archive) -> list[bytes]:
    """The residual's streams (exact) or groups (float-ranks), as bytes."""
    offsets, residual = archive.arrays["residual_offsets"].tolist(), archive.arrays["residual"].tobytes()
    return [residual[a:b] for a, b in zip(offsets, offsets[1:])]


def with_residual(archive, parts: list[bytes]):
    """The archive with its residual made of these parts, the offsets following them."""
    arrays = dict(archive.arrays)
    arrays["residual"] = np.frombuffer(b"".join(parts), np.uint8)
    arrays["residual_offsets"] = np.cumsum([0] + [len(p) for p in parts]).astype(np.int64)
    return dataclasses.replace(archive, arrays=arrays)


def test_a_stream_swapped_for_another_fails_verification(tiny):
    data = INPUTS["special_token_text"] + INPUTS["emoji_multilingual"]
    archive, _ = compress_bytes(data, tiny, dataclasses.replace(MODEL_ONLY, streams=2))
    first, second = residual_parts(archive)
    assert first != second
    with pytest.raises(VerificationError, match="SHA-256"):
        extract_bytes(with_residual(archive, [second, first]), tiny)


@pytest.mark.parametrize("engine", ["exact", "float"])
def test_tampered_vectors_fail_verification(engine, tiny):
    archive, _ = compress_bytes(INPUTS["ascii"] * 2, tiny, dataclasses.replace(VECTORS, vector_dtype="float32",
                                                                               engine=engine))
    arrays = dict(archive.arrays)
    arrays["vectors"] = arrays["vectors"] * -3
    with pytest.raises(VerificationError):
        extract_bytes(dataclasses.replace(archive, arrays=arrays), tiny)


def test_progress_counts_tokens_both_ways(tiny):
    events = []
    archive, _ = compress_bytes(INPUTS["ascii"] * 3, tiny, dataclasses.replace(VECTORS, max_steps=2),
                                on_progress=events.append)
    tokens = archive.header.text.tokens
    assert events[-1].done == events[-1].total == tokens
    assert any(e.step is not None for e in events)  # the optimizer's steps are reported too
    extracted = []
    extract_bytes(archive, tiny, on_progress=extracted.append)
    assert extracted[-1].done == tokens and all(e.stage == "extract" for e in extracted)
    assert len({e.done for e in extracted}) > 2  # it moves while it works, not only at the end


def test_exact_engine_options_are_refused_with_the_float_engine_and_back(tiny):
    with pytest.raises(UsageError, match="--margin"):
        compress_bytes(b"abc", tiny, CompressOptions(margin=0.1))
    with pytest.raises(UsageError, match="--window, --streams and --best"):
        compress_bytes(b"abc", tiny, CompressOptions(engine="float", streams=2))
    with pytest.raises(UsageError, match="--best"):
        compress_bytes(b"abc", tiny, CompressOptions(engine="float", best=True))


# --- the float engine ------------------------------------------------------------------------------


def test_float_chunks_are_even_and_groups_follow_the_batch(tiny):
    archive, _ = compress_bytes(b"word " * 40, tiny, FLOAT)
    sizes = archive.arrays["chunk_tokens"].tolist()
    assert max(sizes) - min(sizes) <= 1 and max(sizes) <= FLOAT.chunk_tokens
    assert archive.arrays["group_digests"].shape == (-(-len(sizes) // 4), 8)
    assert archive.arrays["residual_offsets"][-1] == archive.arrays["residual"].size
    assert archive.header.decode.engine == "float-ranks"


def test_a_larger_margin_costs_bytes_and_is_recorded(tiny):
    data = INPUTS["ascii"] * 6
    small, _ = compress_bytes(data, tiny, dataclasses.replace(FLOAT, margin=0.0))
    large, _ = compress_bytes(data, tiny, dataclasses.replace(FLOAT, margin=0.5))
    assert (small.header.decode.margin, large.header.decode.margin) == (0.0, 0.5)
    assert large.arrays["residual"].size > small.arrays["residual"].size
    assert extract_bytes(large, tiny) == data == extract_bytes(small, tiny)


def test_the_default_margin_follows_the_model_dtype(tiny):
    archive, _ = compress_bytes(b"abc", tiny, dataclasses.replace(FLOAT, chunk_tokens=None))
    assert archive.header.decode.margin == 0.01  # float32


def test_a_residual_from_another_group_fails_the_group_digest(tiny):
    data = INPUTS["special_token_text"] + INPUTS["emoji_multilingual"]
    archive, _ = compress_bytes(data, tiny, dataclasses.replace(FLOAT, batch_size=1))
    parts = residual_parts(archive)
    assert parts[0] != parts[1]
    # group 0's stream replaced by group 1's: valid choices that name other tokens
    with pytest.raises((VerificationError, PayloadFormatError)):
        extract_bytes(with_residual(archive, [parts[1]] + parts[1:]), tiny)


def test_group_digest_is_sha256_of_int32_tokens():
    import hashlib

    assert group_digest([[1, 2], [3]]) == hashlib.sha256(np.array([1, 2, 3], "<i4").tobytes()).digest()[:8]


# --- stored ----------------------------------------------------------------------------------------


def test_bytes_that_are_not_text_are_stored_at_once(tiny):
    events = []
    archive, _ = compress_bytes(INPUTS["random_binary"] * 4, tiny, CompressOptions(), on_progress=events.append)
    assert archive.header.mode == "stored" and archive.header.model is None and not events  # no model work
    assert archive.header.encode["stored_because"] == "mostly not UTF-8 text"
    raw = encode_archive(archive)
    assert len(raw) < len(INPUTS["random_binary"] * 4) + 200  # never expanded beyond a small bound
    assert extract_bytes(decode_archive(raw), None) == INPUTS["random_binary"] * 4  # no model needed


def test_the_smaller_of_the_model_and_stored_archives_is_written(tiny):
    data = INPUTS["ascii"] * 3
    chosen, _ = compress_bytes(data, tiny, CompressOptions())
    model, _ = compress_bytes(data, tiny, CompressOptions(store_fallback=False))
    assert model.header.mode == "model"
    assert len(encode_archive(chosen)) <= len(encode_archive(model))
    if chosen.header.mode == "stored":  # the random model loses to zstd on this text
        assert chosen.header.encode["stored_because"] == "smaller than the model's archive"


def test_a_sample_that_the_model_codes_badly_stores_a_large_file_early(tiny, monkeypatch):
    import memzip.pipeline as engine

    monkeypatch.setattr(engine, "SAMPLE_TOKENS", 8)
    events = []
    data = INPUTS["emoji_multilingual"] * 10
    archive, _ = compress_bytes(data, tiny, CompressOptions(), on_progress=events.append)
    assert archive.header.mode == "stored" and "sample" in archive.header.encode["stored_because"]
    assert not any(e.stage == "compress" and e.done for e in events)  # the file itself was never coded


# --- text transforms ------------------------------------------------------------------------------


def test_crlf_text_is_coded_as_lf_and_comes_back_with_its_crs(tiny):
    data = b"first line\r\nsecond line\r\n\r\nthird\r\n" * 3
    archive, _ = compress_bytes(data, tiny, MODEL_ONLY)
    kept, _ = compress_bytes(data, tiny, dataclasses.replace(MODEL_ONLY, line_endings=False))
    assert archive.header.text.line_endings == "crlf" and kept.header.text.line_endings is None
    assert archive.header.text.tokens < kept.header.text.tokens and archive.header.text.bytes == len(data)
    for each in (archive, kept):
        read = decode_archive(encode_archive(each))
        assert read.header.text.line_endings == each.header.text.line_endings
        assert extract_bytes(read, tiny) == data


def test_mixed_line_endings_are_coded_as_they_are(tiny):
    data = b"unix\nwindows\r\nold mac\rend"
    archive, _ = compress_bytes(data, tiny, MODEL_ONLY)
    assert archive.header.text.line_endings is None
    assert extract_bytes(decode_archive(encode_archive(archive)), tiny) == data


def test_the_defaults_are_written_as_profiles_8_and_9_no_adapt_as_12_and_11_other_settings_in_full(tiny):
    """One stream: window 4,096 (profile 8, no bytes; --no-adapt 12); several: 2,048 (profile 9;
    --no-adapt 11); any other window: the settings in full."""
    from memzip.format import compact

    data = INPUTS["ascii"] * 3
    archives = {(streams, adapt): compress_bytes(data, tiny, CompressOptions(store_fallback=False, streams=streams,
                                                                          adaptive_bias=adapt))[0]
                for streams in (1, 2) for adapt in (True, False)}
    other, _ = compress_bytes(data, tiny, CompressOptions(store_fallback=False, window=1024))
    assert {key: (a.header.decode.profile, a.header.decode.window) for key, a in archives.items()} == {
        (1, True): (8, 4096), (1, False): (12, 4096), (2, True): (9, 2048), (2, False): (11, 2048)}
    assert other.header.decode.profile is None
    default, plain = archives[1, True], archives[1, False]
    assert default.header.decode.coding["bias_bits"] == 3 and "bias_bits" not in plain.header.decode.coding
    assert default.header.decode.coding["bias_streams"] == 4 and "bias_streams" not in plain.header.decode.coding
    raw = {key: encode_archive(a) for key, a in archives.items()}
    assert not raw[1, True][4] & compact.SETTINGS
    for key, profile in (((1, False), 12), ((2, True), 9), ((2, False), 11)):
        assert raw[key][4] & compact.SETTINGS and raw[key][5] == profile
    raw_other = encode_archive(other)
    assert raw_other[4] & compact.SETTINGS and raw_other[5] == 0
    for blob in (*raw.values(), raw_other):
        assert extract_bytes(decode_archive(blob), tiny) == data


def test_exact_settings_this_memzip_does_not_know_are_refused_as_a_header_error(tiny):
    """A weight-scale rule other than 0 and 1, an engine key this memzip does not know, or weights
    wider than its int8 slices hold: HeaderFormatError, before anything is decoded."""
    from memzip.errors import HeaderFormatError

    archive, _ = compress_bytes(INPUTS["ascii"], tiny, CompressOptions(store_fallback=False))
    for exact in ({**archive.header.decode.exact, "peak_scales": 2}, {**archive.header.decode.exact, "later": 1},
                  {**archive.header.decode.exact, "weight_bits": 16}):
        archive.header.decode.exact, archive.header.decode.profile = exact, None
        with pytest.raises(HeaderFormatError, match="exact-engine settings"):
            extract_bytes(decode_archive(encode_archive(archive)), tiny)


def test_coding_settings_the_coder_cannot_use_are_refused_as_a_header_error(tiny):
    """A learning rate the bias cannot take (bias_bits above grid_bits + 16), or a coding key this
    memzip does not know: HeaderFormatError, before anything is decoded."""
    from memzip.errors import HeaderFormatError

    archive, _ = compress_bytes(INPUTS["ascii"], tiny, CompressOptions(store_fallback=False))
    for coding in ({**archive.header.decode.coding, "bias_bits": 40}, {**archive.header.decode.coding, "later": 1},
                   {**archive.header.decode.coding, "bias_streams": 0},
                   {**archive.header.decode.coding, "bias_bits": 0, "bias_streams": 2},
                   {**archive.header.decode.coding, "fresh_bits": 4}):
        archive.header.decode.coding, archive.header.decode.profile = coding, None
        with pytest.raises(HeaderFormatError, match="coding settings"):
            extract_bytes(decode_archive(encode_archive(archive)), tiny)
