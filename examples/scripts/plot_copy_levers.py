"""Plot the levers of issue 32 at equal CPU time: gold contained in the adapter's answers against training CPU seconds,
one line per `fact_capability.py` run (its probes on the first held-out word and fact documents), the end-of-run
evaluation as markers (all held-out word documents, and those asking only relations training never asked), and
prompting's rate on the same questions as a dashed line.

    python examples/scripts/plot_copy_levers.py --run "recipe=runs/fc/both_base" --run "key conv 3=runs/fc/both_kconv3" \
        --json docs/eval/copy_levers.json --out docs/img/copy_levers.png

`--json` keeps the numbers, so the plot can be redrawn without the runs (`--from-json FILE`). `--panels` picks the
held-out sets drawn (default `words,facts`; also `word_needle_bare`, `words_one`, `name_needle_bare`, whose final
point is that set's, and `word_needle`, `name_needle`, `place_needle`, `multi_needle`, drawn from the final
evaluation only).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TITLES = {"words": "held-out word documents", "facts": "held-out fact documents (digits, lists)",
          "word_needle_bare": "held-out word needles alone (one sentence)",
          "word_needle": "held-out word needles in 4-6 filler sentences",
          "words_one": "held-out word documents about one entity",
          "name_needle_bare": "held-out name needles alone (one sentence)",
          "name_needle": "held-out name needles in 4-6 filler sentences",
          "place_needle": "held-out place needles in 4-6 filler sentences",
          "multi_needle": "held-out documents of 2-4 needles, each asked"}
DEFAULT_PANELS = ("words", "facts")
FINAL_SETS = ("words", "words_unseen", "facts", "needle", "word_needle", "word_needle_bare", "words_one",
              "name_needle_bare", "name_needle", "place_needle", "multi_needle")


def read_run(directory: str) -> dict:
    """Probe curve (from state.json) and, when the run has finished, its final measures (from result.json)."""
    run = Path(directory)
    state = json.loads((run / "state.json").read_text())
    row = {"steps": state["step"], "cpu": round(state["cpu"]),
           "curve": {part: [(p["cpu"], p[part]["contains"]) for p in state["probes"]
                            if isinstance(p.get(part), dict) and "contains" in p[part]] for part in TITLES}}
    if (run / "result.json").exists():
        result = json.loads((run / "result.json").read_text())
        row["final"] = {}
        for part in FINAL_SETS:
            if part in result:
                own, control = result[part]["own"], result[part]["control"]
                prompting = result[f"baselines_{part}"]["prompting"]
                row["final"][part] = {
                    "adapter": {k: own[k] for k in ("EM", "F1", "contains")} | {"by_kind": own["by_kind"]["contains"]},
                    "control_contains": control["contains"], "prompting_contains": prompting["contains"],
                    "prompting_by_kind": prompting["by_kind"]["contains"],
                    "closed_book_contains": result[f"baselines_{part}"]["closed_book"]["contains"],
                    "gold_nll": [round(own["nll"], 3), round(control["nll"], 3)],
                }
    return row


def plot(rows: dict[str, dict], out: str, panels=DEFAULT_PANELS) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for axis, part in zip(axes[0], panels):
        title = TITLES[part]
        prompting = None
        for i, (label, row) in enumerate(rows.items()):
            color = f"C{i}"
            curve = row["curve"].get(part) or []
            xs, ys = zip(*curve) if curve else ((), ())
            axis.plot(xs, ys, "-o", color=color, markersize=3, label=label)
            final = row.get("final", {}).get(part)
            if final:
                axis.plot([row["cpu"]], [final["adapter"]["contains"]], "*", color=color, markersize=12)
                prompting = final["prompting_contains"]
                unseen = row["final"].get(f"{part}_unseen")
                if unseen:
                    axis.plot([row["cpu"]], [unseen["adapter"]["contains"]], "s", color=color, markersize=7,
                              fillstyle="none")
        if prompting is not None:
            axis.axhline(prompting, color="k", linestyle="--", linewidth=1, label=f"prompting ({prompting:g})")
        axis.set_xlabel("training CPU seconds (one thread)")
        axis.set_ylabel("gold contained in the answer (%)")
        axis.set_title(title, fontsize=10)
        axis.set_ylim(bottom=0)
        axis.legend(fontsize=7)
    fig.suptitle("issue 32 levers at equal CPU time: probes (lines), final evaluation (star; square: relations never "
                 "trained)", fontsize=9)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], help="LABEL=RUN_DIR (repeatable, in legend order)")
    parser.add_argument("--from-json", help="redraw from a JSON written by --json")
    parser.add_argument("--json", help="write the numbers here")
    parser.add_argument("--out", required=True, help="PNG file")
    parser.add_argument("--panels", default=",".join(DEFAULT_PANELS),
                        help=f"comma-separated held-out sets to draw, of {', '.join(TITLES)} (default %(default)s)")
    args = parser.parse_args(argv)
    panels = tuple(p.strip() for p in args.panels.split(",") if p.strip())
    unknown = [p for p in panels if p not in TITLES]
    if unknown or not panels:
        parser.error(f"--panels: unknown set(s) {unknown}; choose from {', '.join(TITLES)}")
    if args.from_json:
        rows = json.loads(Path(args.from_json).read_text())
    else:
        if not args.run:
            parser.error("give --run LABEL=RUN_DIR at least once, or --from-json")
        rows = {}
        for spec in args.run:
            label, sep, directory = spec.partition("=")
            if not sep:
                parser.error(f"--run {spec!r}: expected LABEL=RUN_DIR")
            rows[label] = read_run(directory)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, args.out, panels)
    for label, row in rows.items():
        for part, final in row.get("final", {}).items():
            print(f"{label} [{part}]: adapter contained {final['adapter']['contains']:.1f} (F1 "
                  f"{final['adapter']['F1']:.1f}), control {final['control_contains']:.1f}, prompting "
                  f"{final['prompting_contains']:.1f}")


if __name__ == "__main__":
    main()
