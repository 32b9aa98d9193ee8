"""The exact engine (`exact-llama-1`) as the pipeline meets it: streams coded with the model's
own probabilities (`ExactEngine`, memzip/engines.py's interface).

- Model-only (the default): the file's tokens are cut into a few long streams (memzip/planning.py
  `chunk_spans`), each decoded from the document-start token with a sliding window of context
  (memzip/exact/model.py `Context`) and coded with the model's full distribution
  (memzip/exact/coding.py). Compression runs whole blocks of positions per forward; extraction
  decodes streams side by side, any number at a time.
- With [mem] vectors: every chunk is a stream of its own, decoded from its layout tokens and its
  vectors (fitted in float by memzip/vectors/, then entered as exact float64 rows), and coded
  `greedy`: a flag per token says whether it is the model's first choice; only misses cost more.

memzip/pipeline.py runs the loop (journal, torchrun, progress); this module compresses one unit,
builds the payload and extracts. The engine itself (its rounded weights, the reference or
compiled forward, the measured product backends) is built once per process (`exact_model`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time

import numpy as np
import torch

from memzip.engines import UnitResult
from memzip.errors import HeaderFormatError
from memzip.exact.coding import CodingSettings, Distribution, coding_settings
from memzip.exact.integer import quantize
from memzip.exact import build_engine
from memzip.exact.model import ENGINE, Context, ExactLlama, ExactSettings, ExactWeights
from memzip.exact.streams import compress_stream, compress_streams, extract_streams
from memzip.format import vectors as storage
from memzip.format.container import Archive
from memzip.format.header import DecodeSettings, Header
from memzip.format.compact import matching_profile
from memzip.layout import Layout, model_only_layout
from memzip.models import LoadedModel
from memzip.options import MAX_STREAMS_AT_ONCE
from memzip.planning import Plan, free_bytes, host_available_bytes, stream_batch
from memzip.vectors.fitting import cost_without_vectors, fit_and_store

EXACT_SETTINGS = ExactSettings()


def exact_model(loaded: LoadedModel, settings: ExactSettings = EXACT_SETTINGS, on_prepare=None) -> ExactLlama:
    """The exact engine for a loaded model, built once per process and settings. Its integer
    weights come from the cache on disk (a second or less), or are rounded from the float model
    once and saved there; `on_prepare(message)` hears of the one-time work."""
    cache = loaded.__dict__.setdefault("_exact_models", {})
    if settings not in cache:
        cache[settings] = build_engine(exact_weights(loaded, settings, on_prepare), loaded.device,
                                       on_prepare=on_prepare)
    return cache[settings]


def exact_weights(loaded: LoadedModel, settings: ExactSettings, on_prepare=None) -> ExactWeights:
    """The model's weights rounded for the exact engine: read from the cache, else rounded now and
    written there (keyed by the weights' fingerprint and the settings)."""
    from memzip.models import cache_dir

    digest = hashlib.sha256(json.dumps(settings.to_header(), sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / "exact" / f"{loaded.identity.weights_sha256[:24]}-{digest}.safetensors"
    if path.is_file():
        try:
            weights = ExactWeights.load(path)
        except (OSError, ValueError, KeyError, RuntimeError):  # a damaged file: rounded anew below
            weights = None
        if weights is not None:
            return weights
    if on_prepare:
        on_prepare("rounding the model's weights for the exact engine (once)")
    weights = ExactWeights.from_transformers(loaded.model, settings)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".tmp{os.getpid()}")
        weights.save(staging)
        os.replace(staging, path)  # atomic: a half-written file is never read
    except OSError:
        pass  # a read-only cache: rounded again next time
    return weights


def archive_model(loaded: LoadedModel, header: Header, on_prepare=None) -> ExactLlama:
    """The exact engine with the settings an archive records (HeaderFormatError: settings this
    memzip does not know, or cannot compute exactly)."""
    try:
        return exact_model(loaded, ExactSettings.of_header(header.decode.exact), on_prepare=on_prepare)
    except (TypeError, ValueError) as exc:
        raise HeaderFormatError(f"the archive's exact-engine settings are not ones this memzip can decode: {exc}") \
            from None


def coding_kind(mem_vectors: int) -> str:
    return "greedy" if mem_vectors else "distribution"


def exact_vectors(stored: np.ndarray, scales: np.ndarray | None, dtype: str, code_dims: int | None,
                  d_model: int) -> torch.Tensor:
    """The stored vectors as the exact engine's float64 input rows [C, M, d], computed the same
    everywhere: unpacking is one float32 multiply per number (exact in float64 after), and a code
    in a random subspace is expanded with integers (its numbers rounded to a power-of-two grid
    fine enough that the sum of k of them is exact), then one power-of-two and one rounded scale."""
    dims = code_dims or d_model
    rows = torch.from_numpy(storage.unpack(stored, scales, dtype, dims)).double()
    if not code_dims:
        return rows
    basis = storage.basis(code_dims, d_model)
    signs = torch.from_numpy(np.sign(basis)).double()
    q, scale = quantize(rows, 52 - math.ceil(math.log2(code_dims)) - 1)
    return (q @ signs) * scale * float(abs(basis[0, 0]))


def planned_batch(model: ExactLlama, streams: int, window: int) -> int:
    """Streams side by side from the memory each one holds: its keys and values for the window
    and a forward's room, and a few rows of logits."""
    shape = model.shape
    per_stream = Context.bytes_per_slot(shape, model.layout) * (window + 64) + shape.vocab * 4 * 8
    free = free_bytes(model.device) or host_available_bytes()
    return stream_batch(streams, per_stream, free, MAX_STREAMS_AT_ONCE)


def _layout_rows(model: ExactLlama, ids) -> torch.Tensor:
    return model.embed(torch.tensor(list(ids), dtype=torch.long))


class ExactEngine:
    """`exact-llama-1` for the pipeline (memzip/engines.py)."""

    name = ENGINE

    def prepare(self, loaded: LoadedModel, header: Header | None = None, on_prepare=None) -> None:
        if header is None:
            exact_model(loaded, on_prepare=on_prepare)
        else:
            archive_model(loaded, header, on_prepare)

    def decode_settings(self, job: Plan, loaded: LoadedModel) -> DecodeSettings:
        settings = DecodeSettings(engine=ENGINE, batch_size=None, margin=None, window=job.window,
                                  exact=EXACT_SETTINGS.to_header(),
                                  coding=coding_settings(job.options).to_header(coding_kind(job.options.mem_vectors)))
        # format 9 writes a profile's settings (memzip/format/compact.py), streams starting at the
        # model's document-start token, as a profile number: profile 8, the defaults, as no bytes
        default_start = job.layout == model_only_layout(loaded.tokenizer)
        settings.profile = matching_profile(settings, job.options.mem_vectors) if default_start else None
        return settings

    def not_worth_it(self, loaded: LoadedModel, job: Plan, sample: list[int], file_bytes: int,
                     zstd_bytes: int) -> str | None:
        """The model's bits per byte on a sample of the text (model-only coding), against zstd's
        on the whole file."""
        if job.options.mem_vectors:
            return None
        model = exact_model(loaded)
        distribution = Distribution(coding_settings(job.options), model.shape.vocab, model.device)
        coded = compress_stream(model, distribution, _layout_rows(model, job.layout.prefix), sample, job.window)
        sample_bytes = len(loaded.tokenizer.backend_tokenizer.decode(sample, skip_special_tokens=False).encode())
        model_bpb, zstd_bpb = 8 * len(coded.residual) / max(1, sample_bytes), 8 * zstd_bytes / max(1, file_bytes)
        if model_bpb >= zstd_bpb:
            return (f"the model needed {model_bpb:.2f} bits/byte on a sample of {len(sample)} tokens, "
                    f"zstd -19 {zstd_bpb:.2f} on the whole file")
        return None

    def compress_unit(self, loaded: LoadedModel, job: Plan, first: int, chunks: list[list[int]],
                      progress) -> UnitResult:
        """A stream (model-only) or a group of chunks fitted together (vectors), each coded as a
        stream of its own."""
        started = time.perf_counter()
        model = exact_model(loaded)
        distribution = Distribution(coding_settings(job.options), model.shape.vocab, model.device)
        kind = coding_kind(job.options.mem_vectors)
        prefix, infix = _layout_rows(model, job.layout.prefix), _layout_rows(model, job.layout.infix)
        if job.recipe is None:
            starts, extra = [prefix] * len(chunks), {}
        else:
            fitted = fit_and_store(loaded, chunks, job.recipe, job.space, job.layout, seed=job.options.seed + first,
                                   on_step=progress.step)
            vectors = exact_vectors(fitted.packed, fitted.scales, job.space.storage, job.space.code_dims,
                                    loaded.d_model)
            starts = [torch.cat([prefix, vectors[i].to(model.device), infix]) for i in range(len(chunks))]
            extra = dict(ce_without_vectors_bits=cost_without_vectors(loaded, job.layout, chunks), packed=fitted.packed,
                         scales=fitted.scales, steps=[f.steps for f in fitted.fits],
                         losses=[f.loss for f in fitted.fits], accuracies=[f.accuracy for f in fitted.fits])
        coded = compress_streams(model, distribution, torch.stack(starts), chunks, job.window, kind,
                                 on_tokens=progress.tokens)
        return UnitResult(first, b"".join(c.residual for c in coded), [c.misses for c in coded],
                          [c.coded_bits for c in coded], [c.model_bits for c in coded],
                          residual_lengths=[len(c.residual) for c in coded], seconds=time.perf_counter() - started,
                          **extra)

    def payload(self, job: Plan, loaded: LoadedModel, chunks: list[list[int]], results: list[UnitResult]) -> dict:
        """One residual stream per chunk (or stream), back to back."""
        lengths = [n for r in results for n in r.residual_lengths]
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(lengths)
        return {
            "chunk_tokens": np.asarray([len(c) for c in chunks], dtype=np.int32),
            "residual": np.frombuffer(b"".join(r.residual for r in results), dtype=np.uint8),
            "residual_offsets": offsets,
        }

    def statistics(self, results: list[UnitResult]) -> dict:
        """The exact model's own cross-entropy (float softmax of its logits) and what the integer
        frequencies the coder used would ideally cost."""
        return {"model_ce_bits": round(sum(b for r in results for b in r.model_bits), 1),
                "coded_bits": round(sum(b for r in results for b in r.coded_bits), 1)}

    def extract_units(self, archive: Archive, loaded: LoadedModel, units: list[int], progress,
                      batch_size: int | None = None, hint=None) -> dict[int, list[list[int]]]:
        """Decode the units `units` (a stream or chunk each, or a group of streams sharing an
        adaptive bias), about `batch_size` streams side by side (default: planned from memory;
        whole groups, and any batch decodes the same)."""
        header = archive.header
        decode = header.decode
        model = archive_model(loaded, header)
        try:  # the header's checks bound each setting; these are the ones only the coder knows
            distribution = Distribution(CodingSettings(**{k: v for k, v in decode.coding.items() if k != "kind"}),
                                        model.shape.vocab, model.device)
        except (TypeError, ValueError) as exc:
            raise HeaderFormatError(f"the archive's coding settings are not ones this memzip can decode: {exc}") \
                from None
        lengths = archive.arrays["chunk_tokens"].tolist()
        offsets = archive.arrays["residual_offsets"].tolist()
        residual = archive.arrays["residual"].tobytes()
        prefix_tokens = model_only_layout(loaded.tokenizer).prefix if decode.prefix_tokens is None \
            else decode.prefix_tokens  # None: a profile (formats 5-9): the model's document-start token
        layout = Layout(tuple(prefix_tokens), tuple(decode.infix_tokens))
        prefix, infix = _layout_rows(model, layout.prefix), _layout_rows(model, layout.infix)
        vectors = None
        if header.vectors.mem_vectors:
            v = header.vectors
            vectors = exact_vectors(archive.arrays["vectors"], archive.arrays.get("vector_scales"), v.dtype,
                                    v.code_dims, header.model.d_model)
        per_unit = header.chunks_per_unit

        def streams_of(unit: int) -> range:
            return range(unit * per_unit, min((unit + 1) * per_unit, len(lengths)))

        streams = [i for u in units for i in streams_of(u)]
        batch = batch_size or planned_batch(model, len(streams), decode.window)
        batch = -(-batch // per_unit) * per_unit  # whole groups: they decode in lockstep
        decoded_streams: dict[int, list[int]] = {}
        for a in range(0, len(streams), batch):
            part = streams[a:a + batch]
            if vectors is None:
                starts = prefix[None].expand(len(part), -1, -1)
            else:
                starts = torch.stack([torch.cat([prefix, vectors[i].to(model.device), infix]) for i in part])
            decoded = extract_streams(model, distribution, starts,
                                      [residual[offsets[i]:offsets[i + 1]] for i in part], [lengths[i] for i in part],
                                      decode.window, decode.coding["kind"], on_tokens=progress.tokens)
            decoded_streams.update(zip(part, decoded))
        return {u: [decoded_streams[i] for i in streams_of(u)] for u in units}

    def failure_hint(self, header: Header, loaded: LoadedModel) -> str:
        return ("The exact engine decodes the same on every machine, so this archive is damaged or was made "
                "by another memzip version with the same model; please report it (MEMZIP_DEBUG=1).")
