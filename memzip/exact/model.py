"""An exact Llama: logits that are a function of (weights, tokens) alone, bit for bit, anywhere.

This module is the reference: the whole computation in torch, one correctly rounded operation
per call, on any device. docs/format.md points here as the definition of the `exact-llama-1`
engine; memzip/exact/compiled.py computes the same bits faster on CPUs, and the tests compare
the two through `forward` and `logits`.

The architecture is transformers' LlamaForCausalLM (SmolLM2, Llama 3.x): RMSNorm, attention with
RoPE and grouped key/value heads, a SiLU-gated MLP, tied or separate output embeddings. What
changes is how each step is computed (memzip/exact/integer.py says why each step is exact):

    h = embedding rows (or [mem] vectors)                    float32, the residual stream
    per layer:
      x, s = quantize(h)                 per-token integers with a power-of-two scale
      r = 1 / sqrt(sum(x^2) s^2 / d + eps)   an exact integer sum, then rounded float32 steps
      q, k, v = (x @ Wqkv) * scales * r  exact integer product (RMSNorm's weight folded into Wqkv)
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
bits. Integer products go through whichever exact method is fastest here for their shape
(memzip/exact/products.py): they all give the same integers.

The bit widths (`ExactSettings`) were chosen by measurement: the exact model's cross-entropy
stays within 0.1% of the float32 model's (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from memzip.exact import products, tables
from memzip.exact.integer import check_exact, correctly_rounded_sqrt, quantize_rows, quantize_with
from memzip.exact.products import Choice, IntegerWeight
from memzip.exact.weights import ENGINE, ExactSettings, ExactWeights, LayerWeights, Shape  # noqa: F401 (re-exported)

F32, F64 = torch.float32, torch.float64


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

    - "float" (the reference, any device): keys in float32 and values in float64, as torch's
      GEMMs read them;
    - "int16" (the compiled CPU path): keys [.., slot, hd] and values transposed [.., hd, slot],
      both int16 (2 bytes each), which a decoding step's compiled attention reads once a step: a
      step of many streams is bound by that reading.
    """

    LAYOUTS = ("float", "int16")

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

    def store(self, layer: int, first: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Put integer keys and values [B, kv, n, hd] (held in a float type) in slots first..first+n-1."""
        n = keys.shape[2]
        self.keys[layer, :, :, first:first + n] = keys
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

    def advance(self, positions: int) -> None:
        """Count `positions` new positions as stored (the first of a sequence is the sink)."""
        self.filled += positions - (1 if self.position == 0 else 0)
        self.position += positions

    def keep_rows(self, rows: list[int]) -> None:
        """Drop the sequences not in `rows` (finished streams leave the batch)."""
        index = torch.tensor(rows, device=self.keys.device)
        for name in ("keys", "values", "sink_keys", "sink_values"):
            setattr(self, name, getattr(self, name).index_select(1, index))


class Queries:
    """A block's integer queries, per key head: rows (position, query head of the group)."""

    def __init__(self, q_int: torch.Tensor, step: torch.Tensor, sink_keys: torch.Tensor):
        self.q_int = q_int  # [B, kv, rows, hd] float32 integers
        self.step = step  # [B, kv, rows, 1]: a score q_int . k_int times step is in table buckets
        self.sink_keys = sink_keys  # [B, kv, rows, hd]: the sink's integer key as each row sees it

    @classmethod
    def joined(cls, parts: list["Queries"]) -> "Queries":
        return cls(*(torch.cat([getattr(q, n) for q in parts], dim=2) for n in ("q_int", "step", "sink_keys")))


@dataclass
class QueryBlock:
    """Positions first..first+positions-1 of a block of new positions, as attention takes them."""

    rows: slice  # their query rows (position, query head of the group)
    first: int
    positions: int
    lo: int  # the first key position any of them sees after the sink
    keys: slice | None  # those keys among the block's context slots; None: position 0, which sees only the sink


class ExactLlama:
    """The exact forward of a Llama model, in torch (the reference). Build it with
    memzip.exact.build_engine, which picks memzip/exact/compiled.py's faster path where it runs."""

    query_block = 64  # positions per block of attention scores: bounds the [rows, keys] arrays
    layout = "float"  # how contexts hold keys and values (`Context`)

    def __init__(self, weights: ExactWeights, device, choice: Choice):
        shape, s = weights.shape, weights.settings
        self.shape, self.settings, self.device, self.choice = shape, s, torch.device(device), choice
        self.embedding = weights.embedding.to(self.device)  # [vocab, d] float32
        self.layers: list[LayerWeights] = []
        for layer in weights.layers:
            self.layers.append(LayerWeights(*(getattr(layer, n).to(self.device) for n in LayerWeights.NAMES),
                                            layer.key_scale.to(self.device), layer.value_scale.to(self.device)))
        self.head: IntegerWeight = weights.head.to(self.device)
        # Exactness of every product, checked once for these shapes (memzip/exact/integer.py).
        check_exact(s.activation_bits, max(s.weight_bits, s.narrow_weight_bits),
                    max(shape.d_model, shape.ffn, shape.heads * shape.head_dim), "weight GEMMs")
        check_exact(s.activation_bits, s.activation_bits, shape.d_model, "RMSNorm's sum of squares", torch.int64)
        check_exact(s.query_bits, s.key_bits, shape.head_dim, "attention scores", F32)
        self._attention_table = torch.tensor(tables.exp_table(s.attention_weight_bits, s.attention_grid_bits),
                                             dtype=F32, device=self.device)  # integers below 2^24: exact
        self._sigmoid = torch.tensor(tables.sigmoid_table(s.silu_grid_bits, s.silu_limit), dtype=F32,
                                     device=self.device)
        cos, sin = tables.rope_tables(shape.head_dim, shape.rope_theta, 1 << tables.ROPE_FINE_BITS, shape.rope_scaling)
        self._rope_fine = (torch.tensor(cos, device=self.device), torch.tensor(sin, device=self.device))  # float64
        self._rope_coarse: tuple[torch.Tensor, torch.Tensor] | None = None
        # A score q_int . k_int in table buckets: times q's scale and this power of two per query
        # head (the 1/sqrt(head_dim) of attention is folded into the query weights).
        self._score_step = [torch.repeat_interleave(layer.key_scale[:, 0], shape.heads // shape.kv_heads)
                            .reshape(1, 1, shape.heads, 1) * 2.0 ** s.attention_grid_bits for layer in self.layers]
        self._key_inverse = [1.0 / layer.key_scale for layer in self.layers]  # powers of two: exact
        self._value_inverse = [1.0 / layer.value_scale for layer in self.layers]
        self._inverse_d = 1.0 / shape.d_model  # a float, rounded once

    # --- the public forward ---------------------------------------------------------------------

    def new_context(self, batch: int, window: int, capacity: int | None = None) -> Context:
        """A context for `batch` sequences seeing the sink and the last `window` positions;
        `capacity` (default window + 64) bounds how many positions one forward may add."""
        s = self.settings
        # p @ v sums up to window + 1 products of a weight (<= 2^P) and a value: exact below 2^53
        check_exact(s.attention_weight_bits + 1, s.value_bits, window + 1, f"attention over {window} positions")
        return Context(self.shape, batch, window, capacity or window + 64, self.device, self.layout)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, t] token ids -> [B, t, d] float32 input rows."""
        return self.embedding[tokens.to(self.device)]

    def forward(self, inputs: torch.Tensor, context: Context, hidden_at: torch.Tensor | None = None) -> torch.Tensor:
        """Run `inputs` [B, t, d] (float32 rows) at the next t positions of `context`. Returns the
        final hidden rows [B, n, d] at `hidden_at` (indices into 0..t-1; default: the last), for
        `logits`."""
        batch, t, d = inputs.shape
        start = context.position
        context.make_room(t)
        h = inputs.to(F32, copy=True)  # [B, t, d]
        positions = torch.arange(start, start + t, device=self.device)
        angles = self._rope_at(positions), self._rope_at((positions - context.window).clamp_(min=0))
        for index, layer in enumerate(self.layers):
            queries = self._queries_and_keys(index, layer, h, start, context, angles)
            attended = self._attention(index, layer, queries, start, t, context)  # [B, t, heads * hd]
            h = self._out_and_mlp(index, layer, h, attended)
        context.advance(t)
        at = torch.tensor([t - 1], device=self.device) if hidden_at is None else hidden_at.to(self.device)
        return h[:, at]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final RMSNorm and output embedding: [n, d] hidden rows -> [n, V] float32 logits."""
        return self._project(self.head, "head", hidden)

    # --- a layer --------------------------------------------------------------------------------

    def _queries_and_keys(self, index: int, layer: LayerWeights, h: torch.Tensor, start: int, context: Context,
                          angles) -> Queries:
        """Project a block of positions [B, t, d] from `start` on: store its integer keys and values
        in the context (position 0's go to the sink) and return its integer queries."""
        shape, s = self.shape, self.settings
        heads, kv, hd = shape.heads, shape.kv_heads, shape.head_dim
        batch, t, d = h.shape
        (cos, sin), (sink_cos, sink_sin) = angles
        qkv = self._project(layer.qkv, "qkv", h.reshape(-1, d))
        q = _rope(qkv[:, :heads * hd].reshape(batch, t, heads, hd), cos, sin)
        raw_k = qkv[:, heads * hd:(heads + kv) * hd].reshape(batch, t, kv, hd)
        v = quantize_with(qkv[:, (heads + kv) * hd:].reshape(batch, t, kv, hd), self._value_inverse[index],
                          s.value_bits)
        k = quantize_with(_rope(raw_k, cos, sin), self._key_inverse[index], s.key_bits)
        if start == 0:  # the sink
            context.sink_keys[index] = raw_k[:, 0]
            context.sink_values[index] = v[:, 0]
            k, v = k[:, 1:], v[:, 1:]
        context.store(index, max(start, 1) - context.first, k.transpose(1, 2), v.transpose(1, 2))
        q_int, q_scale = quantize_rows(q, s.query_bits)
        step = q_scale * self._score_step[index]  # powers of two
        sink_keys = self._rotated_sink_keys(index, context, sink_cos, sink_sin)
        group = heads // kv
        return Queries(*(_per_key_head(x, kv, group) for x in (q_int, step, sink_keys)))

    def _rotated_sink_keys(self, index: int, context: Context, sink_cos, sink_sin) -> torch.Tensor:
        """The sink's integer keys [B, t, kv, hd], its raw key rotated to the angles each
        position sees it at."""
        return quantize_with(_rope(context.sink_keys[index][:, None], sink_cos, sink_sin), self._key_inverse[index],
                             self.settings.key_bits)

    def _attention(self, index: int, layer: LayerWeights, queries: Queries, start: int, t: int,
                   context: Context) -> torch.Tensor:
        """Attention of t new positions (a block, or one decoding step) over the sink and their
        windows: [B, t, heads * hd]. q @ k is exact in float32 (8-bit queries, 12-bit keys, a
        head_dim of terms stay below 2^24); p @ v (20-bit weights) in float64."""
        shape = self.shape
        heads, kv, hd = shape.heads, shape.kv_heads, shape.head_dim
        group = heads // kv
        batch = queries.q_int.shape[0]
        slots, blocks = self._query_blocks(start, t, group, context)
        keys_t = context.keys_f32(index, slots).transpose(-1, -2)  # [B, kv, hd, n]: BLAS reads q @ k^T fastest so
        values = context.values_f64(index, slots)  # [B, kv, n, hd]
        sink_value = context.sink_values[index][:, :, None, :].to(F64)
        out = torch.empty(batch, kv, t * group, hd, dtype=F32, device=self.device)
        for block in blocks:
            rows = block.rows
            sink = self._sink_scores(queries, rows)
            if block.keys is None:  # position 0 alone sees only itself
                out[:, :, rows] = sink_value.expand(-1, -1, rows.stop - rows.start, -1).to(F32)
                continue
            scores = (queries.q_int[:, :, rows] @ keys_t[:, :, :, block.keys]).mul_(queries.step[:, :, rows])  # exact
            _mask_outside_windows(scores, start + block.first, block.positions, group, block.lo, context.window)
            weights, sink_weight = self._weights(scores, sink)
            weights, sink_weight = weights.to(F64), sink_weight.to(F64)  # exact: integers below 2^53
            total = weights.sum(dim=-1, keepdim=True, dtype=F64) + sink_weight
            numerator = weights @ values[:, :, block.keys] + sink_weight * sink_value
            out[:, :, rows] = (numerator / total).to(F32)
        out = out * layer.value_scale[None, :, None, :]
        return out.reshape(batch, kv, t, group, hd).permute(0, 2, 1, 3, 4).reshape(batch, t, heads * hd)

    def _query_blocks(self, start: int, t: int, group: int, context: Context) -> tuple[slice, list["QueryBlock"]]:
        """The context slots the t positions from `start` see (besides the sink), and their query
        blocks of at most `query_block` positions with the keys each block sees among those slots."""
        window = context.window
        lo_all = max(1, start - window + 1)
        blocks = []
        for first in range(0, t, self.query_block):
            last = min(t, first + self.query_block)
            lo, hi = max(1, start + first - window + 1), start + last
            keys = slice(lo - lo_all, hi - lo_all) if hi > lo else None
            blocks.append(QueryBlock(slice(first * group, last * group), first, last - first, lo, keys))
        return slice(lo_all - context.first, start + t - context.first), blocks

    def _sink_scores(self, queries: Queries, rows: slice) -> torch.Tensor:
        """q_int . sink_key per row, in buckets: an integer sum below 2^24 (exact in float32), times
        a power of two."""
        products_ = queries.q_int[:, :, rows] * queries.sink_keys[:, :, rows]
        return products_.sum(dim=-1, keepdim=True) * queries.step[:, :, rows]

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

    def _out_and_mlp(self, index: int, layer: LayerWeights, h: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """h + attention's output projection, then + the MLP: [B, t, d]."""
        batch, t, d = h.shape
        rows = h.reshape(-1, d)
        rows = rows + self._linear(layer.out, "out", attended.reshape(rows.shape[0], -1))
        rows = rows + self._mlp(layer, rows)
        return rows.reshape(batch, t, d)

    def _mlp(self, layer: LayerWeights, h: torch.Tensor) -> torch.Tensor:
        gate_up = self._project(layer.gate_up, "gate_up", h)
        gate, up = gate_up[:, :self.shape.ffn], gate_up[:, self.shape.ffn:]
        return self._linear(layer.down, "down", self._silu(gate) * up)

    def _silu(self, x: torch.Tensor) -> torch.Tensor:
        s = self.settings
        middle = s.silu_limit << s.silu_grid_bits
        index = (torch.round(x * 2.0 ** s.silu_grid_bits) + middle).clamp_(0, 2 * middle)
        return x * self._sigmoid.index_select(0, index.to(torch.int64).view(-1)).view(x.shape)

    # --- products ---------------------------------------------------------------------------------

    def _project(self, weight: IntegerWeight, role: str, h: torch.Tensor) -> torch.Tensor:
        """RMSNorm then a weight (the norm's own weight is folded into it): (x @ W) * scales * r,
        r = 1 / sqrt(mean(h^2) + eps) from the exact sum of the integers' squares."""
        x, scale = quantize_rows(h, self.settings.activation_bits)
        whole = x.to(torch.int32)
        squares = (whole * whole).sum(dim=-1, keepdim=True, dtype=torch.int64)  # exact: below 2^63
        variance = squares.to(F32) * (scale * scale * self._inverse_d)
        inverse_rms = 1.0 / correctly_rounded_sqrt(variance + self.shape.eps)
        return self._matmul(weight, role, whole) * weight.scale * (scale * inverse_rms)

    def _linear(self, weight: IntegerWeight, role: str, a: torch.Tensor) -> torch.Tensor:
        x, scale = quantize_rows(a, self.settings.activation_bits)
        return self._matmul(weight, role, x.to(torch.int32)) * weight.scale * scale

    def _matmul(self, weight: IntegerWeight, role: str, whole: torch.Tensor) -> torch.Tensor:
        """float32 of the exact integer product, by the backend chosen for this weight."""
        return products.matmul(weight, whole, self.choice.roles[role])

    # --- RoPE -------------------------------------------------------------------------------------

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


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (j, j + head_dim/2) by position * frequency_j (transformers' rotate_half
    convention). x: [B, t, heads, hd]; cos, sin: [t, hd/2]."""
    half = x.shape[-1] // 2
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def _per_key_head(x: torch.Tensor, kv: int, group: int) -> torch.Tensor:
    """[B, t, heads or kv, n] -> [B, kv, t * group, n]: each key head's query rows, position by
    position (a tensor of kv heads, such as the sink's keys, repeated over the group)."""
    batch, t = x.shape[:2]
    if x.shape[2] == kv:
        x = x[:, :, :, None].expand(-1, -1, -1, group, -1)
    return x.reshape(batch, t, kv, group, -1).permute(0, 2, 1, 3, 4).reshape(batch, kv, t * group, -1)


def _mask_outside_windows(scores: torch.Tensor, first_position: int, positions: int, group: int, lo: int,
                          window: int) -> None:
    """Mask keys after each query (among the last `positions` columns) and before its window
    (among the first `positions` columns): a window slides by one key per position."""
    if positions == 1:
        return
    device = scores.device
    query = torch.arange(first_position, first_position + positions, device=device)
    query = query.repeat_interleave(group)[:, None]
    hi, width = first_position + positions, min(positions, scores.shape[-1])
    tail = torch.arange(hi - width, hi, device=device)[None, :]
    scores[..., -width:].masked_fill_(tail > query, -2.0 ** 100)
    head = torch.arange(lo, lo + width, device=device)[None, :]
    scores[..., :width].masked_fill_(head <= query - window, -2.0 ** 100)
