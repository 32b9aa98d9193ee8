"""The report of an archive: where its bytes went, honest about what each number counts.

Everything here comes from the archive itself (no model is loaded, torch is never imported):
the header records the baselines and the cross-entropies measured at compression.

- Bytes: the `.memz` file against the original, beside zstd -19 and xz -9 of the same original,
  and split into header, payload (vectors, residual, the rest) and framing.
- Bits per byte, and the *ideal* the model allows: its cross-entropy on the text without any
  vector (what an arithmetic coder on its probabilities would need), beside memzip's residual.
- Tokens per vector is the paper's ratio (text tokens held by one [mem] vector). It is not a
  byte ratio; what a vector *saved* (the cross-entropy it removed) stands beside what it *cost*
  (its stored bits).
"""

from __future__ import annotations

import lzma
from pathlib import Path

import zstandard

from memzip.format import vectors as storage
from memzip.format.container import Archive


def baselines(data: bytes) -> dict[str, int]:
    """Sizes of the classic compressors on the same input, for an honest comparison."""
    return {
        "zstd_bytes": len(zstandard.ZstdCompressor(level=19).compress(data)),
        "xz_bytes": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
    }


def archive_stats(archive: Archive, memz_bytes: int, path: Path | None = None) -> dict:
    header, arrays = archive.header, archive.arrays
    encode = header.encode
    chunks, tokens, original = header.text.chunks, header.text.tokens, header.text.bytes
    layout = header.vectors
    stored = header.mode == "stored"
    vectors = chunks * layout.mem_vectors
    per_vector = storage.bytes_per_vector(layout.dtype, layout.stored_dims(header.model.d_model)) if vectors else 0
    base = encode.get("baselines", {})
    misses = encode.get("misses")
    residual_bytes = 0 if stored else int(arrays["residual"].nbytes)
    vector_bytes = sum(int(arrays[n].nbytes) for n in ("vectors", "vector_scales") if n in arrays)
    report = {
        "file": str(path) if path else None,
        "model": None if stored else header.model.name,
        # model-only, mem-vectors, or stored (the bytes kept as they are: the model would not have
        # made them smaller)
        "mode": "stored" if stored else "mem-vectors" if layout.mem_vectors else "model-only",
        "engine": None if stored else header.decode.engine,
        "stored_because": encode.get("stored_because"),
        "format_version": header.format_version or None,
        "original_bytes": original,
        "memz_bytes": memz_bytes,
        "zstd_bytes": base.get("zstd_bytes"),
        "xz_bytes": base.get("xz_bytes"),
        "byte_ratio": _ratio(original, memz_bytes),
        "zstd_ratio": _ratio(original, base.get("zstd_bytes")),
        "xz_ratio": _ratio(original, base.get("xz_bytes")),
        "bits_per_byte": _bpb(8 * memz_bytes, original),
        "zstd_bits_per_byte": _bpb(8 * base["zstd_bytes"], original) if "zstd_bytes" in base else None,
        "xz_bits_per_byte": _bpb(8 * base["xz_bytes"], original) if "xz_bytes" in base else None,
        # What the model alone would need with ideal arithmetic coding of its probabilities.
        "model_only_ideal_bits_per_byte": _bpb(encode.get("model_only_ce_bits"), original),
        # exact engine: the exact model's cross-entropy on the text as coded (its streams and
        # windows), and what its integer frequencies ideally cost: the residual's floor
        "model_ce_bits_per_byte": _bpb(encode.get("model_ce_bits"), original),
        "coded_ideal_bits_per_byte": _bpb(encode.get("coded_bits"), original),
        "residual_bits_per_byte": _bpb(8 * residual_bytes, original),
        "bytes": {
            "header": archive.stored_header_bytes,
            "payload": archive.stored_payload_bytes,
            "framing": archive.framing_bytes,
            # the payload's tensors before zstd (the residual is already entropy-coded)
            "vectors_raw": vector_bytes,
            "residual_raw": residual_bytes,
        },
        "tokens": tokens,
        "chunks": chunks,
        "margin": None if stored else header.decode.margin,
        "window": None if stored else header.decode.window,
        "mem_vectors_per_chunk": layout.mem_vectors,
        "vectors": vectors,
        "vector_dtype": layout.dtype if vectors else None,
        "code_dims": layout.code_dims,
        "bytes_per_vector": per_vector,
        "tokens_per_vector": round(tokens / vectors, 2) if vectors else None,
        # Tokens greedy decoding would have got wrong: the model's first choice was another token.
        "corrections": misses,
        "corrections_per_token": round(misses / tokens, 4) if misses is not None and tokens else None,
        "chunks_exact_without_corrections": encode.get("chunks_exact"),
        "escaped_bytes": 0 if stored else int(archive.array("escape_bytes").shape[0]),
        "patched_lines": int(archive.array("patch_ops")[:, 1].sum()) if archive.array("patch_ops").size else 0,
    }
    if vectors:
        report["stored_bits_per_vector"] = 8 * per_vector  # what a vector costs
        if "ce_without_vectors_bits" in encode and "ce_with_vectors_bits" in encode:
            saved = encode["ce_without_vectors_bits"] - encode["ce_with_vectors_bits"]
            report["saved_bits_per_vector"] = round(saved / vectors, 1)  # cross-entropy a vector removed
    return report


def _ratio(original: int, compressed: int | None) -> float | None:
    return round(original / compressed, 3) if compressed else None


def _bpb(bits: float | None, original: int) -> float | None:
    return round(bits / original, 3) if bits is not None and original else None
