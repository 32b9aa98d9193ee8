"""Loaded by Python at start-up when this folder is on PYTHONPATH (docs/scripts/avx2.sh puts it
there): switches off oneDNN in torch, so that torch._int_mm takes torch's plain loop, as it does
on the AVX2-only AMD EPYC where issue 32 measured 2.5 GOP/s. ONEDNN_MAX_CPU_ISA=AVX2 alone does
not reproduce that on an Intel CPU (oneDNN still runs its AVX2 int8 kernel there: 303 GOP/s at
512x576x1536 on machine A)."""

try:
    import torch

    torch.backends.mkldnn.enabled = False
except Exception:  # no torch in this interpreter: nothing to switch off
    pass
