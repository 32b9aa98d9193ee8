"""Exact integer products, computed whichever way is fastest on this machine.

Every weight product of the exact engine is  rows @ W^T  of integers: activation rows of at most
15 bits (|a| <= 2^14) and a weight of 8 or 12 bits per output row (`IntegerWeight`). Its result
is an integer, and any method that computes that integer gives the same bits downstream. Four
methods (*backends*) do, each exact for its own reason:

- `vector`: simd.py's loops (numba, CPU): int16 rows times the weight's int8 slices, summed in
  int32 lanes for a chunk of k short enough that no sum overflows, then in int64;
- `int8`: the rows cut into two int8 slices, times the weight's int8 slices through
  torch._int_mm (int8 x int8 -> int32, exact), the partial products recombined in int64;
- `float64`: one GEMM of the integers held in float64: every partial sum stays below 2^53, so
  it is exact in any order, with or without fused multiply-adds, on any BLAS;
- `float32`: the same int8 slices held in float32, k cut into blocks of 1,024 so that a block's
  partial sums stay below 2^24 (each product is at most 2^14), the blocks' int32 sums added.

Which is fastest depends on the machine, not on the arithmetic. On the AVX-512 VNNI / AMX
development CPU, oneDNN's int8 GEMM (`int8`) leads at a compression block's 64 rows; on an
AVX2-only AMD EPYC torch._int_mm ran ~30x slower than float32 BLAS and memzip spent 81% of a
compression in it; on a GPU int8 tensor cores or float64 units decide. So the engine measures
them once per machine (`choose`): each backend that runs here, on the model's real shapes, the
fastest kept per weight, the choice cached per CPU model, torch version, thread count and model
shape under the cache directory (`memzip bench-speed` prints the table). `MEMZIP_BACKEND`
(or the engine's `backend=` argument) forces one backend for every product, for tests and users.

Two consumers read the results: the torch reference path (`matmul`: float32 of the exact
product, on any device) and the compiled CPU path (`product`, `tile`: the forms kernels.py
reads, EXACT int64 or the int8 slices' int32 partial products).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from memzip.exact import kernels
from memzip.exact.integer import split_int8

BACKENDS = ("vector", "int8", "float64", "float32")
# The weights of a layer and the output head, and compression's attention sums (p @ v).
ROLES = ("qkv", "out", "gate_up", "down", "head")
ATTENTION_BACKENDS = ("int8", "float64")

# Rows of a compression block's products (ExactLlama.row_block) and of a block of logits
# (exact/streams.py LOGIT_ROWS): the shapes measured.
BLOCK_ROWS = 64
# Up to this many rows (a decoding step's streams, a block's last few positions) the compiled
# path multiplies in the vector loops: they read each weight once, at close to the memory's speed.
FEW_ROWS = 32

# float32: int8 slices multiply to at most 2^7 * 2^7; 1024 such terms sum to at most 2^24, the
# largest magnitude below which float32 holds every integer.
FLOAT32_DEPTH = 2 ** 24 // (128 * 128)

# Products with many output columns (the output head: 49,152 of them for the embedded model) are
# computed in tiles of columns when there are many rows: a tile's partial products stay in the
# CPU's cache while they are combined. Same integers; ~2x faster for the head at 64 rows.
TILE_OUTPUTS = 2048
TILED_FROM_ROWS = 32

ENVIRONMENT = "MEMZIP_BACKEND"


class IntegerWeight:
    """A weight matrix [n_out, n_in] of integers (|w| <= 2^(bits-1)) with a scale per output row
    (float32 [1, n_out]). Held as int8 slices, the form the vector loops and int8 GEMMs
    read: one slice for weights of up to 8 bits, two ([w_hi; w_lo], w = w_hi 2^8 + w_lo) for wider
    ones; the float forms other backends read are made from them on first use."""

    def __init__(self, slices: torch.Tensor, scale: torch.Tensor, bits: int, activation_bits: int):
        self.bits, self.activation_bits = bits, activation_bits
        self.two_slices = bits > 8
        self.scale = scale.reshape(1, -1).to(torch.float32)
        self.n_out = self.scale.shape[1]
        self.n_in = slices.shape[1]
        if slices.dtype != torch.int8 or slices.shape[0] != (2 if self.two_slices else 1) * self.n_out:
            raise ValueError("a weight's slices are int8 [n_out, n_in], or [2 n_out, n_in] above 8 bits")
        if bits > 15 or activation_bits > 15:  # at 16 bits a high slice reaches 2^7 + 1, past int8
            raise ValueError("int8 slices hold weights and activations of at most 15 bits")
        # the int32 sums of slice products, bounded: |a_hi| <= 2^(A-9) + 1, |a_lo| <= 128
        hi_a = 2 ** (activation_bits - 9) + 1
        hi_w = 2 ** (bits - 9) + 1 if self.two_slices else 128
        if max(hi_a, 128) * max(hi_w, 128) * self.n_in >= 2 ** 31:
            raise ValueError(f"int8 slice products over {self.n_in} inputs overflow int32")
        worst = self.n_in * (hi_a * hi_w * 256 + hi_a * 128 + 128 * hi_w) if self.two_slices else \
            self.n_in * (hi_a * 128 * 256 + 128 * 128)
        self.combine_in_int32 = worst < 2 ** 31  # the recombination's bracket fits int32
        self.slices = slices
        self._derived: dict[str, torch.Tensor] = {}
        self._views()

    @classmethod
    def of(cls, q: torch.Tensor, scale: torch.Tensor, bits: int, activation_bits: int) -> "IntegerWeight":
        """From integers q [n_out, n_in] (any integer-valued dtype), |q| <= 2^(bits-1)."""
        if bits <= 8:
            slices = q.to(torch.int8)
        elif q.device.type == "cpu" and kernels.available():  # one compiled pass: 10x torch's for the head
            slices = torch.from_numpy(kernels.split_rows(q.detach().contiguous().numpy()))
        else:
            slices = split_int8(q)
        return cls(slices.contiguous(), scale, bits, activation_bits)

    def _views(self) -> None:
        # _int_mm takes the transpose (a column-major view), the layout oneDNN's int8 GEMM is
        # fastest with; kernels.small_product reads the same memory as numpy
        self.slices_t = self.slices.t()
        self.slices_numpy = self.slices.numpy() if self.slices.device.type == "cpu" else None

    @property
    def device(self) -> torch.device:
        return self.slices.device

    def to(self, device) -> "IntegerWeight":
        self.scale, self.slices = self.scale.to(device), self.slices.to(device)
        self._derived = {}
        self._views()
        return self

    def integers(self) -> torch.Tensor:
        """The weight's integers [n_out, n_in] as int32."""
        if not self.two_slices:
            return self.slices.to(torch.int32)
        n = self.n_out
        return self.slices[:n].to(torch.int32) * 256 + self.slices[n:].to(torch.int32)

    def float64_t(self) -> torch.Tensor:
        """The integers as float64 [n_in, n_out] (made once; 8 bytes a weight)."""
        if "float64" not in self._derived:
            self._derived["float64"] = self.integers().t().to(torch.float64).contiguous()
        return self._derived["float64"]

    def float32_slices(self) -> torch.Tensor:
        """The int8 slices as float32 [slices n_out, n_in] (made once)."""
        if "float32" not in self._derived:
            self._derived["float32"] = self.slices.to(torch.float32)
        return self._derived["float32"]

    def state(self) -> dict[str, torch.Tensor]:
        """What `from_state` needs, as tensors (the engine's cache on disk)."""
        return {"slices": self.slices, "scale": self.scale}

    @classmethod
    def from_state(cls, state: dict, bits: int, activation_bits: int) -> "IntegerWeight":
        return cls(state["slices"], state["scale"], bits, activation_bits)


