"""`GenerativeAdapterTrainingConfig`: TRL's `SFTConfig` plus the self-supervised and context-specificity objectives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from trl import SFTConfig

from ..tuner import GenerativeLinear

# the names `frozen_generator_parts` accepts: the layer's generator tensors without their "generator_" prefix
GENERATOR_PARTS = tuple(name.removeprefix("generator_") for name in GenerativeLinear.adapter_layer_names)


@dataclass
class GenerativeAdapterTrainingConfig(SFTConfig):
    """`SFTConfig` plus the self-supervised objective of Generative Adapter.

    Args:
        num_segments: segments per packed text block; the first `num_segments - 1` form the context.
        segment_length: tokens per segment (the completion target length).
        reconstruction_length: tokens of the reconstruction window (default: `segment_length`).
        reconstruction_weight: `None` (default, as in the paper): one token-averaged loss over completion and
            reconstruction tokens; a number `w` in [0, 1]: `(1 - w) * completion + w * reconstruction`.
        text_weight: mixed datasets (text and instruction rows): a batch holding both kinds is trained on
            `(1 - text_weight) * instruction + text_weight * text`, each a token average of its own, so a few short
            answers are not drowned by long text targets.
        contrast_weight: weight of a context-specificity loss on instruction rows (0 = off). Each instruction row is
            also scored with the adapter of another row's context (the next row in the batch with a different
            context); the loss `softplus(nll_own - nll_other)` (per-token average answer NLL of each row) rewards
            adapters that help their own context's answers more than anyone else's, which the answer loss alone
            does not ask for (an adapter can lower it by encoding only the answer format). Costs one more forward
            and backward over the instruction rows. Logged: `loss_contrast` and `contrast_gap` (`nll_other -
            nll_own`, positive when the adapters are specific to their context).
        distill_weight: weight of a dense distillation loss on instruction rows (0 = off; added to the loss): the
            teacher is the same frozen base model with the context in the prompt (as in the prompting baseline), the
            student the model with the generated adapter and no context; the loss is the KL from the teacher's
            top-`distill_top_k` distribution (renormalised) to the student's, averaged over answer tokens. Every answer
            token gives a whole distribution instead of one label (Doc-to-LoRA, Cartridges). Logged: `loss_distill`.
        distill_top_k: how many of the teacher's most likely tokens are kept per answer token.
        distill_where_teacher_right: distil only the answer tokens the teacher ranks first (its top-1 is the gold
            token): the tokens it copies from the context, such as the rest of a name, and not the ones where its
            answer format differs. Logged: `distill_kept`, the share of answer tokens kept.
        context_norm_weight: weight of a penalty on the size of the part of each adapter written from its context
            (`||delta_W||_F^2` summed over modules, averaged over the batch's contexts; 0 = off). With a generator's
            `shared_rank`, what every context shares is cheaper in the shared LoRA, so the penalty pushes it there
            (issue 22's style/content split). Logged: `context_norm`.
        frozen_generator_parts: generator tensors kept fixed, by name: `norm`, `A1`, `A2`, `A3`, `B` (and `gate`,
            `shared_A`, `shared_B`, `key_conv`, `value_conv`, `key_lookahead` where the generator has them). The
            encoder, which writes the state from the context, is `norm`, `A2` and `A3` (and the convolutions); the
            read-out, which turns a state into the LoRA, is `A1` and `B`. Freezing the read-out (`A1 B`) trains only
            what is written into the state.
        generator_shard_mib: also write the generator of every checkpoint and of the final model as safetensors files
            of at most this many MiB, exactly, into its `generator_shards/` folder (`peft_generative.training.shards`;
            `python -m peft_generative.training.shards join` makes a generator directory of them again), for machines
            that hand back only small files. None (default) = not written.
    """

    num_segments: int = field(default=2, metadata={"help": "Segments per text block (context = all but the last)."})
    segment_length: int = field(default=256, metadata={"help": "Tokens per segment."})
    reconstruction_length: Optional[int] = field(default=None, metadata={"help": "Reconstruction window tokens."})
    reconstruction_weight: Optional[float] = field(default=None, metadata={"help": "Mixing weight, None = token avg."})
    text_weight: float = field(default=0.5, metadata={"help": "Mixed datasets: weight of the text loss."})
    contrast_weight: float = field(default=0.0, metadata={"help": "Weight of the own-vs-other-context loss."})
    distill_weight: float = field(
        default=0.0, metadata={"help": "Weight of the KL to the in-context teacher on answer tokens (0 = off)."}
    )
    distill_top_k: int = field(default=16, metadata={"help": "Teacher log-probabilities kept per answer token."})
    distill_where_teacher_right: bool = field(
        default=False, metadata={"help": "Distil only the answer tokens the teacher ranks first."}
    )
    context_norm_weight: float = field(
        default=0.0, metadata={"help": "Weight of a penalty on the size of the context-written adapter (0 = off)."}
    )
    frozen_generator_parts: list[str] = field(
        default_factory=list,
        metadata={"help": f"Generator tensors kept fixed: any of {list(GENERATOR_PARTS)} (e.g. A1 B: the read-out)."},
    )
    generator_shard_mib: Optional[float] = field(
        default=None, metadata={"help": "Also save each checkpoint's generator as files of at most this many MiB."}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (paper: 1e-4 pretraining)."})

    def __post_init__(self):
        if self.bf16 is None and not self.fp16 and (self.use_cpu or not _accelerator_available()):
            # TRL turns bf16 autocast on by default; on CPUs without bf16 matrix units it runs many times slower
            self.bf16 = False
        super().__post_init__()
        if self.num_segments < 2:
            raise ValueError("`num_segments` must be >= 2: at least one context segment and one target segment.")
        if self.segment_length < 2:
            raise ValueError("`segment_length` must be >= 2.")
        if self.reconstruction_weight is not None and not 0 <= self.reconstruction_weight <= 1:
            raise ValueError("`reconstruction_weight` must be None or in [0, 1].")
        if not 0 <= self.text_weight <= 1:
            raise ValueError("`text_weight` must be in [0, 1].")
        if not self.distill_weight >= 0:
            raise ValueError("`distill_weight` must be >= 0 (0 turns distillation off).")
        if self.distill_top_k < 1:
            raise ValueError("`distill_top_k` must be a positive number of tokens.")
        if not self.context_norm_weight >= 0:
            raise ValueError("`context_norm_weight` must be >= 0 (0 turns the penalty off).")
        if self.generator_shard_mib is not None and not self.generator_shard_mib > 0:
            raise ValueError("`generator_shard_mib` must be a positive size in MiB, or None (no shards).")
        if not self.contrast_weight >= 0:
            raise ValueError("`contrast_weight` must be >= 0 (0 turns the context-specificity loss off).")
        unknown = sorted(set(self.frozen_generator_parts) - set(GENERATOR_PARTS))
        if unknown:
            raise ValueError(
                f"`frozen_generator_parts`: unknown part(s) {unknown}; choose from {list(GENERATOR_PARTS)}."
            )
        if set(self.frozen_generator_parts) == set(GENERATOR_PARTS):
            raise ValueError("`frozen_generator_parts` names every part of the generator: nothing would be trained.")


def _accelerator_available() -> bool:
    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()) or \
        torch.backends.mps.is_available()
