"""Speed and memory of Generative Adapter against prompting and plain LoRA, reported as ratios (issue 5).

WORK IN PROGRESS: written, not yet run end to end or reviewed against measurements; not wired into the CLI.
Every figure is meant as the median of repeated runs after a warm-up, next to its reference measured in the same
run, on CPU or GPU.
"""

from __future__ import annotations

import copy
import json
import platform
import statistics
import time
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

import torch

from peft_generative.answering import chat_inputs
from peft_generative.costs import kv_cache_numel

TARGETS = {
    "contextualize_vs_forward": ("contextualize throughput / plain forward throughput", ">= 1.0"),
    "answer_speedup_vs_prompt_recompute_2k": ("answer time: prompting (recompute) / adapter at 2K", ">= 4.0"),
    "answer_speedup_vs_prompt_cached_8k": ("answer time: prompting (KV cached) / adapter at 8K", "> 1.0"),
    "decode_overhead": ("decode time per token: adapter / base", "<= 1.10"),
    "state_bytes_ratio_2k": ("KV cache bytes / adapter bytes at 2K", ">= 10"),
    "batched_contexts_speedup": ("8 contexts batched / one after another (throughput)", ">= 3.0"),
    "train_step_vs_lora": ("generator training step / plain LoRA step (time)", "<= 1.5"),
}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1, device=None) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device or torch.device("cpu"))
        start = time.perf_counter()
        fn()
        _sync(device or torch.device("cpu"))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _context_ids(tokenizer, tokens: int) -> list[int]:
    text = (resources.files("peft_generative") / "assets" / "quillmoor.txt").read_text(encoding="utf-8")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return (ids * (tokens // len(ids) + 1))[:tokens]


def machine_info(device) -> dict:
    import peft
    import transformers

    info = {"python": platform.python_version(), "platform": platform.platform(), "processor": platform.processor(),
            "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "device": str(device), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_benchmarks(model: Optional[str] = None, generator: Optional[str] = None, *, context_lengths=(512, 2048, 8000),
                   repeats: int = 3, new_tokens: int = 32, batch: int = 8, device: Optional[str] = None,
                   out: Optional[str] = None) -> dict:
    from peft_generative.loading import load_generative_model

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    peft_model, tokenizer, info = load_generative_model(model, generator, device=dev)
    tuner = peft_model.base_model
    config = tuner.peft_config[tuner.active_adapters[0]]
    element = next(peft_model.parameters()).element_size()
    results: dict = {"machine": machine_info(dev), "model": peft_model.config._name_or_path,
                     "generator": info["generator"], "repeats": repeats, "figures": {}}
    figures = results["figures"]
    question = "Who built the lighthouse in Quillmoor?"
    gen_kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                      pad_token_id=tokenizer.pad_token_id)

    # 1. contextualize vs a plain forward over the same chunks
    ids = _context_ids(tokenizer, 2048)
    chunks = [ids[i:i + config.window] for i in range(0, len(ids), config.window)]

    @torch.no_grad()
    def plain_forward():
        with tuner.use_context(None):
            for chunk in chunks:
                peft_model(input_ids=torch.tensor([chunk], device=dev))

    t_ctx = median_time(lambda: tuner.contextualize(ids, activate=False, progress=False), repeats, device=dev)
    t_fwd = median_time(plain_forward, repeats, device=dev)
    figures["contextualize_vs_forward"] = {"contextualize_tok_s": len(ids) / t_ctx, "forward_tok_s": len(ids) / t_fwd,
                                           "ratio": t_fwd / t_ctx}

    # 2. answering: adapter vs prompting (recomputed / cached KV), 4. state bytes
    q = chat_inputs(tokenizer, question, device=dev)
    for length in context_lengths:
        ctx_ids = _context_ids(tokenizer, length)
        ctx = tuner.contextualize(ctx_ids, activate=False, progress=False)
        full = torch.cat([torch.tensor([ctx_ids], device=dev), q["input_ids"]], dim=1)

        @torch.no_grad()
        def with_adapter():
            with tuner.use_context(ctx):
                peft_model.generate(**q, **gen_kwargs)

        @torch.no_grad()
        def prompt_recompute():
            with tuner.use_context(None):
                peft_model.generate(input_ids=full, attention_mask=torch.ones_like(full), **gen_kwargs)

        with torch.no_grad(), tuner.use_context(None):
            cache = peft_model(input_ids=full[:, :length], use_cache=True).past_key_values
        caches = [copy.deepcopy(cache) for _ in range(repeats + 1)]

        @torch.no_grad()
        def prompt_cached():
            with tuner.use_context(None):
                peft_model.generate(input_ids=full, attention_mask=torch.ones_like(full),
                                    past_key_values=caches.pop(), **gen_kwargs)

        t_a = median_time(with_adapter, repeats, device=dev)
        t_r = median_time(prompt_recompute, repeats, device=dev)
        t_c = median_time(prompt_cached, repeats, device=dev)
        kv_bytes = kv_cache_numel(peft_model.config, length) * element
        adapter_bytes = ctx.adapter_numel * element
        figures[f"answer_{length}"] = {"adapter_s": t_a, "prompt_recompute_s": t_r, "prompt_cached_s": t_c,
                                       "speedup_vs_recompute": t_r / t_a, "speedup_vs_cached": t_c / t_a,
                                       "kv_cache_bytes": kv_bytes, "adapter_bytes": adapter_bytes,
                                       "state_bytes_ratio": kv_bytes / adapter_bytes}

    # 3. decode overhead per token
    ctx = tuner.contextualize(_context_ids(tokenizer, 512), activate=False, progress=False)

    def decode_time(context) -> float:
        @torch.no_grad()
        def run(n):
            with tuner.use_context(context):
                peft_model.generate(**q, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
        long = median_time(lambda: run(new_tokens * 2), repeats, device=dev)
        short = median_time(lambda: run(1), repeats, device=dev)
        return (long - short) / (new_tokens * 2 - 1)

    base_tok, adapter_tok = decode_time(None), decode_time(ctx)
    figures["decode_overhead"] = {"base_s_per_token": base_tok, "adapter_s_per_token": adapter_tok,
                                  "ratio": adapter_tok / base_tok}

    # 5. a batch of different contexts answered together vs one after another
    contexts = [_context_ids(tokenizer, 512)[i * 7:] for i in range(batch)]
    tokenizer.padding_side = "left"
    prompts = [chat_inputs(tokenizer, question)["input_ids"][0].tolist() for _ in range(batch)]
    padded = torch.tensor(prompts, device=dev)

    @torch.no_grad()
    def together():
        stacked = tuner.contextualize(contexts, activate=False, progress=False)
        with tuner.use_context(stacked):
            peft_model.generate(input_ids=padded, attention_mask=torch.ones_like(padded), **gen_kwargs)

    @torch.no_grad()
    def one_by_one():
        for c in contexts:
            single = tuner.contextualize(c, activate=False, progress=False)
            with tuner.use_context(single):
                peft_model.generate(**q, **gen_kwargs)

    t_together = median_time(together, repeats, device=dev)
    t_sequential = median_time(one_by_one, repeats, device=dev)
    figures["batched_contexts"] = {"batch": batch, "together_s": t_together, "one_by_one_s": t_sequential,
                                   "speedup": t_sequential / t_together}

    # 6. training step vs a plain LoRA step over the same tokens
    figures["train_step"] = _train_step_figures(peft_model, tokenizer, dev, repeats, model)

    summary = {
        "contextualize_vs_forward": figures["contextualize_vs_forward"]["ratio"],
        "decode_overhead": figures["decode_overhead"]["ratio"],
        "batched_contexts_speedup": figures["batched_contexts"]["speedup"],
        "train_step_vs_lora": figures["train_step"]["ratio"],
    }
    if "answer_2048" in figures:
        summary["answer_speedup_vs_prompt_recompute_2k"] = figures["answer_2048"]["speedup_vs_recompute"]
        summary["state_bytes_ratio_2k"] = figures["answer_2048"]["state_bytes_ratio"]
    summary["answer_speedup_vs_prompt_cached_8k"] = figures[f"answer_{max(context_lengths)}"]["speedup_vs_cached"]
    results["summary"] = summary
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2))
    return results


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _train_step_figures(peft_model, tokenizer, dev, repeats: int, model_name: Optional[str]) -> dict:
    from peft import LoraConfig, get_peft_model

    from peft_generative.default_model import load_base_model

    tuner = peft_model.base_model
    context = _context_ids(tokenizer, 256)
    target = torch.tensor([_context_ids(tokenizer, 384)[256:]] * 4, device=dev)
    rows = [context] * 4
    for p in peft_model.parameters():
        p.requires_grad_(False)
    trainable = [p for n, p in peft_model.named_parameters() if "generator_" in n]
    for p in trainable:
        p.requires_grad_(True)
    peft_model.train()

    def generator_step():
        ctx = tuner.contextualize(rows, activate=False, requires_grad=True, progress=False)
        with tuner.use_context(ctx):
            peft_model(input_ids=target, labels=target).loss.backward()

    t_gen = median_time(generator_step, repeats, device=dev)
    peft_model.eval()
    rank = tuner.peft_config[tuner.active_adapters[0]].adapter_rank
    base, _ = load_base_model(model_name, device=dev)  # a fresh copy: the plain LoRA baseline
    lora = get_peft_model(base, LoraConfig(r=rank, target_modules=sorted(
        {k.split(".")[-1] for k in tuner._generator_signature(tuner.active_adapters[0])["modules"]})))
    lora.train()
    full = torch.tensor([context + t for t in target.tolist()], device=dev)
    labels = full.clone()
    labels[:, :len(context)] = -100

    def lora_step():
        lora(input_ids=full, labels=labels).loss.backward()

    t_lora = median_time(lora_step, repeats, device=dev)
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else _rss_mb()
    return {"generator_step_s": t_gen, "lora_step_s": t_lora, "ratio": t_gen / t_lora,
            "tokens": {"context": len(context), "target": target.shape[1], "rows": target.shape[0]},
            "peak_memory_mb": peak}


def format_table(results: dict) -> str:
    lines = ["| figure | value | target |", "|---|---|---|"]
    for key, value in results["summary"].items():
        label, target = TARGETS.get(key, (key, ""))
        lines.append(f"| {label} | {value:.2f}x | {target} |")
    return "\n".join(lines)