# --- the torch path: float32 of the exact product, on any device ----------------------------------


def matmul(weight: IntegerWeight, q: torch.Tensor, backend: str) -> torch.Tensor:
    """q [m, n_in] (int32, |q| <= 2^(A-1)) times the weight transposed: the exact integer products
    [m, n_out], each rounded once to float32, computed by `backend`."""
    if backend == "float64":
        return (q.to(torch.float64) @ weight.float64_t()).to(torch.float32)
    if backend == "vector":
        rows = q.to(torch.int16).cpu().numpy()
        out = kernels.small_product(rows, weight.slices_numpy, weight.n_out, _chunk(weight))
        return torch.from_numpy(out).to(torch.float32)
    m, n = q.shape[0], weight.n_out
    a = split_int8(q)  # [a_hi; a_lo]
    if m >= TILED_FROM_ROWS and n >= 4 * TILE_OUTPUTS:
        out = torch.empty(m, n, dtype=torch.float32, device=q.device)
        for first in range(0, n, TILE_OUTPUTS):
            last = min(n, first + TILE_OUTPUTS)
            out[:, first:last] = _recombined(weight, *_slice_products(weight, a, first, last, backend), m)
        return out
    return _recombined(weight, *_slice_products(weight, a, 0, n, backend), m)


def _slice_products(weight: IntegerWeight, a: torch.Tensor, first: int, last: int, backend: str):
    """int32 products of the split rows `a` [2m, n_in] with the slices of columns first..last-1:
    (by_high, by_low), by_low None for a one-slice weight."""
    n = weight.n_out
    if not weight.two_slices:
        return _int8_product(a, weight, first, last, backend), None
    if first == 0 and last == n:  # one call: [a_hi; a_lo] @ [w_hi; w_lo]^T
        r = _int8_product(a, weight, 0, 2 * n, backend)
        return r[:, :n], r[:, n:]
    return _int8_product(a, weight, first, last, backend), _int8_product(a, weight, n + first, n + last, backend)


