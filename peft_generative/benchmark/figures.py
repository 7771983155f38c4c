"""The six benchmark figures. Each measures Generative Adapter and its reference in the same run, on the same
tokens, and returns times, the ratio and what it was measured on. References run on the bare base model."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property
from importlib import resources

import torch

from ..answering import chat_inputs
from ..lm_costs import kv_cache_numel
from ..tuner import tuner_of
from .timing import SavedForBackward, median_seconds, peak_device_memory

QUESTION = "Who built the lighthouse in Quillmoor?"


@dataclass
class Setup:
    """What every figure needs: the model with its generator, the bare base model, and the run's settings."""

    peft_model: torch.nn.Module
    base: torch.nn.Module
    tokenizer: object
    device: torch.device
    repeats: int
    new_tokens: int

    @property
    def tuner(self):
        return tuner_of(self.peft_model)

    @property
    def config(self):
        return self.tuner.peft_config[self.tuner.active_adapters[0]]

    @property
    def element_size(self) -> int:
        return next(self.peft_model.parameters()).element_size()

    def time(self, fn) -> float:
        return median_seconds(fn, self.repeats, self.device)

    @cached_property
    def _story_ids(self) -> list[int]:
        text = (resources.files("peft_generative") / "assets" / "quillmoor.txt").read_text(encoding="utf-8")
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def context_ids(self, tokens: int, offset: int = 0) -> list[int]:
        """`tokens` tokens of real English (the bundled story, rotated by `offset` and repeated as needed)."""
        ids = self._story_ids
        ids = ids[offset % len(ids):] + ids[:offset % len(ids)]
        return (ids * (tokens // len(ids) + 1))[:tokens]

    def question(self) -> torch.Tensor:
        return chat_inputs(self.tokenizer, QUESTION, device=self.device)["input_ids"]

    def generate(self, model, input_ids: torch.Tensor, new_tokens: int | None = None, **kwargs) -> torch.Tensor:
        n = self.new_tokens if new_tokens is None else new_tokens
        with torch.no_grad():
            return model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=n,
                                  min_new_tokens=n, do_sample=False, pad_token_id=self.tokenizer.pad_token_id,
                                  **kwargs)

    def max_context(self) -> int:
        """Longest context that still leaves room in the base model's positions for the question and answer."""
        positions = getattr(self.base.config.get_text_config(), "max_position_embeddings", None) or 10**9
        return positions - self.question().shape[1] - self.new_tokens


def contextualize_vs_forward(s: Setup, tokens: int = 2048) -> dict:
    """1. Contextualize throughput vs a plain no-grad forward of the base model (LM head included) over the same
    chunks of `window` tokens."""
    ids = s.context_ids(tokens)
    window = s.config.window
    chunks = [torch.tensor([ids[i:i + window]], device=s.device) for i in range(0, len(ids), window)]

    def forward():
        with torch.no_grad():
            for chunk in chunks:
                s.base(input_ids=chunk)

    t_ctx = s.time(lambda: s.tuner.contextualize(ids, activate=False, progress=False))
    t_fwd = s.time(forward)
    return {"tokens": tokens, "contextualize_s": t_ctx, "forward_s": t_fwd,
            "contextualize_tok_s": tokens / t_ctx, "forward_tok_s": tokens / t_fwd, "ratio": t_fwd / t_ctx}


def answer_vs_prompting(s: Setup, tokens: int) -> dict:
    """2 and 4. One answer (question prefill + `new_tokens` tokens): adapter vs the context in the prompt,
    (a) recomputed and (b) already in a KV cache; and the per-context state bytes of each."""
    tokens = min(tokens, s.max_context())
    ids = s.context_ids(tokens)
    question = s.question()
    full = torch.cat([torch.tensor([ids], device=s.device), question], dim=1)
    made = []  # the timed runs' adapters: the last one answers below (no extra contextualization)
    t_contextualize = s.time(lambda: made.append(s.tuner.contextualize(ids, activate=False, progress=False)))
    ctx = made[-1]

    def adapter():
        with s.tuner.use_context(ctx):
            s.generate(s.peft_model, question)

    with torch.no_grad():
        prefix_cache = s.base(input_ids=full[:, :tokens], use_cache=True).past_key_values
    caches = [copy.deepcopy(prefix_cache) for _ in range(s.repeats + 1)]  # generate extends the cache it is given

    t_adapter = s.time(adapter)
    t_recompute = s.time(lambda: s.generate(s.base, full))
    t_cached = s.time(lambda: s.generate(s.base, full, past_key_values=caches.pop()))
    kv_bytes = kv_cache_numel(s.base.config, tokens) * s.element_size
    adapter_bytes = ctx.adapter_numel * s.element_size
    saved = t_recompute - t_adapter
    return {"context_tokens": tokens, "adapter_s": t_adapter, "prompt_recompute_s": t_recompute,
            "prompt_cached_s": t_cached, "contextualize_s": t_contextualize,
            "speedup_vs_recompute": t_recompute / t_adapter, "speedup_vs_cached": t_cached / t_adapter,
            "questions_to_amortize_contextualize": (t_contextualize / saved) if saved > 0 else None,
            "kv_cache_bytes": kv_bytes, "adapter_bytes": adapter_bytes, "state_bytes_ratio": kv_bytes / adapter_bytes}


def decode_overhead(s: Setup, context_tokens: int = 512) -> dict:
    """3. Time per decoded token with an adapter vs the bare base model: (t(n+1 tokens) - t(1 token)) / n, so the
    prefill cancels out."""
    ctx = s.tuner.contextualize(s.context_ids(context_tokens), activate=False, progress=False)
    question = s.question()
    n = 2 * s.new_tokens

    def per_token(model) -> float:
        return (s.time(lambda: s.generate(model, question, n + 1)) - s.time(lambda: s.generate(model, question, 1))) / n

    base = per_token(s.base)
    with s.tuner.use_context(ctx):
        adapter = per_token(s.peft_model)
    return {"decoded_tokens": n, "base_s_per_token": base, "adapter_s_per_token": adapter, "ratio": adapter / base}


def batched_contexts(s: Setup, batch: int = 8, context_tokens: int = 512) -> dict:
    """5. `batch` different contexts, one question each, answered in one batched generate (per-row adapters) vs one
    after another; with and without generating the adapters."""
    texts = [s.context_ids(context_tokens, offset=97 * i) for i in range(batch)]
    question = s.question()
    questions = question.expand(batch, -1).contiguous()
    stacked = s.tuner.contextualize(texts, activate=False, progress=False)
    singles = [stacked.rows([i]) for i in range(batch)]

    def together():
        with s.tuner.use_context(stacked):
            s.generate(s.peft_model, questions)

    def one_by_one():
        for single in singles:
            with s.tuner.use_context(single):
                s.generate(s.peft_model, question)

    def together_with_contextualize():
        with s.tuner.use_context(s.tuner.contextualize(texts, activate=False, progress=False)):
            s.generate(s.peft_model, questions)

    def one_by_one_with_contextualize():
        for text in texts:
            with s.tuner.use_context(s.tuner.contextualize(text, activate=False, progress=False)):
                s.generate(s.peft_model, question)

    def base_one_by_one():
        for _ in range(batch):
            s.generate(s.base, question)

    t_together, t_single = s.time(together), s.time(one_by_one)
    t_together_ctx, t_single_ctx = s.time(together_with_contextualize), s.time(one_by_one_with_contextualize)
    # the ceiling: the same batch on the bare base model (one prompt repeated), which no adapter code can beat
    t_base_together, t_base_single = s.time(lambda: s.generate(s.base, questions)), s.time(base_one_by_one)
    return {"batch": batch, "context_tokens": context_tokens, "together_s": t_together, "one_by_one_s": t_single,
            "speedup": t_single / t_together, "together_with_contextualize_s": t_together_ctx,
            "one_by_one_with_contextualize_s": t_single_ctx,
            "speedup_with_contextualize": t_single_ctx / t_together_ctx,
            "base_together_s": t_base_together, "base_one_by_one_s": t_base_single,
            "base_speedup": t_base_single / t_base_together}


def train_step_vs_lora(s: Setup, rows: int = 4, context_tokens: int = 256, target_tokens: int = 128) -> dict:
    """6. One optimiser step of the generator (context -> adapter, loss on the target) vs a plain LoRA SFT step on
    the base model over the same tokens (context + target, loss on the target), LoRA of the generated rank on the
    same modules; activation memory and accelerator peak memory of each."""
    from peft import LoraConfig, get_peft_model

    contexts = [s.context_ids(context_tokens, offset=131 * i) for i in range(rows)]
    targets = torch.tensor([s.context_ids(target_tokens, offset=131 * i + context_tokens) for i in range(rows)],
                           device=s.device)
    full = torch.cat([torch.tensor(contexts, device=s.device), targets], dim=1)
    labels = full.clone()
    labels[:, :context_tokens] = -100

    generator = [p for n, p in s.peft_model.named_parameters() if "generator_" in n]
    lora = get_peft_model(s.base, LoraConfig(r=s.config.adapter_rank, lora_alpha=s.config.alpha,
                                             target_modules=sorted(_target_names(s))))
    generator_opt = torch.optim.AdamW(generator, lr=1e-6)
    lora_opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-6)
    generator_meter, lora_meter = SavedForBackward(s.peft_model), SavedForBackward(lora)

    def generator_step():
        with generator_meter.measuring():
            ctx = s.tuner.contextualize(contexts, activate=False, requires_grad=True, progress=False)
            with s.tuner.use_context(ctx):
                loss = s.peft_model(input_ids=targets, labels=targets).loss
        loss.backward()
        generator_opt.step()
        generator_opt.zero_grad(set_to_none=True)

    def lora_step():
        with lora_meter.measuring():
            loss = lora(input_ids=full, labels=labels).loss
        loss.backward()
        lora_opt.step()
        lora_opt.zero_grad(set_to_none=True)

    for p in generator:
        p.requires_grad_(True)
    s.peft_model.train()
    lora.train()
    try:
        t_generator, t_lora = s.time(generator_step), s.time(lora_step)
        peak_generator, peak_lora = peak_device_memory(s.device, generator_step), peak_device_memory(s.device, lora_step)
    finally:
        for p in generator:
            p.requires_grad_(False)
        s.peft_model.eval()
        lora.unload()
    tokens = rows * (context_tokens + target_tokens)  # what one step of either method reads
    return {"rows": rows, "context_tokens": context_tokens, "target_tokens": target_tokens,
            "generator_step_s": t_generator, "lora_step_s": t_lora, "ratio": t_generator / t_lora,
            "generator_tokens_per_s": tokens / t_generator, "lora_tokens_per_s": tokens / t_lora,
            "generator_trainable_params": sum(p.numel() for p in generator),
            "activation_mib": {"generator": generator_meter.bytes / 2**20, "lora": lora_meter.bytes / 2**20},
            "peak_device_mib": {"generator": peak_generator, "lora": peak_lora}}


def _target_names(s: Setup) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name in s.tuner.generator.layers}
