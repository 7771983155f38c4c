"""Register the Generative Adapter with peft as soon as peft is imported, without importing peft ourselves.

`import peft_generative` must make peft's loaders know the type `GENERATIVE_ADAPTER`, but importing peft (and with
it torch and transformers) takes seconds, which a command line's `--help` or `--version` should not pay. So
`import peft_generative` registers at once when peft is already imported, and otherwise installs this import hook:
when `peft` (or any module of this package) finishes importing, the method is registered. peft's loaders can only
be reached through `import peft` (directly, or by transformers' PEFT integration), so they always find the type
registered.

The registration imports the tuner's modules; while one of them is itself being imported (it is what imported
peft), the attempt waits and is made again when that module's import finishes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys

__all__ = ["install", "is_registered", "register_now"]

_PACKAGE = __name__.rpartition(".")[0]
_state = {"registered": False}


def is_registered() -> bool:
    return _state["registered"]


def register_now() -> bool:
    """Register if peft is imported and the tuner's modules can be imported now; True once registered."""
    if _state["registered"]:
        return True
    if "peft" not in sys.modules:
        return False
    try:
        importlib.import_module(".tuner", _PACKAGE)  # importing the tuner registers it with peft
    except ImportError as exc:
        if "partially initialized" not in str(exc):
            raise
        return False  # a module that registration needs is still being imported: retried when it finishes
    _state["registered"] = True
    for finder in [f for f in sys.meta_path if isinstance(f, _RegisterAfterImport)]:
        sys.meta_path.remove(finder)
    return True


class _RegisteringLoader(importlib.abc.Loader):
    """Delegates to the real loader and tries to register once the module has been executed."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        register_now()

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds `peft` and this package's modules with the other finders and wraps their loaders."""

    def find_spec(self, fullname, path, target=None):
        if _state["registered"] or not (fullname == "peft" or fullname.startswith(_PACKAGE + ".")):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Register now if peft is imported, else as soon as it is (idempotent)."""
    if register_now():
        return
    if not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())
