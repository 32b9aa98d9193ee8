"""Would an adaptive bias over the vocabulary, or an adapted output head, pay? A simulation on the
float32 model (transformers, windows of 2,048 tokens sliding by 512), run before building the
exact adaptive bias (memzip/exact/adaptive.py) to choose its learning rate. For a text it prints
bits per byte of the model alone and, for each rate, of:
- bias r: a bias per token added to the logits, after each token one SGD step on its cost
  (every bias falls by r times its probability, the coded token's rises by r), in float;
- head r: the output head adapted the same way (a full-rank delta, step r / |h|^2 so that the
  coded token's own logit moves by ~r), the smallest dynamic evaluation of a layer.
docs/benchmarks.md §1 ("Adaptive models") has the figures.

    OMP_NUM_THREADS=2 python docs/scripts/vocabulary_bias_sim.py ../shared/corpus/alice29.txt --bias 0.0625,0.125,0.25
    OMP_NUM_THREADS=2 python docs/scripts/vocabulary_bias_sim.py ../shared/corpus/alice29.txt --limit 20000 \
        --bias 0.03,0.06,0.1,0.2,0.3 --head 0.03,0.1,0.3
"""

import argparse
import math
import time

import torch

from memzip.models import load_model, resolve_model
from memzip.textcodec import TextCodec, crlf_as_lf

SLIDE = 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--limit", type=int, default=0, help="only the first N bytes")
    parser.add_argument("--window", type=int, default=2048)
    parser.add_argument("--bias", default="0.125", help="bias learning rates, comma-separated")
    parser.add_argument("--head", default="", help="head learning rates, comma-separated (slow: ~0.1 s a token each)")
    args = parser.parse_args()
    data = open(args.file, "rb").read()
    data = data[:args.limit] if args.limit else data
    data = crlf_as_lf(data) or data  # as memzip codes it
    loaded = load_model(resolve_model("embedded"), device="cpu")
    model = loaded.model.eval()
    tokens = TextCodec(loaded.tokenizer).encode(data).tokens.tolist()
    ids, n, vocab = [0] + tokens, len(tokens), model.config.vocab_size
    bias_rates = [float(r) for r in args.bias.split(",") if r]
    head_rates = [float(r) for r in args.head.split(",") if r]
    biases = [torch.zeros(vocab) for _ in bias_rates]
    deltas = [torch.zeros(vocab, model.config.hidden_size) for _ in head_rates]
    bits = {"model": 0.0, **{f"bias {r}": 0.0 for r in bias_rates}, **{f"head {r}": 0.0 for r in head_rates}}
    began, pos = time.time(), 0
    with torch.no_grad():
        while pos < n:
            lo, hi = max(0, pos + 1 - args.window), min(len(ids) - 1, pos + SLIDE)
            out = model(torch.tensor([ids[lo:hi]]), output_hidden_states=True)
            logits, hidden = out.logits[0].float(), out.hidden_states[-1][0].float()
            for j in range(pos - lo, hi - lo):  # row j predicts tokens[lo + j]
                y, z, h = tokens[lo + j], logits[j], hidden[j]
                bits["model"] -= torch.log_softmax(z, -1)[y].item() / math.log(2)
                for r, b in zip(bias_rates, biases):
                    lp = torch.log_softmax(z + b, -1)
                    bits[f"bias {r}"] -= lp[y].item() / math.log(2)
                    b.sub_(lp.exp_(), alpha=r)
                    b[y] += r
                norm = float(h @ h)
                for r, d in zip(head_rates, deltas):
                    lp = torch.log_softmax(z + d @ h, -1)
                    bits[f"head {r}"] -= lp[y].item() / math.log(2)
                    g = lp.exp_().neg_()
                    g[y] += 1
                    d.add_(torch.outer(g, h), alpha=r / norm)
            pos = hi
            print(f"{pos}/{n} tokens, {time.time() - began:.0f} s", flush=True, file=__import__("sys").stderr)
    print(f"{args.file}: {len(data):,} bytes (CR LF as LF), {n:,} tokens, window {args.window} sliding by {SLIDE}\n")
    print("| model | bytes | bits/byte | against the model alone |\n|---|---|---|---|")
    for name, value in bits.items():
        print(f"| {name} | {value / 8:,.0f} | {value / len(data):.4f} | {100 * (value / bits['model'] - 1):+.2f}% |")


if __name__ == "__main__":
    main()
