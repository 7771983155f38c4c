"""Decontamination: does a training document share a long word sequence with an evaluation passage?

The usual n-gram test (GPT-3 used 13-grams): both texts are lower-cased and cut into word tokens; a document
overlaps the evaluation set if any of its word n-grams is an n-gram of some evaluation passage. Passages shorter
than n words (but at least ``min_words``) count as overlapping when their whole word sequence occurs in the
document; shorter ones ("Sean Young as Rachael") are too generic to signal contamination and are ignored.
"""

from __future__ import annotations

import re
from typing import Iterable

__all__ = ["OverlapFilter", "words"]

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class OverlapFilter:
    """``OverlapFilter(passages, n=13)``; ``f.overlaps(doc)`` is True when ``doc`` shares a word n-gram with any
    passage. Membership uses in-process hashes of word tuples: cheap, exact up to 64-bit collisions."""

    def __init__(self, passages: Iterable[str], n: int = 13, min_words: int = 8):
        if n < 1:
            raise ValueError("n must be >= 1")
        self.n = n
        self._grams: set[int] = set()
        self.min_words = min_words
        # Short passages, indexed by the hash of their first ``min_words`` words -> full word tuples.
        self._short: dict[int, list[tuple[str, ...]]] = {}
        self.num_passages = 0
        for text in passages:
            ws = words(text)
            if not ws:
                continue
            self.num_passages += 1
            if len(ws) < n:
                if len(ws) >= min_words:
                    self._short.setdefault(hash(tuple(ws[:min_words])), []).append(tuple(ws))
                continue
            for i in range(len(ws) - n + 1):
                self._grams.add(hash(tuple(ws[i : i + n])))

    def __bool__(self) -> bool:
        return bool(self._grams or self._short)

    def overlaps(self, text: str) -> bool:
        if not self:
            return False
        ws = words(text)
        # zip(*shifted lists) builds the word n-gram tuples in C; their hashes equal hash(tuple(ws[i:i+n])).
        if self._grams and len(ws) >= self.n:
            if not self._grams.isdisjoint(map(hash, zip(*[ws[j:] for j in range(self.n)]))):
                return True
        m = self.min_words
        if self._short and len(ws) >= m:
            hits = self._short.keys() & set(map(hash, zip(*[ws[j:] for j in range(m)])))
            if hits:
                for i in range(len(ws) - m + 1):
                    cands = self._short.get(hash(tuple(ws[i : i + m]))) if hits else None
                    if cands and any(tuple(ws[i : i + len(c)]) == c for c in cands):
                        return True
        return False
