"""The `.memz` container (docs/format.md §1, §3): round trips, one test per error of the reading
order, the file and header readers, and fuzzing that every malformed input raises a
`ContainerError` and nothing else. Each bad file carries exactly one defect: frames are
recompressed with the format's dictionary and the trailer is recomputed.

Most defects are planted in a version-3 file (`GOOD`, built here as memzip 0.3 wrote it: one
payload frame, a 32-byte trailer), since this memzip still reads version 3 and both versions
share the header and the tensor checks; the version-4 section at the end covers what version 4
changed (the stream section, the tensors frame, the 8-byte trailer) on files this memzip writes."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as st_save

from memzip.errors import (ChecksumMismatchError, ContainerError, HeaderFormatError, HeaderTooLargeError, MemzipError,
                           NotAnArchiveError, PayloadFormatError, TrailingDataError, TruncatedArchiveError,
                           UnsupportedVersionError)
from memzip.format import vectors as storage
from memzip.format.container import (_DICTS, MAGIC, MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES, PREAMBLE, PREAMBLE_V4,
                                     Archive, decode_archive, encode_archive, read_archive, read_header)
from test_header import make_header

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- building archives ------------------------------------------------------------------------


def make_arrays(vector_dtype: str | None = "float16", code_dims: int | None = None) -> dict[str, np.ndarray]:
    """Two chunks of 5 and 3 tokens in one group (batch 8), d_model 8; one escape and one patch
    op; vectors unless `vector_dtype` is None (model-only)."""
    rng = np.random.default_rng(0)
    arrays = {
        "chunk_tokens": np.array([5, 3], np.int32),
        "group_digests": rng.integers(0, 256, (1, 8), dtype=np.uint8),
        "residual": np.frombuffer(b"\x13\x37\x42", np.uint8).copy(),
        "residual_offsets": np.array([0, 3], np.int64),
        "escape_positions": np.array([4], np.int64),
        "escape_bytes": np.array([0xC3], np.uint8),
        "patch_ops": np.array([[1, 0, 3]], np.int64),
        "patch_text": np.frombuffer(b"abc", np.uint8).copy(),
    }
    if vector_dtype is not None:
        arrays["vectors"], scales = storage.pack(rng.standard_normal((2, 1, code_dims or 8)).astype(np.float32), vector_dtype)
        if scales is not None:
            arrays["vector_scales"] = scales
    return arrays


def make_archive(vector_dtype: str | None = "float16", code_dims: int | None = None, **text) -> Archive:
    header = make_header(**text)
    header.vectors.mem_vectors = 0 if vector_dtype is None else 1
    header.vectors.dtype = vector_dtype or "float16"
    header.vectors.code_dims = code_dims
    return Archive(header, make_arrays(vector_dtype, code_dims))


def empty_archive() -> Archive:
    header = make_header(bytes=0, sha256=hashlib.sha256(b"").hexdigest(), tokens=0, chunks=0)
    header.vectors.mem_vectors = 0
    arrays = {"chunk_tokens": np.zeros(0, np.int32), "group_digests": np.zeros((0, 8), np.uint8),
              "residual": np.zeros(0, np.uint8), "residual_offsets": np.zeros(1, np.int64)}
    return Archive(header, arrays)


def frame(raw: bytes, *, content_size: bool = True, dictionary: bool = True) -> bytes:
    return zstandard.ZstdCompressor(level=3, dict_data=_DICTS[3] if dictionary else None, write_checksum=False,
                                    write_content_size=content_size, write_dict_id=False).compress(raw)


def unframe(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor(dict_data=_DICTS[3]).decompress(data)


def pack(header: bytes, payload: bytes, *, version: int = 3, flags: int = 0, magic: bytes = MAGIC) -> bytes:
    """Preamble + the two frames + a correct SHA-256 trailer."""
    body = PREAMBLE.pack(magic, version, flags, len(header), len(payload)) + header + payload
    return body + hashlib.sha256(body).digest()


def version_3_file(archive: Archive) -> bytes:
    """The archive as memzip 0.3 wrote it: every tensor in one safetensors payload frame."""
    arrays = {k: np.ascontiguousarray(v) for k, v in archive.arrays.items() if v.size or k not in (
        "escape_positions", "escape_bytes", "patch_ops", "patch_text")}
    compress = zstandard.ZstdCompressor(level=19, dict_data=_DICTS[3], write_checksum=False, write_content_size=True,
                                        write_dict_id=False).compress
    return pack(compress(archive.header.to_json()), compress(st_save(arrays)))


GOOD = version_3_file(make_archive())
NEW = encode_archive(make_archive(), version=4)


def split(data: bytes = GOOD) -> tuple[tuple, bytes, bytes, bytes]:
    """(preamble fields, header frame, payload frame, trailer) of a well-formed file."""
    fields = PREAMBLE.unpack_from(data)
    h, p = fields[3], fields[4]
    return fields, data[24:24 + h], data[24 + h:24 + h + p], data[24 + h + p:]


def header_obj(data: bytes = GOOD) -> dict:
    return json.loads(unframe(split(data)[1]))


def with_header(obj, data: bytes = GOOD) -> bytes:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj, sort_keys=True).encode()
    return pack(frame(raw), split(data)[2])


def with_payload(raw: bytes, header: dict | None = None) -> bytes:
    head = split()[1] if header is None else frame(json.dumps(header).encode())
    return pack(head, frame(raw))


def with_arrays(arrays: dict[str, np.ndarray], header: dict | None = None) -> bytes:
    """A file holding exactly `arrays` (not checked on the way in), with a valid trailer."""
    return with_payload(st_save({k: np.ascontiguousarray(v) for k, v in arrays.items()}), header)


def kept_by_version_5(header):
    """What a version-5 file keeps of a header: no writer's version, the informational `encode`
    only beside [mem] vectors, no permission bits (extraction takes the archive's own), the time in whole seconds, and the
    model's 64-bit fingerprint beside the rest."""
    from memzip.format.compact import model_fingerprint

    text = header.text
    mtime = None if text.mtime_ns is None else text.mtime_ns // 10 ** 9 * 10 ** 9
    model = None if header.model is None else dataclasses.replace(
        header.model, fingerprint64=model_fingerprint(header.model).hex())
    encode = header.encode if header.model is not None and header.vectors.mem_vectors else {}
    return dataclasses.replace(header, memzip_version="", encode=encode, model=model,
                               text=dataclasses.replace(text, permissions=None, mtime_ns=mtime))


def assert_archives_equal(a: Archive, b: Archive, version: int = 4) -> None:
    """`a`, read from a file of `version`, holds what that version keeps of `b`."""
    assert a.header == (kept_by_version_5(b.header) if version == 5 else b.header)
    assert set(a.arrays) == set(b.arrays)
    for name in a.arrays:
        assert a.arrays[name].dtype == b.arrays[name].dtype, name
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name], err_msg=name)


