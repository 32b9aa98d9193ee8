"""The memzip library: what each command does, callable from Python. The CLI is a thin layer over
these functions; progress reaches the caller through a plain callback (`ProgressEvent`).

Bytes in memory, as gzip, lzma and zstandard offer them (also as `memzip.compress` and
`memzip.decompress`):

    blob = memzip.compress(data)                      # the embedded model; archive bytes
    memzip.decompress(blob) == data                   # the model the archive names, verified
    model = memzip.Model("embedded")                  # load once, for many calls
    model.compress(data, mem_vectors=1); model.decompress(blob)

Files:

    from memzip.api import CompressOptions, compress_file, extract_file, test_archive, archive_report
    compress_file("book.txt")                                   # -> book.txt.memz, the model codes it
    compress_file("book.txt", "v.memz", CompressOptions(mem_vectors=1))   # [mem] vectors
    extract_file("book.txt.memz")                               # -> book.txt, verified
    test_archive("book.txt.memz")                               # decode and verify, write nothing
    archive_report("book.txt.memz")["bits_per_byte"]

Names work as gzip's do: compression appends `.memz`, extraction strips it. A `Models` cache
lets many files share one model load. In memory: `memzip.pipeline.compress_bytes` /
`extract_bytes` with a `LoadedModel`.
"""

from __future__ import annotations

import time
from pathlib import Path

from memzip.errors import Interrupted, UsageError
from memzip.files import (STDIO, check_output, file_metadata, read_input, restore_metadata, write_output,
                          write_stdout)
from memzip.format.container import decode_archive, encode_archive, read_archive, read_header
from memzip.format.header import Header
from memzip.journal import Journal, journal_path
from memzip.models import DEFAULT_MODEL, REGISTRY, ModelLocation, available_models, resolve_model
from memzip.options import CompressOptions, ProgressCallback, ProgressEvent, preparation_reporter
from memzip.format.stats import archive_stats

# memzip.pipeline and memzip.models.load_model bring torch and transformers (seconds to import);
# they are imported by the functions that run a model, so `stats` and `info` never load them.

__all__ = ["CompressOptions", "ProgressEvent", "Model", "Models", "compress", "decompress", "compress_file",
           "extract_file", "test_archive", "archive_report", "archive_header", "available_models", "SUFFIX",
           "compressed_name", "extracted_name"]

SUFFIX = ".memz"


class Models:
    """Loaded models shared by the files of one call (a model loads once per process)."""

    def __init__(self):
        self._loaded = {}

    def get(self, location: ModelLocation, device: str, dtype: str, on_progress: ProgressCallback | None = None):
        from memzip.distributed import current_world, rank_device
        from memzip.models import load_model

        key = (str(location.path), location.name, device, dtype)
        if key not in self._loaded:
            self._loaded[key] = load_model(location, device=rank_device(current_world(device), device), dtype=dtype,
                                           on_prepare=preparation_reporter(on_progress))
        return self._loaded[key]


class Model:
    """A model handle for `compress` and `decompress` on bytes: loaded on first use, then kept.

    `name`: an alias (`memzip models`), hub id, model directory or .gguf file; or a LoadedModel
    already in memory (memzip.models.wrap_model)."""

    def __init__(self, name=DEFAULT_MODEL, device: str = "auto", dtype: str = "auto"):
        self._loaded = None if isinstance(name, str) else name
        self.name, self.device, self.dtype = name if isinstance(name, str) else name.identity.name, device, dtype

    @property
    def loaded(self):
        if self._loaded is None:
            from memzip.models import load_model

            self._loaded = load_model(resolve_model(self.name), device=self.device, dtype=self.dtype)
        return self._loaded

    def compress(self, data: bytes, options: CompressOptions | None = None, **settings) -> bytes:
        """The archive of `data` (the same bytes `memzip compress` writes for a file of no name,
        mode or time). `settings` are CompressOptions fields: mem_vectors=1, streams=8, ..."""
        from memzip.pipeline import compress_bytes

        options = options or CompressOptions(**settings)
        options.check()
        archive, _ = compress_bytes(bytes(data), self.loaded, options)
        return encode_archive(archive)

    def decompress(self, blob: bytes, force: bool = False) -> bytes:
        """The original bytes of an archive, verified against its SHA-256."""
        from memzip.pipeline import extract_bytes

        archive = decode_archive(bytes(blob))
        loaded = None if archive.header.mode == "stored" else self.loaded
        return extract_bytes(archive, loaded, force=force)


_MODELS: dict = {}  # the handles `compress` and `decompress` made, by model name


def compress(data: bytes, model=DEFAULT_MODEL, **settings) -> bytes:
    """Compress bytes to a .memz archive (bytes) with `model` (a name, a Model, or a LoadedModel),
    loaded once per process. `settings`: CompressOptions fields (mem_vectors, streams, window, ...)."""
    return _model(model).compress(data, **settings)


