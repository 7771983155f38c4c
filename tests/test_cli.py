"""The command line as a user meets it: the real `peft-generative` command in subprocesses (help, version, exit
codes, messages for mistakes, quiet output) and `ask`, `chat` and `export` end to end on a tiny model with the
real SmolLM2 tokenizer and a random (non-zero) generator."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from .conftest import randomize_generator, small_base

CLI = [sys.executable, "-m", "peft_generative.cli"]
SCRIPT = Path(sys.executable).parent / "peft-generative"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
DOCUMENT = "The lantern of Oakvale is green. Mira keeps it lit every night from the old tower.\n"


def cli(*args, stdin=None, timeout=300, **kwargs):
    return subprocess.run([*CLI, *map(str, args)], input=stdin, capture_output=True, text=True, env=ENV,
                          timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tokenizer):
    """(model dir, generator dir, a LoRA dir, document file) for the real commands."""
    import peft_generative as pg
    from peft import get_peft_model

    root = tmp_path_factory.mktemp("cli")
    base = small_base(tokenizer, max_positions=1024)
    base.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    model = get_peft_model(base, pg.GenerativeAdapterConfig(task_type="CAUSAL_LM", key_dim=8, value_dim=8, rank=4))
    randomize_generator(model)
    model.save_pretrained(root / "generator")
    model.contextualize("a text", tokenizer=tokenizer).save_pretrained(root / "lora")
    (root / "doc.txt").write_text(DOCUMENT, encoding="utf-8")
    return {"model": root / "model", "generator": root / "generator", "lora": root / "lora", "doc": root / "doc.txt"}


def model_args(tiny):
    return ["--model", tiny["model"], "--generator", tiny["generator"]]


# ---- fast: nothing loaded -----------------------------------------------------------------------------------------
def test_help_and_version_do_not_import_torch():
    code = ("import sys; from peft_generative.cli import main; rc = main(['--help']); "
            "assert 'torch' not in sys.modules and 'peft' not in sys.modules, 'heavy import'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ask" in done.stdout and "chat" in done.stdout and "export" in done.stdout
    version = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, env=ENV, timeout=60)
    import peft_generative

    assert version.returncode == 0 and version.stdout.strip() == f"peft-generative {peft_generative.__version__}"


def test_train_help_is_short_and_points_to_the_recipes():
    done = cli("train", "--help")
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) < 40 and "examples/configs" in done.stdout and "--help-all" in done.stdout
    assert cli("train").returncode == 2  # nothing to train
    missing = cli("train", "--config", "no/such/recipe.yaml")
    assert missing.returncode == 2 and "no/such/recipe.yaml: no such file" in missing.stderr


def test_train_short_help_names_options_the_full_parser_accepts():
    from peft_generative.cli.train import SHORT_HELP, SHORT_HELP_OPTIONS
    from peft_generative.training.script import make_parser

    full = make_parser().format_help()
    for name in SHORT_HELP_OPTIONS:
        assert f"--{name}" in SHORT_HELP, name
        assert name == "config" or f"--{name}" in full, name  # --config is read by TrlParser.parse_args_and_config


def test_a_missing_extra_is_a_runtime_failure_naming_the_extra(monkeypatch, capsys):
    code = ("import sys; sys.modules['trl'] = None; from peft_generative.cli import main; "
            "sys.exit(main(['train', '--config', 'examples/configs/pretrain_smollm2.yaml']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 1 and 'pip install "peft-generative[train]"' in done.stderr
    assert "Traceback" not in done.stderr
    # --verbose shows the traceback too
    from peft_generative.cli import main

    monkeypatch.setitem(sys.modules, "trl", None)
    recipe = Path(__file__).parent.parent / "examples" / "configs" / "pretrain_smollm2.yaml"
    assert main(["--verbose", "train", "--config", str(recipe)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and 'pip install "peft-generative[train]"' in err


@pytest.mark.parametrize("user", ["../../x", "/abs/path", "a/b", "", ".hidden", "..", "a\\b", "x" * 129])
def test_chat_refuses_user_ids_that_are_paths(tmp_path, user):
    memories = tmp_path / "memories"
    done = cli("chat", "--user", user, "--memory-dir", memories, stdin="hello\n")
    assert done.returncode == 2 and "--user" in done.stderr and "Traceback" not in done.stderr
    assert not memories.exists() and sorted(p.name for p in tmp_path.rglob("*")) == []


def test_user_ids_land_inside_the_memory_dir(tmp_path):
    from peft_generative.cli.common import UsageError
    from peft_generative.cli.memory import memory_path

    assert memory_path(tmp_path, "alice@example.com") == tmp_path / "alice@example.com.safetensors"
    (tmp_path / "evil.safetensors").symlink_to(tmp_path.parent / "elsewhere.safetensors")
    with pytest.raises(UsageError, match="inside"):
        memory_path(tmp_path, "evil")


def test_mistakes_are_usage_errors_before_any_model_loads(tmp_path, tiny):
    binary = tmp_path / "image.bin"
    binary.write_bytes(bytes(range(256)))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9".encode("latin-1"))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    not_a_generator = tmp_path / "empty_dir"
    not_a_generator.mkdir()
    cases = [
        (["ask", "--context", tmp_path, "-q", "x"], "is a directory"),
        (["ask", "--context", tmp_path / "missing.txt", "-q", "x"], "no such file"),
        (["ask", "--context", binary, "-q", "x"], f"{binary} looks like a binary file"),
        (["ask", "--context", latin1, "-q", "x"], f"{latin1} is not UTF-8 text"),
        (["ask", "--context", tiny["doc"], "-q", "x", "--model", tmp_path / "no-model"], "--model"),
        (["ask", "--context", tiny["doc"], "-q", "x", "--model", a_file], "--model"),
        (["ask", "--context", tiny["doc"], "-q", "x", "--model", not_a_generator], "no config.json"),
        (["ask", "--context", tiny["doc"], "-q", "x", "--generator", tiny["lora"]], "LORA adapter"),
        (["ask", "--context", tiny["doc"], "-q", "x", "--generator", not_a_generator], "not a saved generator"),
        (["ask", "--context", tiny["doc"], "-q", "x", "--save-lora", a_file], "is a file"),
        (["ask", "--context", tiny["doc"], "-q", "x", "--max-new-tokens", "0"], "positive integer"),
        (["export", "--context", tiny["doc"], "--out", a_file], "--out"),
        (["export", "--state", tmp_path / "missing.safetensors", "--out", tmp_path / "o"], "no such file"),
        (["export", "--state", a_file, "--out", tmp_path / "o"], "not a readable safetensors file"),
        (["export", "--state", tiny["lora"] / "adapter_model.safetensors", "--out", tmp_path / "o"],
         "not a saved context state"),
        (["chat", "--user", "alice", "--memory-dir", a_file], "--memory-dir"),
        (["interpolate", tiny["generator"], tiny["lora"], "--weight", "0.5", "--out", tmp_path / "m"], "LORA"),
        (["ask"], "--context"),
    ]
    for args, message in cases:
        done = cli(*args, stdin="")
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    empty = cli("ask", "--context", "-", "-q", "x", stdin="")
    assert empty.returncode == 2 and "stdin is empty" in empty.stderr


def test_stdin_context_cannot_also_give_the_questions(tiny):
    # no controlling terminal (a new session): the questions cannot come from /dev/tty either
    done = cli("ask", "--context", "-", "--interactive", *model_args(tiny), stdin=DOCUMENT, start_new_session=True)
    assert done.returncode == 2 and "pass them with --question" in done.stderr


# ---- the real commands on a tiny model ------------------------------------------------------------------------------
def test_ask_answers_quietly_and_saves_the_lora(tmp_path, tiny):
    lora = tmp_path / "doc-lora"
    done = cli("ask", "--context", tiny["doc"], "-q", "What colour is the lantern?", "-q", "Who keeps it lit?",
               "--max-new-tokens", "4", "--save-lora", lora, *model_args(tiny))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 2  # one answer per question, nothing else on stdout
    assert "contextualized" in done.stderr and f"saved as a LoRA in {lora}" in done.stderr
    for noise in ("Loading weights", "Warning", "warn(", "Traceback", "it/s"):
        assert noise not in done.stderr, done.stderr
    assert json.loads((lora / "adapter_config.json").read_text())["peft_type"] == "LORA"


def _added_texts(path: Path) -> int:
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["peft_generative"])
    return sum(meta["added_texts"][0].values())


def test_two_chat_sessions_of_one_user_keep_both_exchanges_then_export(tmp_path, tiny):
    """Both sessions load the (empty) memory before either saves; without the lock and the re-read, the second
    save overwrote the first session's exchange. Then a third session continues the memory while `export` turns
    it into a plain LoRA."""
    memories = tmp_path / "memories"
    args = [*CLI, "chat", "--user", "carol", "--memory-dir", str(memories), "--max-new-tokens", "3",
            *map(str, model_args(tiny))]
    procs = [subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=ENV) for _ in range(2)]
    try:
        for proc in procs:  # wait until each has loaded the model and the (empty) memory
            lines = []
            while not any("[carol:" in line for line in lines):
                line = proc.stderr.readline()
                assert line, "".join(lines)
                lines.append(line)
        for i, proc in enumerate(procs):  # both sessions answer and save at the same time
            proc.stdin.write(f"Message from session {i}.\n")
            proc.stdin.close()
        outputs = [(proc.stdout.read(), proc.stderr.read(), proc.wait(timeout=300)) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert _added_texts(memories / "carol.safetensors") == 2  # both exchanges are in the memory
    assert sorted(p.name for p in memories.iterdir()) == ["carol.safetensors", "carol.safetensors.lock"]
    assert all(out.count("assistant> ") == 1 for out, _, _ in outputs)

    memory = memories / "carol.safetensors"
    out = tmp_path / "carol-lora"
    again = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=ENV)
    exported = cli("export", "--state", memory, "--out", out, *model_args(tiny))
    again_out, again_err = again.communicate("Where do I live?\n", timeout=300)
    assert again.returncode == 0 and "[carol: memory of" in again_err and again_out.count("assistant> ") == 1
    assert _added_texts(memory) == 3
    assert exported.returncode == 0, exported.stderr
    assert f"written to {out}" in exported.stdout and "rank 4" in exported.stdout
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4
    with safe_open(str(out / "adapter_model.safetensors"), framework="pt") as f:
        assert any("lora_A" in k for k in f.keys()) and any("lora_B" in k for k in f.keys())