# --- round trips ------------------------------------------------------------------------------


def test_good_file_is_what_the_spec_lays_out():
    fields, header, payload, trailer = split()
    assert GOOD[:8] == b"\x89MEMZ\r\n\x1a" and fields[1:3] == (3, 0)
    assert len(GOOD) == 24 + len(header) + len(payload) + 32
    assert trailer == hashlib.sha256(GOOD[:-32]).digest()
    for part in (header, payload):
        params = zstandard.get_frame_parameters(part)
        assert params.content_size == len(unframe(part)) and params.dict_id == 0 and not params.has_checksum
    raw_header = unframe(header)
    assert raw_header == make_archive().header.to_json()  # sorted keys, no whitespace
    with pytest.raises(zstandard.ZstdError):  # the dictionary is part of the format
        zstandard.ZstdDecompressor().decompress(header)


def test_round_trip_and_re_encoding_gives_the_same_bytes():
    decoded = decode_archive(GOOD)
    assert_archives_equal(decoded, make_archive())
    assert (decoded.stored_header_bytes, decoded.stored_payload_bytes, decoded.framing_bytes) \
        == split()[0][3:5] + (24 + 32,)
    # a version-3 archive read and written again is the version-4 file of the same archive
    assert encode_archive(decoded, version=4) == NEW == encode_archive(decode_archive(NEW), version=4)
    # and version 5's, whichever it was read from
    assert encode_archive(decoded) == encode_archive(decode_archive(NEW)) == encode_archive(decode_archive(
        encode_archive(decoded)))


