"""What the device check ran on: Python, torch, CUDA, the GPU and the versions of the packages it uses, as JSON.

    python scripts/device/environment.py DETAIL_JSON
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import sys

PACKAGES = ("torch", "transformers", "peft", "accelerate", "safetensors", "trl", "datasets", "gguf", "pyarrow",
            "huggingface-hub", "tokenizers", "pytest")


def describe() -> dict:
    import torch

    info = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda, "packages": {}}
    for name in PACKAGES:
        try:
            info["packages"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info["packages"][name] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_mib=props.total_memory // 2**20,
                    bf16_supported=torch.cuda.is_bf16_supported())
    return info


if __name__ == "__main__":
    info = describe()
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    print(f"environment: python {info['python']}, torch {info['torch']}, cuda {info['cuda_available']}"
          f"{', ' + info['gpu'] if 'gpu' in info else ''}")
