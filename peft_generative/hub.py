"""Sharing a generator on the Hugging Face Hub with a model card that says how to load it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

from .tuner.model_card import generator_card

def push_to_hub(model, repo_id: str, *, private: Optional[bool] = None, token: Optional[str] = None,
                commit_message: str = "Upload Generative Adapter generator", revision: Optional[str] = None):
    """Upload `model.save_pretrained(...)` output: weights, config and a model card that names `repo_id`.

    `model.push_to_hub(repo_id)` also uploads a loadable generator, but transformers' `push_to_hub` replaces the
    README that peft writes with a generic transformers card. This function keeps peft's card (`library_name: peft`,
    the method's tags, the base model) and adds how to load the generator from this repository.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        readme = Path(folder) / "README.md"
        generator_card(readme, repo_id).save(readme)
        operations = [
            CommitOperationAdd(path_in_repo=str(path.relative_to(folder)), path_or_fileobj=str(path))
            for path in sorted(Path(folder).rglob("*"))
            if path.is_file()
        ]
        return api.create_commit(repo_id=repo_id, operations=operations, commit_message=commit_message,
                                 revision=revision)
