"""The generator under accelerate's FSDP2 and DeepSpeed ZeRO-2/3, on two CPU processes (gloo), against one process.

accelerate turns FSDP/DeepSpeed on only for GPUs, so the launched script is `peft_generative.training.cpu_sharding`
(the training script with accelerate's CPU gate lifted; everything else is the real code path). Tiny random Llama,
pure text rows (every row has as many target tokens, so the mean over two processes of per-process means is the
one-process mean), fp32: the updates must agree to float rounding.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from .conftest import small_base
from .test_trainer import documents

ROOT = Path(__file__).parent.parent
# two processes reduce the gradient in another order than one process sums it: float32 rounding over 3 AdamW steps
# (measured: 6e-8 for FSDP2 and ZeRO-2, weights up to 1.0)
# (the 8 documents pack into 15 blocks: 3 steps of 4 rows stay inside the first epoch, where both see the same rows)
ATOL = 1e-6

COMMON = ["--max_steps", "3", "--save_steps", "2", "--num_segments", "3", "--segment_length", "16", "--key_dim",
          "16", "--value_dim", "16", "--rank", "8", "--window", "32", "--learning_rate", "1e-2", "--report_to",
          "none", "--logging_steps", "1", "--disable_tqdm", "true", "--use_cpu", "true", "--seed", "0"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tokenizer):
    """A tiny model directory, a text training file, and the one-process reference run (4 rows per step)."""
    from peft_generative.training.script import main, make_parser

    root = tmp_path_factory.mktemp("sharded")
    model_dir = root / "tiny"
    small_base(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in documents(8)))
    files = ["--train_file", str(data), "--model_name_or_path", str(model_dir)]
    reference = root / "one"
    script_args, training_args = make_parser().parse_args_and_config(
        args=files + COMMON + ["--output_dir", str(reference), "--per_device_train_batch_size", "4"])
    main(script_args, training_args)
    return SimpleNamespace(root=root, files=files, reference=reference)


def launch(config: str, out: Path, files: list[str], *extra: str, env: dict | None = None, precision: str = "no"):
    """`accelerate launch --config_file examples/accelerate/<config>` with two CPU processes, 2 rows each."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"examples/accelerate/{config}",
           "--num_processes", "2", "--mixed_precision", precision, "--main_process_port", "0",
           "-m", "peft_generative.training.cpu_sharding", *files, *COMMON, "--output_dir", str(out),
           "--per_device_train_batch_size", "2", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true", DS_ACCELERATOR="cpu", **(env or {}))
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def generator(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "adapter_model.safetensors")


def assert_same_generator(a: dict, b: dict, atol: float = ATOL):
    assert set(a) == set(b)
    assert any(t.abs().max() > 0 for k, t in a.items() if "generator_B" in k)  # trained: B left zero
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= atol, f"largest difference {worst:.3g} > {atol}"