def _int8_product(a: torch.Tensor, weight: IntegerWeight, first: int, last: int, backend: str) -> torch.Tensor:
    """a [2m, k] int8 @ slices[first:last]^T: int32, by torch._int_mm or in float32 blocks of k."""
    if backend == "int8":
        return torch._int_mm(a, weight.slices[first:last].t())
    slices_t = weight.float32_slices()[first:last].t()
    wide = a.to(torch.float32)
    out = None
    for k0 in range(0, a.shape[1], FLOAT32_DEPTH):  # each block's sums below 2^24: exact
        part = (wide[:, k0:k0 + FLOAT32_DEPTH] @ slices_t[k0:k0 + FLOAT32_DEPTH]).to(torch.int32)
        out = part if out is None else out.add_(part)
    return out


def _recombined(weight: IntegerWeight, by_high: torch.Tensor, by_low: torch.Tensor | None, m: int) -> torch.Tensor:
    """float32 of the exact product from the slices' int32 products (rows [a_hi; a_lo])."""
    if by_low is None:  # a.w = h 2^8 + l
        high = by_high[:m] if weight.combine_in_int32 else by_high[:m].to(torch.int64)
        return (high * 256 + by_high[m:]).to(torch.float32)
    # a.w = (hh 2^8 + hl + lh) 2^8 + ll: the bracket in int32 (bounded above), the rest in int64
    middle = by_high[:m] * 256 if weight.combine_in_int32 else by_high[:m].to(torch.int64) * 256
    middle += by_low[:m]
    middle += by_high[m:]
    exact = middle.to(torch.int64)
    exact <<= 8
    exact += by_low[m:]
    return exact.to(torch.float32)


# --- the compiled path: the forms kernels.py reads, on the CPU ---------------------------------------


