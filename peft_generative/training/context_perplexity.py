"""Held-out perplexity of the self-supervised objectives, with the generated adapter and two baselines.

For each packed block (`num_segments` segments): the context is all but the last segment. Completion = the last
segment; reconstruction = a window of the context. Each target is scored the same way with:
- `adapter`: the question-free model carrying the adapter generated from the context;
- `no_context`: the base model on the target alone;
- `in_prompt`: the base model with the context tokens in front of the target (loss on the target only);
- `adapter_other_context` (the control, with `control=True` and at least two blocks): the model carrying the adapter
  generated from the *next* block's context. The gap between `adapter` and this control is what the adapter knows
  about its own context; the gap between this control and `no_context` is what it learned about the domain.
"""

from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

import torch
from transformers import TrainerCallback

from ..progress import progress_bar
from ..tuner import tuner_of
from ..utils.batching import pad_rows
from .collation import COMPLETION, RECONSTRUCTION, GenerativeAdapterCollator, pack_text

logger = logging.getLogger(__name__)


def _nll(model, input_ids, attention_mask, labels) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    target = labels[:, 1:]
    mask = target != -100
    logp = torch.log_softmax(logits, dim=-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(logp * mask).sum(-1), mask.sum(-1)


@torch.no_grad()
def context_perplexity(model, tokenizer, texts: Sequence[str], *, num_segments: int = 3, segment_length: int = 128,
                       max_blocks: int = 32, batch_size: int = 4, progress: bool = True,
                       control: bool = True, baselines: bool = True) -> dict:
    """Perplexities `{objective: {method: ppl}}` over up to `max_blocks` blocks packed from `texts`.

    `baselines=False` skips the two scores that do not depend on the generator (no context, context in the
    prompt; the latter is the costliest), for comparing many generators on the same blocks."""
    from datasets import Dataset

    tuner = tuner_of(model)
    was_training = model.training
    model.eval()
    blocks, _ = pack_text(Dataset.from_dict({"text": list(texts)}), tokenizer, num_segments * segment_length)
    blocks = blocks.select(range(min(max_blocks, len(blocks))))
    collate = GenerativeAdapterCollator(pad_token_id=tokenizer.pad_token_id or 0, num_segments=num_segments,
                                        segment_length=segment_length)
    device = next(model.parameters()).device
    methods = ("adapter",) + (("no_context", "in_prompt") if baselines else ()) \
        + (("adapter_other_context",) if control and len(blocks) > 1 else ())
    totals = {obj: {m: [0.0, 0] for m in methods} for obj in (COMPLETION, RECONSTRUCTION)}
    starts = range(0, len(blocks), batch_size)
    for start in progress_bar(starts, desc="perplexity", enabled=progress, leave=False):
        indices = range(start, min(start + batch_size, len(blocks)))
        batch = collate([blocks[i] for i in indices])
        ids, mask, labels = (batch[k].to(device) for k in ("input_ids", "attention_mask", "labels"))
        contexts = list(batch["context"])
        if "adapter_other_context" in methods:  # the control needs the context of the block after this batch too
            contexts += collate([blocks[(indices[-1] + 1) % len(blocks)]])["context"]
        made = tuner.contextualize(contexts, activate=False, progress=False)
        scores = {}
        with tuner.use_context(made.rows(batch["context_index"])):
            scores["adapter"] = _nll(model, ids, mask, labels)
        if "adapter_other_context" in methods:  # block i carries block i + 1's adapter
            with tuner.use_context(made.rows(batch["context_index"] + 1)):
                scores["adapter_other_context"] = _nll(model, ids, mask, labels)
        if baselines:
            with tuner.use_context(None):
                scores["no_context"] = _nll(model, ids, mask, labels)
                prompt_rows = [batch["context"][c] + ids[r][mask[r].bool()].tolist()
                               for r, c in enumerate(batch["context_index"].tolist())]
                prompt_labels = [[-100] * len(batch["context"][c]) + labels[r][mask[r].bool()].tolist()
                                 for r, c in enumerate(batch["context_index"].tolist())]
                padded = pad_rows(prompt_rows, collate.pad_token_id, labels=prompt_labels)
                scores["in_prompt"] = _nll(model, padded["input_ids"].to(device), padded["attention_mask"].to(device),
                                           padded["labels"].to(device))
        for method, (nll, count) in scores.items():
            for obj in (COMPLETION, RECONSTRUCTION):
                rows = (batch["objective"] == obj).to(nll.device)
                totals[obj][method][0] += nll[rows].sum().item()
                totals[obj][method][1] += count[rows].sum().item()
    model.train(was_training)
    names = {COMPLETION: "completion", RECONSTRUCTION: "reconstruction"}
    return {names[obj]: {m: math.exp(t / max(n, 1)) for m, (t, n) in methods.items()}
            for obj, methods in totals.items()} | {"blocks": len(blocks)}


class PerplexityCallback(TrainerCallback):
    """Logs held-out reconstruction/completion perplexity (adapter vs. no context vs. context in prompt, and the
    control: another block's adapter) every `every_steps` steps and at the end of training."""

    def __init__(self, tokenizer, texts: Sequence[str], every_steps: int = 50, max_blocks: int = 16,
                 num_segments: Optional[int] = None, segment_length: Optional[int] = None, control: bool = True):
        self.tokenizer = tokenizer
        self.texts = list(texts)
        self.every_steps = every_steps
        self.max_blocks = max_blocks
        self.num_segments = num_segments
        self.segment_length = segment_length
        self.control = control

    def _run(self, args, state, model):
        result = context_perplexity(model, self.tokenizer, self.texts,
                                    num_segments=self.num_segments or args.num_segments,
                                    segment_length=self.segment_length or args.segment_length,
                                    max_blocks=self.max_blocks, progress=False, control=self.control)
        logs = {f"ppl_{obj}_{method}": value for obj in ("completion", "reconstruction")
                for method, value in result[obj].items()}
        state.log_history.append({**logs, "step": state.global_step})
        logger.info("held-out perplexity at step %d: %s", state.global_step, {k: round(v, 2) for k, v in logs.items()})

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every_steps and state.global_step % self.every_steps == 0:
            self._run(args, state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not self.every_steps or state.global_step % self.every_steps:
            self._run(args, state, model)
