"""Progress bars that follow Hugging Face's switches (`HF_HUB_DISABLE_PROGRESS_BARS=1`,
`huggingface_hub.utils.disable_progress_bars()`), as transformers' and huggingface_hub's own bars do."""

from __future__ import annotations

from typing import Iterable, Optional

__all__ = ["progress_bar", "progress_bars_enabled"]


def progress_bars_enabled() -> bool:
    """False when Hugging Face progress bars are switched off (globally or for `peft_generative`)."""
    from huggingface_hub.utils import are_progress_bars_disabled

    return not are_progress_bars_disabled("peft_generative")


def progress_bar(iterable: Optional[Iterable] = None, *, enabled: bool = True, **kwargs):
    """A `tqdm` bar, disabled when `enabled` is False or Hugging Face progress bars are switched off."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not (enabled and progress_bars_enabled()), **kwargs)
