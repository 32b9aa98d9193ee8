"""Formats 5-9, the compact container (docs/format.md §0): its bytes as the spec lays them out,
the profile that makes memzip's defaults cost no bytes (profile 8 in version 9, 5 in version 8, 2
in versions 6 and 7, 1 in version 5), the profiles that cost one, the flags a reader must refuse, and damage anywhere in the header named as damage."""

from __future__ import annotations

import binascii
import dataclasses
import hashlib
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memzip.errors import ChecksumMismatchError, ContainerError, TruncatedArchiveError, UnsupportedVersionError
from memzip.format import compact
from memzip.format.container import Archive, decode_archive, encode_archive
from memzip.format.header import DecodeSettings, ModelIdentity, VectorLayout
from test_container import assert_archives_equal
from test_header import make_header

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FINGERPRINT = bytes.fromhex("0123456789abcdef")


def default_archive(tokens=(4, 4), residual=b"\x13\x37\x42", offsets=(0, 2, 3), profile=8, **text) -> Archive:
    """A model-only archive at memzip's default settings (profile 8; 11 without the adaptive bias,
    9 and 10 at windows of 4,096 and 8,192) of the default model: one residual stream per chunk."""
    header = make_header(**{"sha256": hashlib.sha256(b"original").hexdigest()[:16], "chunks": len(tokens),
                            "tokens": sum(tokens), **text})
    header.memzip_version, header.encode = "", {}
    # the default model as a reader knows it: its name and fingerprint, nothing else written
    header.model = ModelIdentity(name="embedded", source="", hub_id=None, revision=None, file=None, architecture="",
                                 d_model=0, vocab_size=0, weights_sha256="", tokenizer_sha256="",
                                 fingerprint64=FINGERPRINT.hex())
    header.decode = DecodeSettings(dtype="float32", attn_implementation="", batch_size=None, margin=None,
                                   prefix_tokens=None, infix_tokens=[], device="",
                                   engine=compact.PROFILES[profile]["engine"], window=compact.PROFILES[profile]["window"],
                                   exact=dict(compact.PROFILES[profile]["exact"]),
                                   coding=dict(compact.PROFILES[profile]["coding"]), profile=profile)
    header.vectors = VectorLayout()
    arrays = {"chunk_tokens": np.array(tokens, np.int32), "residual_offsets": np.array(offsets, np.int64),
              "residual": np.frombuffer(residual, np.uint8).copy()}
    return Archive(header, arrays)


def stored_archive(data: bytes) -> Archive:
    header = make_header(bytes=len(data), sha256=hashlib.sha256(data).hexdigest()[:16], tokens=0, chunks=0)
    header.mode, header.model, header.decode = "stored", None, None
    return Archive(header, {"stored": np.frombuffer(data, np.uint8).copy()})


def with_crc(head: bytes) -> bytes:
    return head + struct.pack("<H", binascii.crc_hqx(head, 0xFFFF))


GOOD = encode_archive(default_archive())


# --- the layout --------------------------------------------------------------------------------


def test_a_default_archive_is_what_the_spec_lays_out():
    check = hashlib.sha256(b"original").digest()[:8]
    # magic, version, flags (MODEL), fingerprint, check, 12 bytes, 2 chunks as 2C = 4 and 8 tokens
    # (4 + 4: even), the first stream's length 2, the CRC-16 of all that; the residual to the end
    head = b"\x89mz\x09" + bytes([compact.MODEL]) + FINGERPRINT + check + bytes([12, 4, 8, 2])
    assert GOOD == with_crc(head) + b"\x13\x37\x42"
    decoded = decode_archive(GOOD)
    assert_archives_equal(decoded, default_archive())
    assert (decoded.stored_header_bytes, decoded.stored_payload_bytes, decoded.framing_bytes) == (
        len(head) - 4, 3, 6)


