"""Compare training levers measured at equal CPU time: adapter F1 / EM / gold-answer perplexity of several
`peft-generative eval --task knowledge` runs on one test file, with the prompting baseline and the control.

    python examples/scripts/plot_levers.py \
        --run "base, 12 min=runs/eval/en_lb" --run "distill 1.0, 12 min=runs/eval/en_ld" ... \
        --json docs/eval/levers_equal_time.json --out docs/img/levers_equal_time.png

`--json` keeps the numbers (so the plot can be redrawn without the runs: `--from-json FILE`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_run(directory: str) -> dict:
    results = json.loads((Path(directory) / "results.json").read_text())
    methods = results["methods"]
    row = {"generator": results["generator"], "data_file": results["data_file"]}
    for name in ("adapter", "adapter_other_context", "prompting", "closed_book"):
        if name in methods:
            m = methods[name]
            row[name] = {"f1": round(m["score"], 2), "em": round(m["exact_match"], 2),
                         "gold_ppl": round(m["answer_perplexity"], 2)}
    return row


def plot(rows: dict[str, dict], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.55 * len(labels) + 1.8))
    y = range(len(labels))
    for axis, key, title in ((left, "f1", "F1 / EM (x100, higher is better)"),
                             (right, "gold_ppl", "gold-answer perplexity (lower is better)")):
        axis.barh([i + 0.2 for i in y], [rows[k]["adapter"][key] for k in labels], height=0.4, label="adapter")
        if key == "f1":
            axis.barh([i - 0.2 for i in y], [rows[k]["adapter"]["em"] for k in labels], height=0.4, label="adapter EM")
        prompting = next((r["prompting"][key] for r in rows.values() if "prompting" in r), None)
        if prompting is not None:
            axis.axvline(prompting, color="k", linestyle="--", label=f"prompting ({prompting:g})")
        axis.set_yticks(list(y), labels if axis is left else [""] * len(labels))
        axis.invert_yaxis()
        axis.set_title(title)
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3, fontsize=8, frameon=False)
    data = {Path(r["data_file"]).name for r in rows.values()}
    fig.suptitle(f"held-out {', '.join(sorted(data))}: each run's own adapter, prompting dashed", fontsize=10)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], help="LABEL=EVAL_DIR (repeatable, in plot order)")
    parser.add_argument("--from-json", help="redraw from a JSON written by --json")
    parser.add_argument("--json", help="write the numbers here")
    parser.add_argument("--out", required=True, help="PNG file")
    args = parser.parse_args(argv)
    if args.from_json:
        rows = json.loads(Path(args.from_json).read_text())
    else:
        if not args.run:
            parser.error("give --run LABEL=DIR at least once, or --from-json")
        rows = {}
        for spec in args.run:
            label, sep, directory = spec.partition("=")
            if not sep:
                parser.error(f"--run {spec!r}: expected LABEL=EVAL_DIR")
            rows[label] = read_run(directory)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, args.out)
    for label, row in rows.items():
        a = row["adapter"]
        print(f"{label}: F1 {a['f1']:.1f} / EM {a['em']:.1f}, gold PPL {a['gold_ppl']:.2f}")


if __name__ == "__main__":
    main()
