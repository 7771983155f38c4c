"""Memory and compute accounting shared by the demo, evaluation and benchmarks."""

from __future__ import annotations

from .utils.model_config import text_config


def kv_cache_numel(config, tokens: int) -> int:
    """Floats a KV cache holds for `tokens` tokens (keys and values of every layer)."""
    text = text_config(config)
    heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return 2 * text.num_hidden_layers * heads * head_dim * tokens


def forward_flops(config, tokens: int, context_tokens: int = 0, lm_head: bool = True) -> float:
    """Approximate FLOPs of a forward pass over `tokens` new tokens attending to `context_tokens` earlier ones:
    2 * parameters per token for the dense layers plus attention scores/values over the visible positions."""
    text = text_config(config)
    d, layers = text.hidden_size, text.num_hidden_layers
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or d // heads
    inter = getattr(text, "intermediate_size", 4 * d)
    attn_params = d * heads * head_dim * 2 + d * kv_heads * head_dim * 2
    mlp_params = 3 * d * inter
    per_token = 2 * layers * (attn_params + mlp_params)
    if lm_head:
        per_token += 2 * d * text.vocab_size
    # new token i (1-based) attends to context_tokens + i positions: scores and weighted values, every layer
    visible = tokens * context_tokens + tokens * (tokens + 1) / 2
    return per_token * tokens + 4 * layers * heads * head_dim * visible


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"
