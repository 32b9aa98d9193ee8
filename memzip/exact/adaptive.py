"""An adaptive bias over the vocabulary: the smallest kind of dynamic evaluation, in integers.

The model is frozen; the text is not like the text it learnt from on average. As a stream is
coded, a bias per token learns what the text uses: after each token every token's bias takes one
step of gradient descent on that token's cost (-log2 p under the biased distribution), i.e. falls
by `rate` times its probability, and the coded token's rises by `rate`. Names, a book's pet words
and its punctuation habits get cheaper within a few uses (measured: docs/benchmarks.md §1).

Decoding must see bit for bit the same frequencies, so all of it is integer arithmetic on the
exact logits (memzip/exact/model.py), the same on every machine:

    key(t)       = floor(logit(t) * 2^grid_bits) + (bias(t) >> FRACTION_BITS)
    frequency(t) = table[min(max key - key(t), last)]          (memzip/exact/coding.py's table)
    after coding token y with total T:
        bias(t) -= floor(rate(t) * frequency(t) / T)   for every t
        bias(y) += rate(y),   rate(t) = 2^(grid_bits + FRACTION_BITS - bias_bits) (<< fresh_bits
                              while t has not been coded yet)

(the multiply by a power of two is exact in float32; `>>` floors; everything else is int64:
frequencies < 2^29 times a rate <= 2^26 stay below 2^55). A token the text has not used yet
learns 2^fresh_bits times faster (format 9: fresh_bits 1): until its first use the bias pulls it
down faster. Most of the vocabulary never appears in a text (alice29.txt uses 3,973 distinct
tokens of 49,152; its first 20 KB 1,248), so that mass moves sooner to the tokens it does use
(float simulation on those 20 KB: -0.13%). Each group of streams has its own bias, starting at zero. The archive
records `bias_bits` and `fresh_bits` in its coding settings (bias_bits 0: no bias, the
frequencies of memzip/exact/coding.py); only model-only streams (`distribution` coding) use it.

kernels.adaptive_* compute the same integers in one pass a row; the torch path here is the
reference and serves machines without numba and GPUs.
"""

from __future__ import annotations

import numpy as np
import torch

from memzip.exact import kernels

FRACTION_BITS = 16  # the bias is kept in units of 2^-(grid_bits + 16) logits: steps far below a bucket add up


def rate_of(bias_bits: int, grid_bits: int) -> int:
    """The learning rate in bias units: 2^-bias_bits logits."""
    return 1 << (grid_bits + FRACTION_BITS - bias_bits)


