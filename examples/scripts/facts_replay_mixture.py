"""Build the facts + replay training file of `examples/configs/facts_replay_smollm2.yaml` (issue 22).

Every synthetic fact document becomes one instruction row whose `messages` ask all of its questions in turn (the
document is encoded once for its four answers); `--text-documents` pretraining documents are added as `text` rows
(replayed completion + reconstruction). `--grouped N` adds N rows whose context joins 2 to `--max-group` fact
documents (as the evaluation groups them, separated by a blank line) and asks 4 of their questions, so the
generator also learns to keep facts apart in longer contexts. `--articles N` adds N synthetic articles (free prose,
several values of each type; `python -m peft_generative.data --synthetic_articles`), all their questions in one row;
`--facts N` keeps only the first N fact documents. `--words N` and `--prose N` add N documents of the
open-vocabulary words (`--synthetic_words`) and N real passages with cloze recall questions (`--prose_recall`), all
their questions in one row each (issue 32; `--words-data DIR`: another synthetic_words folder). Shuffled with a
fixed seed; only training splits are read.

    python examples/scripts/facts_replay_mixture.py --data data --out data/sft/train_facts_replay.jsonl
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

from peft_generative.data import read_jsonl, write_jsonl
from peft_generative.evaluation.knowledge import DOCUMENT_SEPARATOR


def fact_rows(path: Path) -> list[dict]:
    """One multi-turn row per document of a synthetic facts or articles `train.jsonl` (one question per line)."""
    grouped: dict[str, dict] = {}
    for record in read_jsonl(path):
        row = grouped.setdefault(record["id"], {"context": record["context"], "messages": [], "text": "",
                                                "task": record.get("task", "synthetic_facts")})
        if row["context"] != record["context"]:
            raise ValueError(f"{path}: document {record['id']} appears with two different contexts.")
        row["messages"] += [{"role": "user", "content": record["prompt"]},
                            {"role": "assistant", "content": record["completion"]}]
    return list(grouped.values())


def grouped_rows(facts: list[dict], count: int, max_group: int, rng: random.Random) -> list[dict]:
    """`count` rows, each joining 2..`max_group` distinct documents of `facts` and asking 4 of their questions (only
    questions no other member document asks too: two needles both ask for "the secret code")."""
    if count and not 2 <= max_group <= len(facts):
        raise ValueError(f"--max-group must be between 2 and the number of fact documents ({len(facts)}).")
    rows = []
    while len(rows) < count:
        members = rng.sample(facts, rng.randint(2, max_group))
        turns = [pair for m in members for pair in zip(m["messages"][::2], m["messages"][1::2])]
        asked_how_often = Counter(user["content"] for user, _ in turns)
        turns = [(user, answer) for user, answer in turns if asked_how_often[user["content"]] == 1]  # no ambiguity
        if not turns:
            continue
        asked = rng.sample(turns, min(4, len(turns)))
        rows.append({"context": DOCUMENT_SEPARATOR.join(m["context"] for m in members),
                     "messages": [turn for pair in asked for turn in pair], "text": "", "task": "synthetic_facts"})
    return rows


# extra sources of documents with questions: option name -> folder of `python -m peft_generative.data`
EXTRA_SOURCES = {"articles": "synthetic_articles", "words": "synthetic_words", "prose": "prose_recall"}


def build(data: Path, out: Path, text_documents: int = 600, seed: int = 0, grouped: int = 0,
          max_group: int = 8, articles: int = 0, facts: int | None = None, words: int = 0, prose: int = 0,
          words_data: Path | None = None) -> dict:
    facts = fact_rows(data / "synthetic_facts" / "train.jsonl")[:facts]
    extra = {}
    for option, count in (("articles", articles), ("words", words), ("prose", prose)):
        if count:
            folder = words_data if option == "words" and words_data else data / EXTRA_SOURCES[option]
            extra[option] = fact_rows(folder / "train.jsonl")[:count]
            if len(extra[option]) < count:
                raise ValueError(f"--{option} {count}: {folder} has only {len(extra[option])} {option} documents.")
    texts = [r["text"] for r in read_jsonl(data / "pretraining" / "train.jsonl") if r.get("text", "").strip()]
    rng = random.Random(seed)
    rng.shuffle(texts)
    groups = grouped_rows(facts, grouped, max_group, random.Random(f"{seed}-grouped"))
    rows = facts + groups + [row for rows in extra.values() for row in rows] + [
        {"context": "", "messages": [], "text": t, "task": "pretraining"} for t in texts[:text_documents]]
    rng.shuffle(rows)
    write_jsonl(out, rows)
    counts = {"fact_documents": len(facts), "text_documents": min(text_documents, len(texts)), "rows": len(rows)}
    return counts | ({"grouped": len(groups)} if grouped else {}) | {k: len(v) for k, v in extra.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="output of `python -m peft_generative.data`")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--text-documents", type=int, default=600)
    parser.add_argument("--grouped", type=int, default=0, help="rows joining several fact documents (default 0)")
    parser.add_argument("--max-group", type=int, default=8, help="most documents in a grouped row (default 8)")
    parser.add_argument("--articles", type=int, default=0, help="synthetic articles (free prose; default 0)")
    parser.add_argument("--facts", type=int, default=None, help="keep only the first N fact documents (default all)")
    parser.add_argument("--words", type=int, default=0, help="open-vocabulary word documents (default 0)")
    parser.add_argument("--prose", type=int, default=0, help="real passages with cloze recall questions (default 0)")
    parser.add_argument("--words-data", type=Path, default=None, metavar="DIR",
                        help="read the word documents from this synthetic_words folder instead of DATA/synthetic_words "
                        "(e.g. one built with --words-needle-subjects word,name,place)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build(args.data, args.out, args.text_documents, args.seed, args.grouped, args.max_group, args.articles,
                args.facts, args.words, args.prose, args.words_data))


if __name__ == "__main__":
    main()
