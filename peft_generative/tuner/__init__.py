"""Generative Adapter as a peft tuner, laid out like `peft/tuners/<method>/`.

`config` (GenerativeAdapterConfig), `layer` (GenerativeLinear), `model` (GenerativeAdapterModel, the tuner),
`generator` (the adapted layers as one object: text -> context), `context` (GeneratedContext), `encoding` (chunked
one-pass encoding into states), `router` (which context a call uses, per thread), `svd` (normalisation of states),
`inputs` (text -> token rows), `peft_type` (the PeftType member). Importing this package registers the method with
peft, as peft's own tuners do.
"""

from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
from peft.utils import register_peft_method

from .config import GenerativeAdapterConfig
from .context import GeneratedContext
from .generator import Generator
from .layer import GenerativeLinear
from .model import GenerativeAdapterModel, generator_of, tuner_of
from .peft_type import GENERATIVE_ADAPTER, PEFT_TYPE_NAME

if PEFT_TYPE_TO_TUNER_MAPPING.get(GENERATIVE_ADAPTER) is not GenerativeAdapterModel:
    register_peft_method(
        name=PEFT_TYPE_NAME.lower(),
        config_cls=GenerativeAdapterConfig,
        model_cls=GenerativeAdapterModel,
        prefix=GenerativeAdapterModel.prefix,
    )

__all__ = [
    "GENERATIVE_ADAPTER",
    "PEFT_TYPE_NAME",
    "GeneratedContext",
    "GenerativeAdapterConfig",
    "GenerativeAdapterModel",
    "GenerativeLinear",
    "Generator",
    "generator_of",
    "tuner_of",
]
