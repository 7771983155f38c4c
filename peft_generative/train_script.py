"""Training entry point shared by `peft-generative train` and examples/scripts/train_generator.py.

Self-supervised pretraining or instruction tuning of a generator with TRL:

    peft-generative train --config examples/configs/pretrain_smollm2.yaml
    accelerate launch --multi_gpu --num_processes 2 examples/scripts/train_generator.py --config ... [--use_cpu true]

Runs are resumable: started again with the same output_dir, training continues from the last checkpoint
(generator, optimizer, scheduler and data position).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from datasets import load_dataset
from transformers.trainer_utils import get_last_checkpoint
from trl import TrlParser

import peft_generative as pg
from peft_generative.default_model import load_base_model
from peft_generative.trainer import GenerativeAdapterTrainer, GenerativeAdapterTrainingConfig


@dataclass
class ScriptArguments:
    train_file: str = field(metadata={"help": "JSONL: `text` rows, `context` + `prompt`/`completion`/`messages` rows, or both."})
    eval_file: Optional[str] = field(default=None, metadata={"help": "Held-out JSONL in the same format."})
    max_train_examples: Optional[int] = field(default=None, metadata={"help": "Use the first N training rows."})
    max_eval_examples: Optional[int] = field(default=None, metadata={"help": "Use the first N eval rows."})
    model_name_or_path: Optional[str] = field(default=None, metadata={"help": "Base model (default: SmolLM2-135M)."})
    init_generator: Optional[str] = field(default=None, metadata={"help": "Continue from a saved generator."})
    target_modules: list[str] = field(default_factory=lambda: ["o_proj"], metadata={"help": "Modules to adapt."})
    layers_to_transform: Optional[list[int]] = field(default=None, metadata={"help": "Only these layers."})
    key_dim: int = 128
    value_dim: int = 128
    rank: int = 32
    alpha: float = 16.0
    window: int = 1024
    encoding: str = "sequential"
    normalization: str = "svd"
    init_from_attention: bool = False
    center_keys: bool = False


def _subset(dataset, limit):
    return dataset if limit is None else dataset.select(range(min(limit, len(dataset))))


def main(script_args: ScriptArguments, training_args: GenerativeAdapterTrainingConfig) -> None:
    base, tokenizer = load_base_model(script_args.model_name_or_path)
    files = {"train": script_args.train_file}
    if script_args.eval_file:
        files["eval"] = script_args.eval_file
    data = load_dataset("json", data_files=files)
    train = _subset(data["train"], script_args.max_train_examples)
    evaluation = _subset(data["eval"], script_args.max_eval_examples) if "eval" in data else None

    peft_config = None
    if script_args.init_generator:
        from peft import PeftModel

        model = PeftModel.from_pretrained(base, script_args.init_generator, is_trainable=True)
    else:
        model = base
        peft_config = pg.GenerativeAdapterConfig(
            task_type="CAUSAL_LM", target_modules=script_args.target_modules,
            layers_to_transform=script_args.layers_to_transform, key_dim=script_args.key_dim,
            value_dim=script_args.value_dim, rank=script_args.rank, alpha=script_args.alpha,
            window=script_args.window, encoding=script_args.encoding, normalization=script_args.normalization,
            init_from_attention=script_args.init_from_attention, center_keys=script_args.center_keys,
        )
    trainer = GenerativeAdapterTrainer(model, args=training_args, train_dataset=train, eval_dataset=evaluation,
                                       processing_class=tokenizer, peft_config=peft_config)
    if trainer.is_world_process_zero():
        print(f"processes: world_size={training_args.world_size}, device={training_args.device}")
        if trainer.packing_stats:
            print(f"packing: {trainer.packing_stats}")
    resume = training_args.resume_from_checkpoint
    if resume is None and os.path.isdir(training_args.output_dir):
        resume = get_last_checkpoint(training_args.output_dir)
    if resume:
        print(f"resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(os.path.join(training_args.output_dir, "final"))


def make_parser() -> TrlParser:
    return TrlParser((ScriptArguments, GenerativeAdapterTrainingConfig), prog="peft-generative train")
