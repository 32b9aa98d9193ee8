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
from memzip.models import DEFAULT_MODEL
from memzip.options import (BEST_WINDOW, CPU_BATCH_SIZE, DEFAULT_MARGIN, EXACT_WINDOW, MAX_STREAMS_AT_ONCE,
                            ONE_STREAM_WINDOW, SMALL_FILE_STREAMS, SMALL_STREAM_TOKENS, STREAM_TOKENS)
from memzip.vectors.recipes import RECIPES

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
         "  memzip compress book.txt -m llama-3.1-8b --device cuda\n\n"
         "The last five commands measure rather than archive (the research tools): bench, capacity, "
         "bench-bytes, bench-speed, bench-memory.",
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
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help=f"Streams decoded side by side (default: from memory, at most {MAX_STREAMS_AT_ONCE}, even rounds; rounded up to whole groups of streams that share an adaptive bias, 4 in formats 8-9; any value decodes the same).")]
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
        except BrokenPipeError:  # the reader of stdout left (`memzip info x.memz | head`): nothing to say
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so that Python's exit flush does not complain again
            raise typer.Exit(141) from None
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
    model: ModelOpt = DEFAULT_MODEL,
    output: OutputOpt = None,
    stdout: StdoutOpt = False,
    mem_vectors: Annotated[int, typer.Option("--mem-vectors", help="[mem] vectors fitted per chunk (the paper's method). 0: the model codes the text alone, fewest bytes and no fitting.")] = 0,
    engine: Annotated[str, typer.Option("--engine", help="auto (exact wherever the model is Llama-architecture), exact (the same logits on every machine, the model's probabilities coded), or float (rank choices under --margin).")] = "auto",
    window: Annotated[Optional[int], typer.Option("--window", help=f"Exact engine: positions attention sees besides the first (default {ONE_STREAM_WINDOW} for a file of one stream, {EXACT_WINDOW} for several). {ONE_STREAM_WINDOW} on a book in streams: ~0.6% fewer bytes, ~35% slower compression; 2048, 4096 and 8192 cost at most 1 byte of settings, other values ~60.")] = None,
    streams: Annotated[Optional[int], typer.Option("--streams", help=f"Exact engine, model-only: streams decoded side by side (default: one per {STREAM_TOKENS:,} tokens, up to {SMALL_FILE_STREAMS} of at least {SMALL_STREAM_TOKENS:,} for smaller files, one under {2 * SMALL_STREAM_TOKENS:,}). More: faster extraction (on 2 cores one stream ~60 tokens/s, 4 ~120-200); fewer: fewer bytes (alice29.txt in 1 stream, with its window of 4096, instead of 4: -1.1%; --best: -1.5%).")] = None,
    chunk_tokens: Annotated[Optional[int], typer.Option("--chunk-tokens", help="Tokens per chunk (with vectors: default the model's registry length; float engine: 1024).")] = None,
    margin: Annotated[Optional[float], typer.Option("--margin", help=f"Float engine: logit differences the archive tolerates on another machine, x2 (default {DEFAULT_MARGIN['float32']} for float32 models, {DEFAULT_MARGIN['bfloat16']} for bfloat16).")] = None,
    recipe: RecipeOpt = "default",
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Optimizer steps per chunk at most (default: the recipe's).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the vectors' random start.")] = 0,
    chunking: Annotated[str, typer.Option("--chunking", help="With vectors: auto (information unless --chunk-tokens), information (cut by the text's cross-entropy; registry models), or length.")] = "auto",
    vector_dtype: Annotated[str, typer.Option("--vector-dtype", help="Storage of vectors: float32, float16, int8, int6, int5, int4, int3 or int2 (fitted with the rounding in the loop).")] = "float16",
    code_dims: Annotated[Optional[int], typer.Option("--code-dims", help="Store each vector as a code of this many numbers in a fixed random subspace.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help=f"Chunks fitted together with vectors (default {CPU_BATCH_SIZE[True]} on a CPU), or decoded together by the float engine (default {CPU_BATCH_SIZE[False]}; on a GPU: from its memory).")] = None,
    store: Annotated[bool, typer.Option("--store/--no-store", help="Store the bytes as they are where that is smaller than the model's archive (default); --no-store always writes the model's.")] = True,
    check: Annotated[str, typer.Option("--check", help="How extraction verifies the original: digest (the first 8 bytes of its SHA-256, the default) or sha256 (all 32).")] = "digest",
    crlf: Annotated[bool, typer.Option("--crlf-as-lf/--keep-crlf", help="Code a file whose lines all end in CR LF with LF alone and a flag (default; ~3% smaller on such text); --keep-crlf codes the CRs too.")] = True,
    best: Annotated[bool, typer.Option("--best", help=f"Fewest bytes, whatever the time: the whole file in one stream, with a window of {BEST_WINDOW} where it is longer than {BEST_WINDOW} tokens; a shorter file gets the defaults. alice29.txt: 1.018 bits/byte against 1.034 at the defaults, for ~2.4x the compression time and ~4x the extraction time. --streams and --window still choose.")] = False,
    adapt: Annotated[bool, typer.Option("--adapt/--no-adapt", help="Learn a bias over the vocabulary as the text is coded, one for each 4 streams (default; ~2% smaller on book text); --no-adapt codes with the model's probabilities alone.")] = True,
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
      memzip compress book.txt --best                 # fewest bytes, slow extraction
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
                              store_fallback=store, checksum=check, line_endings=crlf, adaptive_bias=adapt,
                              best=best)
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
    if result["vectors"]:
        pieces = f", {result['tokens_per_vector']} tokens/vector"
    else:  # streams: each after the first restarts the context and the bias, and makes extraction faster
        pieces = f" in {result['chunks']} stream" + ("" if result["chunks"] == 1 else
                                                      "s (fewer with --streams: fewer bytes, slower extraction)")
    return (f"{where}: {result['original_bytes']} -> {result['memz_bytes']} bytes "
            f"({result['bits_per_byte']:.3f} bits/byte; zstd -19: {result['zstd_bytes']}, xz -9: {result['xz_bytes']}), "
            f"{result['tokens']} tokens{pieces}, {result['seconds']:.1f} s")


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
def stats(archive: ArchiveArg,
          decode: Annotated[bool, typer.Option("--decode", help="Decode the archive in memory (loads its model) to measure zstd -19 and xz -9 on the original where the archive does not record them (formats 5-8).")] = False,
          model: Annotated[Optional[str], typer.Option("-m", "--model", help="With --decode: the model, if not the one the archive names.")] = None,
          device: DeviceOpt = "auto", quiet: QuietOpt = False, json_out: JsonOpt = False):
    """Where the bytes went: bits per byte beside zstd -19, xz -9 and the model's cross-entropy;
    vectors (tokens per vector, the paper's ratio, and what each saved against what it cost).

    \b
    Examples:
      memzip stats book.txt.memz
      memzip stats book.txt.memz --decode --json    # zstd -19 and xz -9 measured on the decoded original
    """
    from memzip.api import archive_report

    with progress_bar(decode and not (quiet or json_out), str(archive)) as on_progress:
        report = archive_report(archive, decode, model=model, device=device, on_progress=on_progress)
    if json_out:
        _emit_json(report)
        return
    from rich.table import Table

    def bpb(value) -> str:
        return "n/a (empty file)" if value is None else f"{value:.3f} bits/byte"

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
        (".memz", f"{report['memz_bytes']} bytes  x{report['byte_ratio']}  {bpb(report['bits_per_byte'])}"
                  + f"  (format {report['format_version']})"),
    ]
    if report["zstd_bytes"] is not None:
        rows += [
            ("zstd -19", f"{report['zstd_bytes']} bytes  x{report['zstd_ratio']}  {bpb(report['zstd_bits_per_byte'])}"),
            ("xz -9", f"{report['xz_bytes']} bytes  x{report['xz_ratio']}  {bpb(report['xz_bits_per_byte'])}"),
        ]
    else:
        rows.append(("zstd -19, xz -9", "not recorded: formats 5-9 keep only what decoding needs (--decode "
                                        "measures them)"))
    if report["mode"] != "stored":
        if report["model_ce_bits_per_byte"] is not None:
            rows.append(("model's cross-entropy", f"{bpb(report['model_ce_bits_per_byte'])} (the exact model on this "
                                                  "text as coded; the residual's floor)"))
        if report["model_only_ideal_bits_per_byte"] is not None:
            rows.append(("model-only ideal", f"{bpb(report['model_only_ideal_bits_per_byte'])} (its cross-entropy "
                                             "without vectors)"))
        rows.append(("bytes", f"header {sizes['header']}, payload {sizes['payload']} (residual {sizes['residual_raw']}"
                              + (f", vectors {sizes['vectors_raw']}" if report["vectors"] else "")
                              + f"), framing {sizes['framing']}"))
        if report["corrections"] is not None:
            rows.append(("first choices", f"{report['tokens'] - report['corrections']} of {report['tokens']} "
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
        if isinstance(values, dict):  # what the file records (formats 5-9 leave out what they derive)
            shown = {k: v for k, v in values.items() if v not in ("", None, 0) or k in ("mem_vectors", "bytes")}
            if shown:
                typer.echo(f"{section}:")
                for key, value in shown.items():
                    typer.echo(f"  {key}: {value}")
        elif values not in ("", None):
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


def _version(value: bool):
    if value:
        typer.echo(f"memzip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Show the version and exit.")] = False):
    pass


# The research commands (bench, bench-*, capacity) live in memzip/research/cli.py and register
# themselves on `app` under their own heading of `memzip --help`; imported here, once `app` and
# the shared options above exist.
import memzip.research.cli  # noqa: E402,F401


def main() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        app()
        return
    # A process of a torchrun job ends here without the interpreter's teardown. Once its work is
    # done and the process group destroyed (World.finish, after a barrier), the C++ teardown at
    # exit could still abort it, 1 run in ~20-40 of a 2-process extraction on a 2-core machine:
    # "terminate called without an active exception", SIGABRT with no Python frame left (a
    # std::thread of torch's distributed runtime destroyed while joinable), after which torchrun
    # kills the other ranks and reports the job failed although its archive was written. Its
    # outputs are written, flushed and closed by then (files.write_atomic fsyncs and renames), so
    # leaving without the teardown loses nothing.
    try:
        app()
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
