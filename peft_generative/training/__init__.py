"""Training a generator with TRL, apart from the method itself (`peft_generative.tuner`).

`config` (GenerativeAdapterTrainingConfig), `trainer` (GenerativeAdapterTrainer, an SFTTrainer), `collation` (dataset
preparation, batches, the `Objective` of each row), `script` (the `peft-generative train` entry point),
`checkpoints` (which checkpoint to resume from), `context_perplexity` (held-out perplexity and its callback),
`interpolation` (WiSE-FT weight averaging of two generators).
"""

from .collation import GenerativeAdapterCollator, Objective
from .config import GenerativeAdapterTrainingConfig
from .trainer import GenerativeAdapterTrainer

__all__ = ["GenerativeAdapterCollator", "GenerativeAdapterTrainer", "GenerativeAdapterTrainingConfig", "Objective"]
