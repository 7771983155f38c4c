"""What the adapter's wrong answers are, and where its right ones come from (issue 32): reads finished
`fact_capability.py` runs and breaks their held-out answers down.

For every non-digit question of each held-out set (the documents are rebuilt from the seed, so nothing but the run's
`result.json` and the closed-book / prompting cache beside it is read):

* **by value position**: whether the statement that holds the answer gives it *first* ("Anaru Knox is the spouse of
  Indie.": a causal language model's hidden state at the value knows nothing yet of what it is) or *last* ("Indie's
  spouse is Anaru Knox."), with the adapter's and prompting's gold-contained rates for each;
* **wrong answers**: a *near copy* of the gold (character similarity at least 0.7: "Keevesport" for Keeversport), *another
  span* of the same context (the lookup picked the wrong value), or *elsewhere* (a value that is not in the context).

    python examples/scripts/copy_errors.py runs/cp/stage3d_const runs/cp/stage3d_vf --sets words,words_one
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import re
import sys
from pathlib import Path

NEAR = 0.7  # character similarity (difflib ratio) from which a wrong answer counts as a near copy
FIRST = 0.3  # an answer that starts in the first 30% of its sentence is given "first"


def _fact_capability():
    path = Path(__file__).with_name("fact_capability.py")
    spec = importlib.util.spec_from_file_location("fact_capability", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def value_position(context: str, answer: str) -> str:
    """`first`, `last` or `?` (the answer is in no sentence of the context)."""
    for sentence in re.split(r"(?<=[.!?])\s+", context):
        at = sentence.find(answer)
        if at >= 0:
            return "first" if at < FIRST * len(sentence) else "last"
    return "?"


def error_kind(prediction: str, answer: str, context: str) -> str:
    """`right` (the gold is contained), `near` (a near copy), `span` (another span of the context) or `elsewhere`."""
    said, gold = prediction.strip().rstrip(".").lower(), answer.lower()
    if re.search(rf"(?<![\w-]){re.escape(gold)}(?![\w-])", prediction.lower()):
        return "right"
    if difflib.SequenceMatcher(None, said, gold).ratio() >= NEAR:
        return "near"
    if said and said in context.lower():
        return "span"
    return "elsewhere"


def breakdown(documents: list[dict], own: list[str], prompting: list[str] | None) -> dict:
    """Counts over the non-digit questions of `documents` (answers in `flat` order)."""
    pairs = [(d, q) for d in documents for q in d["questions"]]
    if len(pairs) != len(own) or (prompting is not None and len(prompting) != len(own)):
        raise ValueError(f"{len(own)} predictions for {len(pairs)} questions: not the documents this run answered")
    position: dict[str, dict[str, int]] = {}
    errors = {"right": 0, "near": 0, "span": 0, "elsewhere": 0}
    for k, (document, question) in enumerate(pairs):
        if question.get("kind") == "digits":
            continue
        answer = question["answers"][0]
        kind = error_kind(own[k], answer, document["context"])
        errors[kind] += 1
        cell = position.setdefault(value_position(document["context"], answer),
                                   {"questions": 0, "own": 0, "prompting": 0})
        cell["questions"] += 1
        cell["own"] += kind == "right"
        if prompting is not None:
            cell["prompting"] += error_kind(prompting[k], answer, document["context"]) == "right"
    return {"errors": errors, "position": dict(sorted(position.items()))}


def run_breakdown(run: Path, sets: list[str] | None = None) -> dict[str, dict]:
    script = _fact_capability()
    result = json.loads((run / "result.json").read_text())
    args = result["args"]
    cache_path = run.parent / f"baselines_n{args['n_eval']}_seed{args['seed']}.json"
    cache = json.loads(cache_path.read_text())["results"] if cache_path.is_file() else {}
    names = [s for s in (sets or script.EVAL_SETS) if s in result and "predictions" in result[s]["own"]]
    documents = script.eval_sets(args["n_eval"], args["seed"], tuple(names))
    return {name: breakdown(documents[name], result[name]["own"]["predictions"],
                            cache.get(name, {}).get("prompting", {}).get("predictions"))
            for name in names}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="fact_capability run directories (with a result.json)")
    p.add_argument("--sets", default=None, help="held-out sets (default: every set the run evaluated)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "result.json").is_file()]
    if missing:
        p.error(f"no result.json in {', '.join(missing)} (a finished fact_capability.py run has one)")
    out = {}
    for run in args.runs:
        out[str(run)] = run_breakdown(run, args.sets.split(",") if args.sets else None)
        print(run)
        for name, r in out[str(run)].items():
            where = "; ".join(f"{pos} {c['questions']}: own {100 * c['own'] / c['questions']:.0f}% prompting "
                              f"{100 * c['prompting'] / c['questions']:.0f}%" for pos, c in r["position"].items())
            e = r["errors"]
            print(f"  {name}: right {e['right']}, near copy {e['near']}, another span {e['span']}, elsewhere "
                  f"{e['elsewhere']} | value given {where}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
