"""peft-generative: Generative Adapter (arXiv 2411.05877) as a native PEFT method.

`import peft_generative` registers the PEFT type `GENERATIVE_ADAPTER`; then `get_peft_model(model,
GenerativeAdapterConfig(...))`, `PeftModel.from_pretrained` and `AutoPeftModelForCausalLM` work as usual, and
the model gains `contextualize`, `use_context`, `set_context`, `forget`, `load_context`, and a per-call
`context=` argument to `forward` / `generate`.

The method itself lives in `peft_generative.tuner` (shaped like peft's own tuners); training in
`peft_generative.training`; evaluation, benchmarks, data and the command line around them.
"""

from .hub import push_to_hub
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

__version__ = "0.1.0"

__all__ = [
    "GENERATIVE_ADAPTER",
    "GenerativeAdapterConfig",
    "GenerativeAdapterModel",
    "GenerativeLinear",
    "GeneratedContext",
    "Generator",
    "generator_of",
    "tuner_of",
    "push_to_hub",
    "__version__",
]
