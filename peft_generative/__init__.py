"""peft-generative: Generative Adapter (arXiv 2411.05877) as a native PEFT method.

`import peft_generative` registers the PEFT type `GENERATIVE_ADAPTER`; then `get_peft_model(model,
GenerativeAdapterConfig(...))`, `PeftModel.from_pretrained` and `AutoPeftModelForCausalLM` work as usual, and
the model gains `contextualize`, `use_context`, `set_context`, `forget`, `load_context`. Without that import,
peft's loaders fail on a saved generator with `KeyError: 'GENERATIVE_ADAPTER'`.

The import itself is light: the names below are imported on first use, and the registration happens as soon as
peft is imported (at once if it already is), so `peft-generative --help` does not wait for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .lazy_registration import install as _install_registration

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_EXPORTS = {
    "GENERATIVE_ADAPTER": "._registration",
    "GenerativeAdapterConfig": ".config",
    "GenerativeAdapterModel": ".model",
    "GenerativeLinear": ".layer",
    "GeneratedContext": ".context",
    "push_to_hub": ".hub",
    "load_generative_model": ".loading",
}

__all__ = [
    "GENERATIVE_ADAPTER",
    "GenerativeAdapterConfig",
    "GenerativeAdapterModel",
    "GenerativeLinear",
    "GeneratedContext",
    "load_generative_model",
    "push_to_hub",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from ._registration import GENERATIVE_ADAPTER
    from .config import GenerativeAdapterConfig
    from .context import GeneratedContext
    from .hub import push_to_hub
    from .layer import GenerativeLinear
    from .loading import load_generative_model
    from .model import GenerativeAdapterModel


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


_install_registration()
