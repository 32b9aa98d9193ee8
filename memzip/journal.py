"""A journal of finished chunk groups, so an interrupted compression resumes where it stopped.

Compressing a book takes hours; Ctrl-C, a kill or a crash must not throw that away. After each
group of chunks, compression appends the group's result to `<output>.journal` beside the output
and fsyncs it. Running the same command again (or with `--resume`) reads the journal, skips the
groups already done and produces exactly the archive an uninterrupted run would have made
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from memzip.errors import OutputWriteError

_LENGTH = struct.Struct("<Q")
MAGIC = "memzip-journal-1"


@dataclass
class GroupResult:
    first: int  # index of the group's first chunk
    packed: np.ndarray  # stored vectors [n, M, stored width]
    scales: np.ndarray | None  # per-vector scales of integer storage [n, M]
    corrections: list[dict[int, int]]
    steps: list[int]
    losses: list[float]
    accuracies: list[float]
    seconds: float


def journal_path(output: Path) -> Path:
    return output.with_name(output.name + ".journal")


class Journal:
    def __init__(self, path: Path, identity: dict):
        self.path = path
        self.identity = {"format": MAGIC, **identity}

    def load(self) -> dict[int, GroupResult]:
        """Finished groups from a journal of the same job; {} if there is none or it is another job's."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise OutputWriteError(f"cannot read the journal {self.path}: {exc.strerror}") from None
        line_end = data.find(b"\n")
        try:
            if line_end < 0 or json.loads(data[:line_end]) != self.identity:
                return {}
        except ValueError:
            return {}
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

    def start(self, keep: bool) -> None:
        """Create the journal (or keep a matching one) before the first group is computed."""
        if keep and self.path.exists():
            return
        try:
            with open(self.path, "wb") as f:
                f.write(json.dumps(self.identity, sort_keys=True).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise OutputWriteError(f"cannot write the journal {self.path}: {exc.strerror}",
                                   hint="The output directory must be writable.") from None
        # Normalize the identity line: load() compares parsed JSON, so key order is irrelevant.

    def append(self, group: GroupResult) -> None:
        raw = _encode_group(group)
        try:
            with open(self.path, "ab") as f:
                f.write(_LENGTH.pack(len(raw)) + raw + hashlib.sha256(raw).digest())
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise OutputWriteError(f"cannot append to the journal {self.path}: {exc.strerror}",
                                   hint="Free some disk space, then run the same command again to resume.") from None

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def _encode_group(group: GroupResult) -> bytes:
    positions = [p for c in group.corrections for p, _ in sorted(c.items())]
    tokens = [t for c in group.corrections for _, t in sorted(c.items())]
    arrays = {
        "first": np.asarray([group.first], dtype=np.int64),
        "packed": np.ascontiguousarray(group.packed),
        "counts": np.asarray([len(c) for c in group.corrections], dtype=np.int64),
        "positions": np.asarray(positions, dtype=np.int64),
        "tokens": np.asarray(tokens, dtype=np.int64),
        "steps": np.asarray(group.steps, dtype=np.int64),
        "losses": np.asarray(group.losses, dtype=np.float64),
        "accuracies": np.asarray(group.accuracies, dtype=np.float64),
        "seconds": np.asarray([group.seconds], dtype=np.float64),
    }
    if group.scales is not None:
        arrays["scales"] = np.ascontiguousarray(group.scales)
    return st_save(arrays)


def _decode_group(raw: bytes) -> GroupResult:
    arrays = st_load(raw)
    corrections, offset = [], 0
    positions, tokens = arrays["positions"].tolist(), arrays["tokens"].tolist()
    for count in arrays["counts"].tolist():
        corrections.append(dict(zip(positions[offset:offset + count], tokens[offset:offset + count])))
        offset += count
    return GroupResult(
        first=int(arrays["first"][0]), packed=arrays["packed"], scales=arrays.get("scales"),
        corrections=corrections, steps=arrays["steps"].tolist(), losses=arrays["losses"].tolist(),
        accuracies=arrays["accuracies"].tolist(), seconds=float(arrays["seconds"][0]))
