"""The `memzip` command line: parse, call the library, render. No logic of its own.

Data goes to stdout (`--json`, `--stdout`), progress and messages to stderr. Expected errors
print one line and a hint and exit non-zero; MEMZIP_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from memzip import __version__
from memzip.errors import MemzipError, UsageError
from memzip.vectors.recipes import RECIPES, get_recipe

app = typer.Typer(
    name="memzip",
    help="Lossless archiver that codes text with a frozen language model: the model's own "
         "probabilities by default (archives decode bit for bit the same on every machine), or "
         "trained [mem] vectors with --mem-vectors (Kuratov et al. 2025).\n\n"
         "\b\nExamples:\n"
         "  memzip compress book.txt               # embedded model, writes book.txt.memz\n"
         "  memzip extract book.txt.memz           # writes book.txt, verified byte for byte\n"
         "  memzip test *.memz                     # decode and verify, write nothing\n"
         "  memzip stats book.txt.memz             # bits per byte beside zstd -19, xz -9\n"
         "  memzip compress -c notes.txt > n.memz  # to stdout; '-' reads stdin\n"
         "  memzip compress book.txt -m llama-3.1-8b --device cuda",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# --- options shared by several commands (defined once) ------------------------------------------

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Alias (see `memzip models`), hub id[@revision], model directory or .gguf file.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Model dtype: auto, float32, bfloat16 or float16.")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file (one input only).")]
StdoutOpt = Annotated[bool, typer.Option("--stdout", "-c", help="Write to stdout (one input only).")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output; extract even if the model differs.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or messages on stderr.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON result on stdout (implies no progress); errors too.")]
ArchiveArg = Annotated[Path, typer.Argument(help="A .memz archive ('-': stdin).", show_default=False)]
ArchivesArg = Annotated[list[Path], typer.Argument(help=".memz archives ('-': stdin).", show_default=False)]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Streams decoded side by side (default: from memory, at most 32, even rounds; any value decodes the same).")]
RECIPE_HELP = ("How [mem] vectors are fitted: " + ", ".join(RECIPES) + " (long, long-hinge: 2000 cosine-decayed "
               "steps for chunks near capacity; paper: the authors' code as it runs).")
RecipeOpt = Annotated[str, typer.Option("--recipe", help=RECIPE_HELP)]


def _debug() -> bool:
    return os.environ.get("MEMZIP_DEBUG", "") not in ("", "0")


def _error_line(exc: Exception) -> tuple[str, str | None, int]:
    """(message, hint, exit code) of an error, expected or not."""
    if isinstance(exc, MemzipError):
        return exc.message, exc.hint or None, exc.exit_code
    return (f"internal error: {type(exc).__name__}: {exc}".splitlines()[0],
            "rerun with MEMZIP_DEBUG=1 for the traceback, and please report it", 70)


def _report_error(exc: Exception, json_out: bool, where: str | None = None) -> int:
    if _debug():
        traceback.print_exc()
    message, hint, code = _error_line(exc)
    if json_out:
        _emit_json({"input": where, "error": message, "hint": hint, "exit_code": code})
    else:
        err.print(f"memzip: {where + ': ' if where else ''}error: {message}" if isinstance(exc, MemzipError)
                  else f"memzip: {where + ': ' if where else ''}{message}", markup=False)
        if hint:
            err.print(f"hint: {hint}", markup=False)
    return code


def reports_errors(command):
    """One-line errors with a hint and an exit code for everything memzip expects to go wrong
    (with --json, an object on stdout instead)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            err.print("memzip: interrupted; nothing was written under the output name", markup=False)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            raise typer.Exit(_report_error(exc, bool(kwargs.get("json_out")))) from None

    return wrapper


def _main_process() -> bool:
    """False on torchrun's ranks other than 0, which draw no progress (rank 0 speaks for all)."""
    return os.environ.get("RANK", "0") == "0"


def _emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        err.print(message, markup=False)


