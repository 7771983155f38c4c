"""Recall questions on real prose: cloze questions cut from the pretraining corpora's news, speeches and BBC articles.

A generator trained only on synthetic documents copies nothing from real passages. This dataset asks about real text:
passages of 100-300 tokens (whole sentences) from the prose sources of the pretraining corpus (``news``, ``sotu``,
``bbc``; the Linux and Python documentation are left out: code-like text makes poor cloze questions), each with up
to four *cloze* questions spread across the passage: one sentence of the passage, quoted, with one span blanked
out (``___``)::

    Fill in the blank from the article: "The plant moved to ___ in 1998."        -> "Leeds"

The blanked spans are found by rules (regular expressions, no tagger):

- ``name``: a run of capitalised words (``Bank of England``, ``Betsy DeVos``, ``AOL``) that does not start the
  sentence or a quotation (a common first word such as ``The`` or ``In`` is dropped from the run, any other first
  word disqualifies it), without a leading honorific or title (``Mr``, ``Sen.``, ``President``, ``Foreign
  Secretary``), without a possessive ``'s``, not a contraction (``I'm``), not a lone month, weekday or very generic
  word (``Congress``, ``Government``);
- ``digits``: dates (``June 1952``, ``5 June 2004``, ``June 5, 2004``), years, counts (``464,000`` in "464,000
  subscribers"), sums of money (``$1.13bn``), percentages (``76%``), scores (``51-50``); one-digit numbers, times
  (``1:30``) and hyphenated counts (``24-hour``) are skipped;
- ``word``: spelled-out counts before a plural noun (``three`` in "three months").

Dates, money, percentages and scores win over names where they overlap, names over plain numbers. Checks on every
question: the sentence has 8-45 words, ends like a sentence and holds no web boilerplate (links, sign-up requests,
disclaimers); the answer occurs in the passage, exactly once (case-insensitively) in its sentence and not at all in
the question; spans have 1-4 words (names up to 5, taken only when nothing shorter is left); at most one question per
sentence and one per answer in a passage, at most ``max_questions`` per passage, one from each of evenly spaced
stretches of the passage's eligible sentences (names and digits preferred in turn). ``kind`` is ``digits`` for
numbers and dates, ``name`` for capitalised spans, ``word`` for spelled-out counts; ``type`` is ``cloze``.

Splits. Held-out documents must never be pretraining training documents, so a document's split is the pretraining
corpus's own (:func:`peft_generative.data.pretraining.build_pretraining_corpus`: a stable hash of the document id
with the same seed, 95% ``train`` / 5% ``validation``); the pretraining validation documents are divided into
``validation`` and ``test`` by a second stable hash of the id (:func:`prose_recall_split`). Documents are read,
length-filtered and de-duplicated exactly as the pretraining builder does (same sources in the same order, same
``min_chars``, exact duplicates kept once), so a held-out document's exact twin cannot sit in the training split; on
top, a held-out passage sharing a 13-word sequence with any training document (of the three prose sources) is
dropped, and paragraphs found in three or more documents (web boilerplate) are removed before passages are cut.
Build with the same seed as the pretraining corpus.

Output (:func:`build_prose_recall_dataset`): ``train.jsonl`` (instruction rows ``id``, ``context``, ``prompt``,
``completion``, ``type``, ``kind``, ``task="prose_recall"``), ``{validation,test}.eval.jsonl`` (knowledge
evaluation format: ``id``, ``source``, ``context``, ``questions`` with ``question``, ``answers``, ``type``,
``kind``) and ``manifest.json``. Everything is a pure function of the raw downloads and the seed.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from .jsonl import write_json, write_jsonl
from .overlap import OverlapFilter, words
from .progress import progress
from .splits import hash_order, normalize_key, splitter, stable_unit
from .synthetic_facts import instruction_rows

__all__ = [
    "PROSE_SOURCES",
    "PHRASINGS",
    "approx_tokens",
    "build_prose_recall_dataset",
    "cloze_candidates",
    "cut_passages",
    "prose_recall_split",
    "recall_documents",
    "split_sentences",
]

PathLike = str | os.PathLike

# The prose sources of the pretraining corpus, in the pretraining builder's reading order (its de-duplication keeps
# the first of identical documents, so the order matters).
PROSE_SOURCES = ("news", "sotu", "bbc")
# The pretraining builder's defaults (``build_pretraining_corpus(validation_fraction=..., min_chars=...)``): the split
# and the document filter must be the same here (tests check that they still are).
PRETRAINING_VALIDATION_FRACTION = 0.05
PRETRAINING_MIN_CHARS = 200
MIN_TOKENS = 100
PHRASINGS = (
    'Fill in the blank from the article: "{}"',
    'According to the text, what goes in the blank: "{}"',
    'Which words complete this sentence from the article: "{}"',
)
BLANK = "___"
TASK = "prose_recall"
SPLIT_RULE = (
    "a document's split is the pretraining corpus's (stable_unit(doc_id, seed) against 95% train / 5% validation, "
    "peft_generative.data.splits.splitter); its validation documents go to validation if "
    "stable_unit('prose_recall/heldout/' + doc_id, seed) < 0.5, else to test; documents read, filtered (min_chars "
    "200) and de-duplicated as the pretraining builder does; held-out passages sharing a 13-word sequence with any "
    "training document are dropped"
)


# --------------------------------------------------------------------------------------------------------- splits
def prose_recall_split(doc_id: str, seed: int = 0) -> str:
    """``train``, ``validation`` or ``test`` for a document id (``<source>/<...>``, as the pretraining corpus names
    them). ``train`` exactly when the pretraining corpus (same seed) puts the document into its training split."""
    if not isinstance(doc_id, str) or not doc_id:
        raise ValueError(f"a document id must be a non-empty string, got {doc_id!r}")
    return _split_of(doc_id, int(seed))


_SPLITTERS: dict[int, Callable[[str], str]] = {}


def _split_of(doc_id: str, seed: int) -> str:
    if seed not in _SPLITTERS:
        _SPLITTERS[seed] = splitter({"train": 1.0 - PRETRAINING_VALIDATION_FRACTION,
                                     "validation": PRETRAINING_VALIDATION_FRACTION}, seed)
    if _SPLITTERS[seed](doc_id) == "train":
        return "train"
    return "validation" if stable_unit(f"prose_recall/heldout/{doc_id}", seed) < 0.5 else "test"


# ------------------------------------------------------------------------------------------------ text utilities
_TOKEN = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """About the number of SmolLM2 tokens of English prose: words and punctuation marks, times 1.1 (SmolLM2 tokens
    per word-or-mark on the three prose sources: 1.08-1.15; per passage the ratio varies more, 0.86-1.43)."""
    return math.ceil(1.1 * len(_TOKEN.findall(text)))


MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_MONTH = r"(?:Jan(?:uary|\.)?|Feb(?:ruary|\.)?|March|April|May|June|July|Aug(?:ust|\.)?|Sept(?:ember|\.)?|" \
         r"Oct(?:ober|\.)?|Nov(?:ember|\.)?|Dec(?:ember|\.)?)"
# words whose final full stop does not end a sentence
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st sen rep gov gen col lt sgt capt cmdr adm rev prof jr sr inc corp co ltd vs v etc jan feb "
    "aug sept sep oct nov dec mt ft pres supt dept univ approx fig est a.m p.m u.s u.k u.n e.g i.e".split())
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s+[\"'“‘(\[]?[A-Z0-9])")


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of one paragraph (a rule-based splitter: a full stop, question or exclamation mark, then space and
    a capital or digit; not after an abbreviation such as ``Mr.`` or ``U.S.`` or after a single initial)."""
    text = " ".join(paragraph.split())
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        before = text[start:m.start()].rsplit(" ", 1)[-1].lstrip("\"'“‘(")
        if m.group().startswith(".") and (
            before.lower().rstrip(".") in _ABBREVIATIONS
            or re.fullmatch(r"[A-Z]|(?:[A-Za-z]\.)+[A-Za-z]|[A-Z]-[A-Z][a-z]+", before)  # "J.", "U.S.", "D-Mass."
            or (before.lower() in ("no", "nos") and text[m.end():].lstrip()[:1].isdigit())  # "No. 10"
        ):
            continue
        out.append(text[start:m.end()].strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return [s for s in out if s]


def _paragraphs(text: str) -> list[list[str]]:
    return [sents for para in re.split(r"\n\s*\n|\n", text) if (sents := split_sentences(para))]


def cut_passages(text: str, *, rng: random.Random | None = None, min_tokens: int = MIN_TOKENS,
                 max_tokens: int = 300, count_tokens: Callable[[str], int] = approx_tokens) -> list[list[list[str]]]:
    """Cut a document into consecutive passages of whole sentences, each ``min_tokens``-``max_tokens`` tokens long
    (a target length drawn per passage from that range; with no ``rng``, the maximum). A passage is a list of
    paragraphs, each a list of sentences. A sentence longer than ``max_tokens`` ends the passage being built and is
    skipped; a remainder shorter than ``min_tokens`` is dropped."""
    if min_tokens < 1 or max_tokens < min_tokens:
        raise ValueError(f"need 1 <= min_tokens <= max_tokens, got {min_tokens} and {max_tokens}")
    passages: list[list[list[str]]] = []
    current: list[list[str]] = []
    size = 0
    target = max_tokens if rng is None else rng.randint(min_tokens, max_tokens)

    def flush() -> None:
        nonlocal current, size, target
        paragraphs = [p for p in current if p]
        if size >= min_tokens and min_tokens <= count_tokens(_passage_text(paragraphs)) <= max_tokens:
            passages.append(paragraphs)
        current, size = [], 0
        target = max_tokens if rng is None else rng.randint(min_tokens, max_tokens)

    for para in _paragraphs(text):
        if current:
            current.append([])
        for sentence in para:
            n = count_tokens(sentence)
            if n > max_tokens:
                flush()
                continue
            if size + n > max_tokens or (size >= target and size >= min_tokens):
                flush()
            if not current:
                current.append([])
            current[-1].append(sentence)
            size += n
    flush()
    return passages


def _passage_text(paragraphs: list[list[str]]) -> str:
    return "\n".join(" ".join(p) for p in paragraphs)


# ------------------------------------------------------------------------------------------------ span extraction
# Words that start sentences without being names (also when capitalised after a quote or a colon mid-sentence).
_COMMON = frozenset("""
a about above according across after afterwards again against all almost along already also although always am
among an and another any anyone anything are around as at be because been before being below besides between
both but by can cannot could did do does doing down during each either else even ever every everyone everything
few for from further had has have having he her here hers herself him himself his how however i if in indeed
instead into is it its itself just last later least less let like many may me meanwhile more moreover most much
must my myself neither never nevertheless next no nobody none nor not nothing now of off often on once one only
or other others otherwise our ours ourselves out over own perhaps please rather same several she should since so
some someone something sometimes still such than that the their theirs them themselves then there thereby
therefore these they this those though through thus to today together tomorrow too toward towards under unless
until up upon us very was we well were what whatever when whenever where whereas whether which while who whoever
whom whose why will with within without would yes yesterday yet you your yours yourself yourselves first second
third finally now here there asked said says added told according speaking despite following given including
unlike overall instead together earlier recently currently later once meanwhile indeed certainly clearly of oh
mr mrs ms dr sir madam ladies gentlemen fellow dear thank thanks welcome all both many most
some such these those several every each either neither other another
""".split())
_HONORIFICS = frozenset("""
mr mrs ms miss dr prof sen rep gov gen lt col sgt capt cmdr adm rev sir dame
president vice prime minister secretary senator governor chancellor chairman chairwoman chief executive judge
justice king queen prince princess pope sheriff mayor speaker director commissioner ambassador
captain coach detective officer representative congressman congresswoman attorney deputy professor
doctor emperor empress sultan archbishop bishop cardinal former acting ceo cfo coo cto
""".split())
_GENERIC = frozenset("""
president congress government senate house nation union federal republic administration department treasury
executive army navy court constitution state states country god war house's america's english french american
americans british european european's congress's government's internet web tv mp mps msps meps uk us eu
monday tuesday wednesday thursday friday saturday sunday
""".split()) | frozenset(m.lower() for m in MONTHS) | frozenset("jan feb aug sept oct nov dec".split())
_NOT_A_NAME = _GENERIC | _HONORIFICS
_CONNECTORS = frozenset(["of", "the", "de", "da", "del", "van", "von", "der", "for", "&", "du", "la", "le"])
_WORD_RE = re.compile(r"(?:[A-Z]\.){2,}|[A-Za-z][\w'’.&-]*[\w]|[A-Za-z&]")
_CAPITALISED = re.compile(r"(?:[A-Z]\.){2,}|[A-Z][\w'’.&-]*")
_POSSESSIVE = ("'s", "’s", "'", "’")
_OPENERS = "\"“‘'(:;—–-"

_NUMBER_WORDS = ("two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
                 "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred "
                 "dozen").split()

_DIGIT_PATTERNS = [
    # in priority order: dates, money and percentages, scores (before names), then plain numbers (after names)
    re.compile(rf"\b{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}\b"),
    re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)? {_MONTH},? \d{{4}}\b"),
    re.compile(rf"\b{_MONTH},? \d{{4}}\b"),
    re.compile(rf"\b{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?\b(?!,? \d)"),
    re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)? {_MONTH}\b"),
    re.compile(r"[$£€]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:bn|m|k|billion|million|trillion|thousand)\b)?"),
    re.compile(r"(?<![\w.,-])\d[\d,]*(?:\.\d+)?(?:%|\s?per ?cent\b|\s?percent\b)"),
    re.compile(r"(?<![\w.,$£€-])\d{1,3}-\d{1,3}(?![\w%-]|[.,]\d|\s?per)"),
    re.compile(r"(?<![\w.,:$£€-])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?:\s(?:million|billion|trillion)\b)?"
               r"(?![\w%-]|[.:]\d)"),
    re.compile(r"(?<![\w.,:$£€/-])\d+(?:\.\d+)?(?:\s(?:million|billion|trillion)\b)?(?![\w%/-]|[.,:]\d)"),
]
_SPELLED = re.compile(rf"\b(?:{'|'.join(_NUMBER_WORDS)})\b(?= [a-z]+s\b)")


