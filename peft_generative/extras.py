"""Optional dependencies: the `train` and `eval` extras, and a clear message naming the extra when one is missing."""

from __future__ import annotations

import importlib

__all__ = ["EXTRAS", "require_extra"]

# extra -> modules it provides (pyproject.toml [project.optional-dependencies])
EXTRAS = {
    "train": ("trl", "accelerate", "datasets", "yaml"),
    "eval": ("matplotlib",),
}


def require_extra(extra: str, feature: str) -> None:
    """Raise ImportError naming the extra to install when a module of `extra` cannot be imported."""
    missing = []
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(f"{feature} needs the optional dependencies of the `{extra}` extra ({', '.join(missing)} "
                          f"not installed): pip install \"peft-generative[{extra}]\"")
