"""Read and write `.memz` files. The specification is docs/format.md; this follows it step by step.

The container knows nothing about models or torch modules: it turns an `Archive` (a header
dataclass plus named numpy arrays) into bytes and back, and refuses anything malformed with the
specific `ContainerError` the spec names. Every size is bounded before anything is allocated.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zstandard
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from memzip import quantize
from memzip.errors import (
    ChecksumMismatchError,
    HeaderFormatError,
    HeaderTooLargeError,
    NotAnArchiveError,
    PayloadFormatError,
    TrailingDataError,
    TruncatedArchiveError,
    UnsupportedVersionError,
)

MAGIC = b"\x89MEMZ\r\n\x1a"
FORMAT_VERSION = 1
PREAMBLE = struct.Struct("<8sHHIQ")  # magic, version, flags, header_length, payload_length
TRAILER_SIZE = 32

MAX_HEADER_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 1 << 30
MAX_CHUNKS = 1 << 24
MAX_MEM_VECTORS = 1024
MAX_D_MODEL = 1 << 16
MAX_CHUNK_TOKENS = 1 << 20

ZSTD_LEVEL = 19

# Storage dtypes of the vectors (memzip/quantize.py). No bfloat16: numpy (and so
# safetensors.numpy) has no such dtype, and float16 holds embedding-scale values more precisely.
VECTOR_DTYPES = quantize.STORAGE_DTYPES
MODEL_DTYPES = ("float32", "bfloat16", "float16")
MODEL_SOURCES = ("hub", "dir", "gguf")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# --- header dataclasses: one per JSON object of docs/format.md §2 ------------------------------


@dataclass
class ModelIdentity:
    """Which model the vectors belong to, and fingerprints that prove it is the same one."""

    name: str  # what the user typed after -m (an alias, hub id, path)
    source: str  # "hub", "dir" or "gguf"
    hub_id: str | None
    revision: str | None
    file: str | None  # GGUF file or local directory
    architecture: str
    d_model: int
    vocab_size: int
    weights_sha256: str
    tokenizer_sha256: str


@dataclass
class DecodeSettings:
    """What the greedy decode depends on; extraction must reproduce these exactly."""

    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    batch_size: int = 8  # chunk groups decoded together (batch shape can change low bits)
    device: str = "cpu"
    torch_version: str = ""
    transformers_version: str = ""
    prefix_tokens: list[int] = field(default_factory=list)  # fixed tokens before the [mem] vectors


@dataclass
class VectorLayout:
    mem_vectors: int = 1
    dtype: str = "float16"
    # Stored as codes of this many numbers, each vector = code @ quantize.basis(code_dims, d_model);
    # None: the vectors themselves are stored.
    code_dims: int | None = None

    def stored_dims(self, d_model: int) -> int:
        return self.code_dims or d_model


@dataclass
class TextInfo:
    bytes: int
    sha256: str
    tokens: int
    chunks: int
    name: str | None = None  # base name of the original file, restored by default on extract


@dataclass
class Header:
    memzip_version: str
    model: ModelIdentity
    decode: DecodeSettings
    vectors: VectorLayout
    text: TextInfo
    encode: dict[str, Any] = field(default_factory=dict)  # how it was made; informational
    payload_bytes: int = 0  # set by write_archive

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass
class Archive:
    """A parsed .memz: the header and the payload arrays (names and shapes as in format.md §3)."""

    header: Header
    arrays: dict[str, np.ndarray]


# --- writing ----------------------------------------------------------------------------------


def encode_archive(archive: Archive) -> bytes:
    """Serialize an archive. The arrays are validated against the header first, so a writer bug
    cannot produce a file the reader would refuse."""
    _check_arrays(archive.header, archive.arrays)
    raw = st_save({name: np.ascontiguousarray(a) for name, a in archive.arrays.items()})
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise HeaderTooLargeError(f"payload of {len(raw)} bytes exceeds the format limit of 1 GiB",
                                  hint="Split the input into smaller files.")
    archive.header.payload_bytes = len(raw)
    header = archive.header.to_json()
    if len(header) > MAX_HEADER_BYTES:
        raise HeaderTooLargeError(f"header of {len(header)} bytes exceeds the 1 MiB limit")
    payload = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True,
                                       write_content_size=True).compress(raw)
    body = PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, len(header), len(payload)) + header + payload
    return body + hashlib.sha256(body).digest()


# --- reading ----------------------------------------------------------------------------------


def decode_archive(data: bytes) -> Archive:
    """Parse and validate a whole .memz file (docs/format.md §1, reading order steps 1-9)."""
    header_length, payload_length = _check_preamble(data)
    end = PREAMBLE.size + header_length + payload_length
    if len(data) < end + TRAILER_SIZE:
        raise TruncatedArchiveError(
            f"archive is truncated: {len(data)} bytes, the preamble says {end + TRAILER_SIZE}")
    if len(data) > end + TRAILER_SIZE:
        raise TrailingDataError(
            f"{len(data) - end - TRAILER_SIZE} unexpected bytes after the end of the archive")
    if hashlib.sha256(data[:end]).digest() != data[end:]:
        raise ChecksumMismatchError("archive checksum mismatch: its bytes were altered")
    header = parse_header(data[PREAMBLE.size:PREAMBLE.size + header_length])
    raw = _decompress_payload(data[PREAMBLE.size + header_length:end], header.payload_bytes)
    try:
        arrays = st_load(raw)
    # safetensors raises all three; KeyError for a dtype numpy lacks (BF16, F8_*)
    except (SafetensorError, ValueError, TypeError, KeyError) as exc:
        raise PayloadFormatError(f"payload is not a valid safetensors file: {exc}") from None
    _check_arrays(header, arrays)
    return Archive(header, arrays)


def read_archive(path: Path) -> Archive:
    return decode_archive(_read_bytes(path))


def read_header(path: Path) -> Header:
    """Read only the preamble and header (no checksum, no payload): fast, for `memzip info`."""
    with open(path, "rb") as f:
        head = f.read(PREAMBLE.size)
        header_length, payload_length = _check_preamble(head, whole_file=False)
        header_bytes = f.read(header_length)
    if len(header_bytes) < header_length:
        raise TruncatedArchiveError("archive is truncated inside its header")
    return parse_header(header_bytes)


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(PREAMBLE.size)
        header_length, payload_length = _check_preamble(head, whole_file=False)
        # Bounded by the limits just checked: at most 1 MiB + 1 GiB + 32 bytes, plus one byte
        # to detect trailing data.
        rest = f.read(header_length + payload_length + TRAILER_SIZE + 1)
    return head + rest


def _check_preamble(data: bytes, whole_file: bool = True) -> tuple[int, int]:
    if data[:len(MAGIC)] != MAGIC:
        if len(data) < len(MAGIC) and MAGIC.startswith(data):  # b"" too: a prefix of the magic
            raise TruncatedArchiveError("file is too short to be a .memz archive")
        raise NotAnArchiveError("not a .memz archive (wrong magic bytes)")
    if len(data) < PREAMBLE.size:
        raise TruncatedArchiveError("archive is truncated inside its preamble")
    _, version, flags, header_length, payload_length = PREAMBLE.unpack_from(data)
    if version != FORMAT_VERSION:
        raise UnsupportedVersionError(
            f"archive format version {version} is not supported (this memzip reads version "
            f"{FORMAT_VERSION})")
    if flags != 0:
        raise UnsupportedVersionError(f"archive uses feature flags {flags:#06x} this memzip does not know")
    if not 1 <= header_length <= MAX_HEADER_BYTES:
        raise HeaderTooLargeError(f"declared header length {header_length} is outside 1..{MAX_HEADER_BYTES}")
    if not 1 <= payload_length <= MAX_PAYLOAD_BYTES:
        raise HeaderTooLargeError(f"declared payload length {payload_length} is outside 1..{MAX_PAYLOAD_BYTES}")
    return header_length, payload_length


def _decompress_payload(payload: bytes, expected: int) -> bytes:
    try:
        params = zstandard.get_frame_parameters(payload)
    except zstandard.ZstdError as exc:
        raise PayloadFormatError(f"payload is not a zstd frame: {exc}") from None
    if params.content_size != expected:
        raise PayloadFormatError(
            f"payload declares {params.content_size} bytes, the header says {expected}")
    dctx = zstandard.ZstdDecompressor()
    try:
        # decompressobj stops at the end of the first frame, which lets us see trailing bytes.
        obj = dctx.decompressobj()
        raw = obj.decompress(payload)
        leftover = obj.unused_data
        done = obj.eof
    except zstandard.ZstdError as exc:
        raise PayloadFormatError(f"payload does not decompress: {exc}") from None
    if not done:
        raise PayloadFormatError("payload zstd frame is incomplete")
    if leftover:
        raise PayloadFormatError(f"{len(leftover)} bytes after the payload's zstd frame")
    if len(raw) != expected:
        raise PayloadFormatError(f"payload decompressed to {len(raw)} bytes, expected {expected}")
    return raw


# --- header validation ------------------------------------------------------------------------


def parse_header(raw: bytes) -> Header:
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    # ValueError also covers integers beyond Python's int-digits limit (json raises it as is).
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise HeaderFormatError(f"header is not valid UTF-8 JSON: {exc}") from None
    fields = _Fields(obj, "header")
    model = fields.obj("model")
    decode = fields.obj("decode")
    vectors = fields.obj("vectors")
    text = fields.obj("text")
    header = Header(
        memzip_version=fields.str("memzip_version"),
        payload_bytes=fields.int("payload_bytes", 0, MAX_PAYLOAD_BYTES),
        encode=fields.raw_obj("encode"),
        model=ModelIdentity(
            name=model.str("name"),
            source=model.choice("source", MODEL_SOURCES),
            hub_id=model.str("hub_id", nullable=True),
            revision=model.str("revision", nullable=True),
            file=model.str("file", nullable=True),
            architecture=model.str("architecture"),
            d_model=model.int("d_model", 1, MAX_D_MODEL),
            vocab_size=model.int("vocab_size", 1, 1 << 31),
            weights_sha256=model.hex64("weights_sha256"),
            tokenizer_sha256=model.hex64("tokenizer_sha256"),
        ),
        decode=DecodeSettings(
            dtype=decode.choice("dtype", MODEL_DTYPES),
            attn_implementation=decode.str("attn_implementation"),
            batch_size=decode.int("batch_size", 1, 1 << 16),
            device=decode.str("device"),
            torch_version=decode.str("torch_version"),
            transformers_version=decode.str("transformers_version"),
            prefix_tokens=decode.token_list("prefix_tokens", vocab=model.int("vocab_size", 1, 1 << 31)),
        ),
        vectors=VectorLayout(
            mem_vectors=vectors.int("mem_vectors", 1, MAX_MEM_VECTORS),
            dtype=vectors.choice("dtype", tuple(VECTOR_DTYPES)),
            code_dims=vectors.optional_int("code_dims", 1, MAX_D_MODEL),
        ),
        text=TextInfo(
            bytes=text.int("bytes", 0, 1 << 50),
            sha256=text.hex64("sha256"),
            tokens=text.int("tokens", 0, MAX_CHUNKS * MAX_CHUNK_TOKENS),
            chunks=text.int("chunks", 0, MAX_CHUNKS),
            name=text.file_name("name"),
        ),
    )
    return header


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")  # a lone surrogate (JSON "\\ud800") has no file-name form
        return True
    except UnicodeEncodeError:
        return False


def _reject_constant(name: str):
    """NaN and Infinity are not JSON; Python's parser accepts them unless told otherwise."""
    raise ValueError(f"{name} is not valid JSON")