def _name_spans(sentence: str) -> list[tuple[int, int]]:
    tokens = [(m.start(), m.end(), m.group()) for m in _WORD_RE.finditer(sentence)]
    first = re.search(r"[A-Za-z0-9]", sentence)
    first_word = 0 if tokens and first and tokens[0][0] == first.start() else None

    def joined(k: int) -> bool:  # token k follows token k-1 after exactly one space, and k-1 is no possessive
        return sentence[tokens[k - 1][1]:tokens[k][0]] == " " and not tokens[k - 1][2].endswith(_POSSESSIVE)

    def at_start(k: int) -> bool:  # the sentence's first word, or a word after an opening quote, colon, dash...
        return k == first_word or sentence[:tokens[k][0]].rstrip()[-1:] in _OPENERS

    def quote_start(k: int) -> bool:  # the first word of a quotation: 'said: "Following', ' "It'
        before = sentence[:tokens[k][0]]
        if before[-1:] in "“‘":
            return True
        return before[-1:] in "\"'" and (len(before) == 1 or before[-2].isspace() or before[-2] in "([:")

    spans = []
    i = 0
    while i < len(tokens):
        if not _CAPITALISED.fullmatch(tokens[i][2]):
            i += 1
            continue
        j = i + 1  # extend the run over capitalised words and inner connectors ("Bank of England")
        while j < len(tokens) and joined(j):
            if _CAPITALISED.fullmatch(tokens[j][2]):
                j += 1
                continue
            k = j
            while k < len(tokens) and tokens[k][2] in _CONNECTORS and joined(k):
                k += 1
            if j < k < len(tokens) and joined(k) and _CAPITALISED.fullmatch(tokens[k][2]):
                j = k
                continue
            break
        run = list(range(i, j))
        i = j
        if (run[0] == first_word or quote_start(run[0])) and tokens[run[0]][2].lower() not in _COMMON:
            continue  # "Betsy DeVos was ...": a sentence-initial run may be anything; not asked
        while run and at_start(run[0]) and tokens[run[0]][2].lower() in _COMMON:
            run = run[1:]  # "The Senate" at the start, "'It" after a quote
        titles = [n for n, r in enumerate(run[:-1]) if tokens[r][2].lower().rstrip(".") in _HONORIFICS]
        if titles:  # "President Trump", "Foreign Secretary Boris Johnson", "Secretary of State Rex Tillerson"
            rest = run[titles[-1] + 1:]
            if len(rest) >= 4 and tokens[rest[0]][2] == "of":
                rest = rest[2:]
            if not any(tokens[r][2] in _CONNECTORS for r in rest):
                run = rest
        while run and (tokens[run[0]][2].lower().rstrip(".") in _HONORIFICS or tokens[run[0]][2] in _CONNECTORS):
            run = run[1:]
        while run and (tokens[run[-1]][2] in _CONNECTORS or tokens[run[-1]][2] == "I"):
            run = run[:-1]
        if not run:
            continue
        start, end = tokens[run[0]][0], tokens[run[-1]][1]
        if re.match(r"['’]\s?(?:t|m|ll|ve|re|d|s)\b", sentence[end:]) or re.search(r"['’](?:t|m|ll|ve|re|d)$",
                                                                              tokens[run[-1]][2]):
            continue  # "I'm", "Don' t": contractions, not names
        text = sentence[start:end]
        for suffix in _POSSESSIVE:
            if text.endswith(suffix):
                text = text[: -len(suffix)]
                break
        text = text.rstrip(".") if not re.fullmatch(r"(?:[A-Z]\.){2,}", text.split()[-1]) else text
        if len(text) < 2 or re.fullmatch(r"[A-Z]-[A-Z][a-z]+\.?", text) or all(
            w.lower().rstrip(".") in _NOT_A_NAME or w in _CONNECTORS for w in text.split()
        ):
            continue  # "Congress", "January", "Secretary of State", "D-Mass."
        spans.append((start, start + len(text)))
    return spans


