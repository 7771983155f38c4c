"""Running the frozen LM the three compared ways, in batches: prompts, greedy answers, continuation log-likelihoods.

- `closed_book`: the base model (`use_context(None)`), question only;
- `prompting`: the base model with the context in the prompt (the user message is `context + "\\n\\n" + question`,
  the format of `peft_generative.answering.chat_inputs`);
- `adapter`: the model carrying the adapter generated from the context, question only.

Prompts that would not fit the base model's positions are shortened by dropping the *start* of the context (the
most recent text is kept); such answers are flagged `truncated`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from ..answering import chat_inputs
from ..tuner import GeneratedContext, tuner_of
from ..tuner.inputs import chunk_prefix
from ..utils.batching import pad_rows
from ..utils.chat import assistant_turn_labels, with_context_in_prompt
from .method_costs import base_config, contextualize_flops

__all__ = ["METHODS", "ALL_METHODS", "ADAPTER_METHODS", "METHOD_LABELS", "Unit", "Engine"]

METHODS = ("closed_book", "prompting", "adapter")  # the default comparison
# the control: each question answered with the adapter of *another* context of the file (the next one, cyclically);
# what the adapter gains over it is what this context's adapter carries, beyond style learned in training
CONTROL = "adapter_other_context"
ALL_METHODS = METHODS + (CONTROL,)
ADAPTER_METHODS = ("adapter", CONTROL)
METHOD_LABELS = {"closed_book": "closed-book", "prompting": "context in prompt", "adapter": "generative adapter",
                 CONTROL: "adapter of another context (control)"}


_TOKEN_TABLES: dict = {}


def _token_tables(tokenizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per vocabulary id: does its text contain a newline, any non-space, non-space before its first newline."""
    key = (type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""), len(tokenizer))
    if key not in _TOKEN_TABLES:
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        _TOKEN_TABLES[key] = (
            torch.tensor(["\n" in t for t in texts]),
            torch.tensor([bool(t.strip()) for t in texts]),
            torch.tensor([bool(t.split("\n")[0].strip()) for t in texts]),
        )
    return _TOKEN_TABLES[key]


class FirstLineStop(StoppingCriteria):
    """Stops a row once its answer has a complete first line (a newline after some non-space text)."""

    def __init__(self, tokenizer, prompt_width: int):
        self.newline, self.content, self.content_before_newline = _token_tables(tokenizer)
        self.width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        generated = input_ids[:, self.width:].cpu().clamp(max=len(self.newline) - 1)
        last = generated[:, -1]
        before = self.content[generated[:, :-1]].any(-1)
        return (self.newline[last] & (before | self.content_before_newline[last])).to(input_ids.device)


@dataclass
class Unit:
    """One context and the queries asked against it."""

    uid: str
    context: str
    queries: list
    group: str
    context_tokens: int = 0
    meta: dict = field(default_factory=dict)
    bucket: str = ""


