"""Answer metrics: SQuAD-normalised exact match, token F1 and "gold contained" against the best gold answer,
and accuracy.

The normalisation is the official SQuAD v1.1 script's: lower-case, drop punctuation, drop the articles
"a", "an", "the", collapse whitespace. Scores are in [0, 1] per answer; reports multiply means by 100.

"Gold contained" (`contains_answer`, `best_contains`) asks whether the answer is *in* the prediction, as a
whole-token sequence after normalisation: "port aldane" is contained in "The ferry leaves from Port Aldane every
day.", "12" is not contained in "2012". It credits right answers wrapped in a sentence, which exact match does
not and token F1 only partly does.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Iterable, Sequence

__all__ = ["normalize_answer", "exact_match", "token_f1", "contains_answer", "best_exact_match", "best_f1",
           "best_contains", "accuracy", "perplexity"]

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


def contains_answer(prediction: str, gold: str) -> float:
    """1.0 when the normalised gold occurs in the normalised prediction as a whole-token sequence, else 0.0.

    Tokens are the words left by `normalize_answer` (so "12" is not in "2012", "port aldane" is in "ferry leaves
    from port aldane every day", and "1,200" matches "1200"). A gold answer with no word left after normalisation
    (empty, only punctuation or articles) cannot be looked for: ValueError.
    """
    gold_tokens = normalize_answer(gold).split()
    if not gold_tokens:
        raise ValueError(f"Gold answer {gold!r} is empty after SQuAD normalisation: nothing to look for.")
    pred_tokens = normalize_answer(prediction).split()
    n = len(gold_tokens)
    return float(any(pred_tokens[i:i + n] == gold_tokens for i in range(len(pred_tokens) - n + 1)))


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


def best_contains(prediction: str, golds: Sequence[str]) -> float:
    """`contains_answer` against the best of several gold answers (1.0 when any of them is contained).

    Gold answers with no word after normalisation are passed over; ValueError when no gold answer is left (or the
    list is empty), as for `best_f1`. A single string is accepted as one gold answer.
    """
    if isinstance(golds, str):
        golds = [golds]
    usable = [g for g in golds if normalize_answer(g)]
    if not usable:
        raise ValueError(f"No gold answer to compare with: every question needs at least one answer with a word "
                         f"left after SQuAD normalisation, got {list(golds)!r}.")
    return max(contains_answer(prediction, g) for g in usable)


def accuracy(correct: Iterable[float]) -> float:
    """Mean of 0/1 outcomes (nan when there are none)."""
    values = [float(c) for c in correct]
    return sum(values) / len(values) if values else math.nan


def perplexity(nll_sum: float, tokens: int) -> float:
    """exp(total negative log-likelihood / tokens) (nan when no token was scored)."""
    return math.exp(nll_sum / tokens) if tokens else math.nan
