"""Exact match by question type on the synthetic facts, from `peft-generative eval --task knowledge` outputs.

    python examples/scripts/plot_facts_by_type.py --data data/synthetic_facts/test.eval.jsonl \
        --run "generator before=runs/eval/mix340_08" --run "shipped=docs/eval/facts" --out docs/img/facts_by_type.png

Each `--run LABEL=DIR` adds its generative adapter's bars; the last run also adds its control (another document's
adapter) and the context-in-prompt baseline. Prints the table it plots (EM x100 per type).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from peft_generative.data import read_jsonl

METHODS = {"adapter": "adapter", "adapter_other_context": "another document's adapter",
           "prompting": "context in prompt"}


def em_by_type(run_dir: Path, types: dict[str, str]) -> dict[str, dict[str, float]]:
    """`{method: {question type: EM x100}}` from a run's predictions.jsonl."""
    hits = defaultdict(lambda: defaultdict(list))
    for row in read_jsonl(run_dir / "predictions.jsonl"):
        if row["question"] in types:
            hits[row["method"]][types[row["question"]]].append(row["em"])
    return {m: {t: 100 * sum(v) / len(v) for t, v in by.items()} for m, by in hits.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the evaluated synthetic-facts .eval.jsonl")
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    types = {q["question"]: q["type"] for doc in read_jsonl(args.data) for q in doc["questions"]}
    order = sorted(set(types.values()))
    bars = []
    for i, spec in enumerate(args.run):
        label, _, directory = spec.partition("=")
        if not directory:
            parser.error(f"--run {spec!r}: expected LABEL=DIR")
        scores = em_by_type(Path(directory), types)
        bars.append((f"{label}: adapter", scores["adapter"]))
        if i == len(args.run) - 1:
            bars += [(f"{label}: {METHODS[m]}", scores[m])
                     for m in ("adapter_other_context", "prompting") if m in scores]
    print(json.dumps({label: {t: round(v.get(t, 0.0), 1) for t in order} for label, v in bars}, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(bars)
    for j, (label, scores) in enumerate(bars):
        ax.bar([i + j * width for i in range(len(order))], [scores.get(t, 0.0) for t in order], width, label=label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(order))], order)
    ax.set_ylabel("exact match (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Held-out synthetic facts: exact answers by question type (question only in the prompt)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