@pytest.mark.parametrize("version", [4, 5])
def test_model_only_archive_holds_no_vectors(version):
    archive = make_archive(None)
    decoded = decode_archive(encode_archive(archive, version=version))
    assert "vectors" not in decoded.arrays and decoded.header.vectors.mem_vectors == 0
    assert_archives_equal(decoded, archive, version)


@pytest.mark.parametrize("version", [4, 5])
def test_empty_archive(version):
    archive = empty_archive()
    decoded = decode_archive(encode_archive(archive, version=version))
    assert decoded.header.text.chunks == 0 and decoded.header.groups == 0
    assert_archives_equal(decoded, archive, version)


def test_empty_text_codec_tensors_are_left_out_and_read_as_empty():
    archive = make_archive()
    for name in ("escape_positions", "escape_bytes", "patch_text"):
        archive.arrays[name] = archive.arrays[name][:0]
    archive.arrays["patch_ops"] = np.zeros((0, 3), np.int64)
    decoded = decode_archive(encode_archive(archive))
    assert not {"escape_positions", "escape_bytes", "patch_ops", "patch_text"} & set(decoded.arrays)
    assert decoded.array("patch_ops").shape == (0, 3) and decoded.array("escape_bytes").dtype == np.uint8


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("dtype", storage.STORAGE_DTYPES)
def test_every_vector_storage_round_trips(dtype, version):
    archive = make_archive(dtype)
    decoded = decode_archive(encode_archive(archive, version=version))
    assert decoded.arrays["vectors"].shape == (2, 1, storage.stored_width(dtype, 8))
    assert ("vector_scales" in decoded.arrays) == storage.has_scales(dtype)
    assert_archives_equal(decoded, archive, version)


def test_codes_round_trip_and_their_width_is_checked():
    archive = make_archive("int4", code_dims=5)
    decoded = decode_archive(encode_archive(archive))
    assert decoded.header.vectors.code_dims == 5 and decoded.arrays["vectors"].shape == (2, 1, 3)
    archive.header.vectors.code_dims = 8  # disagrees with the stored width
    with pytest.raises(PayloadFormatError, match="vectors has shape"):
        encode_archive(archive)


def test_writer_refuses_arrays_the_reader_would_refuse():
    archive = make_archive()
    archive.arrays["chunk_tokens"] = np.array([5, 4], np.int32)
    with pytest.raises(PayloadFormatError, match="text.tokens"):
        encode_archive(archive)


def test_every_error_is_a_container_error():
    for cls in (NotAnArchiveError, TruncatedArchiveError, UnsupportedVersionError, HeaderTooLargeError,
                TrailingDataError, ChecksumMismatchError, HeaderFormatError, PayloadFormatError):
        assert issubclass(cls, ContainerError) and issubclass(cls, MemzipError)


# --- steps 1-5: magic, preamble, version, limits, size ----------------------------------------


@pytest.mark.parametrize("data", [
    b"PK\x03\x04" + b"\0" * 60, b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
    MAGIC.replace(b"\r\n", b"\n") + GOOD[8:],  # line-ending conversion
    bytes([MAGIC[0] & 0x7F]) + GOOD[1:],  # 7-bit transport
    b"hello", b"\x89MEMX", b"\0",
])
def test_wrong_magic(data):
    with pytest.raises(NotAnArchiveError, match="magic"):
        decode_archive(data)


@pytest.mark.parametrize("n", range(0, 8))
def test_short_prefix_of_magic_is_truncated(n):
    with pytest.raises(TruncatedArchiveError):
        decode_archive(MAGIC[:n])


@pytest.mark.parametrize("n", range(8, 24))
def test_truncated_preamble(n):
    with pytest.raises(TruncatedArchiveError, match="preamble"):
        decode_archive(GOOD[:n])


def test_truncation_at_every_offset_after_the_preamble():
    for cut in range(24, len(GOOD)):
        with pytest.raises(TruncatedArchiveError, match="truncated"):
            decode_archive(GOOD[:cut])


def test_version_1_is_refused_naming_the_memzip_that_wrote_it():
    _, header, payload, _ = split()
    with pytest.raises(UnsupportedVersionError, match="version 1.*memzip 0.1") as error:
        decode_archive(pack(header, payload, version=1))
    assert "memzip version that wrote it" in error.value.hint


