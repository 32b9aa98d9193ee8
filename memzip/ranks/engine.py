"""The float engine (`float-ranks`, format 2's) as the pipeline meets it (`RanksEngine`,
memzip/engines.py's interface): tokens named by rank under a drift margin.

For models the exact engine does not cover (Gemma 3, Pythia) and for `--engine float`. The
model runs in float; every chunk is greedy-decoded from its layout (and [mem] vectors), and at
every token compression *names* the true token by where it stands in the logits
(memzip/ranks/ranking.py: rank, plus hash bits when other logits lie within twice the margin), so
that extraction elsewhere finds it again as long as its logits differ by less than half the
margin. Chunks are decoded in groups of `batch_size` whose shape extraction must reproduce
(the batch shape changes low-order bits), and each group carries a digest.

memzip/pipeline.py runs the loop (journal, torchrun, progress); this module compresses one group,
builds the payload and extracts.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import torch

from memzip.engines import UnitResult
from memzip.errors import VerificationError
from memzip.format.container import Archive
from memzip.format.header import FLOAT_RANKS, DecodeSettings, Header
from memzip.format.residual import decode_choices, encode_choices
from memzip.layout import Layout
from memzip.models import LoadedModel
from memzip.planning import Plan
from memzip.ranks.decoder import GroupDecode, decode_group
from memzip.vectors import rounding
from memzip.vectors.fitting import cost_without_vectors, fit_and_store
from memzip.vectors.optimize import ChunkFit, VectorSpace
from memzip.vectors.recipes import Recipe


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
    vectors = rounding.stored_vectors(fitted.packed, fitted.scales, space.storage, space.code_dims, loaded.d_model)
    decoded = decode_group(loaded.model, [len(c) for c in chunks], layout, margin, vectors=vectors, targets=chunks)
    return FittedGroup(fitted.fits, fitted.packed, fitted.scales, decoded)


def group_digest(chunks: list[list[int]]) -> bytes:
    """First 8 bytes of SHA-256 over the group's token ids, int32 little-endian, chunk after chunk."""
    return hashlib.sha256(np.asarray([t for c in chunks for t in c], dtype="<i4").tobytes()).digest()[:8]


class RanksEngine:
    """`float-ranks` for the pipeline (memzip/engines.py)."""

    name = FLOAT_RANKS

    def prepare(self, loaded: LoadedModel, header: Header | None = None, on_prepare=None) -> None:
        _ = loaded.model  # the float model, loaded now rather than inside the first unit

    def decode_settings(self, job: Plan, loaded: LoadedModel) -> DecodeSettings:
        return DecodeSettings(batch_size=job.batch_size, margin=job.margin)

    def not_worth_it(self, loaded, job, sample, file_bytes, zstd_bytes) -> str | None:
        return None  # chunks of the float engine are short: the whole file is tried, then compared

    def compress_unit(self, loaded: LoadedModel, job: Plan, first: int, group: list[list[int]],
                      progress) -> UnitResult:
        """Fit one group's vectors (if any) and name its tokens."""
        started = time.perf_counter()
        vocab = loaded.identity.vocab_size
        if job.recipe is None:
            decoded = decode_group(loaded.model, [len(c) for c in group], job.layout, job.margin, targets=group,
                                   where=f"chunks {first}-{first + len(group) - 1}")
            return UnitResult(first, encode_choices(decoded.choices, vocab), decoded.misses, decoded.ce_bits,
                              decoded.ce_bits, digest=group_digest(decoded.tokens),
                              seconds=time.perf_counter() - started)
        fitted = fit_and_decode(loaded, group, job.recipe, job.space, job.layout, job.margin,
                                seed=job.options.seed + first, on_step=progress.step)
        decoded = fitted.decoded
        return UnitResult(first, encode_choices(decoded.choices, vocab), decoded.misses, decoded.ce_bits,
                          decoded.ce_bits, digest=group_digest(decoded.tokens), seconds=time.perf_counter() - started,
                          packed=fitted.packed, scales=fitted.scales,
                          ce_without_vectors_bits=cost_without_vectors(loaded, job.layout, group),
                          steps=[f.steps for f in fitted.fits], losses=[f.loss for f in fitted.fits],
                          accuracies=[f.accuracy for f in fitted.fits])

    def payload(self, job: Plan, loaded: LoadedModel, chunks: list[list[int]], results: list[UnitResult]) -> dict:
        residuals = [r.residual for r in results]
        offsets = np.zeros(len(results) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(r) for r in residuals])
        return {
            "chunk_tokens": np.asarray([len(c) for c in chunks], dtype=np.int32),
            "group_digests": np.frombuffer(b"".join(r.digest for r in results),
                                           dtype=np.uint8).reshape(len(results), 8),
            "residual": np.frombuffer(b"".join(residuals), dtype=np.uint8),
            "residual_offsets": offsets,
        }

    def statistics(self, results: list[UnitResult]) -> dict:
        return {}  # its cross-entropies are the pipeline's model_only / with-vectors figures

    def extract_units(self, archive: Archive, loaded: LoadedModel, units: list[int], progress,
                      batch_size: int | None = None, hint=None) -> dict[int, list[list[int]]]:
        """Decode the groups `units` in the batch shape they were coded in (it changes low-order
        bits, so the archive's, not the user's), checking each one's digest."""
        header = archive.header
        decode = header.decode
        layout = Layout(tuple(decode.prefix_tokens), tuple(decode.infix_tokens))
        lengths = archive.arrays["chunk_tokens"].tolist()
        offsets = archive.arrays["residual_offsets"].tolist()
        residual = archive.arrays["residual"].tobytes()
        vectors = None
        if header.vectors.mem_vectors:
            v = header.vectors
            vectors = rounding.stored_vectors(archive.arrays["vectors"], archive.arrays.get("vector_scales"), v.dtype,
                                              v.code_dims, header.model.d_model)
        decoded_groups: dict[int, list[list[int]]] = {}
        for group in units:
            first = group * decode.batch_size
            last = min(first + decode.batch_size, len(lengths))
            where = f"chunks {first}-{last - 1} of {len(lengths)}"
            choices = decode_choices(residual[offsets[group]:offsets[group + 1]], sum(lengths[first:last]),
                                     header.model.vocab_size, where=f"residual of {where}")
            decoded = decode_group(loaded.model, lengths[first:last], layout, decode.margin,
                                   vectors=None if vectors is None else vectors[first:last], choices=choices,
                                   where=where)
            if group_digest(decoded.tokens) != archive.arrays["group_digests"][group].tobytes():
                raise VerificationError(f"{where} decoded differently than when they were compressed", hint=hint())
            decoded_groups[group] = decoded.tokens
            progress.tokens(sum(lengths[first:last]))
        return decoded_groups

    def failure_hint(self, header: Header, loaded: LoadedModel) -> str:
        return (f"The archive was made on {header.decode.device} with torch {header.decode.torch_version}; "
                f"this machine ({loaded.device.type}, torch {torch.__version__}) computes logits that differ by "
                f"more than its margin ({header.decode.margin:g}). Extract with --device {header.decode.device}, "
                f"or compress with a larger --margin.")