def cloze_candidates(sentence: str) -> list[dict]:
    """Candidate blanks of one sentence: ``[{"answer", "start", "end", "kind"}]`` in sentence order, not overlapping
    (dates, money, percentages and scores win over names, names over plain numbers). ``kind``: ``digits`` for
    numbers and dates, ``name`` for capitalised spans, ``word`` for spelled-out counts. No length or uniqueness
    checks here (see the module docstring)."""
    taken: list[tuple[int, int, str]] = []

    def add(s: int, e: int, kind: str) -> None:
        if all(e <= a or s >= b for a, b, _ in taken):
            taken.append((s, e, kind))

    for pattern in _DIGIT_PATTERNS[:8]:
        for m in pattern.finditer(sentence):
            add(m.start(), m.end(), "digits")
    for s, e in _name_spans(sentence):
        add(s, e, "name")
    for pattern in _DIGIT_PATTERNS[8:]:
        for m in pattern.finditer(sentence):
            if sum(c.isdigit() for c in m.group()) >= 2:  # one-digit numbers are too easy to guess
                add(m.start(), m.end(), "digits")
    for m in _SPELLED.finditer(sentence):
        add(m.start(), m.end(), "word")
    return [{"answer": sentence[s:e], "start": s, "end": e, "kind": kind} for s, e, kind in sorted(taken)]


