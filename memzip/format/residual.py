"""The residual stream: which candidate the decoder takes at each token (docs/format.md §5).

Decoding is greedy decoding steered by the archive. At every step the decoder is told which
token to take, as three integers that compression computed from the model's logits
(memzip/ranks/ranking.py says how they are chosen and resolved):

- rank r: how many tokens had a larger logit than the chosen one (0: the model's top choice);
- bits b: 0 when no other token's logit was within twice the archive's margin of the chosen
  one's, else how many bits of `token_hash` tell the chosen token apart from all such tokens;
- hash h: the top b bits of `token_hash(token)`.

A decoder whose logits differ from the compressor's by less than half the margin finds the same
token from these, which is what lets an archive made on one machine extract on another.

This module turns a sequence of such choices into bytes and back with the adaptive arithmetic
coder of `arithmetic.py`: r as a bucket (one adaptive model) plus raw extra bits, b with an
adaptive model chosen by r's bucket (near-ties are common among low-ranked tokens, rare at the
top), h as b raw bits. Pure integers: no torch, no floating point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memzip.errors import PayloadFormatError
from memzip.format.arithmetic import (
    AdaptiveModel,
    ArithmeticDecoder,
    ArithmeticEncoder,
    bucket_of,
    buckets_below,
    extra_bits,
    number_of,
)

HASH_BITS = 32
_GOLDEN = 0x9E3779B1  # odd, so token -> token * _GOLDEN mod 2^32 is one-to-one below 2^32

# Adaptive model settings (part of the format: changing them changes every stream).
_PRIOR_TOP = 16  # prior count of bucket 0 / b = 0; every other symbol starts at 1
_STEP = 24
_LIMIT = 1 << 16
_BITS_CONTEXTS = 12  # b is coded with the model of min(rank bucket, 11)


def token_hash(token: int) -> int:
    """A 32-bit hash of a token id, one-to-one for ids below 2^32 (Fibonacci hashing)."""
    return (token * _GOLDEN) & 0xFFFFFFFF


def hash_prefix(token: int, bits: int) -> int:
    """The top `bits` bits of token_hash(token)."""
    return token_hash(token) >> (HASH_BITS - bits) if bits else 0


@dataclass
class Choices:
    """Choices in decoding order: step by step, and within a step chunk by chunk."""

    ranks: list[int] = field(default_factory=list)
    bits: list[int] = field(default_factory=list)
    hashes: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ranks)

    def append(self, rank: int, bits: int, hash_value: int) -> None:
        self.ranks.append(rank)
        self.bits.append(bits)
        self.hashes.append(hash_value)


class _Models:
    def __init__(self, vocab_size: int):
        buckets = buckets_below(vocab_size)
        self.rank = AdaptiveModel([_PRIOR_TOP] + [1] * (buckets - 1), _STEP, _LIMIT)
        self.bits = [AdaptiveModel([_PRIOR_TOP] + [1] * HASH_BITS, _STEP, _LIMIT) for _ in range(_BITS_CONTEXTS)]


def encode_choices(choices: Choices, vocab_size: int) -> bytes:
    coder, models = ArithmeticEncoder(), _Models(vocab_size)
    for rank, bits, hash_value in zip(choices.ranks, choices.bits, choices.hashes):
        if not (0 <= rank < vocab_size and 0 <= bits <= HASH_BITS and 0 <= hash_value < (1 << bits)):
            raise ValueError(f"not a valid choice: rank {rank}, bits {bits}, hash {hash_value}")
        bucket, extra, value = bucket_of(rank)
        models.rank.encode(coder, bucket)
        coder.encode_raw(value, extra)
        models.bits[min(bucket, _BITS_CONTEXTS - 1)].encode(coder, bits)
        coder.encode_raw(hash_value, bits)
    return coder.finish()


def decode_choices(data: bytes, count: int, vocab_size: int, where: str = "residual") -> Choices:
    """The first `count` choices of a stream. A damaged stream decodes to garbage that is caught
    here when a rank falls outside the vocabulary, else by the group digest after decoding."""
    coder, models = ArithmeticDecoder(data), _Models(vocab_size)
    out = Choices()
    for _ in range(count):
        bucket = models.rank.decode(coder)
        rank = number_of(bucket, coder.decode_raw(extra_bits(bucket)))
        if rank >= vocab_size:
            raise PayloadFormatError(f"the {where} stream is damaged: rank {rank} is outside the vocabulary")
        bits = models.bits[min(bucket, _BITS_CONTEXTS - 1)].decode(coder)
        out.append(rank, bits, coder.decode_raw(bits))
    return out
