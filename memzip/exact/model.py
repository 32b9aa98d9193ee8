"""An exact Llama: logits that are a function of (weights, tokens) alone, bit for bit, anywhere.

The architecture is transformers' LlamaForCausalLM (SmolLM2, Llama 3.x): RMSNorm, attention with
RoPE and grouped key/value heads, a SiLU-gated MLP, tied or separate output embeddings. What
changes is how each step is computed (memzip/exact/integer.py says why each step is exact):

    h = embedding rows (or [mem] vectors)                    float32, the residual stream
    per layer:
      x, s = quantize(h)                 per-token integers with a power-of-two scale
      r = 1 / sqrt(sum(x^2) s^2 / d + eps)   an exact integer sum, then rounded float64 steps
      q, k, v = (x @ Wqkv) * scales * r  exact integer GEMM (RMSNorm's weight folded into Wqkv)
      q, k = rope(q, k)                  cos and sin from tables built in integers (tables.py)
      keys, values -> integers under static power-of-two scales (bounds from the weights)
      scores = q_int @ k_int              exact; softmax weights from an integer table of exp
      out = (p @ v_int) / sum(p)         exact integer sums, one rounded division
      h = h + (quantize(out) @ Wo) * scales
      h = h + (quantize(silu(g) * u) @ Wdown) * scales, with g, u from x @ Wgate_up as above
    logits = (quantize(h) @ Wout) * scales * r

Attention sees the first position (the sink) and a sliding window of recent positions
(`Context`). Every sum whose order a library may choose adds integers that fit its type
exactly; every other step is one correctly rounded operation, applied one torch call at a time.
So the logits are the same for any device, batch size, thread count and BLAS, and for a
whole-sequence forward or token-by-token decoding; tests/test_exact.py varies each and compares
bits. Products are computed in whichever exact way is fastest for their shape (one float64
GEMM, int8 slices, float32 digits): they give the same integers. On a CPU, decoding steps and
compression's blocks run as compiled loops (memzip/exact/kernels.py) around torch's GEMMs: a
step's attention over integers, and the rest as the same single rounded operations in the same
order as the torch path (`compiled`), without its seventy-odd small calls a layer.

The bit widths (`ExactSettings`) were chosen by measurement: the exact model's cross-entropy
stays within 0.1% of the float32 model's (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from memzip.exact import kernels, tables
from memzip.exact.integer import (TILE_OUTPUTS, TILED_FROM_ROWS, IntegerWeight, check_exact, correctly_rounded_sqrt,
                                  exponent, int8_available,
                                  pow2, power_of_two_at_least, quantize, quantize_rows, quantize_with, sqrt_float64_cpu)

F32, F64 = torch.float32, torch.float64

# The name of this computation. Any change to what the engine computes (a table, a rounding,
# the order of two operations) must change it: archives name the engine that made them.
ENGINE = "exact-llama-1"


@dataclass(frozen=True)
class ExactSettings:
    """Every number that shapes the exact model's logits; archives record them all. Measured on
    40 KB of alice29.txt (1024-token chunks): with all of these the cross-entropy is within 0.07%
    of the float32 model's; int8 weights alone would cost 0.7%."""

    weight_bits: int = 12  # integer weights per output row: queries, keys, values, MLP out, logits
    narrow_weight_bits: int = 8  # attention output and MLP gate/up (+0.06% together; one int8 slice)
    activation_bits: int = 15  # matmul inputs per token
    query_bits: int = 8  # queries per token and head (+0.03%): q . k is exact in float32
    key_bits: int = 12  # keys, with a static scale per layer and key head
    value_bits: int = 12  # values, with a static scale per layer and channel
    attention_weight_bits: int = 20  # softmax weights as integers up to 2^20
    attention_grid_bits: int = 8  # score differences bucketed at 2^-8 (no measurable cost; a small table)
    silu_grid_bits: int = 11  # sigmoid tabulated at 2^-11 ...
    silu_limit: int = 16  # ... on [-16, 16]

    def to_header(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Shape:
    """The architecture numbers, from the transformers config."""

    layers: int
    d_model: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    eps: float
    rope_theta: float
    rope_scaling: tuple  # sorted items of rope_parameters beyond theta, () for default RoPE
    max_positions: int

    @classmethod
    def of(cls, config) -> "Shape":
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
        theta = float(rope.pop("rope_theta", getattr(config, "rope_theta", 10000.0)))
        if rope.get("rope_type", "default") == "default":
            rope = {}
        return cls(config.num_hidden_layers, config.hidden_size, heads, config.num_key_value_heads or heads,
                   head_dim, config.intermediate_size, config.vocab_size, float(config.rms_norm_eps), theta,
                   tuple(sorted((k, v) for k, v in rope.items() if v is not None)),
                   int(getattr(config, "max_position_embeddings", 2048)))


def unsupported_reason(model) -> str | None:
    """Why the exact engine cannot run this transformers model, or None if it can."""
    config = model.config
    if type(model).__name__ != "LlamaForCausalLM":
        return f"the exact engine covers Llama-architecture models, not {type(model).__name__}"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act} is not supported"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "biases in attention or MLP are not supported"
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    if rope.get("rope_type", "default") not in ("default", "llama3"):
        return f"rope_type {rope.get('rope_type')} is not supported"
    return None


