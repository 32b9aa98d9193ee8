"""The memzip library: what each command does, callable from Python. The CLI is a thin layer over
these functions; progress reaches the caller through a plain callback (`ProgressEvent`).

    from memzip.api import CompressOptions, compress_file, extract_file, archive_report
    compress_file("book.txt", "book.memz")                                  # model-only coding
    compress_file("book.txt", "v.memz", CompressOptions(mem_vectors=1))     # [mem] vectors
    extract_file("book.memz", "copy.txt")
    archive_report("book.memz")["bits_per_byte"]

In memory: `memzip.engine.compress_bytes` / `extract_bytes` with a `LoadedModel`.
"""

from __future__ import annotations

import time
from pathlib import Path

from memzip.errors import Interrupted, UsageError
from memzip.files import check_output, read_input, write_atomic, write_stdout
from memzip.format.container import encode_archive, read_archive, read_header
from memzip.format.header import Header
from memzip.journal import Journal, journal_path
from memzip.models import REGISTRY, ModelLocation, available_models, resolve_model
from memzip.options import CompressOptions, ProgressCallback, ProgressEvent
from memzip.stats import archive_stats

# memzip.engine and memzip.models.load_model bring torch and transformers (seconds to import);
# they are imported by the functions that run a model, so `stats` and `info` never load them.

__all__ = ["CompressOptions", "ProgressEvent", "compress_file", "extract_file", "archive_report",
           "archive_header", "available_models"]


def compress_file(source: str, target: Path, options: CompressOptions | None = None, *, model: str = "embedded",
                  device: str = "auto", dtype: str = "auto", force: bool = False, resume: bool = False,
                  on_progress: ProgressCallback | None = None) -> dict | None:
    """Compress a file ('-': stdin). Finished chunk groups are journaled beside the output, so
    running the same call again after an interruption continues where it stopped. Under
    torchrun every rank compresses its share; rank 0 writes the archive and gets the summary."""
    from memzip.distributed import current_world, rank_device

    target = Path(target)
    options = options or CompressOptions()
    options.check()
    world = current_world(device)
    if source == "-" and world.size > 1:
        raise UsageError("stdin cannot be shared by several processes", hint="Give the input as a file.")
    data = read_input(source)
    check_output(target, force, inputs=(source,))  # before any work: never lose hours to a refusal
    journal = Journal(journal_path(target, world.journal_suffix()))
    if resume and not journal.exists():
        raise UsageError(f"nothing to resume: {journal.path} does not exist",
                         hint="Run without --resume to start compressing.")
    from memzip.engine import compress_bytes
    from memzip.models import load_model

    loaded = load_model(resolve_model(model), device=rank_device(world, device), dtype=dtype)
    try:
        archive, report = compress_bytes(data, loaded, options, name=_safe_name(source), journal=journal,
                                         resume=resume, on_progress=on_progress, world=world)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; finished chunks are saved in {journal.path}",
                          hint="Run the same command again (or add --resume) to continue.") from None
    if archive is None:  # another rank than 0: its groups went to rank 0
        journal.remove()
        world.finish()
        return None
    raw = encode_archive(archive)
    write_atomic(target, raw, force)
    journal.remove()
    world.finish()
    stats = archive_stats(archive, len(raw), target)
    steps = sorted(c.steps for c in report.chunks)
    return {"output": str(target), **{k: stats[k] for k in (
        "mode", "original_bytes", "memz_bytes", "zstd_bytes", "xz_bytes", "bits_per_byte", "tokens", "chunks",
        "vectors", "tokens_per_vector", "corrections", "chunks_exact_without_corrections")},
        "processes": world.size,
        "median_steps": steps[len(steps) // 2] if steps else 0,
        "seconds": round(report.seconds, 2),
        "seconds_per_chunk": round(report.seconds / len(steps), 2) if steps else 0.0}


def extract_file(source: Path, target: Path | None = None, *, to_stdout: bool = False, model: str | None = None,
                 device: str = "auto", force: bool = False, on_progress: ProgressCallback | None = None) -> dict | None:
    """Decode an archive and verify it; writes the original name beside the archive unless
    `target` or `to_stdout`. Under torchrun every rank decodes its share; rank 0 writes."""
    from memzip.distributed import current_world, rank_device

    source = Path(source)
    _check_is_file(source)
    archive = read_archive(source)  # verifies the checksum before trusting any header field
    if not to_stdout:
        target = Path(target) if target else source.with_name(archive.header.text.name or source.stem + ".out")
        check_output(target, force, inputs=(str(source),))
    from memzip.engine import extract_bytes
    from memzip.models import load_model

    world = current_world(device)
    location = _archive_model(archive.header) if model is None else resolve_model(model)
    loaded = load_model(location, device=rank_device(world, device), dtype=archive.header.decode.dtype)
    started = time.perf_counter()
    data = extract_bytes(archive, loaded, force=force, on_progress=on_progress, world=world)
    seconds = time.perf_counter() - started
    if data is None:  # another rank than 0
        world.finish()
        return None
    if to_stdout:
        write_stdout(data)
    else:
        write_atomic(target, data, force)
    world.finish()
    return {"output": None if to_stdout else str(target), "bytes": len(data),
            "sha256": archive.header.text.sha256, "verified": True, "seconds": round(seconds, 2),
            "tokens_per_second": round(archive.header.text.tokens / seconds, 1) if seconds else None,
            "processes": world.size}


def archive_report(source: Path) -> dict:
    """`memzip stats`: where the archive's bytes went (no model is loaded)."""
    source = Path(source)
    _check_is_file(source)
    return archive_stats(read_archive(source), source.stat().st_size, source)


def archive_header(source: Path) -> Header:
    """`memzip info`: the header alone, without reading or checking the payload."""
    source = Path(source)
    _check_is_file(source)
    return read_header(source)


def _check_is_file(path: Path) -> None:
    if not path.is_file():
        read_input(str(path))  # raises the right error: missing, a directory, unreadable


def _archive_model(header: Header) -> ModelLocation:
    """Where to find the model an archive names: the embedded one, a hub id, or a path. For
    local models the absolute path recorded at compression comes first (the user's -m text may
    have been relative to another directory); the fingerprints are checked after loading."""
    recorded = header.model
    if recorded.source == "hub" and recorded.hub_id:
        if recorded.name in REGISTRY:
            return resolve_model(recorded.name)
        return resolve_model(f"{recorded.hub_id}@{recorded.revision}" if recorded.revision else recorded.hub_id)
    if recorded.name not in REGISTRY and recorded.file and Path(recorded.file).exists():
        return resolve_model(recorded.file)
    return resolve_model(recorded.name)


def _safe_name(source: str) -> str | None:
    """Only a plain base name is stored: extraction must never write outside its directory."""
    if source == "-":
        return None
    name = Path(source).name
    return name if name not in ("", ".", "..") else None
