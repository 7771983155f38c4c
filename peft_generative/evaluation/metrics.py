"""Answer metrics: SQuAD-normalised exact match and token F1 against the best gold answer, and accuracy.

The normalisation is the official SQuAD v1.1 script's: lower-case, drop punctuation, drop the articles
"a", "an", "the", collapse whitespace. Scores are in [0, 1] per answer; reports multiply means by 100.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Iterable, Sequence

__all__ = ["normalize_answer", "exact_match", "token_f1", "best_exact_match", "best_f1", "accuracy", "perplexity"]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Harmonic mean of token precision and recall after normalisation (1.0 when both are empty)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _best(metric, prediction: str, golds: Sequence[str]) -> float:
    if isinstance(golds, str):
        golds = [golds]
    if not golds:
        raise ValueError("No gold answer to compare with: every question needs at least one answer.")
    return max(metric(prediction, g) for g in golds)


def best_exact_match(prediction: str, golds: Sequence[str]) -> float:
    """Exact match against the best of several gold answers."""
    return _best(exact_match, prediction, golds)


def best_f1(prediction: str, golds: Sequence[str]) -> float:
    """Token F1 against the best of several gold answers."""
    return _best(token_f1, prediction, golds)


def accuracy(correct: Iterable[float]) -> float:
    """Mean of 0/1 outcomes (nan when there are none)."""
    values = [float(c) for c in correct]
    return sum(values) / len(values) if values else math.nan


def perplexity(nll_sum: float, tokens: int) -> float:
    """exp(total negative log-likelihood / tokens) (nan when no token was scored)."""
    return math.exp(nll_sum / tokens) if tokens else math.nan
