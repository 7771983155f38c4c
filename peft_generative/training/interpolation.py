"""Weight interpolation of two generators trained for the same base model (WiSE-FT, arXiv 2109.01903).

`weight * first + (1 - weight) * second`, tensor by tensor. Typical use: `first` is a generator fine-tuned for a
new skill (e.g. instruction tuning with the context-specificity loss) and `second` the generator it started from;
the interpolation keeps most of the new skill and wins back what fine-tuning cost elsewhere (held-out
reconstruction). Both must have the same configuration (base model, target modules, shapes): only then are their
parameters in the same space.
"""

from __future__ import annotations

import json
import os

import torch
from peft.utils import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..tuner.peft_type import PEFT_TYPE_NAME
from ..utils.atomic import atomic_directory

# fields that say how the generator was described, not what its parameters mean
_DESCRIPTIVE_FIELDS = {"revision", "inference_mode", "peft_version"}


def _read_generator(directory: str) -> tuple[dict, dict[str, torch.Tensor]]:
    config_path, weights_path = os.path.join(directory, CONFIG_NAME), os.path.join(directory, SAFETENSORS_WEIGHTS_NAME)
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{directory} is not a saved generator: {os.path.basename(path)} is missing "
                                    "(save one with `model.save_pretrained(dir)` or a training run's checkpoint).")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path} is not valid JSON (corrupt file?): {exc}") from exc
    if config.get("peft_type") != PEFT_TYPE_NAME:
        raise ValueError(f"{directory} holds a {config.get('peft_type')!r} adapter, not a generator "
                         f"(peft_type {PEFT_TYPE_NAME}).")
    try:
        weights = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{weights_path} is not a readable safetensors file (corrupt or truncated): {exc}") from exc
    return config, weights


def interpolate_generators(first: str, second: str, weight: float, output_dir: str) -> dict[str, torch.Tensor]:
    """Write `weight * first + (1 - weight) * second` to `output_dir` (config of `first`); return the weights.

    `weight` in [0, 1]: 1 gives `first`, 0 gives `second`, bit for bit. The arithmetic is done in float32 and the
    result stored in `first`'s dtypes. The output directory is written atomically and may not be either input.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1] (the share of `first`), got {weight}.")
    out = os.path.abspath(output_dir)
    if out in (os.path.abspath(first), os.path.abspath(second)):
        raise ValueError(f"output_dir {output_dir} is one of the inputs; write the interpolation elsewhere.")
    config_a, weights_a = _read_generator(first)
    config_b, weights_b = _read_generator(second)
    differing = sorted(k for k in (config_a.keys() | config_b.keys()) - _DESCRIPTIVE_FIELDS
                       if config_a.get(k) != config_b.get(k))
    if differing:
        details = ", ".join(f"{k}: {config_a.get(k)!r} vs {config_b.get(k)!r}" for k in differing)
        raise ValueError(f"The generators' configurations differ ({details}); only generators trained for the same "
                         "base model with the same shapes can be interpolated.")
    if weights_a.keys() != weights_b.keys():
        only = sorted(weights_a.keys() ^ weights_b.keys())
        raise ValueError(f"The generators hold different tensors (e.g. {only[:3]}); were they saved by the same "
                         "version of peft-generative?")
    mixed = {}
    for name, a in weights_a.items():
        b = weights_b[name]
        if a.shape != b.shape:
            raise ValueError(f"{name}: shape {tuple(a.shape)} in {first} but {tuple(b.shape)} in {second}.")
        for path, tensor in ((first, a), (second, b)):
            if not torch.isfinite(tensor).all():
                raise ValueError(f"{name} in {path} holds NaN or inf values; that generator is broken.")
        if weight == 1.0:
            mixed[name] = a
        elif weight == 0.0:
            mixed[name] = b.to(a.dtype)
        else:
            mixed[name] = (weight * a.float() + (1 - weight) * b.float()).to(a.dtype).contiguous()
    with atomic_directory(out) as tmp:
        with open(os.path.join(tmp, CONFIG_NAME), "w", encoding="utf-8") as f:
            json.dump(config_a, f, indent=2, sort_keys=True)
        save_file(mixed, os.path.join(tmp, SAFETENSORS_WEIGHTS_NAME), metadata={
            "format": "pt",
            "peft_generative_interpolation": json.dumps({"first": first, "second": second, "weight": weight}),
        })
    return mixed
