"""The long run of issue 41: one copy curriculum, started once and resumed whenever work starts again.

Reads a config (examples/configs/curricula/long_run_smollm2.yaml): an output folder, the flags every stage shares,
and stages of `fact_capability.py`, each started from the previous stage's generator. A stage with a `cpu_budget`
runs until it has trained that many CPU seconds and is then evaluated on its few sets; the last stage may be
open-ended (`cpu_budget: null`) and then trains in segments of `eval_every_cpu_s`, each segment's generator kept as
`gen_<cpu>` and evaluated on every held-out set by a process of its own beside the training (`--eval-only`). Every
evaluation appends one row (stage, step, training tokens so far, gold contained by set and answer kind for the own
adapter, the control and prompting; with `perplexity_blocks: N`, held-out reconstruction and completion perplexity
on N blocks of data/pretraining/validation.jsonl) to `curve_log` and redraws the plot against training tokens.
A `flags_from: {CPU_S: [flags]}` entry of the open-ended stage adds flags to every segment from that point on (a
recipe changed mid-run stays in the config where it changed; the segment evaluations take the stage's own flags).
`processes: N` trains with N processes of one thread (torchrun, gloo). Each stage runs in child processes (a crash or
a kill loses at most `--save-every` steps); run the same command again and it goes on where it stopped.

    python examples/scripts/long_run.py --config examples/configs/curricula/long_run_smollm2.yaml
    python examples/scripts/long_run.py --config examples/configs/curricula/long_run_smollm2.yaml --status
    python examples/scripts/long_run.py --config examples/configs/curricula/long_run_smollm2.yaml --segments 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO

import yaml

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "fact_capability.py"
CURVE_SETS = ("words", "words_one", "multi_needle", "words_unseen", "facts", "needle", "word_needle_bare",
              "name_needle_bare", "name_needle", "place_needle", "prose_recall", "demo")


def load_config(path: str) -> dict:
    config = yaml.safe_load(Path(path).read_text())
    stages = config.get("stages") or []
    if not stages:
        raise SystemExit(f"{path}: no stages")
    for i, stage in enumerate(stages):
        if "name" not in stage:
            raise SystemExit(f"{path}: stage {i} has no name")
        if stage.get("cpu_budget") is None and (i != len(stages) - 1 or not stage.get("eval_every_cpu_s")):
            raise SystemExit(f"{path}: stage {stage['name']}: only the last stage may be open-ended, and it needs "
                             "eval_every_cpu_s")
        if stage.get("flags_from"):
            every = stage.get("eval_every_cpu_s") if stage.get("cpu_budget") is None else None
            if not every or any(float(start) % float(every) for start in stage["flags_from"]):
                raise SystemExit(f"{path}: stage {stage['name']}: flags_from belongs to the open-ended stage, each "
                                 "at a segment's start (a multiple of eval_every_cpu_s)")
    return config


def stage_dir(config: dict, stage: dict) -> Path:
    return Path(config["out"]) / stage["name"]


def read_state(run: Path) -> dict:
    path = run / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"step": 0, "cpu": 0.0}


def stage_flags(stage: dict, budget: float) -> list[str]:
    """The stage's flags for a segment that trains up to `budget` CPU s: its own, then those of every `flags_from`
    entry the segment trains past (a recipe changed during the open-ended stage, written down where it changed)."""
    flags = list(stage.get("flags", []))
    for start, extra in sorted((stage.get("flags_from") or {}).items()):
        if budget > float(start):
            flags += extra
    return [str(f) for f in flags]


def stage_argv(config: dict, index: int, budget: float) -> list[str]:
    stages = config["stages"]
    stage = stages[index]
    init = config.get("init", "shipped") if index == 0 else str(stage_dir(config, stages[index - 1]) / "generator")
    argv = ["--name", stage["name"], "--out", str(config["out"]), "--init", init, "--cpu-budget", f"{budget:g}",
            "--threads", str(config.get("threads", 1)), *map(str, config.get("common", [])),
            *stage_flags(stage, budget)]
    sets = config.get("stage_eval_sets") if stage.get("cpu_budget") is not None else config.get("long_eval_sets")
    if sets:
        argv += ["--eval-sets", sets]
    return argv


def stage_finished(config: dict, stage: dict) -> bool:
    """A stage with a CPU budget has trained it and been evaluated (the open-ended stage never finishes)."""
    run = stage_dir(config, stage)
    return stage.get("cpu_budget") is not None and (run / "result.json").exists() and \
        read_state(run).get("cpu", 0) >= stage["cpu_budget"]


def next_budget(run: Path, every: float) -> float:
    """The CPU budget of the open-ended stage's next segment: the next multiple of `every`."""
    return (math.floor(read_state(run).get("cpu", 0.0) / every) + 1) * every


