"""Naming a token by where it stands in the model's logits, so that the name survives rounding.

Compression knows the text and sees the model's logits at every decoding step; extraction sees
the logits only. The archive tells extraction which token to take as a *choice* (rank r, bits b,
hash h; stored by memzip/format/residual.py):

- r: how many tokens have a larger logit than the chosen token t;
- b, h: 0 bits when no other token's logit lies within 2·margin of t's; otherwise the shortest
  prefix of `token_hash(t)` that no such token shares.

Extraction takes v, the (r+1)-th largest of its own logits, gathers the tokens whose logits lie
within `margin` of v, and keeps the one whose hash starts with h (with b = 0 it is the only one).
If extraction's logits differ from compression's by less than margin/2 each (another machine,
kernel or library version rounds differently), v is within margin/2 of t's logit, t is
gathered, and everything gathered was within 2·margin of t at compression, so the hash tells
it apart: the same token comes back. Most tokens are the model's clear first choice (r = 0,
b = 0), which the arithmetic coder stores in a small fraction of a bit.

Why not store a correction only where greedy decoding goes wrong? Near-ties: a token that led
by 1e-4 at compression may trail on the next machine. And why not code the model's
probabilities directly, as llama-zip does? The coder would need bit-identical probabilities on
both sides, which different hardware does not give; ranks and hashes need only the order.
"""

from __future__ import annotations

import functools

import torch

from memzip.errors import ModelOutputError, VerificationError
from memzip.format.residual import HASH_BITS, Choices, token_hash


@functools.lru_cache(maxsize=8)
def _hashes(vocab_size: int, device: torch.device) -> torch.Tensor:
    """token_hash of every token id, as int64 (the same function as the format's, vectorized)."""
    ids = torch.arange(vocab_size, dtype=torch.int64)
    table = (ids * token_hash(1)) & 0xFFFFFFFF
    return table.to(device)


def name_tokens(logits: torch.Tensor, targets: list[int], margin: float, into: Choices) -> None:
    """Append the choice that names targets[i] in logits[i] (float32 [B, V]) for every row."""
    if not bool(torch.isfinite(logits).all()):
        raise ModelOutputError("the model produced non-finite logits (NaN or infinity)",
                               hint="Run the model in float32 (--dtype float32).")
    target = torch.tensor(targets, device=logits.device)
    true = logits.gather(1, target[:, None])
    ranks = (logits > true).sum(dim=1).tolist()
    near = (logits - true).abs() <= 2 * margin  # t itself included
    crowded = (near.sum(dim=1) > 1).tolist()
    hashes = _hashes(logits.shape[1], logits.device)
    for row, (rank, t) in enumerate(zip(ranks, targets)):
        if not crowded[row]:
            into.append(rank, 0, 0)
            continue
        others = hashes[near[row].nonzero().flatten()]
        differing = others ^ token_hash(t)
        closest = int(differing[differing != 0].min())  # the other hash sharing the longest prefix
        bits = HASH_BITS + 1 - closest.bit_length()
        into.append(rank, bits, token_hash(t) >> (HASH_BITS - bits))


def pick_tokens(logits: torch.Tensor, ranks: list[int], bits: list[int], hashes: list[int], margin: float,
                where: str) -> list[int]:
    """The tokens that choices name in logits (float32 [B, V]), one per row."""
    picked = logits.argmax(dim=1).tolist()  # the answer wherever r = 0 and b = 0
    hard = [row for row, (rank, b) in enumerate(zip(ranks, bits)) if rank or b]
    if not hard:
        return picked
    # v: the (r+1)-th largest logit of each hard row (the token itself when b = 0)
    values = []
    for row in hard:
        top = logits[row].topk(ranks[row] + 1)
        values.append(top.values[-1])
        picked[row] = int(top.indices[-1])
    hashed = [i for i, row in enumerate(hard) if bits[row]]
    if hashed:
        rows = torch.tensor([hard[i] for i in hashed], device=logits.device)
        value = torch.stack([values[i] for i in hashed])[:, None]
        shift = torch.tensor([HASH_BITS - bits[hard[i]] for i in hashed], device=logits.device)[:, None]
        wanted = torch.tensor([hashes[hard[i]] for i in hashed], device=logits.device)[:, None]
        table = _hashes(logits.shape[1], logits.device)[None]
        # one dense mask for every hard row at once: within the margin of v, with the hash prefix
        fits = ((logits[rows] - value).abs() <= margin) & ((table >> shift) == wanted)
        counts = fits.sum(dim=1).tolist()
        found = fits.to(torch.uint8).argmax(dim=1).tolist()
        for i, count, token in zip(hashed, counts, found):
            if count != 1:
                raise VerificationError(
                    f"{where}: the model's logits here differ from those at compression by more than "
                    f"the archive's margin ({margin:g}); {count} tokens fit the stored choice")
            picked[hard[i]] = token
    return picked