@pytest.mark.parametrize("version", [0, 5, 0xFFFF])
def test_other_versions_are_refused(version):
    _, header, payload, _ = split()
    with pytest.raises(UnsupportedVersionError, match=f"version {version}"):
        decode_archive(pack(header, payload, version=version))


@pytest.mark.parametrize("flags", [1, 0x8000, 0xFFFF])
def test_nonzero_flags(flags):
    _, header, payload, _ = split()
    with pytest.raises(UnsupportedVersionError, match="flags"):
        decode_archive(pack(header, payload, flags=flags))


@pytest.mark.parametrize("header_length", [0, MAX_HEADER_BYTES + 1, 0xFFFFFFFF])
def test_header_length_out_of_limits(header_length):
    with pytest.raises(HeaderTooLargeError, match="header length"):
        decode_archive(PREAMBLE.pack(MAGIC, 3, 0, header_length, 100))


@pytest.mark.parametrize("payload_length", [0, MAX_PAYLOAD_BYTES + 1, 2**64 - 1])
def test_payload_length_out_of_limits(payload_length):
    with pytest.raises(HeaderTooLargeError, match="payload length"):
        decode_archive(PREAMBLE.pack(MAGIC, 3, 0, 100, payload_length))


def test_lengths_at_the_limits_are_accepted_then_found_truncated():
    for lengths in ((MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES), (1, 1)):
        with pytest.raises(TruncatedArchiveError, match="truncated"):
            decode_archive(PREAMBLE.pack(MAGIC, 3, 0, *lengths))


@pytest.mark.parametrize("extra", [b"\0", b"\n", GOOD])
def test_trailing_bytes(extra):
    with pytest.raises(TrailingDataError, match=f"{len(extra)} unexpected bytes"):
        decode_archive(GOOD + extra)


# --- step 6: checksum -------------------------------------------------------------------------


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1:]


def test_every_single_bit_flip_is_caught():
    """Any change after the preamble is a checksum mismatch; inside the preamble, some
    ContainerError."""
    for offset in range(len(GOOD)):
        for mask in (0x01, 0x80):
            expected = ChecksumMismatchError if offset >= 24 else ContainerError
            with pytest.raises(expected):
                decode_archive(flip(GOOD, offset, mask))


# --- step 7: the header frame -----------------------------------------------------------------


@pytest.mark.parametrize("header_frame, phrase", [
    (b"not a zstd frame", "not a zstd frame"),
    (frame(b"{}", content_size=False), "must declare its size"),
    (frame(b"{}") + b"\0", "bytes after the header's zstd frame"),
    (frame(b"{}")[:-2], "incomplete|does not decompress"),
    (frame(b" " * (MAX_HEADER_BYTES + 1)), "at most"),
])
def test_header_frame_defects(header_frame, phrase):
    with pytest.raises(HeaderFormatError, match=phrase):
        decode_archive(pack(header_frame, split()[2]))


def test_header_frame_without_the_dictionary_decodes_too():
    """A frame compressed without the dictionary is still a valid zstd frame (references into
    the dictionary are optional for the writer)."""
    raw = unframe(split()[1])
    assert decode_archive(pack(frame(raw, dictionary=False), split()[2])).header == make_archive().header


def test_header_json_defects_are_header_format_errors():
    with pytest.raises(HeaderFormatError, match="not valid UTF-8 JSON"):
        decode_archive(with_header(b"{"))
    with pytest.raises(HeaderFormatError, match="text.sha256 must be"):
        decode_archive(with_header({**header_obj(), "text": {**header_obj()["text"], "sha256": "x"}}))


# --- steps 8-9: the payload -------------------------------------------------------------------


@pytest.mark.parametrize("payload_frame, phrase", [
    (b"garbage", "not a zstd frame"),
    (frame(b"x", content_size=False), "must declare its size"),
    (frame(st_save(make_arrays())) + b"\0\0", "bytes after the payload's zstd frame"),
])
def test_payload_frame_defects(payload_frame, phrase):
    with pytest.raises(PayloadFormatError, match=phrase):
        decode_archive(pack(split()[1], payload_frame))


@pytest.mark.parametrize("raw", [b"", b"\0" * 8, b"\xff" * 16, (10**9).to_bytes(8, "little") + b"{}",
                                 (2).to_bytes(8, "little") + b"{}" + b"\0" * 5])
