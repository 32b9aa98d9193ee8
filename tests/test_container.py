"""Tests of the `.memz` container (docs/format.md): round trips, one test per error the reading
order names, the header-only and file readers, and fuzzing that every malformed input raises a
`ContainerError` subclass and nothing else."""

from __future__ import annotations

import copy
import hashlib
import json
import struct

import numpy as np
import pytest
import torch
import zstandard
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from safetensors.numpy import save as st_save

from memzip import quantize
from memzip.container import (
    MAGIC,
    MAX_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    PREAMBLE,
    Archive,
    DecodeSettings,
    Header,
    ModelIdentity,
    TextInfo,
    VectorLayout,
    decode_archive,
    encode_archive,
    parse_header,
    read_archive,
    read_header,
)
from memzip.errors import (
    ChecksumMismatchError,
    ContainerError,
    HeaderFormatError,
    HeaderTooLargeError,
    MemzipError,
    NotAnArchiveError,
    PayloadFormatError,
    TrailingDataError,
    TruncatedArchiveError,
    UnsupportedVersionError,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEX_A = "a" * 64
HEX_B = "0123456789abcdef" * 4


# --- building archives ------------------------------------------------------------------------


def make_header(*, chunks: int = 2, tokens: int = 8, mem_vectors: int = 1, d_model: int = 8,
                vocab_size: int = 100, vector_dtype: str = "float16", name: str | None = None) -> Header:
    return Header(
        memzip_version="0.1.0",
        model=ModelIdentity(name="tiny", source="hub", hub_id="org/tiny", revision=None,
                            file=None, architecture="LlamaForCausalLM", d_model=d_model,
                            vocab_size=vocab_size, weights_sha256=HEX_A, tokenizer_sha256=HEX_B),
        decode=DecodeSettings(dtype="float32", attn_implementation="sdpa", batch_size=8,
                              device="cpu", torch_version="2.5.0", transformers_version="4.46.0"),
        vectors=VectorLayout(mem_vectors=mem_vectors, dtype=vector_dtype),
        text=TextInfo(bytes=12, sha256=hashlib.sha256(b"hello world!").hexdigest(), tokens=tokens,
                      chunks=chunks, name=name),
        encode={"recipe": "default", "seed": 0, "max_steps": 300, "chunk_tokens": 48, "margin": 1.0,
                "baselines": {"zstd_bytes": 21, "xz_bytes": 64}},
    )


def make_arrays(vector_dtype: str = "float16") -> dict[str, np.ndarray]:
    """Arrays for 2 chunks of 5 and 3 tokens, mem_vectors=1, d_model=8, vocab 100: three
    corrections (two in chunk 0, one in chunk 1), one escape and one patch op."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2, 1, 8)).astype(np.float32)
    arrays = {
        "chunk_tokens": np.array([5, 3], np.int32),
        "chunk_digests": rng.integers(0, 256, (2, 8), dtype=np.uint8),
        "correction_offsets": np.array([0, 2, 3], np.int64),
        "correction_positions": np.array([1, 4, 0], np.int32),
        "correction_tokens": np.array([7, 99, 0], np.int32),
        "escape_positions": np.array([4], np.int64),
        "escape_bytes": np.array([0xC3], np.uint8),
        "patch_ops": np.array([[1, 0, 3]], np.int64),
        "patch_text": np.frombuffer(b"abc", np.uint8).copy(),
    }
    if quantize.has_scales(vector_dtype):
        arrays["vectors"], arrays["vector_scales"] = quantize.pack(torch.from_numpy(vectors), vector_dtype)
    else:
        arrays["vectors"] = vectors.astype(vector_dtype)
    return arrays


def make_archive(vector_dtype: str = "float16", name: str | None = None) -> Archive:
    return Archive(make_header(vector_dtype=vector_dtype, name=name), make_arrays(vector_dtype=vector_dtype))


def empty_arrays(d_model: int = 8, mem_vectors: int = 1) -> dict[str, np.ndarray]:
    return {
        "vectors": np.zeros((0, mem_vectors, d_model), np.float16),
        "chunk_tokens": np.zeros(0, np.int32),
        "chunk_digests": np.zeros((0, 8), np.uint8),
        "correction_offsets": np.zeros(1, np.int64),
        "correction_positions": np.zeros(0, np.int32),
        "correction_tokens": np.zeros(0, np.int32),
        "escape_positions": np.zeros(0, np.int64),
        "escape_bytes": np.zeros(0, np.uint8),
        "patch_ops": np.zeros((0, 3), np.int64),
        "patch_text": np.zeros(0, np.uint8),
    }


def empty_archive() -> Archive:
    header = make_header(chunks=0, tokens=0)
    header.text.bytes = 0
    header.text.sha256 = hashlib.sha256(b"").hexdigest()
    return Archive(header, empty_arrays())


GOOD = encode_archive(make_archive())


def split(data: bytes) -> tuple[tuple, bytes, bytes, bytes]:
    """(preamble fields, header bytes, payload bytes, trailer) of a well-formed file."""
    fields = PREAMBLE.unpack_from(data)
    h, p = fields[3], fields[4]
    return fields, data[24:24 + h], data[24 + h:24 + h + p], data[24 + h + p:]


def pack(header: bytes, payload: bytes, *, magic: bytes = MAGIC, version: int = 1, flags: int = 0,
         header_length: int | None = None, payload_length: int | None = None) -> bytes:
    """Preamble + header + payload + a correct SHA-256 trailer (lengths overridable)."""
    body = PREAMBLE.pack(magic, version, flags,
                         len(header) if header_length is None else header_length,
                         len(payload) if payload_length is None else payload_length) + header + payload
    return body + hashlib.sha256(body).digest()


def header_obj(data: bytes = GOOD) -> dict:
    return json.loads(split(data)[1])


def dump(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def with_header(obj, data: bytes = GOOD) -> bytes:
    """`data` with its header replaced by `obj` (or raw bytes), re-packed with a valid trailer."""
    raw = obj if isinstance(obj, bytes) else dump(obj)
    return pack(raw, split(data)[2])


def with_payload(payload: bytes, data: bytes = GOOD) -> bytes:
    return pack(split(data)[1], payload)


def compress(raw: bytes, content_size: bool = True) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_content_size=content_size,
                                    write_checksum=True).compress(raw)


def with_raw_payload(raw: bytes, header: dict | None = None, *, payload_bytes: int | None = None) -> bytes:
    """A file whose decompressed payload is `raw` (any bytes), header fixed up to match."""
    header = copy.deepcopy(header_obj() if header is None else header)
    header["payload_bytes"] = len(raw) if payload_bytes is None else payload_bytes
    return pack(dump(header), compress(raw))


def with_arrays(arrays: dict[str, np.ndarray], header: dict | None = None) -> bytes:
    """A file holding exactly `arrays` (not validated on the way in), with a valid trailer."""
    return with_raw_payload(st_save({k: np.ascontiguousarray(v) for k, v in arrays.items()}), header)


def set_path(obj: dict, path: tuple[str, ...], value) -> dict:
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return obj


def del_path(obj: dict, path: tuple[str, ...]) -> dict:
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return obj


def decode_or_error(data: bytes):
    """Decode; a ContainerError is returned, any other exception fails the calling test."""
    try:
        return decode_archive(data)
    except ContainerError as exc:
        return exc


def assert_archives_equal(a: Archive, b: Archive) -> None:
    assert a.header == b.header
    assert set(a.arrays) == set(b.arrays)
    for name in a.arrays:
        assert a.arrays[name].dtype == b.arrays[name].dtype, name
        assert a.arrays[name].shape == b.arrays[name].shape, name
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name], err_msg=name)


# --- round trips ------------------------------------------------------------------------------


def test_good_file_is_what_the_spec_lays_out():
    fields, header, payload, trailer = split(GOOD)
    assert GOOD[:8] == b"\x89MEMZ\r\n\x1a"
    assert fields[1:3] == (1, 0)
    assert len(GOOD) == 24 + len(header) + len(payload) + 32
    assert trailer == hashlib.sha256(GOOD[:-32]).digest()
    # sorted keys, no insignificant whitespace
    assert header == dump(json.loads(header))
    raw = zstandard.ZstdDecompressor().decompress(payload)
    assert json.loads(header)["payload_bytes"] == len(raw)
    assert zstandard.get_frame_parameters(payload).content_size == len(raw)
    assert zstandard.get_frame_parameters(payload).has_checksum


def test_roundtrip():
    archive = make_archive()
    data = encode_archive(archive)
    decoded = decode_archive(data)
    assert decoded.header.payload_bytes > 0
    assert decoded.header.model.d_model == 8
    assert decoded.header.model.hub_id == "org/tiny" and decoded.header.model.revision is None
    assert decoded.header.vectors == VectorLayout(mem_vectors=1, dtype="float16")
    assert decoded.header.text.chunks == 2 and decoded.header.text.tokens == 8
    assert decoded.header.encode["baselines"] == {"zstd_bytes": 21, "xz_bytes": 64}
    assert_archives_equal(decoded, archive)
    # re-encoding what was read gives the same bytes
    assert encode_archive(decoded) == data


def test_roundtrip_empty_archive():
    archive = empty_archive()
    decoded = decode_archive(encode_archive(archive))
    assert decoded.header.text.chunks == 0 and decoded.header.text.tokens == 0
    assert_archives_equal(decoded, archive)
    for name, array in decoded.arrays.items():
        assert array.shape[0] == (1 if name == "correction_offsets" else 0), name


def test_roundtrip_int8_with_vector_scales():
    archive = make_archive("int8")
    decoded = decode_archive(encode_archive(archive))
    assert decoded.header.vectors.dtype == "int8"
    assert decoded.arrays["vectors"].dtype == np.int8
    assert decoded.arrays["vector_scales"].shape == (2, 1)
    assert_archives_equal(decoded, archive)


@pytest.mark.parametrize("dtype", ["int6", "int5", "int4", "int3", "int2"])
def test_roundtrip_packed_integer_vectors(dtype):
    archive = make_archive(dtype)
    decoded = decode_archive(encode_archive(archive))
    assert decoded.arrays["vectors"].dtype == np.uint8
    assert decoded.arrays["vectors"].shape == (2, 1, quantize.stored_width(dtype, 8))
    assert_archives_equal(decoded, archive)


def test_roundtrip_codes_and_their_shape_is_checked():
    header = make_header(vector_dtype="int4")
    header.vectors.code_dims = 5
    arrays = make_arrays("int4")
    arrays["vectors"], arrays["vector_scales"] = quantize.pack(torch.randn(2, 1, 5), "int4")
    decoded = decode_archive(encode_archive(Archive(header, arrays)))
    assert decoded.header.vectors.code_dims == 5 and decoded.arrays["vectors"].shape == (2, 1, 3)
    header.vectors.code_dims = 8  # disagrees with the stored width
    with pytest.raises(PayloadFormatError, match="vectors has shape"):
        decode_archive(encode_archive(Archive(header, arrays)))


def test_packed_vectors_with_an_unused_code_are_refused():
    """int2 stores -1, 0, +1 as 1, 2, 3: the code 0 means nothing and is refused."""
    arrays = make_arrays("int2")
    arrays["vectors"] = np.zeros_like(arrays["vectors"])
    with pytest.raises(PayloadFormatError, match="outside -1..1"):
        decode_archive(encode_archive(Archive(make_header(vector_dtype="int2"), arrays)))


def test_int8_value_minus_128_is_refused():
    arrays = make_arrays("int8")
    arrays["vectors"][0, 0, 0] = -128
    with pytest.raises(PayloadFormatError, match="outside -127..127"):
        decode_archive(encode_archive(Archive(make_header(vector_dtype="int8"), arrays)))


def test_roundtrip_float32_and_file_name():
    archive = make_archive("float32", name="notes.txt")
    decoded = decode_archive(encode_archive(archive))
    assert decoded.header.text.name == "notes.txt"
    assert_archives_equal(decoded, archive)


def test_encoding_is_deterministic():
    assert encode_archive(make_archive()) == encode_archive(make_archive())
    archive = make_archive()
    assert encode_archive(archive) == encode_archive(archive)
    assert encode_archive(make_archive()) == GOOD


def test_header_without_optional_name_is_read():
    obj = header_obj()
    assert obj["text"]["name"] is None
    assert decode_archive(with_header(del_path(obj, ("text", "name")))).header.text.name is None


def test_unknown_header_keys_are_ignored():
    obj = header_obj()
    obj["future_key"] = {"x": [1, 2]}
    obj["model"]["quantization"] = "q4"
    obj["text"]["lang"] = "en"
    assert_archives_equal(decode_archive(with_header(obj)), decode_archive(GOOD))


def test_writer_refuses_arrays_the_reader_would_refuse():
    archive = make_archive()
    archive.arrays["chunk_tokens"] = np.array([5, 4], np.int32)
    with pytest.raises(PayloadFormatError, match="text.tokens"):
        encode_archive(archive)


def test_every_error_is_a_container_error():
    for cls in (NotAnArchiveError, TruncatedArchiveError, UnsupportedVersionError, HeaderTooLargeError,
                TrailingDataError, ChecksumMismatchError, HeaderFormatError, PayloadFormatError):
        assert issubclass(cls, ContainerError) and issubclass(cls, MemzipError)


# --- steps 1-2: magic and preamble ------------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"PK\x03\x04" + b"\0" * 60,
    b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
    MAGIC.replace(b"\r\n", b"\n") + GOOD[8:],  # line-ending conversion
    bytes([MAGIC[0] & 0x7F]) + GOOD[1:],  # 7-bit transport
    b"hello",  # short, but not a prefix of the magic
    b"\x89MEMX",
    b"\0",
])
def test_wrong_magic(data):
    with pytest.raises(NotAnArchiveError, match="magic"):
        decode_archive(data)


def test_empty_file_is_truncated():
    with pytest.raises(TruncatedArchiveError):
        decode_archive(b"")


@pytest.mark.parametrize("n", range(1, 8))
def test_short_prefix_of_magic_is_truncated(n):
    with pytest.raises(TruncatedArchiveError, match="too short"):
        decode_archive(MAGIC[:n])


@pytest.mark.parametrize("n", range(8, 24))
def test_truncated_preamble(n):
    with pytest.raises(TruncatedArchiveError, match="preamble"):
        decode_archive(GOOD[:n])


def test_truncated_body():
    _, header, payload, _ = split(GOOD)
    for cut in (24, 24 + len(header) // 2, 24 + len(header), 24 + len(header) + len(payload) // 2,
                24 + len(header) + len(payload), len(GOOD) - 1):
        with pytest.raises(TruncatedArchiveError, match="truncated"):
            decode_archive(GOOD[:cut])


# --- step 3: version and flags ----------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2, 0xFFFF])
def test_unsupported_version(version):
    _, header, payload, _ = split(GOOD)
    with pytest.raises(UnsupportedVersionError, match=f"version {version}"):
        decode_archive(pack(header, payload, version=version))


@pytest.mark.parametrize("flags", [1, 0x8000, 0xFFFF])
def test_nonzero_flags(flags):
    _, header, payload, _ = split(GOOD)
    with pytest.raises(UnsupportedVersionError, match="flags"):
        decode_archive(pack(header, payload, flags=flags))


def test_version_is_checked_before_the_lengths():
    with pytest.raises(UnsupportedVersionError):
        decode_archive(PREAMBLE.pack(MAGIC, 2, 0, 0, 0))


# --- step 4: limits (preambles built by hand: nothing big is allocated) -----------------------


@pytest.mark.parametrize("header_length", [0, MAX_HEADER_BYTES + 1, 0xFFFFFFFF])
def test_header_length_out_of_limits(header_length):
    with pytest.raises(HeaderTooLargeError, match="header length"):
        decode_archive(PREAMBLE.pack(MAGIC, 1, 0, header_length, 100))


@pytest.mark.parametrize("payload_length", [0, MAX_PAYLOAD_BYTES + 1, 2**64 - 1])
def test_payload_length_out_of_limits(payload_length):
    with pytest.raises(HeaderTooLargeError, match="payload length"):
        decode_archive(PREAMBLE.pack(MAGIC, 1, 0, 100, payload_length))
    with pytest.raises(HeaderTooLargeError):
        decode_archive(struct.pack("<8sHHIQ", MAGIC, 1, 0, 100, payload_length) + b"{}" * 10)


def test_lengths_at_the_limits_are_accepted_then_found_truncated():
    with pytest.raises(TruncatedArchiveError, match="truncated"):
        decode_archive(PREAMBLE.pack(MAGIC, 1, 0, MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES))
    with pytest.raises(TruncatedArchiveError, match="truncated"):
        decode_archive(PREAMBLE.pack(MAGIC, 1, 0, 1, 1))


# --- step 5: size -----------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [b"\0", b"\n", GOOD])
def test_trailing_bytes(extra):
    with pytest.raises(TrailingDataError, match=f"{len(extra)} unexpected bytes"):
        decode_archive(GOOD + extra)


# --- step 6: checksum -------------------------------------------------------------------------


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1:]


def test_flipped_bit_in_header():
    _, header, _, _ = split(GOOD)
    offset = 24 + header.index(b'"d_model":8') + len('"d_model":')
    with pytest.raises(ChecksumMismatchError, match="checksum"):
        decode_archive(flip(GOOD, offset))  # "8" -> "9": still a valid header


def test_flipped_bit_in_payload():
    _, header, payload, _ = split(GOOD)
    for offset in (24 + len(header), 24 + len(header) + len(payload) // 2, len(GOOD) - 33):
        with pytest.raises(ChecksumMismatchError, match="checksum"):
            decode_archive(flip(GOOD, offset, 0x80))


def test_flipped_bit_in_trailer():
    with pytest.raises(ChecksumMismatchError):
        decode_archive(flip(GOOD, len(GOOD) - 1))


def test_every_single_bit_flip_is_caught():
    """Exhaustive over offsets: any change after the preamble is a checksum mismatch, and any
    change inside the preamble is some ContainerError."""
    for offset in range(len(GOOD)):
        for mask in (0x01, 0x80):
            if offset >= 24:
                with pytest.raises(ChecksumMismatchError):
                    decode_archive(flip(GOOD, offset, mask))
            else:
                with pytest.raises(ContainerError):
                    decode_archive(flip(GOOD, offset, mask))


# --- step 7: header ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    b"\xff\xfe{}",  # not UTF-8
    b"\xef\xbb\xbf{}",  # UTF-8 BOM
    b"{",
    b"not json",
    b"{'a': 1}",
    b'{"a": 1} {"b": 2}',
    b"\0",
    b"[" * 100_000 + b"]" * 100_000,  # deep nesting
    b'{"payload_bytes": ' + b"9" * 5000 + b"}",  # beyond Python's int-digits limit
])
def test_header_not_json(raw):
    with pytest.raises(HeaderFormatError, match="not valid UTF-8 JSON"):
        decode_archive(with_header(raw))


@pytest.mark.parametrize("raw", [b"[]", b'"header"', b"42", b"null", b"true", b"[{}]"])
def test_header_not_an_object(raw):
    with pytest.raises(HeaderFormatError, match="must be a JSON object"):
        decode_archive(with_header(raw))


def known_paths(obj: dict, prefix: tuple = ()) -> list[tuple[str, ...]]:
    paths = []
    for key, value in obj.items():
        paths.append(prefix + (key,))
        if isinstance(value, dict) and key != "encode":
            paths += known_paths(value, prefix + (key,))
    return paths


OPTIONAL = {("text", "name"), ("decode", "prefix_tokens"), ("vectors", "code_dims")}
REQUIRED = [p for p in known_paths(header_obj()) if p not in OPTIONAL]


def test_known_paths_cover_the_spec():
    assert len(REQUIRED) == 2 + 1 + 4 + 10 + 6 + 2 + 4  # top, encode, objects, model, decode, vectors, text


@pytest.mark.parametrize("path", REQUIRED, ids=".".join)
def test_header_missing_field(path):
    with pytest.raises(HeaderFormatError, match=rf"{'.'.join(path)}.* is missing"):
        decode_archive(with_header(del_path(header_obj(), path)))


WRONG_TYPES = [
    (("payload_bytes",), "123"), (("payload_bytes",), 1.5), (("payload_bytes",), True),
    (("payload_bytes",), None),
    (("payload_bytes",), -1), (("payload_bytes",), MAX_PAYLOAD_BYTES + 1),
    (("memzip_version",), 1), (("memzip_version",), None), (("memzip_version",), ["0.1.0"]),
    (("encode",), []), (("encode",), None), (("encode",), "default"),
    (("model",), []), (("model",), None), (("decode",), "x"), (("vectors",), 1), (("text",), [{}]),
    (("model", "name"), None), (("model", "source"), "ftp"), (("model", "source"), ["hub"]),
    (("model", "source"), None), (("model", "hub_id"), 5), (("model", "revision"), {}),
    (("model", "file"), False), (("model", "architecture"), None),
    (("model", "d_model"), 0), (("model", "d_model"), 65537), (("model", "d_model"), "8"),
    (("model", "d_model"), 8.0), (("model", "vocab_size"), 0), (("model", "vocab_size"), 2**31 + 1),
    (("model", "vocab_size"), True),
    (("decode", "dtype"), "int8"), (("decode", "dtype"), "float64"),
    (("decode", "attn_implementation"), None),
    (("decode", "batch_size"), 0), (("decode", "batch_size"), 2**16 + 1), (("decode", "batch_size"), "8"),
    (("decode", "device"), 0), (("decode", "torch_version"), None), (("decode", "transformers_version"), 4),
    (("vectors", "mem_vectors"), 0), (("vectors", "mem_vectors"), 1025), (("vectors", "mem_vectors"), [1]),
    (("vectors", "dtype"), "bfloat16"), (("vectors", "dtype"), "F16"), (("vectors", "dtype"), None),
    (("text", "bytes"), -1), (("text", "bytes"), 2**50 + 1), (("text", "bytes"), "12"),
    (("text", "tokens"), -1), (("text", "tokens"), 2**44 + 1), (("text", "chunks"), -1),
    (("text", "chunks"), 2**24 + 1), (("text", "chunks"), 2.0), (("text", "chunks"), False),
    (("text", "name"), ""), (("text", "name"), "."), (("text", "name"), ".."), (("text", "name"), "a/b"),
    (("text", "name"), "..\\evil"), (("text", "name"), "a\0b"), (("text", "name"), "x" * 256),
    (("text", "name"), 3), (("text", "name"), ["a"]),
]


@pytest.mark.parametrize("path,value", WRONG_TYPES,
                         ids=lambda v: ".".join(v) if isinstance(v, tuple) else repr(v)[:20])
def test_header_wrongly_typed_field(path, value):
    with pytest.raises(HeaderFormatError, match=rf"{'.'.join(path)} must be"):
        decode_archive(with_header(set_path(header_obj(), path, value)))


@pytest.mark.parametrize("field", ["weights_sha256", "tokenizer_sha256"])
@pytest.mark.parametrize("value", ["A" * 64, "a" * 63, "a" * 65, "g" * 64, "", None, 0, "a" * 64 + "\n",
                                   " " + "a" * 63, "0x" + "a" * 62])
def test_header_bad_hex_fingerprint(field, value):
    with pytest.raises(HeaderFormatError, match=f"model.{field} must be 64 lowercase hex digits"):
        decode_archive(with_header(set_path(header_obj(), ("model", field), value)))


@pytest.mark.parametrize("value", ["A" * 64, "a" * 63, "z" * 64, 1])
def test_header_bad_text_sha256(value):
    with pytest.raises(HeaderFormatError, match="text.sha256"):
        decode_archive(with_header(set_path(header_obj(), ("text", "sha256"), value)))


@pytest.mark.parametrize("path,value", [
    (("model", "hub_id"), None), (("model", "revision"), "abc123"), (("model", "file"), "m.gguf"),
    (("model", "source"), "gguf"), (("decode", "dtype"), "bfloat16"), (("memzip_version",), ""),
    (("encode",), {}), (("text", "name"), "Ünïcödé notes.txt"), (("text", "name"), "x" * 255),
    (("model", "vocab_size"), 2**31),
])
def test_header_valid_variants_are_accepted(path, value):
    archive = decode_archive(with_header(set_path(header_obj(), path, value)))
    section = archive.header
    for key in path:
        section = getattr(section, key)
    assert section == value


def test_parse_header_directly():
    assert parse_header(split(GOOD)[1]) == decode_archive(GOOD).header
    with pytest.raises(HeaderFormatError):
        parse_header(b"{}")


# --- step 8: the zstd frame -------------------------------------------------------------------


RAW = zstandard.ZstdDecompressor().decompress(split(GOOD)[2])


@pytest.mark.parametrize("payload", [b"\0", b"not zstd at all", b"\x28\xb5\x2f", b"\xff" * 64, RAW])
def test_payload_not_zstd(payload):
    with pytest.raises(PayloadFormatError, match="not a zstd frame"):
        decode_archive(with_payload(payload))


def test_payload_without_content_size():
    with pytest.raises(PayloadFormatError, match="declares"):
        decode_archive(with_payload(compress(RAW, content_size=False)))


@pytest.mark.parametrize("delta", [-1, 1, 1000])
def test_payload_content_size_differs_from_header(delta):
    with pytest.raises(PayloadFormatError, match="the header says"):
        decode_archive(with_raw_payload(RAW, payload_bytes=len(RAW) + delta))


@pytest.mark.parametrize("extra", [b"\0", b"garbage", "frame", "skippable"])
def test_bytes_after_the_zstd_frame(extra):
    if extra == "frame":
        extra = compress(b"more")
    elif extra == "skippable":
        extra = struct.pack("<II", 0x184D2A50, 4) + b"abcd"
    with pytest.raises(PayloadFormatError, match="after the payload's zstd frame"):
        decode_archive(with_payload(split(GOOD)[2] + extra))


def test_incomplete_zstd_frame():
    payload = split(GOOD)[2]
    with pytest.raises(PayloadFormatError):
        decode_archive(with_payload(payload[:-10]))
    with pytest.raises(PayloadFormatError, match="incomplete"):
        decode_archive(with_payload(payload[:-4]))  # just the content checksum missing


def test_corrupt_zstd_frame():
    payload = bytearray(split(GOOD)[2])
    payload[-2] ^= 0xFF  # inside zstd's own content checksum
    with pytest.raises(PayloadFormatError, match="does not decompress"):
        decode_archive(with_payload(bytes(payload)))


def test_skippable_frame_instead_of_payload():
    skippable = struct.pack("<II", 0x184D2A50, 4) + b"abcd"
    obj = header_obj()
    obj["payload_bytes"] = 4
    with pytest.raises(PayloadFormatError):
        decode_archive(pack(dump(obj), skippable))


def with_declared_size(frame: bytes, size: int) -> bytes:
    """`frame` with the Frame_Content_Size field of its header rewritten (same field width)."""
    fhd = frame[4]
    single_segment = (fhd >> 5) & 1
    pos = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[fhd & 3]
    width = {0: single_segment, 1: 2, 2: 4, 3: 8}[fhd >> 6]
    assert width, "frame declares no content size"
    return frame[:pos] + (size - (256 if width == 2 else 0)).to_bytes(width, "little") + frame[pos + width:]


@pytest.mark.parametrize("delta", [-1, 1])
def test_frame_that_lies_about_its_content_size(delta):
    """The header and the frame agree, but the frame holds a different amount: zstd itself must
    stop (no unbounded output), and the reader reports a PayloadFormatError."""
    frame = with_declared_size(compress(RAW), len(RAW) + delta)
    assert zstandard.get_frame_parameters(frame).content_size == len(RAW) + delta
    obj = header_obj()
    obj["payload_bytes"] = len(RAW) + delta
    with pytest.raises(PayloadFormatError):
        decode_archive(pack(dump(obj), frame))


def test_small_frame_declaring_little_but_holding_much():
    big = compress(b"\0" * (4 << 20))  # 4 MiB of zeros in a few hundred bytes
    obj = header_obj()
    obj["payload_bytes"] = 1000
    with pytest.raises(PayloadFormatError, match="does not decompress"):
        decode_archive(pack(dump(obj), with_declared_size(big, 1000)))


# --- step 9: the safetensors ------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"\0" * 8, b"\xff" * 16, b"x" * 100, struct.pack("<Q", 2) + b"[]",
                                 struct.pack("<Q", 100) + b"{}"])
def test_payload_not_safetensors(raw):
    with pytest.raises(PayloadFormatError, match="not a valid safetensors"):
        decode_archive(with_raw_payload(raw))


def raw_safetensors(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    """A safetensors file written by hand, for dtypes numpy cannot express."""
    meta, data = {}, b""
    for name, (dtype, shape, blob) in tensors.items():
        meta[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    head = json.dumps(meta).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + data


@pytest.mark.parametrize("dtype,size", [("BF16", 2), ("F8_E4M3", 1), ("F8_E5M2", 1), ("BOOL", 1)])
def test_payload_with_a_dtype_numpy_lacks(dtype, size):
    raw = raw_safetensors({"vectors": (dtype, [2, 1, 8], b"\0" * 16 * size)})
    with pytest.raises(PayloadFormatError):
        decode_archive(with_raw_payload(raw))


NAMES = sorted(make_arrays())


@pytest.mark.parametrize("name", NAMES)
def test_missing_tensor(name):
    arrays = make_arrays()
    del arrays[name]
    with pytest.raises(PayloadFormatError, match=rf"missing \['{name}'\]"):
        decode_archive(with_arrays(arrays))


def test_unexpected_tensor():
    with pytest.raises(PayloadFormatError, match=r"unexpected \['extra'\]"):
        decode_archive(with_arrays({**make_arrays(), "extra": np.zeros(1, np.uint8)}))
    # vector_scales only belongs with int8 vectors
    with pytest.raises(PayloadFormatError, match=r"unexpected \['vector_scales'\]"):
        decode_archive(with_arrays({**make_arrays(), "vector_scales": np.ones((2, 1), np.float32)}))


def test_int8_without_vector_scales():
    arrays = make_arrays("int8")
    del arrays["vector_scales"]
    obj = set_path(header_obj(), ("vectors", "dtype"), "int8")
    with pytest.raises(PayloadFormatError, match=r"missing \['vector_scales'\]"):
        decode_archive(with_arrays(arrays, obj))


WRONG_DTYPES = {"vectors": np.float32, "chunk_tokens": np.int64, "chunk_digests": np.int8,
                "correction_offsets": np.int32, "correction_positions": np.int64,
                "correction_tokens": np.uint32, "escape_positions": np.int32, "escape_bytes": np.int8,
                "patch_ops": np.int32, "patch_text": np.int8}


@pytest.mark.parametrize("name", NAMES)
def test_wrong_dtype(name):
    arrays = make_arrays()
    arrays[name] = arrays[name].astype(WRONG_DTYPES[name])
    with pytest.raises(PayloadFormatError, match=f"{name} has dtype"):
        decode_archive(with_arrays(arrays))


def test_wrong_dtype_vectors_vs_header():
    obj = set_path(header_obj(), ("vectors", "dtype"), "float32")
    with pytest.raises(PayloadFormatError, match="vectors has dtype float16, expected float32"):
        decode_archive(with_arrays(make_arrays(), obj))
    arrays = make_arrays("int8")
    arrays["vector_scales"] = arrays["vector_scales"].astype(np.float16)
    obj = set_path(header_obj(), ("vectors", "dtype"), "int8")
    with pytest.raises(PayloadFormatError, match="vector_scales has dtype"):
        decode_archive(with_arrays(arrays, obj))


@pytest.mark.parametrize("name,shape", [
    ("vectors", (2, 1, 7)), ("vectors", (2, 2, 8)), ("vectors", (1, 1, 8)), ("vectors", (2, 8)),
    ("chunk_tokens", (3,)), ("chunk_tokens", (2, 1)), ("chunk_digests", (2, 7)), ("chunk_digests", (16,)),
    ("correction_offsets", (2,)), ("correction_offsets", (4,)),
])
def test_wrong_shape(name, shape):
    arrays = make_arrays()
    arrays[name] = np.zeros(shape, arrays[name].dtype)
    with pytest.raises(PayloadFormatError, match=f"{name} has shape"):
        decode_archive(with_arrays(arrays))


def test_wrong_shape_vs_header():
    for path, value in ((("model", "d_model"), 16), (("vectors", "mem_vectors"), 2)):
        with pytest.raises(PayloadFormatError, match="vectors has shape"):
            decode_archive(with_arrays(make_arrays(), set_path(header_obj(), path, value)))
    arrays = make_arrays("int8")
    arrays["vector_scales"] = np.ones((2,), np.float32)
    with pytest.raises(PayloadFormatError, match="vector_scales has shape"):
        decode_archive(with_arrays(arrays, set_path(header_obj(), ("vectors", "dtype"), "int8")))


def bad(name: str, value, match: str, **header_changes) -> None:
    arrays = make_arrays()
    arrays[name] = np.asarray(value, dtype=arrays[name].dtype)
    obj = header_obj()
    for path, v in header_changes.items():
        obj = set_path(obj, tuple(path.split("__")), v)
    with pytest.raises(PayloadFormatError, match=match):
        decode_archive(with_arrays(arrays, obj))


def test_correction_position_out_of_its_chunk():
    bad("correction_positions", [1, 5, 0], "outside its chunk")  # chunk 0 has 5 tokens
    bad("correction_positions", [1, 4, 3], "outside its chunk")  # chunk 1 has 3 tokens
    bad("correction_positions", [-1, 4, 0], "outside its chunk")


def test_correction_positions_must_increase_within_a_chunk():
    bad("correction_positions", [4, 1, 0], "increase within a chunk")
    bad("correction_positions", [1, 1, 0], "increase within a chunk")


def test_correction_token_outside_vocabulary():
    bad("correction_tokens", [7, 100, 0], "outside the model's vocabulary")
    bad("correction_tokens", [7, -1, 0], "outside the model's vocabulary")
    bad("correction_tokens", [7, 99, 0], "outside the model's vocabulary", model__vocab_size=99)


def test_correction_offsets_malformed():
    bad("correction_offsets", [1, 2, 3], "correction_offsets")
    bad("correction_offsets", [0, 2, 4], "correction_offsets")
    bad("correction_offsets", [0, 2, 2], "correction_offsets")
    bad("correction_offsets", [0, 4, 3], "correction_offsets")
    bad("correction_offsets", [0, -1, 3], "correction_offsets")
    bad("correction_offsets", [0, 2**62, 3], "correction_offsets")


def test_correction_arrays_of_unequal_length():
    bad("correction_tokens", [7, 99], "equal length")
    bad("correction_positions", [[1, 4, 0]], "equal length")


def test_chunk_tokens_must_sum_to_text_tokens():
    bad("chunk_tokens", [5, 4], "does not add up to text.tokens")
    bad("chunk_tokens", [5, 3], "does not add up to text.tokens", text__tokens=9)
    bad("chunk_tokens", [2**31 - 1, 2**31 - 1], "chunk_tokens")


def test_chunk_tokens_out_of_range():
    bad("chunk_tokens", [8, 0], "outside 1..2")
    bad("chunk_tokens", [9, -1], "outside 1..2")
    bad("chunk_tokens", [2**20 + 1, 3], "outside 1..2", text__tokens=2**20 + 4)


def test_text_tokens_nonzero_with_no_chunks():
    empty_data = encode_archive(empty_archive())
    obj = set_path(header_obj(empty_data), ("text", "tokens"), 1)
    with pytest.raises(PayloadFormatError, match="text.tokens"):
        decode_archive(with_header(obj, empty_data))


def test_escapes_malformed():
    bad("escape_bytes", [0x7F], "0x80-0xFF")
    bad("escape_bytes", [0], "0x80-0xFF")
    bad("escape_positions", [-1], "escapes")
    bad("escape_bytes", [0x80, 0x81], "equal length")
    bad("escape_positions", [[4]], "equal length")
    arrays = make_arrays()
    arrays["escape_positions"] = np.array([4, 4], np.int64)
    arrays["escape_bytes"] = np.array([0x80, 0x81], np.uint8)
    with pytest.raises(PayloadFormatError, match="increasing"):
        decode_archive(with_arrays(arrays))


def patch(ops, text: bytes = b"abc"):
    arrays = make_arrays()
    arrays["patch_ops"] = np.asarray(ops, np.int64).reshape(-1, 3) if len(ops) else np.zeros((0, 3), np.int64)
    arrays["patch_text"] = np.frombuffer(text, np.uint8).copy()
    return decode_or_error(with_arrays(arrays))


def test_patch_ops_valid_variants():
    for ops, text in (([[0, 2, 1], [2, 0, 2]], b"abc"), ([[0, 0, 0]], b""), ([], b""),
                      ([[3, 1, 0], [4, 1, 3]], b"abc")):
        assert isinstance(patch(ops, text), Archive), (ops, text)


@pytest.mark.parametrize("ops,text,match", [
    ([[1, 0, 2]], b"abc", "disagree with patch_text"),
    ([[1, 0, 4]], b"abc", "disagree with patch_text"),
    ([[-1, 0, 3]], b"abc", "negative"),
    ([[1, -1, 3]], b"abc", "negative"),
    ([[5, 0, 1], [3, 0, 2]], b"abc", "overlap or are not sorted"),
    ([[0, 3, 1], [2, 0, 2]], b"abc", "overlap or are not sorted"),
    ([], b"abc", "no patch_ops"),
    # int64 overflow must not wrap a malformed patch into an accepted one
    ([[0, 0, 2**63 - 1], [0, 0, 2**63 - 1], [0, 0, 5]], b"abc", "disagree with patch_text"),
    ([[2**63 - 1, 1, 0], [0, 0, 3]], b"abc", "overlap or are not sorted"),
    ([[2**62, 2**62, 0], [0, 0, 3]], b"abc", "overlap or are not sorted"),
])
def test_patch_ops_malformed(ops, text, match):
    result = patch(ops, text)
    assert isinstance(result, PayloadFormatError), result
    assert match in str(result)


def test_patch_ops_wrong_shape():
    for ops in (np.zeros((1, 2), np.int64), np.zeros(3, np.int64), np.zeros((1, 3, 1), np.int64)):
        arrays = make_arrays()
        arrays["patch_ops"] = ops
        with pytest.raises(PayloadFormatError, match="shape"):
            decode_archive(with_arrays(arrays))
    bad("patch_text", [[97, 98, 99]], "1-D")


def test_vector_scales_must_be_finite():
    obj = set_path(header_obj(), ("vectors", "dtype"), "int8")
    for value in (np.nan, np.inf, -np.inf):
        arrays = make_arrays("int8")
        arrays["vector_scales"] = np.array([[1.0], [value]], np.float32)
        with pytest.raises(PayloadFormatError, match="non-finite"):
            decode_archive(with_arrays(arrays, obj))


# --- the file readers -------------------------------------------------------------------------


def test_read_archive(tmp_path):
    path = tmp_path / "a.memz"
    path.write_bytes(GOOD)
    assert_archives_equal(read_archive(path), decode_archive(GOOD))


def test_read_archive_refuses_bad_files(tmp_path):
    path = tmp_path / "a.memz"
    path.write_bytes(GOOD + b"x" * 10_000)
    with pytest.raises(TrailingDataError):
        read_archive(path)
    path.write_bytes(GOOD + b"x")
    with pytest.raises(TrailingDataError, match="1 unexpected"):
        read_archive(path)
    path.write_bytes(GOOD[:-1])
    with pytest.raises(TruncatedArchiveError):
        read_archive(path)
    path.write_bytes(flip(GOOD, 100))
    with pytest.raises(ChecksumMismatchError):
        read_archive(path)
    path.write_bytes(b"")
    with pytest.raises(TruncatedArchiveError):
        read_archive(path)
    path.write_bytes(b"hello world, this is a text file\n")
    with pytest.raises(NotAnArchiveError):
        read_archive(path)
    path.write_bytes(PREAMBLE.pack(MAGIC, 1, 0, 100, 2**40))
    with pytest.raises(HeaderTooLargeError):
        read_archive(path)


def test_read_header(tmp_path):
    path = tmp_path / "a.memz"
    path.write_bytes(GOOD)
    header = read_header(path)
    assert header == decode_archive(GOOD).header
    assert header.model.weights_sha256 == HEX_A


def test_read_header_skips_the_payload(tmp_path):
    """The header reader checks steps 1-5 (preamble) and 7 only: a damaged payload or a cut
    after the header goes unnoticed, as the spec allows."""
    _, header, _, _ = split(GOOD)
    path = tmp_path / "a.memz"
    path.write_bytes(flip(GOOD, len(GOOD) - 40))
    assert read_header(path).text.chunks == 2
    path.write_bytes(GOOD[:24 + len(header)])
    assert read_header(path).text.chunks == 2


def test_read_header_truncated_inside_header(tmp_path):
    _, header, _, _ = split(GOOD)
    path = tmp_path / "a.memz"
    path.write_bytes(GOOD[:24 + len(header) - 1])
    with pytest.raises(TruncatedArchiveError, match="inside its header"):
        read_header(path)
    path.write_bytes(GOOD[:30])
    with pytest.raises(TruncatedArchiveError, match="inside its header"):
        read_header(path)
    path.write_bytes(GOOD[:20])
    with pytest.raises(TruncatedArchiveError, match="preamble"):
        read_header(path)


def test_read_header_refuses_bad_headers(tmp_path):
    path = tmp_path / "a.memz"
    for data, error in ((b"", TruncatedArchiveError), (b"GIF89a" + b"\0" * 30, NotAnArchiveError),
                        (with_header(b"[]"), HeaderFormatError),
                        (pack(split(GOOD)[1], split(GOOD)[2], version=9), UnsupportedVersionError),
                        (PREAMBLE.pack(MAGIC, 1, 0, 2**31, 1), HeaderTooLargeError)):
        path.write_bytes(data)
        with pytest.raises(error):
            read_header(path)


# --- exhaustive truncation --------------------------------------------------------------------


@pytest.mark.parametrize("data", [GOOD, encode_archive(empty_archive())], ids=["small", "empty"])
def test_truncation_at_every_offset(data):
    for n in range(len(data)):
        with pytest.raises(TruncatedArchiveError):
            decode_archive(data[:n])
    assert isinstance(decode_archive(data), Archive)


def test_read_header_truncation_at_every_offset_inside_preamble_and_header(tmp_path):
    _, header, _, _ = split(GOOD)
    path = tmp_path / "a.memz"
    for n in range(24 + len(header)):
        path.write_bytes(GOOD[:n])
        with pytest.raises(TruncatedArchiveError):
            read_header(path)
    path.write_bytes(GOOD[:24 + len(header)])
    assert read_header(path).text.tokens == 8


# --- fuzzing ----------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    result = decode_or_error(data)
    assert isinstance(result, ContainerError)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_after_the_magic(rest):
    assert isinstance(decode_or_error(MAGIC + rest), ContainerError)


@FUZZ
@given(st.integers(0, 2**32 - 1) | st.sampled_from([0, 1, MAX_HEADER_BYTES, MAX_HEADER_BYTES + 1]),
       st.integers(0, 2**64 - 1) | st.sampled_from([0, 1, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES + 1]),
       st.binary(max_size=200))
def test_fuzz_preamble_lengths(header_length, payload_length, rest):
    data = PREAMBLE.pack(MAGIC, 1, 0, header_length, payload_length) + rest
    result = decode_or_error(data)
    if not (1 <= header_length <= MAX_HEADER_BYTES and 1 <= payload_length <= MAX_PAYLOAD_BYTES):
        assert isinstance(result, HeaderTooLargeError)
    elif len(data) < 24 + header_length + payload_length + 32:
        assert isinstance(result, TruncatedArchiveError)
    elif len(data) > 24 + header_length + payload_length + 32:
        assert isinstance(result, TrailingDataError)
    else:
        assert isinstance(result, ChecksumMismatchError)


@FUZZ
@given(st.integers(0, len(GOOD) - 1))
def test_fuzz_truncation(n):
    with pytest.raises(TruncatedArchiveError):
        decode_archive(GOOD[:n])


@FUZZ
@given(st.data())
def test_fuzz_single_byte_changes(data):
    offset = data.draw(st.integers(0, len(GOOD) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != GOOD[offset]))
    mutated = GOOD[:offset] + bytes([value]) + GOOD[offset + 1:]
    result = decode_or_error(mutated)
    assert isinstance(result, ContainerError)  # a changed byte is never accepted
    if offset >= 24:
        assert isinstance(result, ChecksumMismatchError)


@FUZZ
@given(st.binary(min_size=1, max_size=300))
def test_fuzz_random_header_bytes_with_valid_checksum(raw):
    assert isinstance(decode_or_error(with_header(raw)), ContainerError)


@FUZZ
@given(st.binary(min_size=1, max_size=300))
def test_fuzz_random_payload_with_valid_checksum(payload):
    result = decode_or_error(with_payload(payload))
    assert isinstance(result, PayloadFormatError), result


def _leaves(obj: dict, prefix: tuple = ()) -> dict:
    """{path: value} for every key of `obj`, at every depth."""
    out = {}
    for key, value in obj.items():
        out[prefix + (key,)] = value
        if isinstance(value, dict):
            out.update(_leaves(value, prefix + (key,)))
    return out


GOOD_FIELDS = _leaves(header_obj())
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(0, 10) | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False) | st.text(max_size=70)
    | st.sampled_from(["hub", "dir", "gguf", "float32", "float16", "bfloat16", "int8", HEX_A, "x.txt"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
ALL_PATHS = known_paths(header_obj()) + [("encode", "recipe"), ("encode", "baselines", "zstd_bytes")]
STRING_FIELDS = {("memzip_version",), ("model", "name"), ("model", "architecture"),
                 ("decode", "attn_implementation"), ("decode", "device"), ("decode", "torch_version"),
                 ("decode", "transformers_version")}
NULLABLE = {("model", "hub_id"), ("model", "revision"), ("model", "file"), ("text", "name")}


def type_ok(path: tuple[str, ...], value) -> bool:
    """Whether `value` has the type (not necessarily the range) the spec gives field `path`."""
    if path[0] == "encode" and len(path) > 1:
        return True  # informational
    if path in NULLABLE:
        return value is None or isinstance(value, str)
    if path == ("vectors", "code_dims"):
        return value is None or (isinstance(value, int) and not isinstance(value, bool))
    if path == ("decode", "prefix_tokens"):
        return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    if path in STRING_FIELDS or path[-1] in ("source", "dtype", "weights_sha256", "tokenizer_sha256",
                                             "sha256"):
        return isinstance(value, str)
    if isinstance(GOOD_FIELDS.get(path), int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, dict)  # the objects


@FUZZ
@given(st.sampled_from(ALL_PATHS), JSON_VALUES)
def test_fuzz_header_field_replaced(path, value):
    result = decode_or_error(with_header(set_path(header_obj(), path, value)))
    event(type(result).__name__)
    if not type_ok(path, value):
        assert isinstance(result, HeaderFormatError), (path, value, result)
    elif value == GOOD_FIELDS[path] and type(value) is type(GOOD_FIELDS[path]):
        assert isinstance(result, Archive), (path, value, result)  # a no-op mutation
    else:
        assert isinstance(result, (Archive, ContainerError))


def type_error_expected(obj: dict) -> bool:
    """Whether the spec makes `obj` a HeaderFormatError by types alone: a required field missing
    (or under an object that is missing or retyped), or a known field of the wrong type."""
    leaves = _leaves(obj)
    for path in REQUIRED:
        if path not in leaves or not type_ok(path, leaves[path]):
            return True
    return any(path in leaves and not type_ok(path, leaves[path]) for path in OPTIONAL)


@FUZZ
@given(st.data())
def test_fuzz_header_mutations(data):
    """Several random edits at once: delete, replace, add unknown keys, retype the objects."""
    obj = header_obj()
    for _ in range(data.draw(st.integers(1, 4))):
        paths = sorted(_leaves(obj))
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        action = data.draw(st.sampled_from(["delete", "replace", "add"]))
        if action == "delete":
            obj = del_path(obj, path)
        elif action == "replace":
            obj = set_path(obj, path, data.draw(JSON_VALUES))
        else:
            obj = set_path(obj, path[:-1] + ("~" + data.draw(st.text(max_size=8)),), data.draw(JSON_VALUES))
    result = decode_or_error(with_header(obj))
    event(type(result).__name__)
    assert isinstance(result, (Archive, ContainerError))
    if type_error_expected(obj):
        assert isinstance(result, HeaderFormatError), (obj, result)


@FUZZ
@given(st.data())
def test_fuzz_safetensors_byte_changes(data):
    """Random byte edits of the decompressed payload, re-packed so that every outer check passes."""
    raw = bytearray(RAW)
    tensor_data = 8 + struct.unpack_from("<Q", RAW)[0]  # where the safetensors' JSON ends
    for _ in range(data.draw(st.integers(1, 4))):
        offset = data.draw(st.integers(0, len(raw) - 1) | st.integers(tensor_data, len(raw) - 1))
        raw[offset] = data.draw(st.integers(0, 255))
    result = decode_or_error(with_raw_payload(bytes(raw)))
    event(type(result).__name__)
    assert isinstance(result, (Archive, PayloadFormatError)), result


SMALL_DTYPES = st.sampled_from([np.int8, np.uint8, np.int32, np.uint32, np.int64, np.float16, np.float32])


@FUZZ
@given(st.data())
def test_fuzz_tensor_replaced(data):
    """Replace one tensor (or two) with an arbitrary small array: refused cleanly or accepted."""
    arrays = make_arrays()
    for _ in range(data.draw(st.integers(1, 2))):
        name = data.draw(st.sampled_from(NAMES))
        if data.draw(st.booleans()):
            dtype = np.dtype(arrays[name].dtype)
            shape = data.draw(st.sampled_from([arrays[name].shape, (0,), (1,), (3,), (0, 3), (2, 3),
                                               (2, 1, 8)]))
        else:
            dtype = np.dtype(data.draw(SMALL_DTYPES))
            shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        arrays[name] = data.draw(hnp.arrays(dtype, shape))
    result = decode_or_error(with_arrays(arrays))
    event(type(result).__name__)
    assert isinstance(result, (Archive, PayloadFormatError)), result
    if isinstance(result, Archive):  # what is accepted can be written back identically
        assert_archives_equal(decode_archive(encode_archive(result)), result)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1)),
                min_size=1, max_size=4),
       st.binary(max_size=8))
def test_fuzz_patch_ops(ops, text):
    """Accepted patches really are sorted, non-overlapping and sized like patch_text."""
    result = patch(ops, text)
    event(type(result).__name__)
    assert isinstance(result, (Archive, PayloadFormatError)), result
    if isinstance(result, Archive):
        assert sum(op[2] for op in ops) == len(text)
        assert all(b[0] >= a[0] + a[1] for a, b in zip(ops, ops[1:]))


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_header_non_json_constants_are_refused(constant):
    with pytest.raises(HeaderFormatError, match="not valid"):
        parse_header(b'{"memzip_version": ' + constant + b"}")


@pytest.mark.parametrize("value", [[-1], [10**9], ["1"], [True], 5, [0] * 65])
def test_header_bad_prefix_tokens(value):
    obj = header_obj()
    obj["decode"]["prefix_tokens"] = value
    with pytest.raises(HeaderFormatError, match="prefix_tokens"):
        decode_archive(with_header(obj))


def test_header_prefix_tokens_round_trip():
    obj = header_obj()
    obj["decode"]["prefix_tokens"] = [0, 3]
    assert decode_archive(with_header(obj)).header.decode.prefix_tokens == [0, 3]
    del obj["decode"]["prefix_tokens"]
    assert decode_archive(with_header(obj)).header.decode.prefix_tokens == []
