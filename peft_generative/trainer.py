"""Moved to `peft_generative.training`; this module keeps the documented import path working."""

from .training.config import GenerativeAdapterTrainingConfig
from .training.trainer import GenerativeAdapterTrainer

__all__ = ["GenerativeAdapterTrainer", "GenerativeAdapterTrainingConfig"]
