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
        self._short: dict[int, set[int]] = {}  # length -> hashes of whole short passages
        self.num_passages = 0
        for text in passages:
            ws = words(text)
            if not ws:
                continue
            self.num_passages += 1
            if len(ws) < n:
                if len(ws) >= min_words:
                    self._short.setdefault(len(ws), set()).add(hash(tuple(ws)))
                continue
            for i in range(len(ws) - n + 1):
                self._grams.add(hash(tuple(ws[i : i + n])))

    def __bool__(self) -> bool:
        return bool(self._grams or self._short)

    def overlaps(self, text: str) -> bool:
        if not self:
            return False
        ws = words(text)
        n = self.n
        grams = self._grams
        if grams:
            for i in range(len(ws) - n + 1):
                if hash(tuple(ws[i : i + n])) in grams:
                    return True
        for length, hashes in self._short.items():
            for i in range(len(ws) - length + 1):
                if hash(tuple(ws[i : i + length])) in hashes:
                    return True
        return False
