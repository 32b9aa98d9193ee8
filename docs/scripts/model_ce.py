"""The float cross-entropy of registry models on the first bytes of a text: one forward over the
whole excerpt (full causal attention, the document-start token first, CR LF as LF as memzip codes
it). A first look at whether a model beats the embedded one before the exact engine covers it.
docs/benchmarks.md §1 ("Fewest bytes") quotes it.

    OMP_NUM_THREADS=2 python docs/scripts/model_ce.py ../shared/corpus/alice29.txt 20000 embedded,gemma-3-270m
"""

import math
import sys
import time

import torch

from memzip.models import load_model, resolve_model
from memzip.textcodec import crlf_as_lf


def main() -> None:
    path, limit, names = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    data = open(path, "rb").read()[:limit]
    data = crlf_as_lf(data) or data
    for name in names.split(","):
        loaded = load_model(resolve_model(name), device="cpu")
        ids = loaded.tokenizer.backend_tokenizer.encode(data.decode("utf-8"), add_special_tokens=False).ids
        bos = loaded.tokenizer.bos_token_id if loaded.tokenizer.bos_token_id is not None else 0
        began = time.time()
        with torch.no_grad():
            logits = loaded.model.eval()(torch.tensor([[bos] + ids])).logits[0, :-1].float()
        bits = -torch.log_softmax(logits, -1).gather(1, torch.tensor(ids)[:, None]).sum().item() / math.log(2)
        print(f"{name}: {len(ids):,} tokens, {bits / 8:,.1f} B, {bits / len(data):.4f} bits/byte of the "
              f"{len(data):,} bytes, {time.time() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
