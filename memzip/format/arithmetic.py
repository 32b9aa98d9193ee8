"""Integer arithmetic coding: the bit-exact heart of the residual stream (docs/format.md §5).

Everything here is integer arithmetic on Python ints, so a stream decodes to the same symbols on
every machine and every Python. Two parts:

- `ArithmeticEncoder` / `ArithmeticDecoder`: a binary arithmetic coder (the classic
  low / high / pending-bits scheme of Witten, Neal and Cleary) over integer frequencies, with
  32-bit registers (format 2's residual) or 64-bit ones (format 3's model distributions, whose
  totals reach 2^46).
- `AdaptiveModel`: symbol counts that start at a given prior, grow by a fixed step as symbols are
  seen and are halved when their total passes a limit, so the code follows the file's statistics.

Numbers too large for an alphabet are coded as a *bucket* (an adaptive symbol) plus raw extra
bits, as DEFLATE codes its lengths: `bucket_of` / `number_of`.
"""

from __future__ import annotations

# The coder is exact while every frequency total is at most a quarter of the register range (its
# range never falls below a quarter after renormalising, so every symbol keeps a non-empty
# interval): 2^30 for 32-bit registers, 2^62 for 64-bit ones.
MAX_TOTAL = 1 << 30
_RAW_CHUNK = 16  # raw bits are coded at most this many at a time


def max_total(register_bits: int) -> int:
    return 1 << (register_bits - 2)


