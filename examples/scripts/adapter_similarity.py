"""How much of a generated adapter is about its context? Compare the adapters of different held-out contexts.

    python examples/scripts/adapter_similarity.py --generator runs/pretrain/checkpoint-140 \
        --generator peft_generative/assets/generator --out docs/adapter_similarity.json

For every adapted module, the adapters `delta_W_i = lora_B_i @ lora_A_i` of N contexts (the first
`(num_segments - 1) * segment_length` tokens of N held-out blocks, as in the perplexity evaluation) are compared:
- `common_share`: |mean_i delta_W_i|^2 / mean_i |delta_W_i|^2, the part of the adapters' energy that is the same
  for every context (1.0: one fixed LoRA whatever the context; 1/N: unrelated adapters);
- `pairwise_cosine`: the mean cosine similarity between the adapters of two different contexts.
Reported as the mean over modules, with the lowest and highest module. For a generator with a shared LoRA
(`shared_rank`), both are measured on the part written from the context (`ctx.context_factors()`), and the whole
adapter's common share is reported beside them as `common_share_whole_adapter`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from datasets import Dataset

from peft_generative.data import read_jsonl
from peft_generative.loading import load_generative_model
from peft_generative.training.collation import pack_text


def _common_share(delta: torch.Tensor) -> float:
    return (delta.mean(0).norm() ** 2 / (delta.norm(dim=1) ** 2).mean()).item()


def similarity(model, contexts: list[list[int]]) -> dict:
    with torch.no_grad():
        ctx = model.base_model.contextualize(contexts, activate=False, progress=False)
        with_shared = ctx.config.shared_rank > 0
        per_module = {}
        for key, (lora_a, lora_b) in ctx.context_factors().items():
            delta = (lora_b.float() @ lora_a.float()).flatten(1)
            unit = delta / delta.norm(dim=1, keepdim=True).clamp_min(1e-30)
            cos = unit @ unit.T
            off_diagonal = cos[~torch.eye(len(contexts), dtype=torch.bool)]
            per_module[key] = {"common_share": _common_share(delta), "pairwise_cosine": off_diagonal.mean().item()}
            if with_shared:
                whole_a, whole_b = ctx.factors[key]
                per_module[key]["common_share_whole_adapter"] = _common_share(
                    (whole_b.float() @ whole_a.float()).flatten(1))
    summary = {}
    for name in per_module[next(iter(per_module))]:
        values = [m[name] for m in per_module.values()]
        summary[name] = {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}
    return {"contexts": len(contexts), "summary": summary, "modules": per_module}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", action="append", required=True, help="generator dirs (repeatable)")
    parser.add_argument("--validation", default="data/pretraining/validation.jsonl")
    parser.add_argument("--contexts", type=int, default=12)
    parser.add_argument("--num-segments", type=int, default=3)
    parser.add_argument("--segment-length", type=int, default=128)
    parser.add_argument("--out", help="JSON file")
    args = parser.parse_args()
    texts = Dataset.from_dict({"text": [r["text"] for r in read_jsonl(args.validation)]})
    context_len = (args.num_segments - 1) * args.segment_length
    results, contexts = {}, None
    for generator in args.generator:
        model, tokenizer, _ = load_generative_model(None, generator)
        if contexts is None:  # every generator belongs to the default model: one tokenizer, the same contexts
            blocks, _ = pack_text(texts, tokenizer, args.num_segments * args.segment_length)
            if len(blocks) < 2:
                raise SystemExit(f"error: {args.validation} packs into {len(blocks)} block(s); at least 2 are needed")
            contexts = [list(blocks[i]["block"][:context_len]) for i in range(min(args.contexts, len(blocks)))]
        results[generator] = similarity(model, contexts)
        s = results[generator]["summary"]
        print(f"{generator}: common share {s['common_share']['mean']:.3f} "
              f"({s['common_share']['min']:.3f}-{s['common_share']['max']:.3f}), pairwise cosine "
              f"{s['pairwise_cosine']['mean']:.3f} over {len(contexts)} contexts"
              + (f"; whole adapter with the shared LoRA {s['common_share_whole_adapter']['mean']:.3f}"
                 if "common_share_whole_adapter" in s else ""))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