def product(weight: IntegerWeight, rows: np.ndarray, backend: str) -> tuple[np.ndarray, int]:
    """The exact product of int16 rows [m, n_in] (|a| <= 2^14) and a weight, in a form kernels.py
    reads: EXACT (int64 [m, n_out]), or the int32 partial products of the split rows with the
    weight's slices (ONE_SLICE, TWO_SLICES)."""
    if backend == "vector":
        return kernels.small_product(rows, weight.slices_numpy, weight.n_out, _chunk(weight)), kernels.EXACT
    if backend == "float64":
        exact = torch.from_numpy(rows).to(torch.float64) @ weight.float64_t()
        return exact.numpy().astype(np.int64), kernels.EXACT  # integers below 2^53: converted exactly
    a = torch.from_numpy(kernels.split_rows(rows))
    form = kernels.TWO_SLICES if weight.two_slices else kernels.ONE_SLICE
    return _int8_product(a, weight, 0, weight.slices.shape[0], backend).numpy(), form


def scaled_product(weight: IntegerWeight, rows: np.ndarray, weight_scale: np.ndarray, factors: np.ndarray,
                   backend: str) -> np.ndarray:
    """fl32(fl32(product) * weight_scale) * factors, as the torch path's `_project` rounds it:
    [m, n_out] float32. A wide two-slice weight (an output head) at many rows goes tile by tile
    of columns, each tile's products scaled while they are in the cache."""
    m, n = rows.shape[0], weight.n_out
    if backend == "vector" or not (weight.two_slices and m >= TILED_FROM_ROWS and n >= 4 * TILE_OUTPUTS):
        return kernels.scaled_outputs(*product(weight, rows, backend), weight_scale, factors)
    out = np.empty((m, n), np.float32)
    if backend == "float64":
        wide = torch.from_numpy(rows).to(torch.float64)
        matrix = weight.float64_t()
        for first in range(0, n, TILE_OUTPUTS):
            last = min(n, first + TILE_OUTPUTS)
            exact = (wide @ matrix[:, first:last]).numpy().astype(np.int64)
            kernels.scaled_exact_tile(exact, weight_scale, factors, out, first)
        return out
    a = torch.from_numpy(kernels.split_rows(rows))
    for first in range(0, n, TILE_OUTPUTS):
        last = min(n, first + TILE_OUTPUTS)
        by_high, by_low = (p.numpy() for p in _slice_products(weight, a, first, last, backend))
        kernels.scaled_tile(by_high, by_low, weight_scale, factors, out, first)
    return out


def _chunk(weight: IntegerWeight) -> int:
    """The depth the vector loops sum in int32 at once for this weight's activations."""
    return kernels.small_product_chunk(weight.activation_bits)


# --- compression's attention sums: p @ v -------------------------------------------------------------


def int8_matmul(a: np.ndarray, b_rows: np.ndarray) -> np.ndarray:
    """a [m, k] @ b_rows [n, k]^T of int8 matrices, exact in int32: torch._int_mm, except for a
    short k, where numpy's int32 product costs nothing and torch 2.13's oneDNN call has been seen
    to return wrong sums (k = 1, on the development CPUs; tests/test_exact.py)."""
    if a.shape[1] < 8:
        return (a.astype(np.int32) @ b_rows.astype(np.int32).T).astype(np.int32)
    return torch._int_mm(torch.from_numpy(a), torch.from_numpy(b_rows).t()).numpy()


# --- which backends run here, and which is fastest -------------------------------------------------


def available(device) -> list[str]:
    """The backends that run on `device` and give exact results there (checked on a small case)."""
    device = torch.device(device)
    key = str(device)
    if key not in _AVAILABLE:
        _AVAILABLE[key] = [b for b in BACKENDS if _runs(b, device)]
    return _AVAILABLE[key]


_AVAILABLE: dict[str, list[str]] = {}


def _runs(backend: str, device: torch.device) -> bool:
    if backend == "vector" and (device.type != "cpu" or not kernels.available()):
        return False
    if backend == "int8" and not hasattr(torch, "_int_mm"):
        return False
    if backend == "float64" and device.type == "mps":
        return False
    generator = torch.Generator().manual_seed(1)
    q = torch.randint(-2 ** 11, 2 ** 11, (40, 64), generator=generator, dtype=torch.int32)
    a = torch.randint(-2 ** 14, 2 ** 14 + 1, (33, 64), generator=generator, dtype=torch.int32)
    weight = IntegerWeight.of(q, torch.ones(40), 12, 15).to(device)
    expected = (a.long() @ q.long().t()).to(torch.float32)
    try:
        got = matmul(weight, a.to(device), backend).cpu()
    except (RuntimeError, TypeError, NotImplementedError):
        return False
    return torch.equal(got, expected)