# web boilerplate (sign-up requests, disclaimers, credits): no questions from these sentences
_BOILERPLATE = re.compile(
    r"https?://|www\.|@\w|\.com\b|--|[<>|*#{}\[\]]|\b(?:subscribe|newsletter|sign up|click here|follow us|"
    r"share this|contributed to this report|necessarily reflect|views expressed|all rights reserved|"
    r"information you want to share|editorial policy|copyright|photo credit|getty images|read more|"
    r"the morning email)\b", re.IGNORECASE)


def _eligible_sentence(sentence: str) -> bool:
    n = len(sentence.split())
    return (8 <= n <= 45 and sentence.rstrip("\"'”’)]")[-1:] in ".!?" and BLANK not in sentence
            and not _BOILERPLATE.search(sentence))


def _question_candidates(sentence: str) -> list[dict]:
    out = []
    for c in cloze_candidates(sentence):
        answer = c["answer"]
        n_words = len(answer.split())
        if n_words > (5 if c["kind"] == "name" else 4):
            continue
        if sentence.lower().count(answer.lower()) != 1:
            continue
        cloze = sentence[:c["start"]] + BLANK + sentence[c["end"]:]
        if answer.lower() in cloze.lower():
            continue
        out.append({**c, "cloze": cloze, "words": n_words})
    return out


