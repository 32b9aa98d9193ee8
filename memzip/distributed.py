"""Several processes, on one machine or many, through torch.distributed (launched by torchrun).

    torchrun --nproc-per-node 8 -m memzip compress book.txt -m llama-3.1-8b
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m memzip compress book.txt -m llama-3.1-8b

Groups of chunks or streams (units of work) are independent (each decodes from its own starts,
with its own residual streams and adaptive bias), so rank r takes the groups g with
g % world_size == r. Chunk boundaries are computed
once, on rank 0, and broadcast, so every rank cuts the text identically. Each rank journals its
own groups (a killed job resumes per rank); rank 0 gathers the groups and writes the one archive,
which extracts the same as one written by a single process: a group is decoded in the same batch
shape wherever it runs. Extraction splits its groups the same way.

No process group is created when WORLD_SIZE is unset or 1: a single process pays nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one job."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mine(self, groups: int) -> list[int]:
        """The group indices this process works on."""
        return list(range(self.rank, groups, self.size))

    def gather(self, obj) -> list | None:
        """Every rank's `obj`, in rank order, on rank 0 (None elsewhere)."""
        if self.size == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        if self.size == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def finish(self) -> None:
        """Wait for every rank, then leave the process group. Without this a rank that is done
        early exits while rank 0 still writes, and gloo's background thread on rank 0 can abort
        the process ("terminate called without an active exception") once its peer is gone."""
        if self.size == 1:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def journal_suffix(self) -> str:
        return "" if self.size == 1 else f".rank{self.rank}-of-{self.size}"


SINGLE = World()


def current_world(device: str = "auto") -> World:
    """The World of this process, from torchrun's environment; joins the process group once
    (NCCL when this rank has a GPU, else gloo)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    import torch
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        gpu = torch.cuda.is_available() and device in ("auto", "cuda")
        if gpu:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if gpu else "gloo")
    return World(rank, size, local_rank)


def rank_device(world: World, device: str) -> str:
    """Each rank on its own GPU: `auto`/`cuda` become cuda:LOCAL_RANK under torchrun."""
    if world.size > 1 and device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{world.local_rank}"
    return device
