"""Read and write `.memz` files. The specification is docs/format.md; this follows it step by step.

The container turns an `Archive` (a `Header` plus named numpy arrays) into bytes and back, and
refuses anything malformed with the specific `ContainerError` the spec names. Every size is
bounded before anything is allocated. Like the rest of `memzip.format`, it never imports torch.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zstandard
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from memzip.errors import (
    ChecksumMismatchError,
    ContainerError,
    HeaderFormatError,
    HeaderTooLargeError,
    NotAnArchiveError,
    PayloadFormatError,
    TrailingDataError,
    TruncatedArchiveError,
    UnsupportedVersionError,
)
from memzip.format import compact
from memzip.format import vectors as storage
from memzip.format.dictionary import ZSTD_DICTIONARY, ZSTD_DICTIONARY_V3
from memzip.format.header import MAX_CHUNK_TOKENS, Header, parse_header

MAGIC = b"\x89MEMZ\r\n\x1a"  # versions 2-4; versions 5-9 start with compact.MAGIC
FORMAT_VERSION = 9  # what this memzip writes
READABLE_VERSIONS = (2, 3, 4, 5, 6, 7, 8, 9)
PREAMBLE_VERSIONS = (2, 3, 4)  # the versions that start with MAGIC and a 24-byte preamble
# 24 bytes in every version: magic, version, flags, header_length, then
PREAMBLE = struct.Struct("<8sHHIQ")  # versions 2-3: payload_length
PREAMBLE_V4 = struct.Struct("<8sHHIII")  # version 4: tensors_length, streams_length
TRAILER_SIZES = {2: 32, 3: 32, 4: 8}  # the SHA-256 of the bytes before it, whole or its first 8 bytes

# Version 4 keeps these out of the safetensors file: the stream section holds them in a few bytes
# (docs/format.md §1.2), which is most of what a small archive paid for framing.
STREAM_ARRAYS = ("chunk_tokens", "residual_offsets", "residual")

MAX_HEADER_BYTES = 1 << 20  # stored and decompressed
MAX_PAYLOAD_BYTES = 1 << 30  # stored and decompressed
ZSTD_LEVEL = 19

# Tensors of the text codec (memzip/textcodec.py); each may be absent when empty.
TEXT_TENSORS = {
    "escape_positions": (np.int64, (None,)),
    "escape_bytes": (np.uint8, (None,)),
    "patch_ops": (np.int64, (None, 3)),
    "patch_text": (np.uint8, (None,)),
}
_DICTS = {2: zstandard.ZstdCompressionDict(ZSTD_DICTIONARY, dict_type=zstandard.DICT_TYPE_RAWCONTENT),
          3: zstandard.ZstdCompressionDict(ZSTD_DICTIONARY_V3, dict_type=zstandard.DICT_TYPE_RAWCONTENT)}
_DICTS[4] = _DICTS[3]  # version 4 changed the layout, not what its header frame holds
_DICTS[5] = _DICTS[6] = _DICTS[7] = _DICTS[8] = _DICTS[9] = _DICTS[3]  # versions 5-9's settings and tensors frames: the same JSON and safetensors
_DICTS[None] = None  # formats 5-9: stored bytes are zstd without a dictionary


@dataclass
class Archive:
    """A parsed .memz: the header and the payload arrays (names and shapes as in format.md §3)."""

    header: Header
    arrays: dict[str, np.ndarray]
    # Bytes the header, the payload (tensors and residual) and the fixed framing (preamble and
    # trailer) take in the file, set when read or written.
    stored_header_bytes: int = 0
    stored_payload_bytes: int = 0
    framing_bytes: int = 0

    def array(self, name: str) -> np.ndarray:
        """A tensor, or its empty form for the optional text-codec tensors."""
        return _tensor(self.arrays, name)


def _tensor(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    """arrays[name], or the empty form of an optional text-codec tensor that was left out."""
    if name in arrays:
        return arrays[name]
    dtype, shape = TEXT_TENSORS[name]
    return np.zeros(tuple(0 if s is None else s for s in shape), dtype=dtype)


# --- writing ----------------------------------------------------------------------------------


def encode_archive(archive: Archive, version: int = FORMAT_VERSION) -> bytes:
    """Serialize an archive (format version 9; 8, 7, 6, 5 or 4 for tests of what older memzips wrote). The
    arrays are checked against the header first, so a writer bug cannot produce a file the reader
    would refuse. Empty text-codec tensors are left out."""
    arrays = {name: np.ascontiguousarray(a) for name, a in archive.arrays.items()
              if not (name in TEXT_TENSORS and a.size == 0)}
    check_arrays(archive.header, arrays)
    if version in compact.VERSIONS:
        tensors = {name: a for name, a in arrays.items() if name not in STREAM_ARRAYS + ("stored",)}
        raw_tensors = st_save(tensors) if tensors else b""
        if len(raw_tensors) > MAX_PAYLOAD_BYTES:
            raise HeaderTooLargeError(f"payload of {len(raw_tensors)} bytes exceeds the format limit of 1 GiB",
                                      hint="Split the input into smaller files.")
        data, header_end = compact.encode(Archive(archive.header, arrays), raw_tensors, _DICTS[version], version)
        archive.stored_header_bytes, archive.stored_payload_bytes, archive.framing_bytes = (
            header_end - compact.FRAMING, len(data) - header_end, compact.FRAMING)
        return data
    raw_header = archive.header.to_json()
    if len(raw_header) > MAX_HEADER_BYTES:
        raise HeaderTooLargeError(f"header of {len(raw_header)} bytes exceeds the 1 MiB limit")
    streams = b"" if archive.header.mode == "stored" else _stream_section(arrays)
    tensors = {name: a for name, a in arrays.items() if name not in STREAM_ARRAYS}
    raw_tensors = st_save(tensors) if tensors else b""
    if len(raw_tensors) > MAX_PAYLOAD_BYTES or len(streams) > MAX_PAYLOAD_BYTES:
        raise HeaderTooLargeError(f"payload of {max(len(raw_tensors), len(streams))} bytes exceeds the format "
                                  "limit of 1 GiB", hint="Split the input into smaller files.")
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, dict_data=_DICTS[version], write_checksum=False,
                                          write_content_size=True, write_dict_id=False)
    header = compressor.compress(raw_header)
    tensor_frame = compressor.compress(raw_tensors) if raw_tensors else b""
    body = PREAMBLE_V4.pack(MAGIC, version, 0, len(header), len(tensor_frame), len(streams)) \
        + header + tensor_frame + streams
    archive.stored_header_bytes = len(header)
    archive.stored_payload_bytes = len(tensor_frame) + len(streams)
    archive.framing_bytes = PREAMBLE_V4.size + TRAILER_SIZES[version]
    return body + _trailer(body, version)


def _trailer(body: bytes, version: int) -> bytes:
    return hashlib.sha256(body).digest()[:TRAILER_SIZES[version]]


def _stream_section(arrays: dict[str, np.ndarray]) -> bytes:
    """Version 4's stream section: chunk_tokens as runs of equal lengths, each stream's residual
    length, all as LEB128 varints, then the residual bytes (already entropy-coded: zstd would only
    add its block headers)."""
    tokens, offsets = arrays["chunk_tokens"].tolist(), arrays["residual_offsets"].tolist()
    lengths = [b - a for a, b in zip(offsets, offsets[1:])]
    return compact.runs_of(tokens) + b"".join(compact.varint(n) for n in lengths) + arrays["residual"].tobytes()


# --- reading ----------------------------------------------------------------------------------


def decode_archive(data: bytes) -> Archive:
    """Parse and validate a whole .memz file (docs/format.md §1, reading order steps 1-9)."""
    if data[:len(compact.MAGIC)] == compact.MAGIC:
        return _decode_compact(data)
    version, header_length, sections = _check_preamble(data)
    end = PREAMBLE.size + header_length + sum(sections)
    trailer = TRAILER_SIZES[version]
    if len(data) < end + trailer:
        raise TruncatedArchiveError(f"archive is truncated: {len(data)} bytes, the preamble says {end + trailer}")
    if len(data) > end + trailer:
        raise TrailingDataError(f"{len(data) - end - trailer} unexpected bytes after the end of the archive")
    if _trailer(data[:end], version) != data[end:]:
        raise ChecksumMismatchError("archive checksum mismatch: its bytes were altered")
    at = PREAMBLE.size + header_length
    header = _parse_header_frame(data[PREAMBLE.size:at], version)
    if version < 4:  # one payload frame: every tensor in one safetensors file
        arrays = _tensors(_decompress(data[at:end], MAX_PAYLOAD_BYTES, "payload", PayloadFormatError, version))
    else:
        tensors_length, streams_length = sections
        arrays = {} if tensors_length == 0 else _tensors(
            _decompress(data[at:at + tensors_length], MAX_PAYLOAD_BYTES, "tensors", PayloadFormatError, version))
        if header.mode == "stored":
            if streams_length:
                raise PayloadFormatError("a stored archive has no stream section")
        else:
            arrays.update(_read_stream_section(data[at + tensors_length:end], header))
    check_arrays(header, arrays)
    return Archive(header, arrays, header_length, sum(sections), PREAMBLE.size + trailer)


def _decode_compact(data: bytes) -> Archive:
    """Versions 5-9 (memzip/format/compact.py)."""
    if len(data) < len(compact.MAGIC) + 1:
        raise TruncatedArchiveError("archive is truncated inside its preamble")
    version = data[len(compact.MAGIC)]
    if version not in compact.VERSIONS:
        raise UnsupportedVersionError(f"archive format version {data[len(compact.MAGIC)]} is not supported: this memzip "
                                      f"reads versions {', '.join(map(str, READABLE_VERSIONS))}")
    header, arrays, sizes, tensors = compact.decode(data, _decompress, version)
    header.format_version = version
    if tensors is not None:
        arrays.update(_tensors(tensors))
    check_arrays(header, arrays)
    return Archive(header, arrays, sizes["header"] - compact.FRAMING, sizes["payload"], compact.FRAMING)


def _tensors(raw: bytes) -> dict[str, np.ndarray]:
    try:
        return st_load(raw)
    # safetensors raises all three; KeyError for a dtype numpy lacks (BF16, F8_*)
    except (SafetensorError, ValueError, TypeError, KeyError) as exc:
        raise PayloadFormatError(f"payload is not a valid safetensors file: {exc}") from None


def _read_stream_section(section: bytes, header: Header) -> dict[str, np.ndarray]:
    """chunk_tokens, residual_offsets and residual from version 4's stream section; every count
    is bounded by the header's (already checked) chunk count or the section's size before use."""
    numbers = _Varints(section)
    chunks = header.text.chunks
    runs = numbers.next(chunks, "the number of runs of chunk lengths")
    counts, lengths = np.zeros(runs, np.int64), np.zeros(runs, np.int32)
    for i in range(runs):
        counts[i] = numbers.next(chunks, "a run's chunk count")
        lengths[i] = numbers.next(MAX_CHUNK_TOKENS, "a chunk's token count")
    if counts.min(initial=1) < 1 or int(counts.sum()) != chunks:
        raise PayloadFormatError(f"the stream section's runs of chunk lengths do not add up to the {chunks} chunks "
                                 "the header names")
    residual_bytes = [numbers.next(len(section), "a residual stream's length") for _ in range(header.groups)]
    residual = section[numbers.position:]
    if sum(residual_bytes) != len(residual):
        raise PayloadFormatError(f"residual streams of {sum(residual_bytes)} bytes in total, but the stream section "
                                 f"holds {len(residual)}")
    return {"chunk_tokens": np.repeat(lengths, counts),
            "residual_offsets": np.cumsum([0] + residual_bytes, dtype=np.int64),
            "residual": np.frombuffer(residual, np.uint8).copy()}


class _Varints:
    """LEB128 unsigned integers read one by one from bytes, each checked against a bound."""

    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def next(self, limit: int, what: str) -> int:
        try:
            value, self.position = compact.parse_varint(self.data, self.position)
        except EOFError:
            raise PayloadFormatError(f"the stream section ends inside {what}") from None
        except OverflowError:
            raise PayloadFormatError(f"the stream section has an overlong integer for {what}") from None
        if value > limit:
            raise PayloadFormatError(f"the stream section gives {what} as {value}, more than {limit}")
        return value


def read_archive(path: Path) -> Archive:
    with open(path, "rb") as f:
        head = f.read(PREAMBLE.size)
        if head[:len(compact.MAGIC)] == compact.MAGIC:  # no lengths up front: the whole file, bounded
            return decode_archive(head + f.read(2 * MAX_PAYLOAD_BYTES + MAX_HEADER_BYTES))
        version, header_length, sections = _check_preamble(head, whole_file=False)
        # Bounded by the limits just checked, plus one byte to detect trailing data.
        rest = f.read(header_length + sum(sections) + TRAILER_SIZES[version] + 1)
    return decode_archive(head + rest)


def read_header(path: Path) -> Header:
    """Only the preamble and header, without the checksum (which needs the whole file): fast,
    for `memzip info`."""
    with open(path, "rb") as f:
        head = f.read(PREAMBLE.size)
        if head[:len(compact.MAGIC)] == compact.MAGIC:
            return read_archive(path).header
        version, header_length, _ = _check_preamble(head, whole_file=False)
        frame = f.read(header_length)
    if len(frame) < header_length:
        raise TruncatedArchiveError("archive is truncated inside its header")
    return _parse_header_frame(frame, version)


def _check_preamble(data: bytes, whole_file: bool = True) -> tuple[int, int, tuple[int, ...]]:
    """(version, header length, the lengths of the sections after the header: the payload in
    versions 2-3, the tensors and the stream section in version 4)."""
    if data[:len(MAGIC)] != MAGIC:
        if len(data) < len(MAGIC) and (MAGIC.startswith(data) or compact.MAGIC.startswith(data)):  # b"" too
            raise TruncatedArchiveError("file is too short to be a .memz archive")
        raise NotAnArchiveError("not a .memz archive (wrong magic bytes)")
    if len(data) < PREAMBLE.size:
        raise TruncatedArchiveError("archive is truncated inside its preamble")
    _, version, flags, header_length, payload_length = PREAMBLE.unpack_from(data)  # v4: its two halves
    if version not in PREAMBLE_VERSIONS:
        older = ("; it was written by memzip 0.1, whose archives store corrections instead of the "
                 "residual stream") if version == 1 else ""
        raise UnsupportedVersionError(
            f"archive format version {version} is not supported: this memzip reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}{older}",
            hint="Extract it with the memzip version that wrote it (`memzip info` names it)." if version < FORMAT_VERSION
            else None)
    if flags != 0:
        raise UnsupportedVersionError(f"archive uses feature flags {flags:#06x} this memzip does not know")
    if not 1 <= header_length <= MAX_HEADER_BYTES:
        raise HeaderTooLargeError(f"declared header length {header_length} is outside 1..{MAX_HEADER_BYTES}")
    if version < 4:
        if not 1 <= payload_length <= MAX_PAYLOAD_BYTES:
            raise HeaderTooLargeError(f"declared payload length {payload_length} is outside 1..{MAX_PAYLOAD_BYTES}")
        return version, header_length, (payload_length,)
    sections = PREAMBLE_V4.unpack_from(data)[4:]
    for name, length in zip(("tensors", "stream section"), sections):
        if length > MAX_PAYLOAD_BYTES:
            raise HeaderTooLargeError(f"declared {name} length {length} is more than {MAX_PAYLOAD_BYTES}")
    if not any(sections):
        raise HeaderTooLargeError("declared tensors and stream section lengths are both 0: the archive holds nothing")
    return version, header_length, sections


def _parse_header_frame(frame: bytes, version: int) -> Header:
    header = parse_header(_decompress(frame, MAX_HEADER_BYTES, "header", HeaderFormatError, version), version)
    header.format_version = version
    return header


def _decompress(frame: bytes, limit: int, what: str, error: type[ContainerError], version: int) -> bytes:
    """Exactly one zstd frame that declares its content size, at most `limit` bytes."""
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError as exc:
        raise error(f"{what} is not a zstd frame: {exc}") from None
    size = params.content_size
    if size == zstandard.CONTENTSIZE_UNKNOWN or size > limit:
        raise error(f"{what} zstd frame must declare its size, at most {limit} bytes (declares {size})")
    try:
        # decompressobj stops at the end of the first frame, which lets us see trailing bytes.
        decompressor = zstandard.ZstdDecompressor() if _DICTS[version] is None else \
            zstandard.ZstdDecompressor(dict_data=_DICTS[version])
        obj = decompressor.decompressobj()
        raw = obj.decompress(frame)
        leftover, done = obj.unused_data, obj.eof
    except zstandard.ZstdError as exc:
        raise error(f"{what} does not decompress: {exc}") from None
    if not done:
        raise error(f"{what} zstd frame is incomplete")
    if leftover:
        raise error(f"{len(leftover)} bytes after the {what}'s zstd frame")
    if len(raw) != size:
        raise error(f"{what} decompressed to {len(raw)} bytes, its frame declares {size}")
    return raw


# --- payload validation -----------------------------------------------------------------------


def expected_tensors(header: Header) -> dict[str, tuple[Any, tuple]]:
    """Name -> (dtype, shape) of every tensor the header implies; None in a shape is free."""
    if header.mode == "stored":
        return {"stored": (np.uint8, (header.text.bytes,))}
    C, G = header.text.chunks, header.groups
    expected: dict[str, tuple[Any, tuple]] = {
        "chunk_tokens": (np.int32, (C,)),
        "residual": (np.uint8, (None,)),
        "residual_offsets": (np.int64, (G + 1,)),
    }
    if not header.decode.is_exact:  # float-ranks: a digest per group of chunks decoded together
        expected["group_digests"] = (np.uint8, (G, 8))
    layout = header.vectors
    if layout.mem_vectors:
        M, D = layout.mem_vectors, layout.stored_dims(header.model.d_model)
        expected["vectors"] = (storage.numpy_dtype(layout.dtype), (C, M, storage.stored_width(layout.dtype, D)))
        if storage.has_scales(layout.dtype):
            expected["vector_scales"] = (np.float32, (C, M))
    return expected


def check_arrays(header: Header, arrays: dict[str, np.ndarray]) -> None:
    """Check tensor names, dtypes, shapes and value ranges against the header (format.md §3)."""
    expected = expected_tensors(header)
    missing = set(expected) - set(arrays)
    extra = set(arrays) - set(expected) - (set() if header.mode == "stored" else set(TEXT_TENSORS))
    if missing or extra:
        raise PayloadFormatError(f"payload tensors differ from the spec (missing {sorted(missing)}, "
                                 f"unexpected {sorted(extra)})")
    for name, (dtype, shape) in {**expected, **{k: v for k, v in TEXT_TENSORS.items() if k in arrays}}.items():
        a = arrays[name]
        if a.dtype != np.dtype(dtype):
            raise PayloadFormatError(f"payload tensor {name} has dtype {a.dtype}, expected {np.dtype(dtype)}")
        if a.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, a.shape)):
            shown = tuple("any" if s is None else s for s in shape)
            raise PayloadFormatError(f"payload tensor {name} has shape {a.shape}, expected {shown}")
    if header.mode == "stored":
        return
    tokens = arrays["chunk_tokens"]
    if tokens.size and (tokens.min() < 1 or tokens.max() > MAX_CHUNK_TOKENS):
        raise PayloadFormatError("chunk_tokens has a chunk outside 1..2^20 tokens")
    if int(tokens.astype(np.int64).sum()) != header.text.tokens:
        raise PayloadFormatError("chunk_tokens does not add up to text.tokens")
    offsets = arrays["residual_offsets"]
    if offsets[0] != 0 or offsets[-1] != arrays["residual"].shape[0] or np.any(np.diff(offsets) < 0):
        raise PayloadFormatError("residual_offsets must start at 0, never decrease and end at the residual's length")
    _check_text_codec(arrays)
    _check_vectors(header, arrays)


def _check_text_codec(arrays: dict[str, np.ndarray]) -> None:
    esc_pos, esc_bytes = _tensor(arrays, "escape_positions"), _tensor(arrays, "escape_bytes")
    if esc_bytes.shape != esc_pos.shape:
        raise PayloadFormatError("escape_positions and escape_bytes must have equal length")
    if esc_pos.size and (esc_pos.min() < 0 or np.any(np.diff(esc_pos) <= 0) or esc_bytes.min() < 0x80):
        raise PayloadFormatError("escapes must have increasing positions and bytes 0x80-0xFF")
    ops, text = _tensor(arrays, "patch_ops"), _tensor(arrays, "patch_text")
    if ops.size:
        # each size is bounded by len(patch_text) before summing, so the int64 sum cannot wrap
        if ops.min() < 0 or ops[:, 2].max() > text.shape[0] or int(ops[:, 2].sum()) != text.shape[0]:
            raise PayloadFormatError("patch_ops sizes are negative or disagree with patch_text")
        # next line < line + removed, rearranged so that no int64 sum can wrap (all values >= 0)
        if np.any(ops[1:, 0] - ops[:-1, 1] < ops[:-1, 0]):
            raise PayloadFormatError("patch_ops overlap or are not sorted")
    elif text.shape[0]:
        raise PayloadFormatError("patch_text is not empty but there are no patch_ops")


def _check_vectors(header: Header, arrays: dict[str, np.ndarray]) -> None:
    layout = header.vectors
    if not layout.mem_vectors or not arrays["vectors"].size or not storage.has_scales(layout.dtype):
        return
    if not np.all(np.isfinite(arrays["vector_scales"])):
        raise PayloadFormatError("vector_scales has non-finite values")
    limit = storage.levels(layout.dtype)
    q = storage.unpack_integers(arrays["vectors"], layout.dtype, layout.stored_dims(header.model.d_model))
    if q.min() < -limit or q.max() > limit:
        raise PayloadFormatError(f"vectors has {layout.dtype} values outside -{limit}..{limit}")