def run_segment(config: dict, index: int, budget: float, evaluate: bool = True) -> dict | None:
    """Train stage `index` up to `budget` CPU seconds (resuming its checkpoint) and, with `evaluate`, evaluate it
    in the same process: its result."""
    stage = config["stages"][index]
    run = stage_dir(config, stage)
    run.mkdir(parents=True, exist_ok=True)
    processes = int(config.get("processes", 1))
    launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                        "--nproc_per_node", str(processes)]
    argv = [*launcher, str(SCRIPT), *stage_argv(config, index, budget)]
    if not evaluate:
        argv.append("--no-final-eval")
    env = {**os.environ, "OMP_NUM_THREADS": str(config.get("threads", 1))}
    print(f"[long run] {stage['name']}: training to {budget:g} CPU s", flush=True)
    with open(run / "train.log", "a") as log:
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        raise SystemExit(f"[long run] {stage['name']} stopped with exit code {done.returncode}: "
                         f"see {run / 'train.log'}")
    if not evaluate:
        return None
    result = json.loads((run / "result.json").read_text())
    shutil.copyfile(run / "result.json", run / f"result_{round(budget)}.json")
    return result


class SegmentEvaluations:
    """The open-ended stage's evaluations, each in a child process of its own beside the training (the second core):
    the generator of every finished segment is kept as `gen_<cpu>` and evaluated by `fact_capability.py --eval-only`
    into `<out>/<stage>_eval_<cpu>/result.json`; one runs at a time, the others wait their turn. After a stop, the
    snapshots whose evaluation is missing are evaluated again."""

    def __init__(self, config: dict, index: int):
        self.config, self.index = config, index
        self.stage = config["stages"][index]
        self.run = stage_dir(config, self.stage)
        self.running: tuple[int, subprocess.Popen, IO] | None = None  # budget, process, its log
        self.harvested: set[int] = set()

    def snapshots(self) -> list[int]:
        return sorted(int(p.name[len("gen_"):]) for p in self.run.glob("gen_*") if p.name[len("gen_"):].isdigit())

    def result_path(self, budget: int) -> Path:
        return Path(self.config["out"]) / f"{self.stage['name']}_eval_{budget}" / "result.json"

    def snapshot(self, every: float) -> None:
        """Keep the generator saved at the end of the last segment as gen_<segment budget>."""
        saved = self.run / "generator" / "training_state.json"
        if not saved.exists():
            return
        budget = round(math.floor(json.loads(saved.read_text())["cpu"] / every) * every)
        if budget and not (self.run / f"gen_{budget}").exists():
            shutil.copytree(self.run / "generator", self.run / f"gen_{budget}.tmp", dirs_exist_ok=True)
            os.replace(self.run / f"gen_{budget}.tmp", self.run / f"gen_{budget}")

    def argv(self, budget: int) -> list[str]:
        config = self.config
        argv = ["--name", f"{self.stage['name']}_eval_{budget}", "--out", str(config["out"]), "--init",
                str(self.run / f"gen_{budget}"), "--eval-only", "--threads", "1",
                *map(str, config.get("common", [])), *map(str, self.stage.get("flags", []))]
        if config.get("long_eval_sets"):
            argv += ["--eval-sets", config["long_eval_sets"]]
        if config.get("perplexity_blocks"):
            argv += ["--perplexity-blocks", str(config["perplexity_blocks"])]
        return argv

    def step(self, wait: bool = False) -> None:
        """Harvest a finished evaluation (its row, the plot) and start the next missing one."""
        if self.running is not None:
            budget, process, log = self.running
            if wait:
                process.wait()
            if process.poll() is None:
                return
            log.close()
            self.running = None
            if process.returncode != 0:
                print(f"[long run] evaluation at {budget} CPU s failed ({process.returncode}); retried on the next "
                      "start", flush=True)
                self.harvested.add(budget)
        for budget in self.snapshots():
            path = self.result_path(budget)
            if path.exists() and budget not in self.harvested:
                shutil.copyfile(path, self.run / f"result_{budget}.json")
                append_row(Path(self.config["curve_log"]),
                           curve_row(self.config, self.index, json.loads(path.read_text())))
                plot(Path(self.config["curve_log"]), Path(self.config["plot"]))
                self.harvested.add(budget)
        waiting = [b for b in self.snapshots() if not self.result_path(b).exists() and b not in self.harvested]
        if waiting and self.running is None:
            budget = waiting[0]
            log = open(self.result_path(budget).parent.parent / f"{self.stage['name']}_eval_{budget}.log", "a")
            print(f"[long run] evaluating the generator at {budget} CPU s beside the training", flush=True)
            process = subprocess.Popen([sys.executable, str(SCRIPT), *self.argv(budget)], stdout=log,
                                       stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
            self.running = (budget, process, log)
            if wait:
                self.step(wait=True)


def earlier_tokens(config: dict, index: int) -> int:
    """Training tokens of the stages before `index` (from their state files)."""
    return sum(read_state(stage_dir(config, s)).get("tokens", 0) for s in config["stages"][:index])


def curve_row(config: dict, index: int, result: dict) -> dict:
    stage = config["stages"][index]
    row = {"stage": stage["name"], "step": result["steps"], "stage_cpu_s": result["train_cpu_s"],
           "tokens": earlier_tokens(config, index) + (result.get("train_tokens") or 0), "sets": {}}
    for name in CURVE_SETS:
        if name not in result:
            continue
        own, control = result[name]["own"], result[name]["control"]
        prompting = result.get(f"baselines_{name}", {}).get("prompting", {})
        row["sets"][name] = {"own": own["contains"], "control": control["contains"],
                             "prompting": prompting.get("contains"), "own_by_kind": own["by_kind"]["contains"],
                             "prompting_by_kind": prompting.get("by_kind", {}).get("contains"),
                             "nll_gap": round(result[name]["nll_gap"], 3)}
    if "perplexity" in result:  # held-out reconstruction / completion: own adapter, control, no context
        names = {"own": "adapter", "control": "adapter_other_context", "no_context": "no_context"}
        row["perplexity"] = {objective: {name: round(ppl[key], 2) for name, key in names.items() if key in ppl}
                             for objective, ppl in result["perplexity"].items() if isinstance(ppl, dict)}
    return row


def append_row(path: Path, row: dict) -> None:
    """One line per (stage, step); a repeated evaluation replaces its line."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    rows = [r for r in rows if (r["stage"], r["step"]) != (row["stage"], row["step"])] + [row]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(path.with_suffix(".tmp"), path)


def plot(curve_log: Path, out: Path) -> None:
    """Gold contained against training tokens: the words documents by answer kind, one entity and several needles a
    document; prompting dashed, the control dotted. With rows that measured it, a third panel: held-out
    reconstruction and completion perplexity (own adapter; control dotted, no context dashed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted((json.loads(line) for line in curve_log.read_text().splitlines() if line.strip()),
                  key=lambda r: r["tokens"])
    measured = [r for r in rows if "perplexity" in r]
    fig, axes = plt.subplots(1, 3 if measured else 2, figsize=(16 if measured else 11, 4))
    words = [r for r in rows if "words" in r["sets"]]
    kinds = sorted({k for r in words for k in r["sets"]["words"]["own_by_kind"]})
    xs = [r["tokens"] / 1e6 for r in words]
    prompting = (words[-1]["sets"]["words"]["prompting_by_kind"] or {}) if words else {}
    for kind in kinds:
        line, = axes[0].plot(xs, [r["sets"]["words"]["own_by_kind"].get(kind) for r in words], marker="o",
                             label=kind)
        if kind in prompting:
            axes[0].axhline(prompting[kind], ls="--", color=line.get_color(), alpha=0.5)
    if words:
        axes[0].plot(xs, [r["sets"]["words"]["control"] for r in words], ":",
                     color="gray", label="control (all)")
    axes[0].set_title("words documents: gold contained by kind (dashed: prompting)")
    for name in ("words_one", "multi_needle", "words_unseen", "facts", "word_needle_bare", "name_needle_bare",
                 "prose_recall"):
        pts = [(r["tokens"] / 1e6, r["sets"][name]["own"]) for r in rows if name in r["sets"]]
        if pts:
            line, = axes[1].plot(*zip(*pts), marker="o", label=name)
            last = next(r for r in reversed(rows) if name in r["sets"])["sets"][name]["prompting"]
            if last is not None:
                axes[1].axhline(last, ls="--", color=line.get_color(), alpha=0.5)
    axes[1].set_title("held-out sets: gold contained (dashed: prompting)")
    for objective in ("reconstruction", "completion") if measured else ():
        xs = [r["tokens"] / 1e6 for r in measured]
        line, = axes[2].plot(xs, [r["perplexity"][objective]["own"] for r in measured], marker="o", label=objective)
        control = [r["perplexity"][objective].get("control") for r in measured]
        if None not in control:
            axes[2].plot(xs, control, ":", marker="x", color=line.get_color(), alpha=0.6)
        no_context = measured[-1]["perplexity"][objective].get("no_context")  # the same for every generator
        if no_context is not None:
            axes[2].axhline(no_context, ls="--", color=line.get_color(), alpha=0.5)
    for ax in axes[:2]:
        ax.set_xlabel("training tokens (millions)")
        ax.set_ylabel("gold contained (%)")
        ax.set_ylim(0, 105)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if measured:
        axes[2].set_title("held-out perplexity (x: control; dashed: no context)")
        axes[2].set_xlabel("training tokens (millions)")
        axes[2].set_ylabel("perplexity (lower is better)")
        axes[2].legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def status(config: dict) -> None:
    for stage in config["stages"]:
        run = stage_dir(config, stage)
        state = read_state(run)
        print(f"{stage['name']:<20} step {state.get('step', 0):>6}  {state.get('cpu', 0):>8.0f} CPU s  "
              f"{state.get('tokens', 0):>10} tokens  {'done' if stage_finished(config, stage) else ''}")
    curve = Path(config["curve_log"])
    if curve.exists():
        lines = [line for line in curve.read_text().splitlines() if line.strip()]
        if lines:
            print("last evaluation:", lines[-1][:400])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--status", action="store_true", help="say where the run stands and stop")
    p.add_argument("--segments", type=int, default=None, help="stop after this many segments of the last stage")
    args = p.parse_args(argv)
    config = load_config(args.config)
    if args.status:
        status(config)
        return
    curve_log, figure = Path(config["curve_log"]), Path(config["plot"])
    stages = config["stages"]
    for index, stage in enumerate(stages):
        run = stage_dir(config, stage)
        if stage.get("cpu_budget") is not None:
            if not stage_finished(config, stage):
                result = run_segment(config, index, stage["cpu_budget"])
                append_row(curve_log, curve_row(config, index, result))
                plot(curve_log, figure)
            continue
        every, segments = float(stage["eval_every_cpu_s"]), 0
        evaluations = SegmentEvaluations(config, index)
        try:
            while args.segments is None or segments < args.segments:
                evaluations.snapshot(every)
                evaluations.step()
                run_segment(config, index, next_budget(run, every), evaluate=False)
                segments += 1
            evaluations.snapshot(every)
            evaluations.step(wait=True)
            while evaluations.running is not None or any(not evaluations.result_path(b).exists()
                                                         and b not in evaluations.harvested
                                                         for b in evaluations.snapshots()):
                evaluations.step(wait=True)
        finally:
            if evaluations.running is not None and evaluations.running[1].poll() is None:
                evaluations.running[1].terminate()


if __name__ == "__main__":
    main()
