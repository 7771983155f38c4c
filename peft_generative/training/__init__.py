"""Training a generator with TRL, apart from the method itself (`peft_generative.tuner`).

`config` (GenerativeAdapterTrainingConfig), `trainer` (GenerativeAdapterTrainer, an SFTTrainer), `collation` (dataset
preparation, batches, the `Objective` of each row), `script` (the `peft-generative train` entry point),
`checkpoints` (which checkpoint to resume from), `shards` (a saved generator as files of limited size, and back),
`sharding` (the generator under accelerate's FSDP2 and DeepSpeed ZeRO), `cpu_sharding` (those on CPU processes,
for tests and measurements),
`context_perplexity` (held-out perplexity and its callback), `interpolation` (WiSE-FT weight averaging of two
generators).
"""

from ..extras import require_extra

require_extra("train", "Training a generator (peft_generative.training)")

from .collation import GenerativeAdapterCollator, Objective  # noqa: E402  (after the check naming the extra)
from .config import GenerativeAdapterTrainingConfig  # noqa: E402
from .trainer import GenerativeAdapterTrainer  # noqa: E402

__all__ = ["GenerativeAdapterCollator", "GenerativeAdapterTrainer", "GenerativeAdapterTrainingConfig", "Objective"]
