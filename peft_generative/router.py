"""Which context a forward pass uses, kept per thread (no per-module mutable state)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Optional

_NO_OVERRIDE = object()


class ContextRouter:
    """Answers "which context applies to this call?" for every adapted layer of one model.

    Order of precedence: the innermost `using(...)` block of the calling thread, else the model-wide default
    set by `contextualize` / `set_context`. `using(None)` forces the base model inside the block. Capture sinks
    (used while encoding a context) are per thread too, so two threads can encode two contexts on one model.
    """

    def __init__(self):
        self._local = threading.local()
        self.default: Optional[Any] = None

    def _stack(self, name: str) -> list:
        stack = getattr(self._local, name, None)
        if stack is None:
            stack = []
            setattr(self._local, name, stack)
        return stack

    def current(self):
        stack = self._stack("contexts")
        return stack[-1] if stack else self.default

    @contextmanager
    def using(self, context):
        stack = self._stack("contexts")
        stack.append(context)
        try:
            yield context
        finally:
            stack.pop()

    def sink(self):
        stack = self._stack("sinks")
        return stack[-1] if stack else None

    @contextmanager
    def capturing(self, sink):
        stack = self._stack("sinks")
        stack.append(sink)
        try:
            yield sink
        finally:
            stack.pop()

    # thread-local storage cannot be copied or pickled: a copy gets fresh, empty per-thread state.
    def __deepcopy__(self, memo):
        new = ContextRouter()
        new.default = self.default
        return new

    def __getstate__(self):
        return {"default": self.default}

    def __setstate__(self, state):
        self.__init__()
        self.default = state["default"]


class ContextCarryingCheckpoint:
    """Wraps a layer's gradient-checkpointing function so the recomputation in backward sees the same
    context as the original forward (the `use_context` block has usually ended by then, and on GPUs
    backward runs on another thread)."""

    def __init__(self, inner, router: ContextRouter):
        self.inner = inner
        self.router = router

    def __call__(self, function, *args, **kwargs):
        context = self.router.current()

        def run(*a, **k):
            with self.router.using(context):
                return function(*a, **k)

        return self.inner(run, *args, **kwargs)
