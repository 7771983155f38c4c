"""The training script under accelerate's FSDP or DeepSpeed on CPU processes (gloo): for tests and measurements.

accelerate (1.16) turns FSDP and DeepSpeed on only for GPU-like devices: `accelerate launch --config_file fsdp.yaml`
with `--use_cpu` (or ACCELERATE_USE_CPU) quietly runs DDP, and a DeepSpeed config on a CPU-only machine runs one
process per rank with no distribution at all. torch's FSDP2 (`fully_shard`) and DeepSpeed's CPU accelerator
(`DS_ACCELERATOR=cpu`, gloo) work on CPUs, so this module sets the one thing accelerate leaves out on a CPU, the
distributed type with the launcher's plugin (as `AcceleratorState` does on a GPU), and runs
`peft_generative.training.script` exactly as examples/scripts/train_generator.py does. Everything after that
(accelerate's preparation, the Trainer's checkpointing, FSDP2, DeepSpeed's engine) is the real code.

    ACCELERATE_USE_CPU=true accelerate launch --config_file examples/accelerate/fsdp.yaml --num_processes 2 \
        --mixed_precision no -m peft_generative.training.cpu_sharding --config RECIPE.yaml --use_cpu true
    DS_ACCELERATOR=cpu ACCELERATE_USE_CPU=true accelerate launch \
        --config_file examples/accelerate/deepspeed_zero3.yaml --num_processes 2 --mixed_precision no \
        -m peft_generative.training.cpu_sharding --config RECIPE.yaml --use_cpu true

On GPUs, launch the training script itself (examples/accelerate/README.md); nothing here is needed there.

`PEFT_GENERATIVE_KILL_AFTER_SAVE=N` (for the resume tests): the main process kills itself with SIGKILL right after
checkpoint N is written, as a crashed machine would; the launcher then ends the other processes.
"""

import logging
import os
import sys

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType


def allow_sharding_on_cpu() -> None:
    """Make `AcceleratorState` take the FSDP or DeepSpeed plugin on CPU processes (what it does on GPUs). Call it
    before the first `Accelerator` (or Trainer) is made; it changes accelerate's class for the rest of the process."""
    original = AcceleratorState.__init__

    def init(self, mixed_precision=None, cpu=False, dynamo_plugin=None, deepspeed_plugin=None, fsdp_plugin=None,
             *args, **kwargs):
        fresh = not AcceleratorState._shared_state
        original(self, mixed_precision, cpu, dynamo_plugin, deepspeed_plugin, fsdp_plugin, *args, **kwargs)
        if not fresh or self.distributed_type != DistributedType.MULTI_CPU:
            return
        if fsdp_plugin is not None:
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
        elif deepspeed_plugin is not None and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false") == "true":
            self.distributed_type = DistributedType.DEEPSPEED
            deepspeed_plugin.set_mixed_precision(self._mixed_precision)
            deepspeed_plugin.select(_from_accelerator_state=True)
            self.deepspeed_plugins = deepspeed_plugin
            self._mixed_precision = "no"  # DeepSpeed's config carries it, as on a GPU
        PartialState._shared_state["distributed_type"] = self.distributed_type

    AcceleratorState.__init__ = init


def kill_after_save(step: int):
    """A callback that SIGKILLs the main process once the checkpoint of `step` is saved."""
    import signal

    from transformers import TrainerCallback

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step >= step and state.is_world_process_zero:
                os.kill(os.getpid(), signal.SIGKILL)

    return KillAfterSave()


if __name__ == "__main__":
    allow_sharding_on_cpu()
    from peft_generative.training.script import main, make_parser

    kill = os.environ.get("PEFT_GENERATIVE_KILL_AFTER_SAVE")
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s")
    logging.getLogger("peft_generative").setLevel(logging.INFO)
    script_args, training_args = make_parser().parse_args_and_config()
    main(script_args, training_args, callbacks=[kill_after_save(int(kill))] if kill else None)
