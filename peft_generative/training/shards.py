"""A saved generator as several small safetensors files, and back.

Some machines hand back only files of limited size (a lent GPU machine returns files of at most 16 MiB); the
generator of the default model is 22 MB in fp32. `write_generator_shards` splits a saved generator directory
(`adapter_config.json` + `adapter_model.safetensors`) into `generator-0000i-of-0000n.safetensors` files of at most
`max_shard_bytes` each, exactly (no change of dtype), with an index `generator_shards.json` naming the tensors of
every file; `join_generator_shards` checks the index and writes an ordinary generator directory again, which
`PeftModel.from_pretrained` loads. With `generator_shard_mib` set, `GenerativeAdapterTrainer` writes the shards of
every checkpoint and of the final model into their `generator_shards/` folder.

    python -m peft_generative.training.shards split GENERATOR_DIR SHARDS_DIR [--max-mib 15]
    python -m peft_generative.training.shards join SHARDS_DIR GENERATOR_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from peft.utils import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME
from safetensors.torch import load_file, save_file

from ..utils.atomic import atomic_directory

SHARDS_DIR = "generator_shards"
INDEX_NAME = "generator_shards.json"
INDEX_FORMAT = "peft-generative-generator-shards"
# room for a file's safetensors header: its metadata, and each tensor's name, dtype, shape and offsets
HEADER_BYTES, HEADER_BYTES_PER_TENSOR = 1024, 512


def shard_name(i: int, n: int) -> str:
    return f"generator-{i:05d}-of-{n:05d}.safetensors"


def plan_shards(sizes: dict[str, int], max_shard_bytes: int) -> list[list[str]]:
    """Tensor names grouped, in sorted order, into files of at most `max_shard_bytes` (a header's room included)."""
    groups: list[list[str]] = [[]]
    used = HEADER_BYTES
    for name in sorted(sizes):
        size = sizes[name] + HEADER_BYTES_PER_TENSOR
        if HEADER_BYTES + size > max_shard_bytes:
            raise ValueError(f"Tensor {name} alone has {sizes[name]} bytes, more than a shard of {max_shard_bytes} "
                             "bytes can hold; allow larger shards.")
        if used + size > max_shard_bytes:
            groups.append([])
            used = HEADER_BYTES
        groups[-1].append(name)
        used += size
    return groups


def write_generator_shards(generator_dir: str, out_dir: str, max_shard_bytes: int) -> list[Path]:
    """Split the saved generator in `generator_dir` into `out_dir` (replaced whole); returns the files written."""
    source = Path(generator_dir)
    weights, config = source / SAFETENSORS_WEIGHTS_NAME, source / CONFIG_NAME
    if not (weights.is_file() and config.is_file()):
        raise FileNotFoundError(f"{generator_dir} is not a saved generator: it needs {CONFIG_NAME} and "
                                f"{SAFETENSORS_WEIGHTS_NAME}.")
    tensors = load_file(str(weights))
    groups = plan_shards({k: v.numel() * v.element_size() for k, v in tensors.items()}, max_shard_bytes)
    index = {"format": INDEX_FORMAT, "files": {shard_name(i + 1, len(groups)): group for i, group in enumerate(groups)}}
    with atomic_directory(out_dir, keep_other_files=False) as tmp:
        (tmp / CONFIG_NAME).write_bytes(config.read_bytes())
        for name, group in index["files"].items():
            save_file({k: tensors[k].contiguous() for k in group}, str(tmp / name), metadata={"format": "pt"})
        (tmp / INDEX_NAME).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
        too_large = [p.name for p in tmp.iterdir() if p.stat().st_size > max_shard_bytes]
        if too_large:  # a header larger than its room (very long tensor names): nothing is written
            raise ValueError(f"{too_large} came out larger than {max_shard_bytes} bytes; allow larger shards.")
    return sorted(Path(out_dir).iterdir())


def read_generator_shards(shards_dir: str) -> dict[str, torch.Tensor]:
    """Every tensor of a sharded generator, checked against its index (all files there, each tensor once)."""
    folder = Path(shards_dir)
    try:
        index = json.loads((folder / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{shards_dir}: no readable {INDEX_NAME} ({exc}); it is not a sharded generator.") from exc
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or not isinstance(index.get("files"), dict):
        raise ValueError(f"{folder / INDEX_NAME} is not an index of generator shards.")
    missing = sorted(name for name in index["files"] if not (folder / name).is_file())
    if missing or not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{shards_dir} lacks {missing or [CONFIG_NAME]}: copy every file of the shards.")
    tensors: dict[str, torch.Tensor] = {}
    for name, keys in index["files"].items():
        part = load_file(str(folder / name))
        if sorted(part) != sorted(keys) or set(part) & set(tensors):
            raise ValueError(f"{folder / name} does not hold the tensors its index names; the shards are corrupt.")
        tensors.update(part)
    return tensors


def join_generator_shards(shards_dir: str, out_dir: str) -> Path:
    """Write the sharded generator in `shards_dir` as an ordinary generator directory `out_dir` (replaced whole)."""
    tensors = read_generator_shards(shards_dir)
    with atomic_directory(out_dir, keep_other_files=False) as tmp:
        (tmp / CONFIG_NAME).write_bytes((Path(shards_dir) / CONFIG_NAME).read_bytes())
        save_file(tensors, str(tmp / SAFETENSORS_WEIGHTS_NAME), metadata={"format": "pt"})
    return Path(out_dir)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m peft_generative.training.shards",
                                     description="Split a saved generator into small files, or join them again.")
    sub = parser.add_subparsers(dest="action", required=True)
    split = sub.add_parser("split", help="a generator directory -> shards")
    split.add_argument("generator_dir")
    split.add_argument("out_dir")
    split.add_argument("--max-mib", type=float, default=15.0, help="largest file in MiB (default 15)")
    join = sub.add_parser("join", help="shards -> a generator directory")
    join.add_argument("shards_dir")
    join.add_argument("out_dir")
    args = parser.parse_args(argv)
    try:
        if args.action == "split":
            if args.max_mib <= 0:
                parser.error("--max-mib must be positive")
            files = write_generator_shards(args.generator_dir, args.out_dir, int(args.max_mib * 2**20))
            print("\n".join(f"{f} ({os.path.getsize(f)} bytes)" for f in files))
        else:
            print(join_generator_shards(args.shards_dir, args.out_dir))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
