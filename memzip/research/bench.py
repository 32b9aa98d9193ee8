"""`memzip bench`: recipes side by side on the same chunks, judged by real greedy decoding.

For each recipe, every chunk starts from the same seeded vector (chunk i from seed + i, as the
authors' code would draw it) and the chunks are fitted in one batch. A chunk counts as
*lossless* only if the greedy decoder (the one extraction uses) gets every scored token right
with the stored vector: teacher-forced accuracy is not trusted. (In the authors' layout the
first token is fed, not predicted; an archive stores it, so it does not count.)

Steps are counted to the recipe's stopping point. A chunk that did not become lossless within
the budget is *censored*: its steps are only known to exceed the budget. The median over all
chunks is reported when at least half finished, else as `median_steps_at_least` = budget.

The same run also measures what batching buys: decoding all chunks together against one at a
time, and optimizer steps on the whole batch against one chunk at a time.
"""

from __future__ import annotations

import statistics
import math
import time
from dataclasses import replace

import torch

from memzip.ranks.decoder import _cache_argument, _cache_of, decode_group, greedy_misses, start_embeddings
from memzip.ranks.engine import fit_and_decode
from memzip.layout import Layout
from memzip.vectors.optimize import VectorSpace, fit_chunks, initial_vectors, recipe_layout, scores_first_token
from memzip.options import DEFAULT_MARGIN
from memzip.vectors.recipes import RECIPES, get_recipe
from memzip.research.samples import bench_chunks


