"""Moved to `peft_generative.training.interpolation`; this module keeps the documented import path working."""

from .training.interpolation import interpolate_generators

__all__ = ["interpolate_generators"]