def decompress(blob: bytes, model=None) -> bytes:
    """The original bytes of a .memz archive, verified; the model is the one the archive names
    (its fingerprints are checked) unless `model` gives another."""
    if model is None:
        header = decode_archive(bytes(blob)).header
        if header.mode == "stored":  # no model needed
            from memzip.pipeline import extract_bytes

            return extract_bytes(decode_archive(bytes(blob)), None)
        model = _archive_model(header).name
    return _model(model).decompress(blob)


def _model(model) -> Model:
    if isinstance(model, Model):
        return model
    if not isinstance(model, str):  # a LoadedModel
        return Model(model)
    if model not in _MODELS:
        _MODELS[model] = Model(model)
    return _MODELS[model]


def compressed_name(source: str) -> Path:
    """FILE -> FILE.memz, as gzip appends .gz."""
    return Path(source + SUFFIX)


def extracted_name(archive: Path, header: Header) -> Path:
    """FILE.memz -> FILE (gzip's rule). Archives named the format-2 way (notes.memz from notes.txt)
    get the name they recorded. An archive without the suffix needs -o."""
    if archive.suffix != SUFFIX:
        raise UsageError(f"{archive} does not end in {SUFFIX}, so there is no name to extract it to",
                         hint="Give the output name with -o (or -c for stdout).")
    stripped = archive.with_suffix("")
    stored = header.text.name
    if stored and stored != stripped.name and Path(stored).stem == stripped.name:
        return archive.with_name(stored)
    return stripped