def censored_median(steps: list[int | None], budget: int) -> tuple[float | None, int | None]:
    """(median, None) over all chunks, None standing for "more than the budget"; when the median
    falls on such a chunk, (None, budget): only a lower bound is known."""
    ordered = sorted(steps, key=lambda s: float("inf") if s is None else s)
    middle = ordered[(len(ordered) - 1) // 2: len(ordered) // 2 + 1]
    if not ordered or None in middle:
        return None, budget
    return statistics.median(middle), None


def run_recipe(loaded, chunks, recipe, seed: int = 0, mem_vectors: int = 1) -> dict:
    layout = recipe_layout(recipe, loaded.tokenizer)
    began = time.perf_counter()
    done = fit_and_decode(loaded, chunks, recipe, VectorSpace(mem_vectors), layout,
                          DEFAULT_MARGIN[loaded.dtype_name], seed=seed)
    fits = done.fits
    seconds = time.perf_counter() - began
    misses = greedy_misses(done.decoded, [len(c) for c in chunks], not scores_first_token(recipe, layout))
    lossless = [m == 0 for m in misses]
    steps = [f.steps if ok else None for f, ok in zip(fits, lossless)]
    median, at_least = censored_median(steps, recipe.max_steps)
    finished = sorted(s for s in steps if s is not None)
    total_tokens = sum(len(c) for c in chunks)
    return {
        "recipe": recipe.name,
        "chunks": len(chunks),
        "lossless": sum(lossless),
        "teacher_forced_exact": sum(f.accuracy == 1.0 for f in fits),
        "budget": recipe.max_steps,
        "median_steps": median,  # over all chunks; None when censored
        "median_steps_at_least": at_least,
        "steps": steps,  # per chunk, None: not lossless within the budget
        # Per chunk, for a side-by-side with the authors' loop (docs/scripts/authors_side_by_side.py):
        "steps_to_stop": [f.steps for f in fits],
        "teacher_forced_accuracy": [round(f.accuracy, 4) for f in fits],
        "greedy_misses": misses,
        "p90_steps": finished[min(len(finished) - 1, int(0.9 * len(finished)))] if finished else None,
        "mean_steps_all": round(statistics.mean(f.steps for f in fits), 1),
        "optimizer_steps_per_second": round(max(f.steps for f in fits) / seconds, 2) if seconds else None,
        "tokens_per_vector": round(total_tokens / (len(chunks) * mem_vectors), 2),
        "wall_seconds": round(seconds, 2),
        "tokens_per_second": round(total_tokens / seconds, 3),
        "lossless_tokens_per_second": round(sum(len(c) for c, ok in zip(chunks, lossless) if ok) / seconds, 3),
        "final_loss_median": round(statistics.median(f.loss for f in fits), 4),
        "corrections": sum(misses),
    }


def batching_gain(loaded, chunks, steps: int = 5, seed: int = 0) -> dict:
    """Decode and optimize all chunks in one batch vs one at a time, same vectors, same run."""
    model = loaded.model
    vectors = initial_vectors(model, len(chunks), 1, seed)
    lengths = [len(c) for c in chunks]
    layout, margin = Layout(), DEFAULT_MARGIN[loaded.dtype_name]
    began = time.perf_counter()
    decode_group(model, lengths, layout, margin, vectors=vectors, targets=chunks)
    batched = time.perf_counter() - began
    began = time.perf_counter()
    for i in range(len(chunks)):
        decode_group(model, lengths[i:i + 1], layout, margin, vectors=vectors[i:i + 1], targets=chunks[i:i + 1])
    single = time.perf_counter() - began
    # Batched and single decodes may differ in low-order bits; memzip always decodes with the
    # batch layout recorded in the archive, so this comparison is about speed only.
    fixed = replace(RECIPES["default"], max_steps=steps, margin=float("inf"), patience=steps + 1)
    began = time.perf_counter()
    fit_chunks(model, chunks, fixed, seed=seed)
    fit_batched = time.perf_counter() - began
    began = time.perf_counter()
    for chunk in chunks:
        fit_chunks(model, [chunk], fixed, seed=seed)
    fit_single = time.perf_counter() - began
    tokens = sum(lengths)
    return {
        "chunks": len(chunks),
        "decode_tokens_per_second_batched": round(tokens / batched, 2),
        "decode_tokens_per_second_one_at_a_time": round(tokens / single, 2),
        "decode_speedup": round(single / batched, 2),
        "optimizer_steps_measured": steps,
        "optimize_seconds_batched": round(fit_batched, 2),
        "optimize_seconds_one_at_a_time": round(fit_single, 2),
        "optimize_speedup": round(fit_single / fit_batched, 2),
    }


def run_bench(loaded, texts: list[str], recipes: list[str], count: int, chunk_tokens: int,
              max_steps: int | None, seed: int = 0, on_result=None) -> dict:
    results = []
    for kind in texts:
        chunks = bench_chunks(loaded, kind, count, chunk_tokens, seed)
        for name in recipes:
            recipe = get_recipe(name, max_steps)
            row = {"texts": kind, **run_recipe(loaded, chunks, recipe, seed)}
            results.append(row)
            if on_result:
                on_result(row)
    # Batching is measured on a full group of the default batch size (8), however few chunks
    # the recipes ran on: that is the shape extraction decodes in.
    chunks = bench_chunks(loaded, texts[0], max(count, 8), chunk_tokens, seed)
    batching = batching_gain(loaded, chunks, seed=seed)
    drift = decode_drift(loaded, chunks, seed=seed)
    return {
        "model": loaded.identity.name,
        "device": loaded.device.type,
        "threads": torch.get_num_threads(),
        "chunk_tokens": chunk_tokens,
        "max_steps": max_steps,
        "seed": seed,
        "results": results,
        "headline": _headline(results),
        "batching": batching,
        "drift": drift,
    }


def _headline(results: list[dict]) -> dict:
    """default against paper per text set: the ratio of median steps, or its lower or upper
    bound when one of the medians is censored (None when both are)."""
    out = {}
    for kind in sorted({r["texts"] for r in results}):
        rows = {r["recipe"]: r for r in results if r["texts"] == kind}
        if "paper" not in rows or "default" not in rows:
            continue
        p, d = rows["paper"], rows["default"]
        entry = {"chunks": d["chunks"], "lossless_paper": p["lossless"], "lossless_default": d["lossless"],
                 "wall_seconds_paper": p["wall_seconds"], "wall_seconds_default": d["wall_seconds"]}
        if p["median_steps"] and d["median_steps"]:
            entry["median_steps_ratio"] = round(p["median_steps"] / d["median_steps"], 2)
        elif p["median_steps_at_least"] and d["median_steps"]:
            entry["median_steps_ratio_at_least"] = round(p["median_steps_at_least"] / d["median_steps"], 2)
        elif p["median_steps"] and d["median_steps_at_least"]:
            entry["median_steps_ratio_at_most"] = round(p["median_steps"] / d["median_steps_at_least"], 2)
        out[kind] = entry
    return out


@torch.no_grad()
def _decoder_logits(model, vectors: torch.Tensor, chunks: list[list[int]]) -> torch.Tensor:
    """Logits of the KV-cache decoder fed the true tokens: [B, L, V] (all chunks of equal length)."""
    cache_arg = _cache_argument(model)
    output = model(inputs_embeds=start_embeddings(model, len(chunks), Layout(), vectors), use_cache=True)
    steps = [output.logits[:, -1].float()]
    tokens = torch.tensor(chunks, device=vectors.device)
    for position in range(tokens.shape[1] - 1):
        output = model(input_ids=tokens[:, position:position + 1], use_cache=True, **{cache_arg: _cache_of(output)})
        steps.append(output.logits[:, -1].float())
    return torch.stack(steps, dim=1)


@torch.no_grad()
def decode_drift(loaded, chunks: list[list[int]], seed: int = 0) -> dict:
    """How far logits move between ways of running the same decode. A forced-token margin well
    above these figures keeps near-ties from flipping when extraction runs differently."""
    model = loaded.model
    vectors = initial_vectors(model, len(chunks), 1, seed).to(device=loaded.device, dtype=loaded.dtype)
    reference = _decoder_logits(model, vectors, chunks)
    single = torch.cat([_decoder_logits(model, vectors[i:i + 1], chunks[i:i + 1]) for i in range(len(chunks))])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_thread = _decoder_logits(model, vectors, chunks)
    finally:
        torch.set_num_threads(threads)
    tokens = torch.tensor(chunks, device=vectors.device)
    inputs = torch.cat([vectors, model.get_input_embeddings()(tokens)], dim=1)
    full = model(inputs_embeds=inputs).logits[:, :tokens.shape[1]].float()  # the training forward

    def worst(other):
        return float((other - reference).abs().max())

    return {"chunks": len(chunks), "tokens_per_chunk": len(chunks[0]), "dtype": str(loaded.dtype),
            "max_abs_logit_diff_batch_vs_single": worst(single),
            "max_abs_logit_diff_threads_%d_vs_1" % threads: worst(one_thread),
            "max_abs_logit_diff_training_forward_vs_decoder": worst(full)}


def peak_rss(files: list[str], args: list[str], workdir, on_row=None, on_step=None) -> list[dict]:
    """Peak resident memory of `memzip compress` and `extract` on each file, each in a fresh
    child process (so one measurement cannot inherit another's heap). Compare the rows: the
    smallest file is the baseline of the same run. A 1 MB file takes long on a CPU, so each
    step (on_step(file, step, peak MB, seconds)) and each row (on_row) is reported as soon as
    it is measured."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    rows = []
    for index, source in enumerate(files):
        archive = Path(workdir) / f"rss-{index}.memz"
        restored = Path(workdir) / f"rss-{index}.out"
        row = {"file": str(source), "bytes": Path(source).stat().st_size}
        for step, command in (("compress", ["compress", str(source), "-o", str(archive), *args]),
                              ("extract", ["extract", str(archive), "-o", str(restored)])):
            began = time.perf_counter()
            pid = subprocess.Popen([sys.executable, "-m", "memzip", *command, "--force", "--quiet"])
            _, status, usage = os.wait4(pid.pid, 0)
            if status != 0:
                raise RuntimeError(f"memzip {step} failed on {source}")
            row[f"{step}_peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux reports KiB
            row[f"{step}_seconds"] = round(time.perf_counter() - began, 1)
            if on_step:
                on_step(str(source), step, row[f"{step}_peak_rss_mb"], row[f"{step}_seconds"])
        row["identical"] = Path(source).read_bytes() == restored.read_bytes()
        row["memz_bytes"] = archive.stat().st_size
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


def bytes_bench(loaded, files: list, grid: list, extract: bool = True, on_row=None, compare_ce: bool = False) -> list[dict]:
    """`memzip bench-bytes`: compress (and extract, verify) each file with each CompressOptions
    of `grid` through the product path (the model's archive, never the stored fallback); bits per
    byte beside zstd -19, xz -9 and the model's cross-entropy, and tokens per second both ways.
    `compare_ce`: also the float32 and the exact model's cross-entropy on the same 1024-token
    chunks of each file (the exact engine's cost in bits against transformers' float forward)."""
    import dataclasses
    from pathlib import Path

    from memzip.pipeline import compress_bytes, extract_bytes
    from memzip.format.container import decode_archive, encode_archive
    from memzip.format.stats import archive_stats

    rows = []
    for path in files:
        data = Path(path).read_bytes()
        ce = chunked_cross_entropy(loaded, data) if compare_ce else {}
        for options in grid:
            options = dataclasses.replace(options, store_fallback=False)
            began = time.perf_counter()
            # with the file's time, as `memzip compress` writes it (the name is implied by the archive's)
            archive, _ = compress_bytes(data, loaded, options, mtime_ns=Path(path).stat().st_mtime_ns)
            compress_seconds = time.perf_counter() - began
            raw = encode_archive(archive)
            stats = archive_stats(archive, len(raw))
            header = archive.header
            row = {"file": str(path), "bytes": len(data), "tokens": header.text.tokens, "engine": header.decode.engine,
                   "mem_vectors": options.mem_vectors, "vector_dtype": options.vector_dtype if options.mem_vectors else None,
                   "recipe": options.recipe if options.mem_vectors else None, "window": header.decode.window,
                   "streams": header.text.chunks if header.decode.is_exact and not options.mem_vectors else None,
                   "chunk_tokens": header.encode["chunk_tokens"], "batch_size": header.decode.batch_size,
                   "margin": header.decode.margin,
                   "adaptive_bias": bool((header.decode.coding or {}).get("bias_bits")), "memz_bytes": len(raw), "byte_ratio": stats["byte_ratio"],
                   **{k: stats[k] for k in ("bits_per_byte", "residual_bits_per_byte", "model_ce_bits_per_byte",
                                            "model_only_ideal_bits_per_byte", "zstd_bits_per_byte", "xz_bits_per_byte")},
                   **ce,
                   "header_bytes": stats["bytes"]["header"],
                   "compress_seconds": round(compress_seconds, 1),
                   "compress_tokens_per_second": round(header.text.tokens / compress_seconds, 1)}
            if extract:
                began = time.perf_counter()
                identical = extract_bytes(decode_archive(raw), loaded) == data
                seconds = time.perf_counter() - began
                row.update(extract_seconds=round(seconds, 1), identical=identical,
                           extract_tokens_per_second=round(header.text.tokens / seconds, 1))
            rows.append(row)
            if on_row:
                on_row(row)
    return rows


def chunked_cross_entropy(loaded, data: bytes, chunk: int = 1024) -> dict:
    """Bits per byte of the float32 model (transformers) and of the exact engine on the same
    independent chunks of `chunk` tokens, each from the document-start token."""
    import torch

    from memzip.layout import model_only_layout
    from memzip.exact.engine import exact_model
    from memzip.textcodec import TextCodec

    tokens = TextCodec(loaded.tokenizer).encode(data).tokens.tolist()
    start = list(model_only_layout(loaded.tokenizer).prefix)
    exact = exact_model(loaded)
    bits = {"float": 0.0, "exact": 0.0}
    for a in range(0, len(tokens), chunk):
        ids = torch.tensor([start + tokens[a:a + chunk]])
        targets = ids[0, len(start):]
        with torch.no_grad():
            float_logits = loaded.model(ids.to(loaded.device)).logits[0, len(start) - 1:-1].double().cpu()
        context = exact.new_context(1, ids.shape[1] + 1, ids.shape[1] + 1)
        hidden = exact.forward(exact.embed(ids), context, torch.arange(len(start) - 1, ids.shape[1] - 1))[0]
        exact_logits = torch.cat([exact.logits(h) for h in hidden.split(64)]).double().cpu()
        for name, logits in (("float", float_logits), ("exact", exact_logits)):
            bits[name] -= float(torch.log_softmax(logits, -1).gather(1, targets[:, None]).sum()) / math.log(2)
    n = max(1, len(data))
    return {"float32_ce_bits_per_byte_1024": round(bits["float"] / n, 4),
            "exact_ce_bits_per_byte_1024": round(bits["exact"] / n, 4),
            "exact_over_float": round(bits["exact"] / bits["float"], 5) if bits["float"] else None}


# --- speed ------------------------------------------------------------------------------------------


def float_forward_rate(loaded, tokens: list[int], window: int = 1024, windows: int = 8) -> dict:
    """tokens/s of a plain float transformers forward of the model over independent windows of
    `window` tokens (at most `windows` of them from the start of `tokens`): the speed the exact
    engine is compared with, measured in the same run."""
    import torch

    model = loaded.model
    chunks = [tokens[a:a + window] for a in range(0, min(len(tokens), window * windows), window)]
    with torch.no_grad():
        model(torch.tensor([chunks[0][:16]], device=loaded.device))  # warm up
        began = time.perf_counter()
        for chunk in chunks:
            model(torch.tensor([chunk], device=loaded.device)).logits.float()
        seconds = time.perf_counter() - began
    counted = sum(len(c) for c in chunks)
    return {"tokens": counted, "seconds": round(seconds, 2), "tokens_per_second": round(counted / seconds, 1),
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."), "window": window}


def model_ops_per_token(shape, window: int) -> dict:
    """Multiply-adds x 2 per token of a Llama forward: the weight GEMMs (and the output layer), and
    attention over `window` positions."""
    d, hd = shape.d_model, shape.head_dim
    per_layer = d * (shape.heads + 2 * shape.kv_heads) * hd + shape.heads * hd * d + 3 * d * shape.ffn
    weights = 2 * (shape.layers * per_layer + d * shape.vocab)
    attention = 2 * 2 * shape.layers * shape.heads * hd * window
    return {"weights": weights, "attention": attention, "total": weights + attention}


def speed_bench(loaded, path, options, extract: bool = True, batch_size: int | None = None,
                profile: bool = False, on_row=None) -> dict:
    """`memzip bench-speed`: tokens/s compressing and extracting one file, beside a plain float32
    transformers forward of the same model timed in the same run (the ratios the speed targets
    are stated in), and this machine's table of exact product backends (each measured now at the
    model's shapes, and the choice the engine uses); with `profile`, the time split into the
    model's forward, the coding, and the rest."""
    import dataclasses
    import resource
    from pathlib import Path

    from memzip.pipeline import compress_bytes, extract_bytes
    from memzip.exact import ExactLlama, products, streams
    from memzip.format.container import decode_archive, encode_archive
    from memzip.planning import plan
    from memzip.exact.engine import exact_model, planned_batch
    from memzip.textcodec import TextCodec

    data = Path(path).read_bytes()
    options = dataclasses.replace(options, store_fallback=False)
    job = plan(options, loaded)
    model = exact_model(loaded)  # built before the clock starts, as a loaded model would be
    shape = model.shape
    row = {"file": str(path), "bytes": len(data), "engine": job.engine, "window": job.window,
           "implementation": type(model).__name__, "threads": __import__("torch").get_num_threads()}
    with streams.profiling(profile) as timings:
        began = time.perf_counter()
        archive, _ = compress_bytes(data, loaded, options)
        row["compress_seconds"] = round(time.perf_counter() - began, 2)
    tokens = archive.header.text.tokens
    row.update(tokens=tokens, streams=archive.header.text.chunks, memz_bytes=len(encode_archive(archive)),
               compress_tokens_per_second=round(tokens / row["compress_seconds"], 1))
    if profile:
        row["compress_profile_seconds"] = timings.split(row["compress_seconds"])
    if extract:
        raw = encode_archive(archive)
        with streams.profiling(profile) as timings:
            began = time.perf_counter()
            identical = extract_bytes(decode_archive(raw), loaded, batch_size=batch_size) == data
            row["extract_seconds"] = round(time.perf_counter() - began, 2)
        row.update(identical=identical, extract_tokens_per_second=round(tokens / row["extract_seconds"], 1),
                   extract_batch=batch_size or planned_batch(model, archive.header.text.chunks, job.window or 1024))
        if profile:
            row["extract_profile_seconds"] = timings.split(row["extract_seconds"])
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    ids = TextCodec(loaded.tokenizer).encode(data).tokens.tolist()
    row["float_forward"] = float_forward_rate(loaded, ids, job.window or 1024)
    baseline = row["float_forward"]["tokens_per_second"]
    row["compress_share_of_float_forward"] = round(row["compress_tokens_per_second"] / baseline, 3)
    if extract:
        row["extract_share_of_float_forward"] = round(row["extract_tokens_per_second"] / baseline, 3)
    ops = model_ops_per_token(shape, job.window or 1024)
    row["model_gop_per_token"] = round(ops["total"] / 1e9, 4)
    group = shape.heads // shape.kv_heads
    measured = products.measure(shape.product_shapes(model.settings),
                                (ExactLlama.query_block * group, (job.window or 1024) + ExactLlama.query_block,
                                 shape.head_dim), model.device)
    row["products"] = {"rows": products.BLOCK_ROWS, "rates_gop_per_second": measured.rates,
                       "fastest_now": {**measured.roles, "attention": measured.attention},
                       "engine_uses": {**model.choice.roles, "attention": model.choice.attention},
                       "engine_choice": model.choice.source, "machine": products.machine_description(model.device)}
    if on_row:
        on_row(row)
    return row
