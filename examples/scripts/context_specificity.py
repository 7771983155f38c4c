"""Does a generated adapter help its own context's answers more than another context's? Per task, held-out.

    python examples/scripts/context_specificity.py --generator peft_generative/assets/generator \
        --generator runs/sft6/checkpoint-60 --out docs/context_specificity.json --plot docs/img/context_specificity.png

Every row of the instruction validation file (`context` + `messages`, with a `task` column) is answered
teacher-forced twice: with the adapter of its own context and with the adapter of the next row of the same task
whose context differs (the trainer's `contrast_weight` loss, evaluated without training). Reported per task: the
per-token answer NLL with the own adapter, and `gap` = NLL with the other context's adapter minus NLL with the own
(nats per token; 0: the adapter carries nothing of its context that the answers use).

The validation file is the instruction mixture built from the validation splits (after
`python -m peft_generative.data --all --out data`):

    python -c "from peft_generative.data import build_sft_mixture; \\
        build_sft_mixture('data', 'data/sft/validation.jsonl', split='validation')"
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

from datasets import Dataset

from peft_generative.data import read_jsonl
from peft_generative.evaluation.report import save_figure
from peft_generative.loading import load_generative_model
from peft_generative.trainer import GenerativeAdapterTrainer, GenerativeAdapterTrainingConfig


def specificity(model, tokenizer, rows: list[dict], batch_size: int) -> dict:
    """Answer NLL with the own adapter and the gap to another context's adapter, over `rows` (one task)."""
    with tempfile.TemporaryDirectory() as tmp:
        args = GenerativeAdapterTrainingConfig(output_dir=tmp, per_device_eval_batch_size=batch_size,
                                               contrast_weight=1.0, report_to=[], use_cpu=True,
                                               disable_tqdm=True, max_length=256)
        dataset = Dataset.from_list([{"context": r["context"], "messages": r["messages"]} for r in rows])
        # TRL requires a train_dataset even to evaluate; nothing is trained
        trainer = GenerativeAdapterTrainer(model, args=args, train_dataset=dataset, eval_dataset=dataset,
                                           processing_class=tokenizer)
        metrics = trainer.evaluate()
    return {"rows": len(rows), "nll_own": metrics["eval_loss_instruction"], "gap": metrics["eval_contrast_gap"]}


def plot(results: dict, path: Path) -> None:
    """Grouped bars: the gap per task, one bar per generator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({task for per_task in results.values() for task in per_task})
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, (generator, per_task) in enumerate(results.items()):
        ax.bar([t + i * width for t in range(len(tasks))], [per_task[task]["gap"] for task in tasks], width,
               label=generator)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xticks([t + width * (len(results) - 1) / 2 for t in range(len(tasks))], tasks)
    ax.set_ylabel("NLL(other context) - NLL(own), nats/token")
    ax.set_title("Answers helped by their own context's adapter (held-out)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", action="append", required=True, help="generator dirs (repeatable)")
    parser.add_argument("--validation", default="data/sft/validation.jsonl",
                        help="instruction rows from the validation splits (see above)")
    parser.add_argument("--per-task", type=int, default=48, help="rows per task")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", help="JSON file")
    parser.add_argument("--plot", help="PNG file: the gap per task and generator")
    args = parser.parse_args()
    by_task = defaultdict(list)
    for row in read_jsonl(args.validation):
        if row.get("context") and len(by_task[row["task"]]) < args.per_task:
            by_task[row["task"]].append(row)
    if not by_task:
        raise SystemExit(f"error: {args.validation} has no instruction rows (`context` + `messages` + `task`)")
    results = {}
    for generator in args.generator:
        model, tokenizer, _ = load_generative_model(None, generator)
        results[generator] = {task: specificity(model, tokenizer, rows, args.batch_size)
                              for task, rows in sorted(by_task.items())}
        for task, r in results[generator].items():
            print(f"{generator} {task}: answer NLL {r['nll_own']:.3f}, gap to another context's adapter "
                  f"{r['gap']:+.3f} nats/token ({r['rows']} rows)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot(results, Path(args.plot))


if __name__ == "__main__":
    main()
