"""The format layer's own pieces: it loads no torch, its dictionary is frozen, vectors are stored
bit for bit as the spec says, and the residual's bitstream is pinned."""

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memzip.errors import PayloadFormatError
from memzip.format import vectors as storage
from memzip.format.arithmetic import (AdaptiveModel, ArithmeticDecoder, ArithmeticEncoder, bucket_of, buckets_below,
                                      extra_bits, number_of)
from memzip.format.dictionary import ZSTD_DICTIONARY, ZSTD_DICTIONARY_V3
from memzip.format.residual import HASH_BITS, Choices, decode_choices, encode_choices, hash_prefix, token_hash

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # starts a fresh interpreter
def test_the_format_layer_and_the_commands_that_need_no_model_load_no_torch():
    code = ("import sys, memzip.format.container, memzip.format.residual, memzip.api, memzip.format.stats, memzip.cli; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_dictionaries_are_the_ones_the_spec_names():
    spec = (ROOT / "docs" / "format.md").read_text()
    (v3, v2), = re.findall(r"their SHA-256 are\s+`([0-9a-f]{64})` for version 3 and\s+`([0-9a-f]{64})` for version 2", spec)
    assert hashlib.sha256(ZSTD_DICTIONARY_V3).hexdigest() == v3
    assert hashlib.sha256(ZSTD_DICTIONARY).hexdigest() == v2


# --- vectors (§3.1, §3.2) -----------------------------------------------------------------------

# SplitMix64 from state 0 begins 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F:
# top bits 1, 0, 0 give the signs -, +, + of the first row.
PINNED_2x6 = [[-1, 1, 1, -1, 1, 1], [1, -1, 1, -1, 1, -1]]
PINNED_64x576_SHA = "68ef70f8d63fd22b"


@pytest.mark.parametrize("dtype", storage.STORAGE_DTYPES)
def test_pack_then_unpack(dtype):
    vectors = (np.random.default_rng(0).standard_normal((5, 2, 37)) * 0.3).astype(np.float32)  # rows end mid-byte
    stored, scales = storage.pack(vectors, dtype)
    assert stored.shape == (5, 2, storage.stored_width(dtype, 37)) and stored.dtype == storage.numpy_dtype(dtype)
    back = storage.unpack(stored, scales, dtype, 37)
    if dtype in storage.FLOAT_DTYPES:
        assert np.array_equal(back, vectors.astype(dtype).astype(np.float32))
    else:  # within half a step of the grid
        assert np.all(np.abs(back - vectors) <= scales[..., None] / 2 + 1e-7)


def test_packed_bits_are_laid_out_as_the_spec_says():
    """int4: u = q + 8, 4 bits each, most significant bit first, last byte padded with zeros."""
    vectors = np.array([[[-7, 0, 7]]], np.float32)
    stored, scales = storage.pack(vectors, "int4")
    assert scales.tolist() == [[1.0]]
    assert stored.tolist() == [[[0b0001_1000, 0b1111_0000]]]


@pytest.mark.parametrize("dtype", list(storage.INT_BITS))
def test_integer_codes_use_the_full_symmetric_range(dtype):
    stored, _ = storage.pack(np.linspace(-1, 1, 255, dtype=np.float32).reshape(1, 1, 255), dtype)
    q = storage.unpack_integers(stored, dtype, 255)
    limit = storage.levels(dtype)
    assert q.min() == -limit and q.max() == limit and len(np.unique(q)) == 2 * limit + 1


def test_bytes_per_vector_shrink_with_bits():
    assert [storage.bytes_per_vector(d, 576) for d in storage.STORAGE_DTYPES] == [2304, 1152, 580, 436, 364, 292, 220, 148]


def test_the_code_basis_is_pinned():
    """Archives depend on these exact signs: changing `basis` would break every archive made with
    --code-dims, so its first entries and a digest of a real-size basis are fixed here."""
    small = storage.basis(2, 6)
    assert small.dtype == np.float32
    assert (small / np.float32(1 / np.sqrt(2))).round().astype(int).tolist() == PINNED_2x6
    assert hashlib.sha256(storage.basis(64, 576).tobytes()).hexdigest()[:16] == PINNED_64x576_SHA


def test_the_code_basis_keeps_the_vector_scale():
    codes = (np.random.default_rng(1).standard_normal((2000, 64)) * 0.05).astype(np.float32)
    assert abs(float((codes @ storage.basis(64, 576)).std()) - 0.05) < 0.003


# --- the arithmetic coder and the residual (§5) ------------------------------------------------


def test_buckets_and_extra_bits_are_inverse():
    edges = [0, 1, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 2**17 - 1, 2**17, 2**18 - 1, 2**31 - 1]
    for n in edges + list(range(0, 5000, 7)):
        bucket, bits, value = bucket_of(n)
        assert bits == extra_bits(bucket) and 0 <= value < max(1, 2**bits)
        assert number_of(bucket, value) == n
    assert [bucket_of(n)[0] for n in range(8)] == [0, 1, 2, 3, 4, 4, 5, 5]
    assert buckets_below(49152) == bucket_of(49151)[0] + 1 and buckets_below(2) == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 60), st.integers(0, 59)), max_size=300))