def test_the_overhead_of_a_default_archive_is_at_most_32_bytes():
    # an empty file: no chunks; a named original and its time are the most a default archive adds
    empty = default_archive(tokens=(), residual=b"", offsets=(0,), bytes=0, sha256=hashlib.sha256(b"").hexdigest()[:16])
    assert len(encode_archive(empty)) <= 32
    assert_archives_equal(decode_archive(encode_archive(empty)), empty)


def test_uneven_chunks_are_written_as_runs_and_the_even_ones_as_a_total():
    even = default_archive(tokens=(4, 4, 3), residual=b"abc", offsets=(0, 1, 2, 3))
    uneven = default_archive(tokens=(3, 4, 4), residual=b"abc", offsets=(0, 1, 2, 3))
    assert b"\x06\x0b\x01\x01" in encode_archive(even)  # 2C = 6, 11 tokens, lengths 1 and 1
    assert b"\x07\x02\x01\x03\x02\x04\x01\x01" in encode_archive(uneven)  # 2C + 1, 2 runs: 1 x 3, 2 x 4
    for archive in (even, uneven):
        assert_archives_equal(decode_archive(encode_archive(archive)), archive)


def test_settings_other_than_the_defaults_are_written_and_read_back():
    archive = default_archive()
    archive.header.model = dataclasses.replace(make_header().model, fingerprint64=FINGERPRINT.hex())
    archive.header.decode.window = 1024
    archive.header.decode.profile, archive.header.decode.prefix_tokens = None, [0]
    data = encode_archive(archive)
    assert data[4] & compact.SETTINGS and len(data) > len(GOOD)
    decoded = decode_archive(data).header
    assert decoded.decode.window == 1024 and decoded.decode.profile is None
    assert decoded.model.weights_sha256 == archive.header.model.weights_sha256  # the full identity


def test_a_named_model_the_whole_check_the_name_and_the_time():
    archive = default_archive(name="book.txt", mtime_ns=1_700_000_000 * 10 ** 9,
                              sha256=hashlib.sha256(b"original").hexdigest())
    archive.header.model = dataclasses.replace(archive.header.model, name="org/model", hub_id="org/model")
    data = encode_archive(archive)
    flags = data[4]
    assert flags == compact.MODEL | compact.NAMED | compact.SHA256 | compact.NAME | compact.MTIME
    header = decode_archive(data).header
    assert (header.model.name, header.text.name, header.text.mtime_ns) == (
        "org/model", "book.txt", 1_700_000_000 * 10 ** 9)
    assert header.text.sha256 == hashlib.sha256(b"original").hexdigest()


@pytest.mark.parametrize("data, raw", [(bytes(300), False), (os.urandom(300), True), (b"", True)])
def test_stored_bytes_are_zstd_unless_that_grows_them(data, raw):
    encoded = encode_archive(stored_archive(data))
    assert bool(encoded[4] & compact.RAW) == raw and not encoded[4] & compact.MODEL
    if raw:
        assert encoded.endswith(data) and len(encoded) <= len(data) + 32
    back = decode_archive(encoded)
    assert back.arrays["stored"].tobytes() == data


