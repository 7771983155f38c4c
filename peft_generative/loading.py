"""Loading a base model together with a generator (the shipped one for the default model)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

import torch
from peft.utils import CONFIG_NAME

from .tuner import GenerativeAdapterConfig, generator_of
from .default_model import DEFAULT_MODEL, load_base_model

GENERATOR_TYPE = "GENERATIVE_ADAPTER"


def shipped_generator_path() -> Optional[Path]:
    """The generator trained for SmolLM2-135M-Instruct that ships with the package, if present."""
    path = Path(str(resources.files("peft_generative") / "assets" / "generator"))
    return path if (path / CONFIG_NAME).exists() else None


def generator_peft_type(generator: str) -> Optional[str]:
    """The `peft_type` in a generator's adapter_config.json (a local directory, or a Hub id read through the Hub
    cache); raises ValueError when there is no adapter config there."""
    import json

    path = Path(generator) / CONFIG_NAME
    if not path.is_file():
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(generator, CONFIG_NAME))
        except Exception as exc:  # not found, offline, invalid id, ...
            raise ValueError(f"No generator at {generator!r}: no {CONFIG_NAME} there ({type(exc).__name__}: {exc})."
                             ) from exc
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("peft_type")
    except (OSError, ValueError) as exc:
        raise ValueError(f"{generator}: cannot read {path}: {exc}") from exc


def load_generative_model(model: Optional[str] = None, generator: Optional[str] = None,
                          dtype: Optional[torch.dtype] = None, device=None):
    """(peft_model, tokenizer, info). `generator`: a directory or Hub id; by default the shipped generator for
    the default model, otherwise a fresh, untrained one (`info["trained"]` says which). Importing this module
    registers the PEFT type, so no separate `import peft_generative` is needed.

    Raises ValueError (before loading the base model) when `generator` is not a Generative Adapter generator."""
    from peft import PeftModel, get_peft_model

    shipped = None
    if generator is None and model in (None, DEFAULT_MODEL):
        shipped = shipped_generator_path()
        generator = str(shipped) if shipped else None
    if generator is not None:
        peft_type = generator_peft_type(str(generator))
        if peft_type != GENERATOR_TYPE:
            raise ValueError(f"{generator} holds a {peft_type} adapter, not a Generative Adapter generator (peft_type "
                             f"{GENERATOR_TYPE}); a LoRA exported from a context loads with plain peft instead.")
    base, tokenizer = load_base_model(model, dtype=dtype, device=device)
    if generator is not None:
        peft_model = PeftModel.from_pretrained(base, generator)
        info = {"generator": generator, "trained": True, "shipped": shipped is not None}
    else:
        peft_model = get_peft_model(base, GenerativeAdapterConfig(task_type="CAUSAL_LM"))
        info = {"generator": None, "trained": False, "shipped": False}
    peft_model.eval()
    peft_model.set_tokenizer(tokenizer)
    generator_weights = generator_of(peft_model)
    generator_weights.source = generator or "fresh (untrained)"
    generator_weights.check_finite(f"The generator {generator!r}" if generator else "The fresh generator")
    return peft_model, tokenizer, info