def test_coder_round_trips_any_symbols(symbols):
    """Uniform symbols of any alphabet, and an adaptive model, interleaved."""
    model_in, model_out = AdaptiveModel([5, 1, 1, 2], 24, 1 << 16), AdaptiveModel([5, 1, 1, 2], 24, 1 << 16)
    coder = ArithmeticEncoder()
    for count, value in symbols:
        coder.encode(value % count, value % count + 1, count)
        model_in.encode(coder, value % 4)
    data = coder.finish()
    decoder = ArithmeticDecoder(data)
    for count, value in symbols:
        assert decoder.target(count) == value % count
        decoder.consume(value % count, value % count + 1, count)
        assert model_out.decode(decoder) == value % 4
    assert not data.endswith(b"\0")  # trailing zero bytes are dropped: the decoder reads zeros


def choices_strategy(vocab: int):
    bits = st.integers(0, HASH_BITS)
    return st.lists(st.tuples(st.integers(0, vocab - 1), bits).flatmap(
        lambda rb: st.tuples(st.just(rb[0]), st.just(rb[1]), st.integers(0, (1 << rb[1]) - 1))), max_size=200)


@pytest.mark.parametrize("vocab", [2, 400, 49152, 262144])
def test_choices_round_trip(vocab):
    @settings(max_examples=40, deadline=None)
    @given(choices_strategy(vocab))
    def check(items):
        choices = Choices()
        for item in items:
            choices.append(*item)
        back = decode_choices(encode_choices(choices, vocab), len(choices), vocab)
        assert (back.ranks, back.bits, back.hashes) == (choices.ranks, choices.bits, choices.hashes)
    check()


@pytest.mark.parametrize("rank, bits, hash_value", [(49152, 0, 0), (-1, 0, 0), (0, 33, 0), (0, 3, 8), (0, 0, 1)])
def test_invalid_choices_are_refused(rank, bits, hash_value):
    with pytest.raises(ValueError):
        encode_choices(Choices([rank], [bits], [hash_value]), 49152)


def test_a_rank_outside_the_vocabulary_is_a_damaged_stream():
    data = encode_choices(Choices([40000], [0], [0]), 49152)
    with pytest.raises(PayloadFormatError, match="damaged"):
        decode_choices(data, 1, 400)


def test_the_bitstream_is_pinned():
    """Archives depend on these exact bytes: the coder and its models are part of the format."""
    choices = Choices([0, 0, 3, 0, 17, 0, 1, 200, 0, 0], [0, 0, 2, 0, 5, 0, 0, 9, 1, 0], [0, 0, 1, 0, 21, 0, 0, 300, 1, 0])
    assert encode_choices(choices, 49152).hex() == PINNED_STREAM
    assert encode_choices(Choices([0] * 1000, [0] * 1000, [0] * 1000), 49152) == PINNED_ZEROS


PINNED_STREAM = "06a6ec53bee4921e54b98f20"
PINNED_ZEROS = b"\x00\x00\x00\x10"


def test_token_hash_is_fibonacci_hashing_and_one_to_one():
    sample = list(range(0, 300_000, 7))
    assert all(token_hash(t) == (t * 0x9E3779B1) % 2**32 for t in sample)
    assert len({token_hash(t) for t in sample}) == len(sample)
    assert hash_prefix(12345, 0) == 0 and hash_prefix(12345, 32) == token_hash(12345)
    assert hash_prefix(12345, 5) == token_hash(12345) >> 27
