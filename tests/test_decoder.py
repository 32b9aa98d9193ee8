"""The decoder shared by compression and extraction: naming the true tokens and picking the named
tokens are inverse, in any batch shape, with or without vectors and layout tokens."""

import pytest
import torch

from memzip.ranks.decoder import chunk_choices, decode_group, greedy_misses, start_embeddings
from memzip.layout import Layout

CHUNKS = [[5, 9, 12, 40, 7], [3, 3, 3], [100, 2, 8, 8, 8, 8, 1]]


@pytest.mark.parametrize("layout", [Layout(prefix=(0,)), Layout(infix=(1, 2)), Layout(prefix=(0,), infix=(4,))])
@pytest.mark.parametrize("with_vectors", [False, True])
def test_naming_then_picking_gives_the_chunks_back(tiny, layout, with_vectors):
    vectors = torch.randn(len(CHUNKS), 2, tiny.d_model, generator=torch.Generator().manual_seed(0)) if with_vectors else None
    lengths = [len(c) for c in CHUNKS]
    named = decode_group(tiny.model, lengths, layout, 0.01, vectors=vectors, targets=CHUNKS)
    assert named.tokens == CHUNKS
    assert len(named.choices) == sum(lengths)
    picked = decode_group(tiny.model, lengths, layout, 0.01, vectors=vectors, choices=named.choices)
    assert picked.tokens == CHUNKS
    per_chunk = chunk_choices(named.choices, lengths)
    assert picked.misses == named.misses == [sum(1 for r in c.ranks if r) for c in per_chunk]
    # each chunk decoded alone from its own choices gives the same tokens: the split is right
    for i, chunk in enumerate(CHUNKS):
        alone = decode_group(tiny.model, [len(chunk)], layout, 0.01, choices=per_chunk[i],
                             vectors=None if vectors is None else vectors[i:i + 1])
        assert alone.tokens == [chunk]


def test_cross_entropy_is_what_the_model_assigns(tiny):
    chunk = CHUNKS[0]
    named = decode_group(tiny.model, [len(chunk)], Layout(prefix=(0,)), 0.01, targets=[chunk])
    with torch.no_grad():
        logits = tiny.model(input_ids=torch.tensor([[0] + chunk])).logits[0, :-1].float()
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor(chunk), reduction="sum").item() / torch.log(torch.tensor(2.0)).item()
    assert abs(named.ce_bits[0] - expected) < 1e-3


def test_an_empty_group_decodes_to_nothing(tiny):
    assert decode_group(tiny.model, [], Layout(prefix=(0,)), 0.01, targets=[]).tokens == []


def test_a_chunk_needs_a_start_position(tiny):
    with pytest.raises(ValueError, match="start position"):
        start_embeddings(tiny.model, 1, Layout(), None)


def test_start_is_prefix_then_vectors_then_infix(tiny):
    vectors = torch.full((1, 2, tiny.d_model), 7.0)
    start = start_embeddings(tiny.model, 1, Layout(prefix=(3,), infix=(4, 5)), vectors)
    embed = tiny.model.get_input_embeddings().weight
    assert start.shape == (1, 5, tiny.d_model)
    assert torch.equal(start[0, 0], embed[3]) and torch.equal(start[0, 1:3], vectors[0])
    assert torch.equal(start[0, 3], embed[4]) and torch.equal(start[0, 4], embed[5])


def test_the_fed_first_token_does_not_count_as_a_miss(tiny):
    chunk = [5, 6, 7, 8]
    decoded = decode_group(tiny.model, [4], Layout(prefix=(0,)), 0.01, targets=[chunk])
    ranks = [r for r in decoded.choices.ranks]
    assert greedy_misses(decoded, [4], first_fed=False) == [sum(r > 0 for r in ranks)]
    assert greedy_misses(decoded, [4], first_fed=True) == [sum(r > 0 for r in ranks[1:])]
