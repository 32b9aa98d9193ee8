"""File-level operations: what each CLI command does, callable from Python.

    from memzip.api import compress_file, extract_file
    compress_file("book.txt", "book.memz")            # embedded model
    extract_file("book.memz", "copy.txt")
"""

from __future__ import annotations

import time
from pathlib import Path

from memzip.archive import CompressSettings, compress_bytes, extract_archive, job_identity
from memzip.container import encode_archive, read_archive
from memzip.errors import Interrupted, UsageError
from memzip.files import check_output, read_input, write_atomic, write_stdout
from memzip.journal import Journal, journal_path
from memzip.models import REGISTRY, ModelLocation, load_model, resolve_model
from memzip.progress import rich_progress
from memzip.stats import archive_stats, baselines


def compress_file(source: str, target: Path, *, model: str = "embedded", max_steps: int | None = None,
                  seed: int = 0, chunk_tokens: int | None = None, mem_vectors: int = 1,
                  chunking: str = "auto",
                  recipe: str = "default", vector_dtype: str = "float16", code_dims: int | None = None,
                  batch_size: int = 8,
                  device: str = "auto", dtype: str = "float32", force: bool = False,
                  resume: bool = False, show_progress: bool = False) -> dict:
    """Compress a file. Finished chunk groups are journaled beside the output, so running the
    same call again after an interruption continues where it stopped (`resume=True` insists)."""
    target = Path(target)
    settings = CompressSettings(recipe=recipe, max_steps=max_steps, seed=seed, chunk_tokens=chunk_tokens,
                                mem_vectors=mem_vectors, chunking=chunking, vector_dtype=vector_dtype,
                                code_dims=code_dims, batch_size=batch_size)
    settings.check()
    data = read_input(source)
    check_output(target, force, inputs=(source,))  # before any work: never lose hours to a refusal
    journal_file = journal_path(target)
    if resume and not journal_file.exists():
        raise UsageError(f"nothing to resume: {journal_file} does not exist",
                         hint="Run without --resume to start compressing.")
    location = resolve_model(model)
    loaded = load_model(location, device=device, dtype=dtype)
    chunk_tokens = settings.chunk_tokens or location.default_chunk_tokens
    journal = Journal(journal_file, job_identity(data, loaded, settings, chunk_tokens, location.nats_per_chunk))
    if resume and not journal.load():
        raise UsageError(f"{journal_file} belongs to another input, model or settings",
                         hint="Run with the same file and options as the interrupted run, or delete the journal.")
    try:
        with rich_progress("compress", show_progress) as progress:
            archive, report = compress_bytes(data, loaded, settings, progress,
                                             chunk_tokens_default=chunk_tokens, journal=journal,
                                             nats_per_chunk=location.nats_per_chunk)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; finished chunks are saved in {journal_file}",
                          hint="Run the same command again (or add --resume) to continue.") from None
    archive.header.text.name = _safe_name(source)
    archive.header.encode["baselines"] = baselines(data)
    raw = encode_archive(archive)
    write_atomic(target, raw, force)
    journal.remove()
    stats = archive_stats(archive, len(raw), target)
    steps = sorted(c.steps for c in report.chunks)
    return {"output": str(target), **{k: stats[k] for k in (
        "original_bytes", "memz_bytes", "zstd_bytes", "xz_bytes", "tokens", "chunks", "vectors",
        "tokens_per_vector", "corrections", "chunks_exact_without_corrections")},
        "median_steps": steps[len(steps) // 2] if steps else 0,
        "seconds": round(report.seconds, 2),
        "seconds_per_chunk": round(report.seconds / len(steps), 2) if steps else 0.0}


def extract_file(source: Path, target: Path | None, *, to_stdout: bool = False, model: str | None = None,
                 device: str = "auto", force: bool = False, show_progress: bool = False) -> dict:
    source = Path(source)
    if not source.is_file():
        read_input(str(source))  # raises the right error: missing, a directory, unreadable
    archive = read_archive(source)  # verifies the checksum before trusting any header field
    if not to_stdout:
        target = Path(target) if target else source.with_name(archive.header.text.name or source.stem + ".out")
        check_output(target, force, inputs=(str(source),))
    location = _archive_model(archive.header) if model is None else resolve_model(model)
    loaded = load_model(location, device=device, dtype=archive.header.decode.dtype)
    started = time.perf_counter()
    with rich_progress("extract", show_progress) as progress:
        data = extract_archive(archive, loaded, force=force, progress=progress)
    seconds = time.perf_counter() - started
    if to_stdout:
        write_stdout(data)
    else:
        write_atomic(target, data, force)
    return {"output": None if to_stdout else str(target), "bytes": len(data),
            "sha256": archive.header.text.sha256, "verified": True, "seconds": round(seconds, 2)}


def archive_report(source: Path) -> dict:
    source = Path(source)
    if not source.is_file():
        read_input(str(source))
    archive = read_archive(source)
    return archive_stats(archive, source.stat().st_size, source)


def _archive_model(header) -> ModelLocation:
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