class _Fields:
    """Typed access to one JSON object, raising HeaderFormatError that names the field."""

    def __init__(self, obj: Any, where: str):
        if not isinstance(obj, dict):
            raise HeaderFormatError(f"{where} must be a JSON object")
        self.obj_, self.where = obj, where

    def _get(self, key: str) -> Any:
        if key not in self.obj_:
            raise HeaderFormatError(f"header field {self.where}.{key} is missing")
        return self.obj_[key]

    def _bad(self, key: str, what: str) -> HeaderFormatError:
        return HeaderFormatError(f"header field {self.where}.{key} must be {what}")

    def obj(self, key: str) -> _Fields:
        return _Fields(self._get(key), f"{self.where}.{key}")

    def raw_obj(self, key: str) -> dict:
        value = self._get(key)
        if not isinstance(value, dict):
            raise self._bad(key, "an object")
        return value

    def str(self, key: str, nullable: bool = False) -> Any:
        value = self._get(key)
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self._bad(key, "a string" + (" or null" if nullable else ""))
        return value

    def int(self, key: str, low: int, high: int) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self._bad(key, f"an integer in {low}..{high}")
        return value

    def optional_int(self, key: str, low: int, high: int) -> int | None:
        """An integer in low..high, or absent / null."""
        if self.obj_.get(key) is None:
            return None
        return self.int(key, low, high)

    def choice(self, key: str, allowed: tuple) -> str:
        value = self._get(key)
        if value not in allowed:
            raise self._bad(key, "one of " + ", ".join(allowed))
        return value

    def token_list(self, key: str, vocab: int) -> list[int]:
        """Optional list of at most 64 token ids below `vocab` (absent means empty)."""
        value = self.obj_.get(key, [])
        if (not isinstance(value, list) or len(value) > 64
                or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < vocab for t in value)):
            raise self._bad(key, f"a list of at most 64 token ids below {vocab}")
        return value

    def file_name(self, key: str) -> str | None:
        """Optional plain base name: no path separators, NUL, or dot-only names."""
        value = self.obj_.get(key)
        if value is None:
            return None
        if (not isinstance(value, str) or not value or len(value) > 255 or value in (".", "..")
                or any(c in value for c in "/\\\0") or not _encodable(value)):
            raise self._bad(key, "a plain file name or null")
        return value

    def hex64(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not _HEX64.fullmatch(value):  # `$` alone allows a final \n
            raise self._bad(key, "64 lowercase hex digits")
        return value


# --- payload validation -----------------------------------------------------------------------


def _check_arrays(header: Header, arrays: dict[str, np.ndarray]) -> None:
    """Check tensor names, dtypes, shapes and value ranges against the header (format.md §3)."""
    C, M = header.text.chunks, header.vectors.mem_vectors
    D = header.vectors.stored_dims(header.model.d_model)
    expected: dict[str, tuple[Any, tuple | None]] = {
        "vectors": (quantize.numpy_dtype(header.vectors.dtype), (C, M, quantize.stored_width(header.vectors.dtype, D))),
        "chunk_tokens": (np.int32, (C,)),
        "chunk_digests": (np.uint8, (C, 8)),
        "correction_offsets": (np.int64, (C + 1,)),
        "correction_positions": (np.int32, None),
        "correction_tokens": (np.int32, None),
        "escape_positions": (np.int64, None),
        "escape_bytes": (np.uint8, None),
        "patch_ops": (np.int64, None),
        "patch_text": (np.uint8, None),
    }
    if quantize.has_scales(header.vectors.dtype):
        expected["vector_scales"] = (np.float32, (C, M))
    if set(arrays) != set(expected):
        missing, extra = set(expected) - set(arrays), set(arrays) - set(expected)
        raise PayloadFormatError(f"payload tensors differ from the spec (missing {sorted(missing)}, "
                                 f"unexpected {sorted(extra)})")
    for name, (dtype, shape) in expected.items():
        a = arrays[name]
        if a.dtype != np.dtype(dtype):
            raise PayloadFormatError(f"payload tensor {name} has dtype {a.dtype}, expected {np.dtype(dtype)}")
        if shape is not None and a.shape != shape:
            raise PayloadFormatError(f"payload tensor {name} has shape {a.shape}, expected {shape}")

    tokens = arrays["chunk_tokens"]
    if C and (tokens.min() < 1 or tokens.max() > MAX_CHUNK_TOKENS):
        raise PayloadFormatError("chunk_tokens has a chunk outside 1..2^20 tokens")
    if int(tokens.astype(np.int64).sum()) != header.text.tokens:
        raise PayloadFormatError("chunk_tokens does not add up to text.tokens")

    offsets, positions, corr_tokens = (arrays[n] for n in
                                       ("correction_offsets", "correction_positions", "correction_tokens"))
    K = positions.shape[0] if positions.ndim == 1 else -1
    if positions.ndim != 1 or corr_tokens.shape != (K,):
        raise PayloadFormatError("correction_positions and correction_tokens must be 1-D of equal length")
    if offsets[0] != 0 or offsets[-1] != K or np.any(np.diff(offsets) < 0):
        raise PayloadFormatError("correction_offsets must start at 0, never decrease and end at the correction count")
    if K:
        if corr_tokens.min() < 0 or corr_tokens.max() >= header.model.vocab_size:
            raise PayloadFormatError("a correction token is outside the model's vocabulary")
        chunk_of = np.repeat(np.arange(C), np.diff(offsets))
        if positions.min() < 0 or np.any(positions >= tokens[chunk_of]):
            raise PayloadFormatError("a correction position is outside its chunk")
        same_chunk = chunk_of[1:] == chunk_of[:-1]
        if np.any(np.diff(positions)[same_chunk] <= 0):
            raise PayloadFormatError("correction positions must increase within a chunk")

    esc_pos, esc_bytes = arrays["escape_positions"], arrays["escape_bytes"]
    if esc_pos.ndim != 1 or esc_bytes.shape != esc_pos.shape:
        raise PayloadFormatError("escape_positions and escape_bytes must be 1-D of equal length")
    if esc_pos.size and (esc_pos.min() < 0 or np.any(np.diff(esc_pos) <= 0) or esc_bytes.min() < 0x80):
        raise PayloadFormatError("escapes must have increasing positions and bytes 0x80-0xFF")

    ops, text = arrays["patch_ops"], arrays["patch_text"]
    if ops.ndim != 2 or ops.shape[1] != 3 or text.ndim != 1:
        raise PayloadFormatError("patch_ops must have shape [O, 3] and patch_text be 1-D")
    if ops.size:
        # each size is bounded by len(patch_text) before summing, so the int64 sum cannot wrap
        if ops.min() < 0 or ops[:, 2].max() > text.shape[0] or int(ops[:, 2].sum()) != text.shape[0]:
            raise PayloadFormatError("patch_ops sizes are negative or disagree with patch_text")
        # next line < line + removed, rearranged so that no int64 sum can wrap (all values >= 0)
        if np.any(ops[1:, 0] - ops[:-1, 1] < ops[:-1, 0]):
            raise PayloadFormatError("patch_ops overlap or are not sorted")
    elif text.shape[0]:
        raise PayloadFormatError("patch_text is not empty but there are no patch_ops")
    _check_vectors(header, arrays)


def _check_vectors(header: Header, arrays: dict[str, np.ndarray]) -> None:
    dtype, vectors = header.vectors.dtype, arrays["vectors"]
    if not vectors.size:
        return
    if quantize.has_scales(dtype):
        if not np.all(np.isfinite(arrays["vector_scales"])):
            raise PayloadFormatError("vector_scales has non-finite values")
        limit = quantize.levels(dtype)
        q = quantize.unpack_integers(vectors, dtype, header.vectors.stored_dims(header.model.d_model))
        if q.min() < -limit or q.max() > limit:
            raise PayloadFormatError(f"vectors has {dtype} values outside -{limit}..{limit}")
