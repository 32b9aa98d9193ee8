"""The model's probabilities as integer frequencies, and arithmetic coding with them.

The exact logits (memzip/exact/model.py) are the same on every machine, so the coder can use
the model's whole distribution, as llama-zip and ts_zip do, and still decode anywhere:

    frequency(token) = table[floor((max logit - logit(token)) * 2^grid_bits)]

with `table` = memzip/exact/tables.exp_table(value_bits, grid_bits, floor=1): about 2^value_bits
times exp(-difference), at least 1 for every token (so any token can be coded), in integers.
Sums of frequencies are exact in float64 (every one is below 2^53), so the cumulative counts a
coder needs are exact too. With value_bits = 28 the floor of 1 for the 49,152 tokens of the
embedded model takes at most 0.02% of the total, and buckets of 2^-10 logits change a
probability by at most 0.05%: together a cost well under 0.1% of the cross-entropy.

Every stream of tokens is coded by its own 64-bit arithmetic coder (memzip/format/arithmetic.py)
with these frequencies; streams decode independently, in any batch.

Two kinds of code (the archive records which):

- `distribution`: each token with the frequencies above (model-only coding).
- `greedy`: for streams decoded from [mem] vectors, whose point is that the model greedy-decodes
  them: each token is first a hit-or-miss flag against the model's first choice (adaptive
  counts), and only a miss is coded with the distribution, the first choice left out. A chunk
  the vectors decode exactly costs a small fraction of a bit per token.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from memzip.exact import kernels, tables
from memzip.exact.adaptive import FRACTION_BITS, VocabularyBias, compiled_rows, interval
from memzip.format.arithmetic import AdaptiveModel, ArithmeticDecoder, ArithmeticEncoder, max_total

REGISTER_BITS = 64


@dataclass(frozen=True)
class CodingSettings:
    """How logits become frequencies (recorded in the archive)."""

    value_bits: int = 28  # the most likely token's frequency is ~2^28
    grid_bits: int = 10  # logit differences are bucketed at 2^-10
    # 0: none; k: an adaptive bias over the vocabulary learning at 2^-k logits a token
    # (memzip/exact/adaptive.py). Archives before format 6 have no such key: 0.
    bias_bits: int = 0
    # consecutive streams that share one bias, decoded in lockstep (memzip/exact/streams.py).
    # Archives before format 8 have no such key: 1, a bias per stream.
    bias_streams: int = 1
    # a token not coded yet learns 2^fresh_bits times faster (memzip/exact/adaptive.py). Archives
    # before format 9 have no such key: 0.
    fresh_bits: int = 0

    def to_header(self, kind: str) -> dict:
        fields = asdict(self)
        if not self.bias_bits:
            del fields["bias_bits"]  # as formats 2-5 recorded them, so profile 1 still matches
        if self.bias_streams == 1:
            del fields["bias_streams"]  # as formats 6-7 recorded them, so profiles 2-4 still match
        if not self.fresh_bits:
            del fields["fresh_bits"]  # as formats 6-8 recorded them, so profiles 2-7 still match
        return {**fields, "kind": kind}


CODING_SETTINGS = CodingSettings()  # without the adaptive bias: streams with vectors, --no-adapt
# The adaptive bias's learning rate, 2^-3 logits a token: of 2^-2..2^-5 the best on 20 KB of
# alice29.txt (float simulation, docs/benchmarks.md §1).
ADAPTIVE_BIAS_BITS = 3
# Streams that share one bias (format 8): on alice29.txt in 4 streams, one bias learning from all
# four instead of one each codes 0.64% fewer bytes (docs/benchmarks.md §1). Four, not every
# stream of a file: a group is the unit that compression journals and torchrun ranks share out.
ADAPTIVE_BIAS_STREAMS = 4
MAX_BIAS_STREAMS = 64
# Tokens not coded yet learn 2^1 times faster (format 9): on 20 KB of alice29.txt (float
# simulation) 2x -0.13%, 4x -0.17%, 8x +0.35%; 2x is the safe side of that optimum.
ADAPTIVE_FRESH_BITS = 1
MAX_FRESH_BITS = 3


def coding_settings(options) -> CodingSettings:
    """How a job's streams are coded: model-only streams learn a bias over the vocabulary as they
    go (memzip/exact/adaptive.py), shared by groups of streams, unless the user said --no-adapt;
    streams with [mem] vectors are coded against the model's own first choice, which is what their
    vectors were fitted for."""
    if options.mem_vectors or not options.adaptive_bias:
        return CODING_SETTINGS
    return CodingSettings(bias_bits=ADAPTIVE_BIAS_BITS, bias_streams=ADAPTIVE_BIAS_STREAMS,
                          fresh_bits=ADAPTIVE_FRESH_BITS)


@dataclass
class CodedRows:
    """What the coder needs of each row of logits, as Python ints."""

    targets: list[int]
    lows: list[int]  # the target's interval [low, high) of the total
    highs: list[int]
    totals: list[int]
    firsts: list[int]  # the model's first choice (largest logit, lowest id on ties)
    first_lows: list[int]
    first_freqs: list[int]

    def select(self, rows: list[int]) -> "CodedRows":
        """The rows `rows`, in that order."""
        return CodedRows(*([column[i] for i in rows] for column in (
            self.targets, self.lows, self.highs, self.totals, self.firsts, self.first_lows, self.first_freqs)))


class Distribution:
    """Integer frequencies from exact logits."""

    def __init__(self, settings: CodingSettings, vocab: int, device):
        self.settings, self.vocab = settings, vocab
        self._table = torch.tensor(tables.exp_table(settings.value_bits, settings.grid_bits, floor=1),
                                   dtype=torch.float64, device=device)
        self._int_table = self._table.to(torch.int64).cpu().numpy()
        if not 0 <= settings.bias_bits <= settings.grid_bits + FRACTION_BITS:
            raise ValueError(f"bias_bits {settings.bias_bits} is outside 0..{settings.grid_bits + FRACTION_BITS}")
        if not 1 <= settings.bias_streams <= (MAX_BIAS_STREAMS if settings.bias_bits else 1):
            raise ValueError(f"bias_streams {settings.bias_streams} is outside 1..{MAX_BIAS_STREAMS}, or set "
                             "without a bias")
        if not 0 <= settings.fresh_bits <= (MAX_FRESH_BITS if settings.bias_bits else 0) \
                or settings.grid_bits + FRACTION_BITS - settings.bias_bits + settings.fresh_bits > 26:
            raise ValueError(f"fresh_bits {settings.fresh_bits} is outside 0..{MAX_FRESH_BITS}, set without a "
                             "bias, or makes a rate above 2^26")
        largest = vocab * int(self._table[0])
        if largest > max_total(REGISTER_BITS) or largest >= 2 ** 53:
            raise ValueError(f"value_bits {settings.value_bits} is too large for a vocabulary of {vocab}")

    def frequencies(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [n, V] float64 -> frequencies [n, V], integers >= 1 held in float64."""
        step = 2.0 ** self.settings.grid_bits
        difference = torch.sub(logits.amax(dim=-1, keepdim=True), logits).mul_(step)  # >= 0
        bucket = difference.to(torch.int64).clamp_(max=self._table.numel() - 1)  # truncation = floor here
        return self._table.index_select(0, bucket.view(-1)).view(logits.shape)

    def cumulative(self, logits: torch.Tensor) -> torch.Tensor:
        """Running sums of the frequencies: token t's interval is [c[t-1], c[t]); exact in float64."""
        return self.frequencies(logits).cumsum_(dim=-1)

    def adaptive_bias(self, biases: int) -> VocabularyBias | None:
        """`biases` biases (one per group of settings.bias_streams streams), all zero, where the
        settings have one."""
        if not self.settings.bias_bits:
            return None
        return VocabularyBias(biases, self.vocab, self.settings.bias_bits, self.settings.grid_bits, self._int_table,
                              self.settings.fresh_bits)

    def rows(self, logits: torch.Tensor, targets: torch.Tensor, bias: VocabularyBias | None = None,
             stream: int = 0) -> CodedRows:
        """What the coder needs of rows of logits [n, V] and their target tokens [n]; with a bias,
        stream `stream`'s, coded in order and learning as it goes."""
        if bias is not None:
            out = bias.coded_rows(stream, logits, targets)
            low, high, total, first, first_low, first_freq = (out[:, k].tolist() for k in range(6))
            return CodedRows(targets.tolist(), low, high, total, first, first_low, first_freq)
        if compiled_rows(logits):
            return self._compiled_rows(logits, targets)
        return self._rows(logits, targets)

    def _compiled_rows(self, logits: torch.Tensor, targets: torch.Tensor) -> CodedRows:
        """_rows' integers in one pass a row (kernels.coded_rows)."""
        lows, highs, totals, firsts, first_lows, first_freqs = (a.tolist() for a in kernels.coded_rows(
            np.ascontiguousarray(logits.numpy()), targets.to(torch.int64).numpy(), self._int_table,
            self.settings.grid_bits))
        return CodedRows(targets.tolist(), lows, highs, totals, firsts, first_lows, first_freqs)

    def _rows(self, logits: torch.Tensor, targets: torch.Tensor) -> CodedRows:
        cumulative = self.cumulative(logits)
        lows, highs = interval(cumulative, targets)
        firsts = logits.argmax(dim=-1)  # the lowest id among equal maxima, on every device
        first_lows, first_highs = interval(cumulative, firsts)
        return CodedRows(targets.tolist(), _ints(lows), _ints(highs), _ints(cumulative[:, -1]), firsts.tolist(),
                         _ints(first_lows), _ints(first_highs - first_lows))


