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
from dataclasses import fields
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from memzip.engines import UnitResult
from memzip.errors import OutputWriteError, UsageError

_LENGTH = struct.Struct("<Q")
MAGIC = "memzip-journal-4"


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

    def open(self, identity: dict, require_match: bool = False) -> dict[int, UnitResult]:
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

    def _read(self) -> dict[int, UnitResult] | None:
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
        groups: dict[int, UnitResult] = {}
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

    def append(self, group: UnitResult, tokens: int = 0) -> None:
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


# How each field of a UnitResult is kept: as bytes, one number, a list of numbers, or an array
# (absent when None); the dtype of the numbers.
_BYTES, _ONE, _LIST, _ARRAY = range(4)
_FIELDS = {"first": (_ONE, np.int64), "residual": (_BYTES, None), "misses": (_LIST, np.int64),
           "coded_bits": (_LIST, np.float64), "model_bits": (_LIST, np.float64),
           "residual_lengths": (_LIST, np.int64), "digest": (_BYTES, None), "seconds": (_ONE, np.float64),
           "packed": (_ARRAY, None), "scales": (_ARRAY, None), "ce_without_vectors_bits": (_LIST, np.float64),
           "steps": (_LIST, np.int64), "losses": (_LIST, np.float64), "accuracies": (_LIST, np.float64)}
assert set(_FIELDS) == {f.name for f in fields(UnitResult)}, "every field of a unit is journaled"


def _encode_group(group: UnitResult) -> bytes:
    arrays = {}
    for name, (kind, dtype) in _FIELDS.items():
        value = getattr(group, name)
        if kind == _BYTES:
            arrays[name] = np.frombuffer(value, dtype=np.uint8)
        elif kind == _ONE:
            arrays[name] = np.asarray([value], dtype=dtype)
        elif kind == _LIST:
            arrays[name] = np.asarray(value, dtype=dtype)
        elif value is not None:
            arrays[name] = np.ascontiguousarray(value)
    return st_save(arrays)


def _decode_group(raw: bytes) -> UnitResult:
    a = st_load(raw)
    values = {}
    for name, (kind, _) in _FIELDS.items():
        if kind == _BYTES:
            values[name] = a[name].tobytes()
        elif kind == _ONE:
            values[name] = a[name][0].item()
        elif kind == _LIST:
            values[name] = a[name].tolist()
        else:
            values[name] = a.get(name)
    return UnitResult(**values)