class ArithmeticEncoder:
    def __init__(self, register_bits: int = 32) -> None:
        self._full = (1 << register_bits) - 1
        self._half, self._quarter = 1 << (register_bits - 1), 1 << (register_bits - 2)
        self._low, self._high, self._pending = 0, self._full, 0
        self._bits: list[int] = []

    def encode(self, low: int, high: int, total: int) -> None:
        """Code the interval [low, high) of [0, total)."""
        span = self._high - self._low + 1
        self._high = self._low + span * high // total - 1
        self._low = self._low + span * low // total
        half, quarter = self._half, self._quarter
        while True:
            if self._high < half:
                self._emit(0)
            elif self._low >= half:
                self._emit(1)
                self._low -= half
                self._high -= half
            elif self._low >= quarter and self._high < half + quarter:
                self._pending += 1
                self._low -= quarter
                self._high -= quarter
            else:
                break
            self._low <<= 1
            self._high = (self._high << 1) | 1

    def encode_raw(self, value: int, bits: int) -> None:
        """`bits` raw bits of `value`, most significant first (each costs exactly one bit)."""
        while bits > 0:
            take = min(bits, _RAW_CHUNK)
            bits -= take
            part = (value >> bits) & ((1 << take) - 1)
            self.encode(part, part + 1, 1 << take)

    def _emit(self, bit: int) -> None:
        self._bits.append(bit)
        if self._pending:
            self._bits.extend([bit ^ 1] * self._pending)
            self._pending = 0

    def finish(self) -> bytes:
        """The coded bytes. Two more bits select a point inside the final interval; the decoder
        reads zero bits past the end, so trailing zero bytes are dropped."""
        self._pending += 1
        self._emit(0 if self._low < self._quarter else 1)
        bits = self._bits
        out = bytearray((len(bits) + 7) // 8)
        for i, bit in enumerate(bits):
            if bit:
                out[i >> 3] |= 0x80 >> (i & 7)
        return bytes(out).rstrip(b"\0")


class ArithmeticDecoder:
    def __init__(self, data: bytes, register_bits: int = 32) -> None:
        self._data = data
        self._end = 8 * len(data)
        self._position = 0  # next bit to read; bits past the end read as 0
        full = (1 << register_bits) - 1
        self._half, self._quarter = 1 << (register_bits - 1), 1 << (register_bits - 2)
        self._low, self._high, self._code = 0, full, 0
        for _ in range(register_bits):
            self._code = (self._code << 1) | self._bit()

    def _bit(self) -> int:
        i = self._position
        self._position += 1
        if i >= self._end:
            return 0
        return (self._data[i >> 3] >> (7 - (i & 7))) & 1

    def target(self, total: int) -> int:
        """Where the coded point falls in [0, total): the caller finds the symbol whose interval
        holds it, then calls `consume` with that interval."""
        span = self._high - self._low + 1
        return ((self._code - self._low + 1) * total - 1) // span

    def consume(self, low: int, high: int, total: int) -> None:
        span = self._high - self._low + 1
        self._high = self._low + span * high // total - 1
        self._low = self._low + span * low // total
        half, quarter = self._half, self._quarter
        while True:
            if self._high < half:
                pass
            elif self._low >= half:
                self._low -= half
                self._high -= half
                self._code -= half
            elif self._low >= quarter and self._high < half + quarter:
                self._low -= quarter
                self._high -= quarter
                self._code -= quarter
            else:
                break
            self._low <<= 1
            self._high = (self._high << 1) | 1
            self._code = (self._code << 1) | self._bit()

    def decode_raw(self, bits: int) -> int:
        value = 0
        while bits > 0:
            take = min(bits, _RAW_CHUNK)
            bits -= take
            part = self.target(1 << take)
            self.consume(part, part + 1, 1 << take)
            value = (value << take) | part
        return value


class AdaptiveModel:
    """Counts of the symbols 0..len(prior)-1. Each starts at its prior count; a coded symbol adds
    `step`; when the total passes `limit` every count is halved (rounding up, so none is 0)."""

    def __init__(self, prior: list[int], step: int, limit: int) -> None:
        assert all(c >= 1 for c in prior) and sum(prior) <= limit <= MAX_TOTAL
        self.counts = list(prior)
        self.total = sum(self.counts)
        self.step, self.limit = step, limit

    def encode(self, coder: ArithmeticEncoder, symbol: int) -> None:
        low = sum(self.counts[:symbol])
        coder.encode(low, low + self.counts[symbol], self.total)
        self._update(symbol)

    def decode(self, coder: ArithmeticDecoder) -> int:
        value = coder.target(self.total)
        low = 0
        for symbol, count in enumerate(self.counts):
            if value < low + count:
                coder.consume(low, low + count, self.total)
                self._update(symbol)
                return symbol
            low += count
        raise AssertionError("unreachable: the target is always below the total")

    def _update(self, symbol: int) -> None:
        self.counts[symbol] += self.step
        self.total += self.step
        if self.total > self.limit:
            self.counts = [(c + 1) // 2 for c in self.counts]
            self.total = sum(self.counts)


# --- numbers as a bucket and extra bits -----------------------------------------------------------
# Buckets 0..3 are the numbers 0..3. From 4 on, bucket 2e + 2 + h (e >= 1, h in {0, 1}) holds the
# 2^e numbers from (2 + h) * 2^e on, told apart by e extra bits: 4-5 | 6-7 | 8-11 | 12-15 | 16-23 ...

_DIRECT = 4


def bucket_of(n: int) -> tuple[int, int, int]:
    """(bucket, number of extra bits, value of the extra bits) of n >= 0."""
    if n < _DIRECT:
        return n, 0, 0
    e = n.bit_length() - 2
    h = (n >> e) & 1
    return 2 * e + 2 + h, e, n - ((2 + h) << e)


def extra_bits(bucket: int) -> int:
    return 0 if bucket < _DIRECT else (bucket - 2) // 2


def number_of(bucket: int, extra: int) -> int:
    if bucket < _DIRECT:
        return bucket
    e, h = (bucket - 2) // 2, bucket % 2
    return ((2 + h) << e) + extra


def buckets_below(limit: int) -> int:
    """How many buckets the numbers 0..limit-1 need."""
    return bucket_of(max(0, limit - 1))[0] + 1
