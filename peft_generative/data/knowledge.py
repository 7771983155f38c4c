"""Knowledge from documents: BIG-bench ``contextual_parametric_knowledge_conflicts``.

17,528 Natural Questions passages whose answer entity was swapped for another entity, so the answer can only come
from the passage, never from the model's memory. Raw format (``task.json``)::

    {"examples": [{"input": "\\nQuestion: who ...?\\nContext: <passage>", "target": "<answer>",
                   "target_scores": {"<answer>": 1, "<original answer>": 0}}, ...]}

The same Wikipedia passage occurs several times with a different swapped entity (and a paraphrased question), so
the split is by *underlying passage*: the passage with its answer entity masked. Examples sharing a masked passage
or a question text are grouped (union-find) and every group goes to one split, by a stable hash.

Written per split (``train``, ``validation``, ``test``; 80/10/10 by default):

- ``<split>.eval.jsonl``: ``{"id", "context", "questions": [{"question", "answers": [str, ...]}]}``, all questions
  about one context together;
- ``<split>.jsonl`` (instruction tuning): ``{"id", "context", "prompt": question, "completion": short answer}``.

Note: the task file carries BIG-bench's canary string; training on the *train* split is this project's intended
use, test passages must never be trained on (they are also the decontamination list for the pretraining corpus).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterator, Mapping

from .archive import archive_kind, read_member
from .jsonl import write_json, write_jsonl
from .splits import assign_split, check_fractions, hash_order, normalize_key, stable_hash

__all__ = ["parse_example_input", "load_knowledge_examples", "build_knowledge_dataset", "knowledge_passages",
           "DEFAULT_KNOWLEDGE_FRACTIONS"]

PathLike = str | os.PathLike
DEFAULT_KNOWLEDGE_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
TASK_MEMBER = "bigbench/benchmark_tasks/contextual_parametric_knowledge_conflicts/task.json"

_Q = re.compile(r"(?:^|\n)\s*Question\s*:\s*", re.IGNORECASE)
_C = re.compile(r"(?:^|\n)\s*Context\s*:\s*", re.IGNORECASE)


def parse_example_input(text: str) -> tuple[str, str]:
    """Split ``"\\nQuestion: ...\\nContext: ..."`` (either order, any case, extra blank lines or spaces) into
    ``(question, context)``. Raises ValueError when either part is missing or empty."""
    q = _Q.search(text)
    c = _C.search(text)
    if not q or not c:
        raise ValueError(f"expected 'Question:' and 'Context:' in {text[:80]!r}")
    if q.start() < c.start():
        question, context = text[q.end():c.start()], text[c.end():]
    else:
        context, question = text[c.end():q.start()], text[q.end():]
    question, context = " ".join(question.split()), context.strip()
    if not question or not context:
        raise ValueError(f"empty question or context in {text[:80]!r}")
    return question, context


def _task_json_bytes(path: Path) -> bytes:
    if path.is_file() and path.suffix.lower() == ".json":
        return path.read_bytes()
    archive_kind(path)
    return read_member(path, TASK_MEMBER)[1]


def load_knowledge_examples(task_json: PathLike) -> tuple[list[dict], int]:
    """Parse the task (``task.json``, the bigbench source archive, or a directory holding it) into examples
    ``{"question", "context", "answers"}``; returns (examples, number of unparseable inputs skipped)."""
    data = json.loads(_task_json_bytes(Path(task_json).expanduser()).decode("utf-8"))
    out, bad = [], 0
    for ex in data["examples"]:
        try:
            question, context = parse_example_input(ex["input"])
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        target = ex.get("target")
        targets = target if isinstance(target, list) else [target]
        answers = [str(t).strip() for t in targets if t is not None and str(t).strip()]
        for ans, score in (ex.get("target_scores") or {}).items():
            if score and str(ans).strip() and str(ans).strip() not in answers:
                answers.append(str(ans).strip())
        if not answers:
            bad += 1
            continue
        out.append({"question": question, "context": context, "answers": answers,
                    "masked": _masked(context, ex)})
    return out, bad


def _masked(context: str, ex: dict) -> str:
    """The passage with every candidate answer entity masked: the same for all entity swaps of one passage."""
    cands = {str(ex.get("target") or "")} | {str(k) for k in (ex.get("target_scores") or {})}
    for cand in sorted((c for c in cands if c.strip()), key=len, reverse=True):
        context = context.replace(cand, "\x00")
    return normalize_key(context)


def _group_examples(examples: list[dict]) -> list[str]:
    """Union-find over shared masked passage / question; returns each example's group key."""
    parent = list(range(len(examples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str], int] = {}
    for i, ex in enumerate(examples):
        for key in (("p", ex["masked"]), ("q", normalize_key(ex["question"]))):
            j = first.setdefault(key, i)
            if j != i:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    group_key: dict[int, str] = {}
    for i, ex in enumerate(examples):
        r = find(i)
        if r not in group_key or ex["masked"] < group_key[r]:
            group_key[r] = ex["masked"]
    return [group_key[find(i)] for i in range(len(examples))]


def _ctx_id(context: str) -> str:
    return f"{stable_hash(context):016x}"


def build_knowledge_dataset(
    out_dir: PathLike,
    task_json: PathLike | None = None,
    *,
    seed: int = 0,
    fractions: Mapping[str, float] = DEFAULT_KNOWLEDGE_FRACTIONS,
    data_root: PathLike | None = None,
    quiet: bool = True,
) -> dict[str, Path]:
    """Write ``<split>.jsonl`` (instruction format) and ``<split>.eval.jsonl`` (evaluation format) for each split
    in ``fractions`` plus ``manifest.json``; returns ``{"train": ..., "train.eval": ..., ...}``.

    ``task_json``: the task file, the bigbench 1.0.0 source archive, or a directory; ``None`` fetches and
    extracts it into the cache."""
    fr = check_fractions(fractions)
    if task_json is None:
        from .cache import bigbench_task_json

        task_json = bigbench_task_json(data_root, quiet=quiet)
    examples, bad = load_knowledge_examples(task_json)
    groups = _group_examples(examples)

    by_split: dict[str, dict[str, dict]] = {s: {} for s in fr}  # split -> context -> eval record
    for ex, gkey in zip(examples, groups):
        split = assign_split(gkey, fr, seed)
        rec = by_split[split].setdefault(ex["context"], {"id": _ctx_id(ex["context"]), "context": ex["context"],
                                                          "questions": []})
        if all(q["question"] != ex["question"] for q in rec["questions"]):
            rec["questions"].append({"question": ex["question"], "answers": ex["answers"]})

    out = Path(out_dir)
    paths: dict[str, Path] = {}
    counts: dict[str, dict[str, int]] = {}
    for split, ctxs in by_split.items():
        recs = list(ctxs.values())
        order = hash_order([r["id"] for r in recs], seed)
        recs = [recs[i] for i in order]
        paths[f"{split}.eval"] = out / f"{split}.eval.jsonl"
        write_jsonl(paths[f"{split}.eval"], recs)
        paths[split] = out / f"{split}.jsonl"
        n_inst = write_jsonl(paths[split], _instructions(recs))
        counts[split] = {"contexts": len(recs), "questions": n_inst,
                         "passage_groups": len({g for ex, g in zip(examples, groups)
                                                if assign_split(g, fr, seed) == split})}
    write_json(out / "manifest.json", {
        "dataset": "knowledge",
        "source": "bigbench 1.0.0 contextual_parametric_knowledge_conflicts/task.json",
        "seed": seed,
        "fractions": fr,
        "examples": len(examples),
        "skipped_unparseable": bad,
        "counts": counts,
        "files": {k: v.name for k, v in paths.items()},
    })
    return paths


def _instructions(recs: list[dict]) -> Iterator[dict]:
    for rec in recs:
        for q in rec["questions"]:
            yield {"id": rec["id"], "context": rec["context"], "prompt": q["question"], "completion": q["answers"][0]}


def knowledge_passages(task_json: PathLike | None = None, data_root: PathLike | None = None) -> list[str]:
    """Every passage of the knowledge task (all splits): the decontamination list for the pretraining corpus."""
    if task_json is None:
        from .cache import bigbench_task_json

        task_json = bigbench_task_json(data_root)
    return [ex["context"] for ex in load_knowledge_examples(task_json)[0]]
