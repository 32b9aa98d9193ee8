"""Same-process A/B timings of two ways the exact engine computes the same integers
(docs/benchmarks.md §2). Each pair alternates in one process, so machine noise (large on shared
2-core VMs) falls on both sides alike; every pair is also checked for equal bits.

    OMP_NUM_THREADS=2 python docs/scripts/engine_ab.py head          # output head, whole vs tiles
    OMP_NUM_THREADS=2 python docs/scripts/engine_ab.py values 4 16 28  # a decoding step by batch
    OMP_NUM_THREADS=2 python docs/scripts/engine_ab.py step 4 16 28    # torch's calls vs compiled
    OMP_NUM_THREADS=2 python docs/scripts/engine_ab.py block           # a compression block, the same
    OMP_NUM_THREADS=2 python docs/scripts/engine_ab.py product 1 4 16 28  # the weight products of a step

- head: the output head's int8 product for m rows of activations, as one [2m, 2V] product
  (the engine's path below TILED_FROM_ROWS rows) and in tiles of TILE_OUTPUTS columns.
- values: one decoding step (layers for one position with a full 1024-token window, logits,
  coding frequencies) with the int16 context (attention in the compiled kernel, kernels.py: the
  default on CPUs) and the float one (attention in torch's GEMMs).
- step: the same step with the int16 context, the rest of the layer and the coder's pass over the
  logits in torch's calls and in kernels.py's compiled loops (ExactLlama.compiled: the default on
  CPUs).
- block: compression's unit of work, a block of 512 positions of one stream after a full
  1024-position window (layers and the output head for every position), in torch's calls and
  in kernels.py's loops.
- product: the integer products of one decoding step of m streams (every layer's four weights
  and the output head, the embedded model's real weights), by kernels.small_product (simd.py's
  vector loops on int16 rows, the engine's way up to SMALL_PRODUCT_ROWS rows) and by
  torch._int_mm on the rows' int8 slices (its way for more rows, and every step's before).
  Reports the weights' bytes read per second; both give the same exact integers.
"""

import statistics
import sys
import time

import torch

from memzip.exact import integer, kernels
from memzip.exact.coding import CodingSettings, Distribution
from memzip.exact.model import Context, ExactLlama
from memzip.models import load_model, resolve_model

WINDOW, STEPS, ROUNDS = 1024, 6, 4


def alternate(runs: dict, rounds: int = ROUNDS) -> dict:
    """Time each named function `rounds` times, alternating; their results must be equal."""
    times = {name: [] for name in runs}
    for _ in range(rounds):
        results = []
        for name, run in runs.items():
            began = time.perf_counter()
            results.append(run())
            times[name].append(time.perf_counter() - began)
        assert all(torch.equal(results[0], r) for r in results[1:]), "the two ways differ"
    return {name: (round(statistics.median(t) * 1e3, 1), [round(x * 1e3) for x in t]) for name, t in times.items()}


def head(model: ExactLlama) -> None:
    weight = model.head
    for rows in (64, 32, 8):
        x = torch.randint(-(2 ** 14), 2 ** 14, (rows, model.shape.d_model), dtype=torch.int32)
        a = integer.split_int8(x)
        print(f"head, {rows} rows (ms: median, each):", alternate({
            "whole": lambda: weight._outputs(a, rows, 0, weight.n_out),
            "tiles": lambda: torch.cat([weight._outputs(a, rows, c, min(weight.n_out, c + integer.TILE_OUTPUTS))
                                        for c in range(0, weight.n_out, integer.TILE_OUTPUTS)], dim=1)}), flush=True)


def step(model: ExactLlama, batches: list[int]) -> None:
    distribution = Distribution(CodingSettings(), model.shape.vocab, model.device)
    generator = torch.Generator().manual_seed(0)
    for batch in batches:
        tokens = torch.randint(0, model.shape.vocab, (batch, WINDOW + ROUNDS * STEPS * 2 + 1), generator=generator)
        contexts = {}
        for name in ("calls", "compiled"):
            context = Context(model.shape, batch, WINDOW, WINDOW + 64, model.device, "int16")
            model.forward(model.embed(tokens[:, :1]), context)
            for a in range(1, WINDOW, 64):
                model.forward(model.embed(tokens[:, a:a + 64]), context)
            contexts[name] = context

        def steps(context, compiled):
            model.compiled = compiled
            first = context.position
            for i in range(STEPS):
                hidden = model.forward(model.embed(tokens[:, first + i:first + i + 1]), context)
                logits = model.logits(hidden[:, 0])
                if compiled:  # the coder's pass over the logits, as extraction makes it
                    kernels.decode_rows(logits.numpy(), distribution._int_table, distribution.settings.grid_bits)
                else:
                    distribution.cumulative(logits)
            model.compiled = True
            return hidden

        timed = alternate({name: (lambda c=c, n=name: steps(c, n == "compiled")) for name, c in contexts.items()})
        per_step = {name: (round(ms / STEPS, 1), [round(x / STEPS) for x in each]) for name, (ms, each) in timed.items()}
        print(f"decoding step, batch {batch} (ms a step: median, each round):", per_step, flush=True)


