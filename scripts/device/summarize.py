"""The device check's one summary: every stage's outcome, time and details, as JSON and as Markdown.

    python scripts/device/summarize.py WORK OUT

Reads what scripts/device_check.sh left in WORK/stages: `NN-name.status` (`rc seconds`, or `skipped REASON`),
`NN-name.log` and, where a stage made them, `NN-name.json` (its helper's details), `NN-name.xml` (a pytest JUnit
report) and `NN-name.md` (a table, the benchmark's); writes OUT/device_check.json and
OUT/device_check.md. A stage's status: ok (exit 0), failed (any other exit), timeout (124/137: killed at its
limit), skipped. Exits 1 when a stage failed or timed out, else 0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LOG_TAIL_CHARS = 3000


def test_counts(junit: Path) -> dict:
    """passed / failed / errors / skipped of a pytest JUnit XML report."""
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.parse(junit).getroot()
    except ElementTree.ParseError:
        return {"unreadable": 1}
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {"passed": passed, "failed": counts["failures"], "errors": counts["errors"], "skipped": counts["skipped"]}


def read_stage(status_file: Path) -> dict:
    stem = status_file.with_suffix("")
    name = stem.name.split("-", 1)[1]
    words = status_file.read_text(encoding="utf-8").split()
    if words and words[0] == "skipped":
        stage = {"name": name, "status": "skipped", "reason": " ".join(words[1:])}
    else:
        rc, seconds = int(words[0]), float(words[1])
        status = "ok" if rc == 0 else "timeout" if rc in (124, 137) else "failed"
        stage = {"name": name, "status": status, "rc": rc, "seconds": round(seconds, 1)}
    detail = stem.with_suffix(".json")
    if detail.is_file():
        try:
            stage["detail"] = json.loads(detail.read_text(encoding="utf-8"))
        except ValueError:
            stage["detail"] = {"unreadable": detail.name}
    junit = stem.with_suffix(".xml")
    if junit.is_file():
        stage.setdefault("detail", {})["counts"] = test_counts(junit)
    table = stem.with_suffix(".md")
    if table.is_file():
        stage.setdefault("detail", {})["table"] = table.read_text(encoding="utf-8")
    log = stem.with_suffix(".log")
    if log.is_file() and stage["status"] != "ok":
        stage["log_tail"] = log.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]
    return stage


def markdown(summary: dict) -> str:
    lines = [f"# Device check: {summary['verdict']}", "",
             f"Device `{summary['device']}`, model `{summary['model']}`, started {summary['started']}.", "",
             "| stage | status | seconds | notes |", "|---|---|---:|---|"]
    for stage in summary["stages"]:
        notes = stage.get("reason", "")
        detail = stage.get("detail") or {}
        if stage["name"] == "tests" and "counts" in detail:
            notes = ", ".join(f"{n} {k}" for k, n in detail["counts"].items())
        if stage["name"] == "train" and detail.get("tokens_per_s"):
            peak = detail.get("peak_memory_mib")
            notes = (f"{detail['tokens_per_s']:.0f} tokens/s, {detail['median_step_s']:.3f} s/step of "
                     f"{detail['tokens_per_step']} tokens" + (f", peak {peak:.0f} MiB" if peak else ""))
        if stage["name"] == "install" and "packages" in detail:
            chosen = sorted(n for n, d in detail["packages"].items() if d["installed"])
            notes = "; ".join([f"installed: {', '.join(chosen) or 'nothing'}", *detail.get("problems", [])])
        if stage["name"] == "environment" and "torch" in detail:
            notes = f"{detail.get('gpu', 'no GPU')}, torch {detail['torch']}, python {detail.get('python')}"
        lines.append(f"| {stage['name']} | {stage['status']} | {stage.get('seconds', '')} | {notes} |")
    bench = next((s for s in summary["stages"] if s["name"] == "bench"), None)
    if bench and (bench.get("detail") or {}).get("table"):
        lines += ["", "## Benchmark", "", bench["detail"]["table"]]
    for stage in summary["stages"]:
        if "log_tail" in stage:
            lines += ["", f"## {stage['name']}: end of the log", "", "```", stage["log_tail"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def summarize(work: Path, out: Path) -> dict:
    meta_file = work / "meta.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    stages = [read_stage(p) for p in sorted((work / "stages").glob("*.status"))]
    failed = [s["name"] for s in stages if s["status"] in ("failed", "timeout")]
    summary = {"verdict": "all stages passed" if not failed else f"failed: {', '.join(failed)}",
               "failed": failed, "device": meta.get("device"), "model": meta.get("model"),
               "started": meta.get("started"), "stages": stages}
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_check.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (out / "device_check.md").write_text(markdown(summary), encoding="utf-8")
    return summary


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: summarize.py WORK OUT", file=sys.stderr)
        return 2
    summary = summarize(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"summarize: {summary['verdict']}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
