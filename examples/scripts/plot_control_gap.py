"""Plot, for several evaluation runs, how much better each context's own adapter scores its answers than another
context's adapter (the `control_gap` of `peft-generative eval --methods adapter,adapter_other_context`).

    python examples/scripts/plot_control_gap.py docs/eval/knowledge runs/ev8_120 runs/ev9_240 \
        --labels shipped "short contexts, 120 steps" "+ medium contexts, 240 steps" --out docs/img/control_gap.png

The gap is recomputed from each run's `predictions.jsonl`, so runs made before `control_gap` was reported work too.
Bars: mean gap in nats per answer token with one standard error; the label over each bar says how many answers the
own adapter won.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from peft_generative.data import read_jsonl  # noqa: E402
from peft_generative.evaluation.report import control_gap, save_figure  # noqa: E402


def load_gap(run: str) -> dict:
    path = Path(run) / "predictions.jsonl"
    gap = control_gap(list(read_jsonl(path)))
    if gap is None:
        raise SystemExit(f"error: {path} has no paired adapter / adapter_other_context answers with a likelihood; "
                         "run `peft-generative eval` with `--methods adapter,adapter_other_context`.")
    return gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="output directories of `peft-generative eval`")
    parser.add_argument("--labels", nargs="+", help="one per run (default: the directory names)")
    parser.add_argument("--title", default="own context's adapter vs another's, per answer")
    parser.add_argument("--out", required=True, help="PNG file")
    args = parser.parse_args()
    labels = args.labels or args.runs
    if len(labels) != len(args.runs):
        raise SystemExit(f"error: {len(args.runs)} runs but {len(labels)} labels")
    gaps = [load_gap(run) for run in args.runs]
    for label, gap in zip(labels, gaps):
        print(f"{label}: {gap['mean_gap_nats_per_token']:+.3f} ± {gap['standard_error']:.3f} nats/token, own adapter "
              f"better for {gap['own_better']}/{gap['answers']}")
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(gaps), 3.8))
    means = [g["mean_gap_nats_per_token"] for g in gaps]
    bars = ax.bar(range(len(gaps)), means, yerr=[g["standard_error"] for g in gaps], capsize=4, color="tab:blue")
    for bar, gap in zip(bars, gaps):
        ax.annotate(f"{gap['own_better']}/{gap['answers']}", (bar.get_x() + bar.get_width() / 2, 0),
                    xytext=(0, -14 if bar.get_height() >= 0 else 6), textcoords="offset points", ha="center",
                    fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(gaps)), labels, fontsize=8, rotation=15, ha="right")
    ax.set_ylabel("NLL/token: other adapter - own (nats)")
    ax.set_title(args.title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
