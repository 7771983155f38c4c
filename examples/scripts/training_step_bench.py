"""What a training step of the copy curriculum costs, and what makes it cheaper (issue 41, part 1).

Runs the same training steps (the long run's last stage: word documents with 1-2 entities, 2-4 word, name and place
needles a needle document, half the statements value first; 8 documents a step; the shipped generator with the
curriculum's taps) under several settings, side by side in one process, and prints training tokens per CPU second
and per wall second of each against today's step (fp32, sdpa attention, one row per question, one thread):

- `bf16`: the frozen base model's weights in bf16 and bf16 autocast (generator, Adam moments and states in fp32);
- `eager`: transformers' eager attention instead of sdpa (sdpa's CPU backward is slow for short rows);
- `packed`: each document's questions in one row behind their shared chat prefix (the same loss and gradient);
- the fastest with 2 threads (wall time on this machine's two cores; CPU seconds count both).

"Training tokens" are the data's own: the context tokens plus the tokens of every question-answer row as one row per
question (the same in every setting: packing reads fewer tokens for the same data). The profile of a step by phase
(docs/benchmarks.md) was read with torch.profiler, not by this script. `--curve-steps N` also trains today's
step and the fastest setting for N steps each from the same start on the same documents and writes both loss curves
(docs/img/training_step_loss.png): the cheaper step must learn the same.

    python examples/scripts/training_step_bench.py --steps 6 --curve-steps 40 --out docs/eval/training_step_bench.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import fact_capability as fc  # noqa: E402

RECIPE = ["--data", "words", "--word-entities", "1-2", "--needle-fraction", "0.3", "--needle-subjects",
          "word,name,place", "--needle-filler", "0-6", "--needles-per-doc", "2-4", "--docs-per-step", "8",
          "--value-first", "0.5", "--key-conv", "2", "--value-lookahead", "1"]
SETTINGS = {  # name: (flags, threads)
    "fp32 (today)": ([], 1),
    "bf16": (["--bf16"], 1),
    "bf16 + eager": (["--bf16", "--attention", "eager"], 1),
    "bf16 + eager + packed": (["--bf16", "--attention", "eager", "--pack-questions"], 1),
    "bf16 + eager + packed (2 threads)": (["--bf16", "--attention", "eager", "--pack-questions"], 2),
}
FASTEST = "bf16 + eager + packed"


def make(flags: list[str], init: str):
    args = fc.parse(["--name", "bench", "--init", init, *RECIPE, *flags])
    model, tok = fc.build(args)
    params = [p for p in model.parameters() if p.requires_grad]
    return args, model, tok, params, torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)


def train_step(args, model, tok, params, optimizer, step: int) -> float:
    return fc.training_step(model, tok, args, params, optimizer, step)[0]  # the long run's own step, one process


def measure(name: str, flags: list[str], threads: int, steps: int, init: str) -> dict:
    torch.set_num_threads(threads)
    args, model, tok, params, optimizer = make(flags, init)
    train_step(args, model, tok, params, optimizer, 0)  # warm-up (allocations, first-call dispatch)
    per_step = args.docs_per_step  # counted outside the timed steps, on the same documents they train on
    tokens = sum(fc.data_tokens(tok, [fc.train_document(s * per_step + j, args) for j in range(per_step)], args)
                 for s in range(1, steps + 1))
    c0, w0 = time.process_time(), time.perf_counter()
    for s in range(1, steps + 1):
        train_step(args, model, tok, params, optimizer, s)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    row = {"setting": name, "flags": flags, "threads": threads, "steps": steps, "tokens": tokens,
           "cpu_s_per_step": round(cpu / steps, 2), "wall_s_per_step": round(wall / steps, 2),
           "tokens_per_cpu_s": round(tokens / cpu, 1), "tokens_per_wall_s": round(tokens / wall, 1)}
    print(json.dumps(row), flush=True)
    return row


def curve(flags: list[str], steps: int, init: str) -> list[float]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    args, model, tok, params, optimizer = make(flags, init)
    return [round(train_step(args, model, tok, params, optimizer, s), 4) for s in range(steps)]


def plot(curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, losses in curves.items():
        smooth = [sum(losses[max(0, i - 4): i + 1]) / len(losses[max(0, i - 4): i + 1]) for i in range(len(losses))]
        ax.plot(range(1, len(losses) + 1), losses, alpha=0.25)
        ax.plot(range(1, len(losses) + 1), smooth, label=f"{name} (5-step mean)", color=ax.lines[-1].get_color())
    ax.set_xlabel("training step (the same 8 documents per step in both)")
    ax.set_ylabel("answer NLL (nats/token)")
    ax.set_title("Today's fp32 step and the cheaper step learn alike")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=6, help="timed steps per setting (after one warm-up step)")
    p.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated settings to time")
    p.add_argument("--curve-steps", type=int, default=0, help="also train today's step and the fastest this long")
    p.add_argument("--init", default="shipped", help="the generator to start from (a directory or `shipped`)")
    p.add_argument("--out", default=None, help="write the rows (and curves) as JSON here")
    p.add_argument("--plot", default="docs/img/training_step_loss.png")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        p.error(f"unknown setting(s) {unknown}; choose from {list(SETTINGS)}")
    rows = [measure(n, *SETTINGS[n], args.steps, args.init) for n in names]
    result = {"rows": rows, "cpu": "this machine (2 cores, avx512_bf16)"}
    if "fp32 (today)" in names:
        base = next(r for r in rows if r["setting"] == "fp32 (today)")
        for r in rows:
            r["x_tokens_per_cpu_s"] = round(r["tokens_per_cpu_s"] / base["tokens_per_cpu_s"], 2)
            r["x_tokens_per_wall_s"] = round(r["tokens_per_wall_s"] / base["tokens_per_wall_s"], 2)
            print(f"{r['setting']:<36} {r['cpu_s_per_step']:>6.2f} CPU s/step {r['tokens_per_cpu_s']:>7.1f} tok/CPU s "
                  f"x{r['x_tokens_per_cpu_s']:.2f}   {r['tokens_per_wall_s']:>7.1f} tok/wall s "
                  f"x{r['x_tokens_per_wall_s']:.2f}", flush=True)
    if args.curve_steps:
        curves = {"fp32 (today)": curve([], args.curve_steps, args.init),
                  FASTEST: curve(SETTINGS[FASTEST][0], args.curve_steps, args.init)}
        a, b = curves.values()
        half = args.curve_steps // 2
        result["curves"] = curves
        result["curve_summary"] = {
            "mean_loss_second_half": {k: round(sum(v[half:]) / len(v[half:]), 4) for k, v in curves.items()},
            "mean_abs_step_difference": round(sum(abs(x - y) for x, y in zip(a, b)) / len(a), 4)}
        print(json.dumps(result["curve_summary"]), flush=True)
        plot(curves, Path(args.plot))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
