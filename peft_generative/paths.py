"""Where peft-generative keeps files between runs (the converted default model, the data cache).

`$PEFT_GENERATIVE_HOME` if set; else `$XDG_CACHE_HOME/peft_generative`; else `~/.cache/peft_generative`
(the XDG base-directory convention that huggingface_hub's own default, `~/.cache/huggingface`, follows too).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["HOME_ENV", "cache_root"]

HOME_ENV = "PEFT_GENERATIVE_HOME"


def cache_root() -> Path:
    """`$PEFT_GENERATIVE_HOME`, else `$XDG_CACHE_HOME/peft_generative`, else `~/.cache/peft_generative`."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "peft_generative"