# --- progress ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def progress_bar(enabled: bool, label: str = ""):
    """A rich bar on stderr (tokens done, ETA, the optimizer's numbers) fed by the library's plain
    progress callback; yields None when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tokens"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[detail]}"),
                   console=err, transient=False)
    tasks: dict[str, int] = {}

    def on_progress(event) -> None:
        if event.stage == "prepare":  # one-time work on this machine, before any bar
            err.print(f"memzip: {event.message}", markup=False)
            return
        if not event.total:
            return  # nothing to count (an empty or stored file): no bar at all
        if event.stage not in tasks:
            if not tasks:
                bar.start()
            name = f"{event.stage} {label}".strip()
            tasks[event.stage] = bar.add_task(name, total=event.total, detail="")
        detail = {}
        if event.step is not None:
            if event.step % 5:
                return
            detail["detail"] = (f"step {event.step}  loss {event.loss:.3f}  acc {event.accuracy:.3f}  "
                                f"({event.active} in work)")
        bar.update(tasks[event.stage], completed=event.done, **detail)

    try:
        yield on_progress
    finally:
        if tasks:
            bar.stop()


def _each(inputs: list[str], work, json_out: bool, quiet: bool) -> None:
    """Run `work(input)` for every input (one model load for all): one line (or JSON object) per
    input, the others still done when one fails, and a non-zero exit if any failed."""
    results, code = [], 0
    for source in inputs:
        try:
            result = work(source)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if json_out:
                if _debug():
                    traceback.print_exc()
                message, hint, failed = _error_line(exc)
                results.append({"input": source, "error": message, "hint": hint, "exit_code": failed})
            else:
                failed = _report_error(exc, False, source if len(inputs) > 1 else None)
            code = code or failed
            continue
        if result is not None:
            results.append(result)
    if json_out and results:
        _emit_json(results[0] if len(inputs) == 1 else results)
    if code:
        raise typer.Exit(code)


def _one_output(inputs: list, output, to_stdout: bool) -> None:
    if len(inputs) > 1 and (output is not None or to_stdout):
        raise UsageError("-o and -c take one input", hint="Give one file, or drop -o/-c to name each output FILE.memz.")


# --- commands -------------------------------------------------------------------------------------


@app.command()
@reports_errors
def compress(
    files: Annotated[list[str], typer.Argument(help="Files to compress ('-': stdin).", show_default=False)],
    model: ModelOpt = "embedded",
    output: OutputOpt = None,
    stdout: StdoutOpt = False,
    mem_vectors: Annotated[int, typer.Option("--mem-vectors", help="[mem] vectors fitted per chunk (the paper's method). 0: the model codes the text alone, fewest bytes and no fitting.")] = 0,
    engine: Annotated[str, typer.Option("--engine", help="auto (exact wherever the model is Llama-architecture), exact (the same logits on every machine, the model's probabilities coded), or float (rank choices under --margin).")] = "auto",
    window: Annotated[Optional[int], typer.Option("--window", help="Exact engine: positions attention sees besides the first (default 1024; 2048 is ~1% smaller and slower).")] = None,
    streams: Annotated[Optional[int], typer.Option("--streams", help="Exact engine, model-only: streams decoded side by side (default: one per 12,288 tokens, up to 4 of at least 1,024 for small files). More: faster extraction, ~33 bytes each.")] = None,
    chunk_tokens: Annotated[Optional[int], typer.Option("--chunk-tokens", help="Tokens per chunk (with vectors: default the model's registry length; float engine: 1024).")] = None,
    margin: Annotated[Optional[float], typer.Option("--margin", help="Float engine: logit differences the archive tolerates on another machine, x2 (default 0.01 for float32 models, 0.5 for bfloat16).")] = None,
    recipe: RecipeOpt = "default",
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Optimizer steps per chunk at most (default: the recipe's).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the vectors' random start.")] = 0,
    chunking: Annotated[str, typer.Option("--chunking", help="With vectors: auto (information unless --chunk-tokens), information (cut by the text's cross-entropy; registry models), or length.")] = "auto",
    vector_dtype: Annotated[str, typer.Option("--vector-dtype", help="Storage of vectors: float32, float16, int8, int6, int5, int4, int3 or int2 (fitted with the rounding in the loop).")] = "float16",
    code_dims: Annotated[Optional[int], typer.Option("--code-dims", help="Store each vector as a code of this many numbers in a fixed random subspace.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Chunks fitted together with vectors (default 8), or decoded together by the float engine (default 32).")] = None,
    store: Annotated[bool, typer.Option("--store/--no-store", help="Store the bytes as they are where that is smaller than the model's archive (default); --no-store always writes the model's.")] = True,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    force: ForceOpt = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its journal (running the same command again does this too).")] = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
):
    """Compress each FILE into FILE.memz (or -o OUT, or -c to stdout).

    By default the model codes the text from its own context: a few long streams, each token
    coded with the model's full probabilities, computed by an exact integer forward that gives
    the same bits on every machine. Where the model would not beat zstd -19 (binary data,
    tiny files), the bytes are stored as they are instead. With --mem-vectors N, N trained
    vectors per chunk steer the model (Kuratov et al. 2025). Extraction is verified either way.

    \b
    Examples:
      memzip compress book.txt                        # -> book.txt.memz
      memzip compress a.txt b.txt c.txt               # one model load for all
      memzip compress book.txt --streams 16           # faster extraction, a little larger
      memzip compress notes.txt --mem-vectors 1       # the paper's [mem] vectors
      cat log.txt | memzip compress - -c > log.memz

    Finished units of work are journaled in OUT.journal; after Ctrl-C or a crash, run the same
    command again (or add --resume) to continue.
    """
    from memzip.api import CompressOptions, Models, compress_file

    _one_output(files, output, stdout)
    options = CompressOptions(mem_vectors=mem_vectors, chunk_tokens=chunk_tokens, chunking=chunking, recipe=recipe,
                              max_steps=max_steps, seed=seed, vector_dtype=vector_dtype, code_dims=code_dims,
                              batch_size=batch_size, margin=margin, engine=engine, window=window, streams=streams,
                              store_fallback=store)
    options.check()
    models = Models()

    def work(source: str):
        with progress_bar(not (quiet or json_out) and _main_process(), source) as on_progress:
            result = compress_file(source, output, options, model=model, device=device, dtype=dtype, force=force,
                                   resume=resume, to_stdout=stdout, models=models, on_progress=on_progress)
        if result is not None and not json_out:
            _say(quiet, _compress_line(result))
        return result

    _each(files, work, json_out, quiet)


def _compress_line(result: dict) -> str:
    where = result["output"] or "stdout"
    if result["mode"] == "stored":
        return (f"{where}: {result['original_bytes']} -> {result['memz_bytes']} bytes, stored "
                f"({result['stored_because']}), {result['seconds']:.1f} s")
    vectors = f", {result['tokens_per_vector']} tokens/vector" if result["vectors"] else ""
    return (f"{where}: {result['original_bytes']} -> {result['memz_bytes']} bytes "
            f"({result['bits_per_byte']} bits/byte; xz -9: {result['xz_bytes']}), "
            f"{result['tokens']} tokens{vectors}, {result['seconds']:.1f} s")


@app.command()
@reports_errors
def extract(
    archives: ArchivesArg,
    output: OutputOpt = None,
    stdout: StdoutOpt = False,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Load the model from here instead of what the archive names (fingerprints are still checked).")] = None,
    batch_size: BatchOpt = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
):
    """Decode each ARCHIVE back to the original file, verified byte for byte (SHA-256).

    FILE.memz extracts to FILE (its permission bits and modification time restored), unless -o
    or -c. An archive from stdin ('-') extracts to stdout.

    \b
    Examples:
      memzip extract book.txt.memz                    # -> book.txt
      memzip extract book.txt.memz -o copy.txt
      memzip extract book.txt.memz -c | less
      cat book.txt.memz | memzip extract - > book.txt
    """
    from memzip.api import Models, extract_file

    _one_output(archives, output, stdout)
    models = Models()

    def work(source: Path):
        with progress_bar(not (quiet or json_out) and _main_process(), str(source)) as on_progress:
            result = extract_file(source, output, to_stdout=stdout, model=model, device=device, force=force,
                                  batch_size=batch_size, models=models, on_progress=on_progress)
        if result is not None and not json_out and result["output"]:
            _say(quiet, f"{result['output']}: {result['bytes']} bytes, SHA-256 verified")
        return result

    _each([str(a) for a in archives], work, json_out, quiet)


@app.command("test")
@reports_errors
def test_command(
    archives: ArchivesArg,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Load the model from here instead of what the archive names.")] = None,
    batch_size: BatchOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
):
    """Decode and verify each ARCHIVE completely, writing nothing (like gzip -t).

    Prints one line per archive; exits non-zero if any is bad.

    \b
    Example:
      memzip test *.memz
    """
    from memzip.api import Models, test_archive

    models = Models()

    def work(source: str):
        with progress_bar(not (quiet or json_out) and _main_process(), source) as on_progress:
            result = test_archive(source, model=model, device=device, batch_size=batch_size, models=models,
                                  on_progress=on_progress)
        if result is not None and not json_out:
            _say(quiet, f"{source}: OK ({result['bytes']} bytes, SHA-256 verified)")
        return result

    _each([str(a) for a in archives], work, json_out, quiet)


@app.command()
@reports_errors
def stats(archive: ArchiveArg, json_out: JsonOpt = False):
    """Where the bytes went: bits per byte beside zstd -19, xz -9 and the model's cross-entropy;
    vectors (tokens per vector, the paper's ratio, and what each saved against what it cost)."""
    from memzip.api import archive_report

    report = archive_report(archive)
    if json_out:
        _emit_json(report)
        return
    from rich.table import Table

    def bpb(value) -> str:
        return "n/a (empty file)" if value is None else f"{value} bits/byte"

    sizes = report["bytes"]
    if report["mode"] == "stored":
        model_line = f"none: the bytes are stored as they are ({report['stored_because']})"
    elif report["engine"] == "float-ranks":
        model_line = f"{report['model']} ({report['mode']}, float engine, margin {report['margin']:g})"
    else:
        model_line = f"{report['model']} ({report['mode']}, exact engine, window {report['window']})"
    rows = [
        ("model", model_line),
        ("original", f"{report['original_bytes']} bytes" + (
            f", {report['tokens']} tokens in {report['chunks']} " + ("chunk" if report["vectors"] or report["engine"] == "float-ranks" else "stream")
            + ("" if report["chunks"] == 1 else "s")
            if report["mode"] != "stored" else "")),
        (".memz", f"{report['memz_bytes']} bytes  x{report['byte_ratio']}  {bpb(report['bits_per_byte'])}"),
        ("zstd -19", f"{report['zstd_bytes']} bytes  x{report['zstd_ratio']}  {bpb(report['zstd_bits_per_byte'])}"),
        ("xz -9", f"{report['xz_bytes']} bytes  x{report['xz_ratio']}  {bpb(report['xz_bits_per_byte'])}"),
    ]
    if report["mode"] != "stored":
        if report["model_ce_bits_per_byte"] is not None:
            rows.append(("model's cross-entropy", f"{bpb(report['model_ce_bits_per_byte'])} (the exact model on this "
                                                  "text as coded; the residual's floor)"))
        rows.append(("model-only ideal", f"{bpb(report['model_only_ideal_bits_per_byte'])} (its cross-entropy "
                                         "without vectors)"))
        rows.append(("bytes", f"header {sizes['header']}, payload {sizes['payload']} (residual {sizes['residual_raw']}"
                              + (f", vectors {sizes['vectors_raw']}" if report["vectors"] else "")
                              + f"), framing {sizes['framing']}"))
        rows.append(("first choices", f"{report['tokens'] - (report['corrections'] or 0)} of {report['tokens']} "
                                      f"tokens were the model's first choice"))
    if report["vectors"]:
        rows += [
            ("vectors", f"{report['vectors']} ({report['mem_vectors_per_chunk']} per chunk, {report['vector_dtype']}"
                        + (f", {report['code_dims']}-number codes" if report["code_dims"] else "")
                        + f", {report['bytes_per_vector']} bytes each)"),
            ("tokens per vector", f"{report['tokens_per_vector']} (the paper's ratio; not a byte ratio)"),
        ]
        if "saved_bits_per_vector" in report:
            rows.append(("per vector", f"saved {report['saved_bits_per_vector']} bits of cross-entropy, "
                                       f"cost {report['stored_bits_per_vector']} bits stored"))
    table = Table(title=str(archive), show_header=False, box=None)
    for key, value in rows:
        table.add_row(key, value)
    Console(highlight=False).print(table)


@app.command()
@reports_errors
def info(archive: ArchiveArg, json_out: JsonOpt = False):
    """Show an archive's header (model, fingerprints, settings) without loading any model."""
    from dataclasses import asdict

    from memzip.api import archive_header

    header = asdict(archive_header(archive))
    if json_out:
        _emit_json(header)
        return
    for section, values in header.items():
        if isinstance(values, dict):
            typer.echo(f"{section}:")
            for key, value in values.items():
                typer.echo(f"  {key}: {value}")
        else:
            typer.echo(f"{section}: {values}")


@app.command()
@reports_errors
def models(json_out: JsonOpt = False):
    """List the model registry and which models are available here without a download."""
    from memzip.models import available_models

    rows = available_models()
    if json_out:
        _emit_json(rows)
        return
    table = [("alias", "from", "params", "d_model", "engine", "here")] + [
        (r["alias"], r["source"], r["params"], str(r["d_model"]), r["engine"], "yes" if r["available"] else "no")
        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:  # plain columns: never truncated, whatever the terminal's width
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    typer.echo("Also accepted by -m: any hub id (org/name[@revision]), a model directory, a .gguf file.")


@app.command()
@reports_errors
def bench(
    model: ModelOpt = "embedded",
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


@app.command()
@reports_errors
def capacity(
    model: ModelOpt = "embedded",
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
    """
    from memzip.research.capacity import plot, run_capacity
    from memzip.format.vectors import STORAGE_DTYPES
    from memzip.research.samples import check_text_sets
    from memzip.models import load_model, resolve_model

    if vector_dtype not in STORAGE_DTYPES:
        raise UsageError(f"unknown vector dtype {vector_dtype!r}", hint="Use " + ", ".join(STORAGE_DTYPES) + ".")
    if code_dims is not None and code_dims < 1:
        raise UsageError("--code-dims must be at least 1")

    kinds = _csv(texts, str)
    check_text_sets(kinds)
    length_list, vector_list = _csv(lengths, int), _csv(vectors, int)
    if quick:
        length_list, samples, vector_list = [8, 16, 32], 2, [1]
        max_steps = 200 if max_steps is None else max_steps
    if not length_list or min(length_list) < 1 or not vector_list or min(vector_list) < 1 or samples < 1:
        raise UsageError("lengths, vectors and samples must be positive")
    get_recipe(recipe)  # an unknown recipe is a usage error before the model loads
    loaded = load_model(resolve_model(model), device=device, dtype=dtype)

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


@app.command("bench-bytes")
@reports_errors
def bench_bytes(
    files: Annotated[list[Path], typer.Argument(help="Files to compress, extract and verify.", show_default=False)],
    model: ModelOpt = "embedded",
    engines: Annotated[str, typer.Option("--engines", help="Engines to try, comma-separated: exact, float.")] = "exact",
    windows: Annotated[str, typer.Option("--windows", help="Exact engine: windows to try, comma-separated (default 1024).")] = "",
    streams: Annotated[str, typer.Option("--streams", help="Exact engine: stream counts to try, comma-separated (default: by length).")] = "",
    chunk_tokens: Annotated[str, typer.Option("--chunk-tokens", help="Chunk lengths to try, comma-separated (default: the mode's).")] = "",
    margins: Annotated[str, typer.Option("--margins", help="Float engine: margins to try, comma-separated (default: the dtype's).")] = "",
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
        for length, margin, window, count in itertools.product(
                _csv(chunk_tokens, int) or [None], (_csv(margins, float) if not exact else []) or [None],
                (_csv(windows, int) if exact else []) or [None], (_csv(streams, int) if exact and not mem_vectors else []) or [None]):
            grid.append(CompressOptions(mem_vectors=mem_vectors, chunk_tokens=length, margin=margin, vector_dtype=vector_dtype,
                                        recipe=recipe, max_steps=max_steps, batch_size=batch_size, engine=engine,
                                        window=window, streams=count))
    for options in grid:
        options.check()
    loaded = load_model(resolve_model(model), device=device, dtype=dtype)

    def show(row):
        setting = (f"window {row['window']}, {row['streams']} streams" if row["engine"] != "float-ranks"
                   else f"chunk {row['chunk_tokens']}, margin {row['margin']:g}")
        _say(False, f"{row['file']}: {row['engine']} ({setting}): {row['bits_per_byte']} bits/byte "
                    f"(model {row['model_ce_bits_per_byte'] or row['model_only_ideal_bits_per_byte']}, "
                    f"zstd {row['zstd_bits_per_byte']}, xz {row['xz_bits_per_byte']}); "
                    f"{row['compress_tokens_per_second']} tokens/s compress"
                    + (f", {row['extract_tokens_per_second']} extract, identical: {row['identical']}" if extract else ""))

    rows = bytes_bench(loaded, [str(f) for f in files], grid, extract=extract, on_row=show, compare_ce=compare_ce)
    if json_out:
        _emit_json(rows)


@app.command("bench-speed")
@reports_errors
def bench_speed(
    file: Annotated[Path, typer.Argument(help="The file to compress and extract.", show_default=False)],
    model: ModelOpt = "embedded",
    window: Annotated[Optional[int], typer.Option("--window", help="Exact engine window (default 1024).")] = None,
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


@app.command("bench-memory")
@reports_errors
def bench_memory(
    files: Annotated[list[Path], typer.Argument(help="Files to compress and extract, smallest first (the baseline).")],
    model: ModelOpt = "embedded",
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


def _version(value: bool):
    if value:
        typer.echo(f"memzip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Show the version and exit.")] = False):
    pass


def main() -> None:
    app()
