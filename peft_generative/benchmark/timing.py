"""Measuring: medians after warm-up, device synchronisation, memory saved for backward, the machine."""

from __future__ import annotations

import platform
import statistics
import time
from contextlib import contextmanager
from typing import Callable

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 1) -> float:
    """Median wall time of `fn` over `repeats` runs after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class SavedForBackward:
    """Bytes of activations autograd keeps for the backward pass (parameters excluded, shared storage counted once):
    the part of training memory that differs between methods, measured the same way on every device."""

    def __init__(self, model: torch.nn.Module):
        self._parameters = {p.data_ptr() for p in model.parameters()}
        self._seen: set = set()
        self.bytes = 0

    def _pack(self, tensor: torch.Tensor):
        if tensor.layout == torch.strided and tensor.device.type != "meta":
            key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
            if key[0] not in self._parameters and key not in self._seen:
                self._seen.add(key)
                self.bytes += key[1]
        return tensor

    @contextmanager
    def measuring(self):
        self._seen.clear()
        self.bytes = 0
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor):
            yield self


def peak_device_memory(device: torch.device, fn: Callable[[], object]) -> float | None:
    """Peak allocated accelerator memory (MiB) while `fn` runs; None on CPU, where no allocator reports it (and `fn`
    is not run)."""
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def machine_info(device: torch.device) -> dict:
    import peft
    import transformers

    info = {"python": platform.python_version(), "platform": platform.platform(), "processor": platform.machine(),
            "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "device": str(device), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