class Context:
    """What attention remembers for a batch of sequences that advance together, position by
    position: position 0 of each (the *sink*) and a sliding window of the most recent `window`
    positions after it.

    Models park much of their attention on the first position; a window that slides past it
    loses that anchor and degrades (Xiao et al. 2023, "attention sinks"). So position 0 always
    stays visible, placed just before the window: a query at position p sees the sink as if at
    position max(0, p - window), and positions max(1, p - window + 1)..p as they are. Up to
    p = window this is plain causal attention. The sink's hidden states depend on itself alone,
    so its raw (unrotated) key and its value per layer are kept and its key is rotated anew for
    each query.

    Keys and values are integers under their layer's static scales, in a buffer of `capacity`
    slots holding consecutive positions from `first` on, in one of two layouts:

    - "int16" (CPUs with numba): keys [.., slot, hd] and values transposed [.., hd, slot], both
      int16 (2 bytes each), for the compiled attention of a decoding step (kernels.py), which
      reads them once a step: a step of many streams is bound by that reading;
    - "float" (any device): keys in float32 and values in float64, for torch's GEMMs.
    """

    LAYOUTS = ("int16", "float")

    def __init__(self, shape: Shape, batch: int, window: int, capacity: int, device, layout: str):
        if capacity < window:
            raise ValueError("a context needs at least `window` slots")
        if layout not in self.LAYOUTS:
            raise ValueError(f"unknown context layout {layout!r}")
        self.layout = layout
        size = (shape.layers, batch, shape.kv_heads, capacity, shape.head_dim)
        if layout == "int16":
            self.keys = torch.zeros(size, dtype=torch.int16, device=device)
            self.values = torch.zeros(size[:3] + (shape.head_dim, capacity), dtype=torch.int16, device=device)
        else:
            self.keys = torch.zeros(size, dtype=F32, device=device)
            self.values = torch.zeros(size, dtype=F64, device=device)
        sink = (shape.layers, batch, shape.kv_heads, shape.head_dim)
        self.sink_keys = torch.zeros(sink, dtype=F32, device=device)  # raw, before RoPE
        self.sink_values = torch.zeros(sink, dtype=F64, device=device)  # integers, for float64 p @ v
        self.window, self.capacity = window, capacity
        self.position = 0  # positions seen so far, the sink included
        self.first = 1  # the position held in slot 0
        self.filled = 0  # slots in use

    @property
    def batch(self) -> int:
        return self.keys.shape[1]

    @staticmethod
    def bytes_per_slot(shape: Shape, layout: str) -> int:
        """Memory one position of one sequence holds, over all layers."""
        return shape.layers * shape.kv_heads * shape.head_dim * (2 + 2 if layout == "int16" else 4 + 8)

    def store_values(self, layer: int, first: int, values: torch.Tensor) -> None:
        """Put integer values [B, kv, n, hd] (held in a float type) in slots first..first+n-1."""
        n = values.shape[2]
        if self.layout == "int16":
            self.values[layer, :, :, :, first:first + n] = values.transpose(-1, -2)
        else:
            self.values[layer, :, :, first:first + n] = values

    def keys_f32(self, layer: int, slots: slice) -> torch.Tensor:
        """The keys of `slots` as float32 integers [B, kv, n, hd]."""
        return self.keys[layer, :, :, slots].to(F32)

    def values_f64(self, layer: int, slots: slice) -> torch.Tensor:
        """The values of `slots` as float64 integers [B, kv, n, hd]."""
        if self.layout == "int16":
            return self.values[layer, :, :, :, slots].transpose(-1, -2).to(F64)
        return self.values[layer, :, :, slots]

    def make_room(self, positions: int) -> None:
        """Ensure the next `positions` positions fit, keeping the window-1 latest ones before them."""
        new = positions - (1 if self.position == 0 else 0)
        if self.filled + new <= self.capacity:
            return
        keep = min(self.filled, self.window - 1)
        if keep + new > self.capacity:
            raise ValueError(f"{positions} positions at once do not fit a context of {self.capacity} slots")
        source = slice(self.filled - keep, self.filled)
        self.keys[:, :, :, :keep] = self.keys[:, :, :, source].clone()
        if self.layout == "int16":  # slots are the last dimension
            self.values[..., :keep] = self.values[..., source].clone()
        else:
            self.values[:, :, :, :keep] = self.values[:, :, :, source].clone()
        self.first += self.filled - keep
        self.filled = keep

    def keep_rows(self, rows: list[int]) -> None:
        """Drop the sequences not in `rows` (finished streams leave the batch)."""
        index = torch.tensor(rows, device=self.keys.device)
        for name in ("keys", "values", "sink_keys", "sink_values"):
            setattr(self, name, getattr(self, name).index_select(1, index))


class _Layer:
    def __init__(self, qkv: IntegerWeight, out: IntegerWeight, gate_up: IntegerWeight, down: IntegerWeight,
                 key_scale: torch.Tensor, value_scale: torch.Tensor):
        self.qkv, self.out, self.gate_up, self.down = qkv, out, gate_up, down
        self.key_scale = key_scale  # [kv_heads, 1]: static power-of-two scale of the integer keys
        self.value_scale = value_scale  # [kv_heads, head_dim]: of the integer values, per channel


class _LayerArrays:
    """A layer's scales as the numpy arrays the compiled kernels read (ExactLlama._compiled_step,
    _compiled_rows, _compiled_project)."""

    def __init__(self, layer: _Layer, key_inverse, value_inverse, head_step):
        self.qkv_scale, self.out_scale, self.gate_up_scale, self.down_scale = (
            w.scale[0].contiguous().numpy() for w in (layer.qkv, layer.out, layer.gate_up, layer.down))
        self.key_inverse = key_inverse[:, 0].contiguous().numpy()  # [kv]
        self.value_inverse = value_inverse.contiguous().numpy()  # [kv, hd]
        self.value_scale = layer.value_scale.contiguous().numpy()  # [kv, hd]
        self.head_step = head_step.reshape(-1).contiguous().numpy()  # [heads]


class _Queries:
    """A block's integer queries, per key head: rows (position, query head of the group)."""

    def __init__(self, q_int: torch.Tensor, step: torch.Tensor, sink_keys: torch.Tensor):
        self.q_int = q_int  # [B, kv, rows, hd] float32 integers
        self.step = step  # [B, kv, rows, 1]: a score q_int . k_int times step is in table buckets
        self.sink_keys = sink_keys  # [B, kv, rows, hd]: the sink's integer key as each row sees it


