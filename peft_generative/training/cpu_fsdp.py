"""The training script under accelerate's FSDP on CPU processes (gloo): for tests and memory measurements.

accelerate (1.16) turns FSDP on only for GPU-like devices: `accelerate launch --config_file fsdp.yaml --use_cpu`
silently runs DDP. torch's FSDP2 (`fully_shard`) itself works on the CPU with gloo, so this script sets the one
thing accelerate leaves out on a CPU (the distributed type FSDP with the launcher's FSDP plugin, and its mixed
precision, as `AcceleratorState` does for a GPU) and runs `peft_generative.training.script` exactly as
examples/scripts/train_generator.py does. Everything after that (accelerate's `fsdp2_prepare_model`, the Trainer's
FSDP checkpointing, torch's FSDP2) is the real code.

    ACCELERATE_USE_CPU=true accelerate launch --config_file examples/accelerate/fsdp.yaml --num_processes 2 \
        --mixed_precision no -m peft_generative.training.cpu_fsdp --config RECIPE.yaml --use_cpu true

On GPUs, launch the training script itself (examples/accelerate/README.md); nothing here is needed there.
"""

import logging
import sys

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType


def allow_fsdp_on_cpu() -> None:
    """Make `AcceleratorState` take the FSDP plugin on CPU processes (what it does on GPUs). Call it before the
    first `Accelerator` (or Trainer) is made; it changes accelerate's class for the rest of the process."""
    original = AcceleratorState.__init__

    def init(self, mixed_precision=None, cpu=False, dynamo_plugin=None, deepspeed_plugin=None, fsdp_plugin=None,
             *args, **kwargs):
        fresh = not AcceleratorState._shared_state
        original(self, mixed_precision, cpu, dynamo_plugin, deepspeed_plugin, fsdp_plugin, *args, **kwargs)
        if fresh and fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin

    AcceleratorState.__init__ = init


if __name__ == "__main__":
    allow_fsdp_on_cpu()
    from peft_generative.training.script import main, make_parser

    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s")
    logging.getLogger("peft_generative").setLevel(logging.INFO)
    script_args, training_args = make_parser().parse_args_and_config()
    main(script_args, training_args)
