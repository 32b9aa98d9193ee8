"""Coding token streams with the exact model: compression in parallel, extraction step by step.

A stream is a sequence of tokens decoded from fixed *start rows* (the model's document-start
token; with [mem] vectors, the layout around the stream's vectors). Position p's logits code the
token at p + 1. Because the logits are exact (memzip/exact/model.py):

- compression runs a whole block of positions in one teacher-forced forward and codes every
  token of it, and extraction, feeding back one token at a time, sees bit for bit the same
  logits;
- streams are independent: extraction decodes any number of them side by side (the batch is
  the user's choice, `--batch-size`), and a stream can start or end at any step.

The window (how many recent positions attention sees besides the sink, memzip/exact/model.py's
`Context`) is the archive's setting; everything else here is free to change without changing a
bit of the output.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from memzip.exact.coding import Distribution, StreamDecoder, StreamEncoder, decode_tokens, ideal_bits
from memzip.exact.model import ExactLlama

LOGIT_ROWS = 64  # logits are computed this many rows at a time ([64, V] float32 is 12.6 MB at V = 49152)


@dataclass
class Timings:
    """Where the time of compress_stream and extract_streams went (`memzip bench-speed --profile`)."""

    forward: float = 0.0  # the exact model: layers and output logits
    coding: float = 0.0  # frequencies, cumulative sums and the arithmetic coder
    _started: dict = field(default_factory=dict)

    def split(self, total: float) -> dict:
        return {"model_forward": round(self.forward, 2), "coding": round(self.coding, 2),
                "everything_else": round(total - self.forward - self.coding, 2)}


_timings: Timings | None = None


@contextlib.contextmanager
def profiling(enabled: bool = True):
    """Collect Timings while the block runs (yields them; None when disabled)."""
    global _timings
    _timings = Timings() if enabled else None
    try:
        yield _timings
    finally:
        _timings = None


@contextlib.contextmanager
def _timed(part: str):
    if _timings is None:
        yield
        return
    began = time.perf_counter()
    yield
    setattr(_timings, part, getattr(_timings, part) + time.perf_counter() - began)


@dataclass
class CodedStream:
    residual: bytes
    coded_bits: float  # -log2 of the coded probabilities (what the residual should cost)
    model_bits: float  # the model's own cross-entropy (float softmax of the exact logits)
    misses: int  # tokens that were not the model's first choice


def compress_stream(model: ExactLlama, distribution: Distribution, start: torch.Tensor, tokens: list[int],
                    window: int, kind: str = "distribution", block: int = 512,
                    on_tokens: Callable[[int], None] | None = None) -> CodedStream:
    """Code `tokens` decoded from `start` rows [s, d] (float64)."""
    encoder = StreamEncoder(kind)
    if not tokens:
        return CodedStream(encoder.finish(), 0.0, 0.0, 0)
    device = model.device
    targets = torch.tensor(tokens, device=device)
    inputs = torch.cat([start.to(device), model.embed(targets[:-1])])  # position i codes token i - s + 1
    first_coding = start.shape[0] - 1
    context = model.new_context(1, window, window + block)
    bias = distribution.adaptive_bias(1)
    model_bits = 0.0
    for a in range(0, inputs.shape[0], block):
        rows = inputs[a:a + block]
        coding = torch.arange(max(0, first_coding - a), rows.shape[0], device=device)  # positions that code a token
        with _timed("forward"):
            hidden = model.forward(rows[None], context, coding)[0]
        coded = a + int(coding[0]) - first_coding if coding.numel() else 0
        for part in hidden.split(LOGIT_ROWS):
            with _timed("forward"):
                logits = model.logits(part)
            wanted = targets[coded:coded + part.shape[0]]
            with _timed("coding"):
                encoder.code(distribution.rows(logits, wanted, bias))
            model_bits += ideal_bits(logits, wanted)
            coded += part.shape[0]
        if on_tokens and coding.numel():
            on_tokens(coding.numel())
    return CodedStream(encoder.finish(), encoder.bits, model_bits, encoder.misses)


def extract_streams(model: ExactLlama, distribution: Distribution, starts: torch.Tensor, residuals: list[bytes],
                    lengths: list[int], window: int, kind: str = "distribution",
                    on_tokens: Callable[[int], None] | None = None) -> list[list[int]]:
    """Decode streams side by side: `starts` [B, s, d], their residual bytes and token counts."""
    produced: list[list[int]] = [[] for _ in lengths]
    active = [i for i, n in enumerate(lengths) if n > 0]
    if not active:
        return produced
    decoders = {i: StreamDecoder(residuals[i], kind) for i in active}
    bias = distribution.adaptive_bias(len(lengths))  # one per stream, or None
    context = model.new_context(len(active), window)
    with _timed("forward"):
        hidden = model.forward(starts[active].to(model.device), context)[:, 0]
    while True:
        with _timed("forward"):
            logits = model.logits(hidden)
        with _timed("coding"):
            tokens = decode_tokens(distribution, logits, [decoders[i] for i in active], bias, active)
        for i, token in zip(active, tokens):
            produced[i].append(token)
        if on_tokens:
            on_tokens(len(active))
        still = [j for j, i in enumerate(active) if len(produced[i]) < lengths[i]]
        if not still:
            return produced
        if len(still) < len(active):  # finished streams leave the batch
            context.keep_rows(still)
            active, tokens = [active[j] for j in still], [tokens[j] for j in still]
        fed = model.embed(torch.tensor(tokens, device=model.device)[:, None])
        with _timed("forward"):
            hidden = model.forward(fed, context)[:, 0]
