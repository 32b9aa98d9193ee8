"""Would adaptive models on top of the model's probabilities pay? A simulation on the float32
model's log-probabilities (transformers, windows of 1,024 tokens sliding by 512), before building
any of them into the exact engine. For a text it prints bits per byte of the model alone and of:
- a match model (LZP: the token that followed the last occurrence of the last K tokens), coded
  as a hit flag whose adaptive probability is kept per context (match-length bucket, the model's
  own probability of the predicted token in 24 log buckets: an SSE stage), then on a miss the
  model's distribution without the predicted token;
- a unigram cache of the text so far mixed linearly with the model (the smallest adaptive bias);
- fixed softmax temperatures (a bound on what an adaptive temperature could gain).
docs/benchmarks.md §1 ("Adaptive models") has the figures.

    OMP_NUM_THREADS=2 python docs/scripts/adaptive_sim.py ../shared/corpus/alice29.txt
"""

import math
import sys

import numpy as np
import torch

from memzip.models import load_model, resolve_model
from memzip.textcodec import TextCodec, crlf_as_lf

WINDOW, SLIDE = 1024, 512
TEMPERATURES = (0.95, 1.05, 1.1)
ORDERS = (2, 3, 4, 6, 8)


def match_predictions(tokens: list[int], order: int, longest: int = 64) -> list[tuple[int, int]]:
    """(predicted token or -1, match length) before each position."""
    table, history, out = {}, [], []
    pointer, length = -1, 0
    for token in tokens:
        out.append((history[pointer], length) if pointer >= 0 else (-1, 0))
        history.append(token)
        if pointer >= 0 and history[pointer] == token:
            pointer, length = pointer + 1, length + 1
        else:
            pointer, length = -1, 0
        if len(history) >= order:
            key = tuple(history[-order:])
            if pointer < 0 and key in table:
                pointer, length = table[key], 0
                while (length < longest and pointer - 1 - length >= 0
                       and history[pointer - 1 - length] == history[len(history) - 1 - length]):
                    length += 1
            table[key] = len(history)
    return out


def probability_bucket(q: float) -> int:
    if q >= 0.5:
        return 12 + min(int(-math.log2(max(1 - q, 1e-12))), 11)
    return min(int(-math.log2(max(q, 1e-12))), 11)


def bucket_middle(b: int) -> float:
    return 1 - 0.75 * 2.0 ** -(b - 12) if b >= 12 else 0.75 * 2.0 ** -b


def match_cost(target_lp, predicted_lp, predictions, tokens, step=16, prior=128) -> tuple[float, int, int]:
    counts, bits, predicted, hits = {}, 0.0, 0, 0
    for i, token in enumerate(tokens):
        p, length = predictions[i]
        if p < 0:
            bits -= target_lp[i] / math.log(2)
            continue
        predicted += 1
        q = math.exp(predicted_lp[i])
        context = (min(length // 8, 3), probability_bucket(q))
        if context not in counts:
            hit = max(1, min(prior - 1, round(prior * bucket_middle(context[1]))))
            counts[context] = [hit, prior - hit]
        c = counts[context]
        if token == p:
            hits += 1
            bits -= math.log2(c[0] / (c[0] + c[1]))
            c[0] += step
        else:
            bits -= math.log2(c[1] / (c[0] + c[1])) + (target_lp[i] - math.log(max(1 - q, 1e-12))) / math.log(2)
            c[1] += step
        if c[0] + c[1] > 1 << 16:
            c[0], c[1] = (c[0] + 1) // 2, (c[1] + 1) // 2
    return bits, predicted, hits


def main(path: str) -> None:
    data = open(path, "rb").read()
    data = crlf_as_lf(data) or data
    loaded = load_model(resolve_model("embedded"), device="cpu")
    tokens = TextCodec(loaded.tokenizer).encode(data).tokens.tolist()
    predictions = {k: match_predictions(tokens, k) for k in ORDERS}
    ids = [0] + tokens  # <|endoftext|>, the model's document start
    n = len(tokens)
    target_lp = np.zeros(n)
    predicted_lp = {k: np.zeros(n) for k in ORDERS}
    tempered = dict.fromkeys(TEMPERATURES, 0.0)
    position = 0
    with torch.no_grad():
        while position < n:
            low, high = max(0, position + 1 - WINDOW), min(n, position + SLIDE)
            logits = loaded.model(torch.tensor([ids[low:high]])).logits[0].float()
            rows = torch.arange(position - low, high - low)
            wanted = torch.tensor(tokens[position:high])
            lp = torch.log_softmax(logits[rows], -1)
            target_lp[position:high] = lp.gather(1, wanted[:, None])[:, 0].numpy()
            for k in ORDERS:
                p = torch.tensor([max(x, 0) for x, _ in predictions[k][position:high]])
                predicted_lp[k][position:high] = lp.gather(1, p[:, None])[:, 0].numpy()
            for t in TEMPERATURES:
                tempered[t] -= float(torch.log_softmax(logits[rows] / t, -1).gather(1, wanted[:, None]).sum())
            position = high
            print(f"{position}/{n}", file=sys.stderr, flush=True)
    model = -target_lp.sum() / math.log(2)

    def line(what: str, bits: float, extra: str = "") -> None:
        print(f"| {what} | {bits / 8:,.0f} | {bits / len(data):.4f} | {(bits - model) / model * 100:+.2f}% | {extra} |")

    print(f"{path}: {len(data):,} bytes (CR LF as LF), {n:,} tokens\n")
    print("| model | bytes | bits/byte | against the model alone | |\n|---|---|---|---|---|")
    line("float32 model alone", model)
    for k in ORDERS:
        bits, predicted, hits = match_cost(target_lp, predicted_lp[k], predictions[k], tokens)
        line(f"+ match model, order {k}, SSE flag", bits, f"{predicted:,} predicted, {hits:,} right")
    for lam in (0.005, 0.01, 0.02):
        counts, total, bits = np.zeros(loaded.model.config.vocab_size), 0, 0.0
        for i, token in enumerate(tokens):
            p = math.exp(target_lp[i])
            bits -= math.log2((1 - lam) * p + lam * counts[token] / total if total else p)
            counts[token] += 1
            total += 1
        line(f"+ unigram cache, weight {lam}", bits)
    for t in TEMPERATURES:
        line(f"temperature {t} (fixed)", tempered[t] / math.log(2))


if __name__ == "__main__":
    main(sys.argv[1])
