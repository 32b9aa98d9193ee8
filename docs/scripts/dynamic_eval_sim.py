"""Dynamic evaluation of the whole model, simulated in float (not part of memzip): plain SGD on
every weight after each segment of SEG tokens, on that segment's cost (Krause et al. 2018's
scheme without its RMS normalisation), windows of 2,048 tokens; prints the bytes an ideal coder
would need. A bound on what an exact dynamic evaluation could buy (docs/benchmarks.md §1).

    OMP_NUM_THREADS=2 python docs/scripts/dynamic_eval_sim.py ../shared/corpus/alice29.txt 20000 0.0003 128
"""
import math
import sys
import time

import torch

from memzip.models import load_model, resolve_model
from memzip.textcodec import TextCodec, crlf_as_lf
torch.set_num_threads(2)
path, limit, lr, seg = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])  # file, bytes, rate, SEG
W = 2048
data = open(path, 'rb').read()[:limit]
data = crlf_as_lf(data) or data
loaded = load_model(resolve_model("embedded"), device="cpu")
model = loaded.model.float().train(False)
for parameter in model.parameters():
    parameter.requires_grad_(True)
tokens = TextCodec(loaded.tokenizer).encode(data).tokens.tolist()
ids, n = [0] + tokens, len(tokens)
opt = torch.optim.SGD(model.parameters(), lr=lr)
bits, began = 0.0, time.time()
for pos in range(0, n, seg):
    hi = min(n, pos + seg)
    lo = max(0, hi - W)
    x, y = torch.tensor([ids[lo:hi]]), torch.tensor(tokens[lo:hi])
    logits = model(x).logits[0].float()
    k = hi - pos
    loss = torch.nn.functional.cross_entropy(logits[-k:], y[-k:], reduction="sum")
    bits += loss.item() / math.log(2)
    if lr > 0:
        opt.zero_grad()
        (loss / k).backward()
        opt.step()
print(f"lr {lr} seg {seg}: {bits/8:,.0f} B, {bits/len(data):.4f} bits/byte, {time.time()-began:.0f} s", flush=True)
