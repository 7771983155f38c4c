"""Deterministic, seedable document-level splits.

A split is a pure function of (key, seed, fractions): the key (a document's text, a passage, a speaker pair...)
is hashed with BLAKE2b, the hash is mapped to [0, 1), and the interval is cut by the cumulative fractions. Adding,
removing or reordering other documents never moves a document to another split, and the result does not depend on
Python's per-process ``hash`` randomisation.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Callable, Iterable, Mapping, Sequence

__all__ = ["stable_hash", "stable_unit", "assign_split", "splitter", "normalize_key", "check_fractions",
           "hash_order"]


def stable_hash(key: str, seed: int = 0) -> int:
    """A 64-bit integer hash of ``key`` salted by ``seed``, identical on every machine and Python version."""
    digest = hashlib.blake2b(f"{int(seed)}\x00{key}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def stable_unit(key: str, seed: int = 0) -> float:
    """``stable_hash`` mapped to [0, 1)."""
    return stable_hash(key, seed) / 2.0**64


def normalize_key(text: str) -> str:
    """Case- and whitespace-insensitive form of a text, used as a split or de-duplication key."""
    return " ".join(text.split()).lower()


def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """Validate split fractions (non-negative, summing to 1) and return them as an ordered dict."""
    out = {str(k): float(v) for k, v in fractions.items()}
    if not out:
        raise ValueError("no split fractions given")
    if any(v < 0 for v in out.values()):
        raise ValueError(f"split fractions must be non-negative, got {out}")
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {out} (sum {total})")
    return out


def splitter(fractions: Mapping[str, float], seed: int = 0) -> Callable[[str], str]:
    """A function key -> split name (a key of ``fractions``, cut in their given order); same as
    :func:`assign_split` but validates the fractions once."""
    fr = check_fractions(fractions)
    names = [n for n in fr if fr[n] > 0]
    bounds, acc = [], 0.0
    for n in names:
        acc += fr[n]
        bounds.append(acc)
    bounds[-1] = 1.0  # floating point slack: the last split with a positive fraction takes the remainder

    def split_of(key: str) -> str:
        return names[min(bisect.bisect_right(bounds, stable_unit(key, seed)), len(names) - 1)]

    return split_of


def assign_split(key: str, fractions: Mapping[str, float], seed: int = 0) -> str:
    """The split (a key of ``fractions``) that ``key`` belongs to. Fractions are used in their given order."""
    return splitter(fractions, seed)(key)


def hash_order(keys: Iterable[str], seed: int = 0) -> list[int]:
    """Indices of ``keys`` sorted by their stable hash: a deterministic, seedable shuffle that does not depend on the
    position of other items (ties broken by the key itself, then by position)."""
    keys = list(keys)
    return sorted(range(len(keys)), key=lambda i: (stable_hash(keys[i], seed), keys[i], i))


def split_fractions(names: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    """Pair names with fractions (convenience for CLI arguments)."""
    if len(names) != len(values):
        raise ValueError("names and values differ in length")
    return check_fractions(dict(zip(names, values)))
