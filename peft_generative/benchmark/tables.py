"""The benchmark summary: each figure's ratio next to its target, as a table and Markdown."""

from __future__ import annotations

from typing import Optional

# key -> (what the ratio is, target, comparison, threshold)
TARGETS = {
    "contextualize_vs_forward": ("contextualize throughput / plain forward throughput (2K tokens)", ">=", 1.0),
    "answer_vs_recompute_2k": ("answer time: prompting, context recomputed / adapter (2K)", ">=", 4.0),
    "answer_vs_cached_8k": ("answer time: prompting, context in KV cache / adapter (8K)", ">", 1.0),
    "decode_overhead": ("time per decoded token: adapter / bare base model", "<=", 1.10),
    "state_bytes_2k": ("per-context state: KV cache bytes / adapter bytes (2K)", ">=", 10.0),
    "batched_contexts": ("8 contexts answered batched / one after another (throughput)", ">=", 3.0),
    "train_step_vs_lora": ("training step time: generator / plain LoRA on the same tokens", "<=", 1.5),
}


def summarize_figures(figures: dict) -> dict:
    """Ratio, target and whether it is met, for every figure that was measured."""
    answers = sorted((f for f in figures if f.startswith("answer_")), key=lambda f: figures[f]["context_tokens"])
    ratios: dict[str, Optional[float]] = {}
    if "contextualize" in figures:
        ratios["contextualize_vs_forward"] = figures["contextualize"]["ratio"]
    at_2k = [f for f in answers if figures[f]["context_tokens"] == 2048]
    if at_2k:
        ratios["answer_vs_recompute_2k"] = figures[at_2k[0]]["speedup_vs_recompute"]
        ratios["state_bytes_2k"] = figures[at_2k[0]]["state_bytes_ratio"]
    if answers and figures[answers[-1]]["context_tokens"] >= 8000:
        ratios["answer_vs_cached_8k"] = figures[answers[-1]]["speedup_vs_cached"]
    for key, figure, field in (("decode_overhead", "decode", "ratio"), ("batched_contexts", "batched", "speedup"),
                               ("train_step_vs_lora", "train_step", "ratio")):
        if figure in figures:
            ratios[key] = figures[figure][field]
    summary = {}
    for key, value in ratios.items():
        label, op, threshold = TARGETS[key]
        met = {">=": value >= threshold, ">": value > threshold, "<=": value <= threshold}[op]
        summary[key] = {"what": label, "ratio": value, "target": f"{op} {threshold}", "met": met}
    return summary


def benchmark_markdown(results: dict) -> str:
    machine = results["machine"]
    lines = [f"Measured {results['date']} on {machine['device']} ({machine['processor']}, "
             f"{machine['torch_threads']} torch threads{', ' + machine['gpu'] if 'gpu' in machine else ''}), "
             f"torch {machine['torch']}, transformers {machine['transformers']}, peft {machine['peft']}; "
             f"model {results['model']}, {results['dtype']}; median of {results['repeats']} runs after a warm-up.",
             f"Command: `{results['command']}`", "",
             "| figure | ratio | target | met |", "|---|---:|---|---|"]
    for item in results["summary"].values():
        lines.append(f"| {item['what']} | {item['ratio']:.2f}x | {item['target']} | {'yes' if item['met'] else 'NO'} |")
    answers = sorted((f for f in results["figures"] if f.startswith("answer_")),
                     key=lambda f: results["figures"][f]["context_tokens"])
    if answers:
        lines += ["", "| context tokens | contextualize s | adapter answer s | prompt (recompute) s | "
                      "prompt (KV cached) s | vs recompute | vs cached | KV cache MB | adapter MB |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for key in answers:
            f = results["figures"][key]
            lines.append(f"| {f['context_tokens']} | {f['contextualize_s']:.2f} | {f['adapter_s']:.2f} | "
                         f"{f['prompt_recompute_s']:.2f} | {f['prompt_cached_s']:.2f} | "
                         f"{f['speedup_vs_recompute']:.2f}x | {f['speedup_vs_cached']:.2f}x | "
                         f"{f['kv_cache_bytes'] / 2**20:.1f} | {f['adapter_bytes'] / 2**20:.1f} |")
    batched = results["figures"].get("batched")
    if batched:
        lines += ["", f"Batched answering ({batched['batch']} contexts of {batched['context_tokens']} tokens): "
                      f"{batched['together_s']:.2f} s together vs {batched['one_by_one_s']:.2f} s one after another "
                      f"({batched['speedup']:.2f}x); the bare base model batches the same prompts "
                      f"{batched['base_speedup']:.2f}x; with contextualization included "
                      f"{batched['speedup_with_contextualize']:.2f}x."]
    train = results["figures"].get("train_step")
    if train:
        act, peak = train["activation_mib"], train["peak_device_mib"]
        peak_text = (f"; peak accelerator memory {peak['generator']:.0f} vs {peak['lora']:.0f} MiB"
                     if peak["generator"] is not None else "")
        lines += ["", f"Training step ({train['rows']} rows x {train['context_tokens']} context + "
                      f"{train['target_tokens']} target tokens): generator {train['generator_step_s']:.2f} s vs LoRA "
                      f"{train['lora_step_s']:.2f} s ({train['generator_tokens_per_s']:.0f} vs "
                      f"{train['lora_tokens_per_s']:.0f} tokens/s); activations saved for backward {act['generator']:.0f} vs "
                      f"{act['lora']:.0f} MiB{peak_text}."]
    return "\n".join(lines) + "\n"
