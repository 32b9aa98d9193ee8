"""Loaded by Python at start-up when this folder is on PYTHONPATH (docs/scripts/avx2.sh puts it
there): once torch is imported, switches off oneDNN in it, so that torch._int_mm takes torch's
plain loop, as it does on the AVX2-only AMD EPYC where issue 32 measured 2.5 GOP/s.
ONEDNN_MAX_CPU_ISA=AVX2 alone does not reproduce that on an Intel CPU (oneDNN still runs its
AVX2 int8 kernel there: 303 GOP/s at 512x576x1536 on machine A). torch itself is not imported
here: commands that never import it (memzip info, stats) must stay so."""

import importlib.abc
import importlib.util
import sys


class _AfterTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            module.backends.mkldnn.enabled = False

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _AfterTorch())