def compress_file(source: str, target: Path | None = None, options: CompressOptions | None = None, *,
                  model: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto", force: bool = False,
                  resume: bool = False, to_stdout: bool = False, models: Models | None = None,
                  on_progress: ProgressCallback | None = None) -> dict | None:
    """Compress a file ('-': stdin) to `target` (default FILE.memz), or to stdout. Finished units
    (streams, chunk groups) are journaled beside the output, so running the same call again after
    an interruption continues where it stopped. Under torchrun every rank compresses its share;
    rank 0 writes the archive and gets the summary."""
    from memzip.distributed import current_world

    options = options or CompressOptions()
    options.check()
    world = current_world(device)
    if source == STDIO and world.size > 1:
        raise UsageError("stdin cannot be shared by several processes", hint="Give the input as a file.")
    if to_stdout and target is not None:
        raise UsageError("-c/--stdout and -o exclude each other")
    if target is None and not to_stdout:
        if source == STDIO:
            raise UsageError("compressing stdin needs an output", hint="Add -o OUT.memz, or -c to write to stdout.")
        target = compressed_name(source)
    data = read_input(source)
    if target is not None:
        target = Path(target)
        check_output(target, force, inputs=(source,))  # before any work: never lose hours to a refusal
    journal_base = target if target is not None else (
        compressed_name(source) if source != STDIO else Path(f"stdin-{_digest(data)}{SUFFIX}"))
    journal = Journal(journal_path(journal_base, world.journal_suffix()))
    if resume and not journal.exists():
        raise UsageError(f"nothing to resume: {journal.path} does not exist",
                         hint="Run without --resume to start compressing.")
    from memzip.pipeline import compress_bytes

    loaded = (models or Models()).get(resolve_model(model), device, dtype, on_progress)
    permissions, mtime_ns = file_metadata(source)
    try:
        # the name is recorded only where the archive's own name would not give it back (gzip -n)
        name = _safe_name(source)
        if name is not None and target is not None and target.name == name + SUFFIX:
            name = None
        archive, report = compress_bytes(data, loaded, options, name=name, permissions=permissions,
                                         mtime_ns=mtime_ns, journal=journal, resume=resume, on_progress=on_progress,
                                         world=world)
    except KeyboardInterrupt:
        raise Interrupted("interrupted; " + journal.saved_summary(),
                          hint="Run the same command again (or add --resume) to continue." if journal.saved_units
                          else "Nothing to resume: the first unit of work was still running.") from None
    if archive is None:  # another rank than 0: its units went to rank 0
        journal.remove()
        world.finish()
        return None
    raw = encode_archive(archive)
    if to_stdout:
        write_stdout(raw)
    else:
        write_output(target, raw, force)
        restore_metadata(target, permissions, mtime_ns)  # the archive keeps the input's mode and time, as gzip
    journal.remove()
    world.finish()
    stats = archive_stats(archive, len(raw), target)
    steps = sorted(c.steps for c in report.chunks)
    return {"input": source, "output": None if to_stdout else str(target), **{k: stats[k] for k in (
        "mode", "engine", "original_bytes", "memz_bytes", "zstd_bytes", "xz_bytes", "bits_per_byte",
        "model_ce_bits_per_byte", "tokens", "chunks", "vectors", "tokens_per_vector", "corrections",
        "chunks_exact_without_corrections", "stored_because")},
        "processes": world.size,
        "median_steps": steps[len(steps) // 2] if steps else 0,
        "seconds": round(report.seconds, 2),
        "tokens_per_second": round(stats["tokens"] / report.seconds, 1) if report.seconds and stats["tokens"] else None}


def extract_file(source: Path | str, target: Path | None = None, *, to_stdout: bool = False, model: str | None = None,
                 device: str = "auto", force: bool = False, batch_size: int | None = None,
                 models: Models | None = None, on_progress: ProgressCallback | None = None,
                 write: bool = True) -> dict | None:
    """Decode an archive ('-': stdin) and verify it. Writes FILE for FILE.memz unless `target` or
    `to_stdout`; with `write=False` (`memzip test`) it writes nothing. Under torchrun every rank
    decodes its share; rank 0 writes."""
    from memzip.distributed import current_world

    if to_stdout and target is not None:
        raise UsageError("-c/--stdout and -o exclude each other")
    archive = _read_archive(source)  # verifies the checksum before trusting any header field
    header = archive.header
    if write and not to_stdout:
        if target is None and str(source) == STDIO:
            to_stdout = True  # like gzip -d: stdin in, stdout out
        else:
            target = Path(target) if target is not None else extracted_name(Path(source), header)
            check_output(target, force, inputs=(str(source),))
    from memzip.pipeline import extract_bytes

    world = current_world(device)
    loaded = None
    if header.mode != "stored":
        loaded = _decoding_model(header, model, device, models, on_progress)
    started = time.perf_counter()
    data = extract_bytes(archive, loaded, force=force, on_progress=on_progress, world=world, batch_size=batch_size)
    seconds = time.perf_counter() - started
    if data is None:  # another rank than 0
        world.finish()
        return None
    if write and to_stdout:
        write_stdout(data)
    elif write:
        write_output(target, data, force)
        permissions = header.text.permissions
        if permissions is None and str(source) != STDIO:  # format 5: the archive's own, which compress set (gzip's way)
            permissions = Path(source).stat().st_mode & 0o7777
        restore_metadata(target, permissions, header.text.mtime_ns)
    world.finish()
    return {"input": str(source), "output": str(target) if write and not to_stdout else None, "bytes": len(data),
            "sha256": header.text.sha256, "verified": True, "mode": header.mode, "seconds": round(seconds, 2),
            "tokens_per_second": round(header.text.tokens / seconds, 1) if seconds and header.text.tokens else None,
            "processes": world.size}


def test_archive(source: Path | str, **kwargs) -> dict | None:
    """`memzip test`: decode and verify an archive completely, writing nothing."""
    return extract_file(source, write=False, **kwargs)


def archive_report(source: Path | str, decode: bool = False, *, model: str | None = None, device: str = "auto",
                   models: Models | None = None, on_progress: ProgressCallback | None = None) -> dict:
    """`memzip stats`: where the archive's bytes went (no model is loaded). With `decode`, an
    archive that does not record zstd's and xz's sizes on the original (format 5 keeps only what
    decoding needs) is decoded in memory, verified, and measured against them."""
    if str(source) == STDIO:
        data = read_input(STDIO)
        archive, size, path = decode_archive(data), len(data), None
    else:
        path = Path(source)
        _check_is_file(path)
        archive, size = read_archive(path), path.stat().st_size
    if decode and "baselines" not in archive.header.encode:
        from memzip.format.stats import baselines
        from memzip.pipeline import extract_bytes

        header = archive.header
        loaded = None if header.mode == "stored" else _decoding_model(header, model, device, models, on_progress)
        original = extract_bytes(archive, loaded, on_progress=on_progress)
        archive.header.encode = {**header.encode, "baselines": baselines(original)}
    return archive_stats(archive, size, path)


def archive_header(source: Path | str) -> Header:
    """`memzip info`: the header alone, without reading or checking the payload."""
    if str(source) == STDIO:
        return decode_archive(read_input(STDIO)).header
    source = Path(source)
    _check_is_file(source)
    return read_header(source)


def _decoding_model(header: Header, model: str | None, device: str, models: Models | None, on_progress):
    """The model an archive decodes with: the one it names, unless the user names another."""
    location = _archive_model(header) if model is None else resolve_model(model)
    return (models or Models()).get(location, device, header.decode.dtype, on_progress)


def _read_archive(source: Path | str):
    if str(source) == STDIO:
        return decode_archive(read_input(STDIO))
    source = Path(source)
    _check_is_file(source)
    return read_archive(source)


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
    if source == STDIO:
        return None
    name = Path(source).name
    return name if name not in ("", ".", "..") else None


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:16]
