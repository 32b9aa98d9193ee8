"""Streams coded block by block and decoded side by side (memzip/exact/streams.py): an archive
made one way extracts any other way."""

from __future__ import annotations


import torch

from memzip.exact.coding import CodingSettings, Distribution
from memzip.exact.streams import _turns, compress_stream, compress_streams, extract_streams


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


def test_streams_sharing_a_bias_learn_from_each_other_and_extract_in_any_batch_of_groups(tiny, reference, compiled):
    """Format 8: groups of 2 streams share one adaptive bias. Coded together (reference, block by
    block), they extract with the compiled path as one batch or one group at a time; stream 1's
    code depends on stream 0's text (the shared bias learnt it), stream 2's (the next group) not."""
    shared = Distribution(CodingSettings(bias_bits=1, bias_streams=2), reference.shape.vocab, reference.device)
    texts = [("Round and round. ", 30), ("Round we go! ", 26), ("Round again? ", 27), ("And round. ", 20)]
    streams = [token_ids(tiny, t, n)[1:].tolist() for t, n in texts]
    start = reference.embed(torch.tensor([0]))

    def coded_groups(streams):
        return [c for g in (0, 2) for c in compress_streams(reference, shared, start[None].expand(2, -1, -1),
                                                            streams[g:g + 2], 8, block=7)]

    coded = coded_groups(streams)
    residuals, lengths = [c.residual for c in coded], [len(s) for s in streams]
    starts = start[None].expand(4, -1, -1)
    assert extract_streams(compiled, shared, starts, residuals, lengths, 8) == streams
    assert [s for g in (0, 2) for s in extract_streams(compiled, shared, starts[g:g + 2], residuals[g:g + 2],
                                                       lengths[g:g + 2], 8)] == streams
    # Another first stream: the second's bytes change with it, the next group's do not.
    other = coded_groups([token_ids(tiny, "Quite another text here. ", 30)[1:].tolist()] + streams[1:])
    assert other[1].residual != coded[1].residual and other[2:] == coded[2:]


def test_turns_give_each_bias_one_row_a_turn():
    assert _turns([0, 1, 2, 3, 4], 2) == [[0, 2, 4], [1, 3]]
    assert _turns([1, 3, 4, 5], 2) == [[0, 1, 2], [3]]  # stream 0 and 2 have finished
    assert _turns([0, 1, 2], 1) == [[0, 1, 2]]