def test_payload_not_safetensors(raw):
    with pytest.raises(PayloadFormatError):
        decode_archive(with_payload(raw))


@pytest.mark.parametrize("name", ["chunk_tokens", "group_digests", "residual", "residual_offsets", "vectors"])
def test_missing_tensor(name):
    arrays = make_arrays()
    del arrays[name]
    with pytest.raises(PayloadFormatError, match=f"missing.*{name}"):
        decode_archive(with_arrays(arrays))


@pytest.mark.parametrize("name, array", [
    ("extra", np.zeros(1, np.uint8)), ("vector_scales", np.ones((2, 1), np.float32)),  # float16 has no scales
])
def test_unexpected_tensor(name, array):
    with pytest.raises(PayloadFormatError, match=f"unexpected.*{name}"):
        decode_archive(with_arrays({**make_arrays(), name: array}))


def test_vectors_in_a_model_only_archive_are_refused():
    obj = header_obj()
    obj["vectors"]["mem_vectors"] = 0
    with pytest.raises(PayloadFormatError, match="unexpected.*vectors"):
        decode_archive(with_arrays(make_arrays(), obj))


def test_integer_vectors_without_scales_are_refused():
    obj = header_obj()
    obj["vectors"]["dtype"] = "int8"
    arrays = make_arrays("int8")
    del arrays["vector_scales"]
    with pytest.raises(PayloadFormatError, match="missing.*vector_scales"):
        decode_archive(with_arrays(arrays, obj))


@pytest.mark.parametrize("name, array", [
    ("chunk_tokens", np.array([5, 3], np.int64)), ("group_digests", np.zeros((1, 8), np.int8)),
    ("residual", np.zeros(3, np.int8)), ("residual_offsets", np.array([0, 3], np.int32)),
    ("vectors", np.zeros((2, 1, 8), np.float32)), ("escape_positions", np.array([4], np.int32)),
    ("patch_ops", np.array([[1, 0, 3]], np.int32)),
])
def test_wrong_dtype(name, array):
    with pytest.raises(PayloadFormatError, match=f"{name} has dtype"):
        decode_archive(with_arrays({**make_arrays(), name: array}))


@pytest.mark.parametrize("name, array", [
    ("chunk_tokens", np.array([8], np.int32)), ("group_digests", np.zeros((2, 8), np.uint8)),
    ("group_digests", np.zeros((1, 4), np.uint8)), ("residual", np.zeros((1, 3), np.uint8)),
    ("residual_offsets", np.array([0, 1, 3], np.int64)), ("vectors", np.zeros((2, 2, 8), np.float16)),
    ("vectors", np.zeros((2, 1, 9), np.float16)), ("patch_ops", np.array([1, 0, 3], np.int64)),
])
def test_wrong_shape(name, array):
    with pytest.raises(PayloadFormatError, match=f"{name} has shape"):
        decode_archive(with_arrays({**make_arrays(), name: array}))


@pytest.mark.parametrize("tokens, phrase", [([5, 4], "add up"), ([8, 0], "outside"), ([9, -1], "outside")])
def test_chunk_tokens_values(tokens, phrase):
    with pytest.raises(PayloadFormatError, match=phrase):
        decode_archive(with_arrays({**make_arrays(), "chunk_tokens": np.array(tokens, np.int32)}))


@pytest.mark.parametrize("offsets", [[1, 3], [0, 2], [0, 4], [3, 3], [0, -1]])
def test_residual_offsets_values(offsets):
    with pytest.raises(PayloadFormatError, match="residual_offsets"):
        decode_archive(with_arrays({**make_arrays(), "residual_offsets": np.array(offsets, np.int64)}))


@pytest.mark.parametrize("positions, values, phrase", [
    ([4, 4], [0xC3, 0xC3], "increasing"), ([-1], [0xC3], "increasing"), ([4], [0x41], "0x80"),
    ([4, 5], [0xC3], "equal length"),
])
def test_escapes_malformed(positions, values, phrase):
    arrays = {**make_arrays(), "escape_positions": np.array(positions, np.int64), "escape_bytes": np.array(values, np.uint8)}
    with pytest.raises(PayloadFormatError, match=phrase):
        decode_archive(with_arrays(arrays))