def _ints(x: torch.Tensor) -> list[int]:
    return [int(v) for v in x.to(torch.int64).tolist()]


def _flag_model() -> AdaptiveModel:
    # first choice (0) or not (1): counts start even, grow by 32, are halved past 2^16
    return AdaptiveModel([1, 1], 32, 1 << 16)


class StreamEncoder:
    """Codes one stream's tokens."""

    def __init__(self, kind: str = "distribution"):
        self._coder = ArithmeticEncoder(REGISTER_BITS)
        self._flags = _flag_model() if kind == "greedy" else None
        self.bits = 0.0  # -log2 of the coded probabilities, summed (what the code should cost)
        self.misses = 0  # tokens that were not the model's first choice
        self.first_miss: int | None = None  # the index of the first of them: greedy decoding's prefix
        self._coded = 0

    def code(self, rows: CodedRows) -> None:
        for target, low, high, total, first, first_low, first_freq in zip(
                rows.targets, rows.lows, rows.highs, rows.totals, rows.firsts, rows.first_lows, rows.first_freqs):
            hit = target == first
            self.misses += not hit
            if not hit and self.first_miss is None:
                self.first_miss = self._coded
            self._coded += 1
            if self._flags is not None:
                self._flags.encode(self._coder, 0 if hit else 1)
                if hit:
                    continue
                if target > first:  # the distribution without the first choice
                    low, high = low - first_freq, high - first_freq
                total -= first_freq
            self._coder.encode(low, high, total)
            self.bits += math.log2(total / (high - low))

    def finish(self) -> bytes:
        return self._coder.finish()


