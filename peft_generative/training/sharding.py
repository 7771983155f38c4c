"""The generator under accelerate's FSDP2 and DeepSpeed ZeRO-2/3: the frozen base model sharded (FSDP2, ZeRO-3), the
generator whole on every process (its gradients and optimizer state sharded under ZeRO).

A generator's tensors are used outside the forward of the decoder layer that holds them: contextualisation reads
each adapted layer's input in a forward pre-hook and stops the pass there, and the LoRA factors (the SVD of each
state) are computed between forward passes. FSDP unshards a parameter only inside its module's forward, so the
generator tensors are kept out of FSDP (`ignored_params`: replicated, like DDP, and small) and their gradients are
averaged over the processes here, once per optimizer step. The base model (frozen) is sharded as the accelerate
config says, and contextualisation runs as an FSDP forward method of the root module (`register_fsdp_forward_method`),
so FSDP's root set-up happens before the first encoding pass.

Only FSDP2 (`fsdp_version: 2`, torch's `fully_shard`) is supported; FSDP1 flattens a unit's parameters and gathers
them only through the root's forward, which the encoding pass bypasses. DeepSpeed ZeRO-3: see `configure_deepspeed`.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..tuner import GenerativeAdapterModel


class ShardingConfigError(ValueError):
    """An accelerate FSDP/DeepSpeed setting the generator cannot train under; the message says what to set."""


def generator_modules(tuner: GenerativeAdapterModel) -> list[nn.Module]:
    """The modules (one `ParameterDict` per generator part and adapted layer) that hold the generator's tensors."""
    modules = []
    for layer in tuner.generator.layers.values():
        modules += [getattr(layer, name) for name in layer.adapter_layer_names if len(getattr(layer, name))]
    return modules


def generator_state_dict(tuner: GenerativeAdapterModel, deepspeed: bool = False) -> dict[str, torch.Tensor]:
    """The generator's tensors by their names in the peft model (what `save_pretrained` keeps), detached. With
    `deepspeed`, DeepSpeed's fp32 master weights (`safe_get_full_fp32_param`; a collective: every process calls
    it), not the model's bf16 copies."""
    if deepspeed:
        from deepspeed.utils import safe_get_full_fp32_param

    prefix = "base_model.model."
    state = {}
    for name, tensor in tuner.model.named_parameters():
        if tuner.prefix in name:
            master = safe_get_full_fp32_param(tensor) if deepspeed else None
            state[f"{prefix}{name}"] = (master if master is not None else tensor).detach()
    return state


def requested_but_off(accelerator, kind: str) -> bool:
    """`accelerate launch` with an FSDP (DeepSpeed) config exports ACCELERATE_USE_FSDP (ACCELERATE_USE_DEEPSPEED),
    but accelerate turns them on only for GPU-like devices: with `--use_cpu` it quietly runs DDP instead."""
    env, plugin = {"FSDP": ("ACCELERATE_USE_FSDP", "fsdp_plugin"),
                   "DeepSpeed": ("ACCELERATE_USE_DEEPSPEED", "deepspeed_plugin")}[kind]
    return os.environ.get(env, "false").lower() == "true" and getattr(accelerator.state, plugin, None) is None


def _quietly_ddp(kind: str) -> ShardingConfigError:
    return ShardingConfigError(
        f"The accelerate config asks for {kind}, but accelerate runs {kind} only on GPUs (and similar devices): on "
        "CPU processes (--use_cpu) it would quietly train with DDP, every process holding the whole base model. "
        f"Launch CPU processes with `--multi_gpu` (DDP) instead, or run the {kind} config on GPUs (to try it on "
        "CPU processes anyway, e.g. to measure memory: `-m peft_generative.training.cpu_sharding` in place of the "
        "training script)."
    )


