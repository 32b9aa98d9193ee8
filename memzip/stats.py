"""The ratio report of an archive, honest about what each number counts.

"Tokens per vector" is the paper's ratio: text tokens held by one [mem] vector. It is not a
byte ratio. The byte ratio compares the `.memz` file with the original file, and beside it
stand zstd -19 and xz -9 of the same original (measured at compression time and stored in
the header, so `stats` needs no model).
"""

from __future__ import annotations

import lzma
from pathlib import Path

import zstandard

from memzip import quantize
from memzip.container import Archive


def baselines(data: bytes) -> dict[str, int]:
    """Sizes of the classic compressors on the same input, for an honest comparison."""
    return {
        "zstd_bytes": len(zstandard.ZstdCompressor(level=19).compress(data)),
        "xz_bytes": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
    }


def archive_stats(archive: Archive, memz_bytes: int, path: Path | None = None) -> dict:
    header, arrays = archive.header, archive.arrays
    chunks, tokens = header.text.chunks, header.text.tokens
    vectors = chunks * header.vectors.mem_vectors
    original = header.text.bytes
    corrections = int(arrays["correction_positions"].shape[0])
    base = header.encode.get("baselines", {})
    exact_chunks = int(sum(1 for i in range(chunks)
                           if arrays["correction_offsets"][i + 1] == arrays["correction_offsets"][i]))
    return {
        "file": str(path) if path else None,
        "model": header.model.name,
        "original_bytes": original,
        "memz_bytes": memz_bytes,
        "zstd_bytes": base.get("zstd_bytes"),
        "xz_bytes": base.get("xz_bytes"),
        "byte_ratio": _ratio(original, memz_bytes),
        "zstd_ratio": _ratio(original, base.get("zstd_bytes")),
        "xz_ratio": _ratio(original, base.get("xz_bytes")),
        "bits_per_byte": round(8 * memz_bytes / original, 3) if original else None,
        "tokens": tokens,
        "chunks": chunks,
        "mem_vectors_per_chunk": header.vectors.mem_vectors,
        "vectors": vectors,
        "vector_dtype": header.vectors.dtype,
        "code_dims": header.vectors.code_dims,
        "bytes_per_vector": quantize.bytes_per_vector(header.vectors.dtype,
                                                      header.vectors.stored_dims(header.model.d_model)),
        "tokens_per_vector": round(tokens / vectors, 2) if vectors else 0.0,
        "corrections": corrections,
        "corrections_per_token": round(corrections / tokens, 4) if tokens else 0.0,
        "chunks_exact_without_corrections": exact_chunks,
        "escaped_bytes": int(arrays["escape_bytes"].shape[0]),
        "patched_lines": int(arrays["patch_ops"][:, 1].sum()) if arrays["patch_ops"].size else 0,
    }


def _ratio(original: int, compressed: int | None) -> float | None:
    if not compressed:
        return None
    return round(original / compressed, 3)