class StreamDecoder:
    def __init__(self, data: bytes, kind: str = "distribution"):
        self._coder = ArithmeticDecoder(data, REGISTER_BITS)
        self.greedy = kind == "greedy"
        self._flags = _flag_model() if self.greedy else None

    def first_choice_next(self) -> bool:
        """greedy: whether the next token is the model's first choice (reads its flag)."""
        return self.greedy and self._flags.decode(self._coder) == 0

    def target(self, total: int) -> int:
        return self._coder.target(total)

    def consume(self, low: int, high: int, total: int) -> None:
        self._coder.consume(low, high, total)


def decode_tokens(distribution: Distribution, logits: torch.Tensor, decoders: list[StreamDecoder],
                  bias: VocabularyBias | None = None, streams: list[int] | None = None) -> list[int]:
    """One step of extraction: the token each row's stream codes next, consumed from its coder.
    With a bias, row i is stream streams[i]'s, whose bias then learns the token."""
    if bias is not None:
        search = bias.decode_rows(logits, streams)
        tokens = _decode_step(search, decoders)
        search.learn(tokens)
        return tokens
    search = _CompiledSearch(distribution, logits) if compiled_rows(logits) else _TorchSearch(distribution, logits)
    return _decode_step(search, decoders)


def _decode_step(search, decoders: list[StreamDecoder]) -> list[int]:
    totals, first_lows, first_freqs = search.totals, search.first_lows, search.first_freqs
    tokens = list(search.firsts)
    values, rows = [], []
    for row, decoder in enumerate(decoders):
        if decoder.first_choice_next():
            continue
        if decoder.greedy:  # a miss: coded without the first choice; map the value onto the full sums
            value = decoder.target(totals[row] - first_freqs[row])
            values.append(value + first_freqs[row] if value >= first_lows[row] else value)
        else:
            values.append(decoder.target(totals[row]))
        rows.append(row)
    if not rows:
        return tokens
    for row, token, low, high in zip(rows, *search.find(rows, values)):
        total = totals[row]
        if decoders[row].greedy:
            if token > tokens[row]:
                low, high = low - first_freqs[row], high - first_freqs[row]
            total -= first_freqs[row]
        decoders[row].consume(low, high, total)
        tokens[row] = token
    return tokens


