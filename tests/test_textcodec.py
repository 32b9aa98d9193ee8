"""The byte <-> token layer alone: every byte sequence must come back exactly."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inputs import INPUTS
from memzip.textcodec import TextCodec, crlf_as_lf, lf_as_crlf
from tiny import tiny_tokenizer

codec = TextCodec(tiny_tokenizer())


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_round_trip(name):
    data = INPUTS[name]
    encoded = codec.encode(data)
    assert codec.decode(encoded) == data


def test_valid_text_needs_no_escapes_or_patch():
    encoded = codec.encode("plain text, ünïcödé and 🎉\r\n".encode())
    assert encoded.is_exact


def test_invalid_utf8_becomes_escapes_at_the_right_places():
    encoded = codec.encode(b"a\xffb\xfe")
    assert encoded.escape_positions.tolist() == [1, 3]
    assert encoded.escape_bytes.tolist() == [0xFF, 0xFE]
    assert encoded.patch_ops.size == 0


def test_lossy_tokenizer_is_patched():
    """A tokenizer that lowercases (normalizes) loses information: the patch restores it."""
    from tokenizers import normalizers
    from transformers import PreTrainedTokenizerFast

    backend = tiny_tokenizer().backend_tokenizer.__class__.from_str(tiny_tokenizer().backend_tokenizer.to_str())
    backend.normalizer = normalizers.Lowercase()
    lossy = TextCodec(PreTrainedTokenizerFast(tokenizer_object=backend))
    data = b"Hello World\nunchanged line\nMIXED Case\n"
    encoded = lossy.encode(data)
    assert encoded.patch_ops.shape[0] == 2  # two changed lines, one untouched
    assert lossy.decode(encoded) == data


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_round_trip(data):
    assert codec.decode(codec.encode(data)) == data


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=100))
def test_any_text_round_trip(text):
    data = text.encode("utf-8", errors="surrogatepass")
    assert codec.decode(codec.encode(data)) == data


# --- line endings ----------------------------------------------------------------------------


@pytest.mark.parametrize("data, coded", [
    (b"a\r\nb\r\n", b"a\nb\n"),
    (b"\r\n", b"\n"),
    (b"a\r\n\r\nb", b"a\n\nb"),
    (b"a\r\nb\n", None),  # one LF without its CR: mixed endings stay as they are
    (b"a\r\nb\r", None),  # a CR without its LF
    (b"a\r\r\n", None),
    (b"a\nb\n", None),  # Unix text has nothing to gain
    (b"no line ends", None),
    (b"", None),
])
def test_crlf_as_lf_only_where_it_reverses_exactly(data, coded):
    assert crlf_as_lf(data) == coded
    if coded is not None:
        assert lf_as_crlf(coded) == data


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"x", b"\xff", "é".encode()]), max_size=30).map(b"".join))
def test_crlf_as_lf_is_reversed_by_lf_as_crlf(data):
    coded = crlf_as_lf(data)
    assert coded is None or lf_as_crlf(coded) == data and b"\r" not in coded