# --------------------------------------------------------------------------------------------------- questions
def _passage_questions(paragraphs: list[list[str]], rng: random.Random, max_questions: int) -> list[dict]:
    context = _passage_text(paragraphs)
    sentences = [s for p in paragraphs for s in p]
    eligible = []  # (sentence index, candidates)
    for idx, sentence in enumerate(sentences):
        if _eligible_sentence(sentence):
            cands = [c for c in _question_candidates(sentence) if c["answer"] in context]
            if cands:
                eligible.append((idx, cands))
    if not eligible:
        return []
    n = min(max_questions, len(eligible))
    # evenly spaced stretches of the eligible sentences, one question from each (in random order within a stretch)
    bounds = [round(k * len(eligible) / n) for k in range(n + 1)]
    kinds_order = ["name", "digits", "word"]
    offset = rng.randrange(2)
    questions, used = [], set()
    for slot in range(n):
        preferred = kinds_order[(slot + offset) % 2:] + kinds_order[:(slot + offset) % 2]  # names, digits alternate
        pool = [c for _, cands in eligible[bounds[slot]:bounds[slot + 1]] for c in cands
                if c["answer"].lower() not in used]
        if not pool:
            continue
        chosen = min(pool, key=lambda c: (c["words"] > 4, preferred.index(c["kind"]), rng.random()))
        used.add(chosen["answer"].lower())
        question = rng.choice(PHRASINGS).format(chosen["cloze"].replace('"', "'").replace("“", "'")
                                                .replace("”", "'"))
        if chosen["answer"].lower() in question.lower() or chosen["answer"] not in context:
            continue  # the quote replacement can make the answer appear in the question: skip it
        questions.append({"question": question, "answers": [chosen["answer"]], "type": "cloze",
                          "kind": chosen["kind"]})
    return questions


