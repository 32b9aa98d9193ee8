"""The coder's frequencies and streams (memzip/exact/coding.py): integers of at least one, the
compiled passes and torch's calls agreeing, a stream decoding what was coded."""

from __future__ import annotations


import numpy as np
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


def _torch_path(function, *args):
    """Run `function` with the compiled kernels hidden (the torch path of coding and adaptive)."""
    from memzip.exact import adaptive, coding
    original = coding.kernels.available
    coding.kernels.available = adaptive.kernels.available = lambda: False
    try:
        return function(*args)
    finally:
        coding.kernels.available = adaptive.kernels.available = original


def _skewed_text(generator, steps: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits that know nothing of a text which uses a few tokens over and over, plus ties, equal
    rows and targets at either end of the vocabulary."""
    logits = torch.randn(steps, vocab, generator=generator) * torch.tensor([0.01, 1, 3, 8, 300]).repeat(steps)[:steps, None]
    logits[1] = 0.5
    logits[2, [7, vocab - 1]] = logits[2].max() + 1
    favourites = torch.tensor([5, 17, 42, vocab - 1])
    targets = favourites[torch.randint(0, 4, (steps,), generator=generator)]
    targets[::7] = torch.randint(0, vocab, (len(targets[::7]),), generator=generator)
    targets[3], targets[4] = 0, vocab - 1
    return logits, targets


@pytest.mark.parametrize("bias_bits, fresh_bits", [(1, 0), (3, 0), (8, 0), (3, 1), (3, 3), (8, 2)])
def test_the_adaptive_bias_is_the_same_integers_compiled_and_in_torch(bias_bits, fresh_bits):
    """kernels.adaptive_coded_rows (one stream, in order, learning after each row) and the torch
    path: the same intervals, totals, first choices and the same bias after every row, with
    tokens not coded yet learning at the same rate or faster (fresh_bits)."""
    generator = torch.Generator().manual_seed(5)
    distribution = Distribution(CodingSettings(bias_bits=bias_bits, fresh_bits=fresh_bits), 3000, "cpu")
    logits, targets = _skewed_text(generator, 120, 3000)
    compiled, reference = distribution.adaptive_bias(1), distribution.adaptive_bias(1)
    for a in range(0, 120, 50):  # in blocks, as compress_stream hands them over
        got = distribution.rows(logits[a:a + 50], targets[a:a + 50], compiled)
        expected = _torch_path(distribution.rows, logits[a:a + 50], targets[a:a + 50], reference)
        assert got == expected
        assert np.array_equal(compiled.values, reference.values)
        assert np.array_equal(compiled.fresh, reference.fresh)
    assert compiled.values.any() and 0 < compiled.fresh.sum() < 3000 - 4  # the favourites and more were coded


def test_the_adaptive_bias_learns_the_text_s_favourite_tokens():
    """A few tokens used over and over, which the logits do not favour: the bias makes them
    cheaper than the model alone codes them, and the stream decodes exactly."""
    generator = torch.Generator().manual_seed(6)
    logits, targets = _skewed_text(generator, 400, 3000)
    costs = {}
    for bits in (0, 3):
        distribution = Distribution(CodingSettings(bias_bits=bits), 3000, "cpu")
        encoder = StreamEncoder()
        encoder.code(distribution.rows(logits, targets, distribution.adaptive_bias(1)))
        data = encoder.finish()
        costs[bits] = len(data)
        bias = distribution.adaptive_bias(1)
        decoder = StreamDecoder(data)
        decoded = [decode_tokens(distribution, logits[i:i + 1], [decoder], bias, [0])[0] for i in range(400)]
        assert decoded == targets.tolist()
    assert costs[3] < 0.9 * costs[0], costs  # measured: 788 against 967 bytes


@pytest.mark.parametrize("fresh_bits", [0, 1])
def test_adaptive_streams_decode_side_by_side_compiled_and_in_torch(fresh_bits):
    """Several streams with a bias each, decoded one step at a time in one batch (each row its
    own stream's bias; streams in a different order than their rows), compiled and in torch."""
    from memzip.exact.coding import StreamDecoder as Decoder
    generator = torch.Generator().manual_seed(7)
    distribution = Distribution(CodingSettings(bias_bits=3, fresh_bits=fresh_bits), 3000, "cpu")
    steps, count = 60, 4
    texts = [_skewed_text(generator, steps, 3000) for _ in range(count)]
    data = []
    for logits, targets in texts:
        encoder = StreamEncoder()
        encoder.code(distribution.rows(logits, targets, distribution.adaptive_bias(1)))
        data.append(encoder.finish())
    order = [2, 0, 3, 1]  # row r of each step is stream order[r]
    for path in ("compiled", "torch"):
        bias = distribution.adaptive_bias(count)
        decoders = [Decoder(data[s]) for s in order]
        for step in range(steps):
            logits = torch.stack([texts[s][0][step] for s in order])
            call = (decode_tokens, distribution, logits, decoders, bias, order)
            tokens = call[0](*call[1:]) if path == "compiled" else _torch_path(*call)
            assert tokens == [int(texts[s][1][step]) for s in order], (path, step)


@pytest.mark.parametrize("settings", [dict(fresh_bits=1), dict(bias_bits=3, fresh_bits=4),
                                      dict(bias_bits=1, fresh_bits=2), dict(bias_bits=3, bias_streams=65),
                                      dict(bias_streams=2)])
def test_coding_settings_outside_their_ranges_are_refused(settings):
    """A faster rate for new tokens needs a bias, at most 2^3 times its rate and a rate of at most
    2^26 bias units (so rate x frequency stays below 2^55); sharing needs a bias too."""
    with pytest.raises(ValueError, match="fresh_bits|bias_streams"):
        Distribution(CodingSettings(**settings), 3000, "cpu")
