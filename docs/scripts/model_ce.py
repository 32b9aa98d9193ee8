"""The float cross-entropy of registry models on the first bytes of a text (0: all of it): one
forward over the whole excerpt (full causal attention, the document-start token first, CR LF as
LF as memzip codes it), or with a fourth argument W, windows of W tokens every W/2, each scoring
its second half (the first all of it). A first look at whether a model beats the embedded one
before the exact engine covers it. docs/benchmarks.md §1 ("Fewest bytes") quotes it.

    OMP_NUM_THREADS=2 python docs/scripts/model_ce.py ../shared/corpus/alice29.txt 20000 embedded,gemma-3-270m
    OMP_NUM_THREADS=2 python docs/scripts/model_ce.py ../shared/corpus/alice29.txt 0 embedded,gemma-3-270m 4096
"""

import math
import sys
import time

import torch

from memzip.models import load_model, resolve_model
from memzip.textcodec import crlf_as_lf


def main() -> None:
    path, limit, names = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    window = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    data = open(path, "rb").read()[:limit or None]
    data = crlf_as_lf(data) or data
    for name in names.split(","):
        loaded = load_model(resolve_model(name), device="cpu")
        ids = loaded.tokenizer.backend_tokenizer.encode(data.decode("utf-8"), add_special_tokens=False).ids
        bos = loaded.tokenizer.bos_token_id if loaded.tokenizer.bos_token_id is not None else 0
        began = time.time()
        ids = [bos] + ids
        size = window or len(ids)
        bits, scored = 0.0, 1  # ids[0] is the start token, not scored
        while scored < len(ids):
            lo = max(0, scored - size // 2) if scored > 1 else 0
            hi = min(len(ids), lo + size)
            with torch.no_grad():
                logits = loaded.model.eval()(torch.tensor([ids[lo:hi]])).logits[0, :-1].float()
            targets = torch.tensor(ids[lo + 1:hi])
            row_bits = -torch.log_softmax(logits, -1).gather(1, targets[:, None])[:, 0] / math.log(2)
            bits += row_bits[scored - lo - 1:].sum().item()
            scored = hi
        ids = ids[1:]
        print(f"{name}: {len(ids):,} tokens, {bits / 8:,.1f} B, {bits / len(data):.4f} bits/byte of the "
              f"{len(data):,} bytes, {time.time() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
