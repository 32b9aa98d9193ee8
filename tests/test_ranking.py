"""Choices name a token so that another machine's rounding cannot change it (memzip/ranks/ranking.py,
docs/format.md §5.1): whatever the logits, the token comes back when every logit moved by less
than half the margin, and ties or crowds of near-equal logits cost hash bits, never correctness."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memzip.errors import ModelOutputError, VerificationError
from memzip.format.residual import Choices, token_hash
from memzip.ranks.ranking import name_tokens, pick_tokens


def name(logits, targets, margin):
    choices = Choices()
    name_tokens(logits, targets, margin, into=choices)
    return choices


def pick(logits, choices, margin):
    return pick_tokens(logits, choices.ranks, choices.bits, choices.hashes, margin, where="test")


def crowded_logits(seed: int, rows: int, vocab: int) -> torch.Tensor:
    """Logits with exact ties and values packed closer than any margin below."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, vocab, generator=g) * 3
    logits[:, : vocab // 4] = torch.round(logits[:, : vocab // 4] * 20) / 20  # many ties, 0.05 apart
    return logits


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), margin=st.sampled_from([0.0, 0.001, 0.01, 0.1, 0.5]),
       vocab=st.sampled_from([2, 7, 400, 5000]))
def test_every_token_comes_back_from_logits_moved_less_than_half_the_margin(seed, margin, vocab):
    logits = crowded_logits(seed, 4, vocab)
    g = torch.Generator().manual_seed(seed + 1)
    targets = torch.randint(vocab, (4,), generator=g).tolist()
    choices = name(logits, targets, margin)
    assert pick(logits, choices, margin) == targets  # the same logits
    if margin:
        moved = logits + (torch.rand(logits.shape, generator=g) * 2 - 1) * (0.499 * margin)
        assert pick(moved, choices, margin) == targets


def test_the_top_token_with_a_clear_lead_costs_no_hash_bits():
    logits = torch.tensor([[0.0, 5.0, 1.0, 4.0]])
    choices = name(logits, [1], margin=0.49)  # the runner-up is 1.0 behind: more than 2 x margin
    assert (choices.ranks, choices.bits, choices.hashes) == ([0], [0], [0])
    assert name(logits, [1], margin=0.5).bits[0] > 0  # exactly 2 x margin behind: crowded


def test_rank_counts_the_tokens_above():
    logits = torch.tensor([[0.0, 5.0, 1.0, 4.0]])
    assert name(logits, [2], margin=0.1).ranks == [2]
    assert pick(logits, name(logits, [2], margin=0.1), 0.1) == [2]


def test_near_ties_are_told_apart_by_the_shortest_distinguishing_hash_prefix():
    logits = torch.tensor([[3.0, 3.001, -5.0, 2.9995]])
    choices = name(logits, [0], margin=0.01)
    bits = choices.bits[0]
    assert bits > 0 and choices.hashes[0] == token_hash(0) >> (32 - bits)
    rivals = [1, 3]  # within 2 x margin of token 0's logit
    assert all(token_hash(r) >> (32 - bits) != choices.hashes[0] for r in rivals)
    shorter = bits - 1  # the prefix is the shortest that works
    assert shorter == 0 or any(token_hash(r) >> (32 - shorter) == token_hash(0) >> (32 - shorter) for r in rivals)


def test_exact_ties_decode_on_the_same_logits_even_with_margin_0():
    logits = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    for target in range(4):
        assert pick(logits, name(logits, [target], margin=0.0), 0.0) == [target]


def test_logits_moved_by_more_than_the_margin_are_detected_or_fail_later():
    """Beyond the guarantee a choice may resolve to no token (an error here) or another one (the
    group digest catches that); it never resolves ambiguously."""
    logits = torch.tensor([[3.0, 3.001, -5.0, 2.9995]])
    choices = name(logits, [0], margin=0.01)
    far = torch.tensor([[3.0, 3.001, -5.0, 2.9995]]) + torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    far[0, 0] -= 1.0  # token 0 fell far below its rivals
    try:
        assert pick(far, choices, 0.01) != [0]
    except VerificationError as exc:
        assert "margin" in str(exc)


def test_non_finite_logits_are_refused():
    with pytest.raises(ModelOutputError):
        name(torch.tensor([[0.0, float("nan")]]), [0], margin=0.01)
