"""Report a generator's training: loss curves, held-out perplexity and knowledge-QA F1 against the baselines.

    python examples/scripts/report_training.py --pretrain runs/pretrain runs/pretrain2 --sft runs/sft \
        --generator peft_generative/assets/generator --out docs

Writes `<out>/img/*_loss.png`, `<out>/img/perplexity.png` and `<out>/training_results.json`, and prints Markdown.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from peft_generative.data import read_jsonl  # noqa: E402
from peft_generative.evaluation.report import save_figure  # noqa: E402
from peft_generative.perplexity import context_perplexity  # noqa: E402


def trainer_state(run_dir: str) -> dict:
    checkpoints = sorted(glob.glob(os.path.join(run_dir, "checkpoint-*")), key=lambda p: int(p.rsplit("-", 1)[1]))
    if not checkpoints:
        raise SystemExit(f"no checkpoints in {run_dir}")
    return json.loads(Path(checkpoints[-1], "trainer_state.json").read_text())


def chained_state(run_dirs: list[str]) -> dict:
    """The logs of consecutive stages (each started from the previous one's generator) as one run: the steps of
    every stage are shifted by the steps of the stages before it."""
    history, offset, starts = [], 0, []
    for run_dir in run_dirs:
        state = trainer_state(run_dir)
        history += [{**h, "step": h["step"] + offset} for h in state["log_history"] if "step" in h]
        if offset:
            starts.append(offset)
        offset += state["global_step"]
    return {"log_history": history, "global_step": offset, "stage_starts": starts}


def plot_losses(state: dict, title: str, path: Path, window: int = 5) -> None:
    """Logged losses (faint) with their running mean over `window` log points (bold); dotted lines where a new
    stage starts (see `chained_state`)."""
    logs = [h for h in state["log_history"] if "loss" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("loss", "loss"), ("loss_completion", "completion"), ("loss_reconstruction", "reconstruction"),
                       ("loss_instruction", "instruction")):
        points = [(h["step"], float(h[key])) for h in logs if key in h]
        if not points:
            continue
        steps, values = zip(*points)
        line, = ax.plot(steps, values, alpha=0.25)
        recent = [values[max(0, i - window + 1): i + 1] for i in range(len(values))]
        smooth = [sum(r) / len(r) for r in recent]
        ax.plot(steps, smooth, color=line.get_color(), label=f"{label} (mean of {window} logs)")
    for boundary in state.get("stage_starts", []):
        ax.axvline(boundary, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("token NLL")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


METHOD_LABELS = {"no_context": "no context", "adapter_other_context": "another context's adapter",
                 "adapter": "own context's adapter", "in_prompt": "context in prompt"}


def plot_perplexity(perplexity: dict, path: Path) -> None:
    """Grouped bars: for each objective and generator, the held-out perplexity of every method."""
    objectives = ("reconstruction", "completion")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    names = list(perplexity)
    width = 0.8 / len(METHOD_LABELS)
    for ax, objective in zip(axes, objectives):
        for j, (method, label) in enumerate(METHOD_LABELS.items()):
            values = [perplexity[g][objective].get(method, float("nan")) for g in names]
            xs = [i + (j - (len(METHOD_LABELS) - 1) / 2) * width for i in range(len(names))]
            ax.bar(xs, values, width, label=label)
        ax.set_xticks(range(len(names)), [f"{Path(g).parent.name}/{Path(g).name}" for g in names],
                      rotation=15, fontsize=8)
        ax.set_title(f"held-out {objective} perplexity")
    axes[0].set_ylabel("perplexity (lower is better)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain", nargs="+", help="pretraining output_dir(s), several for consecutive stages")
    parser.add_argument("--sft", nargs="+", help="instruction-tuning output_dir(s)")
    parser.add_argument("--generator", action="append", default=[], help="generator dirs to evaluate (repeatable)")
    parser.add_argument("--validation", default="data/pretraining/validation.jsonl")
    parser.add_argument("--knowledge", default="data/knowledge/test.eval.jsonl")
    parser.add_argument("--ppl-blocks", type=int, default=24)
    parser.add_argument("--qa-limit", type=int, default=60, help="knowledge passages to answer; 0 skips the QA eval")
    parser.add_argument("--no-baselines", action="store_true",
                        help="score only the generated adapters (own and control), not no-context and "
                             "context-in-prompt, which do not depend on the generator: for comparing checkpoints")
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    out = Path(args.out)
    results: dict = {"perplexity": {}, "knowledge": {}}
    for name, run in (("pretrain", args.pretrain), ("sft", args.sft)):
        if run:
            state = chained_state(run)
            plot_losses(state, f"{name}: training loss", out / "img" / f"{name}_loss.png")
            results[f"{name}_steps"] = state["global_step"]

    from peft_generative.evaluation import evaluate
    from peft_generative.loading import load_generative_model

    texts = [r["text"] for r in read_jsonl(args.validation)]
    for generator in args.generator:
        model, tokenizer, _ = load_generative_model(None, generator)
        results["perplexity"][generator] = context_perplexity(model, tokenizer, texts, num_segments=3,
                                                              segment_length=128, max_blocks=args.ppl_blocks,
                                                              baselines=not args.no_baselines)
        if args.qa_limit > 0:
            report = evaluate("knowledge", args.knowledge, model=model, tokenizer=tokenizer, limit=args.qa_limit,
                              group_sizes=(1,), progress=True)
            results["knowledge"][generator] = report.get("overall", report)
        print(json.dumps({"generator": generator, "perplexity": results["perplexity"][generator],
                          "knowledge": results["knowledge"].get(generator)}, indent=1, default=str))
    out.mkdir(parents=True, exist_ok=True)
    if results["perplexity"]:
        plot_perplexity(results["perplexity"], out / "img" / "perplexity.png")
    (out / "training_results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
