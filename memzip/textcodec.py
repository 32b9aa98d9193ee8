"""Bytes <-> tokens, exactly, for any file and any tokenizer.

A tokenizer works on Unicode text and may not give back what it was given (invalid UTF-8 has no
text form; some tokenizers normalize, add a prefix space, or map rare characters to <unk>).
memzip never trusts it blindly. Encoding goes through three layers, each exactly invertible:

1. bytes -> str with UTF-8 and `surrogateescape`: each byte that is not valid UTF-8 becomes a
   lone surrogate U+DC80..U+DCFF. Those are removed from the text and kept as *escapes*
   (position, byte), because tokenizers cannot encode lone surrogates.
2. str -> tokens with the tokenizer, and tokens -> str back with its raw decoder (no
   "clean up tokenization spaces", special tokens kept).
3. Whatever the round trip of step 2 changed is stored as a line-level *patch*: the lines of
   the detokenized text to replace, and the original lines. For the byte-level BPE tokenizers
   of the registry the patch is empty.

`encode` verifies that `decode` of its own result gives back the input bytes before returning.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np

from memzip.errors import ModelLoadError, VerificationError

_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


@dataclass
class EncodedText:
    tokens: np.ndarray  # int32 [T]
    escape_positions: np.ndarray  # int64 [E], code-point index in the final text
    escape_bytes: np.ndarray  # uint8 [E]
    patch_ops: np.ndarray  # int64 [O, 3]: (line, removed_lines, inserted_bytes)
    patch_text: np.ndarray  # uint8 [sum of inserted_bytes]

    @property
    def is_exact(self) -> bool:
        """True when the tokenizer alone round-trips the file (no escapes, no patch)."""
        return self.escape_positions.size == 0 and self.patch_ops.size == 0


class TextCodec:
    """Wraps a Hugging Face *fast* tokenizer's Rust backend, which needs no max-length checks and
    never cleans up spaces behind our back."""

    def __init__(self, tokenizer):
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ModelLoadError(
                f"{type(tokenizer).__name__} is a slow tokenizer; memzip needs a fast (Rust) tokenizer",
                hint="Install `tokenizers` and use a model that ships tokenizer.json.")
        self._backend = backend

    def tokenize(self, text: str) -> list[int]:
        return self._backend.encode(text, add_special_tokens=False).ids

    def detokenize(self, tokens) -> str:
        return self._backend.decode([int(t) for t in tokens], skip_special_tokens=False)

    # --- the whole pipeline ---------------------------------------------------------------------

    def encode(self, data: bytes) -> EncodedText:
        full = data.decode("utf-8", errors="surrogateescape")
        escapes = [(m.start(), ord(m.group()) - 0xDC00) for m in _ESCAPED_BYTE.finditer(full)]
        text = _ESCAPED_BYTE.sub("", full) if escapes else full

        tokens = self.tokenize(text)
        ops, inserted = _line_patch(self.detokenize(tokens), text)
        encoded = EncodedText(
            tokens=np.asarray(tokens, dtype=np.int32),
            escape_positions=np.asarray([p for p, _ in escapes], dtype=np.int64),
            escape_bytes=np.asarray([b for _, b in escapes], dtype=np.uint8),
            patch_ops=np.asarray(ops, dtype=np.int64).reshape(-1, 3),
            patch_text=np.frombuffer(inserted, dtype=np.uint8).copy(),
        )
        if self.decode(encoded) != data:  # cannot happen unless a layer above has a bug
            raise VerificationError("internal error: the text codec does not round-trip this file",
                                    hint="Please report this with the file (MEMZIP_DEBUG=1 for details).")
        return encoded

    def decode(self, encoded: EncodedText) -> bytes:
        text = _apply_line_patch(self.detokenize(encoded.tokens), encoded.patch_ops, encoded.patch_text)
        return _insert_escapes(text, encoded.escape_positions, encoded.escape_bytes)


def _line_patch(produced: str, wanted: str) -> tuple[list[tuple[int, int, int]], bytes]:
    """Line-level edit script turning `produced` into `wanted`. Lines are hashed whole, so this
    stays fast on books where only a few lines differ."""
    if produced == wanted:
        return [], b""
    a, b = produced.splitlines(keepends=True), wanted.splitlines(keepends=True)
    ops, inserted = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            replacement = "".join(b[j1:j2]).encode("utf-8")
            ops.append((i1, i2 - i1, len(replacement)))
            inserted.append(replacement)
    return ops, b"".join(inserted)


def _apply_line_patch(text: str, ops: np.ndarray, patch_text: np.ndarray) -> str:
    if ops.size == 0:
        return text
    lines = text.splitlines(keepends=True)
    replacement = patch_text.tobytes()
    out: list[str] = []
    cursor = offset = 0
    for line, removed, size in ops.tolist():
        if line < cursor or line + removed > len(lines):
            raise VerificationError("the archive's text patch does not fit the decoded text",
                                    hint="The archive or the model differs from the one used to compress.")
        out.extend(lines[cursor:line])
        try:
            out.append(replacement[offset:offset + size].decode("utf-8"))
        except UnicodeDecodeError:
            raise VerificationError("the archive's text patch is not valid UTF-8") from None
        cursor, offset = line + removed, offset + size
    out.extend(lines[cursor:])
    return "".join(out)


def _insert_escapes(text: str, positions: np.ndarray, values: np.ndarray) -> bytes:
    if positions.size == 0:
        return text.encode("utf-8", errors="surrogateescape")
    pieces: list[str] = []
    source = 0  # index into `text`, which lacks the escapes
    for count, (position, value) in enumerate(zip(positions.tolist(), values.tolist())):
        take = position - count - source  # code points of `text` before this escape
        if take < 0 or source + take > len(text):
            raise VerificationError("the archive's byte escapes do not fit the decoded text")
        pieces.append(text[source:source + take])
        pieces.append(chr(0xDC00 + value))
        source += take
    pieces.append(text[source:])
    return "".join(pieces).encode("utf-8", errors="surrogateescape")


# --- line endings -----------------------------------------------------------------------------
# A file whose lines all end in CR LF (Windows, and many e-texts) costs the model a token or a
# share of one per line for a CR it can predict only from what came before; coded with LF alone
# and a flag, 20 KB of alice29.txt took 3.0% fewer bytes and 5.9% fewer tokens
# (docs/benchmarks.md §1).


def crlf_as_lf(data: bytes) -> bytes | None:
    """`data` with each CR LF as LF where `lf_as_crlf` gives `data` back exactly: every CR is
    followed by an LF and every LF follows a CR, and there is at least one. Else None."""
    pairs = data.count(b"\r\n")
    if pairs and pairs == data.count(b"\n") == data.count(b"\r"):
        return data.replace(b"\r\n", b"\n")
    return None


def lf_as_crlf(text: bytes) -> bytes:
    return text.replace(b"\n", b"\r\n")