def test_profile_8_is_what_memzip_writes_for_one_stream_9_for_several_11_and_12_without_the_bias():
    from dataclasses import replace

    from memzip.exact.coding import coding_settings
    from memzip.exact.engine import EXACT_SETTINGS, coding_kind
    from memzip.options import CompressOptions
    from memzip.options import EXACT_WINDOW, ONE_STREAM_WINDOW

    options = CompressOptions()
    assert (options.window, options.mem_vectors) == (None, 0)
    assert EXACT_WINDOW == compact.PROFILE_2["window"] == compact.PROFILE_1["window"] == 2048
    assert (compact.PROFILE_3["window"], compact.PROFILE_4["window"]) == (4096, 8192)
    assert (compact.PROFILE_6["window"], compact.PROFILE_7["window"]) == (4096, 8192)
    assert compact.PROFILE_5 == {**compact.PROFILE_2, "coding": {**compact.PROFILE_2["coding"], "bias_streams": 4}}
    assert ONE_STREAM_WINDOW == compact.PROFILE_8["window"] == compact.PROFILE_12["window"] == 4096
    assert (compact.PROFILE_9["window"], compact.PROFILE_10["window"], compact.PROFILE_11["window"]) == (2048, 8192,
                                                                                                          2048)
    for profile, adaptive in ((8, True), (9, True), (10, True), (11, False), (12, False)):
        assert EXACT_SETTINGS.to_header() == compact.PROFILES[profile]["exact"]
        coding = coding_settings(replace(options, adaptive_bias=adaptive)).to_header(coding_kind(0))
        assert coding == compact.PROFILES[profile]["coding"]
    for old, new in ((5, 8), (1, 11)):  # format 9 changes only these settings
        assert compact.PROFILES[new]["exact"] == {**compact.PROFILES[old]["exact"], "peak_scales": 1}
        assert compact.PROFILES[new]["coding"] == {**compact.PROFILES[old]["coding"],
                                                   **({"fresh_bits": 1} if new == 8 else {})}


@pytest.mark.parametrize("profile", [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12])
def test_every_other_profile_costs_one_byte_in_version_9(profile):
    """Several streams (profile 9), --window 8192 (10), --no-adapt (11, 12), and what memzip
    0.4-0.7 wrote (1-7): the SETTINGS flag and the profile number, no settings frame; read back as that
    profile's settings."""
    old = default_archive(profile=profile)
    data = encode_archive(old)
    assert len(data) == len(GOOD) + 1 and data[4] == compact.MODEL | compact.SETTINGS and data[5] == profile
    decoded = decode_archive(data)
    assert_archives_equal(decoded, old)
    assert decoded.header.decode.profile == profile
    assert (decoded.header.decode.coding, decoded.header.decode.window) == (
        compact.PROFILES[profile]["coding"], compact.PROFILES[profile]["window"])


@pytest.mark.parametrize("version, profile, settings_frame", [
    (6, 3, True), (6, 4, True), (6, 5, True), (6, 2, False), (7, 5, True), (7, 7, True), (7, 2, False), (7, 3, False)])
def test_older_versions_write_a_later_profile_as_its_settings(version, profile, settings_frame):
    """What memzip 0.5 and 0.6 could read: a profile they did not know as the JSON of its settings,
    their implicit profile as no bytes, another they knew as its number."""
    archive = default_archive(profile=profile)
    archive.header.model = dataclasses.replace(make_header().model, fingerprint64=FINGERPRINT.hex())
    archive.header.decode.prefix_tokens = [0]  # what the pipeline records beside the profile
    data = encode_archive(archive, version=version)
    assert data[3] == version and bool(data[4] & compact.SETTINGS) == (profile != 2)
    if profile != 2:  # profile 0 then the settings frame, or the profile's number
        assert data[5] == (0 if settings_frame else profile)
    decoded = decode_archive(data).header.decode
    assert (decoded.window, decoded.coding) == (compact.PROFILES[profile]["window"],
                                                compact.PROFILES[profile]["coding"])


@pytest.mark.parametrize("version, profile", [(5, 1), (6, 2), (7, 2), (8, 5), (9, 8)])
def test_a_header_without_settings_is_its_versions_implicit_profile(version, profile):
    """Format 5 (memzip 0.4) wrote profile 1 as no bytes, formats 6 and 7 profile 2, format 8
    profile 5, format 9 profile 8: the same bytes under each version read as that version's profile."""
    as_version = with_crc(bytes([0x89, 0x6D, 0x7A, version]) + GOOD[4:-5]) + GOOD[-3:]
    decoded = decode_archive(as_version).header
    assert decoded.format_version == version and decoded.decode.profile == profile
    assert (decoded.decode.coding, decoded.decode.window) == (compact.PROFILES[profile]["coding"],
                                                              compact.PROFILES[profile]["window"])


