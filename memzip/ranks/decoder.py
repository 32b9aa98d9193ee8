"""Greedy decoding steered by the archive: the one code path that compression and extraction share.

Every chunk is decoded from its start (the layout's fixed tokens around the chunk's [mem]
vectors, if it has any) with the model's KV cache, one token per step, a group of chunks at a
time. At each step:

- compression knows the true token and *names* it (memzip/ranks/ranking.py), producing the choices
  the archive stores;
- extraction reads those choices and *picks* the token they name.

Both feed the model exactly the same tokens in exactly the same batch shapes, so on the same
machine extraction sees the very logits compression saw, and elsewhere it tolerates the
rounding differences the archive's margin allows.

Why not trust teacher-forced training instead? Accuracy 1.0 under teacher forcing does not mean
greedy decoding reproduces the text: the full-sequence forward of training and this incremental
forward differ in low-order bits, and near-ties flip. Running this decoder at compression time
is what makes extraction exact by construction.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from memzip.format.residual import Choices
from memzip.layout import Layout
from memzip.ranks.ranking import name_tokens, pick_tokens


@dataclass
class GroupDecode:
    tokens: list[list[int]]  # per chunk
    choices: Choices  # in decoding order (step by step, chunk by chunk)
    misses: list[int]  # per chunk: tokens that were not the model's first choice (rank > 0)
    ce_bits: list[float] = field(default_factory=list)  # per chunk, compression only: -log2 p(token)


def start_embeddings(model, batch: int, layout: Layout, vectors: torch.Tensor | None) -> torch.Tensor:
    """[batch, positions, d]: prefix embeddings, the vectors (if any), infix embeddings."""
    embed = model.get_input_embeddings()
    device, dtype = embed.weight.device, embed.weight.dtype

    def tokens(ids):
        return embed(torch.tensor(list(ids), dtype=torch.long, device=device))[None].expand(batch, -1, -1)

    parts = [tokens(layout.prefix)]
    if vectors is not None:
        parts.append(vectors.to(device=device, dtype=dtype))
    parts.append(tokens(layout.infix))
    start = torch.cat(parts, dim=1)
    if start.shape[1] == 0:
        raise ValueError("a chunk needs at least one start position (a layout token or a vector)")
    return start


@torch.no_grad()
def decode_group(model, lengths: list[int], layout: Layout, margin: float, *, vectors: torch.Tensor | None = None,
                 targets: list[list[int]] | None = None, choices: Choices | None = None,
                 where: str = "group") -> GroupDecode:
    """Decode one group of chunks: with `targets` (compression) name them and return the
    choices; with `choices` (extraction) return the tokens they name. `vectors`: [B, M, d]."""
    assert (targets is None) != (choices is None)
    batch, steps = len(lengths), max(lengths, default=0)
    if steps == 0:
        return GroupDecode([[] for _ in lengths], Choices(), [0] * batch, [0.0] * batch)
    produced: list[list[int]] = [[] for _ in range(batch)]
    stream = Choices() if targets is not None else choices  # filled (compression) or read (extraction)
    ce = [0.0] * batch
    misses = [0] * batch
    cursor = 0  # choices of earlier steps
    cache_arg = _cache_argument(model)
    output = model(inputs_embeds=start_embeddings(model, batch, layout, vectors), use_cache=True, logits_to_keep=1)
    for position in range(steps):
        logits = output.logits[:, -1, :].float()
        active = [b for b in range(batch) if position < lengths[b]]
        rows = logits[active] if len(active) < batch else logits
        here = slice(cursor, cursor + len(active))  # this step's choices
        cursor = here.stop
        if targets is not None:
            wanted = [targets[b][position] for b in active]
            name_tokens(rows, wanted, margin, into=stream)
            log_probs = F.log_softmax(rows, dim=-1).gather(1, torch.tensor(wanted, device=rows.device)[:, None])
            for b, lp in zip(active, log_probs[:, 0].tolist()):
                ce[b] -= lp / math.log(2)
            chosen = wanted
        else:
            chosen = pick_tokens(rows, stream.ranks[here], stream.bits[here], stream.hashes[here], margin,
                                 where=f"{where}, token {position}")
        for b, rank in zip(active, stream.ranks[here]):
            misses[b] += rank > 0
        next_ids = [0] * batch  # finished chunks keep stepping so the batch shape never changes
        for b, token in zip(active, chosen):
            produced[b].append(token)
            next_ids[b] = token
        if position + 1 == steps:
            break
        output = model(input_ids=torch.tensor(next_ids, device=logits.device)[:, None], use_cache=True,
                       logits_to_keep=1, **{cache_arg: _cache_of(output)})
    return GroupDecode(produced, stream, misses, ce)


def chunk_choices(choices: Choices, lengths: list[int]) -> list[Choices]:
    """A group's choices (in decoding order: step by step, then chunk by chunk) split per chunk."""
    out, cursor = [Choices() for _ in lengths], 0
    for position in range(max(lengths, default=0)):
        for b, length in enumerate(lengths):
            if position < length:
                out[b].append(choices.ranks[cursor], choices.bits[cursor], choices.hashes[cursor])
                cursor += 1
    return out


def _cache_argument(model) -> str:
    """transformers renamed `past_key_values` to `cache` (5.2x); accept both."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(output):
    cache = output.get("cache")
    return cache if cache is not None else output.get("past_key_values")


def greedy_misses(decoded: GroupDecode, lengths: list[int], first_fed: bool) -> list[int]:
    """Per chunk, the scored tokens greedy decoding gets wrong. In the authors' layout the first
    token is fed, not predicted (an archive still codes it), so it is not counted."""
    skip = 1 if first_fed else 0
    return [sum(r > 0 for r in c.ranks[skip:]) for c in chunk_choices(decoded.choices, lengths)]
