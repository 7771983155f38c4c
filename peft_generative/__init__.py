"""peft-generative: Generative Adapter (arXiv 2411.05877) as a native PEFT method.

`import peft_generative` registers the PEFT type `GENERATIVE_ADAPTER`; then `get_peft_model(model,
GenerativeAdapterConfig(...))`, `PeftModel.from_pretrained` and `AutoPeftModelForCausalLM` work as usual, and
the model gains `contextualize`, `use_context`, `set_context`, `forget`, `load_context`, and a per-call
`context=` argument to `forward` / `generate`. Without that import, peft's loaders fail on a saved generator with
`KeyError: 'GENERATIVE_ADAPTER'`.

The method itself lives in `peft_generative.tuner` (shaped like peft's own tuners); training in
`peft_generative.training`; evaluation, benchmarks, data and the command line around them.

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
    "GENERATIVE_ADAPTER": ".tuner",
    "GenerativeAdapterConfig": ".tuner",
    "GenerativeAdapterModel": ".tuner",
    "GenerativeLinear": ".tuner",
    "GeneratedContext": ".tuner",
    "Generator": ".tuner",
    "generator_of": ".tuner",
    "tuner_of": ".tuner",
    "push_to_hub": ".hub",
    "load_generative_model": ".loading",
}

__all__ = [
    "GENERATIVE_ADAPTER",
    "GenerativeAdapterConfig",
    "GenerativeAdapterModel",
    "GenerativeLinear",
    "GeneratedContext",
    "Generator",
    "generator_of",
    "tuner_of",
    "load_generative_model",
    "push_to_hub",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from .hub import push_to_hub
    from .loading import load_generative_model
    from .tuner import (
        GENERATIVE_ADAPTER,
        GeneratedContext,
        GenerativeAdapterConfig,
        GenerativeAdapterModel,
        GenerativeLinear,
        Generator,
        generator_of,
        tuner_of,
    )


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
