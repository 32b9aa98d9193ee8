"""The exact engine's weights: a Llama's float weights rounded once to integers, and kept.

Rounding is a function of the float weights alone (done on the CPU in float64 from the float32
weights, so it is the same on every machine). Its result, `ExactWeights`, is what the forward
(memzip/exact/model.py) reads: per layer the integer weights of the query/key/value projection
(RMSNorm's weight and 1/sqrt(head_dim) folded in), the attention output, the MLP's gate and up
projections (the second norm folded in) and its down projection, each with a scale per output
row (`ExactSettings.peak_scales`), and static power-of-two scales for the keys and values; then the output head
(the final norm folded in) and the float32 embedding rows.

Rounding a model takes seconds and needs transformers' float model in memory; `save` and `load`
keep the result as one safetensors file in the cache, so that a later run reads ~300 MB of
integers (for the embedded model) instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch

from memzip.exact import tables
from memzip.exact.integer import power_of_two_at_least, quantize, sqrt_float64_cpu
from memzip.exact.products import IntegerWeight

F32, F64 = torch.float32, torch.float64

# The name of this computation. Any change to what the engine computes (a table, a rounding,
# the order of two operations) must change it: archives name the engine that made them.
ENGINE = "exact-llama-1"

# Bumped when what `save` writes changes (a file of another version is rounded anew).
CACHE_VERSION = 1


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
    # A weight row's scale. 0 (formats 2-8): the power of two that puts the row's max |w| in the
    # top binade, so a row uses between half and all of its integers. 1 (format 9): the row's max
    # |w| / (2^(b-1) - 1) rounded to float32, every row using all of them. On the first 20 KB of
    # alice29.txt 1 takes the exact engine's cross-entropy from 0.28% above the float32 model's
    # (the same window) to 0.00%, at no cost: the scale was already one float32 multiply
    # (docs/scripts/exact_vs_float_ce.py, docs/benchmarks.md §1).
    peak_scales: int = 1

    def __post_init__(self):
        if self.peak_scales not in (0, 1):
            raise ValueError(f"peak_scales is 0 or 1, not {self.peak_scales!r}")

    def to_header(self) -> dict:
        """The settings as archives record them: archives before format 9 have no `peak_scales`,
        which means power-of-two scales (`of_header`)."""
        header = asdict(self)
        if not self.peak_scales:
            del header["peak_scales"]
        return header

    @classmethod
    def of_header(cls, exact: dict) -> "ExactSettings":
        return cls(**{"peak_scales": 0, **exact})


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

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Shape":
        fields = json.loads(text)
        fields["rope_scaling"] = tuple(tuple(item) for item in fields["rope_scaling"])
        return cls(**fields)

    def product_shapes(self, settings: ExactSettings) -> dict[str, tuple[int, int, int]]:
        """Each weight's (n_out, n_in, bits): the shapes memzip/exact/products.py measures."""
        q_out = (self.heads + 2 * self.kv_heads) * self.head_dim
        w, narrow = settings.weight_bits, settings.narrow_weight_bits
        return {"qkv": (q_out, self.d_model, w), "out": (self.d_model, self.heads * self.head_dim, narrow),
                "gate_up": (2 * self.ffn, self.d_model, narrow), "down": (self.d_model, self.ffn, w),
                "head": (self.vocab, self.d_model, w)}


def unsupported_reason(config, architecture: str) -> str | None:
    """Why the exact engine cannot run this model (a transformers config and its class name), or
    None if it can."""
    if architecture != "LlamaForCausalLM":
        return f"the exact engine covers Llama-architecture models, not {architecture}"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act} is not supported"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "biases in attention or MLP are not supported"
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    if rope.get("rope_type", "default") not in ("default", "llama3"):
        return f"rope_type {rope.get('rope_type')} is not supported"
    return None


@dataclass
class LayerWeights:
    qkv: IntegerWeight  # [q; k; v] rows, RMSNorm's weight and 1/sqrt(head_dim) (queries) folded in
    out: IntegerWeight
    gate_up: IntegerWeight  # [gate; up] rows, the second RMSNorm's weight folded in
    down: IntegerWeight
    key_scale: torch.Tensor  # [kv_heads, 1]: static power-of-two scale of the integer keys
    value_scale: torch.Tensor  # [kv_heads, head_dim]: of the integer values, per channel

    NAMES = ("qkv", "out", "gate_up", "down")