class VocabularyBias:
    """The biases of `streams` streams [streams, V] int64, and the coding passes that use them."""

    def __init__(self, streams: int, vocab: int, bias_bits: int, grid_bits: int, int_table: np.ndarray,
                 fresh_bits: int = 0):
        self.values = np.zeros((streams, vocab), np.int64)
        self.fresh = np.ones((streams, vocab), np.uint8)  # 1: a token this bias has not learnt from yet
        self.rate = rate_of(bias_bits, grid_bits)
        self.fresh_rate = self.rate << fresh_bits
        self.grid_bits, self.table = grid_bits, int_table
        self._torch_table = torch.from_numpy(int_table)

    # -- compression: one stream's rows in order ---------------------------------------------------

    def coded_rows(self, stream: int, logits: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
        """[n, 7] int64 of (low, high, total, first, first_low, first_freq, peak) for rows [n, V]
        coded in order, stream `stream`'s bias learning after each."""
        if compiled_rows(logits):
            return kernels.adaptive_coded_rows(np.ascontiguousarray(logits.numpy()), targets.to(torch.int64).numpy(),
                                               self.values[stream], self.fresh[stream], self.table, self.grid_bits,
                                               FRACTION_BITS, self.rate, self.fresh_rate)
        out = np.empty((logits.shape[0], 7), np.int64)
        streams = torch.tensor([stream])
        for i in range(logits.shape[0]):
            row = self._rows(logits[i:i + 1], streams)
            low, high = interval(row.cumulative, targets[i:i + 1])
            out[i] = [int(low), int(high), *row.summary()[0]]
            self._learn(row, streams, targets[i:i + 1])
        return out

    # -- extraction: one step of several streams ----------------------------------------------------

    def decode_rows(self, logits: torch.Tensor, streams: list[int]) -> "BiasedStep":
        """Row i of `logits` belongs to stream streams[i]: its totals and first choices."""
        return BiasedStep(self, logits, streams)

    # -- the torch path -----------------------------------------------------------------------------

    def _rows(self, logits: torch.Tensor, streams: torch.Tensor) -> "_TorchRows":
        bias = torch.from_numpy(self.values).index_select(0, streams.cpu()).to(logits.device)
        keys = torch.floor(logits.float() * float(2 ** self.grid_bits)).to(torch.int64) + (bias >> FRACTION_BITS)
        peaks = keys.amax(dim=-1, keepdim=True)
        table = self._torch_table.to(logits.device)
        frequencies = table[(peaks - keys).clamp_(max=table.numel() - 1)]
        return _TorchRows(frequencies, frequencies.cumsum(dim=-1), keys.argmax(dim=-1), peaks[:, 0])

    def _learn(self, rows: "_TorchRows", streams: torch.Tensor, tokens: torch.Tensor) -> None:
        totals = rows.cumulative[:, -1:]
        fresh = torch.from_numpy(self.fresh).index_select(0, streams.cpu()).to(totals.device)
        rates = torch.where(fresh.bool(), self.fresh_rate, self.rate)
        step = torch.div(rows.frequencies * rates, totals, rounding_mode="floor").cpu().numpy()
        for k, (s, y) in enumerate(zip(streams.tolist(), tokens.tolist())):
            self.values[s] -= step[k]
            self.values[s, y] += self.fresh_rate if self.fresh[s, y] else self.rate
            self.fresh[s, y] = 0


class _TorchRows:
    def __init__(self, frequencies, cumulative, firsts, peaks):
        self.frequencies, self.cumulative, self.firsts, self.peaks = frequencies, cumulative, firsts, peaks

    def summary(self) -> list[list[int]]:
        """(total, first, first_low, first_freq, peak) a row."""
        first_lows, first_highs = interval(self.cumulative, self.firsts)
        columns = (self.cumulative[:, -1], self.firsts, first_lows, first_highs - first_lows, self.peaks)
        return torch.stack([c.to(torch.int64).cpu() for c in columns], dim=1).tolist()


def interval(cumulative: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's interval [low, high) of its token in running sums [n, V] (the coder's, and the
    bias's; memzip/exact/coding.py uses it too)."""
    highs = cumulative.gather(1, tokens[:, None].to(cumulative.device))[:, 0]
    below = cumulative.gather(1, (tokens - 1).clamp(min=0)[:, None].to(cumulative.device))[:, 0]
    return torch.where(tokens.to(cumulative.device) > 0, below, torch.zeros_like(below)), highs


def compiled_rows(logits: torch.Tensor) -> bool:
    """Whether rows of logits go through the compiled kernels (CPU float32 with numba) or torch."""
    return kernels.available() and logits.device.type == "cpu" and logits.dtype == torch.float32


class BiasedStep:
    """One extraction step of streams with a bias: what memzip/exact/coding.py's decode_tokens
    needs (totals, firsts, first_lows, first_freqs, find), then `learn` once the tokens are known."""

    def __init__(self, bias: VocabularyBias, logits: torch.Tensor, streams: list[int]):
        self._bias, self._streams = bias, streams
        if compiled_rows(logits):
            self._logits = np.ascontiguousarray(logits.numpy())
            self._stream_rows = np.array(streams, np.int64)
            out = kernels.adaptive_decode_rows(self._logits, bias.values, self._stream_rows, bias.table,
                                               bias.grid_bits, FRACTION_BITS)
            self._torch = None
            self._peaks = out[:, 6].copy()
            self.totals, self.firsts, self.first_lows, self.first_freqs = (out[:, k].tolist() for k in (2, 3, 4, 5))
        else:
            self._torch = bias._rows(logits, torch.tensor(streams))
            summary = self._torch.summary()
            self.totals, self.firsts, self.first_lows, self.first_freqs = ([r[k] for r in summary] for k in range(4))

    def find(self, rows: list[int], values: list[int]) -> tuple[list[int], list[int], list[int]]:
        """The token whose interval holds each value of its row, and that interval (lows, highs)."""
        if self._torch is None:
            out = kernels.adaptive_find_tokens(self._logits, self._bias.values, self._stream_rows,
                                               np.array(rows, np.int64), np.array(values, np.int64), self._peaks,
                                               self._bias.table, self._bias.grid_bits, FRACTION_BITS)
            return out[:, 0].tolist(), out[:, 1].tolist(), out[:, 2].tolist()
        sums = self._torch.cumulative[rows]
        wanted = torch.tensor(values, dtype=torch.int64, device=sums.device)[:, None]
        found = torch.searchsorted(sums, wanted, right=True)[:, 0]
        lows, highs = interval(sums, found)
        return found.tolist(), lows.tolist(), highs.tolist()

    def learn(self, tokens: list[int]) -> None:
        """Every stream's bias learns the token it decoded."""
        bias = self._bias
        if self._torch is None:
            kernels.adaptive_learn(self._logits, bias.values, bias.fresh, self._stream_rows,
                                   np.array(tokens, np.int64), self._peaks, np.array(self.totals, np.int64),
                                   bias.rate, bias.fresh_rate, bias.table, bias.grid_bits, FRACTION_BITS)
        else:
            bias._learn(self._torch, torch.tensor(self._streams), torch.tensor(tokens))
