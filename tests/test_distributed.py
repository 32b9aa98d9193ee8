"""Several processes through torchrun (gloo on the CPU): each rank takes its share of the groups,
rank 0 writes one archive, and the archive is the one a single process writes."""

import os
import socket
import subprocess
import sys

import pytest

from memzip.distributed import World

TEXT = "Streams go to different processes, one archive comes back. ".encode() * 6
ARGS = ["--streams", "3", "--no-store", "--quiet"]
FLOAT_ARGS = ["--engine", "float", "--chunk-tokens", "8", "--batch-size", "2", "--no-store", "--quiet"]


def memzip(*args, processes: int = 1, cwd=None):
    """Run memzip in fresh processes, one thread each (so every run computes the same logits)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if processes == 1:
        command = [sys.executable, "-m", "memzip", *map(str, args)]
    else:
        with socket.socket() as s:  # a free port for the rendezvous
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                   "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "memzip", *map(str, args)]
    result = subprocess.run(command, env=env, capture_output=True, cwd=cwd, timeout=600)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return result


def test_world_shares_groups_round_robin():
    assert World(0, 1).mine(5) == [0, 1, 2, 3, 4]
    assert World(1, 3).mine(7) == [1, 4]
    assert World(0, 2).journal_suffix() == ".rank0-of-2" and World().journal_suffix() == ""


@pytest.mark.slow
@pytest.mark.parametrize("args", [ARGS, FLOAT_ARGS], ids=["exact", "float"])
def test_two_processes_write_the_archive_one_process_writes(args, tiny_dir, tmp_path):
    source = tmp_path / "t.txt"
    source.write_bytes(TEXT)
    memzip("compress", source, "-m", tiny_dir, "-o", tmp_path / "two.memz", *args, processes=2)
    memzip("compress", source, "-m", tiny_dir, "-o", tmp_path / "one.memz", *args)
    assert (tmp_path / "two.memz").read_bytes() == (tmp_path / "one.memz").read_bytes()
    assert not list(tmp_path.glob("*.journal*"))  # every rank removed its journal

    memzip("extract", tmp_path / "two.memz", "-o", tmp_path / "back2.txt", "-q", processes=2)
    memzip("extract", tmp_path / "two.memz", "-o", tmp_path / "back1.txt", "-q")
    assert (tmp_path / "back2.txt").read_bytes() == TEXT == (tmp_path / "back1.txt").read_bytes()


@pytest.mark.slow
def test_vectors_fitted_by_two_processes_extract_exactly(tiny_dir, tmp_path):
    source = tmp_path / "t.txt"
    source.write_bytes(TEXT)
    memzip("compress", source, "-m", tiny_dir, "-o", tmp_path / "v.memz", "--mem-vectors", "1", "--max-steps", "3",
           "--chunk-tokens", "8", "--batch-size", "2", "--no-store", "--quiet", processes=2)
    memzip("extract", tmp_path / "v.memz", "-o", tmp_path / "back.txt", "-q")
    assert (tmp_path / "back.txt").read_bytes() == TEXT


@pytest.mark.slow
def test_a_rank_without_a_group_waits_and_rank_0_still_writes(tiny_dir, tmp_path):
    """One chunk, two processes: rank 1 has nothing to do and must neither fail nor hang."""
    source = tmp_path / "short.txt"
    source.write_bytes(b"One short group.")
    memzip("compress", source, "-m", tiny_dir, "-o", tmp_path / "s.memz", "--no-store", "--quiet", processes=2)
    memzip("extract", tmp_path / "s.memz", "-o", tmp_path / "back.txt", "-q", processes=2)
    assert (tmp_path / "back.txt").read_bytes() == b"One short group."
