"""A base model that travels as its config: random weights in a carried config's exact shape, or a tiny one.

    python scripts/device/build_model.py shaped device_kit/model /tmp/pg_work/shaped   # SmolLM2-135M's shape
    python scripts/device/build_model.py tiny device_kit/model /tmp/pg_work/tiny       # a CPU rehearsal's model

Speed depends on the shape, not on the values: greedy decoding is held to a fixed number of tokens by the benchmark
(`min_new_tokens`), so a random model of the default model's shape times like the default model, and the shipped
generator (made for that shape) loads onto it. Saved in bf16 (half the bytes to write); loaders choose their dtype.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=2048)


def build(kind: str, source: Path, out: Path) -> Path:
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source} has no config.json: run scripts/device_prepare.sh here and carry device_kit")
    config = AutoConfig.from_pretrained(source)
    if kind == "tiny":
        for key, value in TINY.items():
            setattr(config, key, value)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.config._name_or_path = f"random-{kind}-{config.model_type}"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["shaped", "tiny"])
    parser.add_argument("source", type=Path, help="a folder with config.json and the tokenizer (device_kit/model)")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    path = build(args.kind, args.source, args.out)
    print(f"build_model: {args.kind} model in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
