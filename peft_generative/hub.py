"""Sharing a generator on the Hugging Face Hub with its complete model card."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional


def push_to_hub(model, repo_id: str, *, private: Optional[bool] = None, token: Optional[str] = None,
                commit_message: str = "Upload Generative Adapter generator", revision: Optional[str] = None):
    """Upload `model.save_pretrained(...)` output as is: weights, config and peft's model card with our section.

    `model.push_to_hub(repo_id)` also uploads a loadable generator, but transformers' `push_to_hub` replaces the
    README that peft writes with a generic transformers card. This function keeps the card `save_pretrained`
    writes: `library_name: peft`, the method's tags, the base model, and how to load it (`import peft_generative`).
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        operations = [
            CommitOperationAdd(path_in_repo=str(path.relative_to(folder)), path_or_fileobj=str(path))
            for path in sorted(Path(folder).rglob("*"))
            if path.is_file()
        ]
        return api.create_commit(repo_id=repo_id, operations=operations, commit_message=commit_message,
                                 revision=revision)