class Engine:
    """Wraps a peft model carrying a Generative Adapter and its tokenizer."""

    def __init__(self, model, tokenizer, *, max_new_tokens: int = 32, batch_size: int = 8, refine_steps: int = 0):
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be positive.")
        if refine_steps < 0:
            raise ValueError("refine_steps must be >= 0 (0: one-pass adapters, no test-time refinement).")
        self.refine_steps = refine_steps
        self.model = model
        self.tokenizer = tokenizer
        self.tuner = tuner_of(model)
        self.config = base_config(model)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.max_positions = getattr(self.config, "max_position_embeddings", None) or 1 << 30
        self.device = next(model.parameters()).device
        eos = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos if eos is not None else 0)
        self.stop_ids = {i for i in (eos, tokenizer.pad_token_id) if i is not None}
        self.chunk_prefix_tokens = len(chunk_prefix(tokenizer))
        self._continuations: dict[str, list[int]] = {}
        _token_tables(tokenizer)  # built once here, not inside the first timed batch

    @torch.no_grad()
    def warmup(self) -> None:
        """One short generation and one contextualisation, untimed, so first-call costs do not land on a method."""
        ids = torch.tensor([self.chat_ids("Hello")], device=self.device)
        with self.tuner.use_context(None):
            self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=2,
                                do_sample=False, pad_token_id=self.pad_id)
        self.tuner.contextualize("Hello there.", tokenizer=self.tokenizer, activate=False, progress=False)

    # ---- text and prompts --------------------------------------------------------------------------------------
    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, text: str) -> int:
        return len(self.token_ids(text))

    def chat_ids(self, user_text: str, context: Optional[str] = None) -> list[int]:
        return chat_inputs(self.tokenizer, user_text, context)["input_ids"][0].tolist()

    def _keep_last(self, text: str, tokens: int) -> str:
        ids = self.token_ids(text)
        return self.tokenizer.decode(ids[-tokens:]) if tokens > 0 else ""

    def prompt(self, user_text: str, context: Optional[str] = None, reserve: int = 0) -> tuple[list[int], bool]:
        """Prompt ids (chat format) and whether the context had to be shortened to leave `reserve` positions."""
        if context is None:
            return self.chat_ids(user_text), False
        context = context.strip()
        ids = self.chat_ids(user_text, context)
        if len(ids) + reserve <= self.max_positions:
            return ids, False
        room = self.max_positions - reserve - len(self.chat_ids(user_text)) - 4
        while True:  # re-tokenising across the cut may add a token or two: shrink until it fits
            kept = self._keep_last(context, room)
            ids = self.chat_ids(user_text, kept) if kept.strip() else self.chat_ids(user_text)
            if len(ids) + reserve <= self.max_positions or room <= 0:
                return ids, True
            room -= max(8, len(ids) + reserve - self.max_positions)

    # ---- contexts ----------------------------------------------------------------------------------------------
    def contextualize(self, text: str) -> tuple[GeneratedContext, float, float]:
        """(adapter, seconds, estimated FLOPs) for one context (the FLOPs of the one encoding pass; test-time
        refinement's steps are in the seconds only)."""
        start = time.perf_counter()
        ctx = self.tuner.contextualize(text, tokenizer=self.tokenizer, activate=False, progress=False,
                                       refine_steps=self.refine_steps)
        seconds = time.perf_counter() - start
        return ctx, seconds, contextualize_flops(self.model, ctx.num_tokens[0], self.chunk_prefix_tokens)

    def _batch_context(self, contexts: Optional[Sequence[Optional[GeneratedContext]]]):
        if contexts is None or all(c is None for c in contexts):
            return None
        return GeneratedContext.stack(list(contexts))

    # ---- generation --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompts: Sequence[list[int]],
                 contexts: Optional[Sequence[Optional[GeneratedContext]]] = None) -> list[tuple[str, int]]:
        """Greedy answers (cut at the first newline) and the number of tokens generated, for left-padded rows."""
        padded = pad_rows(prompts, self.pad_id, left=True)
        input_ids, mask = padded["input_ids"], padded["attention_mask"]
        width = input_ids.shape[1]
        ctx = self._batch_context(contexts)
        with self.tuner.use_context(ctx):
            out = self.model.generate(
                input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1, pad_token_id=self.pad_id,
                stopping_criteria=StoppingCriteriaList([FirstLineStop(self.tokenizer, width)]),
            )
        results = []
        for row in out[:, width:].tolist():
            n = next((i + 1 for i, t in enumerate(row) if t in self.stop_ids), len(row))
            text = self.tokenizer.decode(row[:n], skip_special_tokens=True).strip()
            results.append((text.split("\n")[0].strip(), n))
        return results

    # ---- log-likelihood of given continuations -------------------------------------------------------------------
    def continuation_ids(self, text: str) -> list[int]:
        """Tokens of `text` as the assistant's reply (up to its end-of-turn token): what option scoring scores."""
        if text not in self._continuations:
            tok = self.tokenizer
            if getattr(tok, "chat_template", None):
                chat = [{"role": "user", "content": "x"}, {"role": "assistant", "content": text}]
                full, labels = assistant_turn_labels(tok, chat, [False, True])
                ids = [t for t, label in zip(full, labels) if label != -100]
                eos = tok.eos_token_id
                if eos in ids:
                    ids = ids[: ids.index(eos) + 1]
            else:
                ids = self.token_ids(" " + text)
            if not ids:
                raise ValueError(f"Option {text!r} has no tokens.")
            self._continuations[text] = ids
        return self._continuations[text]

    @torch.no_grad()
    def continuation_logprobs(self, rows: Sequence[tuple[list[int], list[int]]],
                              contexts: Optional[Sequence[Optional[GeneratedContext]]] = None) -> list[float]:
        """Sum of log p(continuation | prompt) per `(prompt_ids, continuation_ids)` row (right-padded batch)."""
        seqs = [p + c for p, c in rows]
        padded = pad_rows(seqs, self.pad_id)
        input_ids, mask = padded["input_ids"], padded["attention_mask"]
        keep = torch.zeros(input_ids.shape, dtype=torch.bool)
        targets = []
        for i, ((p, c), s) in enumerate(zip(rows, seqs)):
            keep[i, len(p) - 1: len(s) - 1] = True  # positions predicting the continuation's tokens
            targets += c
        ctx = self._batch_context(contexts)
        with self.tuner.use_context(ctx):
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                logits_to_keep=keep.to(self.device)).logits
        logits = logits.reshape(-1, logits.shape[-1]).float()
        logp = torch.log_softmax(logits, dim=-1)
        picked = logp.gather(-1, torch.tensor(targets, device=logp.device).unsqueeze(-1)).squeeze(-1).cpu()
        out, start = [], 0
        for _, c in rows:
            out.append(picked[start: start + len(c)].sum().item())
            start += len(c)
        return out

    # ---- conversations -----------------------------------------------------------------------------------------
    @staticmethod
    def with_context(messages: list[dict], context: Optional[str]) -> list[dict]:
        """Put `context` in front of the first user message (or as a first user message before an assistant)."""
        return with_context_in_prompt(messages, context)

    def conversation_tokens(self, messages: list[dict]) -> tuple[list[int], list[int]]:
        """Token ids of a chat and labels on the scored assistant turns (`"scored": True`), -100 elsewhere."""
        return assistant_turn_labels(self.tokenizer, messages, [bool(m.get("scored")) for m in messages])

    @staticmethod
    def mark_scored(messages: list[dict]) -> list[dict]:
        """Assistant replies that follow a user message are scored; an opening assistant message is not (it answers
        nothing, and no prompt exists before it in the closed-book and adapter settings)."""
        out, seen_user = [], False
        for m in messages:
            seen_user = seen_user or m["role"] == "user"
            out.append({"role": m["role"], "content": m["content"],
                        "scored": m["role"] == "assistant" and seen_user})
        return out

    @torch.no_grad()
    def conversation_nll(self, messages: list[dict], context: Optional[str] = None,
                         ctx: Optional[GeneratedContext] = None) -> dict:
        """Negative log-likelihood of the assistant replies of `messages` (history in the prompt, as an adapter, or
        neither): `{"nll", "tokens", "sequence_tokens", "truncated"}`. The same tokens are scored in all three."""
        messages = self.mark_scored(messages)
        ids, labels = self.conversation_tokens(self.with_context(messages, context))
        truncated = False
        if context is not None and len(ids) > self.max_positions:
            bare = len(self.conversation_tokens(messages)[0])
            context = self._keep_last(context, self.max_positions - bare - 8)
            ids, labels = self.conversation_tokens(self.with_context(messages, context or None))
            truncated = True
        if len(ids) > self.max_positions:  # the session alone is too long: score its beginning
            ids, labels, truncated = ids[: self.max_positions], labels[: self.max_positions], True
        keep = torch.zeros((1, len(ids)), dtype=torch.bool)
        targets = [labels[p + 1] for p in range(len(ids) - 1) if labels[p + 1] != -100]
        for p in range(len(ids) - 1):
            keep[0, p] = labels[p + 1] != -100
        with self.tuner.use_context(ctx):
            logits = self.model(input_ids=torch.tensor([ids], device=self.device),
                                logits_to_keep=keep.to(self.device)).logits
        logp = torch.log_softmax(logits.reshape(-1, logits.shape[-1]).float(), dim=-1)
        picked = logp.gather(-1, torch.tensor(targets, device=logp.device).unsqueeze(-1))
        return {"nll": -picked.sum().item(), "tokens": len(targets), "sequence_tokens": len(ids),
                "truncated": truncated}
