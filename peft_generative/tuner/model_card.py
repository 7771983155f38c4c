"""The model card of a saved generator: peft's card (via `huggingface_hub.ModelCard`) plus how to load it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

CARD_SECTION_TITLE = "## Generative Adapter (peft-generative)"

CARD_SECTION = """
{title}

This repository holds a *generator* trained with
[peft-generative](https://github.com/peft-generative/peft-generative), an implementation of
Generative Adapter (Chen et al., arXiv 2411.05877). It turns a context (a document, demonstrations, a
conversation history) into LoRA weights for the frozen base model in one forward pass.

**Loading it needs `import peft_generative` first**: the plug-in registers the PEFT type `GENERATIVE_ADAPTER`
(without it peft fails with `KeyError: 'GENERATIVE_ADAPTER'`).

```python
import peft_generative  # registers the method with peft
from peft import PeftModel
model = PeftModel.from_pretrained(base_model, "{repo_id}")
ctx = model.contextualize("a document ...", tokenizer=tokenizer)
model.generate(**inputs, context=ctx)
```
"""


def generator_card(readme: str | Path, repo_id: Optional[str] = None):
    """peft's model card (`README.md` as `save_pretrained` writes it) with the loading section, naming `repo_id`
    (the Hub repository it is pushed to; a placeholder for a local save)."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(readme) if Path(readme).is_file() else ModelCard("---\nlibrary_name: peft\n---\n")
    if CARD_SECTION_TITLE in card.text and repo_id is not None:  # a card written for a local save: name the repo
        card.text = card.text.replace('"path/or/hub-id"', f'"{repo_id}"')
    if CARD_SECTION_TITLE not in card.text:
        card.text = card.text.rstrip() + "\n" + CARD_SECTION.format(
            title=CARD_SECTION_TITLE, repo_id=repo_id or "path/or/hub-id")
    card.data.library_name = "peft"
    tags = list(card.data.tags or [])
    card.data.tags = tags + [t for t in ("peft-generative", "generative-adapter") if t not in tags]
    return card
