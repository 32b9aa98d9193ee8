"""What an engine is to the pipeline: the one interface both engines implement, and its result.

An *engine* turns the chunks of a text into coded bytes and back with a model. memzip/pipeline.py
runs everything around it (tokens, chunks, the journal, torchrun, progress, the header, the
stored fallback, verification) and meets the engine only through `Engine`:

- `exact-llama-1` (memzip/exact/engine.py): an integer forward whose logits are the same bits on
  every machine; the model's full probabilities arithmetic-coded. The default for Llama models.
- `float-ranks` (memzip/ranks/engine.py): format 2's float forward, each token named by its rank
  under a drift margin. For other models, or `--engine float`.

Compression hands an engine *units* of work (a stream, a chunk, or a group of chunks fitted or
decoded together: `Plan.batch_size` of them), and the journal saves each `UnitResult` as it
finishes; extraction hands it the archive and the units to decode (`header.decode.batch_size`
chunks each, one where that is None).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np


@dataclass
class UnitResult:
    """What compression keeps of one unit of work (what the journal saves)."""

    first: int  # the unit's first chunk
    residual: bytes  # its coded tokens
    misses: list[int]  # per chunk: tokens that were not the model's first choice
    coded_bits: list[float]  # per chunk: what the code's probabilities cost, -log2 p summed
    model_bits: list[float]  # per chunk: the model's own cross-entropy, bits
    residual_lengths: list[int] = field(default_factory=list)  # bytes of each chunk's code, where chunks have their own
    digest: bytes = b""  # a check of the decoded tokens (float-ranks: 8 bytes of SHA-256 over the group's)
    seconds: float = 0.0
    # with [mem] vectors: the vectors as stored, and how fitting went
    packed: np.ndarray | None = None  # [chunks, M, width]
    scales: np.ndarray | None = None  # per-vector scales of integer storage [chunks, M]
    ce_without_vectors_bits: list[float] = field(default_factory=list)  # per chunk, the same start without them
    steps: list[int] = field(default_factory=list)  # optimizer steps per chunk
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)


class Engine(Protocol):
    """A way of coding text with a model. `job` is the compression's Plan (memzip/planning.py),
    `loaded` the LoadedModel (memzip/models.py), `progress` the pipeline's counter (`tokens(n)`,
    and `step(...)` while vectors are fitted)."""

    name: str  # what archives record as decode.engine

    def prepare(self, loaded, header=None, on_prepare: Callable[[str], None] | None = None) -> None:
        """Any work before coding starts (one-time work said to `on_prepare`), so that it happens
        before the progress bar rather than inside it; `header`: the archive's, when extracting."""

    def decode_settings(self, job, loaded):
        """The header's DecodeSettings this engine needs to decode what it codes."""

    def not_worth_it(self, loaded, job, sample: list[int], file_bytes: int, zstd_bytes: int) -> str | None:
        """Why coding a sample of the file says the model will not beat zstd -19 on it (None: it
        may, or the engine does not judge)."""

    def compress_unit(self, loaded, job, first: int, chunks: list[list[int]], progress) -> UnitResult:
        """Code one unit: `chunks`, starting at chunk `first`."""

    def payload(self, job, loaded, chunks: list[list[int]], results: list[UnitResult]) -> dict[str, np.ndarray]:
        """The archive's arrays for the coded text (the pipeline adds the vectors and escapes)."""

    def statistics(self, results: list[UnitResult]) -> dict:
        """The engine's own figures for the header's informational `encode` section."""

    def extract_units(self, archive, loaded, units: list[int], progress, batch_size: int | None,
                      hint: Callable[[], str]) -> dict[int, list[list[int]]]:
        """Decode `units` of the archive: {unit: its chunks' tokens}. `batch_size`: the user's
        --batch-size, where the engine lets it choose; `hint` says what to try when decoding fails."""

    def failure_hint(self, header, loaded) -> str:
        """What to tell the user when an archive of this engine does not decode to its SHA-256."""


def engine_named(name: str) -> Engine:
    """The engine an archive or a plan names."""
    from memzip.exact.engine import ExactEngine
    from memzip.format.header import EXACT_ENGINES, FLOAT_RANKS
    from memzip.ranks.engine import RanksEngine

    if name in EXACT_ENGINES:
        return ExactEngine()
    if name == FLOAT_RANKS:
        return RanksEngine()
    raise ValueError(f"no engine named {name!r}")
