"""Plot a knowledge training phase from `knowledge_probes.py` results: the gold answer's perplexity under the own
passage's adapter and under another passage's (the control), and the answer F1, against training steps.

    python examples/scripts/plot_knowledge_probes.py 0=docs/eval/knowledge_probes/shipped.json \
        90=docs/eval/knowledge_probes/whole_90.json 240=docs/eval/knowledge_probes/long_150.json \
        --out docs/img/knowledge_phase.png

Each point is `STEPS=PATH`, STEPS the knowledge steps behind that generator; the first scale of each file is
plotted (run the probe with `--scales 1` for the generated adapter as is). Points are drawn in step order.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from peft_generative.evaluation.report import save_figure  # noqa: E402


def load_point(spec: str) -> tuple[int, dict]:
    steps, sep, path = spec.partition("=")
    if not sep or not steps.strip().isdigit():
        raise SystemExit(f"error: {spec!r} is not STEPS=PATH (e.g. 90=runs/probe/whole_90.json)")
    try:
        scale = json.loads(Path(path).read_text())["scale"][0]
        point = {key: float(scale[key]) for key in ("f1", "gold_ppl_own", "gold_ppl_other")}
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise SystemExit(f"error: {path} is not a knowledge_probes.py result with a `scale` entry ({error})")
    return int(steps), point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("points", nargs="+", help="STEPS=PATH of a knowledge_probes.py JSON")
    parser.add_argument("--title", default="knowledge phase, validation passages")
    parser.add_argument("--out", required=True, help="PNG file")
    args = parser.parse_args()
    points = sorted(load_point(spec) for spec in args.points)
    steps = [s for s, _ in points]
    for s, p in points:
        print(f"{s:5d} steps: gold PPL own {p['gold_ppl_own']:.1f} / control {p['gold_ppl_other']:.1f}, "
              f"F1 {p['f1']:.2f}")
    fig, (ppl, f1) = plt.subplots(1, 2, figsize=(10, 3.8))
    ppl.plot(steps, [p["gold_ppl_own"] for _, p in points], "o-", label="own passage's adapter")
    ppl.plot(steps, [p["gold_ppl_other"] for _, p in points], "s--", label="another passage's adapter (control)")
    ppl.set_yscale("log")
    ppl.set_ylabel("gold-answer perplexity (lower is better)")
    f1.plot(steps, [p["f1"] for _, p in points], "o-", color="tab:green")
    f1.set_ylabel("answer F1 x100")
    for ax in (ppl, f1):
        ax.set_xlabel("knowledge training steps (8 rows each)")
        ax.grid(alpha=0.3)
    ppl.legend(fontsize=8)
    fig.suptitle(args.title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
