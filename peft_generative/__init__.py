"""peft-generative: Generative Adapter (arXiv 2411.05877) as a native PEFT method.

`import peft_generative` registers the PEFT type `GENERATIVE_ADAPTER`; then `get_peft_model(model,
GenerativeAdapterConfig(...))`, `PeftModel.from_pretrained` and `AutoPeftModelForCausalLM` work as usual, and
the model gains `contextualize`, `use_context`, `set_context`, `forget`, `load_context`.
"""

from ._registration import GENERATIVE_ADAPTER, register as _register
from .config import GenerativeAdapterConfig
from .context import GeneratedContext
from .hub import push_to_hub
from .layer import GenerativeLinear
from .model import GenerativeAdapterModel

_register()

__version__ = "0.1.0"

__all__ = [
    "GENERATIVE_ADAPTER",
    "GenerativeAdapterConfig",
    "GenerativeAdapterModel",
    "GenerativeLinear",
    "GeneratedContext",
    "push_to_hub",
    "__version__",
]
