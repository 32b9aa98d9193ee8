"""The exact Llama on a CPU, in compiled loops: memzip/exact/model.py's bits, several times faster.

The reference (`ExactLlama`) makes some seventy small torch calls a layer; on a CPU their
per-call overhead and their passes over memory, not arithmetic, bound both a decoding step and
a compression block. `CompiledLlama` computes the same operations in the same order in
memzip/exact/kernels.py's numba loops, between the integer products:

- a decoding step (one position of every stream): all its layers in one compiled call
  (`kernels.step_layers`), the weight products in simd.py's vector loops, which read each
  weight once at close to the memory's speed;
- a compression block: the projections, RoPE, RMSNorm, SiLU and quantizing in row kernels, the
  attention weights in one pass (`kernels.block_weights`), and the products by the backend
  measured fastest on this machine for each weight (memzip/exact/products.py), p @ v included;
- the output head and the coder's rows in their own kernels.

Keys and values live in the int16 context layout, which the compiled attention reads. Every
kernel is checked against the reference through `forward` and `logits` (tests/test_exact.py).
"""

from __future__ import annotations

import numpy as np
import torch

from memzip.exact import kernels, products
from memzip.exact.integer import pow2, quantize_with
from memzip.exact.model import F32, Context, ExactLlama, Queries, _per_key_head
from memzip.exact.products import FEW_ROWS, Choice, IntegerWeight
from memzip.exact.weights import ExactWeights, LayerWeights


def runs_here(weights: ExactWeights, device) -> bool:
    """The compiled path runs on CPUs with numba, for sizes its integer types hold."""
    s, shape = weights.settings, weights.shape
    from memzip.exact import tables

    table_max = max(tables.exp_table(s.attention_weight_bits, s.attention_grid_bits))
    return (torch.device(device).type == "cpu" and kernels.available()
            and kernels.fits(int(table_max), s.value_bits, shape.head_dim, s.query_bits, s.key_bits))


class _LayerArrays:
    """A layer's scales as the numpy arrays the kernels read."""

    def __init__(self, layer: LayerWeights, key_inverse, value_inverse, head_step):
        self.qkv_scale, self.out_scale, self.gate_up_scale, self.down_scale = (
            w.scale[0].contiguous().numpy() for w in (layer.qkv, layer.out, layer.gate_up, layer.down))
        self.key_inverse = key_inverse[:, 0].contiguous().numpy()  # [kv]
        self.value_inverse = value_inverse.contiguous().numpy()  # [kv, hd]
        self.value_scale = layer.value_scale.contiguous().numpy()  # [kv, hd]
        self.head_step = head_step.reshape(-1).contiguous().numpy()  # [heads]


