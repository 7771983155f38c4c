"""Summaries of per-answer records and the files an evaluation writes: JSON, Markdown table, PNG plots.

Written to `out_dir`: `results.json` (everything below), `results.md` (tables), `predictions.jsonl` (one line per
answer and method), `score_by_length.png` (score per context-length bucket, one line per method) and
`score_vs_cost.png` (score against FLOPs per answer and against bytes of per-context state). Plots need
matplotlib (the `plots` extra); without it they are skipped with a note in `results.json`.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Optional, Sequence

from ..lm_costs import format_bytes
from .engine import CONTROL, METHOD_LABELS
from .metrics import perplexity

__all__ = ["METRICS", "NO_KIND", "bucket_label", "bucket_labels", "aggregate", "control_gap", "control_contained",
           "summarize", "to_markdown", "write_report"]

METRICS = {
    "f1": {"name": "token F1 (SQuAD normalisation, best gold), x100", "higher_is_better": True},
    "accuracy": {"name": "accuracy (exact match), x100", "higher_is_better": True},
    "perplexity": {"name": "perplexity of the assistant replies", "higher_is_better": False},
}
# the `by_kind` row of questions without a "kind" in a file where other questions have one
NO_KIND = "(no kind)"


# ---- buckets ----------------------------------------------------------------------------------------------------
def bucket_labels(buckets: Sequence[int]) -> list[str]:
    """Labels of the context-length buckets, shortest first: `<=512`, `513-1024`, ..., `>8192`."""
    edges = sorted(set(int(b) for b in buckets))
    if not edges or edges[0] < 1:
        raise ValueError(f"buckets must be positive token counts, got {list(buckets)}.")
    labels = [f"<={edges[0]}"] + [f"{a + 1}-{b}" for a, b in zip(edges, edges[1:])]
    return labels + [f">{edges[-1]}"]


def bucket_label(tokens: int, buckets: Sequence[int]) -> str:
    """The bucket of a context of `tokens` tokens: the smallest edge >= tokens (or above the largest)."""
    edges = sorted(set(int(b) for b in buckets))
    labels = bucket_labels(edges)
    for edge, label in zip(edges, labels):
        if tokens <= edge:
            return label
    return labels[-1]


# ---- aggregation ------------------------------------------------------------------------------------------------
def aggregate(records: Sequence[dict], metric: str) -> dict:
    """`{"score", "answers"}` (+ `"exact_match"` for F1, `"scored_tokens"` for perplexity) of some records, and
    `"contained"` (gold contained, x100) where records carry it: over the records that do, with their number in
    `"contained_answers"` when that is not all of them (e.g. demonstrations mixing option scoring and generation)."""
    out: dict = {"answers": len(records)}
    if not records:
        return out | {"score": math.nan}
    if metric == "f1":
        out["score"] = 100 * sum(r["f1"] for r in records) / len(records)
        out["exact_match"] = 100 * sum(r["em"] for r in records) / len(records)
        if all("answer_nll" in r for r in records):  # absent from runs made before it was recorded
            tokens = sum(r["answer_tokens"] for r in records)
            out["answer_perplexity"] = perplexity(sum(r["answer_nll"] for r in records), tokens)
    elif metric == "accuracy":
        out["score"] = 100 * sum(r["correct"] for r in records) / len(records)
    elif metric == "perplexity":
        tokens = sum(r["tokens"] for r in records)
        out["score"] = perplexity(sum(r["nll"] for r in records), tokens)
        out["scored_tokens"] = tokens
    else:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(METRICS)}")
    contained = [r["contained"] for r in records if r.get("contained") is not None]
    if contained:
        out["contained"] = 100 * sum(contained) / len(contained)
        if len(contained) < len(records):
            out["contained_answers"] = len(contained)
    return out


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def method_summary(records: Sequence[dict], metric: str) -> dict:
    out = aggregate(records, metric)
    units: dict[str, dict] = {}
    for r in records:
        units.setdefault(r["unit"], r)
    answer_seconds = sum(r["seconds"] for r in records)
    context_seconds = sum(r["context_seconds"] for r in records)
    out.update({
        "contexts": len(units),
        "examples_per_s": len(records) / (answer_seconds + context_seconds) if records else math.nan,
        "seconds_per_answer": _mean(r["seconds"] for r in records),
        "context_seconds_per_answer": _mean(r["context_seconds"] for r in records),
        "flops_per_answer": _mean(r["flops"] for r in records),
        "context_flops_per_answer": _mean(r["context_flops"] for r in records),
        "prompt_tokens_per_answer": _mean(r["prompt_tokens"] for r in records),
        "generated_tokens_per_answer": _mean(r["generated_tokens"] for r in records),
        "state_bytes_per_context": _mean(u["state_bytes"] for u in units.values()),
        "context_tokens_per_context": _mean(u["context_tokens"] for u in units.values()),
        "truncated_answers": sum(bool(r["truncated"]) for r in records),
    })
    out["total_flops_per_answer"] = out["flops_per_answer"] + out["context_flops_per_answer"]
    out["total_seconds_per_answer"] = out["seconds_per_answer"] + out["context_seconds_per_answer"]
    return out


def _table(records: Sequence[dict], key: str, order: Sequence[str], methods: Sequence[str], metric: str) -> dict:
    grouped: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        grouped[r[key]][r["method"]].append(r)
    return {label: {m: aggregate(grouped[label][m], metric) for m in methods if grouped[label][m]}
            for label in order if label in grouped}


def _kind_table(records: Sequence[dict], methods: Sequence[str], metric: str) -> dict:
    """Scores per answer kind (`{kind: {method: aggregate}}`, kinds sorted, questions without one last under
    `NO_KIND`); empty when no record has a kind."""
    if not any(r.get("kind") for r in records):
        return {}
    labelled = [r | {"kind": r.get("kind") or NO_KIND} for r in records]
    kinds = sorted({r["kind"] for r in labelled} - {NO_KIND}) + [NO_KIND]
    return _table(labelled, "kind", kinds, methods, metric)


def _nll_per_token(records: Sequence[dict], method: str) -> dict:
    """`{(unit, i): NLL per scored token}` of one method's records (the i-th answer of each context); empty when any
    record lacks a likelihood (accuracy tasks, runs made before gold answers were scored)."""
    out, seen = {}, defaultdict(int)
    for r in records:
        if r["method"] != method:
            continue
        nll, tokens = r.get("answer_nll", r.get("nll")), r.get("answer_tokens", r.get("tokens"))
        if nll is None or not tokens:
            return {}
        out[(r["unit"], seen[r["unit"]])] = nll / tokens
        seen[r["unit"]] += 1
    return out


def control_gap(records: Sequence[dict]) -> Optional[dict]:
    """Paired comparison of the own context's adapter with the control (another context's adapter), answer by
    answer: `gap = NLL per token with the other adapter - with the own` on the same scored tokens (the gold answer,
    or the reply). Positive when the adapter carries its own context. None unless both methods scored the same
    answers with a likelihood. Returns the mean gap with its standard error and how many answers each side won."""
    own, other = _nll_per_token(records, "adapter"), _nll_per_token(records, CONTROL)
    if not own or own.keys() != other.keys():
        return None
    gaps = [other[key] - own[key] for key in own]
    n = len(gaps)
    mean = sum(gaps) / n
    spread = math.sqrt(sum((g - mean) ** 2 for g in gaps) / (n - 1)) if n > 1 else math.nan
    return {"answers": n, "mean_gap_nats_per_token": mean, "standard_error": spread / math.sqrt(n),
            "own_better": sum(g > 0 for g in gaps), "other_better": sum(g < 0 for g in gaps)}


def control_contained(records: Sequence[dict]) -> Optional[dict]:
    """Paired comparison of the own context's adapter with the control on "gold contained", answer by answer (the
    i-th answer of each context with either adapter): how many answers contain the gold with the own adapter only,
    with the other only, with both, with neither, and the difference of the two rates (x100) with its standard
    error. Answers without a `contained` value (no gold answer to look for) are left out; None unless both methods
    answered the same questions and some of them have one."""
    def outcomes(method):
        out, seen = {}, defaultdict(int)
        for r in records:
            if r["method"] == method:
                out[(r["unit"], seen[r["unit"]])] = r.get("contained")
                seen[r["unit"]] += 1
        return out

    own, other = outcomes("adapter"), outcomes(CONTROL)
    if not own or own.keys() != other.keys():
        return None
    keys = [key for key in own if own[key] is not None and other[key] is not None]
    if not keys:
        return None
    diffs = [own[key] - other[key] for key in keys]
    n = len(diffs)
    mean = sum(diffs) / n
    spread = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else math.nan
    both = sum(own[key] > 0 and other[key] > 0 for key in keys)
    return {"answers": n, "own_only": sum(d > 0 for d in diffs), "other_only": sum(d < 0 for d in diffs),
            "both": both, "neither": n - both - sum(d != 0 for d in diffs),
            "difference": 100 * mean, "standard_error": 100 * spread / math.sqrt(n)}


def summarize(records: Sequence[dict], *, metric: str, methods: Sequence[str], buckets: Sequence[int]) -> dict:
    """Per-method summary, scores per context-length bucket, per group (documents per context, k, ...) and per
    answer kind (`by_kind`, when questions have a "kind"; else empty), and the paired own-vs-other adapter
    comparisons when the control ran (`control_gap` on likelihoods, `control_contained` on gold contained)."""
    by_method = {m: [r for r in records if r["method"] == m] for m in methods}
    groups = sorted({r["group"] for r in records}, key=_natural)
    return {
        "metric": metric, "metric_name": METRICS[metric]["name"],
        "higher_is_better": METRICS[metric]["higher_is_better"],
        "methods": {m: method_summary(rs, metric) for m, rs in by_method.items() if rs},
        "by_bucket": _table(records, "bucket", bucket_labels(buckets), methods, metric),
        "by_group": _table(records, "group", groups, methods, metric),
        "by_kind": _kind_table(records, methods, metric),
        "control_gap": control_gap(records),
        "control_contained": control_contained(records),
    }


def _natural(label: str):
    name, _, value = label.partition("=")
    return (name, int(value)) if value.isdigit() else (name, math.inf)


# ---- Markdown ---------------------------------------------------------------------------------------------------
def _fmt(value: Optional[float], digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _gflops(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value / 1e9:.3g}"


def to_markdown(result: dict) -> str:
    methods = result["methods"]
    metric = result["metric"]
    lines = [
        f"# {result['task']} evaluation",
        "",
        f"- data: `{result['data_file']}`; model: `{result['model']}`; generator: `{result['generator']}`"
        + ("" if result.get("generator_trained", True) else " (untrained: adapters are zero)"),
        f"- score: {result['metric_name']} ({'higher' if result['higher_is_better'] else 'lower'} is better)",
        f"- {result['settings']['contexts']} contexts, wall time {result['wall_seconds']:.1f} s",
    ]
    reused = result["settings"].get("reused_baselines")
    if reused:
        lines.append(f"- reused from `{reused['from']}` (they do not depend on the generator): "
                     + ", ".join(METHOD_LABELS.get(m, m) for m in reused["methods"]))
    contained = any("contained" in s for s in methods.values())
    lines += [
        "- input: " + ", ".join(f"{k}={v}" for k, v in result.get("data", {}).items() if k != "skipped"),
        "",
        "| method | score | " + ("EM | " if metric == "f1" else "") + ("gold contained | " if contained else "")
        + ("gold-answer PPL | " if metric == "f1" else "") + "answers | answers/s "
        "| s/answer | + context s/answer | GFLOPs/answer | + context GFLOPs/answer | state per context | truncated |",
        "|---|---:|" + ("---:|" if metric == "f1" else "") + ("---:|" if contained else "")
        + ("---:|" if metric == "f1" else "") + "---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m, s in methods.items():
        lines.append(
            f"| {METHOD_LABELS.get(m, m)} | {_fmt(s['score'])} | "
            + (f"{_fmt(s.get('exact_match'))} | " if metric == "f1" else "")
            + (f"{_contained_cell(s)} | " if contained else "")
            + (f"{_fmt(s.get('answer_perplexity'))} | " if metric == "f1" else "")
            + f"{s['answers']} | {_fmt(s['examples_per_s'])} | {_fmt(s['seconds_per_answer'], 3)} | "
            f"{_fmt(s['context_seconds_per_answer'], 3)} | {_gflops(s['flops_per_answer'])} | "
            f"{_gflops(s['context_flops_per_answer'])} | {format_bytes(s['state_bytes_per_context'])} | "
            f"{s['truncated_answers']} |"
        )
    gap = result.get("control_gap")
    if gap:
        lines += ["", f"Own context's adapter against another context's (paired, same scored tokens): lower NLL for "
                  f"{gap['own_better']} of {gap['answers']} answers ({gap['other_better']} the other way), mean gap "
                  f"{gap['mean_gap_nats_per_token']:+.3f} ± {gap['standard_error']:.3f} nats/token (standard error; "
                  "positive: the adapter carries its own context)."]
    paired = result.get("control_contained")
    if paired:
        lines += ["", f"Gold contained, own context's adapter against another context's (paired, same questions): "
                  f"own only {paired['own_only']}, other only {paired['other_only']}, both {paired['both']}, "
                  f"neither {paired['neither']} of {paired['answers']} answers; difference "
                  f"{paired['difference']:+.2f} ± {_fmt(paired['standard_error'])} points (standard error)."]
    for title, key in (("context length (tokens)", "by_bucket"), ("group", "by_group")):
        table = result[key]
        if not table:
            continue
        names = list(methods)
        lines += ["", f"| {title} | " + " | ".join(METHOD_LABELS.get(m, m) for m in names) + " | answers |",
                  "|---|" + "---:|" * (len(names) + 1)]
        for label, row in table.items():
            counts = max((c["answers"] for c in row.values()), default=0)
            lines.append(f"| {label} | " + " | ".join(_fmt(row[m]["score"]) if m in row else "-" for m in names)
                         + f" | {counts} |")
    lines += _kind_markdown(result.get("by_kind") or {}, metric)
    return "\n".join(lines) + "\n"


def _contained_cell(summary: dict) -> str:
    """Gold contained x100; `(of N)` when only N of the answers could be checked (generated, not option-scored)."""
    text = _fmt(summary.get("contained"))
    return text + (f" (of {summary['contained_answers']})" if "contained_answers" in summary else "")


def _kind_markdown(by_kind: dict, metric: str) -> list[str]:
    """The per-kind table: one row per answer kind and method (F1 / EM / gold contained / answers for F1 tasks)."""
    if not by_kind:
        return []
    scores = {"f1": ["F1", "EM"], "accuracy": ["accuracy"], "perplexity": ["perplexity"]}[metric]
    contained = any("contained" in cell for row in by_kind.values() for cell in row.values())
    header = scores + (["gold contained"] if contained else []) + ["answers"]
    lines = ["", "| answer kind | method | " + " | ".join(header) + " |", "|---|---|" + "---:|" * len(header)]
    for kind, row in by_kind.items():
        for m, cell in row.items():
            values = [_fmt(cell["score"])] + ([_fmt(cell.get("exact_match"))] if metric == "f1" else [])
            values += [_contained_cell(cell)] if contained else []
            lines.append(f"| {kind} | {METHOD_LABELS.get(m, m)} | " + " | ".join(values) + f" | {cell['answers']} |")
    return lines


# ---- plots ------------------------------------------------------------------------------------------------------
def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write a laid-out matplotlib figure as a PNG (creating its folder) and close it; returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plots(result: dict, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = {}
    methods = list(result["methods"])
    ylabel = "perplexity" if result["metric"] == "perplexity" else "score"

    styles = {m: dict(marker=mk, linestyle=ls) for m, mk, ls in zip(methods, "os^D", ("-", "--", ":", "-."))}
    fig, ax = plt.subplots(figsize=(6.5, 4))
    labels = list(result["by_bucket"])
    for m in methods:
        xs = [i for i, label in enumerate(labels) if m in result["by_bucket"][label]]
        ys = [result["by_bucket"][labels[i]][m]["score"] for i in xs]
        ax.plot(xs, ys, label=METHOD_LABELS.get(m, m), markersize=7, alpha=0.85, **styles[m])
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{result['task']}: {ylabel} by context length")
    ax.margins(x=0.08, y=0.12)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    written["score_by_length"] = str(save_figure(fig, out / "score_by_length.png"))

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for m in methods:
        s = result["methods"][m]
        label = METHOD_LABELS.get(m, m)
        marker = styles[m]["marker"]
        for ax, x in ((left, s["total_flops_per_answer"] / 1e9), (right, s["state_bytes_per_context"] / 2 ** 20)):
            ax.scatter([x], [s["score"]], s=60, marker=marker, label=label, alpha=0.85)
            ax.annotate(label, (x, s["score"]), textcoords="offset points", xytext=(6, 6), fontsize=8)
    left.set_xlabel("GFLOPs per answer (incl. amortised contextualisation)")
    right.set_xlabel("MiB of per-context state (KV cache of the context vs adapter)")
    left.set_ylabel(ylabel)
    for ax in (left, right):
        ax.set_xlim(left=0)
        ax.margins(x=0.2, y=0.15)
        ax.grid(alpha=0.3)
    left.legend()
    fig.suptitle(f"{result['task']}: {ylabel} vs cost")
    fig.tight_layout()
    written["score_vs_cost"] = str(save_figure(fig, out / "score_vs_cost.png"))
    return written


def _clean(value):
    """JSON-safe copy: nan/inf become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_report(result: dict, records: Sequence[dict], out_dir: str | os.PathLike) -> dict[str, str]:
    """Write the result files into `out_dir`; returns `{kind: path}` (also stored in `result["files"]`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "results.json"), "markdown": str(out / "results.md"),
             "predictions": str(out / "predictions.jsonl")}
    try:
        files.update(_plots(result, out))
    except ImportError:
        result["plots_skipped"] = "matplotlib is not installed (pip install 'peft-generative[eval]')"
    result["files"] = files
    with open(files["predictions"], "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(_clean(r), ensure_ascii=False) + "\n")
    Path(files["markdown"]).write_text(to_markdown(result), encoding="utf-8")
    Path(files["json"]).write_text(json.dumps(_clean(result), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return files
