"""Does a 4-bit vector hold what a float32 vector holds, if it starts from the float32 solution?

docs/capacity.md: fitting int4 from scratch (quantization in the loop) reached 87 of 96 tokens
on a chunk that float32 held exactly. This fits float32 first (recipe long-hinge), then rounds
that solution to each storage dtype and greedy-decodes it (post-training quantization), then
continues fitting with the int4 rounding in the loop from there (quantization-aware), at a
smaller learning rate so that it stays near the float32 solution.

    python docs/scripts/int4_warm.py LENGTH SEED [STAGE2_LR] [STAGE2_STEPS]

Uses bench_chunks(book, 1 chunk, LENGTH, SEED): the same chunk `memzip capacity --samples 1
--seed SEED` fits. Prints one line per stage; the float32 vectors are cached in /tmp.
"""
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from memzip.vectors import rounding as quantize
from memzip.research.bench import bench_chunks
from memzip.ranks.decoder import greedy_decode
from memzip.models import load_model, resolve_model
from memzip.vectors.optimize import RECIPES, fit_chunks, sink_tokens

torch.set_num_threads(1)
length, seed = int(sys.argv[1]), int(sys.argv[2])
stage2_lr = float(sys.argv[3]) if len(sys.argv) > 3 else 0.03
stage2_steps = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
loaded = load_model(resolve_model("embedded"))
chunks = bench_chunks(loaded, "book", 1, length, seed)
prefix = sink_tokens(loaded.tokenizer)
text_bytes = len(loaded.tokenizer.decode(chunks[0]).encode("utf-8"))
print(f"chunk: {length} tokens, {text_bytes} bytes of text", flush=True)


def decode_errors(vectors: torch.Tensor, dtype: str) -> int:
    stored, scales = quantize.pack(vectors, dtype)
    restored = quantize.unpack(stored, scales, dtype, loaded.d_model)
    decoded = greedy_decode(loaded.model, restored, [length], targets=chunks, force_margin=0.0, prefix=prefix)
    return len(decoded[0].corrections)


cache = Path(f"/tmp/mz/warm/float32-{length}-{seed}.pt")
cache.parent.mkdir(parents=True, exist_ok=True)
began = time.time()
if cache.exists():
    base = torch.load(cache)
    print("float32 fit: cached", flush=True)
else:
    fit = fit_chunks(loaded.model, chunks, RECIPES["long-hinge"], 1, seed, prefix=prefix)[0]
    base = fit.vectors[None]
    torch.save(base, cache)
    print(f"float32 fit: {fit.steps} steps, accuracy {fit.accuracy:.3f}, margin {fit.margin:.2f}, "
          f"{time.time() - began:.0f}s", flush=True)
for dtype in ("float32", "float16", "int8", "int6", "int5", "int4", "int3"):
    print(f"rounded to {dtype} ({quantize.bytes_per_vector(dtype, loaded.d_model)} B): "
          f"{decode_errors(base, dtype)} corrections", flush=True)

began = time.time()
recipe = replace(RECIPES["long-hinge"], name="int4-warm", lr=stage2_lr, max_steps=stage2_steps, patience=stage2_steps)
fit = fit_chunks(loaded.model, chunks, recipe, 1, seed, init=base, prefix=prefix, storage="int4")[0]
print(f"int4 warm fit (lr {stage2_lr}): {fit.steps} steps, accuracy {fit.accuracy:.3f}, margin {fit.margin:.2f}, "
      f"{decode_errors(fit.vectors[None], 'int4')} corrections, {time.time() - began:.0f}s", flush=True)
