"""Rich progress on stderr for long work: chunks done with ETA, and the current step's numbers."""

from __future__ import annotations

import contextlib

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from memzip.archive import ChunkReport, Progress


@contextlib.contextmanager
def rich_progress(verb: str, enabled: bool = True):
    """Yields a `memzip.archive.Progress` that draws on stderr (or does nothing if disabled)."""
    if not enabled:
        yield Progress()
        return
    bar = RichProgress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[detail]}"),
        console=Console(stderr=True), transient=False)
    state = {"task": None}

    def on_start(chunks: int, tokens: int) -> None:
        state["task"] = bar.add_task(verb, total=chunks, detail=f"{tokens} tokens")

    def on_step(step: int, active: int, loss: float, accuracy: float) -> None:
        if state["task"] is not None and step % 5 == 0:
            bar.update(state["task"], detail=f"step {step}  loss {loss:.3f}  acc {accuracy:.3f}  ({active} in work)")

    def on_chunk(chunk: ChunkReport) -> None:
        bar.advance(state["task"])

    def on_decoded(count: int) -> None:
        bar.advance(state["task"], count)

    with bar:
        yield Progress(on_start=on_start, on_step=on_step, on_chunk=on_chunk, on_decoded=on_decoded)
