"""Build every dataset from the cached raw downloads (fetching what is missing)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Iterable

from .conversation import build_conversation_dataset
from .demonstrations import build_demonstrations_dataset
from .knowledge import build_knowledge_dataset, knowledge_passages
from .pretraining import build_pretraining_corpus
from .progress import progress
from .synthetic_articles import build_synthetic_articles_dataset
from .synthetic_facts import build_synthetic_facts_dataset

logger = logging.getLogger(__name__)

__all__ = ["DATASETS", "build_all"]

DATASETS = ("knowledge", "demonstrations", "conversation", "pretraining", "synthetic_facts", "synthetic_articles")


def build_all(
    out_dir: str | os.PathLike,
    datasets: Iterable[str] = DATASETS,
    *,
    seed: int = 0,
    data_root: str | os.PathLike | None = None,
    exclude_eval_passages: bool = True,
    progress_bar: bool = True,
    quiet: bool = False,
    articles_english_share: float = 0.5,
) -> dict[str, dict[str, Path]]:
    """Build the named datasets into ``out_dir/<dataset>/``; returns dataset -> {file name: path}.

    With ``exclude_eval_passages`` the pretraining corpus drops any document sharing a 13-word sequence with a
    knowledge passage (of any split). ``articles_english_share``: the share of synthetic training articles whose
    people and places have real English names (see ``build_synthetic_articles_dataset``)."""
    wanted = list(datasets)
    unknown = set(wanted) - set(DATASETS)
    if unknown:
        raise ValueError(f"unknown datasets {sorted(unknown)}; choose from {DATASETS}")
    out = Path(out_dir)
    results: dict[str, dict[str, Path]] = {}
    for name in progress([d for d in DATASETS if d in wanted], desc="datasets", enabled=progress_bar, unit="set"):
        t0 = time.perf_counter()
        target = out / name
        if name == "knowledge":
            results[name] = build_knowledge_dataset(target, seed=seed, data_root=data_root, quiet=quiet)
        elif name == "demonstrations":
            results[name] = build_demonstrations_dataset(target, seed=seed, data_root=data_root, quiet=quiet)
        elif name == "conversation":
            results[name] = build_conversation_dataset(target, seed=seed, data_root=data_root, quiet=quiet)
        elif name == "synthetic_facts":
            results[name] = build_synthetic_facts_dataset(target, seed=seed, quiet=quiet)
        elif name == "synthetic_articles":
            results[name] = build_synthetic_articles_dataset(target, seed=seed, english_share=articles_english_share,
                                                             quiet=quiet)
        else:
            exclude = knowledge_passages(data_root=data_root) if exclude_eval_passages else None
            results[name] = build_pretraining_corpus(target, seed=seed, data_root=data_root, exclude_texts=exclude,
                                                     progress_bar=progress_bar, quiet=quiet)
        if not quiet:
            logger.info("built %s in %.1fs -> %s", name, time.perf_counter() - t0, target)
    return results
