"""Train a Generative Adapter generator (TRL-style script; same as `peft-generative train`).

    python examples/scripts/train_generator.py --config examples/configs/pretrain_smollm2.yaml
    accelerate launch --multi_gpu --num_processes 2 examples/scripts/train_generator.py --config ... [--use_cpu true]
"""

import logging
import sys

from peft_generative.training.script import main, make_parser

if __name__ == "__main__":
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s")
    logging.getLogger("peft_generative").setLevel(logging.INFO)  # processes, packing, resuming, held-out perplexity
    script_args, training_args = make_parser().parse_args_and_config()
    main(script_args, training_args)
