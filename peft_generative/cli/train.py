"""`peft-generative train`: train a generator from a YAML recipe (examples/configs/*.yaml).

Every option of the training script is accepted (the generator's fields, the data files, and every field of TRL's
`SFTConfig` / transformers' `TrainingArguments`, as `--name value` or in the recipe), but `--help` shows only what a
user usually sets; `--help-all` prints the full list.
"""

from __future__ import annotations

import argparse

from .common import UsageError, check_generator_arg, check_input_file, check_model_arg

SHORT_HELP = """\
usage: peft-generative train --config RECIPE.yaml [--OPTION VALUE ...]

Train a generator (self-supervised pretraining or instruction tuning) with TRL. Put the settings in a YAML
recipe and override any of them on the command line; a run started again with the same output_dir resumes
from its last checkpoint. Recipes: examples/configs/*.yaml (pretrain_smollm2.yaml, sft_mixture_smollm2.yaml, ...);
guide: docs/training.md.

common options:
  --config FILE                   YAML recipe: any option below, and any other training option, as `name: value`
  --train_file FILE               JSON Lines: `text` rows, `context` + `prompt`/`completion`/`messages` rows, or both
  --eval_file FILE                held-out JSON Lines in the same format
  --output_dir DIR                checkpoints and the final generator (DIR/final)
  --model_name_or_path MODEL      base model (default: the embedded SmolLM2-135M-Instruct)
  --init_generator DIR            continue from a saved generator
  --max_steps N                   optimizer steps
  --learning_rate LR              peak learning rate
  --per_device_train_batch_size N rows per step and process
  --save_steps N                  checkpoint every N steps
  --target_modules NAME [...]     modules to adapt (default o_proj)
  --key_dim N / --value_dim N / --rank N    sizes of the generator's state and of the generated adapter
  --use_cpu true                  train on CPU even when a GPU is present
  --dtype bfloat16                base model weights (default float32; the generator stays float32)

several GPUs: accelerate launch --config_file examples/accelerate/fsdp.yaml -m peft_generative.cli train ...
(docs/distributed.md)

other:
  --help-all                      every accepted option (generator fields, TRL SFTConfig, TrainingArguments)
  -h, --help                      this message

Needs the `train` extra: pip install "peft-generative[train]".
"""

# the options SHORT_HELP names (a test checks that the full parser accepts each)
SHORT_HELP_OPTIONS = ("config", "train_file", "eval_file", "output_dir", "model_name_or_path", "init_generator",
                      "max_steps", "learning_rate", "per_device_train_batch_size", "save_steps", "target_modules",
                      "key_dim", "value_dim", "rank", "use_cpu", "dtype")


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("train", help="train a generator from a YAML recipe (examples/configs/*.yaml)",
                            add_help=False)
    parser.add_argument("-h", "--help", action="store_true", dest="short_help")
    parser.add_argument("--help-all", action="store_true")
    parser.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS)
    parser.set_defaults(run=run, command_parser=parser)
    return parser


def _option_value(argv: list[str], name: str):
    for i, arg in enumerate(argv):
        if arg in (f"--{name}", f"--{name.replace('_', '-')}") and i + 1 < len(argv):
            return argv[i + 1]
        for spelling in (name, name.replace("_", "-")):
            if arg.startswith(f"--{spelling}="):
                return arg.split("=", 1)[1]
    return None


def run(args, argv: list[str]) -> int:
    if args.short_help:
        print(SHORT_HELP, end="")
        return 0
    if not args.help_all:
        if not argv:
            raise UsageError("nothing to train: pass --config RECIPE.yaml (see examples/configs/) or the options; "
                             "peft-generative train --help lists the common ones.")
        config = _option_value(argv, "config")
        if config is not None:
            check_input_file(config, "--config")
    from ..extras import require_extra

    require_extra("train", "peft-generative train")
    from ..training.script import main, make_parser

    parser = make_parser()
    if args.help_all:
        parser.print_help()
        return 0
    try:
        script_args, training_args = parser.parse_args_and_config(argv)
    except SystemExit as exc:
        if exc.code:
            raise UsageError("invalid training options (see the message above)") from None
        return 0
    check_input_file(script_args.train_file, "train_file")
    if script_args.eval_file:
        check_input_file(script_args.eval_file, "eval_file")
    check_model_arg(script_args.model_name_or_path)
    check_generator_arg(script_args.init_generator, "init_generator")
    main(script_args, training_args)
    return 0
