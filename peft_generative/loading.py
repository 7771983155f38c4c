"""Loading a base model together with a generator (the shipped one for the default model)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

import torch
from peft.utils import CONFIG_NAME

from .tuner import GenerativeAdapterConfig, generator_of
from .default_model import DEFAULT_MODEL, load_base_model


def shipped_generator_path() -> Optional[Path]:
    """The generator trained for SmolLM2-135M-Instruct that ships with the package, if present."""
    path = Path(str(resources.files("peft_generative") / "assets" / "generator"))
    return path if (path / CONFIG_NAME).exists() else None


def load_generative_model(model: Optional[str] = None, generator: Optional[str] = None,
                          dtype: Optional[torch.dtype] = None, device=None):
    """(peft_model, tokenizer, info). `generator`: a directory or Hub id; by default the shipped generator for
    the default model, otherwise a fresh, untrained one (`info["trained"]` says which)."""
    from peft import PeftModel, get_peft_model

    base, tokenizer = load_base_model(model, dtype=dtype, device=device)
    shipped = None
    if generator is None and model in (None, DEFAULT_MODEL):
        shipped = shipped_generator_path()
        generator = str(shipped) if shipped else None
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