@pytest.mark.parametrize("ops, text, phrase", [
    ([[1, 0, 4]], b"abc", "disagree"), ([[1, 0, -1]], b"", "disagree"), ([[-1, 0, 3]], b"abc", "negative"),
    ([[3, 2, 1], [4, 0, 2]], b"abc", "overlap"), ([[5, 0, 1], [2, 0, 2]], b"abc", "overlap"),
    ([], b"abc", "no patch_ops"),
])
def test_patch_ops_malformed(ops, text, phrase):
    arrays = {**make_arrays(), "patch_ops": np.array(ops, np.int64).reshape(-1, 3),
              "patch_text": np.frombuffer(text, np.uint8).copy()}
    with pytest.raises(PayloadFormatError, match=phrase):
        decode_archive(with_arrays(arrays))


def test_non_finite_scales_are_refused():
    obj = header_obj()
    obj["vectors"]["dtype"] = "int4"
    arrays = make_arrays("int4")
    arrays["vector_scales"][0, 0] = np.nan
    with pytest.raises(PayloadFormatError, match="non-finite"):
        decode_archive(with_arrays(arrays, obj))


def test_int8_minus_128_and_an_unused_packed_code_are_refused():
    obj = header_obj()
    obj["vectors"]["dtype"] = "int8"
    arrays = make_arrays("int8")
    arrays["vectors"][0, 0, 0] = -128
    with pytest.raises(PayloadFormatError, match="outside -127..127"):
        decode_archive(with_arrays(arrays, obj))
    obj["vectors"]["dtype"] = "int2"  # -1, 0, +1 are stored as 1, 2, 3: the code 0 means nothing
    arrays = make_arrays("int2")
    arrays["vectors"] = np.zeros_like(arrays["vectors"])
    with pytest.raises(PayloadFormatError, match="outside -1..1"):
        decode_archive(with_arrays(arrays, obj))


# --- the file readers -------------------------------------------------------------------------


def test_read_archive_and_read_header(tmp_path):
    path = tmp_path / "a.memz"
    path.write_bytes(GOOD)
    assert_archives_equal(read_archive(path), decode_archive(GOOD))
    assert read_header(path) == make_archive().header


def test_read_header_skips_the_payload(tmp_path):
    """`memzip info` reads the header alone: a damaged payload does not stop it."""
    _, header, payload, _ = split()
    path = tmp_path / "a.memz"
    path.write_bytes(GOOD[:24 + len(header)] + b"\0" * (len(payload) + 32))
    assert read_header(path).text.tokens == 8
    with pytest.raises(ChecksumMismatchError):
        read_archive(path)


def test_readers_refuse_truncated_files(tmp_path):
    path = tmp_path / "a.memz"
    for cut in (0, 5, 23, 30):
        path.write_bytes(GOOD[:cut])
        with pytest.raises(TruncatedArchiveError):
            read_header(path)
        with pytest.raises(TruncatedArchiveError):
            read_archive(path)
    path.write_bytes(GOOD + b"x")
    with pytest.raises(TrailingDataError):
        read_archive(path)


# --- fuzzing ----------------------------------------------------------------------------------


def decode_or_error(data: bytes):
    """Decode; a ContainerError is returned, any other exception fails the calling test."""
    try:
        return decode_archive(data)
    except ContainerError as exc:
        return exc


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    assert isinstance(decode_or_error(data), ContainerError)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_after_the_magic(rest):
    decode_or_error(MAGIC + rest)


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_header_frames(raw):
    """Any bytes as the header's content, validly framed: HeaderFormatError or accepted."""
    result = decode_or_error(with_header(raw))
    assert isinstance(result, (HeaderFormatError, Archive))


@FUZZ
@given(st.data())
def test_fuzz_payload_byte_changes(data):
    """The payload's content changed anywhere, validly framed: only ContainerErrors."""
    raw = bytearray(unframe(split()[2]))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    decode_or_error(with_payload(bytes(raw)))


@FUZZ
@given(st.data())
def test_fuzz_header_field_values(data):
    obj = header_obj()
    section = data.draw(st.sampled_from(["model", "decode", "vectors", "text"]))
    key = data.draw(st.sampled_from(sorted(obj[section])))
    obj[section][key] = data.draw(st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(),
                                            st.text(max_size=20), st.lists(st.integers(-5, 200), max_size=5)))
    decode_or_error(with_header(obj))


