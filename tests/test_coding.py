"""The coder's frequencies and streams (memzip/exact/coding.py): integers of at least one, the
compiled passes and torch's calls agreeing, a stream decoding what was coded."""

from __future__ import annotations


import pytest
import torch

from memzip.exact.coding import CodingSettings, Distribution, StreamDecoder, StreamEncoder, decode_tokens




def test_frequencies_are_integers_at_least_one():
    distribution = Distribution(CodingSettings(), 1000, "cpu")
    logits = torch.randn(5, 1000) * 8
    f = distribution.frequencies(logits)
    assert torch.equal(f, torch.round(f)) and f.min() >= 1 and f.max() <= 2 ** 28
    assert int(f.argmax(dim=1)[0]) == int(logits.argmax(dim=1)[0])


def test_the_compiled_coder_rows_and_torch_s_calls_agree():
    """Distribution.rows in one compiled pass (kernels.coded_rows) and in torch's calls: targets at
    either end of the vocabulary and at the first choice, tied maxima, rows of equal logits and
    differences beyond the table."""
    generator = torch.Generator().manual_seed(3)
    distribution = Distribution(CodingSettings(), 3000, "cpu")
    logits = torch.randn(64, 3000, generator=generator) * torch.tensor([0.01, 1, 8, 300]).repeat(16)[:, None]
    logits[1] = 0.5  # all equal: the first choice is token 0
    logits[2, [7, 2999]] = logits[2].max() + 1  # a tie: the lower id is the first choice
    targets = torch.randint(0, 3000, (64,), generator=generator)
    targets[:4] = torch.tensor([0, 2999, 7, 2999])
    targets[4:8] = logits[4:8].argmax(dim=1)
    compiled, calls = distribution._compiled_rows(logits, targets), distribution._rows(logits, targets)
    assert compiled == calls
    assert compiled.firsts[1] == 0 and compiled.firsts[2] == 7


@pytest.mark.parametrize("kind", ["distribution", "greedy"])
def test_the_compiled_decoding_and_torch_s_calls_agree(kind):
    """decode_tokens through kernels.decode_rows / find_tokens and through torch's cumulative sums
    and searchsorted: the same tokens and the same coder states, a batch of streams at once, with
    targets at either end of the vocabulary, at the first choice, tied maxima and equal rows."""
    from memzip.exact import coding
    generator = torch.Generator().manual_seed(4)
    distribution = Distribution(CodingSettings(), 3000, "cpu")
    steps, rows = 40, 6
    logits = torch.randn(steps, rows, 3000, generator=generator) * torch.tensor([0.01, 1, 8, 300, 3, 3])[:, None]
    logits[:, 1] = 0.5  # all equal
    logits[:, 2, [7, 2999]] = logits[:, 2].amax(dim=-1, keepdim=True) + 1  # a tie at the top
    targets = torch.randint(0, 3000, (steps, rows), generator=generator)
    targets[:, 3] = logits[:, 3].argmax(dim=-1)
    targets[::3, 4], targets[1::3, 4] = 0, 2999
    streams = []
    for r in range(rows):
        encoder = StreamEncoder(kind)
        for step in range(steps):
            encoder.code(distribution.rows(logits[step, r:r + 1], targets[step, r:r + 1]))
        streams.append(encoder.finish())
    compiled = [StreamDecoder(data, kind) for data in streams]
    calls = [StreamDecoder(data, kind) for data in streams]
    for step in range(steps):
        got = decode_tokens(distribution, logits[step], compiled)
        original = coding.kernels.available
        coding.kernels.available = lambda: False  # the torch path
        try:
            expected = decode_tokens(distribution, logits[step], calls)
        finally:
            coding.kernels.available = original
        assert got == expected == targets[step].tolist()


@pytest.mark.parametrize("kind", ["distribution", "greedy"])
def test_a_stream_codes_and_decodes_with_the_model_s_frequencies(kind):
    torch.manual_seed(1)
    distribution = Distribution(CodingSettings(), 300, "cpu")
    logits = torch.randn(200, 300) * 4
    targets = torch.where(torch.rand(200) < 0.6, logits.argmax(dim=1), torch.randint(0, 300, (200,)))
    encoder = StreamEncoder(kind)
    encoder.code(distribution.rows(logits, targets))
    data = encoder.finish()
    decoder = StreamDecoder(data, kind)
    decoded = [decode_tokens(distribution, logits[i:i + 1], [decoder])[0] for i in range(200)]
    assert decoded == targets.tolist()
    assert encoder.misses == int((targets != logits.argmax(dim=1)).sum())
    if kind == "distribution":
        assert 8 * len(data) <= encoder.bits + 16  # within two bytes of the ideal cost
