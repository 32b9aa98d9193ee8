#!/usr/bin/env bash
# Run a command as on a 2-core AVX2-only CPU without a fast int8 GEMM, from an AVX-512 machine
# (docs/benchmarks.md §2, "machine A/AVX2"): torch's vectorized kernels limited to AVX2
# (ATEN_CPU_CAPABILITY), oneDNN and MKL to AVX2, numba compiling for Haswell (AVX2, no AVX-512)
# into a cache of its own, and oneDNN switched off in torch so that torch._int_mm takes its plain
# loop (avx2_emulation/sitecustomize.py).
#
#   bash docs/scripts/avx2.sh memzip bench-speed ../shared/corpus/alice29.txt --profile
here="$(cd "$(dirname "$0")" && pwd)"
export PYTHONPATH="$here/avx2_emulation${PYTHONPATH:+:$PYTHONPATH}"
export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 NUMBA_CPU_NAME=haswell
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-${TMPDIR:-/tmp}/memzip-numba-haswell}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec "$@"
