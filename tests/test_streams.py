"""Streams coded block by block and decoded side by side (memzip/exact/streams.py): an archive
made one way extracts any other way."""

from __future__ import annotations


import torch

from memzip.exact.coding import CodingSettings, Distribution
from memzip.exact.streams import compress_stream, extract_streams


from exact_helpers import token_ids


def test_an_archive_made_one_way_extracts_any_other_way(tiny, reference, compiled):
    """Compressed with one thread, block after block, by the reference; extracted by the compiled
    path with two threads, in batches of one and of three, step by step: the same tokens."""
    distribution = Distribution(CodingSettings(), reference.shape.vocab, reference.device)
    streams = [token_ids(tiny, t, n)[1:].tolist() for t, n in (("First stream. ", 30), ("Second! ", 25),
                                                             ("Third one? ", 28))]
    start = reference.embed(torch.tensor([0]))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        coded = [compress_stream(reference, distribution, start, s, 8, block=7) for s in streams]
        torch.set_num_threads(2)
        residuals, lengths = [c.residual for c in coded], [len(s) for s in streams]
        starts = start[None].expand(3, -1, -1)
        assert extract_streams(compiled, distribution, starts, residuals, lengths, 8) == streams
        assert [extract_streams(compiled, distribution, starts[i:i + 1], residuals[i:i + 1], lengths[i:i + 1], 8)[0]
                for i in range(3)] == streams
    finally:
        torch.set_num_threads(threads)