@pytest.mark.slow
def test_fsdp_two_processes_train_like_one_and_resume_after_a_kill(setup):
    out = setup.root / "fsdp"
    result = launch("fsdp.yaml", out, setup.files, "--gradient_checkpointing", "true")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "world_size=2" in result.stdout
    # the same update as one process with the whole batch (and gradient checkpointing changes nothing)
    assert_same_generator(generator(out / "final"), generator(setup.reference / "final"))

    # the checkpoint: a normal generator directory that one process loads, and FSDP's sharded files for resuming
    checkpoint = out / "checkpoint-2"
    assert (checkpoint / "pytorch_model_fsdp_0").is_dir() and (checkpoint / "optimizer_0").is_dir()
    from peft import PeftModel

    import peft_generative  # noqa: F401  (registers the PEFT type)
    from transformers import AutoModelForCausalLM

    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(setup.files[3]), str(checkpoint))
    loaded_tensors = {k: v for k, v in loaded.state_dict().items() if "generator_" in k}
    reference = generator(setup.reference / "checkpoint-2")
    assert len(loaded_tensors) == len(reference)
    assert_same_generator({k.replace(".default", ""): v for k, v in loaded_tensors.items()}, reference)
    # FSDP's own (sharded, distributed-checkpoint) files hold the same generator
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(checkpoint / "pytorch_model_fsdp_0", setup.root / "consolidated.pt")
    sharded = torch.load(setup.root / "consolidated.pt", weights_only=True)
    sharded = sharded["model"]  # the generator only (peft's adapter state dict), as FSDP wrote it
    saved = generator(checkpoint)
    assert set(sharded) == set(saved)
    for key, tensor in sharded.items():
        assert torch.equal(tensor, saved[key]), key

    # killed (SIGKILL) right after checkpoint 2, then started again: it resumes and ends where the whole run ended
    killed = setup.root / "killed"
    result = launch("fsdp.yaml", killed, setup.files, env={"PEFT_GENERATIVE_KILL_AFTER_SAVE": "2"})
    assert result.returncode != 0 and (killed / "checkpoint-2" / "trainer_state.json").exists()
    assert not (killed / "checkpoint-3").exists() and not (killed / "final").exists()
    result = launch("fsdp.yaml", killed, setup.files)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resuming from" in result.stdout and "checkpoint-2" in result.stdout
    assert_same_generator(generator(killed / "final"), generator(out / "final"), atol=0.0)


@pytest.mark.slow
def test_fsdp_with_a_bf16_base_and_mixed_precision_trains_an_fp32_generator_like_one_process(setup):
    """As on a GPU: the base loaded in bf16 and gathered in bf16 (FSDP's MixedPrecisionPolicy), bf16 autocast, the
    generator's weights fp32 (measured difference to one process: 1.9e-8)."""
    from peft_generative.training.script import main, make_parser

    bf16 = ["--dtype", "bfloat16", "--bf16", "true"]
    reference = setup.root / "one_bf16"
    script_args, training_args = make_parser().parse_args_and_config(
        args=setup.files + COMMON + bf16 + ["--output_dir", str(reference), "--per_device_train_batch_size", "4",
                                            "--save_strategy", "no"])
    main(script_args, training_args)
    out = setup.root / "fsdp_bf16"
    result = launch("fsdp.yaml", out, setup.files, *bf16, "--save_strategy", "no", precision="bf16")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    trained = generator(out / "final")
    assert all(t.dtype == torch.float32 for t in trained.values())
    assert_same_generator(trained, generator(reference / "final"))


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_two_processes_train_like_one(setup, stage):
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (the `deepspeed` extra; scripts/setup.sh "
                                            "installs it with --no-build-isolation)")
    out = setup.root / f"zero{stage}"
    result = launch(f"deepspeed_zero{stage}.yaml", out, setup.files)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "world_size=2" in result.stdout
    # DeepSpeed's own checkpoint (ZeRO-partitioned optimizer state and, under ZeRO-3, model states) for resuming
    assert sorted(p.name for p in (out / "checkpoint-2" / "global_step2").iterdir() if "optim_states" in p.name) == [
        f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" for rank in (0, 1)]
    assert_same_generator(generator(out / "final"), generator(setup.reference / "final"))
    assert_same_generator(generator(out / "checkpoint-2"), generator(setup.reference / "checkpoint-2"))
    if stage == 3:  # killed (SIGKILL) right after checkpoint 2 and started again: it resumes from DeepSpeed's files
        killed = setup.root / "zero3_killed"
        result = launch("deepspeed_zero3.yaml", killed, setup.files, env={"PEFT_GENERATIVE_KILL_AFTER_SAVE": "2"})
        assert result.returncode != 0 and not (killed / "final").exists()
        result = launch("deepspeed_zero3.yaml", killed, setup.files)
        assert result.returncode == 0 and "resuming from" in result.stdout, result.stderr[-4000:]
        assert_same_generator(generator(killed / "final"), generator(out / "final"), atol=0.0)


# ---- settings the generator cannot train under: refused before anything is prepared -------------------------------

def accelerator_with(**plugins):
    return SimpleNamespace(state=SimpleNamespace(**plugins))


def test_fsdp_settings_that_cannot_train_a_generator_are_refused(tokenizer, monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from peft import get_peft_model

    from peft_generative.training.sharding import ShardingConfigError, configure_fsdp, generator_modules
    from peft_generative.tuner import tuner_of

    from .test_trainer import gen_config

    tuner = tuner_of(get_peft_model(small_base(tokenizer), gen_config()))
    with pytest.raises(ShardingConfigError, match="fsdp_version: 2"):
        configure_fsdp(accelerator_with(fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=1)), tuner)
    with pytest.raises(ShardingConfigError, match="gradient_checkpointing: true"):
        plugin = FullyShardedDataParallelPlugin(fsdp_version=2, activation_checkpointing=True)
        configure_fsdp(accelerator_with(fsdp_plugin=plugin), tuner)
    with pytest.raises(ShardingConfigError, match="leave it unset"):
        plugin = FullyShardedDataParallelPlugin(fsdp_version=2, ignored_modules=".*lm_head")
        configure_fsdp(accelerator_with(fsdp_plugin=plugin), tuner)
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2)
    assert configure_fsdp(accelerator_with(fsdp_plugin=plugin), tuner)
    kept = {id(p) for m in plugin.ignored_modules for p in m.parameters()}
    assert kept == {id(p) for p in tuner.generator.parameters()}
    assert len(generator_modules(tuner)) == 5 * len(tuner.generator.layers)  # norm, A1, A2, A3, B per layer
    assert not configure_fsdp(accelerator_with(fsdp_plugin=None), tuner)
    # an FSDP config launched on CPU processes: accelerate would quietly run DDP
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ShardingConfigError, match="quietly train with DDP"):
        configure_fsdp(accelerator_with(fsdp_plugin=None), tuner)