@dataclass
class Choice:
    """The backend of each weight's products at a compression block's rows (`ROLES`), of
    compression's attention sums (`attention`), and how they were picked."""

    roles: dict[str, str]
    attention: str
    source: str  # "measured", "cached" or "forced"
    rates: dict[str, dict[str, float]] = field(default_factory=dict)  # role -> backend -> GOP/s

    @classmethod
    def forced(cls, backend: str, device) -> "Choice":
        here = available(device)
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
        if backend not in here:
            raise ValueError(f"the {backend} backend does not run on {device} here (available: {', '.join(here)})")
        attention = backend if backend in ATTENTION_BACKENDS else ("float64" if "float64" in here else "int8")
        return cls({role: backend for role in ROLES}, attention, "forced")

    def table(self) -> list[dict]:
        """Rows for printing: role, each backend's rate, the choice."""
        rows = []
        for role in ROLES + ("attention",):
            chosen = self.attention if role == "attention" else self.roles[role]
            rows.append({"product": role, "rates_gop_per_second": self.rates.get(role, {}), "chosen": chosen})
        return rows


def forced_backend(backend: str | None = None) -> str | None:
    """The backend asked for: the argument, else MEMZIP_BACKEND, else None (measure)."""
    backend = backend or os.environ.get(ENVIRONMENT) or None
    return None if backend in (None, "auto") else backend


