"""The archive header (docs/format.md §2): what a reader needs to decode, as small dataclasses,
and the one parser that turns JSON into them, naming the field that is wrong.

Format 3 (memzip 0.3) adds to format 2: the archive's `mode` (the model coded the text, or the
bytes are stored as they are), the decode *engine* (`exact-llama-1`: the exact integer forward
whose probabilities an arithmetic coder uses directly; `float-ranks`: format 2's float forward
with rank-and-hash choices under a margin) with the exact engine's settings, and the original
file's permission bits and modification time."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from memzip.errors import HeaderFormatError
from memzip.format.vectors import STORAGE_DTYPES

MAX_CHUNKS = 1 << 24
MAX_MEM_VECTORS = 1024
MAX_D_MODEL = 1 << 16
MAX_VOCAB = 1 << 31
MAX_CHUNK_TOKENS = 1 << 20
MAX_LAYOUT_TOKENS = 64  # fixed tokens before or after the [mem] vectors
MAX_MARGIN = 1000.0
MAX_BATCH = 1 << 16

MAX_WINDOW = 1 << 20
MAX_SETTING = 64  # every exact-engine and coding setting is a bit count or a small integer

MODEL_DTYPES = ("float32", "bfloat16", "float16")
MODEL_SOURCES = ("hub", "dir", "gguf")
MODES = ("model", "stored")  # stored: the original bytes in the payload (zstd-framed), no model
FLOAT_RANKS = "float-ranks"  # format 2's engine
EXACT_ENGINES = ("exact-llama-1",)
CODING_KINDS = ("distribution", "greedy")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class ModelIdentity:
    """Which model the archive needs, and fingerprints that prove a loaded model is that one."""

    name: str  # what the user gave -m (an alias, hub id, path)
    source: str  # "hub", "dir" or "gguf"
    hub_id: str | None
    revision: str | None
    file: str | None  # GGUF file or local directory
    architecture: str
    d_model: int
    vocab_size: int
    weights_sha256: str  # format 5 with the default settings: "" (its fingerprint64 stands for both)
    tokenizer_sha256: str
    # format 5: the first 8 bytes of SHA-256 over the two fingerprints above (memzip/format/compact.py)
    fingerprint64: str | None = None


@dataclass
class DecodeSettings:
    """What decoding depends on; extraction reproduces these exactly."""

    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    # float-ranks: chunks decoded together (the batch shape can change low-order bits); the
    # exact engines decode any batch the same, and record None.
    batch_size: int | None = 8
    # float-ranks: choices tolerate logits that differ from the compressor's by less than
    # margin / 2 (memzip/ranks/ranking.py); None for the exact engines, which need no margin.
    margin: float | None = 0.01
    # fed before the [mem] vectors; None (formats 5-9, a profile): the model's document-start token
    prefix_tokens: list[int] | None = field(default_factory=list)
    infix_tokens: list[int] = field(default_factory=list)  # fed after them, before the text
    # Where the archive was made (informational: other hardware is checked by the digests).
    device: str = "cpu"
    torch_version: str = ""
    transformers_version: str = ""
    engine: str = FLOAT_RANKS  # how logits are computed and the text is coded
    window: int | None = None  # exact: positions attention sees besides the first (the sink)
    exact: dict | None = None  # exact: the engine's bit widths (memzip/exact/model.ExactSettings)
    coding: dict | None = None  # exact: how logits become frequencies (memzip/exact/coding.py) and "kind"
    # formats 5-9: the number of the profile whose settings these are (memzip/format/compact.py
    # PROFILES) when the streams start at the model's document-start token; format 9 writes its
    # profile 8 (the defaults) as no bytes, profiles 1-7 and 9-12 as one
    profile: int | None = None

    @property
    def is_exact(self) -> bool:
        return self.engine in EXACT_ENGINES


@dataclass
class VectorLayout:
    mem_vectors: int = 0  # per chunk; 0: the model codes the text alone (no vectors stored)
    dtype: str = "float16"
    # Rows are codes of this many numbers, each vector = code @ vectors.basis(code_dims, d_model);
    # None: rows are the vectors.
    code_dims: int | None = None

    def stored_dims(self, d_model: int) -> int:
        return self.code_dims or d_model


@dataclass
class TextInfo:
    bytes: int
    sha256: str  # of the original, hex: whole (64 digits), or its first 8 bytes (16; format 5's default)
    tokens: int
    chunks: int  # float-ranks: chunks; exact engines: streams (or chunks, with vectors)
    name: str | None = None  # base name of the original file, restored by default on extract
    permissions: int | None = None  # format 3: the original's permission bits (st_mode & 0o7777)
    mtime_ns: int | None = None  # format 3: its modification time, nanoseconds since the epoch
    # format 5: "crlf" when every line of the original ends in CR LF and the model coded it with
    # LF alone (memzip/textcodec.py crlf_as_lf): extraction puts the CRs back before the check
    line_endings: str | None = None


@dataclass
class Header:
    memzip_version: str
    model: ModelIdentity | None  # None when stored
    decode: DecodeSettings | None  # None when stored
    vectors: VectorLayout
    text: TextInfo
    # How the archive was made: recipe, chunking, baselines, cross-entropies. Informational:
    # `memzip info` and `memzip stats` show it, decoding never reads it.
    encode: dict[str, Any] = field(default_factory=dict)
    mode: str = "model"
    format_version: int = field(default=0, compare=False)  # of the file it was read from (0: not read); not written

    def to_json(self) -> bytes:
        fields = asdict(self)
        del fields["format_version"]
        # format 5's fields exist only in its binary header: a JSON header (formats 2-4) keeps the
        # exact bytes earlier memzip versions wrote and read
        if fields["model"] is not None and fields["model"]["fingerprint64"] is None:
            del fields["model"]["fingerprint64"]
        if fields["decode"] is not None and fields["decode"]["profile"] is None:
            del fields["decode"]["profile"]
        if fields["text"]["line_endings"] is None:
            del fields["text"]["line_endings"]
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")

    @property
    def chunks_per_unit(self) -> int:
        """Chunks that decode together, as one unit of work (a torchrun rank's share, a journal
        entry): float-ranks, a chunk group; the exact engine, a group of streams sharing one
        adaptive bias (format 8), else one stream or chunk."""
        if self.decode is None:
            return 1
        return self.decode.batch_size or max(1, (self.decode.coding or {}).get("bias_streams", 1))

    @property
    def units(self) -> int:
        return -(-self.text.chunks // self.chunks_per_unit)

    @property
    def groups(self) -> int:
        """float-ranks: chunk groups decoded together (the last may be partial); exact engines
        and stored archives: one residual stream per chunk or stream."""
        if self.decode is None or self.decode.batch_size is None:
            return self.text.chunks
        return -(-self.text.chunks // self.decode.batch_size)


def parse_header(raw: bytes, version: int = 3) -> Header:
    """Parse a header of format `version` (2, 3 or 4; version 4 kept 3's header)."""
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    # ValueError also covers integers beyond Python's int-digits limit (json raises it as is).
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise HeaderFormatError(f"header is not valid UTF-8 JSON: {exc}") from None
    fields = _Fields(obj, "header")
    mode = fields.choice("mode", MODES) if version >= 3 else "model"
    stored = mode == "stored"
    vectors, text = fields.obj("vectors"), fields.obj("text")
    model = None if stored and fields.is_null("model") else fields.obj("model")
    decode = None if stored and fields.is_null("decode") else fields.obj("decode")
    if stored and (model is not None or decode is not None):
        raise HeaderFormatError("a stored archive has no model or decode settings (header fields model, decode)")
    vocab_size = model.int("vocab_size", 1, MAX_VOCAB) if model else 1
    return Header(
        memzip_version=fields.str("memzip_version"),
        encode=fields.raw_obj("encode"),
        mode=mode,
        model=None if model is None else ModelIdentity(
            name=model.str("name"),
            source=model.choice("source", MODEL_SOURCES),
            hub_id=model.str("hub_id", nullable=True),
            revision=model.str("revision", nullable=True),
            file=model.str("file", nullable=True),
            architecture=model.str("architecture"),
            d_model=model.int("d_model", 1, MAX_D_MODEL),
            vocab_size=vocab_size,
            weights_sha256=model.hex64("weights_sha256"),
            tokenizer_sha256=model.hex64("tokenizer_sha256"),
        ),
        decode=None if decode is None else _decode_settings(decode, vocab_size, version),
        vectors=VectorLayout(
            mem_vectors=vectors.int("mem_vectors", 0, MAX_MEM_VECTORS),
            dtype=vectors.choice("dtype", STORAGE_DTYPES),
            code_dims=vectors.optional_int("code_dims", 1, MAX_D_MODEL),
        ),
        text=TextInfo(
            bytes=text.int("bytes", 0, 1 << 50),
            sha256=text.hex64("sha256"),
            tokens=text.int("tokens", 0, MAX_CHUNKS * MAX_CHUNK_TOKENS),
            chunks=text.int("chunks", 0, MAX_CHUNKS),
            name=text.file_name("name"),
            permissions=text.optional_int("permissions", 0, 0o7777),
            mtime_ns=text.optional_int("mtime_ns", -(1 << 62), 1 << 62),
        ),
    )


def _decode_settings(decode: "_Fields", vocab_size: int, version: int) -> DecodeSettings:
    engine = decode.choice("engine", (FLOAT_RANKS,) + EXACT_ENGINES) if version >= 3 else FLOAT_RANKS
    exact = engine in EXACT_ENGINES
    return DecodeSettings(
        dtype=decode.choice("dtype", MODEL_DTYPES),
        attn_implementation=decode.str("attn_implementation"),
        batch_size=None if exact else decode.int("batch_size", 1, MAX_BATCH),
        margin=None if exact else decode.number("margin", 0.0, MAX_MARGIN),
        prefix_tokens=decode.token_list("prefix_tokens", vocab_size),
        infix_tokens=decode.token_list("infix_tokens", vocab_size),
        device=decode.str("device"),
        torch_version=decode.str("torch_version"),
        transformers_version=decode.str("transformers_version"),
        engine=engine,
        window=decode.int("window", 1, MAX_WINDOW) if exact else None,
        exact=decode.settings("exact") if exact else None,
        coding=decode.settings("coding", kinds=CODING_KINDS) if exact else None,
    )


def _reject_constant(name: str):
    """NaN and Infinity are not JSON; Python's parser accepts them unless told otherwise."""
    raise ValueError(f"{name} is not valid JSON")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")  # a lone surrogate (JSON "\\ud800") has no file-name form
        return True
    except UnicodeEncodeError:
        return False


class _Fields:
    """Typed access to one JSON object, raising HeaderFormatError that names the field."""

    def __init__(self, obj: Any, where: str):
        if not isinstance(obj, dict):
            raise HeaderFormatError(f"{where} must be a JSON object")
        self._obj, self.where = obj, where

    def _get(self, key: str) -> Any:
        if key not in self._obj:
            raise HeaderFormatError(f"header field {self.where}.{key} is missing")
        return self._obj[key]

    def _bad(self, key: str, what: str) -> HeaderFormatError:
        return HeaderFormatError(f"header field {self.where}.{key} must be {what}")

    def obj(self, key: str) -> _Fields:
        return _Fields(self._get(key), f"{self.where}.{key}")

    def is_null(self, key: str) -> bool:
        return self._get(key) is None

    def settings(self, key: str, kinds: tuple = ()) -> dict:
        """An object of small non-negative integers (bit widths), plus a "kind" string from
        `kinds` when given. Which keys must be there is the engine's to check."""
        value = self.raw_obj(key)
        for name, item in value.items():
            if name == "kind" and kinds:
                if item not in kinds:
                    raise self._bad(key, "an object whose kind is one of " + ", ".join(kinds))
            elif isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= MAX_SETTING:
                raise self._bad(key, f"an object of integers in 0..{MAX_SETTING}")
        return value

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

    def number(self, key: str, low: float, high: float) -> float:
        value = self._get(key)
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or not low <= value <= high):
            raise self._bad(key, f"a number in {low:g}..{high:g}")
        return float(value)

    def optional_int(self, key: str, low: int, high: int) -> int | None:
        """An integer in low..high, or absent / null."""
        if self._obj.get(key) is None:
            return None
        return self.int(key, low, high)

    def choice(self, key: str, allowed: tuple) -> str:
        value = self._get(key)
        if value not in allowed:
            raise self._bad(key, "one of " + ", ".join(allowed))
        return value

    def token_list(self, key: str, vocab: int) -> list[int]:
        """A list of at most MAX_LAYOUT_TOKENS token ids below `vocab`."""
        value = self._get(key)
        if (not isinstance(value, list) or len(value) > MAX_LAYOUT_TOKENS
                or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < vocab for t in value)):
            raise self._bad(key, f"a list of at most {MAX_LAYOUT_TOKENS} token ids below {vocab}")
        return value

    def file_name(self, key: str) -> str | None:
        """Optional plain base name: no path separators, NUL, or dot-only names."""
        value = self._obj.get(key)
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