def test_decoding_leaves_the_archive_unchanged():
    archive = make_archive()
    before = dataclasses.replace(archive, arrays=dict(archive.arrays))
    encode_archive(archive)
    assert_archives_equal(archive, before)


# --- version 4: the tensors frame, the stream section, the 8-byte trailer ----------------------


def split_v4(data: bytes = NEW) -> tuple[tuple, bytes, bytes, bytes, bytes]:
    """(preamble fields, header frame, tensors frame, stream section, trailer)."""
    fields = PREAMBLE_V4.unpack_from(data)
    h, t, s = fields[3:6]
    return fields, data[24:24 + h], data[24 + h:24 + h + t], data[24 + h + t:24 + h + t + s], data[24 + h + t + s:]


def pack_v4(header: bytes, tensors: bytes, streams: bytes) -> bytes:
    body = PREAMBLE_V4.pack(MAGIC, 4, 0, len(header), len(tensors), len(streams)) + header + tensors + streams
    return body + hashlib.sha256(body).digest()[:8]


def with_streams(streams: bytes, archive: Archive | None = None) -> bytes:
    _, header, tensors, _, _ = split_v4(NEW if archive is None else encode_archive(archive, version=4))
    return pack_v4(header, tensors, streams)


def test_version_4_file_is_what_the_spec_lays_out():
    fields, header, tensors, streams, trailer = split_v4()
    assert fields[1:3] == (4, 0) and len(NEW) == 24 + sum(fields[3:6]) + 8
    assert trailer == hashlib.sha256(NEW[:-8]).digest()[:8]
    assert unframe(header) == make_archive().header.to_json()
    arrays = make_archive().arrays
    assert set(st_load_frame(tensors)) == set(arrays) - {"chunk_tokens", "residual_offsets", "residual"}
    # one run of chunk lengths? no: [5, 3] is two runs (1 x 5, 1 x 3); one group of 3 bytes; the bytes
    assert streams == bytes([2, 1, 5, 1, 3, 3]) + b"\x13\x37\x42"
    decoded = decode_archive(NEW)
    assert (decoded.stored_header_bytes, decoded.stored_payload_bytes, decoded.framing_bytes) \
        == (len(header), len(tensors) + len(streams), 32)


def st_load_frame(tensors: bytes) -> dict:
    from safetensors.numpy import load
    return load(unframe(tensors))


def one_stream_per_chunk(tokens: list[int], offsets: list[int]) -> Archive:
    """A model-only archive whose chunks are each their own residual stream (batch 1)."""
    archive = make_archive(None)
    archive.header.text.chunks, archive.header.text.tokens = len(tokens), sum(tokens)
    archive.header.decode.batch_size = 1
    archive.arrays = {"chunk_tokens": np.array(tokens, np.int32), "residual_offsets": np.array(offsets, np.int64),
                      "residual": np.arange(offsets[-1], dtype=np.uint8),
                      "group_digests": np.zeros((len(tokens), 8), np.uint8)}
    return archive


def test_version_4_runs_of_equal_chunks_and_long_lengths():
    archive = one_stream_per_chunk([300, 300, 300, 300, 2], [0, 0, 150, 150, 199, 200])
    data = encode_archive(archive, version=4)
    # 2 runs: 4 x 300 (300 = 0xAC 0x02), 1 x 2; stream lengths 0, 150 (0x96 0x01), 0, 49, 1; the bytes
    assert split_v4(data)[3] == bytes([2, 4, 0xAC, 0x02, 1, 2, 0, 0x96, 0x01, 0, 49, 1]) + bytes(range(200))
    assert_archives_equal(decode_archive(data), archive)


def test_model_only_archive_without_text_codec_tensors_has_only_the_digests_in_its_tensors_frame():
    archive = one_stream_per_chunk([5, 3], [0, 2, 3])
    fields, _, tensors, streams, _ = split_v4(encode_archive(archive, version=4))
    assert set(st_load_frame(tensors)) == {"group_digests"} and streams == bytes([2, 1, 5, 1, 3, 2, 1, 0, 1, 2])


