"""Build the facts + replay training file of `examples/configs/facts_replay_smollm2.yaml` (issue 22).

Every synthetic fact document becomes one instruction row whose `messages` ask all of its questions in turn (the
document is encoded once for its four answers); `--text-documents` pretraining documents are added as `text` rows
(replayed completion + reconstruction). Shuffled with a fixed seed; only training splits are read.

    python examples/scripts/facts_replay_mixture.py --data data --out data/sft/train_facts_replay.jsonl
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from peft_generative.data import read_jsonl, write_jsonl


def fact_rows(path: Path) -> list[dict]:
    """One multi-turn row per document of a synthetic-facts `train.jsonl` (one question per line there)."""
    grouped: dict[str, dict] = {}
    for record in read_jsonl(path):
        row = grouped.setdefault(record["id"], {"context": record["context"], "messages": [], "text": "",
                                                "task": "synthetic_facts"})
        if row["context"] != record["context"]:
            raise ValueError(f"{path}: document {record['id']} appears with two different contexts.")
        row["messages"] += [{"role": "user", "content": record["prompt"]},
                            {"role": "assistant", "content": record["completion"]}]
    return list(grouped.values())


def build(data: Path, out: Path, text_documents: int = 600, seed: int = 0) -> dict:
    facts = fact_rows(data / "synthetic_facts" / "train.jsonl")
    texts = [r["text"] for r in read_jsonl(data / "pretraining" / "train.jsonl") if r.get("text", "").strip()]
    rng = random.Random(seed)
    rng.shuffle(texts)
    rows = facts + [{"context": "", "messages": [], "text": t, "task": "pretraining"} for t in texts[:text_documents]]
    rng.shuffle(rows)
    write_jsonl(out, rows)
    return {"fact_documents": len(facts), "text_documents": min(text_documents, len(texts)), "rows": len(rows)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="output of `python -m peft_generative.data`")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--text-documents", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build(args.data, args.out, args.text_documents, args.seed))


if __name__ == "__main__":
    main()
