"""The float engine (`float-ranks`, format 2's): tokens named by rank under a drift margin.

For models the exact engine does not cover (Gemma 3, Pythia) and for `--engine float`. The
model runs in float; every chunk is greedy-decoded from its layout (and [mem] vectors), and at
every token compression *names* the true token by where it stands in the logits
(memzip/ranking.py: rank, plus hash bits when other logits lie within twice the margin), so
that extraction elsewhere finds it again as long as its logits differ by less than half the
margin. Chunks are decoded in groups of `batch_size` whose shape extraction must reproduce
(the batch shape changes low-order bits), and each group carries a digest.

memzip/engine.py runs the loop (journal, torchrun, progress); this module compresses one group,
builds the payload and extracts.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import torch

from memzip.vectors import rounding as quantize
from memzip.ranks.decoder import GroupDecode, decode_group
from memzip.errors import VerificationError
from memzip.format.container import Archive
from memzip.format.header import DecodeSettings, Header
from memzip.format.residual import decode_choices, encode_choices
from memzip.journal import GroupResult
from memzip.layout import Layout
from memzip.models import LoadedModel
from memzip.vectors.optimize import ChunkFit, VectorSpace
from memzip.planning import Plan, cost_without_vectors, fit_and_store
from memzip.vectors.recipes import Recipe


def decode_settings(job: Plan, loaded: LoadedModel) -> DecodeSettings:
    return DecodeSettings(batch_size=job.batch_size, margin=job.margin)


def compress_unit(loaded: LoadedModel, job: Plan, first: int, group: list[list[int]], progress) -> GroupResult:
    """Fit one group's vectors (if any) and name its tokens."""
    started = time.perf_counter()
    vocab = loaded.identity.vocab_size
    if job.recipe is None:
        decoded = decode_group(loaded.model, [len(c) for c in group], job.layout, job.margin, targets=group,
                               where=f"chunks {first}-{first + len(group) - 1}")
        return GroupResult(first, encode_choices(decoded.choices, vocab), group_digest(decoded.tokens),
                           decoded.misses, decoded.ce_bits, seconds=time.perf_counter() - started)
    fitted = fit_and_decode(loaded, group, job.recipe, job.space, job.layout, job.margin,
                            seed=job.options.seed + first, on_step=progress.step)
    decoded = fitted.decoded
    return GroupResult(first, encode_choices(decoded.choices, vocab), group_digest(decoded.tokens), decoded.misses,
                       decoded.ce_bits, cost_without_vectors(loaded, job.layout, group), fitted.packed,
                       fitted.scales, steps=[f.steps for f in fitted.fits], losses=[f.loss for f in fitted.fits],
                       accuracies=[f.accuracy for f in fitted.fits], seconds=time.perf_counter() - started)


@dataclass
class FittedGroup:
    """Chunks fitted together, their vectors as stored, and the float decode of those vectors."""

    fits: list[ChunkFit]
    packed: np.ndarray
    scales: np.ndarray | None
    decoded: GroupDecode


def fit_and_decode(loaded: LoadedModel, chunks: list[list[int]], recipe: Recipe, space: VectorSpace, layout: Layout,
                   margin: float, seed: int = 0, on_step=None) -> FittedGroup:
    """Fit and store vectors, then run the extraction decoder on the stored vectors, naming the
    true tokens (bench and capacity judge recipes with it too)."""
    fitted = fit_and_store(loaded, chunks, recipe, space, layout, seed=seed, on_step=on_step)
    vectors = quantize.stored_vectors(fitted.packed, fitted.scales, space.storage, space.code_dims, loaded.d_model)
    decoded = decode_group(loaded.model, [len(c) for c in chunks], layout, margin, vectors=vectors, targets=chunks)
    return FittedGroup(fitted.fits, fitted.packed, fitted.scales, decoded)


def payload(job: Plan, loaded: LoadedModel, chunks: list[list[int]], results: list[GroupResult]) -> dict:
    residuals = [r.residual for r in results]
    offsets = np.zeros(len(results) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in residuals])
    return {
        "chunk_tokens": np.asarray([len(c) for c in chunks], dtype=np.int32),
        "group_digests": np.frombuffer(b"".join(r.digest for r in results), dtype=np.uint8).reshape(len(results), 8),
        "residual": np.frombuffer(b"".join(residuals), dtype=np.uint8),
        "residual_offsets": offsets,
    }


def group_digest(chunks: list[list[int]]) -> bytes:
    """First 8 bytes of SHA-256 over the group's token ids, int32 little-endian, chunk after chunk."""
    return hashlib.sha256(np.asarray([t for c in chunks for t in c], dtype="<i4").tobytes()).digest()[:8]


def extract_tokens(archive: Archive, loaded: LoadedModel, mine: list[int], progress, hint) -> dict[int, list[list[int]]]:
    """Decode the groups `mine`, checking each one's digest: {group: its chunks' tokens}."""
    header = archive.header
    decode = header.decode
    layout = Layout(tuple(decode.prefix_tokens), tuple(decode.infix_tokens))
    lengths = archive.arrays["chunk_tokens"].tolist()
    offsets = archive.arrays["residual_offsets"].tolist()
    residual = archive.arrays["residual"].tobytes()
    vectors = None
    if header.vectors.mem_vectors:
        v = header.vectors
        vectors = quantize.stored_vectors(archive.arrays["vectors"], archive.arrays.get("vector_scales"), v.dtype,
                                          v.code_dims, header.model.d_model)
    decoded_groups: dict[int, list[list[int]]] = {}
    for group in mine:
        first = group * decode.batch_size
        last = min(first + decode.batch_size, len(lengths))
        where = f"chunks {first}-{last - 1} of {len(lengths)}"
        choices = decode_choices(residual[offsets[group]:offsets[group + 1]], sum(lengths[first:last]),
                                 header.model.vocab_size, where=f"residual of {where}")
        decoded = decode_group(loaded.model, lengths[first:last], layout, decode.margin,
                               vectors=None if vectors is None else vectors[first:last], choices=choices, where=where)
        if group_digest(decoded.tokens) != archive.arrays["group_digests"][group].tobytes():
            raise VerificationError(f"{where} decoded differently than when they were compressed", hint=hint())
        decoded_groups[group] = decoded.tokens
        progress.tokens(sum(lengths[first:last]))
    return decoded_groups


def drift_hint(header: Header, loaded: LoadedModel) -> str:
    return (f"The archive was made on {header.decode.device} with torch {header.decode.torch_version}; "
            f"this machine ({loaded.device.type}, torch {torch.__version__}) computes logits that differ by "
            f"more than its margin ({header.decode.margin:g}). Extract with --device {header.decode.device}, "
            f"or compress with a larger --margin.")


__all__ = ["compress_unit", "decode_settings", "drift_hint", "extract_tokens", "fit_and_decode",
           "group_digest", "payload"]
