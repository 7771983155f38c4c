"""Training entry point shared by `peft-generative train` and examples/scripts/train_generator.py.

Self-supervised pretraining or instruction tuning of a generator with TRL:

    peft-generative train --config examples/configs/pretrain_smollm2.yaml
    accelerate launch --multi_gpu --num_processes 2 examples/scripts/train_generator.py --config ... [--use_cpu true]

Runs are resumable: started again with the same output_dir, training continues from the last checkpoint
(generator, optimizer, scheduler and data position).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import torch
from datasets import load_dataset
from trl import TrlParser

from ..default_model import load_base_model
from ..tuner import GenerativeAdapterConfig
from .checkpoints import last_complete_checkpoint
from .config import GenerativeAdapterTrainingConfig
from .trainer import GenerativeAdapterTrainer

logger = logging.getLogger(__name__)


GENERATOR_FIELDS = ("key_dim", "value_dim", "rank", "alpha", "window", "encoding", "normalization",
                    "init_from_attention", "center_keys", "token_gate", "shared_rank", "key_conv", "value_lookahead",
                    "key_lookahead", "value_source")


def _generator_field(name: str):
    source = GenerativeAdapterConfig.__dataclass_fields__[name]
    return field(default=source.default, metadata=dict(source.metadata))


@dataclass
class ScriptArguments:
    train_file: str = field(metadata={"help": "JSONL: `text` rows, `context` + `prompt`/`completion`/`messages` rows, or both."})
    eval_file: Optional[str] = field(default=None, metadata={"help": "Held-out JSONL in the same format."})
    max_train_examples: Optional[int] = field(default=None, metadata={"help": "Use the first N training rows."})
    max_eval_examples: Optional[int] = field(default=None, metadata={"help": "Use the first N eval rows."})
    model_name_or_path: Optional[str] = field(default=None, metadata={"help": "Base model (default: SmolLM2-135M)."})
    attn_implementation: Optional[str] = field(
        default=None, metadata={"help": "Base model attention: sdpa, eager, ... (default: transformers' choice)."}
    )
    dtype: str = field(
        default="float32", metadata={"help": "Base model weights: float32, bfloat16 (a 7B base on GPUs) or float16; "
                                             "the generator stays float32 (peft keeps adapter weights in fp32).",
                                     "choices": ["float32", "bfloat16", "float16"]}
    )
    init_generator: Optional[str] = field(default=None, metadata={"help": "Continue from a saved generator."})
    target_modules: list[str] = field(default_factory=lambda: ["o_proj"], metadata={"help": "Modules to adapt."})
    layers_to_transform: Optional[list[int]] = field(default=None, metadata={"help": "Only these layers."})
    # the generator's shape and encoding: the same defaults and help as GenerativeAdapterConfig
    key_dim: int = _generator_field("key_dim")
    value_dim: int = _generator_field("value_dim")
    rank: int = _generator_field("rank")
    alpha: float = _generator_field("alpha")
    window: int = _generator_field("window")
    encoding: str = _generator_field("encoding")
    normalization: str = _generator_field("normalization")
    init_from_attention: bool = _generator_field("init_from_attention")
    center_keys: bool = _generator_field("center_keys")
    token_gate: bool = _generator_field("token_gate")
    shared_rank: int = _generator_field("shared_rank")
    key_conv: int = _generator_field("key_conv")
    value_lookahead: int = _generator_field("value_lookahead")
    key_lookahead: int = _generator_field("key_lookahead")
    value_source: str = _generator_field("value_source")

    def generator_config(self) -> GenerativeAdapterConfig:
        """The `GenerativeAdapterConfig` these arguments describe."""
        return GenerativeAdapterConfig(
            task_type="CAUSAL_LM", target_modules=self.target_modules, layers_to_transform=self.layers_to_transform,
            **{name: getattr(self, name) for name in GENERATOR_FIELDS},
        )


# parts a saved generator can be trained on with although it was saved without them: each starts at zero (the gate at
# w = 0, b = 0, which the svd normalisation cannot tell from no gate), so the generator starts exactly as saved.
# config field -> (what it is, for messages; its tensors)
ADDABLE_PARTS = {"token_gate": ("token gate", ("generator_gate",)),
                 "shared_rank": ("shared LoRA of rank", ("generator_shared_A", "generator_shared_B")),
                 "key_conv": ("key convolution of width", ("generator_key_conv",)),
                 "value_lookahead": ("value lookahead of width", ("generator_value_conv",)),
                 "key_lookahead": ("key lookahead of width", ("generator_key_lookahead",))}


def load_generator_for_training(base, generator: str, **parts):
    """A saved generator, trainable. Parts it was saved without (`token_gate=True`, `shared_rank`, `key_conv`,
    `value_lookahead`, `key_lookahead` > 0; see `ADDABLE_PARTS`) are added fresh at zero and the rest is loaded, so it
    starts exactly as saved. A part the generator already has keeps its saved size; asking for another size is
    refused."""
    from peft import PeftModel, get_peft_model, set_peft_model_state_dict

    unknown = sorted(set(parts) - set(ADDABLE_PARTS))
    if unknown:
        raise TypeError(f"load_generator_for_training: unknown part(s) {unknown}; known: {sorted(ADDABLE_PARTS)}.")
    config = GenerativeAdapterConfig.from_pretrained(generator)
    added = []
    for name, wanted in parts.items():
        saved = getattr(config, name)
        if not wanted or wanted == saved:
            continue
        what, tensors = ADDABLE_PARTS[name]
        if saved:
            raise ValueError(f"{generator} has a {what} {saved}; it cannot be trained on with {name}={wanted}. "
                             f"Leave {name} out (or set it to {saved}).")
        setattr(config, name, wanted)
        added += tensors
    if not added:
        return PeftModel.from_pretrained(base, generator, is_trainable=True)
    from peft.utils import SAFETENSORS_WEIGHTS_NAME
    from safetensors.torch import load_file

    config.inference_mode = False
    model = get_peft_model(base, config)
    result = set_peft_model_state_dict(model, load_file(os.path.join(generator, SAFETENSORS_WEIGHTS_NAME)))
    missing = [k for k in result.missing_keys if "generator_" in k and not any(part in k for part in added)]
    if missing:
        raise ValueError(f"{generator} lacks generator tensors {missing[:3]}: it is not a complete generator.")
    logger.info("added fresh %s to %s", ", ".join(added), generator)
    return model


def _subset(dataset, limit):
    return dataset if limit is None else dataset.select(range(min(limit, len(dataset))))


def main(script_args: ScriptArguments, training_args: GenerativeAdapterTrainingConfig,
         callbacks: Optional[list] = None) -> GenerativeAdapterTrainer:
    """Train as the arguments say (resuming from the last complete checkpoint of `output_dir`), save the final
    generator into `<output_dir>/final` and return the trainer; `callbacks`: more `TrainerCallback`s."""
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if script_args.dtype not in dtypes:
        raise ValueError(f"--dtype {script_args.dtype!r}: choose one of {', '.join(dtypes)}.")
    base, tokenizer = load_base_model(script_args.model_name_or_path, dtype=dtypes[script_args.dtype],
                                      attn_implementation=script_args.attn_implementation)
    files = {"train": script_args.train_file}
    if script_args.eval_file:
        files["eval"] = script_args.eval_file
    data = load_dataset("json", data_files=files)
    train = _subset(data["train"], script_args.max_train_examples)
    evaluation = _subset(data["eval"], script_args.max_eval_examples) if "eval" in data else None

    peft_config = None
    if script_args.init_generator:
        model = load_generator_for_training(base, script_args.init_generator,
                                            **{name: getattr(script_args, name) for name in ADDABLE_PARTS})
    else:
        model = base
        peft_config = script_args.generator_config()
    trainer = GenerativeAdapterTrainer(model, args=training_args, train_dataset=train, eval_dataset=evaluation,
                                       processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    if trainer.is_world_process_zero():
        logger.info("processes: world_size=%s, device=%s", training_args.world_size, training_args.device)
        if trainer.packing_stats:
            logger.info("packing: %s", trainer.packing_stats)
    resume = training_args.resume_from_checkpoint
    if resume is None:
        resume = last_complete_checkpoint(training_args.output_dir)
    if resume:
        logger.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(os.path.join(training_args.output_dir, "final"))
    return trainer


def make_parser() -> TrlParser:
    return TrlParser((ScriptArguments, GenerativeAdapterTrainingConfig), prog="peft-generative train")