class _TorchSearch:
    """What decode_tokens needs of rows of logits, through torch: cumulative sums over
    [rows, vocab], argmax and searchsorted (any device)."""

    def __init__(self, distribution: Distribution, logits: torch.Tensor):
        self._cumulative, self._device = distribution.cumulative(logits), logits.device
        self.totals = _ints(self._cumulative[:, -1])
        firsts = logits.argmax(dim=-1)
        first_lows, first_highs = interval(self._cumulative, firsts)
        self.firsts, self.first_lows, self.first_freqs = firsts.tolist(), _ints(first_lows), _ints(first_highs - first_lows)

    def find(self, rows: list[int], values: list[int]) -> tuple[list[int], list[int], list[int]]:
        """The token whose interval holds each value of its row, and that interval (lows, highs)."""
        sums = self._cumulative.index_select(0, torch.tensor(rows, device=self._device))
        wanted = torch.tensor(values, dtype=torch.float64, device=self._device)[:, None]
        found = torch.searchsorted(sums, wanted, right=True)[:, 0]
        lows, highs = interval(sums, found)
        return found.tolist(), _ints(lows), _ints(highs)


class _CompiledSearch:
    """_TorchSearch's integers from kernels.decode_rows and kernels.find_tokens: two passes a row
    over its logits instead of [rows, vocab] arrays (CPUs with numba)."""

    def __init__(self, distribution: Distribution, logits: torch.Tensor):
        self._logits = np.ascontiguousarray(logits.numpy())
        self._table, self._grid = distribution._int_table, distribution.settings.grid_bits
        self._peaks, *ints = kernels.decode_rows(self._logits, self._table, self._grid)
        self.totals, self.firsts, self.first_lows, self.first_freqs = (a.tolist() for a in ints)

    def find(self, rows: list[int], values: list[int]) -> tuple[list[int], list[int], list[int]]:
        found = kernels.find_tokens(self._logits, np.array(rows, np.int64), np.array(values, np.int64), self._peaks,
                                    self._table, self._grid)
        return tuple(a.tolist() for a in found)


def ideal_bits(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """-log2 p of the targets under the float softmax of the logits: the model's own cross-entropy,
    for reports (not part of any code)."""
    log_p = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])
    return float(-log_p.sum()) / math.log(2)
