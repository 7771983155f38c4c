"""Reading a model's configuration the same way everywhere."""

from __future__ import annotations


def text_config(config):
    """The text part of a model config (multimodal configs nest it; plain causal-LM configs are their own)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config
