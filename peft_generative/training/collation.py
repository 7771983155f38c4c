"""Dataset preparation and batching for training a generator.

Two kinds of data:
- plain `text` (self-supervised, METHOD.md): documents are packed into one token stream (separated by EOS) and cut
  into blocks of `num_segments * segment_length` tokens. The first `num_segments - 1` segments are the context;
  the model carrying their adapter must predict the last segment (completion) and a window of the context itself
  (reconstruction).
- instruction data: a `context` string plus `messages` (chat) or `prompt` / `completion`. The context reaches the
  model only through the generated adapter; the loss is on the assistant tokens only.
- both in one dataset (`mixed`, e.g. instruction tuning that replays pretraining text so the generator keeps what
  pretraining taught it): rows with a non-empty `context` are instruction rows, the others are `text` rows.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Optional

import torch

from ..utils.batching import pad_rows
from ..utils.chat import assistant_turn_labels, with_context_in_prompt

# the in-context teacher's view of instruction rows, when distilling (see `tokenize_instruction`)
TEACHER_COLUMNS = ("teacher_input_ids", "teacher_labels")


class Objective(IntEnum):
    """What a batch row is trained on (the collator's `objective` column)."""

    COMPLETION = 0  # the segment after the context
    RECONSTRUCTION = 1  # a window of the context itself
    INSTRUCTION = 2  # the answer of an instruction row


COMPLETION, RECONSTRUCTION, INSTRUCTION = Objective.COMPLETION, Objective.RECONSTRUCTION, Objective.INSTRUCTION


def rows_of(kinds: list[int], kind: int):
    """The batch rows of one objective (`kinds`: each row's `Objective`): a slice when they are contiguous, as the
    collator lays batches out (indexing a device tensor with a slice needs no copy from the host), else a list of
    positions; None when there are none."""
    found = [i for i, k in enumerate(kinds) if k == kind]
    if not found:
        return None
    if found[-1] - found[0] + 1 == len(found):
        return slice(found[0], found[-1] + 1)
    return found


def dataset_kind(columns: list[str], text_field: str = "text") -> str:
    """`text`, `instruction` or `mixed` (both column sets: each row is one or the other)."""
    instruction = "context" in columns and ("messages" in columns or {"prompt", "completion"} <= set(columns))
    if instruction:
        return "mixed" if text_field in columns else "instruction"
    if text_field in columns:
        return "text"
    raise ValueError(
        f"Cannot train a generator on columns {columns}: use plain `{text_field}` (self-supervised), `context` "
        f"with `messages` or `prompt`/`completion` (instruction tuning), or both (rows with an empty `context` are "
        f"`{text_field}` rows)."
    )


def split_mixed(dataset, text_field: str = "text") -> tuple[list[int], list[int]]:
    """Row indices of the instruction rows (non-empty `context`) and of the text rows of a mixed dataset."""
    instruction, text = [], []
    for i, (context, body) in enumerate(zip(dataset["context"], dataset[text_field])):
        if isinstance(context, str) and context.strip():
            instruction.append(i)
        elif isinstance(body, str) and body.strip():
            text.append(i)
        else:
            raise ValueError(
                f"Row {i} of the mixed dataset has neither a `context` (instruction row) nor `{text_field}` (text "
                "row): fill one of them or drop the row."
            )
    return instruction, text


def pack_text(dataset, tokenizer, block_tokens: int, text_field: str = "text"):
    """Pack documents into blocks of `block_tokens` tokens. Returns (dataset with a `block` column, stats)."""
    from datasets import Dataset

    eos = tokenizer.eos_token_id
    stream: list[int] = []
    documents = 0
    for text in dataset[text_field]:
        if not text or not text.strip():
            continue
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            stream.append(eos)
        documents += 1
    n_blocks = len(stream) // block_tokens
    if n_blocks == 0:
        raise ValueError(
            f"The text dataset has {len(stream)} tokens, fewer than one training block ({block_tokens} tokens = "
            "num_segments x segment_length). Add text or shorten the segments."
        )
    blocks = [stream[i * block_tokens : (i + 1) * block_tokens] for i in range(n_blocks)]
    stats = {"documents": documents, "tokens": len(stream), "blocks": n_blocks,
             "tokens_left_over": len(stream) - n_blocks * block_tokens}
    return Dataset.from_dict({"block": blocks}), stats


def tokenize_conversation(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of a chat and labels that keep only the assistant turns (everything else -100); an opening
    assistant turn has no prompt to answer and is not learned."""
    scored = [m["role"] == "assistant" and i > 0 for i, m in enumerate(messages)]
    return assistant_turn_labels(tokenizer, messages, scored)


def tokenize_instruction(example: dict, tokenizer, max_length: Optional[int], with_teacher: bool = False) -> dict:
    """Token ids and answer-only labels of an instruction example; with `with_teacher`, also the in-context teacher's
    view (`teacher_input_ids`, `teacher_labels`: the same chat with the context in the prompt, labelling the same
    answer tokens) for distillation."""
    context = example["context"]
    if not isinstance(context, str) or not context.strip():
        raise ValueError("An instruction example has an empty `context`; every example needs one.")
    messages = example.get("messages")
    if messages is None:
        messages = [{"role": "user", "content": example["prompt"]},
                    {"role": "assistant", "content": example["completion"]}]
    ids, labels = tokenize_conversation(tokenizer, messages)
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    out = {"context": context, "input_ids": ids, "labels": labels}
    if with_teacher:
        prompted = with_context_in_prompt(messages, context)
        scored = [m["role"] == "assistant" and i > 0 for i, m in enumerate(messages)]  # as the student's labels
        scored = [False] * (len(prompted) - len(messages)) + scored  # the context may open the chat as a user turn
        teacher_ids, teacher_labels = assistant_turn_labels(tokenizer, prompted, scored)
        answer = [t for t in labels if t != -100]
        positions = [i for i, t in enumerate(teacher_labels) if t != -100][: len(answer)]
        if [teacher_labels[i] for i in positions] != answer:
            raise ValueError("The chat template tokenises the answer differently with the context in the prompt; "
                             "distillation needs the same answer tokens for teacher and student.")
        keep = set(positions)
        out["teacher_input_ids"] = teacher_ids
        out["teacher_labels"] = [t if i in keep else -100 for i, t in enumerate(teacher_labels)]
    return out


@dataclass
class GenerativeAdapterCollator:
    """Pads targets and carries each row's context (token ids or text) to the trainer."""

    pad_token_id: int
    num_segments: int = 2
    segment_length: int = 256
    reconstruction_length: Optional[int] = None
    seed: int = 0

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        text = [ex for ex in examples if ex.get("block")]
        instruction = [ex for ex in examples if not ex.get("block")]
        contexts, targets, labels, kinds, index = [], [], [], [], []
        if text:
            self._self_supervised(text, contexts, targets, labels, kinds, index)
        if instruction:
            self._instruction(instruction, contexts, targets, labels, kinds, index)
        batch = pad_rows(targets, self.pad_token_id, labels=labels)
        batch["context"] = contexts
        batch["context_index"] = torch.tensor(index)
        batch["objective"] = torch.tensor(kinds)
        teacher = [ex for ex in instruction if ex.get("teacher_input_ids")]
        if teacher and len(teacher) == len(instruction):
            padded = pad_rows([ex["teacher_input_ids"] for ex in teacher], self.pad_token_id,
                              labels=[ex["teacher_labels"] for ex in teacher])
            batch["teacher_input_ids"] = padded["input_ids"]
            batch["teacher_attention_mask"] = padded["attention_mask"]
            batch["teacher_labels"] = padded["labels"]
            # instruction rows come after the text rows' targets, in order
            batch["teacher_rows"] = torch.arange(len(targets) - len(teacher), len(targets))
        return batch

    def _window_start(self, block: list[int], context_len: int, length: int) -> int:
        digest = hashlib.sha256(str(block[:16]).encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "little") ^ self.seed)
        return rng.randrange(0, context_len - length + 1)

    def _self_supervised(self, examples, contexts, targets, labels, kinds, index):
        """Each block: its context (token ids), a completion target and a reconstruction target."""
        context_len = (self.num_segments - 1) * self.segment_length
        recon_len = min(self.reconstruction_length or self.segment_length, context_len)
        first = len(contexts)
        blocks = [list(ex["block"]) for ex in examples]
        contexts.extend(block[:context_len] for block in blocks)
        completions = [block[context_len : context_len + self.segment_length] for block in blocks]
        starts = [self._window_start(block, context_len, recon_len) for block in blocks]
        windows = [block[start : start + recon_len] for block, start in zip(blocks, starts)]
        for kind, rows in ((COMPLETION, completions), (RECONSTRUCTION, windows)):
            targets.extend(rows)
            labels.extend(rows)  # every target token is predicted
            kinds.extend([int(kind)] * len(rows))
            index.extend(range(first, len(contexts)))

    def _instruction(self, examples, contexts, targets, labels, kinds, index):
        """Each example: its context (text) and its tokenized conversation with answer-only labels."""
        for ex in examples:
            index.append(len(contexts))
            contexts.append(ex["context"])
            targets.append(ex["input_ids"])
            labels.append(ex["labels"])
            kinds.append(int(INSTRUCTION))