class CompiledLlama(ExactLlama):
    """ExactLlama's forward and logits in compiled loops (CPU, numba); the same bits."""

    layout = "int16"
    # Positions x streams of a block processed together by the row kernels: their temporaries stay
    # in the CPU's cache, and a product's rows are products.BLOCK_ROWS, the shape measured.
    row_block = products.BLOCK_ROWS

    def __init__(self, weights: ExactWeights, device, choice: Choice):
        super().__init__(weights, device, choice)
        shape, s = self.shape, self.settings
        self._kernel_table = self._attention_table.to(torch.int32).numpy()
        self._head_step = [step.view(1, shape.heads, 1) for step in self._score_step]
        self._key_inverses = torch.stack(self._key_inverse)[:, None, None]  # [layers, 1, 1, kv, 1]
        self._layer_arrays = [_LayerArrays(layer, self._key_inverse[i], self._value_inverse[i], self._head_step[i])
                              for i, layer in enumerate(self.layers)]
        self._sigmoid_array = self._sigmoid.numpy()
        self._head_scale = self.head.scale[0].contiguous().numpy()
        self._constants = np.float32(self._inverse_d), np.float32(shape.eps)
        self._step_arrays = kernels.StepArrays(
            weights.stacked_slices, self.layers, self._layer_arrays, shape.heads, shape.ffn, s, np.float32(self._inverse_d),
            np.float32(shape.eps), self._kernel_table, self._sigmoid_array, kernels.small_product_chunk(s.activation_bits))

    # --- the public forward ---------------------------------------------------------------------

    def forward(self, inputs: torch.Tensor, context: Context, hidden_at: torch.Tensor | None = None) -> torch.Tensor:
        if inputs.shape[1] == 1 and context.position > 0 and hidden_at is None:
            return self._step(inputs, context)[:, None]
        return super().forward(inputs, context, hidden_at)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._project_rows(self.head, "head", self._head_scale, hidden))

    # --- a decoding step: every layer in one compiled call ----------------------------------------

    def _step(self, inputs: torch.Tensor, context: Context) -> torch.Tensor:
        """One new position of every sequence: `forward`'s layers in kernels.step_layers, the same
        operations in the same order, the weight products in the vector loops. Returns [B, d]."""
        batch, _, d = inputs.shape
        start, window = context.position, context.window
        context.make_room(1)
        h = inputs.reshape(batch, d).to(F32, copy=True)
        position = torch.tensor([start])
        cos, sin = self._rope_at(position)
        sink_cos, sink_sin = self._rope_at((position - window).clamp_(min=0))
        sink_keys = self._rotated_sinks(context, sink_cos, sink_sin)[:, :, 0].to(torch.int16).numpy()  # [layers, B, kv, hd]
        slot = start - context.first
        first_slot = max(1, start - window + 1) - context.first
        # copies, writable: a read-only view (what broadcast_to gives for one stream) is another type
        # to numba, and would compile the kernels a second time
        cos, sin = (np.broadcast_to(x[0].numpy(), (batch, x.shape[-1])).copy() for x in (cos, sin))
        rows = h.numpy()  # updated in place, layer by layer
        kernels.step_layers(rows, self._step_arrays, cos, sin, context.keys.numpy(), context.values.numpy(),
                            np.arange(batch), np.full(batch, slot), sink_keys,
                            context.sink_values.to(torch.int32).numpy(), first_slot, slot + 1 - first_slot)
        context.advance(1)
        return h

    def _rotated_sinks(self, context: Context, cos, sin) -> torch.Tensor:
        """The sinks' integer keys of every layer, rotated to where each position sees them:
        [layers, B, t, kv, hd] (model._rotated_sink_keys over all layers at once)."""
        raw = context.sink_keys[:, :, None]  # [layers, B, 1, kv, hd]
        c, s = cos[None, None, :, None, :], sin[None, None, :, None, :]
        half = raw.shape[-1] // 2
        x1, x2 = raw[..., :half], raw[..., half:]
        rotated = torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)
        return quantize_with(rotated, self._key_inverses, self.settings.key_bits)

    # --- a block of positions ---------------------------------------------------------------------

    def _row_blocks(self, batch: int, t: int) -> list[tuple[int, int]]:
        block = max(1, self.row_block // batch)  # positions per block of rows
        return [(first, min(t, first + block)) for first in range(0, t, block)]

    def _queries_and_keys(self, index: int, layer: LayerWeights, h: torch.Tensor, start: int, context: Context,
                          angles) -> Queries:
        """The reference's queries and keys, in kernels.qkv_outputs block by block of rows; the
        block holding position 0 (the sink, which the kernel does not store) by the reference."""
        (cos, sin), (sink_cos, sink_sin) = angles
        parts = []
        for a, b in self._row_blocks(h.shape[0], h.shape[1]):
            block_angles = (cos[a:b], sin[a:b]), (sink_cos[a:b], sink_sin[a:b])
            if start + a == 0:
                parts.append(super()._queries_and_keys(index, layer, h[:, a:b], 0, context, block_angles))
            else:
                parts.append(self._compiled_queries_and_keys(index, layer, h[:, a:b], start + a, context,
                                                             block_angles))
        return parts[0] if len(parts) == 1 else Queries.joined(parts)

    def _compiled_queries_and_keys(self, index, layer, h, start, context, angles) -> Queries:
        s, shape = self.settings, self.shape
        heads, kv, hd = shape.heads, shape.kv_heads, shape.head_dim
        batch, t, d = h.shape
        (cos, sin), (sink_cos, sink_sin) = angles
        arrays = self._layer_arrays[index]
        integers, factors = kernels.normalize_rows(np.ascontiguousarray(h.reshape(-1, d).numpy()), s.activation_bits,
                                                   *self._constants)
        angle_rows = [np.broadcast_to(x.numpy(), (batch,) + tuple(x.shape)).reshape(batch * t, -1).copy()
                      for x in (cos, sin)]
        streams = np.repeat(np.arange(batch), t)  # row b * t + p: stream b, position start + p
        slots = np.tile(np.arange(start, start + t) - context.first, batch)
        queries, shifts = kernels.qkv_outputs(
            *self._product(integers, layer.qkv, "qkv"), arrays.qkv_scale, factors, heads, *angle_rows,
            arrays.key_inverse, np.float32(2 ** (s.key_bits - 1) - 1), arrays.value_inverse,
            np.float32(2 ** (s.value_bits - 1) - 1), arrays.head_step, s.query_bits, context.keys[index].numpy(),
            context.values[index].numpy(), streams, slots)
        q_int = torch.from_numpy(queries.astype(np.float32)).reshape(batch, t, heads, hd)
        step = pow2(torch.from_numpy(shifts).reshape(batch, t, heads, 1), F32)
        sink_keys = self._rotated_sink_keys(index, context, sink_cos, sink_sin)
        group = heads // kv
        return Queries(*(_per_key_head(x, kv, group) for x in (q_int, step, sink_keys)))

    def _attention(self, index: int, layer: LayerWeights, queries: Queries, start: int, t: int,
                   context: Context) -> torch.Tensor:
        """The reference's attention with the weights in one pass (kernels.block_weights) and p @ v
        by the measured backend: three int8 slices of the 20-bit weights times two of the values
        through torch._int_mm, or one float64 GEMM. The same integers, one rounded division."""
        shape = self.shape
        heads, kv, hd = shape.heads, shape.kv_heads, shape.head_dim
        group = heads // kv
        batch = queries.q_int.shape[0]
        slots, blocks = self._query_blocks(start, t, group, context)
        keys_t = context.keys_f32(index, slots).transpose(-1, -2)  # [B, kv, hd, n]
        sink_values = context.sink_values[index].to(torch.int64).numpy()
        value_scale = self._layer_arrays[index].value_scale
        in_slices = self.choice.attention == "int8"
        if in_slices:
            values = kernels.value_slices(context.values[index].numpy(), slots.start, slots.stop - slots.start)
        else:
            values = context.values_f64(index, slots)  # [B, kv, n, hd]
        out = torch.empty(batch, kv, t * group, hd, dtype=F32)
        for block in blocks:
            rows = block.rows
            sink = self._sink_scores(queries, rows)
            if block.keys is None:  # position 0 alone sees only itself
                sink_value = context.sink_values[index][:, :, None, :].to(F32)
                out[:, :, rows] = sink_value.expand(-1, -1, rows.stop - rows.start, -1) \
                    * layer.value_scale[None, :, None, :]
                continue
            scores = queries.q_int[:, :, rows] @ keys_t[:, :, :, block.keys]  # exact
            weights, sink_weight, total = kernels.block_weights(
                scores.numpy(), queries.step[:, :, rows, 0].contiguous().numpy(), sink[..., 0].contiguous().numpy(),
                start + block.first, group, block.lo, context.window, self._kernel_table, in_slices)
            if in_slices:
                n, keys = weights.shape[3], block.keys.stop - block.keys.start
                sums = np.empty((batch, kv, kernels.WEIGHT_SLICES * n, 2 * hd), np.int32)
                for b in range(batch):
                    for h in range(kv):
                        value_rows = np.ascontiguousarray(values[b, h, :, :, block.keys]).reshape(2 * hd, keys)
                        sums[b, h] = products.int8_matmul(weights[b, h].reshape(-1, keys), value_rows)
                outputs = kernels.block_outputs(sums, sink_weight, sink_values, total, value_scale)
            else:
                numerator = (torch.from_numpy(weights) @ values[:, :, block.keys]).numpy()  # exact: below 2^53
                outputs = kernels.block_outputs(None, sink_weight, sink_values, total, value_scale, exact=numerator)
            out[:, :, rows] = torch.from_numpy(outputs)
        return out.reshape(batch, kv, t, group, hd).permute(0, 2, 1, 3, 4).reshape(batch, t, heads * hd)

    def _out_and_mlp(self, index: int, layer: LayerWeights, h: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """h + the output projection of attention's rows, then + the MLP, in kernels.py's loops
        around the products, block by block of rows (in place in a contiguous copy of h)."""
        s, arrays = self.settings, self._layer_arrays[index]
        batch, t, d = h.shape
        out = h.contiguous().numpy().copy()
        attended = attended.numpy()
        for a, b in self._row_blocks(batch, t):
            rows = np.ascontiguousarray(out[:, a:b]).reshape(-1, d)
            integers, scales = kernels.quantize_rows(np.ascontiguousarray(attended[:, a:b]).reshape(rows.shape[0], -1),
                                                     s.activation_bits)
            kernels.add_product(rows, *self._product(integers, layer.out, "out"), arrays.out_scale, scales)
            integers, factors = kernels.normalize_rows(rows, s.activation_bits, *self._constants)
            integers, scales = kernels.gated_outputs(
                *self._product(integers, layer.gate_up, "gate_up"), arrays.gate_up_scale, factors, self.shape.ffn,
                self._sigmoid_array, s.silu_grid_bits, s.activation_bits)
            kernels.add_product(rows, *self._product(integers, layer.down, "down"), arrays.down_scale, scales)
            out[:, a:b] = rows.reshape(batch, b - a, d)
        return torch.from_numpy(out)

    # --- products -----------------------------------------------------------------------------------

    def _backend(self, role: str, rows: int) -> str:
        """The vector loops for a few rows (a step's, a block's last ones), else the measured choice."""
        return "vector" if rows <= FEW_ROWS else self.choice.roles[role]

    def _product(self, integers: np.ndarray, weight: IntegerWeight, role: str) -> tuple[np.ndarray, int]:
        return products.product(weight, integers, self._backend(role, integers.shape[0]))

    def _project_rows(self, weight: IntegerWeight, role: str, weight_scale: np.ndarray, h: torch.Tensor) -> np.ndarray:
        """The reference's _project in kernels.py's loops: [m, n_out] float32."""
        integers, factors = kernels.normalize_rows(np.ascontiguousarray(h.numpy()), self.settings.activation_bits,
                                                   *self._constants)
        return products.scaled_product(weight, integers, weight_scale, factors, self._backend(role, h.shape[0]))


# --- compiling the kernels, once per machine ---------------------------------------------------------
#
# numba compiles a kernel on its first call for each combination of argument types, ~30 s in all
# on the development CPU, and caches the machine code on disk. Left alone, that happens inside
# the first compression block or decoding step, where it looks like a stalled progress bar. So the
# engine compiles them first, on a tiny synthetic model that takes the same paths (few rows and a
# block's rows, a tiled output head, both kinds of attention sums), and says so.

def compile_kernels(on_prepare=None, backends: tuple[str, ...] = ("vector",)) -> None:
    """Compile (or load from numba's cache) every kernel the compiled path calls with these
    product backends, unless this machine has done so for this code; tell `on_prepare` first.
    Where `compile_in_background` started that work, wait for it instead."""
    global _background
    if _background is not None:
        if _background.poll() is None and not all(_marker(b).is_file() for b in backends):
            if on_prepare:
                on_prepare("compiling the exact engine's CPU kernels (once)")
            _background.wait()
        _background = None
    for backend in backends:
        marker = _marker(backend)
        if marker.is_file():
            continue
        if on_prepare:
            on_prepare(f"compiling the exact engine's CPU kernels for {backend} products (once)")
        _warm_up(backend)
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("ready\n")
        except OSError:
            pass


_background = None  # the process compile_in_background started, while it may still run


def compile_in_background() -> None:
    """On a machine where the kernels were never compiled (for this code), compile them in another
    process, on another core, while this one does the rest of a first run's one-time work (a GGUF
    file's conversion, rounding the weights: ~20 s of the ~60 s a first run takes). The vector
    loops' path and, where torch has it, the int8 path: which one a machine's products use is
    only known once they are measured."""
    global _background
    if _background is not None or not kernels.available():
        return
    backends = ("vector", "int8") if hasattr(torch, "_int_mm") else ("vector",)
    if all(_marker(b).is_file() for b in backends):
        return
    import subprocess
    import sys

    try:
        _background = subprocess.Popen([sys.executable, "-m", "memzip.exact.compiled", *backends],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:  # no process to spare: compiled in this one when needed
        _background = None


def _marker(backend: str):
    """A file that says the kernels were compiled here for this code, numba and CPU."""
    import hashlib
    import os
    from pathlib import Path

    import numba

    from memzip.models import cache_dir

    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in ("kernels.py", "simd.py"):
        digest.update((here / name).read_bytes())
    digest.update(repr((numba.__version__, os.environ.get("NUMBA_CPU_NAME"), products.cpu_name(),
                        products.cpu_features())).encode())
    return cache_dir() / "kernels" / f"{digest.hexdigest()[:24]}-{backend}"


def _warm_up(backend: str) -> None:
    from memzip.exact.coding import CodingSettings, Distribution
    from memzip.exact.streams import compress_stream, extract_streams

    engine = CompiledLlama(_tiny_weights(), "cpu", Choice.forced(backend, "cpu"))
    distribution = Distribution(CodingSettings(), engine.shape.vocab, "cpu")
    tokens = list(range(3, 3 + 2 * products.BLOCK_ROWS + 7))
    start = engine.embed(torch.tensor([0]))
    coded = compress_stream(engine, distribution, start, tokens, 16)
    extract_streams(engine, distribution, start[None].expand(2, -1, -1), [coded.residual] * 2, [len(tokens)] * 2, 16)


def _tiny_weights() -> ExactWeights:
    """A random model with the paths of a real one: grouped heads, a head wide enough for tiles."""
    from memzip.exact.weights import Shape

    return ExactWeights.random(Shape(layers=1, d_model=64, heads=4, kv_heads=2, head_dim=16, ffn=96,
                                     vocab=4 * products.TILE_OUTPUTS, eps=1e-5, rope_theta=10000.0, rope_scaling=(),
                                     max_positions=1024))


if __name__ == "__main__":  # compile_in_background's process
    import sys

    compile_kernels(None, tuple(sys.argv[1:]) or ("vector",))