def block(model: ExactLlama, positions: int = 512) -> None:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.shape.vocab, (1, WINDOW + positions), generator=generator)
    rows = model.embed(tokens)
    context = model.new_context(1, WINDOW, WINDOW + positions)
    for a in range(0, WINDOW, positions):
        model.forward(rows[:, a:a + positions], context, torch.arange(positions))
    filled = (context.position, context.filled, context.first)

    def run(compiled: bool) -> torch.Tensor:
        model.compiled = compiled
        context.position, context.filled, context.first = filled  # the same block again
        hidden = model.forward(rows[:, WINDOW:], context, torch.arange(positions))[0]
        model.compiled = True
        return torch.cat([model.logits(part) for part in hidden.split(64)])

    timed = alternate({"calls": lambda: run(False), "compiled": lambda: run(True)})
    print(f"compression block of {positions} positions after {WINDOW} (ms: median, each round):", timed, flush=True)


def values(model: ExactLlama, batches: list[int]) -> None:
    distribution = Distribution(CodingSettings(), model.shape.vocab, model.device)
    generator = torch.Generator().manual_seed(0)
    for batch in batches:
        tokens = torch.randint(0, model.shape.vocab, (batch, WINDOW + ROUNDS * STEPS + 1), generator=generator)
        contexts = {}
        for name in ("int16", "float"):
            context = Context(model.shape, batch, WINDOW, WINDOW + 64, model.device, name)
            model.forward(model.embed(tokens[:, :1]), context)
            for a in range(1, WINDOW, 64):
                model.forward(model.embed(tokens[:, a:a + 64]), context)
            contexts[name] = context

        def steps(context):
            first = context.position
            for i in range(STEPS):
                hidden = model.forward(model.embed(tokens[:, first + i:first + i + 1]), context)
                distribution.cumulative(model.logits(hidden[:, 0]))
            return hidden

        timed = alternate({name: (lambda c=c: steps(c)) for name, c in contexts.items()})
        per_step = {name: (round(ms / STEPS, 1), [round(x / STEPS) for x in each]) for name, (ms, each) in timed.items()}
        print(f"decoding step, batch {batch} (ms a step: median, each round):", per_step, flush=True)


def product(model: ExactLlama, batches: list[int]) -> None:
    import numpy as np

    from memzip.exact import kernels
    from memzip.exact.model import _int8_product
    weights = [w for layer in model.layers for w in (layer.qkv, layer.out, layer.gate_up, layer.down)] + [model.head]
    total = sum(w.slices.numel() for w in weights)
    generator = np.random.default_rng(0)
    for rows in batches:
        inputs = {w.n_in: generator.integers(-2 ** 14, 2 ** 14 + 1, (rows, w.n_in), dtype=np.int16) for w in weights}
        split = {n: kernels.split_rows(x) for n, x in inputs.items()}

        def vector_loops():
            return [kernels.small_product(inputs[w.n_in], w.slices.numpy(), w.n_out, model._chunk) for w in weights]

        def int_mm():
            return [_int8_product(split[w.n_in], w) for w in weights]
        first, second = vector_loops(), int_mm()
        for w, exact, r in zip(weights, first, second):  # the same integers
            r, n = r.astype(np.int64), w.n_out
            if w.bits > 8:  # the slices' partial products recombined, as kernels._product does
                r = ((r[:rows, :n] * 256 + r[:rows, n:] + r[rows:, :n]) << 8) + r[rows:, n:]
            else:
                r = r[:rows] * 256 + r[rows:]
            assert np.array_equal(exact, r), "the two ways differ"
        times = {"small_product": [], "_int_mm": []}
        for _ in range(ROUNDS + 1):
            for name, run in (("small_product", vector_loops), ("_int_mm", int_mm)):
                began = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - began)
        summary = {name: f"{statistics.median(t) * 1e3:.1f} ms ({total / statistics.median(t) / 1e9:.1f} GB/s)"
                   for name, t in times.items()}
        print(f"weight products of a step, {rows} rows, {total / 1e6:.0f} MB of int8 slices (median of "
              f"{ROUNDS + 1}, alternating):", summary, flush=True)


def main(argv: list[str]) -> None:
    loaded = load_model(resolve_model("embedded"), device="cpu", dtype="float32")
    model = ExactLlama.from_transformers(loaded.model)
    if argv[:1] == ["head"]:
        head(model)
    elif argv[:1] == ["values"]:
        model.compiled = False  # the attention kernel alone, as when these figures were first taken
        values(model, [int(b) for b in argv[1:]] or [4, 16, 28])
    elif argv[:1] == ["block"]:
        block(model)
    elif argv[:1] == ["step"]:
        step(model, [int(b) for b in argv[1:]] or [4, 16, 28])
    elif argv[:1] == ["product"]:
        product(model, [int(b) for b in argv[1:]] or [1, 4, 16, 28])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
