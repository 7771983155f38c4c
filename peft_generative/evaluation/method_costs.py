"""Estimated compute (FLOPs) and per-context state (bytes) of the three ways to answer.

Conventions (all estimates, from the model's shapes; padding in batches is not counted):
- a forward pass costs `peft_generative.lm_costs.forward_flops` without the LM head, plus `2 * d * vocab` for every
  position whose logits are needed (generation needs only the last prompt position, then one per new token);
- answering = prefill of the prompt + one decoding step per generated token after the first (KV cache);
- a generated adapter adds `2 * adapter_numel` FLOPs per processed token (x @ A, then @ B, in every adapted
  module);
- contextualisation = one pass of the layers below the last adapted layer over every chunk of `window` tokens,
  plus the generator (norm, keys, values, K^T V per token; SVD and factor products per adapter built), plus, in
  sequential encoding, the partial adapter carried by every chunk after the first;
- per-context state: the KV cache of the context's tokens (prompting) vs the generated factors (adapter).
"""

from __future__ import annotations

from typing import Sequence

from ..lm_costs import forward_flops, kv_cache_numel
from ..tuner import tuner_of
from ..utils.model_config import text_config

__all__ = [
    "base_config", "lm_flops", "generation_flops", "scoring_flops", "adapter_flops_per_token",
    "contextualize_flops", "kv_cache_bytes", "adapter_bytes", "svd_flops",
]


def base_config(model):
    """The text config of the (frozen) base LM under a peft model."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return text_config(inner.config)


def lm_flops(config, new_tokens: int, past_tokens: int = 0, logits: int = 0, extra_per_token: float = 0.0) -> float:
    """One forward pass over `new_tokens` tokens after `past_tokens` cached ones, with `logits` LM-head rows."""
    if new_tokens <= 0:
        return 0.0
    text = text_config(config)
    body = forward_flops(text, new_tokens, context_tokens=past_tokens, lm_head=False)
    return body + 2.0 * text.hidden_size * text.vocab_size * logits + extra_per_token * new_tokens


def generation_flops(config, prompt_tokens: int, generated_tokens: int, extra_per_token: float = 0.0) -> float:
    """Greedy answer: prefill of the prompt, then a cached decoding step per generated token after the first."""
    prefill = lm_flops(config, prompt_tokens, logits=1, extra_per_token=extra_per_token)
    steps = max(int(generated_tokens) - 1, 0)
    return prefill + lm_flops(config, steps, past_tokens=prompt_tokens, logits=steps, extra_per_token=extra_per_token)


def scoring_flops(config, prompt_tokens: int, continuation_tokens: Sequence[int],
                  extra_per_token: float = 0.0) -> float:
    """Log-likelihood of several continuations of one prompt: the prompt once, each continuation on its cache."""
    total = lm_flops(config, prompt_tokens, logits=1, extra_per_token=extra_per_token)
    for n in continuation_tokens:
        total += lm_flops(config, n, past_tokens=prompt_tokens, logits=max(n - 1, 0), extra_per_token=extra_per_token)
    return total


def adapter_flops_per_token(ctx) -> float:
    """Extra FLOPs a generated adapter adds to every token (`x @ lora_A^T @ lora_B^T` in each module)."""
    return 2.0 * ctx.adapter_numel if ctx is not None else 0.0


def svd_flops(m: int, n: int) -> float:
    """Thin SVD of an m x n matrix (Golub & Van Loan's R-SVD count, U thin, V full): 6 m n^2 + 20 n^3, m >= n."""
    m, n = max(m, n), min(m, n)
    return 6.0 * m * n * n + 20.0 * n ** 3


def contextualize_flops(model, tokens: int, chunk_prefix_tokens: int = 0) -> float:
    """Estimated FLOPs of `model.contextualize` on a text of `tokens` tokens (see the module docstring)."""
    if tokens <= 0:
        return 0.0
    tuner = tuner_of(model)
    text = base_config(model)
    config = tuner.peft_config[tuner.active_adapters[0]]
    modules = list(tuner.generator.layers.values())
    last = max(m.layer_index for m in modules)
    d, n_layers = text.hidden_size, text.num_hidden_layers
    dr, r, k = config.key_dim, config.value_dim, config.adapter_rank
    step = max(config.window - chunk_prefix_tokens, 1)
    chunk_lengths = [chunk_prefix_tokens + min(step, tokens - start) for start in range(0, tokens, step)]
    carried = sum(2.0 * k * (m.in_features + m.out_features) for m in modules if m.layer_index < last)
    sequential = config.encoding == "sequential"
    total = 0.0
    for t, n in enumerate(chunk_lengths):
        total += forward_flops(text, n, lm_head=False) * last / n_layers  # layers 0 .. last-1 run
        total += len(modules) * n * (4.0 * d + 2.0 * d * (dr + r) + 2.0 * dr * r)  # norm, K, V, K^T V
        if sequential and t > 0:
            total += n * carried
    if config.normalization == "svd":
        per_build = sum(svd_flops(dr, r) + 2.0 * k * dr * m.in_features + 2.0 * m.out_features * r * k
                        for m in modules)
    else:
        per_build = sum(2.0 * dr * r + 2.0 * r * dr * m.in_features for m in modules)
    builds = len(chunk_lengths) if sequential else 1  # sequential: a partial adapter before every later chunk
    return total + builds * per_build


def kv_cache_bytes(model, tokens: int) -> int:
    """Bytes of the KV cache that keeping `tokens` context tokens in the prompt costs."""
    element = next(model.parameters()).element_size()
    return int(kv_cache_numel(base_config(model), tokens)) * element


def adapter_bytes(ctx) -> int:
    """Bytes of one row's generated adapter (the LoRA factors), at the dtype they are stored in."""
    if ctx is None:
        return 0
    first = next(iter(ctx.factors.values()))[0]
    return int(ctx.adapter_numel) * first.element_size()

