"""Same-process A/B timings of two ways the exact engine computes the same integers
(docs/benchmarks.md §2). Each pair alternates in one process, so machine noise (large on shared
2-core VMs) falls on both sides alike; every pair is also checked for equal bits.

    OMP_NUM_THREADS=2 python docs/scripts/engine_ab.py head          # output head, whole vs tiles
    OMP_NUM_THREADS=2 python docs/scripts/engine_ab.py values 4 16 28  # a decoding step by batch
    OMP_NUM_THREADS=2 python docs/scripts/engine_ab.py step 4 16 28    # torch's calls vs compiled
    OMP_NUM_THREADS=2 python docs/scripts/engine_ab.py block           # a compression block, the same

- head: the output head's int8 product for m rows of activations, as one [2m, 2V] product
  (the engine's path below TILED_FROM_ROWS rows) and in tiles of TILE_OUTPUTS columns.
- values: one decoding step (layers for one position with a full 1024-token window, logits,
  coding frequencies) with the int16 context (attention in the compiled kernel, kernels.py: the
  default on CPUs) and the float one (attention in torch's GEMMs).
- step: the same step with the int16 context, the rest of the layer in torch's calls and in
  kernels.py's compiled loops (ExactLlama.compiled: the default on CPUs).
- block: compression's unit of work, a block of 512 positions of one stream after a full
  1024-position window (layers and the output head for every position), in torch's calls and
  in kernels.py's loops.
"""

import statistics
import sys
import time

import torch

from memzip.exact import integer
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
                distribution.cumulative(model.logits(hidden[:, 0]))
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
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
