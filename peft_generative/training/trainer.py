"""`GenerativeAdapterTrainer`: TRL's `SFTTrainer`, taught to train a generator.

Every batch row carries a context; the trainer encodes the batch's contexts into per-row adapters (with
gradients through the generator) and computes the LM loss on the targets with those adapters active. The frozen
base model never receives gradients.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Optional

import torch
from trl import SFTTrainer

from ..tuner import GeneratedContext, GenerativeAdapterConfig, GenerativeAdapterModel, tuner_of
from .collation import (
    TEACHER_COLUMNS,
    COMPLETION,
    INSTRUCTION,
    RECONSTRUCTION,
    GenerativeAdapterCollator,
    dataset_kind,
    pack_text,
    rows_of,
    split_mixed,
    tokenize_instruction,
)
from .config import GenerativeAdapterTrainingConfig
from .distillation import topk_kl
from .sharding import (average_gradients, configure_deepspeed, configure_fsdp, enable_root_method, gather_persistent,
                       generator_state_dict)
from .shards import SHARDS_DIR, write_generator_shards

logger = logging.getLogger(__name__)


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
        # the objectives' own metrics, averaged into each log entry by `log` (TRL keeps its own apart)
        self.objective_metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list),
                                                                      "eval": defaultdict(list)}
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, peft_config=peft_config, data_collator=data_collator,
                         **kwargs)
        try:
            tuner = self.tuner
        except TypeError as exc:
            raise TypeError(
                "The model is not a Generative Adapter model: pass peft_config=GenerativeAdapterConfig()."
            ) from exc
        tuner.set_tokenizer(processing_class)
        self._freeze(args.frozen_generator_parts)
        # FSDP2: the base model sharded, the generator whole on every process (see sharding.py)
        self.generator_replicated = configure_fsdp(self.accelerator, tuner)
        self.zero_stage = configure_deepspeed(self.accelerator, tuner)  # ZeRO-3: the generator stays whole too

    def _freeze(self, parts) -> None:
        """Keep the named generator tensors fixed (before the optimizer is built, so it never holds them)."""
        layers = self.tuner.generator.layers.values()
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
        if not any(p.requires_grad for p in self.tuner.generator.parameters()):
            raise ValueError(f"`frozen_generator_parts` {list(parts)} leaves no generator tensor to train (the "
                             "parts this generator lacks, such as a token gate or a shared LoRA, cannot be trained); "
                             "leave at least one part trainable.")

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        """The Trainer's save (checkpoints and the final model) and, with `generator_shard_mib`, the generator again as
        small files in `<output_dir>/generator_shards` (see `shards.py`)."""
        if self.generator_replicated or self.zero_stage:
            # FSDP, DeepSpeed: the main process writes a normal generator directory of the generator alone (whole on
            # every process; DeepSpeed's fp32 master weights), with no gathering of the sharded base (which the
            # Trainer would do, or skip under SHARDED_STATE_DICT / without zero3_save_16bit_model); checkpoints also
            # get FSDP's or DeepSpeed's own sharded files for resuming
            directory = output_dir or self.args.output_dir
            self._save(directory, state_dict=generator_state_dict(self.tuner, deepspeed=bool(self.zero_stage)))
            if self.args.push_to_hub and not _internal_call:
                self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)
        else:
            super().save_model(output_dir, _internal_call=_internal_call)
        if self.args.generator_shard_mib is not None and self.args.should_save:
            directory = output_dir or self.args.output_dir
            write_generator_shards(directory, os.path.join(directory, SHARDS_DIR),
                                   int(self.args.generator_shard_mib * 2**20))

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.generator_replicated and self.accelerator.sync_gradients:
            average_gradients(self.tuner.generator.parameters())  # FSDP leaves the generator's gradients to us
        return loss

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
            **{name: [[] for _ in blocks] + list(tokenized[name]) for name in TEACHER_COLUMNS
               if name in tokenized.column_names},
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
            fn_kwargs={"tokenizer": processing_class, "max_length": args.max_length,
                       "with_teacher": args.distill_weight > 0},
            remove_columns=list(dataset.column_names),
            desc=f"Tokenizing {dataset_name} dataset",
        )

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["block", "context", "input_ids", "labels", *TEACHER_COLUMNS]

    # ---- loss ----------------------------------------------------------------------------------------------------
    @property
    def tuner(self) -> GenerativeAdapterModel:
        """The generator's peft tuner (contextualize, use_context, the generator's layers)."""
        return tuner_of(self.accelerator.unwrap_model(self.model))

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        """Adds the averages of the objectives' metrics since the last log (`loss_completion`, `loss_contrast`,
        `contrast_gap`, ...; `eval_`-prefixed in evaluation) to the log entry."""
        mode = "train" if self.model.training else "eval"
        metrics = {key: sum(values) / len(values) for key, values in self.objective_metrics[mode].items() if values}
        self.objective_metrics[mode].clear()
        if mode == "eval":
            metrics = {f"eval_{key}": value for key, value in metrics.items()}
        logs.update(metrics)
        super().log(logs, start_time)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        contexts = inputs.pop("context")
        index = inputs.pop("context_index")
        objective = inputs.pop("objective")
        teacher = {key: inputs.pop(key) for key in list(inputs) if key.startswith("teacher_")}
        # the batch's layout decides what runs below: read it from the device once (one host sync each)
        kinds, index = objective.tolist(), index.tolist()
        per_context = self.contextualize(contexts)
        instruction = [kind == INSTRUCTION for kind in kinds]
        contrast = self.args.contrast_weight > 0 and any(instruction)
        with self.tuner.use_context(per_context.rows(index)):
            if all(instruction) and not contrast:
                result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
                loss, outputs = result if return_outputs else (result, None)
                nll = count = None
            else:
                loss, outputs, nll, count = self._objective_loss(model, inputs, kinds)
        if self.args.distill_weight > 0 and teacher:
            loss = loss + self.args.distill_weight * self._distill_loss(inputs, teacher, per_context.rows(index))
        if self.args.context_norm_weight > 0:
            size = per_context.context_delta_sq_norm().mean()
            self.objective_metrics["train" if self.model.training else "eval"]["context_norm"].append(size.item())
            loss = loss + self.args.context_norm_weight * size
        if contrast:
            loss = loss + self.args.contrast_weight * self._contrast_loss(model, inputs, kinds, contexts, index,
                                                                          per_context, nll, count)
        return (loss, outputs) if return_outputs else loss

    def contextualize(self, contexts: list) -> GeneratedContext:
        """One adapter per context; text blocks arrive as token ids, instruction contexts as strings (which get the
        tokenizer's chunk prefix, exactly as at inference), so a mixed batch is encoded in two groups."""
        groups = [[i for i, c in enumerate(contexts) if not isinstance(c, str)],
                  [i for i, c in enumerate(contexts) if isinstance(c, str)]]
        encode = self.tuner.contextualize
        if self.zero_stage == 3:
            gather_persistent(self.tuner.generator.parameters())
        if self.generator_replicated:  # through FSDP's root forward, so its set-up runs before the encoding pass
            enable_root_method(self.model, "contextualize")
            encode = self.model.contextualize
        parts = [
            encode([contexts[i] for i in group], tokenizer=self.processing_class,
                   requires_grad=torch.is_grad_enabled(), activate=False, progress=False)
            for group in groups if group
        ]
        if len(parts) == 1:
            return parts[0]
        order = groups[0] + groups[1]
        return GeneratedContext.stack(parts).rows([order.index(i) for i in range(len(contexts))])

    def _objective_loss(self, model, inputs, kinds: list[int]):
        """The loss of a batch by objective (completion and reconstruction of text rows, answers of instruction rows;
        `kinds`: each row's `Objective`), with each objective's loss logged on its own. Also returns each row's summed
        NLL and target count."""
        mode = "train" if self.model.training else "eval"
        outputs = model(**inputs, use_cache=False, fused_lm_head=True)
        nll = -outputs.log_probs.sum(-1)
        count = outputs.label_mask.sum(-1)
        parts = {}
        for name, kind in (("completion", COMPLETION), ("reconstruction", RECONSTRUCTION),
                           ("instruction", INSTRUCTION)):
            rows = rows_of(kinds, kind)
            if rows is not None:
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
        with torch.no_grad():  # one host sync for every objective's metric
            values = torch.stack([total / n for total, n in parts.values()]).tolist()
        for name, value in zip(parts, values):
            self.objective_metrics[mode][f"loss_{name}"].append(value)
        return loss, outputs, nll, count

    def _answer_logprobs(self, input_ids, attention_mask, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities over the vocabulary at the positions that predict labelled tokens, `(tokens, vocab)`,
        and those tokens `(tokens,)`: the LM head runs on those positions only."""
        logits, targets, _ = self.tuner.generator.labelled_logits(input_ids, attention_mask, labels)
        return torch.log_softmax(logits.float(), dim=-1), targets

    def _distill_loss(self, inputs, teacher, generated: GeneratedContext) -> torch.Tensor:
        """KL from the in-context teacher's top-k answer distribution to the student's (the student is the model with
        the instruction rows' generated adapters, `generated` holding one per batch row; the teacher is the base
        model with the context in its prompt, without gradient). Text rows of a mixed batch are not distilled."""
        mode = "train" if self.model.training else "eval"
        rows = teacher["teacher_rows"]
        with torch.no_grad(), self.tuner.use_context(None):
            teacher_logp, answer = self._answer_logprobs(teacher["teacher_input_ids"],
                                                         teacher["teacher_attention_mask"], teacher["teacher_labels"])
        with self.tuner.use_context(generated.rows(rows)):
            student_logp, _ = self._answer_logprobs(inputs["input_ids"][rows], inputs["attention_mask"][rows],
                                                    inputs["labels"][rows])
        if teacher_logp.shape[0] != student_logp.shape[0]:
            raise ValueError(f"The teacher labels {teacher_logp.shape[0]} answer tokens, the student "
                             f"{student_logp.shape[0]}: their tokenisations of the answers differ.")
        kl, kept = topk_kl(teacher_logp, student_logp, self.args.distill_top_k,
                           answer if self.args.distill_where_teacher_right else None)
        if self.args.distill_where_teacher_right:
            self.objective_metrics[mode]["distill_kept"].append(kept.float().mean().item() if kl.numel() else 0.0)
        kl = kl[kept]
        loss = kl.mean() if kl.numel() else student_logp.sum() * 0.0
        self.objective_metrics[mode]["loss_distill"].append(loss.item())
        return loss

    def _contrast_loss(self, model, inputs, kinds: list[int], contexts, index: list[int], per_context, nll, count):
        """`softplus(nll_own - nll_other)` averaged over the instruction rows that have a partner: the next
        instruction row (cyclically) whose context differs. Zero (and logged as such) when no row has one."""
        mode = "train" if self.model.training else "eval"
        rows = [i for i, kind in enumerate(kinds) if kind == INSTRUCTION]
        own, partner = [], []
        for position, row in enumerate(rows):
            for step in range(1, len(rows)):
                other = rows[(position + step) % len(rows)]
                if contexts[index[other]] != contexts[index[row]]:
                    own.append(row)
                    partner.append(index[other])
                    break
        if not own:
            self.objective_metrics[mode]["loss_contrast"].append(0.0)
            return nll.sum() * 0.0
        sub = {key: inputs[key][own] for key in ("input_ids", "attention_mask", "labels")}
        # the unwrapped model: a DDP forward broadcasts buffers, and ranks whose batches differ in partners would run
        # different numbers of forwards and hang; the gradients still reach the generator's DDP-reduced parameters
        with self.tuner.use_context(per_context.rows(partner)):
            outputs = self.accelerator.unwrap_model(model)(**sub, use_cache=False, fused_lm_head=True)
        n = outputs.label_mask.sum(-1).clamp(min=1)
        nll_other = -outputs.log_probs.sum(-1) / n
        nll_own = nll[own] / count[own].clamp(min=1)
        loss = torch.nn.functional.softplus(nll_own - nll_other).mean()
        self.objective_metrics[mode]["loss_contrast"].append(loss.item())
        self.objective_metrics[mode]["contrast_gap"].append((nll_other - nll_own).mean().item())
        return loss