def configure_fsdp(accelerator, tuner: GenerativeAdapterModel) -> bool:
    """Check the FSDP plugin (before `accelerator.prepare`) and keep the generator's tensors out of the sharding.
    Returns whether FSDP is on."""
    if requested_but_off(accelerator, "FSDP"):
        raise _quietly_ddp("FSDP")
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    if plugin is None:
        return False
    if int(plugin.fsdp_version) != 2:
        raise ShardingConfigError(
            f"FSDP version {plugin.fsdp_version}: the generator trains under FSDP2 only. Set `fsdp_version: 2` in "
            "the accelerate config (examples/accelerate/fsdp.yaml); FSDP1 gathers a unit's flattened parameters "
            "only in the root's forward, which contextualisation bypasses."
        )
    if plugin.activation_checkpointing:
        raise ShardingConfigError(
            "`fsdp_activation_checkpointing: true`: FSDP's own checkpoint wrapper recomputes the decoder layers "
            "without the batch's generated adapters (the gradients would be silently wrong). Set "
            "`fsdp_activation_checkpointing: false` and `gradient_checkpointing: true` in the training arguments: "
            "the trainer's checkpointing carries each row's adapter into the recomputation."
        )
    ignored = plugin.ignored_modules
    if isinstance(ignored, str):
        raise ShardingConfigError(
            f"`fsdp_ignored_modules: {ignored!r}`: leave it unset; the trainer keeps the generator's tensors out of "
            "the sharding itself (by module, which a name pattern cannot be combined with)."
        )
    plugin.ignored_modules = list(ignored or []) + generator_modules(tuner)
    return True


def enable_root_method(model: nn.Module, name: str) -> None:
    """Let `model.<name>(...)` run FSDP's root pre- and post-forward (once per model); no-op without FSDP2."""
    from torch.distributed.fsdp import FSDPModule, register_fsdp_forward_method

    registered = model.__dict__.setdefault("_peft_generative_fsdp_methods", set())
    if isinstance(model, FSDPModule) and name not in registered:
        register_fsdp_forward_method(model, name)
        registered.add(name)


def average_gradients(parameters: list[nn.Parameter]) -> None:
    """Average the gradients of replicated (FSDP-ignored) parameters over all processes in one all-reduce, as DDP
    would; a parameter without a gradient on some process counts as zero there."""
    import torch.distributed as dist

    trainable = [p for p in parameters if p.requires_grad]
    if not trainable or not dist.is_initialized() or dist.get_world_size() == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in trainable]
    flat = torch.cat([g.reshape(-1).to(torch.float32) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p, g in zip(trainable, grads):
        mean = flat[offset:offset + g.numel()].view_as(g)
        if p.grad is None:
            p.grad = mean.to(p.dtype, copy=True)
        else:
            p.grad.copy_(mean)
        offset += g.numel()



def configure_deepspeed(accelerator, tuner: GenerativeAdapterModel) -> int:
    """DeepSpeed (before `accelerator.prepare`); returns the ZeRO stage (0: no DeepSpeed). ZeRO-1/2 shard the
    optimizer state and the gradients; the parameters stay whole on every process, so nothing changes. ZeRO-3
    partitions the parameters too, and gathers each only in its own module's forward, which the generator's tensors
    are used outside of: they are made ZeRO-3 "persistent" parameters (`stage3_param_persistence_threshold` at least
    the largest generator tensor; the base's norms and biases under that size stay whole too), which DeepSpeed
    gathers again after every step, and `gather_persistent` gathers them before the first."""
    if requested_but_off(accelerator, "DeepSpeed"):
        raise _quietly_ddp("DeepSpeed")
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return 0
    if plugin.zero_stage == 3:
        zero = plugin.deepspeed_config.setdefault("zero_optimization", {})
        largest = max(p.numel() for p in tuner.generator.parameters())
        threshold = zero.get("stage3_param_persistence_threshold", "auto")
        if threshold == "auto" or int(threshold) < largest:
            zero["stage3_param_persistence_threshold"] = largest
    return int(plugin.zero_stage)


def gather_persistent(parameters: list[nn.Parameter]) -> None:
    """ZeRO-3: gather the generator's (persistent) tensors where DeepSpeed has not yet (before the first step)."""
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    missing = [p for p in parameters if getattr(p, "ds_status", None) == ZeroParamStatus.NOT_AVAILABLE]
    if missing:
        missing[0].all_gather(param_list=missing)
