"""Format 5: the compact container (docs/format.md §1). The header is a few varints and fixed
fields instead of a zstd frame of JSON, so a small file pays ~30 bytes of overhead where format 4
paid ~180: the model is the default one or a name, plus a 64-bit fingerprint; the decoding
settings are a profile number (profile 1: the defaults, no bytes at all) or, when they differ,
the JSON of format 4's `model`, `decode` and `vectors`; the original is checked by the first 8
bytes of its SHA-256 (all 32 with `--check sha256`); its name is kept only where it differs from
the archive's; its modification time in whole seconds. A CRC-16 closes the header; the residual
(or the stored bytes) runs to the end of the file.

This module turns an `Archive` into that layout and back; the arrays, and their checks, are
those of memzip/format/container.py.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
import struct

import numpy as np
import zstandard

from memzip.errors import (ChecksumMismatchError, HeaderFormatError, PayloadFormatError, TrailingDataError,
                           TruncatedArchiveError, UnsupportedVersionError)
from memzip.format.header import (CODING_KINDS, EXACT_ENGINES, MAX_CHUNK_TOKENS, MAX_CHUNKS, DecodeSettings, Header,
                                  ModelIdentity, TextInfo, VectorLayout, parse_header)

MAGIC = b"\x89mz"  # 3 bytes: a high-bit byte (7-bit transports), "mz"
VERSION = 9  # what memzip writes
VERSIONS = (5, 6, 7, 8, 9)  # the versions of this layout; they differ only in which profiles they know
FRAMING = len(MAGIC) + 1 + 2  # bytes that are neither header fields nor payload: magic, version, CRC-16

# flags, a varint; a reader MUST refuse bits it does not know
MODEL = 1 << 0  # the model coded the text (else the bytes are stored)
SETTINGS = 1 << 1  # a profile number follows (else profile 1)
SHA256 = 1 << 2  # the check is the whole SHA-256 of the original (else its first 8 bytes)
NAME = 1 << 3  # the original's file name follows
MTIME = 1 << 4  # its modification time follows
TENSORS = 1 << 5  # a tensors frame follows (vectors, text fixes, float-ranks digests)
NAMED = 1 << 6  # model: the model is named (else the default model); stored: the bytes are raw (else zstd)
RAW = NAMED
CRLF = 1 << 7  # model: every line ended in CR LF, and the model coded the text with LF alone
KNOWN_FLAGS = MODEL | SETTINGS | SHA256 | NAME | MTIME | TENSORS | NAMED | CRLF

DEFAULT_MODEL = "embedded"
# Profile 1, the defaults: the exact engine with these settings, the text coded with the model's
# whole distribution, attention over the sink and 2,048 positions, each stream starting at the
# model's document-start token (memzip/layout.py), no [mem] vectors. tests/test_format.py checks
# that memzip's defaults are these.
PROFILE_1 = {
    "engine": "exact-llama-1",
    "exact": {"weight_bits": 12, "narrow_weight_bits": 8, "activation_bits": 15, "query_bits": 8, "key_bits": 12,
              "value_bits": 12, "attention_weight_bits": 20, "attention_grid_bits": 8, "silu_grid_bits": 11,
              "silu_limit": 16},
    "coding": {"value_bits": 28, "grid_bits": 10, "kind": "distribution"},
    "window": 2048,
}
# Profile 2, the defaults of format 6: profile 1 plus the adaptive bias over the vocabulary,
# learning at 2^-3 logits a token (memzip/exact/adaptive.py).
PROFILE_2 = {**PROFILE_1, "coding": {**PROFILE_1["coding"], "bias_bits": 3}}
# Profiles 3 and 4 (format 7): profile 2 with attention over the sink and 4,096 or 8,192
# positions, what `--window 4096` / `--window 8192` ask for: fewer bytes on long streams for
# slower coding both ways (docs/benchmarks.md §1), one byte of settings instead of ~60.
PROFILE_3 = {**PROFILE_2, "window": 4096}
PROFILE_4 = {**PROFILE_2, "window": 8192}
# Profiles 5-7 (format 8; 5 its defaults): profiles 2-4 with one bias shared by each group of 4
# consecutive streams, decoded in lockstep (memzip/exact/streams.py).
PROFILE_5, PROFILE_6, PROFILE_7 = ({**p, "coding": {**p["coding"], "bias_streams": 4}}
                                   for p in (PROFILE_2, PROFILE_3, PROFILE_4))
# Profiles 8-12 (format 9): each weight row's scale its max |w| over the integers' range instead of
# a power of two (memzip/exact/weights.py `peak_scales`), and with the adaptive bias, tokens not
# coded yet learning twice as fast (memzip/exact/adaptive.py `fresh_bits`). 8, the implicit one,
# is what a file of one stream gets by default: a window of 4,096 (memzip/options.py); 9 what a
# file of several streams gets, 2,048; 10 --window 8192; 11 and 12 --no-adapt at 2,048 and 4,096.
_PEAK = {"peak_scales": 1}
PROFILE_8, PROFILE_9, PROFILE_10 = ({**PROFILE_5, "exact": {**PROFILE_5["exact"], **_PEAK},
                                     "coding": {**PROFILE_5["coding"], "fresh_bits": 1}, "window": window}
                                    for window in (4096, 2048, 8192))
PROFILE_11, PROFILE_12 = ({**PROFILE_1, "exact": {**PROFILE_1["exact"], **_PEAK}, "window": window}
                          for window in (2048, 4096))
PROFILES = {1: PROFILE_1, 2: PROFILE_2, 3: PROFILE_3, 4: PROFILE_4, 5: PROFILE_5, 6: PROFILE_6,
            7: PROFILE_7, 8: PROFILE_8, 9: PROFILE_9, 10: PROFILE_10, 11: PROFILE_11,
            12: PROFILE_12}  # 0: the settings are JSON in the header
IMPLICIT_PROFILE = {5: 1, 6: 2, 7: 2, 8: 5, 9: 8}  # what a header without SETTINGS uses, by version
# The profiles a version knows (numbered in the order formats adopted them): it writes one of
# them other than its implicit one as its number (SETTINGS + one varint), a later one as JSON.
LAST_PROFILE = {5: 1, 6: 2, 7: 4, 8: 7, 9: 12}

MAX_NAME = 4096  # bytes of a model name (an alias, hub id or path) or a file name
MAX_SETTINGS_BYTES = 1 << 20
MAX_TENSOR_BYTES = 1 << 30
MAX_TEXT_BYTES = 1 << 50
_ZSTD_LEVEL = 19


def model_fingerprint(identity: ModelIdentity) -> bytes:
    """The model's 64-bit fingerprint: the first 8 bytes of SHA-256 over its two SHA-256 fingerprints
    (weights, tokenizer; docs/format.md §4.3) as 128 hex digits."""
    if identity.fingerprint64:
        return bytes.fromhex(identity.fingerprint64)
    return hashlib.sha256((identity.weights_sha256 + identity.tokenizer_sha256).encode()).digest()[:8]


def model_reference(identity: ModelIdentity) -> str:
    """What format 5 names a model by: what `-m` resolves wherever the archive goes. A registry
    alias as it is; a hub model by id and the revision it was read at; a local directory or GGUF
    file by its absolute path (the user's -m may have been relative to another directory)."""
    if identity.source == "hub" and identity.hub_id and "/" in identity.name:  # a hub id, not an alias
        return f"{identity.hub_id}@{identity.revision}" if identity.revision else identity.hub_id
    if identity.source in ("dir", "gguf") and identity.file and os.path.isabs(identity.file):
        return identity.file
    return identity.name


# --- writing ----------------------------------------------------------------------------------------


def encode(archive, tensors_raw: bytes, dictionary, version: int = VERSION) -> tuple[bytes, int]:
    """Format 9's bytes (or 5's-8's, for tests of what memzip 0.4-0.7 wrote) of `archive` (arrays
    already checked), its tensors (safetensors, or b"") compressed with `dictionary` into the tensors
    frame; and where the header ends (after its check), which is where the residual or the stored
    bytes begin."""
    header, arrays = archive.header, archive.arrays
    stored = header.mode == "stored"
    flags = 0 if stored else MODEL
    if header.text.line_endings == "crlf" and not stored:
        flags |= CRLF
    fields = bytearray()
    if not stored:
        decode, model = header.decode, header.model
        profile = _profile(header)
        if profile > LAST_PROFILE[version]:
            profile = 0  # a profile this (older) version does not know: its settings as JSON
        if profile != IMPLICIT_PROFILE[version]:
            flags |= SETTINGS
            fields += varint(profile)
        if profile == 0:
            identity = {k: v for k, v in _asdict(model).items() if k != "fingerprint64"}  # written on its own
            settings = {"model": identity, "decode": _asdict(decode), "vectors": _asdict(header.vectors)}
            if header.vectors.mem_vectors:
                # what the vectors bought (`memzip stats`): bytes that matter little beside theirs
                settings["encode"] = header.encode
            settings = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
            frame = _compressor(dictionary).compress(settings)
            fields += varint(len(frame)) + frame
        elif model.name != DEFAULT_MODEL:
            flags |= NAMED
            fields += _string(model_reference(model))
        fields += model_fingerprint(model)
    check = bytes.fromhex(header.text.sha256)
    if len(check) == 32:
        flags |= SHA256
    fields += check + varint(header.text.bytes)
    if header.text.name is not None:
        flags |= NAME
        fields += _string(header.text.name)
    if header.text.mtime_ns is not None and 0 <= header.text.mtime_ns // 10 ** 9 < 1 << 32:
        flags |= MTIME
        fields += struct.pack("<I", header.text.mtime_ns // 10 ** 9)
    if tensors_raw:
        flags |= TENSORS
        frame = _compressor(dictionary).compress(tensors_raw)
        fields += varint(len(frame)) + frame
    if stored:
        data = arrays["stored"].tobytes()
        packed = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=False, write_content_size=True,
                                          write_dict_id=False).compress(data)
        if len(packed) >= len(data):
            flags |= RAW
            packed = data
        body = b""
    else:
        body = _streams(arrays, header.groups)
        packed = arrays["residual"].tobytes()
    head = MAGIC + bytes([version]) + varint(flags) + bytes(fields) + body
    head += struct.pack("<H", binascii.crc_hqx(head, 0xFFFF))
    return head + packed, len(head)


def _profile(header: Header) -> int:
    """The profile the engine marked (streams starting at the document-start token), if the
    settings are still that profile's once the pipeline has filled in the rest (dtype, layout);
    else 0."""
    profile = header.decode.profile
    return profile if profile and matching_profile(header.decode, header.vectors.mem_vectors) == profile else 0


def matching_profile(decode: DecodeSettings, mem_vectors: int) -> int | None:
    """The profile whose settings these are (every field but the start token, which only the
    engine that chose the layout knows), or None."""
    if mem_vectors or decode.infix_tokens or decode.dtype != "float32":
        return None
    for number, profile in PROFILES.items():
        if (decode.engine == profile["engine"] and decode.exact == profile["exact"]
                and decode.coding == profile["coding"] and decode.window == profile["window"]):
            return number
    return None


def _streams(arrays, groups: int) -> bytes:
    """Chunks: 2C, then the total tokens when the chunks are even (divmod of the total, the longer
    first); else 2C + 1 and format 4's runs. Then the first G - 1 residual streams' lengths."""
    tokens, offsets = arrays["chunk_tokens"].tolist(), arrays["residual_offsets"].tolist()
    total, count = sum(tokens), len(tokens)
    if count and tokens == _even(total, count):
        out = varint(2 * count) + varint(total)
    else:
        out = varint(2 * count + 1) + runs_of(tokens)
    lengths = [b - a for a, b in zip(offsets, offsets[1:])]
    return out + b"".join(varint(n) for n in lengths[:-1])


def runs_of(tokens: list[int]) -> bytes:
    """Chunk lengths as runs of equal neighbours (format 4's stream section, format 5's uneven
    chunks): the number of runs, then (count, tokens) for each."""
    runs: list[list[int]] = []
    for n in tokens:
        if runs and runs[-1][1] == n:
            runs[-1][0] += 1
        else:
            runs.append([1, n])
    return varint(len(runs)) + b"".join(varint(c) + varint(n) for c, n in runs)


def _even(total: int, count: int) -> list[int]:
    base, extra = divmod(total, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def _compressor(dictionary):
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL, dict_data=dictionary, write_checksum=False,
                                    write_content_size=True, write_dict_id=False)


def _asdict(obj) -> dict:
    from dataclasses import asdict

    return asdict(obj)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return varint(len(raw)) + raw


def varint(x: int) -> bytes:
    """An unsigned LEB128 varint (docs/format.md §0)."""
    out = bytearray()
    while x >= 0x80:
        out.append(x & 0x7F | 0x80)
        x >>= 7
    out.append(x)
    return bytes(out)


# --- reading ----------------------------------------------------------------------------------------


def parse_varint(data: bytes, position: int) -> tuple[int, int]:
    """(value, the position after it) of the varint at `position`; EOFError where the bytes end
    inside it, OverflowError past 63 bits. Callers name the error in their own terms."""
    value, shift = 0, 0
    while True:
        if position >= len(data):
            raise EOFError
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise OverflowError


class Reader:
    """Fields read one by one from the front of a format-5 file, each bounded before use; running
    out of bytes is a truncated archive."""

    def __init__(self, data: bytes, position: int = 0):
        self.data, self.position = data, position

    def take(self, n: int, what: str) -> bytes:
        if self.position + n > len(self.data):
            raise TruncatedArchiveError(f"archive is truncated inside its {what}")
        out = self.data[self.position:self.position + n]
        self.position += n
        return out

    def varint(self, limit: int, what: str, error=HeaderFormatError) -> int:
        try:
            value, self.position = parse_varint(self.data, self.position)
        except EOFError:
            raise TruncatedArchiveError(f"archive is truncated inside its {what}") from None
        except OverflowError:
            raise error(f"header field {what} is an overlong integer") from None
        if value > limit:
            raise error(f"header field {what} is {value}, more than {limit}")
        return value

    def string(self, what: str) -> str:
        raw = self.take(self.varint(MAX_NAME, what), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HeaderFormatError(f"header field {what} is not UTF-8") from None


def decode(data: bytes, decompress, dictionary_version: int) -> tuple[Header, dict, dict, bytes | None]:
    """(header, arrays but the tensors', the tensors frame's raw bytes or None) of format-5 to -9
    bytes; `decompress(frame, limit, what, error, version)` reads a zstd frame as container.py does."""
    version = data[len(MAGIC)]
    read = Reader(data, len(MAGIC) + 1)
    flags = read.varint(1 << 62, "flags")
    if flags & ~KNOWN_FLAGS:
        raise UnsupportedVersionError(f"archive uses feature flags {flags & ~KNOWN_FLAGS:#x} this memzip does not know")
    stored = not flags & MODEL
    if stored and flags & CRLF:
        raise HeaderFormatError("a stored archive's bytes are as they were: it has no line-ending flag")
    model = decode_settings = vectors = None
    encode_info = {}
    if not stored:
        profile = read.varint(max(PROFILES), "profile") if flags & SETTINGS else IMPLICIT_PROFILE[version]
        # a number written here names a profile this version knows other than its implicit one
        if flags & SETTINGS and (profile == IMPLICIT_PROFILE[version] or profile > LAST_PROFILE[version]):
            raise HeaderFormatError(f"header field profile is {profile}, which a version-{version} archive "
                                    "does not write")
        if profile == 0:
            frame = read.take(read.varint(MAX_SETTINGS_BYTES, "settings"), "settings")
            raw = decompress(frame, MAX_SETTINGS_BYTES, "settings", HeaderFormatError, dictionary_version)
            model, decode_settings, vectors, encode_info = _settings(raw)
            fingerprint = read.take(8, "model fingerprint").hex()
        else:
            name = read.string("model name") if flags & NAMED else DEFAULT_MODEL
            fingerprint = read.take(8, "model fingerprint").hex()
            model = ModelIdentity(name=name, source="", hub_id=None, revision=None, file=None, architecture="",
                                  d_model=0, vocab_size=0, weights_sha256="", tokenizer_sha256="")
            decode_settings = DecodeSettings(dtype="float32", attn_implementation="", batch_size=None, margin=None,
                                             prefix_tokens=None, infix_tokens=[], device="",
                                             engine=PROFILES[profile]["engine"],
                                             window=PROFILES[profile]["window"],
                                             exact=dict(PROFILES[profile]["exact"]),
                                             coding=dict(PROFILES[profile]["coding"]), profile=profile)
            vectors = VectorLayout()
        model.fingerprint64 = fingerprint
    check = read.take(32 if flags & SHA256 else 8, "check").hex()
    text_bytes = read.varint(MAX_TEXT_BYTES, "text bytes")
    name = read.string("file name") if flags & NAME else None
    mtime = struct.unpack("<I", read.take(4, "mtime"))[0] * 10 ** 9 if flags & MTIME else None
    tensors_frame = None
    if flags & TENSORS:
        tensors_frame = read.take(read.varint(MAX_TENSOR_BYTES, "tensors frame"), "tensors frame")
    arrays, chunks, tokens = {}, 0, 0
    if not stored:
        groups_per = decode_settings.batch_size or 1
        tokens_per_chunk, lengths = _read_streams(read, groups_per)
        chunks, tokens = len(tokens_per_chunk), sum(tokens_per_chunk)
        arrays["chunk_tokens"] = np.asarray(tokens_per_chunk, np.int32)
    header_end = read.position
    crc = struct.unpack("<H", read.take(2, "header check"))[0]
    if crc != binascii.crc_hqx(data[:header_end], 0xFFFF):
        raise ChecksumMismatchError("archive header checksum mismatch: its bytes were altered")
    tensors = None  # decompressed only once the check has passed: damage is named as damage
    if tensors_frame is not None:
        tensors = decompress(tensors_frame, MAX_TENSOR_BYTES, "tensors", PayloadFormatError, dictionary_version)
    rest = data[read.position:]
    if stored:
        if flags & RAW:
            if len(rest) != text_bytes:
                raise (TruncatedArchiveError if len(rest) < text_bytes else TrailingDataError)(
                    f"stored bytes: {len(rest)} where the header says {text_bytes}")
            arrays["stored"] = np.frombuffer(rest, np.uint8).copy()
        else:
            raw = decompress(rest, min(text_bytes, MAX_TENSOR_BYTES), "stored bytes", PayloadFormatError, None)
            if len(raw) != text_bytes:
                raise PayloadFormatError(f"stored bytes decompress to {len(raw)}, the header says {text_bytes}")
            arrays["stored"] = np.frombuffer(raw, np.uint8).copy()
    else:
        if sum(lengths) > len(rest):
            raise TruncatedArchiveError(f"residual streams of {sum(lengths)} bytes and more, {len(rest)} in the file")
        if chunks:
            lengths.append(len(rest) - sum(lengths))  # the last stream runs to the end of the file
        elif rest:
            raise TrailingDataError(f"{len(rest)} unexpected bytes after the header of an archive of no tokens")
        arrays["residual_offsets"] = np.cumsum([0] + lengths, dtype=np.int64)
        arrays["residual"] = np.frombuffer(rest, np.uint8).copy()
    text = TextInfo(bytes=text_bytes, sha256=check, tokens=tokens, chunks=chunks, name=_file_name(name),
                    permissions=None, mtime_ns=mtime, line_endings="crlf" if flags & CRLF else None)
    header = Header(memzip_version="", model=model, decode=decode_settings, vectors=vectors or VectorLayout(),
                    text=text, encode=encode_info, mode="stored" if stored else "model")
    return header, arrays, {"header": header_end + 2, "payload": len(data) - header_end - 2}, tensors


def _settings(raw: bytes):
    """format 4's model, decode, vectors and (with vectors) encode objects, parsed and checked as
    format 4 parses them."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HeaderFormatError(f"header settings are not valid UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise HeaderFormatError("header settings must be a JSON object")
    text = {"bytes": 0, "sha256": "0" * 64, "tokens": 0, "chunks": 0}
    full = {"memzip_version": "", "mode": "model", "encode": {}, "text": text, **obj}
    header = parse_header(json.dumps(full).encode(), 4)
    return header.model, header.decode, header.vectors, header.encode


def _read_streams(read: Reader, groups_per: int) -> tuple[list[int], list[int]]:
    value = read.varint(2 * MAX_CHUNKS + 1, "chunks", PayloadFormatError)
    count, explicit = value // 2, value % 2
    if not explicit:
        total = read.varint(MAX_CHUNKS * MAX_CHUNK_TOKENS, "tokens", PayloadFormatError)
        if count == 0 and total:
            raise PayloadFormatError("tokens without chunks")
        tokens = _even(total, count) if count else []
        if tokens and (tokens[-1] < 1 or tokens[0] > MAX_CHUNK_TOKENS):
            raise PayloadFormatError("chunks of 0 or more than 2^20 tokens")
    else:
        runs = read.varint(count, "runs of chunk lengths", PayloadFormatError)
        tokens = []
        for _ in range(runs):
            repeat = read.varint(count - len(tokens), "a run's chunk count", PayloadFormatError)
            length = read.varint(MAX_CHUNK_TOKENS, "a chunk's token count", PayloadFormatError)
            if repeat < 1 or length < 1:
                raise PayloadFormatError("an empty run, or chunks of no tokens")
            tokens += [length] * repeat
        if len(tokens) != count:
            raise PayloadFormatError(f"runs of chunk lengths add up to {len(tokens)} chunks, not {count}")
    groups = -(-count // groups_per)
    lengths = [read.varint(MAX_TENSOR_BYTES, "a residual stream's length", PayloadFormatError)
               for _ in range(max(groups - 1, 0))]
    return tokens, lengths


def _file_name(name: str | None) -> str | None:
    if name is None:
        return None
    if not name or len(name.encode()) > 255 or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise HeaderFormatError("header field file name must be a plain file name")
    return name


__all__ = ["MAGIC", "VERSION", "VERSIONS", "PROFILE_1", "PROFILE_2", "PROFILE_3", "PROFILE_4", "PROFILE_5", "PROFILE_6", "PROFILE_7", "PROFILE_8", "PROFILE_9",
           "PROFILE_10", "PROFILE_11", "PROFILE_12", "encode", "decode", "model_fingerprint", "CODING_KINDS", "EXACT_ENGINES"]