class ExactLlama:
    """The exact forward of a Llama model. Build it with `from_transformers`."""

    # Rows processed together by the per-token steps: their temporaries stay in the CPU's cache.
    row_block = 64
    query_block = 64  # positions per block of attention scores

    def __init__(self, shape: Shape, settings: ExactSettings, embedding: torch.Tensor, layers: list[_Layer],
                 head: IntegerWeight, device, backend: str):
        self.shape, self.settings, self.device, self.backend = shape, settings, device, backend
        self.embedding = embedding  # [vocab, d] float32
        self.layers = layers
        self.head = head
        s = settings
        # Exactness of every product, checked once for these shapes (memzip/exact/integer.py).
        check_exact(s.activation_bits, max(s.weight_bits, s.narrow_weight_bits),
                    max(shape.d_model, shape.ffn, shape.heads * shape.head_dim), "weight GEMMs")
        check_exact(s.activation_bits, s.activation_bits, shape.d_model, "RMSNorm's sum of squares", torch.int64)
        check_exact(s.query_bits, s.key_bits, shape.head_dim, "attention scores", F32)
        self._attention_table = torch.tensor(tables.exp_table(s.attention_weight_bits, s.attention_grid_bits),
                                             dtype=F32, device=device)  # integers below 2^24: exact
        self._sigmoid = torch.tensor(tables.sigmoid_table(s.silu_grid_bits, s.silu_limit), dtype=F32, device=device)
        cos, sin = tables.rope_tables(shape.head_dim, shape.rope_theta, 1 << tables.ROPE_FINE_BITS, shape.rope_scaling)
        self._rope_fine = (torch.tensor(cos, device=device), torch.tensor(sin, device=device))  # float64
        self._rope_coarse: tuple[torch.Tensor, torch.Tensor] | None = None
        # A score q_int . k_int in table buckets: times q's scale and this power of two per query
        # head (the 1/sqrt(head_dim) of attention is folded into the query weights).
        self._score_step = [torch.repeat_interleave(layer.key_scale[:, 0], shape.heads // shape.kv_heads)
                            .reshape(1, 1, shape.heads, 1) * 2.0 ** s.attention_grid_bits for layer in layers]
        self._head_step = [step.view(1, shape.heads, 1) for step in self._score_step]  # for one position
        self._key_inverse = [1.0 / layer.key_scale for layer in layers]  # powers of two: exact
        self._value_inverse = [1.0 / layer.value_scale for layer in layers]
        self._key_inverses = torch.stack(self._key_inverse)[:, None, None]  # [layers, 1, 1, kv, 1]
        self._inverse_d = 1.0 / shape.d_model  # a float, rounded once
        # a decoding step's attention as one compiled kernel (kernels.py) where it runs: on the
        # CPU, with numba, for sizes its integer types hold
        self.layout = "int16" if (self.device.type == "cpu" and kernels.available() and kernels.fits(
            int(self._attention_table.max()), s.value_bits, shape.head_dim, s.query_bits, s.key_bits)) else "float"
        self._kernel_table = self._attention_table.to(torch.int32).cpu().numpy()
        # ... and what lies between the int8 GEMMs, in decoding steps and in compression's blocks
        # (the same bits as the torch calls; a switch for tests and docs/scripts/engine_ab.py)
        self.compiled = self.layout == "int16" and backend == "int8"
        if self.compiled:
            self._layer_arrays = [_LayerArrays(layer, self._key_inverse[i], self._value_inverse[i],
                                               self._head_step[i]) for i, layer in enumerate(layers)]
            self._sigmoid_array = self._sigmoid.numpy()
            self._head_scale = head.scale[0].contiguous().numpy()
            self._chunk = kernels.small_product_chunk(s.activation_bits)
            self._step_arrays = kernels.StepArrays(
                layers, self._layer_arrays, shape.heads, shape.ffn, s, np.float32(self._inverse_d),
                np.float32(shape.eps), self._kernel_table, self._sigmoid_array, self._chunk)

    # --- building ---------------------------------------------------------------------------------

    @classmethod
    def from_transformers(cls, model, settings: ExactSettings | None = None, device=None,
                          backend: str | None = None) -> "ExactLlama":
        """Round a transformers Llama's float weights to the exact engine's integers. The rounding is
        done on the CPU in float64 from the float32 weights, so it is the same on every machine."""
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(reason)
        settings = settings or ExactSettings()
        device = torch.device(device or "cpu")
        backend = backend or ("int8" if int8_available(device) else "float64")
        shape = Shape.of(model.config)
        # float32 on the CPU, each tensor widened to float64 only while it is rounded: the whole
        # model in float64 at once would cost 8 bytes a weight of peak memory (1 GB for 135M)
        state = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}

        def f64(name: str) -> torch.Tensor:
            return state[name].double()
        w, a = settings.weight_bits, settings.activation_bits
        inverse_sqrt_head_dim = float(1 / tables.decimal_sqrt(shape.head_dim))

        def weight(matrix: torch.Tensor, bits: int = w) -> IntegerWeight:
            q, scale = quantize_row(matrix, bits)
            return IntegerWeight(q, scale, bits, backend, a).to(device)

        narrow = settings.narrow_weight_bits

        layers = []
        for i in range(shape.layers):
            p = f"model.layers.{i}."
            norm1 = f64(p + "input_layernorm.weight")[None, :]
            norm2 = f64(p + "post_attention_layernorm.weight")[None, :]
            # float32 x float32 is exact in float64: folding the norm weight adds no rounding;
            # 1/sqrt(head_dim) (rounded once, from its decimal value) joins the query rows
            query = f64(p + "self_attn.q_proj.weight") * inverse_sqrt_head_dim
            qkv = torch.cat([query] + [f64(p + f"self_attn.{n}_proj.weight") for n in "kv"]) * norm1
            q_int, q_scale = quantize_row(qkv, w)
            key_scale, value_scale = cls._static_scales(shape, settings, q_int, q_scale)
            layers.append(_Layer(
                IntegerWeight(q_int, q_scale, w, backend, a).to(device),
                weight(f64(p + "self_attn.o_proj.weight"), narrow),
                weight(torch.cat([f64(p + "mlp.gate_proj.weight"), f64(p + "mlp.up_proj.weight")]) * norm2, narrow),
                weight(f64(p + "mlp.down_proj.weight")),
                key_scale.to(device, F32), value_scale.to(device, F32)))
        embedding = state["model.embed_tokens.weight"]
        head = f64("lm_head.weight" if "lm_head.weight" in state else "model.embed_tokens.weight") \
            * f64("model.norm.weight")[None, :]
        return cls(shape, settings, embedding.to(device, F32), layers, weight(head), device, backend)

    @staticmethod
    def _static_scales(shape: Shape, settings: ExactSettings, q_int: torch.Tensor, q_scale: torch.Tensor):
        """Power-of-two scales for keys and values that hold for every input. The normalized input
        n has |n| <= sqrt(d) (RMSNorm), so output channel c is at most ||w_c|| sqrt(d)
        (Cauchy-Schwarz); RoPE mixes channel pairs, so a key channel is at most the pair's norm."""
        h, kv, hd = shape.heads, shape.kv_heads, shape.head_dim
        row_norms = sqrt_float64_cpu((q_int * q_int).sum(dim=1)) * q_scale[:, 0] * math.sqrt(shape.d_model) \
            * (1 + 2.0 ** -20)
        keys = row_norms[h * hd:(h + kv) * hd].reshape(kv, hd)
        values = row_norms[(h + kv) * hd:].reshape(kv, hd)
        first, second = keys[:, :hd // 2], keys[:, hd // 2:]
        pairs = sqrt_float64_cpu(first * first + second * second)
        key_scale = power_of_two_at_least(pairs.amax(dim=1, keepdim=True)) * 2.0 ** -(settings.key_bits - 1)
        value_scale = power_of_two_at_least(values) * 2.0 ** -(settings.value_bits - 1)
        return key_scale, value_scale

    # --- the forward ------------------------------------------------------------------------------

    def new_context(self, batch: int, window: int, capacity: int | None = None, layout: str | None = None) -> Context:
        """A context for `batch` sequences seeing the sink and the last `window` positions;
        `capacity` (default window + 64) bounds how many positions one forward may add. `layout`
        (default: the fastest here, `self.layout`) changes how, never what, a step computes."""
        s = self.settings
        # p @ v sums up to window + 1 products of a weight (<= 2^P) and a value: exact below 2^53
        check_exact(s.attention_weight_bits + 1, s.value_bits, window + 1, f"attention over {window} positions")
        layout = layout or self.layout
        if layout == "int16" and self.layout != "int16":
            raise ValueError("the int16 context layout needs numba and a CPU")
        return Context(self.shape, batch, window, capacity or window + 64, self.device, layout)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, t] token ids -> [B, t, d] float32 input rows."""
        return self.embedding[tokens.to(self.device)]

    def forward(self, inputs: torch.Tensor, context: Context, hidden_at: torch.Tensor | None = None) -> torch.Tensor:
        """Run `inputs` [B, t, d] (float32 rows) at the next t positions of `context`. Returns the
        final hidden rows [B, n, d] at `hidden_at` (indices into 0..t-1; default: the last), for
        `logits`."""
        batch, t, d = inputs.shape
        start = context.position
        if t == 1 and start > 0 and hidden_at is None:
            return self._step(inputs, context, start)[:, None]
        context.make_room(t)
        h = inputs.to(F32, copy=True)
        positions = torch.arange(start, start + t, device=self.device)
        cos, sin = self._rope_at(positions)
        sink_rope = self._rope_at((positions - context.window).clamp_(min=0))
        # Where each position sees the sink, for every layer at once: [layers, B, t, kv, hd]. A
        # first forward learns the sink's keys layer by layer (_queries_and_keys) instead.
        sinks = None if start == 0 else self._rotated_sinks(context, *sink_rope)
        block = max(1, self.row_block // batch)  # positions per block of rows (a bounded working set)
        blocks = [(first, min(t, first + block)) for first in range(0, t, block)]
        for index, layer in enumerate(self.layers):
            parts = []
            for a, b in blocks:
                sink_keys = None if sinks is None else sinks[index][:, a:b]
                parts.append(self._queries_and_keys(index, layer, h[:, a:b], start + a, context, cos[a:b], sin[a:b],
                                                    sink_keys, sink_rope[0][a:b], sink_rope[1][a:b]))
            queries = _Queries(*(torch.cat([getattr(q, n) for q in parts], dim=2) for n in ("q_int", "step", "sink_keys")))
            if t == 1:
                attended = self._decode_attention(index, layer, queries, start, context)
            else:
                attended = self._block_attention(index, layer, queries, start, t, context)
            for a, b in blocks:
                rows = h[:, a:b].reshape(-1, d)
                if self.compiled:
                    rows = self._compiled_rows(index, layer, rows, attended[:, a:b].reshape(rows.shape[0], -1))
                else:
                    rows = rows + self._linear(layer.out, attended[:, a:b].reshape(rows.shape[0], -1))
                    rows = rows + self._mlp(layer, rows)
                h[:, a:b] = rows.reshape(batch, b - a, d)
        context.position = start + t
        context.filled += t - (1 if start == 0 else 0)
        at = torch.tensor([t - 1], device=self.device) if hidden_at is None else hidden_at.to(self.device)
        return h[:, at]

    def _step(self, inputs: torch.Tensor, context: Context, start: int) -> torch.Tensor:
        """`forward` of one new position of every sequence (decoding): the same arithmetic as the
        block path (_queries_and_keys, _block_attention), in as few torch calls as it allows, since
        per-call overhead, not bandwidth, bounds this step on a CPU. Returns [B, d]."""
        shape, s = self.shape, self.settings
        heads, kv, hd = shape.heads, shape.kv_heads, shape.head_dim
        group, window = heads // kv, context.window
        batch, _, d = inputs.shape
        context.make_room(1)
        h = inputs.reshape(batch, d).to(F32, copy=True)
        position = torch.tensor([start], device=self.device)
        cos, sin = self._rope_at(position)
        sink_cos, sink_sin = self._rope_at((position - window).clamp_(min=0))
        sinks = self._rotated_sinks(context, sink_cos, sink_sin).transpose(2, 3)  # [layers, B, kv, 1, hd]
        slot = start - context.first
        window_slots = slice(max(1, start - window + 1) - context.first, slot + 1)
        if context.layout == "int16" and self.compiled:
            return self._compiled_step(h, context, start, cos[0], sin[0], sinks, slot, window_slots)
        cos, sin = cos.view(1, 1, -1), sin.view(1, 1, -1)
        for index, layer in enumerate(self.layers):
            qkv = self._project(layer.qkv, h)
            rotated = _rope_heads(qkv[:, :(heads + kv) * hd].view(batch, heads + kv, hd), cos, sin)
            context.keys[index, :, :, slot] = quantize_with(rotated[:, heads:], self._key_inverse[index], s.key_bits)
            context.store_values(index, slot, quantize_with(qkv[:, (heads + kv) * hd:].view(batch, kv, hd),
                                                            self._value_inverse[index], s.value_bits)[:, :, None])
            q_int, q_scale = quantize_rows(rotated[:, :heads], s.query_bits)
            q_int = q_int.view(batch, kv, group, hd)
            step = (q_scale * self._head_step[index]).view(batch, kv, group, 1)
            if context.layout == "int16":
                numerator, total = self._step_attention_kernel(q_int, step, sinks[index], context, index, window_slots)
            else:
                scores = (q_int @ context.keys[index, :, :, window_slots].transpose(-1, -2)).mul_(step)  # exact
                sink = (q_int * sinks[index]).sum(dim=-1, keepdim=True).mul_(step)
                # the sink and the window looked up together (the block path does the same per element)
                both = self._weights_of(torch.cat([sink, scores], dim=-1))
                sink_weight, weights = both[..., :1], both[..., 1:]
                total = weights.sum(dim=-1, keepdim=True, dtype=F64) + sink_weight.to(F64)  # exact
                numerator = weights.to(F64) @ context.values[index, :, :, window_slots] \
                    + sink_weight.to(F64) * context.sink_values[index][:, :, None, :]
            out = (numerator / total).to(F32).mul_(layer.value_scale[None, :, None, :])
            h = h + self._linear(layer.out, out.view(batch, heads * hd))
            h = h + self._mlp(layer, h)
        context.position = start + 1
        context.filled += 1
        return h

    def _compiled_step(self, h, context: Context, start: int, cos, sin, sinks, slot: int, window_slots: slice):
        """_step's layers as the compiled kernels of kernels.py, all from one call (step_layers):
        the same operations in the same order as the torch path's seventy-odd calls a layer. The
        weight products go through small_product at any batch: a step reads each weight once, and
        there its vector loops beat torch._int_mm (docs/benchmarks.md §2)."""
        batch = h.shape[0]
        cos, sin = (np.ascontiguousarray(np.broadcast_to(x.numpy(), (batch, x.shape[-1]))) for x in (cos, sin))
        streams, slots = np.arange(batch), np.full(batch, slot)
        sink_keys = sinks[:, :, :, 0].to(torch.int16).numpy()  # [layers, B, kv, hd]
        sink_values = context.sink_values.to(torch.int32).numpy()
        rows = h.numpy()  # updated in place, layer by layer
        kernels.step_layers(rows, self._step_arrays, cos, sin, context.keys.numpy(), context.values.numpy(), streams,
                            slots, sink_keys, sink_values, window_slots.start, window_slots.stop - window_slots.start)
        context.position = start + 1
        context.filled += 1
        return h

    def _compiled_rows(self, index: int, layer: _Layer, rows: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """forward's `rows + _linear(out, attended)`, then `+ _mlp`, for a block of rows [m, d], in
        kernels.py's loops around the integer GEMMs (the same operations as _compiled_step's)."""
        h = rows.numpy().copy()  # a contiguous copy, updated in place
        integers, scales = kernels.quantize_rows(np.ascontiguousarray(attended.numpy()), self.settings.activation_bits)
        self._compiled_out_and_mlp(index, layer, h, integers, scales)
        return torch.from_numpy(h)

    def _compiled_out_and_mlp(self, index: int, layer: _Layer, h: np.ndarray, integers: np.ndarray,
                              scales: np.ndarray) -> None:
        """h += the output projection of attention's quantized rows (int16 `integers`, row
        `scales`), then h += the MLP of h: in place, rows [m, d] float32."""
        s, arrays = self.settings, self._layer_arrays[index]
        bits, inverse_d, eps = s.activation_bits, np.float32(self._inverse_d), np.float32(self.shape.eps)
        kernels.add_product(h, *self._product(integers, layer.out), arrays.out_scale, scales)
        integers, factors = kernels.normalize_rows(h, bits, inverse_d, eps)
        integers, scales = kernels.gated_outputs(
            *self._product(integers, layer.gate_up), arrays.gate_up_scale, factors,
            self.shape.ffn, self._sigmoid_array, s.silu_grid_bits, bits)
        kernels.add_product(h, *self._product(integers, layer.down), arrays.down_scale, scales)

    def _product(self, integers: np.ndarray, weight: IntegerWeight) -> tuple[np.ndarray, int]:
        """The exact integer product of activation rows [m, n_in] (int16) and a weight, with the
        form kernels.py reads it in: for up to SMALL_PRODUCT_ROWS rows from kernels.small_product
        (the weights read once, in vector loops), for more from torch._int_mm (oneDNN, fastest at
        a compression block's many rows) on int8 slices of the rows."""
        if integers.shape[0] <= SMALL_PRODUCT_ROWS:
            return kernels.small_product(integers, weight.slices_numpy, weight.n_out, self._chunk), kernels.EXACT
        return _int8_product(kernels.split_rows(integers), weight), \
            kernels.TWO_SLICES if weight.bits > 8 else kernels.ONE_SLICE

    def _step_attention_kernel(self, q_int, step, sink_keys, context: Context, index: int, slots: slice):
        """The torch path's numerator [B, kv, G, hd] and total [B, kv, G, 1] (float64 integers) from
        the compiled kernel: the same integers (memzip/exact/kernels.py says why)."""
        shifts = exponent(step[..., 0]) - 1  # step = 2^shift, a power of two
        numerator, total = kernels.step_attention(
            q_int.to(torch.int16).numpy(), shifts.to(torch.int32).numpy(),
            sink_keys[:, :, 0].to(torch.int16).numpy(), context.sink_values[index].to(torch.int32).numpy(),
            context.keys[index].numpy(), context.values[index].numpy(), slots.start, slots.stop - slots.start,
            self._kernel_table)
        return torch.from_numpy(numerator).to(F64), torch.from_numpy(total).to(F64)[..., None]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final RMSNorm and output embedding: [n, d] hidden rows -> [n, V] float32 logits."""
        if self.compiled and hidden.device.type == "cpu":
            return torch.from_numpy(self._compiled_project(self.head, self._head_scale, hidden))
        return self._project(self.head, hidden)

    def _compiled_project(self, weight: IntegerWeight, weight_scale: np.ndarray, h: torch.Tensor) -> np.ndarray:
        """_project in kernels.py's loops; a wide two-slice weight (the output head) in tiles of
        columns as IntegerWeight.matmul computes them, each tile's int32 products recombined and
        scaled while they are in the cache. Returns [m, n_out] float32."""
        bits = self.settings.activation_bits
        integers, factors = kernels.normalize_rows(np.ascontiguousarray(h.numpy()), bits,
                                                   np.float32(self._inverse_d), np.float32(self.shape.eps))
        m, n = factors.shape[0], weight.n_out
        if not (weight.bits > 8 and m >= TILED_FROM_ROWS and n >= 4 * TILE_OUTPUTS):
            return kernels.scaled_outputs(*self._product(integers, weight), weight_scale, factors)
        a, out = torch.from_numpy(kernels.split_rows(integers)), np.empty((m, n), np.float32)
        for first in range(0, n, TILE_OUTPUTS):
            last = min(n, first + TILE_OUTPUTS)
            by_high = torch._int_mm(a, weight.slices[first:last].t()).numpy()
            by_low = torch._int_mm(a, weight.slices[n + first:n + last].t()).numpy()
            kernels.scaled_tile(by_high, by_low, weight_scale, factors, out, first)
        return out

    # --- the steps --------------------------------------------------------------------------------

    def _project(self, weight: IntegerWeight, h: torch.Tensor) -> torch.Tensor:
        """RMSNorm then a weight (the norm's own weight is folded into it): (x @ W) * scales * r,
        r = 1 / sqrt(mean(h^2) + eps) from the exact sum of the integers' squares."""
        x, scale = quantize_rows(h, self.settings.activation_bits)
        whole = x.to(torch.int32)
        squares = (whole * whole).sum(dim=-1, keepdim=True, dtype=torch.int64)  # exact: below 2^63
        variance = squares.to(F32) * (scale * scale * self._inverse_d)
        inverse_rms = 1.0 / correctly_rounded_sqrt(variance + self.shape.eps)
        return weight.matmul(whole) * weight.scale * (scale * inverse_rms)

    def _linear(self, weight: IntegerWeight, a: torch.Tensor) -> torch.Tensor:
        x, scale = quantize_rows(a, self.settings.activation_bits)
        return weight.matmul(x.to(torch.int32)) * weight.scale * scale

    def _rotated_sinks(self, context: Context, cos, sin) -> torch.Tensor:
        """The sinks' integer keys, rotated to where each position sees them: [layers, B, t, kv, hd]."""
        raw = context.sink_keys[:, :, None]  # [layers, B, 1, kv, hd]
        c, s = cos[None, None, :, None, :], sin[None, None, :, None, :]
        half = raw.shape[-1] // 2
        x1, x2 = raw[..., :half], raw[..., half:]
        rotated = torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)  # _rope, over every layer
        return quantize_with(rotated, self._key_inverses, self.settings.key_bits)

    def _queries_and_keys(self, index, layer, h, start, context, cos, sin, sink_keys, sink_cos, sink_sin) -> _Queries:
        """Project a block of positions [B, t, d] from `start` on: store its integer keys and values
        in the context (position 0's go to the sink) and return its integer queries."""
        shape, s = self.shape, self.settings
        heads, kv, hd = shape.heads, shape.kv_heads, shape.head_dim
        group = heads // kv
        batch, t, d = h.shape
        if start > 0 and self.compiled and context.layout == "int16":  # position 0 is the torch path's
            if sink_keys is None:
                sink_keys = self._rotated_sink_keys(index, context, sink_cos, sink_sin)
            return self._compiled_queries_and_keys(index, layer, h, start, context, cos, sin, sink_keys)
        if self.compiled:
            qkv = torch.from_numpy(self._compiled_project(layer.qkv, self._layer_arrays[index].qkv_scale,
                                                          h.reshape(-1, d)))
        else:
            qkv = self._project(layer.qkv, h.reshape(-1, d))
        q = _rope(qkv[:, :heads * hd].reshape(batch, t, heads, hd), cos, sin)
        raw_k = qkv[:, heads * hd:(heads + kv) * hd].reshape(batch, t, kv, hd)
        v = quantize_with(qkv[:, (heads + kv) * hd:].reshape(batch, t, kv, hd), self._value_inverse[index],
                          s.value_bits)
        k = quantize_with(_rope(raw_k, cos, sin), self._key_inverse[index], s.key_bits)
        if start == 0:  # the sink
            context.sink_keys[index] = raw_k[:, 0]
            context.sink_values[index] = v[:, 0]
            k, v = k[:, 1:], v[:, 1:]
        if sink_keys is None:
            sink_keys = self._rotated_sink_keys(index, context, sink_cos, sink_sin)
        first = max(start, 1) - context.first
        context.keys[index, :, :, first:first + k.shape[1]] = k.transpose(1, 2)
        context.store_values(index, first, v.transpose(1, 2))
        q_int, q_scale = quantize_rows(q, s.query_bits)
        step = q_scale * self._score_step[index]  # powers of two
        return _Queries(*(_per_key_head(x, kv, group) for x in (q_int, step, sink_keys)))

    def _rotated_sink_keys(self, index, context, sink_cos, sink_sin) -> torch.Tensor:
        """The sink's integer keys, its raw key rotated to the angles the block's rows see it at."""
        return quantize_with(_rope(context.sink_keys[index][:, None], sink_cos, sink_sin), self._key_inverse[index],
                             self.settings.key_bits)

    def _compiled_queries_and_keys(self, index, layer, h, start, context, cos, sin, sink_keys) -> _Queries:
        """_queries_and_keys of a block after the first position, in kernels.py's loops: the same
        keys and values into the int16 context and the same integer queries and steps, without the
        torch path's passes over [B, t, heads, hd] tensors."""
        s, shape = self.settings, self.shape
        heads, kv, hd = shape.heads, shape.kv_heads, shape.head_dim
        group = heads // kv
        batch, t, d = h.shape
        arrays = self._layer_arrays[index]
        integers, factors = kernels.normalize_rows(np.ascontiguousarray(h.reshape(-1, d).numpy()), s.activation_bits,
                                                   np.float32(self._inverse_d), np.float32(shape.eps))
        angles = [np.ascontiguousarray(np.broadcast_to(x.numpy(), (batch,) + tuple(x.shape)).reshape(batch * t, -1))
                  for x in (cos, sin)]
        streams = np.repeat(np.arange(batch), t)  # row b * t + p: stream b, position start + p
        slots = np.tile(np.arange(start, start + t) - context.first, batch)
        queries, shifts = kernels.qkv_outputs(
            *self._product(integers, layer.qkv), arrays.qkv_scale, factors, heads, *angles, arrays.key_inverse,
            np.float32(2 ** (s.key_bits - 1) - 1), arrays.value_inverse, np.float32(2 ** (s.value_bits - 1) - 1),
            arrays.head_step, s.query_bits, context.keys[index].numpy(), context.values[index].numpy(), streams, slots)
        q_int = torch.from_numpy(queries.astype(np.float32)).reshape(batch, t, heads, hd)
        step = pow2(torch.from_numpy(shifts).reshape(batch, t, heads, 1), F32)
        return _Queries(*(_per_key_head(x, kv, group) for x in (q_int, step, sink_keys)))

    def _sink_scores(self, queries: _Queries, rows: slice) -> torch.Tensor:
        """q_int . sink_key per row, in buckets: an integer sum below 2^24 (exact in float32), times
        a power of two."""
        products = queries.q_int[:, :, rows] * queries.sink_keys[:, :, rows]
        return products.sum(dim=-1, keepdim=True) * queries.step[:, :, rows]

    def _weights_of(self, scores: torch.Tensor) -> torch.Tensor:
        """_weights of scores whose first column is the sink's, in one lookup (overwrites them)."""
        return self._lookup(torch.sub(scores.amax(dim=-1, keepdim=True), scores, out=scores))

    def _weights(self, scores: torch.Tensor, sink: torch.Tensor):
        """Unnormalized softmax weights as integers, 2^P exp(-difference), looked up by bucket:
        of the window (float32 scores [.., L], overwritten) and of the sink ([.., 1]). Float32
        integers (below 2^24)."""
        peak = torch.maximum(scores.amax(dim=-1, keepdim=True), sink)
        return self._lookup(torch.sub(peak, scores, out=scores)), self._lookup(peak - sink)

    def _lookup(self, difference: torch.Tensor) -> torch.Tensor:
        """The attention table at the buckets of `difference` (>= 0, float32; clamped in place to
        the table's last entry, truncation = floor here)."""
        last = self._attention_table.numel() - 1
        bucket = difference.clamp_(max=last).to(torch.int32)
        return self._attention_table.index_select(0, bucket.view(-1)).view(difference.shape)

    def _block_attention(self, index, layer, queries: _Queries, start, t, context: Context) -> torch.Tensor:
        """Attention of a block of new positions over the sink and their windows: [B, t, heads * hd].
        q @ k is exact in float32 (8-bit queries, 12-bit keys, 64 terms stay below 2^24); p @ v
        (20-bit weights) in float64, or where kernels.py runs in int8 slices (`block_outputs`)."""
        shape = self.shape
        heads, kv, hd = shape.heads, shape.kv_heads, shape.head_dim
        group, window = heads // kv, context.window
        batch = queries.q_int.shape[0]
        lo_all = max(1, start - window + 1)
        base = slice(lo_all - context.first, start + t - context.first)
        # the keys any of these positions sees, [B, kv, hd, n] (a transposed view: BLAS reads
        # q @ k^T fastest so)
        keys_t = context.keys_f32(index, base).transpose(-1, -2)
        sink_value = context.sink_values[index][:, :, None, :].to(F64)
        compiled = self.compiled and context.layout == "int16"  # kernels.py reads int16 values
        if compiled:
            values = kernels.value_slices(context.values[index].numpy(), base.start, base.stop - base.start)
            sink_values = context.sink_values[index].to(torch.int64).numpy()
            value_scale = self._layer_arrays[index].value_scale
        else:
            values = context.values_f64(index, base)
        out = torch.empty(batch, kv, t * group, hd, dtype=F32, device=self.device)
        for first in range(0, t, self.query_block):
            last = min(t, first + self.query_block)
            rows = slice(first * group, last * group)
            sink = self._sink_scores(queries, rows)
            lo, hi = max(1, start + first - window + 1), start + last
            if hi <= lo:  # position 0 alone sees only itself
                out[:, :, rows] = sink_value.expand(-1, -1, (last - first) * group, -1).to(F32)
                if compiled:
                    out[:, :, rows] *= layer.value_scale[None, :, None, :]
                continue
            part = slice(lo - lo_all, hi - lo_all)
            scores = queries.q_int[:, :, rows] @ keys_t[:, :, :, part]  # exact
            if compiled:  # the same weights in one pass, p @ v in int8 slices (kernels.py)
                weights, sink_weight, total = kernels.block_weights(
                    scores.numpy(), queries.step[:, :, rows, 0].contiguous().numpy(), sink[..., 0].contiguous().numpy(),
                    start + first, group, lo, window, self._kernel_table)
                n, keys = weights.shape[3], part.stop - part.start
                products = np.empty((batch, kv, kernels.WEIGHT_SLICES * n, 2 * hd), np.int32)
                for b in range(batch):
                    for h in range(kv):
                        value_rows = np.ascontiguousarray(values[b, h, :, :, part]).reshape(2 * hd, keys)
                        products[b, h] = _int8_matmul(weights[b, h].reshape(-1, keys), value_rows)
                out[:, :, rows] = torch.from_numpy(kernels.block_outputs(products, sink_weight, sink_values, total,
                                                                         value_scale))
                continue
            scores.mul_(queries.step[:, :, rows])
            self._mask_outside_windows(scores, start + first, last - first, group, lo, window)
            weights, sink_weight = self._weights(scores, sink)
            # exact: integers below 2^53
            weights, sink_weight = weights.to(F64), sink_weight.to(F64)
            total = weights.sum(dim=-1, keepdim=True, dtype=F64) + sink_weight
            numerator = weights @ values[:, :, part] + sink_weight * sink_value
            out[:, :, rows] = (numerator / total).to(F32)
        if not compiled:
            out = out * layer.value_scale[None, :, None, :]
        return out.reshape(batch, kv, t, group, hd).permute(0, 2, 1, 3, 4).reshape(batch, t, heads * hd)

    def _mask_outside_windows(self, scores, first_position: int, positions: int, group: int, lo: int,
                              window: int) -> None:
        """Mask keys after each query (among the last `positions` columns) and before its window
        (among the first `positions` columns): a window slides by one key per position."""
        if positions == 1:
            return
        query = torch.arange(first_position, first_position + positions, device=self.device)
        query = query.repeat_interleave(group)[:, None]
        hi, width = first_position + positions, min(positions, scores.shape[-1])
        tail = torch.arange(hi - width, hi, device=self.device)[None, :]
        scores[..., -width:].masked_fill_(tail > query, -2.0 ** 100)
        head = torch.arange(lo, lo + width, device=self.device)[None, :]
        scores[..., :width].masked_fill_(head <= query - window, -2.0 ** 100)

    def _decode_attention(self, index, layer, queries: _Queries, start, context: Context) -> torch.Tensor:
        """Attention of one new position per sequence (the window read as stored): [B, 1, heads * hd]."""
        shape = self.shape
        heads, kv, hd = shape.heads, shape.kv_heads, shape.head_dim
        group, window = heads // kv, context.window
        batch = queries.q_int.shape[0]
        sink = self._sink_scores(queries, slice(None))
        sink_value = context.sink_values[index][:, :, None, :].to(F64)
        lo, hi = max(1, start - window + 1), start + 1
        if hi <= lo:
            out = sink_value.expand(-1, -1, group, -1).to(F32)
        else:
            slots = slice(lo - context.first, hi - context.first)
            scores = (queries.q_int @ context.keys_f32(index, slots).transpose(-1, -2)).mul_(queries.step)  # exact
            weights, sink_weight = self._weights(scores, sink)
            total = weights.sum(dim=-1, keepdim=True, dtype=F64) + sink_weight.to(F64)
            numerator = weights.to(F64) @ context.values_f64(index, slots) + sink_weight.to(F64) * sink_value
            out = (numerator / total).to(F32)
        out = out * layer.value_scale[None, :, None, :]
        return out.reshape(batch, kv, 1, group, hd).permute(0, 2, 1, 3, 4).reshape(batch, 1, heads * hd)

    def _mlp(self, layer, h) -> torch.Tensor:
        gate_up = self._project(layer.gate_up, h)
        gate, up = gate_up[:, :self.shape.ffn], gate_up[:, self.shape.ffn:]
        return self._linear(layer.down, self._silu(gate) * up)

    def _silu(self, x: torch.Tensor) -> torch.Tensor:
        s = self.settings
        middle = s.silu_limit << s.silu_grid_bits
        index = (torch.round(x * 2.0 ** s.silu_grid_bits) + middle).clamp_(0, 2 * middle)
        return x * self._sigmoid.index_select(0, index.to(torch.int64).view(-1)).view(x.shape)

    def _rope_at(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 cos and sin [n, hd/2] of positions * frequencies, for any position below 2^32:
        from a fine table (p mod 4096) and a coarse one (p // 4096), joined by the angle-addition
        formula in float64 (three rounded operations each), then rounded to float32."""
        fine_cos, fine_sin = self._rope_fine
        coarse = int(positions.max()) >> tables.ROPE_FINE_BITS if positions.numel() else 0
        if self._rope_coarse is None or self._rope_coarse[0].shape[0] <= coarse:
            shape = self.shape
            size = max(64, 2 * (coarse + 1))
            cos, sin = tables.rope_coarse_tables(shape.head_dim, shape.rope_theta, size, shape.rope_scaling)
            self._rope_coarse = (torch.tensor(cos, device=self.device), torch.tensor(sin, device=self.device))
        coarse_cos, coarse_sin = self._rope_coarse
        low = positions & ((1 << tables.ROPE_FINE_BITS) - 1)
        high = positions >> tables.ROPE_FINE_BITS
        c1, s1, c2, s2 = fine_cos[low], fine_sin[low], coarse_cos[high], coarse_sin[high]
        return (c2 * c1 - s2 * s1).to(F32), (s2 * c1 + c2 * s1).to(F32)


def _per_key_head(x: torch.Tensor, kv: int, group: int) -> torch.Tensor:
    """[B, t, heads or kv, n] -> [B, kv, t * group, n]: each key head's query rows, position by
    position (a tensor of kv heads, such as the sink's keys, repeated over the group)."""
    batch, t = x.shape[:2]
    if x.shape[2] == kv:
        x = x[:, :, :, None].expand(-1, -1, -1, group, -1)
    return x.reshape(batch, t, kv, group, -1).permute(0, 2, 1, 3, 4).reshape(batch, kv, t * group, -1)


# Up to this many rows of activations, the products of compression's blocks and of the output
# head go through kernels.small_product rather than torch._int_mm, which is faster for the many
# rows of a block whose weights stay in the cache across them (a decoding step's layers always
# use small_product: kernels.step_layers).
SMALL_PRODUCT_ROWS = 32


def _int8_matmul(a: np.ndarray, b_rows: np.ndarray) -> np.ndarray:
    """a [m, k] @ b_rows [n, k]^T of int8 matrices, exact in int32: torch._int_mm, except for a
    short k, where numpy's int32 product costs nothing and torch 2.13's oneDNN call has been seen
    to return wrong sums (k = 1, on the development CPUs; tests/test_exact.py)."""
    if a.shape[1] < 8:
        return (a.astype(np.int32) @ b_rows.astype(np.int32).T).astype(np.int32)
    return torch._int_mm(torch.from_numpy(a), torch.from_numpy(b_rows).t()).numpy()


def _int8_product(split: np.ndarray, weight: IntegerWeight) -> np.ndarray:
    """torch._int_mm of int8 activation slices [2m, n_in] and the weight's int8 slices: the int32
    partial products [2m, n_out or 2 n_out] that the compiled kernels recombine."""
    return torch._int_mm(torch.from_numpy(split), weight.slices_t).numpy()


def quantize_row(matrix: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights as integers in +-(2^(bits-1) - 1) with a power-of-two scale per output row (an
    8-bit row then fits int8: the rare 128 that rounding reaches is clamped)."""
    q, scale = quantize(matrix, bits, dim=1)
    limit = float(2 ** (bits - 1) - 1)
    return q.clamp_(-limit, limit), scale


def _rope_heads(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """_rope of one position: x [B, heads, hd]; cos, sin broadcast over it ([1, 1, hd/2])."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (j, j + head_dim/2) by position * frequency_j (transformers' rotate_half
    convention). x: [B, t, heads, hd]; cos, sin: [t, hd/2]."""
    half = x.shape[-1] // 2
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)
