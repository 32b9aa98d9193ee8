"""The research commands: measurements around the archiver, not archiving.

    memzip bench          fitting recipes judged by greedy decoding
    memzip capacity       how much text one [mem] vector holds (the paper's protocol)
    memzip bench-bytes    bits per byte of settings side by side
    memzip bench-speed    tokens/s both ways beside a float forward, and the product backends
    memzip bench-memory   peak RSS of compress and extract

They register on the archiver's Typer app (memzip/cli.py imports this module), under their own
heading of `memzip --help`, and share its options and error handling.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from memzip.cli import (BatchOpt, DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, QuietOpt, RecipeOpt, _emit_json, _say,
                        app, reports_errors)
from memzip.errors import UsageError
from memzip.models import DEFAULT_MODEL
from memzip.options import EXACT_WINDOW, ONE_STREAM_WINDOW
from memzip.vectors.recipes import get_recipe

RESEARCH = "Research (measurements, not archiving)"


@app.command(rich_help_panel=RESEARCH)
@reports_errors
def bench(
    model: ModelOpt = DEFAULT_MODEL,
    quick: Annotated[bool, typer.Option("--quick", help="A few minutes on 2 CPU cores: 2 chunks of 12 tokens per text set, 150 steps.")] = False,
    texts: Annotated[str, typer.Option("--texts", help="Text sets, comma-separated: book, random.")] = "book,random",
    recipes: Annotated[str, typer.Option("--recipes", help="Recipes to compare, comma-separated (see compress --recipe); paper,paper-sink,paper-sink-lr,default changes one thing at a time.")] = "paper,default",
    chunks: Annotated[int, typer.Option("--chunks", help="Chunks per text set.")] = 8,
    chunk_tokens: Annotated[int, typer.Option("--chunk-tokens", help="Tokens per chunk.")] = 32,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Step budget per chunk for every recipe (default: each recipe's own).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
):
    """Compare optimization recipes on the same chunks, judged by real greedy decoding.

    Prints per recipe: chunks made lossless (no correction needed), median and p90 steps,
    tokens per vector, wall time, tokens per second; then the gain from batching.

    \b
    Examples:
      memzip bench --quick
      memzip bench -m pythia-160m --device cuda --chunks 32 --chunk-tokens 64 --json
    """
    from memzip.research.bench import run_bench
    from memzip.models import load_model, resolve_model
    from memzip.research.samples import check_text_sets

    text_sets = [t.strip() for t in texts.split(",") if t.strip()]
    recipe_names = [r.strip() for r in recipes.split(",") if r.strip()]
    for name in recipe_names:
        get_recipe(name)  # an unknown recipe is a usage error before the model loads
    check_text_sets(text_sets)
    if quick:
        chunks, chunk_tokens, max_steps = 2, 12, 150 if max_steps is None else max_steps
    loaded = load_model(resolve_model(model), device=device, dtype=dtype)

    def show(row):  # to stderr as rows come in, also with --json (the report goes to stdout)
        median = row["median_steps"] if row["median_steps"] is not None else f"> {row['median_steps_at_least']}"
        _say(quiet, f"{row['texts']:>6} {row['recipe']:>13}: {row['lossless']}/{row['chunks']} lossless, "
                    f"median steps {median} (budget {row['budget']}), {row['wall_seconds']} s")

    report = run_bench(loaded, text_sets, recipe_names, chunks, chunk_tokens, max_steps, seed, on_result=show)
    if json_out:
        _emit_json(report)
        return
    b = report["batching"]
    typer.echo(f"headline (default vs paper): {json.dumps(report['headline'])}")
    typer.echo(f"batching {b['chunks']} chunks: decode x{b['decode_speedup']} "
               f"({b['decode_tokens_per_second_batched']} vs {b['decode_tokens_per_second_one_at_a_time']} tokens/s), "
               f"optimize x{b['optimize_speedup']}")


@app.command(rich_help_panel=RESEARCH)
@reports_errors
def capacity(
    model: ModelOpt = DEFAULT_MODEL,
    texts: Annotated[str, typer.Option("--texts", help="book, random, or both comma-separated.")] = "book,random",
    quick: Annotated[bool, typer.Option("--quick", help="Minutes on 2 CPU cores: lengths 8,16,32, 2 samples, 1 vector, 200 steps.")] = False,
    lengths: Annotated[str, typer.Option("--lengths", help="Chunk lengths in tokens per vector, comma-separated (k vectors: k times as long).")] = "16,32,64,96,128",
    samples: Annotated[int, typer.Option("--samples", help="Chunks per length and text set.")] = 8,
    vectors: Annotated[str, typer.Option("--vectors", help="[mem] vector counts to scale over, comma-separated.")] = "1,2,4,8",
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Step budget per chunk (default: the recipe's).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    plot_path: Annotated[Optional[Path], typer.Option("--plot", help="Write the figures to this PNG (needs matplotlib).")] = None,
    vector_dtype: Annotated[str, typer.Option("--vector-dtype", help="Storage the vectors are fitted and judged in (see compress).")] = "float32",
    code_dims: Annotated[Optional[int], typer.Option("--code-dims", help="Fit codes of this many numbers in a random subspace (see compress).")] = None,
    recipe: RecipeOpt = "default",
    search: Annotated[bool, typer.Option("--search", help="Per text, search the longest prefix the vectors make the exact engine greedy-decode; --samples texts of each kind.")] = False,
    strategy: Annotated[str, typer.Option("--strategy", help="--search: grow (one fit whose scored part follows the prefix held; --max-steps per text, default 3000) or bisect (doubling then bisection, a fit per length; --max-steps per fit).")] = "grow",
    longest: Annotated[int, typer.Option("--longest", help="--search: the texts' length in tokens, the most a search can find.")] = 256,
    start: Annotated[int, typer.Option("--start", help="--search --strategy bisect: the first length tried.")] = 16,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
):
    """Measure how much text one [mem] vector holds: the paper's protocol plus real greedy decoding.

    Per chunk length: exact chunks (greedy and teacher-forced), decoding capacity, token gain,
    information gain (nats and bits) and utilization of Eq. 1's theoretical capacity.

    \b
    Examples:
      memzip capacity --quick --texts book
      memzip capacity -m pythia-160m --device cuda --lengths 32,64,80,96 --json --plot cap.png
      memzip capacity --texts book --lengths 32,48,64 --vector-dtype int4
      memzip capacity --search --texts book --samples 8 --json
      memzip capacity --search --strategy bisect --texts book --samples 4 --max-steps 500
    """
    from memzip.models import load_model, resolve_model
    from memzip.options import CompressOptions
    from memzip.research.capacity import plot, run_capacity
    from memzip.research.samples import check_text_sets

    # the vectors' settings are compress's: checked as compress checks them, before the model loads
    CompressOptions(mem_vectors=1, vector_dtype=vector_dtype, code_dims=code_dims, recipe=recipe,
                    max_steps=max_steps).check()

    kinds = _csv(texts, str)
    check_text_sets(kinds)
    length_list, vector_list = _csv(lengths, int), _csv(vectors, int)
    if quick:
        length_list, samples, vector_list = [8, 16, 32], 2, [1]
        max_steps = 200 if max_steps is None else max_steps
    if not length_list or min(length_list) < 1 or not vector_list or min(vector_list) < 1 or samples < 1:
        raise UsageError("lengths, vectors and samples must be positive")
    counts = [1] if vectors == "1,2,4,8" else vector_list  # --search: the default grid means one vector
    if search and len(counts) != 1:
        raise UsageError("--search fits one vector count at a time", hint="Give --vectors N.")
    if search and strategy not in ("grow", "bisect"):  # before the model loads
        raise UsageError(f"unknown --strategy {strategy!r}", hint="Use grow or bisect.")
    loaded = load_model(resolve_model(model), device=device, dtype=dtype)
    if search:
        _search(loaded, kinds, samples, counts[0], longest, start, max_steps, seed, vector_dtype, code_dims, recipe,
                strategy, quiet, json_out)
        return

    def show(row):  # to stderr as rows come in, also with --json (the report goes to stdout)
        _say(quiet, f"{row['texts']:>6} L={row['tokens']:<4} vectors={row['mem_vectors']}: "
                                f"greedy exact {row['exact_greedy']}/{row['samples']}, "
                                f"teacher-forced acc {row['teacher_forced_accuracy']}, "
                                f"info gain {row['information_gain_nats']} nats, token gain {row['token_gain']}; "
                                f"{row['total_bits_per_byte']} bits/byte with the residual "
                                f"(model alone: {row['model_only_bits_per_byte']})")

    report = run_capacity(loaded, kinds, length_list, samples, vector_list, max_steps, seed, on_row=show,
                          vector_dtype=vector_dtype, code_dims=code_dims, recipe=recipe)
    if plot_path is not None:
        if plot(report, plot_path):
            _say(quiet or json_out, f"wrote {plot_path}")
        else:
            _say(quiet, "no plot: matplotlib is not installed (pip install 'memzip[plot]')")
    if json_out:
        _emit_json(report)
    else:
        if report["decoding_capacity"] is not None:
            censored = " (at least: the longest length tried decoded; try longer --lengths)" \
                if report["decoding_capacity_censored"] else ""
            typer.echo(f"decoding capacity, one vector, {report['decoding_capacity_texts']}: "
                       f"{report['decoding_capacity']} tokens greedy{censored}, "
                       f"{report['capacity_teacher_forced']} teacher-forced")
        typer.echo(f"L_max (Eq. 1): {report['L_max_eq1']} tokens per vector")
        typer.echo(f"decoding capacity, greedy: {report['decoding_capacity_greedy']}")
        typer.echo(f"decoding capacity, teacher-forced: {report['decoding_capacity_teacher_forced']}")



def _search(loaded, kinds, samples, mem_vectors, longest, start, max_steps, seed, vector_dtype, code_dims, recipe,
            strategy, quiet, json_out) -> None:
    """`memzip capacity --search` (memzip/research/growth.py and search.py)."""
    from memzip.research.growth import GROW_STEPS, grow_capacity
    from memzip.research.samples import bench_chunks
    from memzip.research.search import search_capacity, search_report
    from memzip.vectors.optimize import VectorSpace, recipe_layout

    if not 1 <= start <= longest:
        raise UsageError("--start must be between 1 and --longest")
    chosen = get_recipe(recipe, GROW_STEPS if strategy == "grow" and max_steps is None else max_steps)
    layout = recipe_layout(chosen, loaded.tokenizer)
    space = VectorSpace(mem_vectors, vector_dtype, code_dims)
    if longest > EXACT_WINDOW - len(layout.prefix) - len(layout.infix) - mem_vectors:
        raise UsageError(f"--longest must leave the layout and the vectors room in the window of {EXACT_WINDOW}")
    texts, text_kinds = [], []
    for kind in kinds:
        picked = bench_chunks(loaded, kind, samples, longest, seed)
        texts += picked
        text_kinds += [kind] * len(picked)

    def show(searches):  # to stderr after every round or check, also with --json
        _say(quiet, "  ".join(f"{k}[{s.index}] {s.exact}" + ("" if s.done else "…")
                              for s, k in zip(searches, text_kinds)))

    if strategy == "grow":
        searches = grow_capacity(loaded, texts, chosen, space, layout, seed=seed, on_check=show)
    else:
        searches = search_capacity(loaded, texts, chosen, space, layout, start=start, seed=seed, on_round=show)
    report = search_report(loaded, searches, text_kinds, space)
    report["recipe"], report["strategy"], report["max_steps"] = chosen.name, strategy, chosen.max_steps
    if json_out:
        _emit_json(report)
        return
    if report["interrupted"]:
        _say(quiet, "interrupted: the lengths of texts still searching are lower bounds (marked >=)")
    for row in report["texts"]:
        print(f"{row['texts']:>6} text {row['index']}: {'>=' if row['searching'] else ''}"
              f"{row['greedy_exact_tokens']} tokens greedy-exact, "
              f"{row['steps']} steps, {row['seconds']} s, information gain {row['info_gain_bits']} bits")
    print(f"mean {report['mean_greedy_exact_tokens']} tokens (std {report['std_greedy_exact_tokens']}) per "
          f"{mem_vectors} vector(s) of {report['texts'][0]['vector_bytes_float16'] if report['texts'] else 0} bytes "
          "at float16")

@app.command("bench-bytes", rich_help_panel=RESEARCH)
@reports_errors
def bench_bytes(
    files: Annotated[list[Path], typer.Argument(help="Files to compress, extract and verify.", show_default=False)],
    model: ModelOpt = DEFAULT_MODEL,
    engines: Annotated[str, typer.Option("--engines", help="Engines to try, comma-separated: exact, float.")] = "exact",
    windows: Annotated[str, typer.Option("--windows", help=f"Exact engine: windows to try, comma-separated (default: {ONE_STREAM_WINDOW} for one stream, {EXACT_WINDOW} for several).")] = "",
    streams: Annotated[str, typer.Option("--streams", help="Exact engine: stream counts to try, comma-separated (default: by length).")] = "",
    chunk_tokens: Annotated[str, typer.Option("--chunk-tokens", help="Chunk lengths to try, comma-separated (default: the mode's).")] = "",
    margins: Annotated[str, typer.Option("--margins", help="Float engine: margins to try, comma-separated (default: the dtype's).")] = "",
    adapt: Annotated[str, typer.Option("--adapt", help="Exact engine, model-only: the adaptive bias on, off or both (on,off), for its ablation.")] = "on",
    mem_vectors: Annotated[int, typer.Option("--mem-vectors", help="[mem] vectors per chunk (0: model-only).")] = 0,
    vector_dtype: Annotated[str, typer.Option("--vector-dtype")] = "float16",
    recipe: RecipeOpt = "default",
    max_steps: Annotated[Optional[int], typer.Option("--max-steps")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    extract: Annotated[bool, typer.Option("--extract/--no-extract", help="Also extract, verify and time extraction.")] = True,
    compare_ce: Annotated[bool, typer.Option("--compare-ce", help="Also the float32 and exact models' cross-entropy on the same 1024-token chunks.")] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    json_out: JsonOpt = False,
):
    """Bits per byte of each setting on each file, beside zstd -19, xz -9 and the model's
    cross-entropy, through the same path as compress and extract; tokens per second both ways.

    \b
    Examples:
      memzip bench-bytes alice29.txt --engines exact,float --compare-ce
      memzip bench-bytes alice29.txt --windows 1024,2048 --streams 1,8,16
      memzip bench-bytes notes.txt --mem-vectors 1 --vector-dtype int4 --chunk-tokens 32
    """
    import itertools

    from memzip.research.bench import bytes_bench
    from memzip.models import load_model, resolve_model
    from memzip.options import CompressOptions

    for path in files:
        if not path.is_file():
            raise UsageError(f"not a file: {path}")
    grid = []
    for engine in _csv(engines, str):
        exact = engine == "exact"
        adaptive = [_on_off(v) for v in _csv(adapt, str)] if exact and not mem_vectors else [True]
        for length, margin, window, count, bias in itertools.product(
                _csv(chunk_tokens, int) or [None], (_csv(margins, float) if not exact else []) or [None],
                (_csv(windows, int) if exact else []) or [None], (_csv(streams, int) if exact and not mem_vectors else []) or [None],
                adaptive):
            grid.append(CompressOptions(mem_vectors=mem_vectors, chunk_tokens=length, margin=margin, vector_dtype=vector_dtype,
                                        recipe=recipe, max_steps=max_steps, batch_size=batch_size, engine=engine,
                                        window=window, streams=count, adaptive_bias=bias))
    for options in grid:
        options.check()
    loaded = load_model(resolve_model(model), device=device, dtype=dtype)

    def show(row):
        setting = (f"window {row['window']}, {row['streams']} streams, adaptive bias {row['adaptive_bias']}"
                   if row["engine"] != "float-ranks"
                   else f"chunk {row['chunk_tokens']}, margin {row['margin']:g}")
        _say(False, f"{row['file']}: {row['engine']} ({setting}): {row['bits_per_byte']} bits/byte "
                    f"(model {row['model_ce_bits_per_byte'] or row['model_only_ideal_bits_per_byte']}, "
                    f"zstd {row['zstd_bits_per_byte']}, xz {row['xz_bits_per_byte']}); "
                    f"{row['compress_tokens_per_second']} tokens/s compress"
                    + (f", {row['extract_tokens_per_second']} extract, identical: {row['identical']}" if extract else ""))

    rows = bytes_bench(loaded, [str(f) for f in files], grid, extract=extract, on_row=show, compare_ce=compare_ce)
    if json_out:
        _emit_json(rows)


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise UsageError(f"--adapt takes on, off or on,off, not {value!r}")
    return value == "on"


@app.command("bench-speed", rich_help_panel=RESEARCH)
@reports_errors
def bench_speed(
    file: Annotated[Path, typer.Argument(help="The file to compress and extract.", show_default=False)],
    model: ModelOpt = DEFAULT_MODEL,
    window: Annotated[Optional[int], typer.Option("--window", help=f"Exact engine window (default {ONE_STREAM_WINDOW} for one stream, {EXACT_WINDOW} for several).")] = None,
    streams: Annotated[Optional[int], typer.Option("--streams", help="Streams (default: by length).")] = None,
    batch_size: BatchOpt = None,
    extract: Annotated[bool, typer.Option("--extract/--no-extract", help="Also extract and time it.")] = True,
    profile: Annotated[bool, typer.Option("--profile", help="Split the time into the model's forward, coding and the rest.")] = False,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
):
    """Tokens per second compressing and extracting FILE, beside a plain float32 transformers
    forward of the same model timed in the same run, and the table of this machine's exact
    product backends (each measured now at the model's shapes) with the one the engine uses.

    \b
    Examples:
      OMP_NUM_THREADS=2 memzip bench-speed alice29.txt --profile
      memzip bench-speed book.txt --streams 32 --json
    """
    from memzip.research.bench import speed_bench
    from memzip.models import load_model, resolve_model
    from memzip.options import CompressOptions

    if not file.is_file():
        raise UsageError(f"not a file: {file}")
    options = CompressOptions(window=window, streams=streams)
    options.check()
    loaded = load_model(resolve_model(model), device=device, dtype="float32")
    row = speed_bench(loaded, file, options, extract=extract, batch_size=batch_size, profile=profile)
    if json_out:
        _emit_json(row)
        return
    typer.echo(f"{row['file']}: {row['bytes']} bytes, {row['tokens']} tokens in {row['streams']} streams, "
               f"window {row['window']}; archive {row['memz_bytes']} bytes; {row['implementation']}, "
               f"{row['threads']} threads")
    forward = row["float_forward"]
    typer.echo(f"float forward ({forward['dtype']} transformers, {forward['window']}-token windows, "
               f"{forward['tokens']} tokens): {forward['tokens_per_second']} tokens/s")
    typer.echo(f"compress: {row['compress_seconds']} s, {row['compress_tokens_per_second']} tokens/s = "
               f"{row['compress_share_of_float_forward']:.0%} of the float forward")
    if extract:
        typer.echo(f"extract:  {row['extract_seconds']} s, {row['extract_tokens_per_second']} tokens/s "
                   f"(batch {row['extract_batch']}) = {row['extract_share_of_float_forward']:.0%} of the float "
                   f"forward; identical: {row['identical']}")
    for direction in ("compress", "extract"):
        if f"{direction}_profile_seconds" in row:
            typer.echo(f"{direction} time: {json.dumps(row[f'{direction}_profile_seconds'])}")
    table = row["products"]
    typer.echo(f"exact products at {table['rows']} rows, GOP/s measured now (the engine uses: "
               f"{table['engine_choice']} choice):")
    for role, rates in table["rates_gop_per_second"].items():
        cells = "  ".join(f"{backend} {rate:7.1f}" for backend, rate in rates.items())
        typer.echo(f"  {role:8s} {cells}   -> {table['engine_uses'][role]}")


@app.command("bench-memory", rich_help_panel=RESEARCH)
@reports_errors
def bench_memory(
    files: Annotated[list[Path], typer.Argument(help="Files to compress and extract, smallest first (the baseline).")],
    model: ModelOpt = DEFAULT_MODEL,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Steps per chunk (0 measures the pipeline without optimization).")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    chunk_tokens: Annotated[Optional[int], typer.Option("--chunk-tokens", help="Cut chunks by length (skips the information pass, which is slow on CPU).")] = None,
    json_out: JsonOpt = False,
):
    """Peak memory (RSS) of compress and extract on each file, each in a fresh process.

    \b
    Example (a 1 MB book against a 1 KB baseline, in the same run):
      memzip bench-memory examples/alice-chapter1-opening.txt ../shared/corpus/tinyshakespeare.txt
    """
    import tempfile

    from memzip.research.bench import peak_rss

    for path in files:
        if not path.is_file():
            raise UsageError(f"not a file: {path}")
    with tempfile.TemporaryDirectory() as workdir:
        args = ["-m", model, "--max-steps", str(max_steps), "--batch-size", str(batch_size)]
        if chunk_tokens is not None:
            args += ["--chunk-tokens", str(chunk_tokens)]
        rows = peak_rss([str(f) for f in files], args, workdir,
                        on_row=lambda row: _say(False, json.dumps(row)),
                        on_step=lambda source, step, mb, seconds: _say(False, f"{source}: {step} peak {mb} MB, {seconds} s"))
    if json_out:
        _emit_json(rows)
        return
    base = rows[0]
    for row in rows:
        typer.echo(f"{row['file']}: {row['bytes']} bytes; compress {row['compress_peak_rss_mb']} MB "
                   f"(x{row['compress_peak_rss_mb'] / base['compress_peak_rss_mb']:.2f} of baseline), "
                   f"{row['compress_seconds']} s; extract {row['extract_peak_rss_mb']} MB "
                   f"(x{row['extract_peak_rss_mb'] / base['extract_peak_rss_mb']:.2f}), {row['extract_seconds']} s; "
                   f"identical: {row['identical']}")


def _csv(text: str, kind):
    try:
        return [kind(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"expected a comma-separated list, got {text!r}") from None
