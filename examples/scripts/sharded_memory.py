"""Memory per process of generator training under FSDP2 against DDP (and DeepSpeed ZeRO-2/3), on CPU processes (what
a CPU machine can check of the memory plan in docs/distributed.md) or on GPUs.

    python examples/scripts/sharded_memory.py --processes 2 --steps 3 --out runs/sharded_memory.json
    python examples/scripts/sharded_memory.py --device cuda --processes 8 --modes ddp fsdp zero2 zero3 --out ...

Runs `peft-generative train`'s script for a few steps on the default model (SmolLM2-135M-Instruct, fp32) under
`accelerate launch --multi_gpu` (DDP) and under examples/accelerate/fsdp.yaml (FSDP2; on CPU processes through
`peft_generative.training.cpu_sharding`), and reports for every process:

* `param_mib`: the bytes of the model's parameters the process holds after preparation (a shard of each base
  tensor under FSDP; exact, from the tensors);
* `rss_prepared_mib`: its resident memory once the model is prepared (before the first step);
* `peak_train_mib`: its peak resident memory during the training steps (Linux: the peak is reset through
  /proc/self/clear_refs after preparation);
* `peak_total_mib`: its peak over the whole run (loading included: every process reads the checkpoint whole).

On a GPU (`--device cuda`: bf16 mixed precision and gradient checkpointing, as the configs in examples/accelerate)
each process also reports `cuda_peak_mib`, `torch.cuda.max_memory_allocated` during the steps. Each mode's final
generator is written (`<work>/<mode>/run/final`), and `max_abs_diff` compares it with the first mode's.

Resident memory includes torch, the tokenizer and the Python heap (the same under both), and freed memory that the
allocator keeps. glibc raises its mmap threshold after large frees, and then keeps FSDP's freed all-gather buffers
(a layer's weights, gathered and freed at every forward and backward) in its heap: without a fixed threshold the
FSDP processes measured ~1.2 GiB more peak than with one. The workers therefore run with
`MALLOC_MMAP_THRESHOLD_=1048576` (blocks of 1 MiB and more are given back to the system when freed) unless the
environment sets it; `--default-malloc` leaves glibc's default. On a GPU, `scripts/device_check.sh` measures the
same with `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent.parent
MIB = 2**20


def status(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / MIB
    raise KeyError(field)


def local_bytes(tensor) -> int:
    """The bytes this process holds of a parameter (its shard of an FSDP DTensor or of a ZeRO-3 parameter)."""
    if getattr(tensor, "ds_tensor", None) is not None and tensor.numel() == 0:
        tensor = tensor.ds_tensor  # a partitioned ZeRO-3 parameter
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def memory_callback(out: Path):
    from transformers import TrainerCallback

    class Memory(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.record = {"rank": args.process_index, "peak_load_mib": status("VmHWM"),
                           "rss_prepared_mib": status("VmRSS"),
                           "param_mib": sum(local_bytes(p) for p in model.parameters()) / MIB,
                           "generator_mib": sum(local_bytes(p) for n, p in model.named_parameters()
                                                if "generator_" in n) / MIB}
            Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()

        def on_train_end(self, args, state, control, **kwargs):
            self.record.update(peak_train_mib=status("VmHWM"))
            if torch.cuda.is_available():
                self.record["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / MIB
            self.record["peak_total_mib"] = max(self.record.pop("peak_load_mib"), self.record["peak_train_mib"])
            (out / f"rank{args.process_index}.json").write_text(json.dumps(self.record))

    return Memory()


def worker(out: str, argv: list[str]) -> None:
    from peft_generative.training.cpu_sharding import allow_sharding_on_cpu

    allow_sharding_on_cpu()
    from peft_generative.training.script import main, make_parser

    script_args, training_args = make_parser().parse_args_and_config(args=argv)
    main(script_args, training_args, callbacks=[memory_callback(Path(out))])


def write_text_file(path: Path, documents: int = 60) -> None:
    """Training text: the bundled story, numbered (what is measured does not depend on the words)."""
    story = (ROOT / "peft_generative" / "assets" / "quillmoor.txt").read_text()
    path.write_text("".join(json.dumps({"text": f"Record {i}. {story}"}) + "\n" for i in range(documents)))


LAUNCHERS = {"ddp": ["--multi_gpu"],
             "fsdp": ["--config_file", str(ROOT / "examples/accelerate/fsdp.yaml")],
             "zero2": ["--config_file", str(ROOT / "examples/accelerate/deepspeed_zero2.yaml")],
             "zero3": ["--config_file", str(ROOT / "examples/accelerate/deepspeed_zero3.yaml")]}


def run(mode: str, args: argparse.Namespace, work: Path, extra: list[str]) -> list[dict]:
    out = work / mode
    out.mkdir(parents=True, exist_ok=True)
    cpu = args.device == "cpu"
    # one process (a machine with one GPU): `ddp` is plain training, which accelerate refuses to launch as multi-GPU
    launcher = [] if mode == "ddp" and args.processes == 1 else LAUNCHERS[mode]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "--num_processes",
           str(args.processes), "--num_machines", "1", "--mixed_precision", "no" if cpu else "bf16",
           "--dynamo_backend", "no", "--main_process_port", "0", __file__, "--worker", str(out),
           "--train_file", str(work / "train.jsonl"), "--output_dir", str(out / "run"), "--max_steps", str(args.steps),
           "--per_device_train_batch_size", "2", "--num_segments", "3", "--segment_length", "128",
           "--key_dim", "80", "--value_dim", "80", "--rank", "32", "--window", "1024", "--save_strategy", "no",
           "--report_to", "none", "--disable_tqdm", "true", "--seed", "0", *extra]
    if args.model:
        cmd += ["--model_name_or_path", args.model]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    if cpu:
        cmd += ["--use_cpu", "true"]
        env.update(ACCELERATE_USE_CPU="true", DS_ACCELERATOR="cpu")
    if not args.default_malloc:
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(MIB))
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{result.stderr[-4000:]}")
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(args.processes)]


def max_abs_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    ta, tb = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    return max((ta[k].float() - tb[k].float()).abs().max().item() for k in ta)


def largest_b(directory: Path) -> float:
    """The largest |B| of a generator: B starts at zero, so 0 means it was not trained."""
    from safetensors.torch import load_file

    tensors = load_file(directory / "adapter_model.safetensors")
    return max(t.float().abs().max().item() for k, t in tensors.items() if "generator_B" in k)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        return worker(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", help="base model directory (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--modes", nargs="+", choices=sorted(LAUNCHERS), default=["ddp", "fsdp"])
    parser.add_argument("--work", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--gradient-checkpointing", choices=("on", "off"), default="on",
                        help="on the base model (TRL's default: on; always on with --device cuda)")
    parser.add_argument("--default-malloc", action="store_true", help="leave glibc's mmap threshold as it is")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    checkpointing = args.gradient_checkpointing == "on" or args.device == "cuda"
    extra = ["--gradient_checkpointing", "true" if checkpointing else "false"]
    results, diffs, trained = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        write_text_file(work / "train.jsonl")
        for mode in args.modes:
            results[mode] = run(mode, args, work, extra)
            diffs[mode] = max_abs_diff(work / mode / "run" / "final", work / args.modes[0] / "run" / "final")
            trained[mode] = largest_b(work / mode / "run" / "final")
    fields = ("param_mib", "generator_mib", "rss_prepared_mib", "peak_train_mib", "peak_total_mib")
    if args.device == "cuda":
        fields += ("cuda_peak_mib",)
    print("final generators, largest difference to " + args.modes[0] + ": " +
          ", ".join(f"{mode} {diff:.3g}" for mode, diff in diffs.items()) +
          "; largest |B| (0: untrained): " + ", ".join(f"{mode} {b:.3g}" for mode, b in trained.items()))
    print("| mode | rank | " + " | ".join(fields) + " |")
    print("|---|---|" + "---|" * len(fields))
    for mode, ranks in results.items():
        for record in ranks:
            print(f"| {mode} | {record['rank']} | " + " | ".join(f"{record[f]:.0f}" for f in fields) + " |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"device": args.device, "processes": args.processes, "steps": args.steps,
                                              "gradient_checkpointing": checkpointing, "max_abs_diff": diffs,
                                              "largest_b": trained,
                                              "malloc_mmap_threshold": None if args.default_malloc else MIB,
                                              **results}, indent=1))


if __name__ == "__main__":
    main()
