import sys, time, torch
from memzip.models import resolve_model, load_model
from memzip.research.bench import bench_chunks
from memzip.vectors.optimize import RECIPES, fit_chunks, sink_tokens
from memzip.ranks.decoder import greedy_decode
from memzip.vectors import rounding as quantize
from dataclasses import replace
torch.set_num_threads(2)
loaded = load_model(resolve_model("embedded"))
L = int(sys.argv[1]); n = int(sys.argv[2])
chunks = bench_chunks(loaded, "book", n, L, 0)
prefix = sink_tokens(loaded.tokenizer)
for dtype in sys.argv[3:]:
    t = time.time()
    fits = fit_chunks(loaded.model, chunks, replace(RECIPES["default"], max_steps=300), 1, 0, prefix=prefix, storage=dtype)
    stored, scales = quantize.pack(torch.stack([f.vectors for f in fits]), dtype)
    v = quantize.unpack(stored, scales, dtype, loaded.d_model)
    dec = greedy_decode(loaded.model, v, [len(c) for c in chunks], targets=chunks, force_margin=0.0, prefix=prefix)
    print(dtype, "steps", [f.steps for f in fits], "acc", [round(f.accuracy,3) for f in fits], "corr", [len(d.corrections) for d in dec], f"{time.time()-t:.0f}s", flush=True)
