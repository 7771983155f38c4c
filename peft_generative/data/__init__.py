"""Data builders for training and evaluating Generative Adapters on real, offline-obtainable data.

Each builder reads a raw download (or an unpacked directory / the raw file itself), writes JSON Lines files into
an output directory and returns ``{name: path}``; the output is a pure function of the input files and the seed.

- :func:`build_pretraining_corpus`: plain English text (news, speeches, documentation) for self-supervised
  pretraining: ``train.jsonl`` / ``validation.jsonl`` with ``{"text", "source", "id"}``.
- :func:`build_knowledge_dataset`: passage QA (BIG-bench knowledge conflicts) split by passage.
- :func:`build_demonstrations_dataset`: MetaICL-like in-context classification (StaICC), split by task.
- :func:`build_conversation_dataset`: multi-session chit-chat (chitchat-dataset), split by speaker pair.
- :func:`build_synthetic_facts_dataset`: invented organisations with facts of every kind (codes, years, towns,
  people, objects) and needle documents; nothing to download.
- :func:`build_synthetic_articles_dataset`: free-prose articles about invented buildings, people and companies, with
  several values of each type per article and held-out phrasings; nothing to download.
- :func:`build_synthetic_words_dataset`: people, companies and ships whose attributes are real words (names, towns,
  jobs, colours, ...) from open lists, with held-out words, relations and phrasings; nothing to download.
- :func:`build_all`: download (once, into :func:`data_dir`) and build everything.

Command line: ``python -m peft_generative.data --all --out DIR``.
"""

from .cache import DATA_ENV, SOURCES, bigbench_task_json, data_dir, fetch, fetch_all
from .conversation import build_conversation_dataset, render_history
from .demonstrations import (
    HELDOUT_TASKS,
    META_TRAIN_TASKS,
    STAICC_TASKS,
    build_demonstrations_dataset,
    render_demonstrations,
    render_query,
)
from .jsonl import read_jsonl, write_jsonl
from .knowledge import build_knowledge_dataset, knowledge_passages, parse_example_input
from .mixture import build_sft_mixture
from .pretraining import PRETRAINING_SOURCES, build_pretraining_corpus
from .splits import assign_split, stable_hash
from .synthetic_articles import build_synthetic_articles_dataset
from .synthetic_facts import build_synthetic_facts_dataset
from .synthetic_words import build_synthetic_words_dataset
from .build import DATASETS, build_all

__all__ = [
    "build_sft_mixture",
    "build_synthetic_articles_dataset",
    "build_synthetic_facts_dataset",
    "build_synthetic_words_dataset",
    "DATA_ENV",
    "DATASETS",
    "HELDOUT_TASKS",
    "META_TRAIN_TASKS",
    "PRETRAINING_SOURCES",
    "SOURCES",
    "STAICC_TASKS",
    "assign_split",
    "bigbench_task_json",
    "build_all",
    "build_conversation_dataset",
    "build_demonstrations_dataset",
    "build_knowledge_dataset",
    "build_pretraining_corpus",
    "data_dir",
    "fetch",
    "fetch_all",
    "knowledge_passages",
    "parse_example_input",
    "read_jsonl",
    "render_demonstrations",
    "render_history",
    "render_query",
    "stable_hash",
    "write_jsonl",
]
