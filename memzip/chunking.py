"""Cutting a token stream into chunks, each to be held by one group of [mem] vectors."""

from __future__ import annotations


def even_chunks(total_tokens: int, chunk_tokens: int) -> list[tuple[int, int]]:
    """(start, end) spans of at most `chunk_tokens`, as even as possible: 100 tokens at 32 per
    chunk give 25+25+25+25, not 32+32+32+4 (a tiny last chunk wastes a whole vector)."""
    if total_tokens == 0:
        return []
    count = -(-total_tokens // chunk_tokens)
    base, extra = divmod(total_tokens, count)
    spans, start = [], 0
    for i in range(count):
        end = start + base + (1 if i < extra else 0)
        spans.append((start, end))
        start = end
    return spans