def _check_documents(documents: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    for i, item in enumerate(documents):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(f"documents must be (doc_id, text) pairs; item {i} is {type(item).__name__}")
        doc_id, text = item
        if not isinstance(doc_id, str) or not doc_id:
            raise ValueError(f"document {i}: the id must be a non-empty string, got {doc_id!r}")
        if not isinstance(text, str):
            raise TypeError(f"document {doc_id!r}: the text must be a string, got {type(text).__name__}")
        yield doc_id, text


def _check_args(seed, max_tokens, max_questions, passages_per_document) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < MIN_TOKENS:
        raise ValueError(f"max_tokens must be an int >= {MIN_TOKENS} (passages are {MIN_TOKENS}-max_tokens tokens), "
                         f"got {max_tokens!r}")
    if isinstance(max_questions, bool) or not isinstance(max_questions, int) or max_questions < 1:
        raise ValueError(f"max_questions must be a positive int, got {max_questions!r}")
    if passages_per_document is not None and (isinstance(passages_per_document, bool)
                                              or not isinstance(passages_per_document, int)
                                              or passages_per_document < 1):
        raise ValueError(f"passages_per_document must be a positive int or None, got {passages_per_document!r}")


def _iter_recall(documents: Iterable[tuple[str, str]], seed: int, max_tokens: int, max_questions: int,
                 passages_per_document: int | None) -> Iterator[dict]:
    for doc_id, text in _check_documents(documents):
        rng = random.Random(f"{seed}-prose-recall-{doc_id}")
        passages = cut_passages(text, rng=rng, max_tokens=max_tokens)
        ids = [f"{doc_id}#{k}" for k in range(len(passages))]
        order = hash_order(ids, seed)  # which passages of a long document are asked about: a seeded shuffle
        kept = []
        for k in order:
            if passages_per_document is not None and len(kept) >= passages_per_document:
                break
            questions = _passage_questions(passages[k], random.Random(f"{seed}-prose-recall-{ids[k]}"),
                                           max_questions)
            if questions:
                kept.append((k, questions))
        for k, questions in sorted(kept):
            yield {"id": ids[k], "source": doc_id.split("/", 1)[0], "context": _passage_text(passages[k]),
                   "questions": questions}


def recall_documents(documents: Iterable[tuple[str, str]], *, seed: int = 0, max_tokens: int = 300,
                     max_questions: int = 4, passages_per_document: int | None = None) -> list[dict]:
    """Cloze recall questions on ``(doc_id, text)`` pairs: one record per passage that has at least one question,
    ``{"id": "<doc_id>#<k>", "source", "context", "questions": [{"question", "answers", "type": "cloze",
    "kind"}]}``, in document and passage order. Passages are 100-``max_tokens`` tokens (:func:`approx_tokens`) of
    whole sentences; each has at most ``max_questions`` questions. ``passages_per_document`` (default: all) keeps
    that many passages of each document, chosen by a seeded hash. A pure function of its arguments."""
    _check_args(seed, max_tokens, max_questions, passages_per_document)
    return list(_iter_recall(documents, seed, max_tokens, max_questions, passages_per_document))


# ------------------------------------------------------------------------------------------------------- builder
def _read_prose_documents(sources: Mapping[str, PathLike], progress_bar: bool) -> tuple[list[tuple[str, str]], dict]:
    """The prose documents as the pretraining builder keeps them: read in its source order, too-short and exact
    duplicate documents dropped (the first of identical texts is kept)."""
    from .pretraining import kept_documents

    stats = {source: {"read": 0, "too_short": 0, "duplicate": 0, "kept": 0} for source in PROSE_SOURCES
             if source in sources}
    docs: list[tuple[str, str]] = []
    for source, doc_id, text in kept_documents({k: sources[k] for k in stats}, stats,
                                               min_chars=PRETRAINING_MIN_CHARS, progress_bar=progress_bar,
                                               desc="prose_recall"):
        docs.append((doc_id, text))
        stats[source]["kept"] += 1
    return docs, stats


def _overlapping(passages: Sequence[str], documents: Iterable[str], n: int = 13) -> set[int]:
    """Indices of the passages that share a word ``n``-gram with any of ``documents``."""
    index: dict[int, set[int]] = {}
    for i, text in enumerate(passages):
        ws = words(text)
        for gram in zip(*[ws[j:] for j in range(n)]):
            index.setdefault(hash(gram), set()).add(i)
    hit: set[int] = set()
    if not index:
        return hit
    keys = index.keys()
    for text in documents:
        ws = words(text)
        for h in keys & set(map(hash, zip(*[ws[j:] for j in range(n)]))):
            hit |= index[h]
    return hit


def _repeated_paragraphs(texts: Iterable[str], min_documents: int = 3) -> frozenset[str]:
    """Paragraphs (normalised) that occur in ``min_documents`` or more documents: web boilerplate ("Do you have
    information you want to share with the HuffPost?", credits, sign-up requests)."""
    seen: Counter = Counter()
    for text in texts:
        seen.update({normalize_key(p) for p in re.split(r"\n\s*\n", text) if p.strip()})
    return frozenset(p for p, n in seen.items() if n >= min_documents)


def _drop_paragraphs(text: str, drop: frozenset[str]) -> str:
    if not drop:
        return text
    return "\n\n".join(p for p in re.split(r"\n\s*\n", text) if p.strip() and normalize_key(p) not in drop)


def _cached_knowledge_passages(data_root: PathLike | None) -> list[str] | None:
    """The knowledge passages if the BIG-bench archive (or its extracted task) is already in the cache; no download."""
    from .cache import bigbench_cached
    from .knowledge import knowledge_passages

    if not bigbench_cached(data_root):
        return None
    return knowledge_passages(data_root=data_root)


def _count(records: Sequence[dict]) -> dict:
    qs = [q for r in records for q in r["questions"]]
    return {"passages": len(records), "questions": len(qs),
            "kinds": dict(sorted(Counter(q["kind"] for q in qs).items())),
            "sources": dict(sorted(Counter(r["source"] for r in records).items())),
            "documents": len({r["id"].rsplit("#", 1)[0] for r in records})}


def build_prose_recall_dataset(
    out_dir: PathLike,
    *,
    seed: int = 0,
    sources: Sequence[str] | Mapping[str, PathLike] = PROSE_SOURCES,
    train_passages: int = 4000,
    heldout_passages: int = 200,
    max_tokens: int = 300,
    max_questions: int = 4,
    passages_per_document: int = 2,
    exclude_texts: Iterable[str] | None = None,
    data_root: PathLike | None = None,
    progress_bar: bool = True,
    quiet: bool = False,
) -> dict[str, Path]:
    """Write ``train.jsonl``, ``validation.eval.jsonl``, ``test.eval.jsonl`` and ``manifest.json`` into ``out_dir``;
    returns ``{"train", "validation.eval", "test.eval", "manifest"}`` -> path.

    ``sources``: prose source keys (``news``, ``sotu``, ``bbc``) whose documents are asked about, or a mapping of
    them to raw downloads / unpacked directories; keys are fetched into the data cache (``data_root`` overrides its
    location) like the pretraining corpus; all three prose sources are then read (fetched if needed), for the
    pretraining corpus's de-duplication and the held-out overlap check. With a mapping, only the given sources are
    read (as ``build_pretraining_corpus(sources=...)`` does). ``train_passages`` / ``heldout_passages``:
    passages per split at most (``heldout_passages`` each for validation and test), at most
    ``passages_per_document`` from one document; documents are taken in a seeded hash order. ``exclude_texts``:
    evaluation passages (by default the knowledge passages if BIG-bench is already in the cache, as the pretraining
    corpus uses them; nothing is downloaded for it): training documents sharing a 13-word sequence with one are not
    used. ``progress_bar``: tqdm bars while reading and building; ``quiet``: no log lines and no bars."""
    _check_args(seed, max_tokens, max_questions, passages_per_document)
    for name, value in (("train_passages", train_passages), ("heldout_passages", heldout_passages)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if isinstance(sources, str):
        raise TypeError(f"sources must be a sequence of source keys, e.g. ('news',), got the string {sources!r}")
    wanted = list(sources)
    if not wanted:
        raise ValueError(f"no sources given; choose from {PROSE_SOURCES}")
    unknown = [s for s in wanted if s not in PROSE_SOURCES]
    if unknown:
        raise ValueError(f"unknown prose sources {unknown}; choose from {PROSE_SOURCES} (the Linux and Python docs "
                         "are not used for recall questions)")
    import logging

    log = logging.getLogger(__name__)
    given = dict(sources) if isinstance(sources, Mapping) else {}
    raw: dict[str, PathLike] = {}
    from .cache import fetch
    from .pretraining import PRETRAINING_SOURCES

    for key in PROSE_SOURCES:
        if given:
            if key in given:
                raw[key] = given[key]
        else:
            raw[key] = fetch(PRETRAINING_SOURCES[key], data_root, quiet=quiet)
    if exclude_texts is None:
        exclude_texts = _cached_knowledge_passages(data_root)
        exclude_note = "knowledge passages (cached)" if exclude_texts is not None else "none (BIG-bench not cached)"
    else:
        exclude_texts = list(exclude_texts)
        exclude_note = "given"
    exclude = OverlapFilter(exclude_texts or ())

    bars = progress_bar and not quiet
    docs, read_stats = _read_prose_documents(raw, progress_bar=bars)
    by_split: dict[str, list[tuple[str, str]]] = {"train": [], "validation": [], "test": []}
    for doc_id, text in docs:
        by_split[prose_recall_split(doc_id, seed)].append((doc_id, text))
    train_texts = [text for _, text in by_split["train"]]  # as the pretraining corpus has them, for the overlap check
    boilerplate = _repeated_paragraphs(text for _, text in docs)
    excluded_train = 0
    pools: dict[str, list[tuple[str, str]]] = {}
    for split, docs_of_split in by_split.items():
        pool = [(d, _drop_paragraphs(t, boilerplate)) for d, t in docs_of_split if d.split("/", 1)[0] in wanted]
        if split == "train" and exclude:
            kept = [d for d in pool if not exclude.overlaps(d[1])]
            excluded_train, pool = len(pool) - len(kept), kept
        pools[split] = [pool[i] for i in hash_order([d[0] for d in pool], seed)]

    def recall(split: str) -> Iterator[dict]:
        docs_in = progress(pools[split], desc=f"prose_recall/{split}", enabled=bars, unit="doc")
        return _iter_recall(docs_in, seed, max_tokens, max_questions, passages_per_document)

    records: dict[str, list[dict]] = {}
    # held-out passages sharing a 13-word sequence with any training document (near-duplicate articles, quotes
    # repeated across articles) are dropped; the held-out pools are small, so all their passages are checked at once
    candidates = {split: list(recall(split)) for split in ("validation", "test")}
    flat = [r for split in ("validation", "test") for r in candidates[split]]
    bad_ids = {flat[i]["id"] for i in _overlapping([r["context"] for r in flat], train_texts)}
    dropped_overlap = {}
    for split in ("validation", "test"):
        clean = [r for r in candidates[split] if r["id"] not in bad_ids]
        dropped_overlap[split] = len(candidates[split]) - len(clean)
        records[split] = clean[:heldout_passages]
    records["train"] = list(islice(recall("train"), train_passages))
    for split, limit in (("validation", heldout_passages), ("test", heldout_passages), ("train", train_passages)):
        if len(records[split]) < limit and not quiet:
            log.info("prose_recall: only %d %s passages (asked for %d)", len(records[split]), split, limit)

    out = Path(out_dir)
    paths = {"train": out / "train.jsonl", "validation.eval": out / "validation.eval.jsonl",
             "test.eval": out / "test.eval.jsonl", "manifest": out / "manifest.json"}
    train_order = hash_order([r["id"] for r in records["train"]], seed)
    write_jsonl(paths["train"], instruction_rows([records["train"][i] for i in train_order], TASK, kind=True))
    for split in ("validation", "test"):
        write_jsonl(paths[f"{split}.eval"], records[split])
    write_json(paths["manifest"], {
        "dataset": TASK,
        "seed": seed,
        "sources": wanted,
        "split_rule": SPLIT_RULE,
        "max_tokens": max_tokens,
        "min_tokens": MIN_TOKENS,
        "max_questions": max_questions,
        "passages_per_document": passages_per_document,
        "phrasings": list(PHRASINGS),
        "documents": {split: sum(d[0].split("/", 1)[0] in wanted for d in ds) for split, ds in by_split.items()},
        "read": read_stats,
        "exclude_texts": exclude_note,
        "excluded_train_documents": excluded_train,
        "heldout_passages_dropped_for_overlap": dropped_overlap,
        "boilerplate_paragraphs_removed": len(boilerplate),
        "counts": {split: _count(recs) for split, recs in records.items()},
        "files": {k: v.name for k, v in paths.items() if k != "manifest"},
    })
    if not quiet:
        log.info("prose_recall: %s", {s: len(r) for s, r in records.items()})
    return paths
