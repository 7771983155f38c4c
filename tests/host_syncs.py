"""Counting the places where Python reads a tensor's value on the host: on a GPU each one waits for every kernel
queued before it (a host sync), so a hot path should have few, and none per layer or per module."""

from __future__ import annotations

from collections import Counter

import torch
from torch.overrides import TorchFunctionMode

# tensor methods that hand a value to Python (`bool(t)`, `t.item()`, `int(t)`, `t.tolist()`, ...) or whose output
# size depends on the values (`nonzero`, `masked_select`, indexing with a boolean mask)
READS = {"__bool__", "__int__", "__float__", "__index__", "item", "tolist", "numpy", "equal", "nonzero",
         "masked_select", "argwhere"}


def _boolean_index(args) -> bool:
    index = args[1] if len(args) > 1 else None
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


class HostSyncCounter(TorchFunctionMode):
    """`with HostSyncCounter() as syncs: ...`, then `syncs.count` (and `syncs.by_name`). Works on any device,
    the CPU included, so a test on the CPU can bound what the same code does on a GPU."""

    def __init__(self):
        super().__init__()
        self.by_name: Counter = Counter()

    @property
    def count(self) -> int:
        return sum(self.by_name.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS or (name in ("__getitem__", "__setitem__") and _boolean_index(args)):
            self.by_name[name] += 1
        return func(*args, **(kwargs or {}))
