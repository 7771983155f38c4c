"""tqdm progress bars that can be switched off (tests, library use, Hugging Face's `HF_HUB_DISABLE_PROGRESS_BARS`)
and degrade to a no-op without tqdm."""

from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

__all__ = ["progress"]


def progress(iterable: Iterable[T], desc: str, enabled: bool = True, total: int | None = None, unit: str = "it") -> Iterator[T]:
    from ..progress import progress_bars_enabled

    if not enabled or not progress_bars_enabled():
        yield from iterable
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        yield from iterable
        return
    yield from tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
