"""Cutting a token stream into chunks by information, each to be held by one group of [mem]
vectors: what each token costs under the model alone (`token_costs`), and spans within a budget
(`information_chunks`). Chunks by length: memzip/planning.py `even_spans`."""

from __future__ import annotations


def information_chunks(costs: list[float], budget: float, max_tokens: int, min_tokens: int = 1) -> list[tuple[int, int]]:
    """(start, end) spans whose summed cost (nats each token has under the model alone) stays
    within `budget`, at most `max_tokens` long. The paper's finding is that a vector holds a
    roughly constant amount of *information*, not of tokens: easy text gets long chunks, hard
    text short ones. Spans are then evened out pairwise so no chunk is a tiny leftover."""
    spans, start, total = [], 0, 0.0
    for index, cost in enumerate(costs):
        length = index - start
        if length >= min_tokens and (total + cost > budget or length >= max_tokens):
            spans.append((start, index))
            start, total = index, 0.0
        total += cost
    if start < len(costs):
        spans.append((start, len(costs)))
    return spans


def token_costs(model, tokens: list[int], prefix: list[int], window: int = 256) -> list[float]:
    """Cross-entropy (nats) of every token under the model alone, one forward per window, each
    window starting with `prefix` (the context the vectors get). An estimate of what a chunk
    costs: inside a window a token also sees earlier tokens that may fall in the previous chunk,
    so the first tokens of a chunk are charged a little less than they will cost."""
    import torch
    import torch.nn.functional as F

    device = model.get_input_embeddings().weight.device
    costs: list[float] = []
    with torch.no_grad():
        for start in range(0, len(tokens), window):
            piece = tokens[start:start + window]
            ids = torch.tensor([list(prefix) + piece], device=device)
            logits = model(input_ids=ids).logits[0].float()
            # Without a prefix the first token has no context; charge it the uniform cost.
            offset = len(prefix)
            if offset == 0:
                costs.append(float(torch.log(torch.tensor(float(logits.shape[-1])))))
                predicted, target = logits[:-1], ids[0, 1:]
            else:
                predicted, target = logits[offset - 1:-1], ids[0, offset:]
            costs.extend(F.cross_entropy(predicted, target, reduction="none").tolist())
    return costs
