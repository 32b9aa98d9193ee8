"""Greedy decoding from [mem] vectors: the one code path that compression and extraction share.

Why one path: teacher-forced accuracy 1.0 does not mean greedy decoding reproduces the text
(the full-sequence forward used in training and the incremental KV-cache forward used here
differ in low-order bits, and near-ties flip). So compression runs *this* decoder on the final
vectors, with the true tokens known, and records a correction wherever the decoder would go
wrong. Extraction runs the same decoder with those corrections and feeds the model exactly the
same tokens in exactly the same batch shapes, so it reproduces the text by construction.

A correction *forces* the token at that step and decoding continues from it (re-anchoring);
patching the output afterwards would not work, since one wrong token derails all later ones.
Positions where the right token leads by less than `force_margin` are forced too, so that
another machine's rounding cannot flip them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ChunkDecode:
    tokens: list[int]
    corrections: dict[int, int]  # position -> forced token


@torch.no_grad()
def greedy_decode(
    model,
    vectors: torch.Tensor,
    lengths: list[int],
    corrections: list[dict[int, int]] | None = None,
    targets: list[list[int]] | None = None,
    force_margin: float = 0.0,
    prefix: list[int] = (),
) -> list[ChunkDecode]:
    """Decode one group of chunks together.

    vectors: [B, M, D] in the model's dtype and device. lengths: tokens per chunk.
    Extraction passes `corrections` (from the archive). Compression passes `targets` (the true
    tokens) and gets back the corrections that make decoding exact. `prefix`: fixed token ids
    before the vectors (the archive's decode.prefix_tokens).
    """
    batch = vectors.shape[0]
    assert len(lengths) == batch
    known = corrections if corrections is not None else [{} for _ in range(batch)]
    found: list[dict[int, int]] = [{} for _ in range(batch)]
    produced: list[list[int]] = [[] for _ in range(batch)]
    steps = max(lengths, default=0)
    if steps == 0:
        return []

    embed = model.get_input_embeddings()
    prefix_ids = torch.tensor(list(prefix), dtype=torch.long, device=vectors.device)
    prefix_embeds = embed(prefix_ids)[None].expand(batch, -1, -1).to(vectors.dtype)
    output = model(inputs_embeds=torch.cat([prefix_embeds, vectors], dim=1), use_cache=True, logits_to_keep=1)
    cache = output.past_key_values
    logits = output.logits[:, -1, :].float()
    for position in range(steps):
        chosen = torch.argmax(logits, dim=-1)  # first index on ties: deterministic
        chosen_list = chosen.tolist()
        if targets is not None:
            margins = _target_margins(logits, targets, position)
        for b in range(batch):
            if position >= lengths[b]:
                continue  # finished chunks keep stepping so the batch shape never changes
            if targets is not None:
                want = targets[b][position]
                if chosen_list[b] != want or margins[b] < force_margin:
                    found[b][position] = want
                    chosen_list[b] = want
            elif position in known[b]:
                chosen_list[b] = known[b][position]
            produced[b].append(chosen_list[b])
        if position + 1 == steps:
            break
        next_ids = torch.tensor(chosen_list, device=vectors.device)[:, None]
        output = model(input_ids=next_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache = output.past_key_values
        logits = output.logits[:, -1, :].float()

    results = []
    for b in range(batch):
        results.append(ChunkDecode(produced[b], found[b] if targets is not None else dict(known[b])))
    return results


def _target_margins(logits: torch.Tensor, targets: list[list[int]], position: int) -> list[float]:
    """logit(true token) - best other logit, per chunk (inf for finished chunks)."""
    index = torch.tensor([t[position] if position < len(t) else 0 for t in targets], device=logits.device)
    true = logits.gather(1, index[:, None])[:, 0]
    others = logits.scatter(1, index[:, None], float("-inf")).max(dim=1).values
    margins = (true - others).tolist()
    return [m if position < len(t) else float("inf") for m, t in zip(margins, targets)]
