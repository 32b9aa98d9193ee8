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
    first_miss: int | None = None  # the first of them: greedy decoding reproduces the tokens before it


def compress_stream(model: ExactLlama, distribution: Distribution, start: torch.Tensor, tokens: list[int],
                    window: int, kind: str = "distribution", block: int = 512,
                    on_tokens: Callable[[int], None] | None = None) -> CodedStream:
    """Code `tokens` decoded from `start` rows [s, d] (float64)."""
    return compress_streams(model, distribution, start[None], [tokens], window, kind, block, on_tokens)[0]


def compress_streams(model: ExactLlama, distribution: Distribution, starts: torch.Tensor, streams: list[list[int]],
                     window: int, kind: str = "distribution", block: int = 512,
                     on_tokens: Callable[[int], None] | None = None) -> list[CodedStream]:
    """Code `streams` side by side, each decoded from its start rows (`starts` [G, s, d], float64),
    in the order extraction decodes them: position by position, and at each position the streams
    still running in index order. With an adaptive bias the streams share one (the archive's
    `bias_streams` is at least G): it learns each token before the next stream's is coded, so a
    stream's bias learns from the whole group's text, not only its own."""
    count, lengths = len(streams), [len(tokens) for tokens in streams]
    encoders = [StreamEncoder(kind) for _ in streams]
    model_bits = [0.0] * count
    device, longest = model.device, max(lengths, default=0)
    if longest == 0:
        return [CodedStream(e.finish(), 0.0, 0.0, 0) for e in encoders]
    targets = torch.zeros(count, longest, dtype=torch.long, device=device)  # token 0 pads the shorter streams
    for g, tokens in enumerate(streams):
        targets[g, :len(tokens)] = torch.tensor(tokens, dtype=torch.long, device=device)
    inputs = torch.cat([starts.to(device), model.embed(targets[:, :-1])], dim=1)  # position i codes token i - s + 1
    first_coding = starts.shape[1] - 1
    ends = torch.tensor(lengths, device=device)
    # a forward per stream, as a stream alone runs: 4 streams' blocks in one batch ran 3-8% slower
    # on 2 CPU cores (docs/scripts/shared_bias_ab.py); the coding below is what they share
    contexts = [model.new_context(1, window, window + block) for _ in streams]
    bias = distribution.adaptive_bias(1)
    assert bias is None or count <= distribution.settings.bias_streams, "more streams than share a bias"
    for a in range(0, inputs.shape[1], block):
        rows = inputs[:, a:a + block]
        coding = torch.arange(max(0, first_coding - a), rows.shape[1], device=device)  # positions that code a token
        with _timed("forward"):
            hidden = torch.cat([model.forward(rows[g:g + 1], contexts[g], coding) for g in range(count)])  # [G, n, d]
        if coding.numel() == 0:
            continue
        coded = a + int(coding[0]) - first_coding
        for part in hidden.split(max(1, LOGIT_ROWS // count), dim=1):
            n = part.shape[1]
            with _timed("forward"):
                logits = model.logits(part.reshape(count * n, -1)).view(count, n, -1).transpose(0, 1)  # [n, G, V]
            running = (torch.arange(coded, coded + n, device=device)[:, None] < ends).reshape(-1)
            order = running.nonzero()[:, 0]  # (position, stream) pairs in coding order
            logits = logits.reshape(n * count, -1).index_select(0, order)
            wanted = targets[:, coded:coded + n].T.reshape(-1).index_select(0, order)
            of_stream = (order % count).tolist()
            rows_of = {g: [i for i, s in enumerate(of_stream) if s == g] for g in dict.fromkeys(of_stream)}
            with _timed("coding"):
                coded_rows = distribution.rows(logits, wanted, bias)
                for g, mine in rows_of.items():
                    encoders[g].code(coded_rows.select(mine) if len(rows_of) > 1 else coded_rows)
            for g, mine in rows_of.items():
                index = torch.tensor(mine, device=device)
                model_bits[g] += ideal_bits(logits.index_select(0, index), wanted.index_select(0, index))
            if on_tokens:
                on_tokens(len(of_stream))
            coded += n
    return [CodedStream(e.finish(), e.bits, bits, e.misses, e.first_miss) for e, bits in zip(encoders, model_bits)]


def extract_streams(model: ExactLlama, distribution: Distribution, starts: torch.Tensor, residuals: list[bytes],
                    lengths: list[int], window: int, kind: str = "distribution",
                    on_tokens: Callable[[int], None] | None = None) -> list[list[int]]:
    """Decode streams side by side: `starts` [B, s, d], their residual bytes and token counts.
    With an adaptive bias, streams i and j share one where i // bias_streams == j // bias_streams
    (the caller hands over whole groups), and at each step they take turns in index order, as
    compress_streams coded them."""
    produced: list[list[int]] = [[] for _ in lengths]
    active = [i for i, n in enumerate(lengths) if n > 0]
    if not active:
        return produced
    decoders = {i: StreamDecoder(residuals[i], kind) for i in active}
    group = distribution.settings.bias_streams
    bias = distribution.adaptive_bias(-(-len(lengths) // group))  # one per group of streams, or None
    context = model.new_context(len(active), window)
    with _timed("forward"):
        hidden = model.forward(starts[active].to(model.device), context)[:, 0]
    while True:
        with _timed("forward"):
            logits = model.logits(hidden)
        tokens = [0] * len(active)
        with _timed("coding"):
            for rows in _turns(active, group if bias is not None else len(lengths)):
                mine = logits if len(rows) == len(active) else logits[rows]
                found = decode_tokens(distribution, mine, [decoders[active[j]] for j in rows], bias,
                                      [active[j] // group for j in rows])
                for j, token in zip(rows, found):
                    tokens[j] = token
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


def _turns(active: list[int], group: int) -> list[list[int]]:
    """Rows of `active` (stream indices, ascending) decoded together in one extraction step: the
    first running stream of every group of `group` streams, then the second, and so on; rows in
    one turn never share a bias."""
    turns: list[list[int]] = []
    seen: dict[int, int] = {}
    for j, i in enumerate(active):
        turn = seen.get(i // group, 0)
        seen[i // group] = turn + 1
        if turn == len(turns):
            turns.append([])
        turns[turn].append(j)
    return turns
