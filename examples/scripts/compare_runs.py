"""Overlay the training losses of several runs (e.g. an ablation against the recipe it changes).

    python examples/scripts/compare_runs.py runs/pretrain/checkpoint-100 runs/pretrain_attn/checkpoint-100 \
        --labels "Kaiming init" "init_from_attention" --key loss_reconstruction --out docs/img/ablation_init.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from peft_generative.evaluation.report import save_figure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="checkpoint directories (each has trainer_state.json)")
    parser.add_argument("--labels", nargs="+", help="one label per checkpoint (default: the paths)")
    parser.add_argument("--key", nargs="+", default=["loss_completion", "loss_reconstruction"],
                        help="logged values to plot (default: both self-supervised losses)")
    parser.add_argument("--out", required=True, help="PNG file")
    args = parser.parse_args()
    labels = args.labels or args.checkpoints
    if len(labels) != len(args.checkpoints):
        raise SystemExit("error: give one label per checkpoint")
    fig, axes = plt.subplots(1, len(args.key), figsize=(5 * len(args.key), 3.5), squeeze=False)
    for path, label in zip(args.checkpoints, labels):
        history = json.loads((Path(path) / "trainer_state.json").read_text())["log_history"]
        for ax, key in zip(axes[0], args.key):
            points = [(h["step"], float(h[key])) for h in history if key in h]
            ax.plot(*zip(*points), label=label)
            ax.set_title(key)
            ax.set_xlabel("step")
            ax.set_ylabel("token NLL")
    axes[0][0].legend()
    fig.tight_layout()
    save_figure(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
