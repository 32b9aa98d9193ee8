"""Would anything on top of the adaptive bias pay? A simulation on the float32 model's
probabilities (windows of 2,048 tokens sliding by 512, CR LF as LF), each stage added to the bias
at memzip's rate (2^-3 logits a token) and learnt as it codes, by one gradient step per token on
the coded token's cost, as the bias is:

- match: the token that followed the last occurrence of the previous `--match-min` tokens gets
  a boost learnt per match length (LZP with its weight learnt per length: an SSE-like stage);
- ngram: every token seen after the same 1, 2 or 3 previous tokens gets a boost learnt per order
  and per how often it was seen there (1, 2, 3, 4+);
- temperature: the logits times a learnt scale;
- count rate: the bias's rate per token times 1 + 1 / (1 + times the token was coded), so that a
  token learns fastest the first times it appears.

The logits are computed once and kept in a float16 file beside --cache (20 KB: ~0.5 GB).
docs/benchmarks.md §1 ("Other adaptive models") has the figures.

    OMP_NUM_THREADS=2 python docs/scripts/stages_on_bias_sim.py ../shared/corpus/alice29.txt --limit 20000
"""

import argparse
import math
import os
import sys

import numpy as np
import torch

SLIDE, WINDOW, BIAS_RATE = 512, 2048, 0.125
STAGES = {  # name: keyword arguments of simulate()
    "bias alone (memzip 0.5)": {},
    "+ match, order 4, lr 0.1": {"match_lr": 0.1, "match_min": 4},
    "+ match, order 3, lr 0.1": {"match_lr": 0.1, "match_min": 3},
    "+ n-grams 1-3, lr 0.05": {"ngram_lr": 0.05},
    "+ n-grams 1-3, lr 0.2": {"ngram_lr": 0.2},
    "+ temperature, lr 1e-4": {"temperature_lr": 1e-4},
    "count rate, 1 + 1 / (1 + count)": {"count_rate": 1.0},
    "model alone (no bias)": {"bias_rate": 0.0},
}


def dump_logits(loaded, path: str, limit: int, cache: str) -> tuple[np.ndarray, list[int], int]:
    """(the float logits [n, V] from `cache`, computed into it first if missing; the tokens; the
    text's bytes) of the first `limit` bytes of `path` (all if 0), with CR LF as LF as memzip codes
    it. docs/scripts/exact_vs_float_ce.py uses it too."""
    from memzip.textcodec import TextCodec, crlf_as_lf

    data = open(path, "rb").read()
    data = data[:limit] if limit else data
    data = crlf_as_lf(data) or data
    tokens = TextCodec(loaded.tokenizer).encode(data).tokens.tolist()
    if not os.path.exists(cache):
        model, ids = loaded.model.eval(), [0] + tokens
        logits = np.lib.format.open_memmap(cache + ".part", mode="w+", dtype=np.float16,
                                           shape=(len(tokens), model.config.vocab_size))
        pos = 0
        with torch.no_grad():
            while pos < len(tokens):
                lo, hi = max(0, pos + 1 - WINDOW), min(len(ids) - 1, pos + SLIDE)
                rows = model(torch.tensor([ids[lo:hi]])).logits[0].float()  # row j predicts ids[lo + j + 1]
                logits[pos:hi] = rows[pos - lo:hi - lo].numpy().astype(np.float16)
                pos = hi
                print(f"logits {pos}/{len(tokens)}", file=sys.stderr, flush=True)
        logits.flush()
        del logits
        os.replace(cache + ".part", cache)
    logits = np.load(cache, mmap_mode="r")
    assert logits.shape[0] == len(tokens), f"{cache} holds the logits of another text"
    return logits, tokens, len(data)


def simulate(logits, tokens, bias_rate=BIAS_RATE, match_lr=0.0, match_min=4, ngram_lr=0.0,
             temperature_lr=0.0, count_rate=0.0) -> float:
    """Bits to code `tokens` with the model's logits, the bias and the stage asked for."""
    vocab = logits.shape[1]
    bias, counts, scale = torch.zeros(vocab), torch.zeros(vocab), 1.0
    match_weight, last_seen = torch.zeros(33), {}  # per match length; previous tokens -> position
    orders = (1, 2, 3)
    ngram_weight = {o: torch.zeros(4) for o in orders}
    followers = {o: {} for o in orders}  # previous o tokens -> {token: times seen after them}
    bits = 0.0
    for i, y in enumerate(tokens):
        z = torch.from_numpy(logits[i].astype(np.float32))
        boosts = []  # (token, weights, index)
        if match_lr and i >= match_min and (p := last_seen.get(tuple(tokens[i - match_min:i]))) is not None:
            length = match_min
            while length < 32 and p - length - 1 >= 0 and tokens[p - length - 1] == tokens[i - length - 1]:
                length += 1
            boosts.append((tokens[p], match_weight, length))
        if ngram_lr:
            for o in orders:
                for t, c in followers[o].get(tuple(tokens[i - o:i]), {}).items() if i >= o else ():
                    boosts.append((t, ngram_weight[o], min(c, 4) - 1))
        adjusted = z * scale + bias
        for t, weights, k in boosts:
            adjusted[t] += weights[k]
        log_p = torch.log_softmax(adjusted, -1)
        p = log_p.exp()
        bits -= log_p[y].item() / math.log(2)
        # each stage learns: one gradient step on -log p(y)
        if temperature_lr:
            scale -= temperature_lr * ((p @ z).item() - z[y].item())
        for t, weights, k in boosts:
            weights[k] -= (match_lr if weights is match_weight else ngram_lr) * (p[t].item() - (t == y))
        rate = bias_rate * (1 + count_rate / (1 + counts)) if count_rate else bias_rate
        bias -= rate * p
        bias[y] += rate[y] if count_rate else rate
        counts[y] += 1
        if match_lr and i >= match_min:
            last_seen[tuple(tokens[i - match_min:i])] = i
        if ngram_lr:
            for o in orders:
                if i >= o:
                    seen = followers[o].setdefault(tuple(tokens[i - o:i]), {})
                    seen[y] = seen.get(y, 0) + 1
    return bits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--limit", type=int, default=0, help="only the first N bytes")
    parser.add_argument("--cache", default="", help="the logits file (default: /tmp/<name>-<limit>-logits.npy)")
    args = parser.parse_args()
    cache = args.cache or f"/tmp/{os.path.basename(args.file)}-{args.limit}-logits.npy"
    from memzip.models import load_model, resolve_model

    logits, tokens, size = dump_logits(load_model(resolve_model("embedded"), device="cpu"), args.file, args.limit, cache)
    print(f"{args.file}: {size:,} bytes (CR LF as LF), {len(tokens):,} tokens, window {WINDOW} sliding by {SLIDE}\n")
    print("| stage | bytes | bits/byte | against the bias alone |\n|---|---|---|---|")
    base = None
    for name, stage in STAGES.items():
        bits = simulate(logits, tokens, **stage)
        base = base or bits
        print(f"| {name} | {bits / 8:,.1f} | {bits / size:.4f} | {100 * (bits / base - 1):+.2f}% |", flush=True)


if __name__ == "__main__":
    main()