def test_a_deepspeed_config_on_cpu_processes_is_refused_and_zero3_keeps_the_generator_whole(tokenizer, monkeypatch):
    from peft import get_peft_model

    from peft_generative.training.sharding import ShardingConfigError, configure_deepspeed
    from peft_generative.tuner import tuner_of

    from .test_trainer import gen_config

    tuner = tuner_of(get_peft_model(small_base(tokenizer), gen_config()))
    assert configure_deepspeed(accelerator_with(), tuner) == 0
    zero2 = SimpleNamespace(zero_stage=2, deepspeed_config={"zero_optimization": {"stage": 2}})
    assert configure_deepspeed(accelerator_with(deepspeed_plugin=zero2), tuner) == 2
    assert "stage3_param_persistence_threshold" not in zero2.deepspeed_config["zero_optimization"]
    # ZeRO-3: every generator tensor at most the persistence threshold (kept whole); a larger threshold is kept
    zero3 = SimpleNamespace(zero_stage=3, deepspeed_config={"zero_optimization": {"stage": 3}})
    assert configure_deepspeed(accelerator_with(deepspeed_plugin=zero3), tuner) == 3
    largest = max(p.numel() for p in tuner.generator.parameters())
    assert zero3.deepspeed_config["zero_optimization"]["stage3_param_persistence_threshold"] == largest
    zero3.deepspeed_config["zero_optimization"]["stage3_param_persistence_threshold"] = 10**6
    configure_deepspeed(accelerator_with(deepspeed_plugin=zero3), tuner)
    assert zero3.deepspeed_config["zero_optimization"]["stage3_param_persistence_threshold"] == 10**6
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # a DeepSpeed config launched on CPU processes
    with pytest.raises(ShardingConfigError, match="quietly train with DDP"):
        configure_deepspeed(accelerator_with(), tuner)
