"""Time of one decoding step of the exact engine by batch size (docs/benchmarks.md §2).

A step is what extraction does per token of every stream in the batch: the layers for one new
position with a full window of context, the output logits, and the coding frequencies. The
window is filled first with random tokens (the arithmetic does not depend on which).

    OMP_NUM_THREADS=2 python docs/scripts/decode_step.py 1 4 8 16 32 48
"""

import sys
import time

import torch

from memzip.exact.coding import CodingSettings, Distribution
from memzip.models import load_model, resolve_model
from memzip.exact.engine import exact_model

WINDOW, STEPS = 1024, 16


def main(batches: list[int]) -> None:
    loaded = load_model(resolve_model("embedded"), device="cpu", dtype="float32")
    model = exact_model(loaded)
    distribution = Distribution(CodingSettings(), model.shape.vocab, model.device)
    generator = torch.Generator().manual_seed(0)
    for batch in batches:
        context = model.new_context(batch, WINDOW)
        tokens = torch.randint(0, model.shape.vocab, (batch, WINDOW + STEPS), generator=generator)
        model.forward(model.embed(tokens[:, :1]), context)
        for a in range(1, WINDOW, 64):
            model.forward(model.embed(tokens[:, a:a + 64]), context)
        began = time.perf_counter()
        for i in range(STEPS):
            hidden = model.forward(model.embed(tokens[:, WINDOW + i:WINDOW + i + 1]), context)
            distribution.cumulative(model.logits(hidden[:, 0]))
        step = (time.perf_counter() - began) / STEPS
        print(f"batch {batch:3d}: {step * 1e3:7.1f} ms a step, {batch / step:6.1f} tokens/s", flush=True)


if __name__ == "__main__":
    main([int(b) for b in sys.argv[1:]] or [1, 4, 8, 16, 32, 48])
