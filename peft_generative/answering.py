"""Asking a question of a model: with an adapter, with the context in the prompt, or closed-book."""

from __future__ import annotations

from typing import Optional

import torch


def chat_inputs(tokenizer, question: str, context: Optional[str] = None, device=None):
    """Tokenised chat prompt; with `context` the text is put in the prompt (the baseline we replace)."""
    content = question if context is None else f"{context}\n\n{question}"
    messages = [{"role": "user", "content": content}]
    if getattr(tokenizer, "chat_template", None):
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)
    else:
        inputs = tokenizer(content + "\n", return_tensors="pt")
    return {k: v.to(device) for k, v in inputs.items()} if device is not None else dict(inputs)


@torch.no_grad()
def generate_answer(model, tokenizer, question: str, *, context_text: Optional[str] = None,
                    max_new_tokens: int = 48, first_line: bool = False) -> str:
    """Greedy answer to `question` from whatever context/adapter is active on `model`."""
    device = next(model.parameters()).device
    inputs = chat_inputs(tokenizer, question, context_text, device)
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    text = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    return text.split("\n")[0].strip() if first_line else text
