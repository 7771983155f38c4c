"""Which context a forward pass uses, kept per thread (no per-module mutable state)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Optional



class ContextRouter:
    """Answers "which context applies to this call?" for every adapted layer of one model.

    Order of precedence: the innermost `using(...)` block of the calling thread (a per-call `context=` argument
    opens one), else the calling thread's own default (`contextualize(..., activate=True)`), else the model-wide
    default (`set_context`). `using(None)` forces the base model inside the block. Capture sinks (used while
    encoding a context) are per thread too, so two threads can encode two contexts on one model.
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
        if stack:
            return stack[-1]
        return getattr(self._local, "default", self.default)

    def set_thread_default(self, context) -> None:
        """The calling thread's default context (other threads keep theirs, or the model-wide one)."""
        self._local.default = context

    def clear_thread_default(self) -> None:
        self._local.__dict__.pop("default", None)

    def push(self, context) -> None:
        """Enter a `using(context)` block by hand (forward hooks, which cannot hold a `with`); `pop` leaves it."""
        self._stack("contexts").append(context)

    def pop(self) -> None:
        self._stack("contexts").pop()

    @property
    def expansion(self) -> int:
        """How many batch rows each context row covers in this thread (beam search / several sequences)."""
        return getattr(self._local, "expansion", 1)

    @contextmanager
    def expanding(self, factor: int):
        before = self.expansion
        self._local.expansion = factor
        try:
            yield
        finally:
            self._local.expansion = before

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

    # A copy of a model is another generator: the original's contexts do not belong to it. Thread-local storage
    # cannot be copied or pickled either, so a copy starts with no context at all.
    def __deepcopy__(self, memo):
        return ContextRouter()

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()


class ContextCarryingCheckpoint:
    """Wraps a layer's gradient-checkpointing function so the recomputation in backward sees the same
    context as the original forward (the `use_context` block has usually ended by then, and on GPUs
    backward runs on another thread). Installed once, when gradient checkpointing is turned on."""

    def __init__(self, inner, router: ContextRouter):
        self.inner = inner
        self.router = router

    def __call__(self, function, *args, **kwargs):
        context = self.router.current()

        def run(*a, **k):
            with self.router.using(context):
                return function(*a, **k)

        return self.inner(run, *args, **kwargs)
