"""Where the exact engine's cross-entropy departs from the float32 model's: per token position
of one stream, the exact model's bits (the float softmax of its logits, as compression computes
them, sink + sliding window) beside the float32 model's twice: with the same sliding window (one
forward of the whole text under a banded attention mask: the last `window` positions and the
first), and in windows of 2,048 recomputed every 512 tokens (the logits
docs/scripts/stages_on_bias_sim.py keeps in its cache, computed here if missing). Prints bytes per
range of positions. docs/benchmarks.md §1 ("On top of the bias") quotes it.

    OMP_NUM_THREADS=2 python docs/scripts/exact_vs_float_ce.py ../shared/corpus/alice29.txt --limit 20000
    OMP_NUM_THREADS=2 python docs/scripts/exact_vs_float_ce.py ../shared/corpus/alice29.txt --limit 20000 --peak-scales 0
"""

import argparse
import dataclasses
import math
import os

import numpy as np
import torch

import memzip.exact.streams as streams
from memzip.exact.coding import CODING_SETTINGS, Distribution
from memzip.exact.engine import EXACT_SETTINGS, _layout_rows, exact_model
from memzip.models import load_model, resolve_model
from stages_on_bias_sim import dump_logits  # beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--window", type=int, default=2048, help="the exact engine's window")
    parser.add_argument("--cache", default="", help="stages_on_bias_sim.py's logits file")
    parser.add_argument("--peak-scales", type=int, default=1, help="the engine's weight scales: 1 each row's max "
                        "(format 9), 0 powers of two (formats 2-8)")
    args = parser.parse_args()
    cache = args.cache or f"/tmp/{os.path.basename(args.file)}-{args.limit}-logits.npy"
    loaded = load_model(resolve_model("embedded"), device="cpu")
    logits, tokens, _ = dump_logits(loaded, args.file, args.limit, cache)
    exact_rows = []

    def per_token_bits(logits, targets):  # compress_stream's report of the model's own bits, kept per token
        bits = -torch.log_softmax(logits, -1).gather(1, targets[:, None])[:, 0].double() / math.log(2)
        exact_rows.append(bits)
        return float(bits.sum())

    streams.ideal_bits = per_token_bits
    model = exact_model(loaded, dataclasses.replace(EXACT_SETTINGS, peak_scales=args.peak_scales))
    streams.compress_stream(model, Distribution(CODING_SETTINGS, model.shape.vocab, model.device),
                            _layout_rows(model, [0]), tokens, args.window)
    exact = torch.cat(exact_rows).numpy()
    floats = np.array([-torch.log_softmax(torch.from_numpy(logits[i].astype(np.float32)), -1)[y].item() / math.log(2)
                       for i, y in enumerate(tokens)])
    ids = torch.tensor([[0] + tokens])
    query, key = torch.arange(ids.shape[1])[:, None], torch.arange(ids.shape[1])[None, :]
    seen = (key <= query) & ((query - key <= args.window) | (key == 0))  # as the exact engine's Context
    mask = torch.zeros(seen.shape).masked_fill_(~seen, float("-inf"))
    with torch.no_grad():
        rows = loaded.model.eval()(ids, attention_mask=mask[None, None]).logits[0, :-1].float()
    banded = (-torch.log_softmax(rows, -1).gather(1, torch.tensor(tokens)[:, None])[:, 0].double()
              / math.log(2)).numpy()
    print(f"{args.file}: {len(tokens):,} tokens; window {args.window} + the first position; weight scales: "
          f"{'each row' + chr(39) + 's max' if args.peak_scales else 'powers of two'}\n")
    print("| positions | exact engine | float32, the same window | float32, 2,048 recomputed every 512 | exact / same window | exact / recomputed |")
    print("|---|---|---|---|---|---|")
    edges = [0, 512, 2048, 3072, 4096, len(tokens)]
    for lo, hi in zip(edges, edges[1:]):
        if lo < hi <= len(tokens):
            row(f"{lo:,}-{hi:,}", exact[lo:hi], banded[lo:hi], floats[lo:hi])
    row("all", exact, banded, floats)


def row(name, exact, banded, floats) -> None:
    e, b, f = exact.sum() / 8, banded.sum() / 8, floats.sum() / 8
    print(f"| {name} | {e:,.1f} B | {b:,.1f} B | {f:,.1f} B | {100 * (e / b - 1):+.2f}% | {100 * (e / f - 1):+.2f}% |")


if __name__ == "__main__":
    main()
