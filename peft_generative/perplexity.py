"""Moved to `peft_generative.training.context_perplexity`; this module keeps the documented import path working."""

from .training.context_perplexity import PerplexityCallback, context_perplexity

__all__ = ["PerplexityCallback", "context_perplexity"]
