"""`GenerativeAdapterTrainer`: TRL's `SFTTrainer`, taught to train a generator.

Every batch row carries a context; the trainer encodes the batch's contexts into per-row adapters (with
gradients through the generator) and computes the LM loss on the targets with those adapters active. The frozen
base model never receives gradients.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
from trl import SFTConfig, SFTTrainer

from .config import GenerativeAdapterConfig
from .context import GeneratedContext
from .layer import GenerativeLinear
from .model import GenerativeAdapterModel
from .training_data import (
    COMPLETION,
    INSTRUCTION,
    RECONSTRUCTION,
    GenerativeAdapterCollator,
    dataset_kind,
    pack_text,
    split_mixed,
    tokenize_instruction,
)

logger = logging.getLogger(__name__)


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
        frozen_generator_parts: generator tensors kept fixed, by name: `norm`, `A1`, `A2`, `A3`, `B`. The encoder,
            which writes the state from the context, is `norm`, `A2` and `A3`; the read-out, which turns a state
            into the LoRA, is `A1` and `B`. Freezing the read-out (`A1 B`) trains only what is written into the
            state.
    """

    num_segments: int = field(default=2, metadata={"help": "Segments per text block (context = all but the last)."})
    segment_length: int = field(default=256, metadata={"help": "Tokens per segment."})
    reconstruction_length: Optional[int] = field(default=None, metadata={"help": "Reconstruction window tokens."})
    reconstruction_weight: Optional[float] = field(default=None, metadata={"help": "Mixing weight, None = token avg."})
    text_weight: float = field(default=0.5, metadata={"help": "Mixed datasets: weight of the text loss."})
    contrast_weight: float = field(default=0.0, metadata={"help": "Weight of the own-vs-other-context loss."})
    frozen_generator_parts: list[str] = field(
        default_factory=list,
        metadata={"help": f"Generator tensors kept fixed: any of {list(GENERATOR_PARTS)} (e.g. A1 B: the read-out)."},
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


class GenerativeAdapterTrainer(SFTTrainer):
    """Trains the generator of a Generative Adapter model with TRL's SFT machinery.

    Pass a base model (or its path) with `peft_config=GenerativeAdapterConfig(...)`, or an already wrapped
    `PeftModel`. `train_dataset` is either plain `text` (self-supervised pretraining) or `context` plus
    `messages` / `prompt`+`completion` (instruction tuning), or both kinds of row in one dataset (rows with an empty
    `context` are text rows), e.g. instruction data that replays pretraining text.
    """

    def __init__(self, model, args: Optional[GenerativeAdapterTrainingConfig] = None, train_dataset=None,
                 eval_dataset=None, processing_class=None, peft_config: Optional[GenerativeAdapterConfig] = None,
                 data_collator=None, **kwargs):
        if args is None:
            args = GenerativeAdapterTrainingConfig(output_dir="generative-adapter")
        elif not isinstance(args, GenerativeAdapterTrainingConfig):
            raise TypeError("`args` must be a GenerativeAdapterTrainingConfig (an SFTConfig with the objective's fields).")
        if peft_config is not None and not isinstance(peft_config, GenerativeAdapterConfig):
            raise TypeError("GenerativeAdapterTrainer trains a generator: pass a GenerativeAdapterConfig.")
        if processing_class is None:
            raise ValueError("Pass the base model's tokenizer as `processing_class`.")
        if processing_class.pad_token is None:
            processing_class.pad_token = processing_class.eos_token
        if data_collator is None:
            data_collator = GenerativeAdapterCollator(
                pad_token_id=processing_class.pad_token_id,
                num_segments=args.num_segments,
                segment_length=args.segment_length,
                reconstruction_length=args.reconstruction_length,
                seed=args.seed,
            )
        self.packing_stats: dict = {}
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, peft_config=peft_config, data_collator=data_collator,
                         **kwargs)
        if not isinstance(self._tuner(), GenerativeAdapterModel):
            raise TypeError("The model is not a Generative Adapter model: pass peft_config=GenerativeAdapterConfig().")
        self._tuner().set_tokenizer(processing_class)
        self._freeze(args.frozen_generator_parts)

    def _freeze(self, parts) -> None:
        """Keep the named generator tensors fixed (before the optimizer is built, so it never holds them)."""
        layers = self._tuner()._generators().values()
        if "B" in parts and all(not p.any() for layer in layers for p in layer.generator_B.values()):
            raise ValueError(
                "`frozen_generator_parts` includes B, but B is all zeros (a fresh generator starts that way), so no "
                "other part would get a gradient either. Start from a trained generator (`init_generator`) or "
                "leave B trainable."
            )
        for layer in layers:
            for part in parts:
                for parameter in getattr(layer, f"generator_{part}").values():
                    parameter.requires_grad_(False)

    # ---- data ----------------------------------------------------------------------------------------------------
    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        columns = list(dataset.column_names)
        if "block" in columns or ("context" in columns and "input_ids" in columns):
            return dataset  # already prepared
        kind = dataset_kind(columns, args.dataset_text_field)
        if kind == "text":
            return self._pack(dataset, processing_class, args, dataset_name)
        if kind == "instruction":
            return self._tokenize(dataset, processing_class, args, dataset_name)
        instruction_rows, text_rows = split_mixed(dataset, args.dataset_text_field)
        if not text_rows:
            return self._tokenize(dataset, processing_class, args, dataset_name)
        packed = self._pack(dataset.select(text_rows), processing_class, args, dataset_name)
        if not instruction_rows:
            return packed
        tokenized = self._tokenize(dataset.select(instruction_rows), processing_class, args, dataset_name)
        blocks, n = list(packed["block"]), len(tokenized)
        self.packing_stats[dataset_name]["instruction_rows"] = n
        from datasets import Dataset

        return Dataset.from_dict({
            "block": blocks + [[] for _ in range(n)],
            "context": [""] * len(blocks) + list(tokenized["context"]),
            "input_ids": [[] for _ in blocks] + list(tokenized["input_ids"]),
            "labels": [[] for _ in blocks] + list(tokenized["labels"]),
        })

    def _pack(self, dataset, processing_class, args, dataset_name):
        prepared, stats = pack_text(dataset, processing_class, args.num_segments * args.segment_length,
                                    args.dataset_text_field)
        self.packing_stats[dataset_name] = stats
        logger.info("packed %s dataset: %s", dataset_name, stats)
        return prepared

    @staticmethod
    def _tokenize(dataset, processing_class, args, dataset_name):
        return dataset.map(
            tokenize_instruction,
            fn_kwargs={"tokenizer": processing_class, "max_length": args.max_length},
            remove_columns=list(dataset.column_names),
            desc=f"Tokenizing {dataset_name} dataset",
        )

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["block", "context", "input_ids", "labels"]

    # ---- loss ----------------------------------------------------------------------------------------------------
    def _tuner(self) -> GenerativeAdapterModel:
        unwrapped = self.accelerator.unwrap_model(self.model)
        return unwrapped.base_model

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        contexts = inputs.pop("context")
        index = inputs.pop("context_index")
        objective = inputs.pop("objective")
        per_context = self._contextualize(contexts)
        contrast = self.args.contrast_weight > 0 and bool((objective == INSTRUCTION).any())
        with self._tuner().use_context(per_context.rows(index)):
            if bool((objective == INSTRUCTION).all()) and not contrast:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss, outputs, nll, count = self._objective_loss(model, inputs, objective)
        if contrast:
            loss = loss + self.args.contrast_weight * self._contrast_loss(model, inputs, objective, contexts, index,
                                                                          per_context, nll, count)
        return (loss, outputs) if return_outputs else loss

    def _contextualize(self, contexts: list) -> GeneratedContext:
        """One adapter per context; text blocks arrive as token ids, instruction contexts as strings (which get the
        tokenizer's chunk prefix, exactly as at inference), so a mixed batch is encoded in two groups."""
        groups = [[i for i, c in enumerate(contexts) if not isinstance(c, str)],
                  [i for i, c in enumerate(contexts) if isinstance(c, str)]]
        parts = [
            self._tuner().contextualize([contexts[i] for i in group], tokenizer=self.processing_class,
                                        requires_grad=torch.is_grad_enabled(), activate=False, progress=False)
            for group in groups if group
        ]
        if len(parts) == 1:
            return parts[0]
        order = groups[0] + groups[1]
        return GeneratedContext.stack(parts).rows([order.index(i) for i in range(len(contexts))])

    def _objective_loss(self, model, inputs, objective):
        """The loss of a batch by objective (completion and reconstruction of text rows, answers of instruction rows),
        with each objective's loss logged on its own. Also returns each row's summed NLL and target count."""
        mode = "train" if self.model.training else "eval"
        outputs = model(**inputs, use_cache=False, fused_lm_head=True)
        nll = -outputs.log_probs.sum(-1)
        count = outputs.label_mask.sum(-1)
        parts = {}
        for name, kind in (("completion", COMPLETION), ("reconstruction", RECONSTRUCTION),
                           ("instruction", INSTRUCTION)):
            rows = (objective == kind).to(nll.device)
            if rows.any():
                parts[name] = (nll[rows].sum(), count[rows].sum().clamp(min=1))
        loss = None
        if "completion" in parts:
            (c_sum, c_n), (r_sum, r_n) = parts["completion"], parts["reconstruction"]
            weight = self.args.reconstruction_weight
            loss = (c_sum + r_sum) / (c_n + r_n) if weight is None else \
                (1 - weight) * c_sum / c_n + weight * r_sum / r_n
        if "instruction" in parts:
            i_sum, i_n = parts["instruction"]
            answers = i_sum / i_n
            loss = answers if loss is None else (1 - self.args.text_weight) * answers + self.args.text_weight * loss
        for name, (total, n) in parts.items():
            self._metrics[mode][f"loss_{name}"].append((total / n).item())
        if mode == "train":
            local = inputs["attention_mask"].sum()
            self._total_train_tokens += self.accelerator.gather_for_metrics(local).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss, outputs, nll, count

    def _contrast_loss(self, model, inputs, objective, contexts, index, per_context, nll, count):
        """`softplus(nll_own - nll_other)` averaged over the instruction rows that have a partner: the next
        instruction row (cyclically) whose context differs. Zero (and logged as such) when no row has one."""
        mode = "train" if self.model.training else "eval"
        rows = [i for i in range(len(objective)) if int(objective[i]) == INSTRUCTION]
        own, partner = [], []
        for position, row in enumerate(rows):
            for step in range(1, len(rows)):
                other = rows[(position + step) % len(rows)]
                if contexts[int(index[other])] != contexts[int(index[row])]:
                    own.append(row)
                    partner.append(int(index[other]))
                    break
        if not own:
            self._metrics[mode]["loss_contrast"].append(0.0)
            return nll.sum() * 0.0
        sub = {key: inputs[key][own] for key in ("input_ids", "attention_mask", "labels")}
        # the unwrapped model: a DDP forward broadcasts buffers, and ranks whose batches differ in partners would run
        # different numbers of forwards and hang; the gradients still reach the generator's DDP-reduced parameters
        with self._tuner().use_context(per_context.rows(partner)):
            outputs = self.accelerator.unwrap_model(model)(**sub, use_cache=False, fused_lm_head=True)
        n = outputs.label_mask.sum(-1).clamp(min=1)
        nll_other = -outputs.log_probs.sum(-1) / n
        nll_own = nll[own] / count[own].clamp(min=1)
        loss = torch.nn.functional.softplus(nll_own - nll_other).mean()
        self._metrics[mode]["loss_contrast"].append(loss.item())
        self._metrics[mode]["contrast_gap"].append((nll_other - nll_own).mean().item())
        return loss
