"""A few steps of the GPU training recipe, timed: tokens per second and peak memory at the recipe's sizes.

    python scripts/device/train_probe.py --model DIR --work /tmp/pg_work/train --detail stage.json [--steps 6]
        [--cpu]   # a rehearsal: CPU, the recipe's settings shrunk to a tiny model

The data is self-supervised text only (the bundled story, repeated), so that every step reads the same number of
tokens: per row a context of (num_segments - 1) x segment_length tokens and two targets (completion and
reconstruction) of segment_length; the recipe's own data also holds instruction rows, which are shorter. Steps after
the first are timed (the first pays for warm-up). The run starts from the shipped generator, as the recipe does,
and its last checkpoint's generator comes as files under the recipe's `generator_shard_mib` (their sizes are
recorded; device_check.sh copies them to $OUT/generator with KEEP_GENERATOR=1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path

import torch
from transformers import TrainerCallback

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "configs" / "gpu_facts_replay_smollm2.yaml"


class StepClock(TrainerCallback):
    def __init__(self):
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def write_text_data(path: Path, documents: int) -> None:
    story = (resources.files("peft_generative") / "assets" / "quillmoor.txt").read_text(encoding="utf-8")
    with path.open("w", encoding="utf-8") as f:
        for _ in range(documents):
            f.write(json.dumps({"text": story}) + "\n")


def fresh_generator(model: str, out: Path) -> None:
    from peft import get_peft_model

    from peft_generative import GenerativeAdapterConfig
    from peft_generative.default_model import load_base_model

    base, _ = load_base_model(model)
    config = GenerativeAdapterConfig(task_type="CAUSAL_LM", key_dim=16, value_dim=16, rank=8, window=128)
    get_peft_model(base, config).save_pretrained(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="base model directory (the default model's shape on a GPU)")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--detail", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--cpu", action="store_true", help="rehearsal: CPU and small sizes")
    args = parser.parse_args()

    from peft_generative.training.script import main as train, make_parser
    from peft_generative.training.shards import SHARDS_DIR

    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / "text.jsonl"
    overrides = ["--model_name_or_path", args.model, "--train_file", str(data), "--output_dir", str(args.work / "run"),
                 "--max_steps", str(args.steps), "--save_steps", str(args.steps), "--logging_steps", "1",
                 "--save_total_limit", "1"]
    if args.cpu:  # the shipped generator fits only the default model's shape: a small fresh one for the tiny model
        start = args.work / "start"
        fresh_generator(args.model, start)
        overrides += ["--use_cpu", "true", "--per_device_train_batch_size", "2", "--segment_length", "32",
                      "--max_length", "128", "--dataloader_num_workers", "0", "--init_generator", str(start)]
    script_args, training_args = make_parser().parse_args_and_config(["--config", str(RECIPE), *overrides])
    rows, segments, length = (training_args.per_device_train_batch_size, training_args.num_segments,
                              training_args.segment_length)
    tokens_per_step = rows * ((segments - 1) * length + 2 * length)  # context + completion + reconstruction
    story_tokens = 400  # about, per copy of the story
    write_text_data(data, documents=1 + (args.steps + 1) * rows * segments * length // story_tokens)

    clock = StepClock()
    if torch.cuda.is_available() and not args.cpu:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer = train(script_args, training_args, callbacks=[clock])
    total = time.perf_counter() - started
    steady = [b - a for a, b in zip(clock.ends, clock.ends[1:])]
    step_s = sorted(steady)[len(steady) // 2] if steady else None
    checkpoint = args.work / "run" / f"checkpoint-{args.steps}" / SHARDS_DIR
    detail = {
        "device": str(trainer.args.device), "mixed_precision": trainer.accelerator.mixed_precision,
        "attn_implementation": trainer.model.get_base_model().config._attn_implementation,
        "steps": len(clock.ends), "rows_per_step": rows, "tokens_per_step": tokens_per_step,
        "median_step_s": step_s, "tokens_per_s": tokens_per_step / step_s if step_s else None,
        "first_step_s": clock.ends[0] - started if clock.ends else None, "total_s": total,
        "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
        "peak_memory_mib": (torch.cuda.max_memory_allocated() / 2**20
                            if torch.cuda.is_available() and not args.cpu else None),
        "generator_shards": ({p.name: p.stat().st_size for p in sorted(checkpoint.iterdir())}
                             if checkpoint.is_dir() else None),
        "generator_shards_dir": str(checkpoint),
    }
    args.detail.write_text(json.dumps(detail, indent=1) + "\n")
    print(f"train_probe: {detail['steps']} steps, median {step_s} s/step, {detail['tokens_per_s']} tokens/s, "
          f"peak {detail['peak_memory_mib']} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
