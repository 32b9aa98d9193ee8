"""A journal of finished chunk groups, so an interrupted compression resumes where it stopped.

Compressing a book takes hours; Ctrl-C, a kill or a crash must not throw that away. After each
group of chunks, compression appends the group's result to `<output>.journal` beside the output
and fsyncs it. Running the same command again (or with `--resume`) reads the journal once, skips
the groups already done and produces exactly the archive an uninterrupted run would have made
(each group's random start depends only on the seed and the group's position).

File layout: a line of JSON identifying the job, then records of
`uint64 length | safetensors bytes | 32-byte SHA-256 of those bytes`. A record torn by a crash
fails its length or hash check and is dropped with everything after it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from memzip.errors import OutputWriteError, UsageError

_LENGTH = struct.Struct("<Q")
MAGIC = "memzip-journal-3"


@dataclass
class GroupResult:
    """What compression keeps of one unit of work: a group of chunks, or one stream."""

    first: int  # index of the unit's first chunk (or stream)
    residual: bytes  # float-ranks: the group's coded choices; exact: the chunks' streams back to back
    digest: bytes  # float-ranks: 8 bytes over the group's tokens; exact: empty
    misses: list[int]  # per chunk: tokens that were not the model's first choice
    ce_bits: list[float]  # per chunk: float-ranks: cross-entropy under the decoder; exact: the code's cost, bits
    ce_without_vectors_bits: list[float] = field(default_factory=list)  # per chunk, same start without vectors
    packed: np.ndarray | None = None  # stored vectors [n, M, width] (with vectors only)
    scales: np.ndarray | None = None  # per-vector scales of integer storage [n, M]
    steps: list[int] = field(default_factory=list)  # optimizer steps per chunk (with vectors)
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    residual_lengths: list[int] = field(default_factory=list)  # exact: bytes of each chunk's stream
    model_bits: list[float] = field(default_factory=list)  # exact: the model's own cross-entropy per chunk


def journal_path(output: Path, suffix: str = "") -> Path:
    """OUT.journal beside the output (one per rank under torchrun: OUT.journal.rank0-of-8)."""
    return output.with_name(output.name + ".journal" + suffix)


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self.identity: dict | None = None
        self.saved_units = 0  # units this journal holds: reused from an earlier run, or appended
        self.saved_tokens = 0
        self.total_units = 0  # set by the engine: units of work of this process

    def saved_summary(self) -> str:
        """What an interruption leaves for the next run, in words."""
        if not self.saved_units:
            return "nothing was saved yet"
        return (f"{self.saved_units} of {self.total_units} units of work ({self.saved_tokens} tokens) "
                f"are saved in {self.path}")

    def exists(self) -> bool:
        return self.path.exists()

    def open(self, identity: dict, require_match: bool = False) -> dict[int, GroupResult]:
        """Start journaling this job. Returns the groups a journal of the same job already holds
        (none if there is no journal, or it belongs to another job, which is then replaced).
        `require_match`: a journal of another job is an error instead (`--resume`)."""
        self.identity = {"format": MAGIC, **identity}
        groups = self._read()
        if groups is None:
            if require_match:
                raise UsageError(f"{self.path} belongs to another input, model or settings",
                                 hint="Run with the same file and options as the interrupted run, or delete the journal.")
            self._create()
            return {}
        self.saved_units = len(groups)
        return groups

    def _read(self) -> dict[int, GroupResult] | None:
        """The groups of a journal of this job; None if there is none or it is another job's."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OutputWriteError(f"cannot read the journal {self.path}: {exc.strerror}") from None
        line_end = data.find(b"\n")
        try:
            if line_end < 0 or json.loads(data[:line_end]) != self.identity:
                return None
        except ValueError:
            return None
        groups: dict[int, GroupResult] = {}
        offset = line_end + 1
        while offset + _LENGTH.size <= len(data):
            (length,) = _LENGTH.unpack_from(data, offset)
            start, end = offset + _LENGTH.size, offset + _LENGTH.size + length
            if end + 32 > len(data) or hashlib.sha256(data[start:end]).digest() != data[end:end + 32]:
                break  # torn by a crash: this and anything after it is redone
            group = _decode_group(data[start:end])
            groups[group.first] = group
            offset = end + 32
        return groups

    def _create(self) -> None:
        try:
            with open(self.path, "wb") as f:
                f.write(json.dumps(self.identity, sort_keys=True).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise OutputWriteError(f"cannot write the journal {self.path}: {exc.strerror}",
                                   hint="The output directory must be writable.") from None

    def append(self, group: GroupResult, tokens: int = 0) -> None:
        raw = _encode_group(group)
        try:
            with open(self.path, "ab") as f:
                f.write(_LENGTH.pack(len(raw)) + raw + hashlib.sha256(raw).digest())
                f.flush()
                os.fsync(f.fileno())
            self.saved_units += 1
            self.saved_tokens += tokens
        except OSError as exc:
            raise OutputWriteError(f"cannot append to the journal {self.path}: {exc.strerror}",
                                   hint="Free some disk space, then run the same command again to resume.") from None

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def _encode_group(group: GroupResult) -> bytes:
    arrays = {
        "first": np.asarray([group.first], dtype=np.int64),
        "residual": np.frombuffer(group.residual, dtype=np.uint8),
        "digest": np.frombuffer(group.digest, dtype=np.uint8),
        "misses": np.asarray(group.misses, dtype=np.int64),
        "ce_bits": np.asarray(group.ce_bits, dtype=np.float64),
        "ce_without_vectors_bits": np.asarray(group.ce_without_vectors_bits, dtype=np.float64),
        "steps": np.asarray(group.steps, dtype=np.int64),
        "losses": np.asarray(group.losses, dtype=np.float64),
        "accuracies": np.asarray(group.accuracies, dtype=np.float64),
        "seconds": np.asarray([group.seconds], dtype=np.float64),
        "residual_lengths": np.asarray(group.residual_lengths, dtype=np.int64),
        "model_bits": np.asarray(group.model_bits, dtype=np.float64),
    }
    for name in ("packed", "scales"):
        if getattr(group, name) is not None:
            arrays[name] = np.ascontiguousarray(getattr(group, name))
    return st_save(arrays)


def _decode_group(raw: bytes) -> GroupResult:
    a = st_load(raw)
    return GroupResult(
        first=int(a["first"][0]), residual=a["residual"].tobytes(), digest=a["digest"].tobytes(),
        misses=a["misses"].tolist(), ce_bits=a["ce_bits"].tolist(),
        ce_without_vectors_bits=a["ce_without_vectors_bits"].tolist(), packed=a.get("packed"), scales=a.get("scales"),
        steps=a["steps"].tolist(), losses=a["losses"].tolist(), accuracies=a["accuracies"].tolist(),
        seconds=float(a["seconds"][0]), residual_lengths=a["residual_lengths"].tolist(),
        model_bits=a["model_bits"].tolist())