@dataclass
class ExactWeights:
    shape: Shape
    settings: ExactSettings
    embedding: torch.Tensor  # [vocab, d] float32: the input rows
    layers: list[LayerWeights]
    head: IntegerWeight  # the output embedding, the final RMSNorm's weight folded in
    # Each weight's int8 slices of every layer in one array [layers, rows, n_in], whose views the
    # layers' slices are: the compiled decoding step reads them so (kernels.StepArrays). Made
    # from the layers when not given.
    stacked_slices: dict[str, torch.Tensor] | None = None

    def __post_init__(self):
        if self.stacked_slices is not None:
            return
        self.stacked_slices = {}
        for name in LayerWeights.NAMES:
            weights = [getattr(layer, name) for layer in self.layers]
            stacked = torch.stack([w.slices for w in weights])
            for i, weight in enumerate(weights):
                weight.slices = stacked[i]
                weight._views()
            self.stacked_slices[name] = stacked

    @classmethod
    def from_transformers(cls, model, settings: ExactSettings | None = None) -> "ExactWeights":
        """Round a transformers Llama's float weights to the exact engine's integers."""
        reason = unsupported_reason(model.config, type(model).__name__)
        if reason:
            raise ValueError(reason)
        # float32 on the CPU, each tensor widened to float64 only while it is rounded: the whole
        # model in float64 at once would cost 8 bytes a weight of peak memory (1 GB for 135M)
        state = {k: v.detach().to("cpu", F32) for k, v in model.state_dict().items()}
        return cls.from_state_dict(Shape.of(model.config), state, settings or ExactSettings())

    @classmethod
    def from_state_dict(cls, shape: Shape, state: dict[str, torch.Tensor], settings: ExactSettings) -> "ExactWeights":
        def f64(name: str) -> torch.Tensor:
            return state[name].double()
        w, a, narrow = settings.weight_bits, settings.activation_bits, settings.narrow_weight_bits
        inverse_sqrt_head_dim = float(1 / tables.decimal_sqrt(shape.head_dim))

        def weight(matrix: torch.Tensor, bits: int = w) -> IntegerWeight:
            q, scale = weight_integers(matrix, bits, settings.peak_scales)
            return IntegerWeight.of(q, scale, bits, a)

        layers = []
        for i in range(shape.layers):
            p = f"model.layers.{i}."
            norm1 = f64(p + "input_layernorm.weight")[None, :]
            norm2 = f64(p + "post_attention_layernorm.weight")[None, :]
            # float32 x float32 is exact in float64: folding the norm weight adds no rounding;
            # 1/sqrt(head_dim) (rounded once, from its decimal value) joins the query rows
            query = f64(p + "self_attn.q_proj.weight") * inverse_sqrt_head_dim
            qkv = torch.cat([query] + [f64(p + f"self_attn.{n}_proj.weight") for n in "kv"]) * norm1
            q_int, q_scale = weight_integers(qkv, w, settings.peak_scales)
            key_scale, value_scale = _static_scales(shape, settings, q_int, q_scale)
            layers.append(LayerWeights(
                IntegerWeight.of(q_int, q_scale, w, a),
                weight(f64(p + "self_attn.o_proj.weight"), narrow),
                weight(torch.cat([f64(p + "mlp.gate_proj.weight"), f64(p + "mlp.up_proj.weight")]) * norm2, narrow),
                weight(f64(p + "mlp.down_proj.weight")),
                key_scale.to(F32), value_scale.to(F32)))
        head = f64("lm_head.weight" if "lm_head.weight" in state else "model.embed_tokens.weight") \
            * f64("model.norm.weight")[None, :]
        return cls(shape, settings, state["model.embed_tokens.weight"].to(F32), layers, weight(head))

    @classmethod
    def random(cls, shape: Shape, settings: ExactSettings | None = None, seed: int = 0) -> "ExactWeights":
        """A random model of this shape (float weights ~ N(0, 0.1^2), norms of one), rounded: for
        tests, compiling the kernels, and timing shapes whose weights are not here."""
        generator = torch.Generator().manual_seed(seed)

        def matrix(rows: int, columns: int) -> torch.Tensor:
            return torch.randn(rows, columns, generator=generator) * 0.1
        d, q, kv = shape.d_model, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
        state = {"model.embed_tokens.weight": matrix(shape.vocab, d), "model.norm.weight": torch.ones(d)}
        for i in range(shape.layers):
            p = f"model.layers.{i}."
            state.update({p + "input_layernorm.weight": torch.ones(d), p + "post_attention_layernorm.weight": torch.ones(d),
                          p + "self_attn.q_proj.weight": matrix(q, d), p + "self_attn.k_proj.weight": matrix(kv, d),
                          p + "self_attn.v_proj.weight": matrix(kv, d), p + "self_attn.o_proj.weight": matrix(d, q),
                          p + "mlp.gate_proj.weight": matrix(shape.ffn, d), p + "mlp.up_proj.weight": matrix(shape.ffn, d),
                          p + "mlp.down_proj.weight": matrix(d, shape.ffn)})
        return cls.from_state_dict(shape, state, settings or ExactSettings())

    # --- the cache on disk ------------------------------------------------------------------------

    def save(self, path) -> None:
        """One safetensors file: every integer weight's int8 slices and scales, the static scales,
        the embedding; the shape, settings and engine in its metadata."""
        from safetensors.torch import save_file

        tensors = {"embedding": self.embedding, "head.slices": self.head.slices, "head.scale": self.head.scale}
        for name in LayerWeights.NAMES:
            tensors[f"layers.{name}.slices"] = self.stacked_slices[name]
            tensors[f"layers.{name}.scale"] = torch.stack([getattr(layer, name).scale for layer in self.layers])
        tensors["layers.key_scale"] = torch.stack([layer.key_scale for layer in self.layers])
        tensors["layers.value_scale"] = torch.stack([layer.value_scale for layer in self.layers])
        metadata = {"engine": ENGINE, "cache_version": str(CACHE_VERSION), "shape": self.shape.to_json(),
                    "settings": json.dumps(asdict(self.settings))}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)

    @classmethod
    def load(cls, path) -> "ExactWeights | None":
        """The weights `save` wrote, or None if the file is of another engine or cache version."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("engine") != ENGINE or metadata.get("cache_version") != str(CACHE_VERSION):
                return None
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        shape = Shape.from_json(metadata["shape"])
        settings = ExactSettings(**json.loads(metadata["settings"]))
        a = settings.activation_bits
        bits = {"qkv": settings.weight_bits, "out": settings.narrow_weight_bits,
                "gate_up": settings.narrow_weight_bits, "down": settings.weight_bits}

        def weight(name: str, i: int) -> IntegerWeight:  # a view of the stacked slices
            return IntegerWeight(tensors[f"layers.{name}.slices"][i], tensors[f"layers.{name}.scale"][i], bits[name], a)
        layers = [LayerWeights(*(weight(name, i) for name in LayerWeights.NAMES), tensors["layers.key_scale"][i],
                               tensors["layers.value_scale"][i]) for i in range(shape.layers)]
        head = IntegerWeight(tensors["head.slices"], tensors["head.scale"], settings.weight_bits, a)
        stacked = {name: tensors[f"layers.{name}.slices"] for name in LayerWeights.NAMES}
        return cls(shape, settings, tensors["embedding"], layers, head, stacked)


def weight_integers(matrix: torch.Tensor, bits: int, peak: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (float64 rows) as integers in +-(2^(bits-1) - 1) with a scale per output row:
    without `peak`, a power of two (an 8-bit row then fits int8: the rare 128 that rounding
    reaches is clamped); with it, the row's max |w| / (2^(bits-1) - 1) rounded to float32 (one where
    that is zero: a zero row), the integers round-half-even(w / scale) in float64. Every step is one
    correctly rounded IEEE operation, so the integers are the same on every machine."""
    limit = float(2 ** (bits - 1) - 1)
    if not peak:
        q, scale = quantize(matrix, bits, dim=1)
        return q.clamp_(-limit, limit), scale
    scale = (matrix.abs().amax(dim=1, keepdim=True) / limit).to(F32).to(F64)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round(matrix / scale).clamp_(-limit, limit), scale


def _static_scales(shape: Shape, settings: ExactSettings, q_int: torch.Tensor, q_scale: torch.Tensor):
    """Power-of-two scales for keys and values that hold for every input. The normalized input n
    has |n| <= sqrt(d) (RMSNorm), so output channel c is at most ||w_c|| sqrt(d) (Cauchy-Schwarz);
    RoPE mixes channel pairs, so a key channel is at most the pair's norm."""
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