@pytest.mark.parametrize("streams, phrase", [
    (b"", "ends inside the number of runs"),
    (bytes([3, 1, 5, 1, 3]), "more than 2"),  # 3 runs for 2 chunks
    (bytes([1, 3, 5]), "chunk count as 3, more than 2"),
    (bytes([2, 1, 5]), "ends inside a run's chunk count"),
    (bytes([2, 1, 5, 2, 3, 3]) + b"\x13\x37\x42", "do not add up"),  # counts 1 + 2: 3 chunks
    (bytes([2, 0, 5, 2, 3, 3]) + b"\x13\x37\x42", "do not add up"),  # a run of 0 chunks
    (bytes([1, 2, 5, 3]) + b"\x13\x37\x42", "add up to text.tokens"),  # 2 x 5 tokens: the header says 8
    (bytes([2, 1, 5, 1, 0x80, 0x80, 0x80, 0x01]), "more than 1048576"),
    (bytes([2, 1, 5, 1, 3]), "ends inside a residual stream's length"),
    (bytes([2, 1, 5, 1, 3, 4]) + b"\x13\x37\x42", "holds 3"),
    (bytes([2, 1, 5, 1, 3, 3]) + b"\x13\x37", "holds 2"),
    (bytes([2, 1, 5, 1, 3, 3]) + b"\x13\x37\x42\x00", "holds 4"),
    (bytes([2, 1, 5, 1, 3]) + b"\xff" * 10, "overlong"),
])
def test_stream_section_defects(streams, phrase):
    with pytest.raises(PayloadFormatError, match=phrase):
        decode_archive(with_streams(streams))


def test_chunk_tokens_from_the_stream_section_are_checked_like_the_tensors():
    # a run of 8 chunks of 0 tokens would add up to the chunk count only with other runs: 1 x 0 + 1 x 8
    with pytest.raises(PayloadFormatError, match="chunk outside"):
        decode_archive(with_streams(bytes([2, 1, 0, 1, 8, 3]) + b"\x13\x37\x42"))


def test_version_4_stored_archive_has_no_stream_section():
    header = make_header(bytes=3, sha256=hashlib.sha256(b"abc").hexdigest())
    header.mode, header.model, header.decode = "stored", None, None
    archive = Archive(header, {"stored": np.frombuffer(b"abc", np.uint8).copy()})
    data = encode_archive(archive, version=4)
    assert split_v4(data)[0][5] == 0
    assert_archives_equal(decode_archive(data), archive)
    _, head, tensors, _, _ = split_v4(data)
    with pytest.raises(PayloadFormatError, match="no stream section"):
        decode_archive(pack_v4(head, tensors, b"\x00"))


def test_version_4_lengths_out_of_limits():
    with pytest.raises(HeaderTooLargeError, match="both 0"):
        decode_archive(PREAMBLE_V4.pack(MAGIC, 4, 0, 100, 0, 0))
    with pytest.raises(HeaderTooLargeError, match="tensors length"):
        decode_archive(PREAMBLE_V4.pack(MAGIC, 4, 0, 100, MAX_PAYLOAD_BYTES + 1, 0))
    with pytest.raises(HeaderTooLargeError, match="stream section length"):
        decode_archive(PREAMBLE_V4.pack(MAGIC, 4, 0, 100, 0, 0xFFFFFFFF))


def test_version_4_truncation_flips_and_trailing_bytes(tmp_path):
    for cut in range(0, len(NEW)):
        with pytest.raises(ContainerError):
            decode_archive(NEW[:cut])
    for offset in range(len(NEW)):
        expected = ChecksumMismatchError if offset >= 24 else ContainerError
        with pytest.raises(expected):
            decode_archive(flip(NEW, offset, 0x10))
    with pytest.raises(TrailingDataError, match="1 unexpected bytes"):
        decode_archive(NEW + b"\0")
    path = tmp_path / "a.memz"
    path.write_bytes(NEW)
    assert_archives_equal(read_archive(path), decode_archive(NEW))
    assert read_header(path) == make_archive().header


@FUZZ
@given(st.data())
def test_fuzz_stream_section(data):
    """The stream section changed anywhere or cut, with a valid trailer: only ContainerErrors."""
    raw = bytearray(split_v4()[3])
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    decode_or_error(with_streams(bytes(raw[:data.draw(st.integers(0, len(raw)))])))