def choose(shapes: dict[str, tuple[int, int, int]], attention: tuple[int, int, int], device,
           backend: str | None = None, on_prepare=None, cache: bool = True) -> Choice:
    """The backends for these shapes on this machine: forced (`backend` or MEMZIP_BACKEND),
    cached from an earlier measurement, or measured now (`on_prepare(message)` is told first:
    it takes a few seconds, once per machine).

    shapes: role -> (n_out, n_in, bits); attention: (rows, keys, head_dim) of a query block."""
    backend = forced_backend(backend)
    if backend:
        return Choice.forced(backend, device)
    key = _machine_key(shapes, attention, device)
    store = _store_path()
    known = _read_store(store) if cache else {}
    if key in known:
        entry = known[key]
        return Choice(entry["roles"], entry["attention"], "cached", entry.get("rates", {}))
    if on_prepare:
        on_prepare("measuring this machine's exact products (once)")
    choice = measure(shapes, attention, device)
    if cache:
        known[key] = {"roles": choice.roles, "attention": choice.attention, "rates": choice.rates,
                      "machine": machine_description(device), "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
        _write_store(store, known)
    return choice


def measure(shapes: dict[str, tuple[int, int, int]], attention: tuple[int, int, int], device,
            seconds: float = 0.05) -> Choice:
    """Time every backend that runs here on each shape, at BLOCK_ROWS rows; keep the fastest.
    A backend more than 8x slower than the best on the first (smallest) shape is not timed on
    the larger ones, where it cannot win (torch._int_mm's plain loop took seconds a call)."""
    device = torch.device(device)
    candidates = available(device)
    generator = torch.Generator().manual_seed(0)
    rates: dict[str, dict[str, float]] = {}
    roles: dict[str, str] = {}
    for role in sorted(shapes, key=lambda r: shapes[r][0] * shapes[r][1]):
        n_out, n_in, bits = shapes[role]
        limit = 2 ** (bits - 1) - 1
        q = torch.randint(-limit, limit + 1, (n_out, n_in), generator=generator, dtype=torch.int32)
        weight = IntegerWeight.of(q, torch.ones(n_out), bits, 15).to(device)
        rows = torch.randint(-2 ** 14, 2 ** 14 + 1, (BLOCK_ROWS, n_in), generator=generator, dtype=torch.int32)
        ops = 2 * BLOCK_ROWS * n_in * n_out
        rates[role] = {}
        for b in candidates:
            if device.type == "cpu":
                numpy_rows = rows.to(torch.int16).numpy()
                factors = np.ones(BLOCK_ROWS, np.float32)
                scale = weight.scale[0].contiguous().numpy()

                def run(b=b):
                    scaled_product(weight, numpy_rows, scale, factors, b)
            else:
                rows_here = rows.to(device)

                def run(b=b):
                    matmul(weight, rows_here, b)
                    torch.cuda.synchronize() if device.type == "cuda" else None
            rates[role][b] = _gop(ops, _timed(run, seconds))
        best = max(rates[role].values())
        candidates = [b for b in candidates if rates[role][b] * 8 >= best]
        roles[role] = max(rates[role], key=rates[role].get)

    rates["attention"] = _measure_attention(*attention, device, seconds)
    return Choice(roles, max(rates["attention"], key=rates["attention"].get), "measured", rates)


def _measure_attention(rows: int, keys: int, head_dim: int, device, seconds: float) -> dict[str, float]:
    """p @ v of one query block and key head: 20-bit weights as three int8 slices times 12-bit
    values as two (int8), or one float64 GEMM."""
    generator = torch.Generator().manual_seed(2)
    ops = 2 * rows * keys * head_dim
    out = {}
    if device.type == "cpu" and "int8" in available(device):
        weights = torch.randint(-128, 128, (3 * rows, keys), generator=generator, dtype=torch.int8).numpy()
        values = torch.randint(-128, 128, (2 * head_dim, keys), generator=generator, dtype=torch.int8).numpy()
        out["int8"] = _gop(ops, _timed(lambda: int8_matmul(weights, values), seconds))
    if "float64" in available(device):
        weights64 = torch.randint(0, 2 ** 20, (rows, keys), generator=generator).to(device, torch.float64)
        values64 = torch.randint(-2047, 2048, (keys, head_dim), generator=generator).to(device, torch.float64)
        out["float64"] = _gop(ops, _timed(lambda: weights64 @ values64, seconds))
    return out or {"float64": 0.0}


def _gop(ops: int, seconds: float) -> float:
    """GOP/s to three significant digits (a tiny shape's rate stays above zero)."""
    return float(f"{ops / seconds / 1e9:.3g}")


def _timed(run, seconds: float) -> float:
    """The median seconds of a call, over at least 3 calls and `seconds` (after one warm-up)."""
    run()
    times = []
    began = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - began < seconds and len(times) < 50):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


# --- the cache of choices, per machine ---------------------------------------------------------------


def machine_description(device) -> dict:
    device = torch.device(device)
    description = {"cpu": cpu_name(), "isa": cpu_features(), "torch": torch.__version__,
                   "threads": torch.get_num_threads(), "device": device.type,
                   # what torch and numba were told to use of the CPU (ATEN_CPU_CAPABILITY,
                   # ONEDNN_MAX_CPU_ISA, NUMBA_CPU_NAME, oneDNN switched off): they change the speeds
                   "torch_isa": torch.backends.cpu.get_cpu_capability(), "onednn": torch.backends.mkldnn.enabled,
                   "onednn_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"), "numba_cpu": os.environ.get("NUMBA_CPU_NAME")}
    if kernels.available():
        import numba

        description["numba"] = numba.__version__
    if device.type == "cuda":
        description["gpu"] = torch.cuda.get_device_name(device)
    return description


def _machine_key(shapes, attention, device) -> str:
    text = json.dumps([machine_description(device), sorted(shapes.items()), attention], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The instruction-set flags that decide these products' speed (Linux; else none)."""
    wanted = {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "asimd",
              "asimddp", "sve", "i8mm"}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return sorted(wanted & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return [platform.machine()]


def _store_path():
    from memzip.models import cache_dir

    return cache_dir() / "backends.json"


def _read_store(path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_store(path, known: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache: measured again next time
