"""How many first positions should stay in attention's view as the window slides? The float32
model's cross-entropy on one stream with a sliding window of `--window` positions plus the first
K positions kept visible (K = 1 is memzip's sink: the start token alone; StreamingLLM keeps 4),
one forward per K under a banded attention mask. Prints bytes per range of positions, each
against K = 1.

    OMP_NUM_THREADS=2 python docs/scripts/sink_sim.py ../shared/corpus/alice29.txt --limit 20000 --sinks 1,2,4,8,16
"""

import argparse
import math

import torch

from shared_bias_ab import load_text  # beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--limit", type=int, default=20000)
    parser.add_argument("--window", type=int, default=2048)
    parser.add_argument("--sinks", default="1,4", help="first positions kept visible, comma-separated")
    args = parser.parse_args()
    loaded, tokens, text_bytes = load_text(args.file, args.limit or 1 << 40)
    model = loaded.model.eval()
    ids = torch.tensor([[0] + tokens])  # the start token memzip's model-only layout puts first
    query, key = torch.arange(ids.shape[1])[:, None], torch.arange(ids.shape[1])[None, :]
    edges = [e for e in (0, 512, 2048, 3072, 4096, 6144, 8192) if e < len(tokens)] + [len(tokens)]
    base = None
    print(f"{args.file}, first {text_bytes:,} bytes (CR LF as LF): {len(tokens):,} tokens, window {args.window}\n")
    print("| first positions kept | " + " | ".join(f"{lo:,}-{hi:,}" for lo, hi in zip(edges, edges[1:]))
          + " | all | against 1 |")
    print("|---" * (len(edges) + 2) + "|")
    for sinks in (int(k) for k in args.sinks.split(",")):
        seen = (key <= query) & ((query - key <= args.window) | (key < sinks))
        mask = torch.zeros(seen.shape).masked_fill_(~seen, float("-inf"))
        with torch.no_grad():
            logits = model(ids, attention_mask=mask[None, None]).logits[0, :-1].float()
        bits = -torch.log_softmax(logits, -1).gather(1, torch.tensor(tokens)[:, None])[:, 0].double() / math.log(2)
        parts = [float(bits[lo:hi].sum()) / 8 for lo, hi in zip(edges, edges[1:])]
        total = float(bits.sum()) / 8
        base = base or total
        print(f"| {sinks} | " + " | ".join(f"{p:,.1f}" for p in parts) + f" | {total:,.1f} B | "
              f"{100 * (total / base - 1):+.2f}% |", flush=True)


if __name__ == "__main__":
    main()