@pytest.mark.parametrize("version, profile", [(9, 8), (9, 13), (8, 5), (8, 8), (7, 2), (7, 5), (6, 2), (6, 3), (6, 4), (5, 1), (5, 2)])
def test_a_profile_the_version_does_not_write_is_refused(version, profile):
    from memzip.format.compact import varint

    data = with_crc(bytes([0x89, 0x6D, 0x7A, version]) + varint(compact.MODEL | compact.SETTINGS) + varint(profile)
                    + GOOD[5:-5]) + GOOD[-3:]
    with pytest.raises(ContainerError, match="profile"):
        decode_archive(data)


# --- what a reader refuses ----------------------------------------------------------------------


@pytest.mark.parametrize("flag", [1 << 8, 1 << 20])
def test_unknown_flags_are_refused(flag):
    from memzip.format.compact import varint

    data = with_crc(b"\x89mz\x09" + varint(compact.MODEL | flag) + GOOD[5:-5]) + GOOD[-3:]
    with pytest.raises(UnsupportedVersionError, match="feature flags"):
        decode_archive(data)


def test_other_versions_of_the_compact_magic_are_refused():
    for version in (4, 10):
        with pytest.raises(UnsupportedVersionError, match=f"version {version}"):
            decode_archive(bytes([0x89, 0x6D, 0x7A, version]) + GOOD[4:])


def test_every_bit_flip_in_the_header_is_caught():
    header_end = len(GOOD) - 3
    for i in range(3, header_end):  # the magic's own flips are "not an archive"
        for bit in range(8):
            data = bytearray(GOOD)
            data[i] ^= 1 << bit
            with pytest.raises(ContainerError):
                decode_archive(bytes(data))


def test_a_changed_field_with_a_correct_length_is_a_checksum_mismatch():
    data = bytearray(GOOD)
    data[6] ^= 1  # inside the fingerprint
    with pytest.raises(ChecksumMismatchError):
        decode_archive(bytes(data))


def test_truncation_anywhere_in_the_header_is_named():
    for cut in range(0, len(GOOD) - 3):
        with pytest.raises(ContainerError):
            decode_archive(GOOD[:cut])
    with pytest.raises(TruncatedArchiveError):
        decode_archive(GOOD[:10])


@FUZZ
@given(st.binary(max_size=80))
def test_fuzz_random_bytes_after_the_magic(rest):
    try:
        decode_archive(b"\x89mz\x07" + rest)
    except ContainerError:
        pass


@FUZZ
@given(st.data())
def test_fuzz_header_bytes_with_a_correct_crc(data):
    """The header changed and its check recomputed (a writer's bug, or a deliberate forgery):
    still only ContainerErrors."""
    head = bytearray(GOOD[:-5])
    for _ in range(data.draw(st.integers(1, 3))):
        head[data.draw(st.integers(4, len(head) - 1))] = data.draw(st.integers(0, 255))
    try:
        decode_archive(with_crc(bytes(head)) + GOOD[-3:])
    except ContainerError:
        pass


def test_the_line_ending_flag_is_read_back_and_refused_on_stored_bytes():
    archive = default_archive(line_endings="crlf")
    data = encode_archive(archive)
    assert data[4:6] == bytes([compact.MODEL | 0x80, compact.CRLF >> 7])  # bit 7: a two-byte varint
    assert decode_archive(data).header.text.line_endings == "crlf"
    stored = encode_archive(stored_archive(b"a\r\nb\r\n"))
    flags = stored[4] | compact.CRLF
    from memzip.format.compact import varint
    from memzip.errors import HeaderFormatError
    with pytest.raises(HeaderFormatError, match="line-ending"):
        decode_archive(with_crc(stored[:4] + varint(flags) + stored[5:-8]) + stored[-6:])
