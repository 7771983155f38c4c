"""Synthetic documents about invented organisations: facts of every kind whose answers can only come from the context.

Each document (60-120 tokens) states 4 of 5 facts about an invented organisation, among filler sentences: a 4-digit
code, a founding year, a town, the leader's name and a treasured object, with one question per fact and its exact
answer. A *needle* document hides one 4-digit code in filler text: whether an adapter can carry one exact token at
all. Validation and test names are built from two small disjoint syllable sets; training names from a wide
inventory (1,176 syllables) and never contain a held-out syllable, so no held-out name (or town) is ever seen
in training, and so few training names repeat that a generator cannot learn a list of likely answers: it has to carry
the name from the context. The question types are balanced (the BIG-bench passages ask "who" 90% of the time).

Output (``build_synthetic_facts_dataset``): ``train.jsonl`` (instruction rows: ``context``, ``prompt``, ``completion``,
``type``), ``{validation,test}.eval.jsonl`` and ``{validation,test}.needle.eval.jsonl`` (knowledge evaluation format:
``context`` and ``questions`` with ``answers``), ``manifest.json``. Everything is a pure function of the seed.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

from .jsonl import write_json, write_jsonl

__all__ = ["FACT_TYPES", "KIND_OF_TYPE", "build_synthetic_facts_dataset", "fact_document", "instruction_rows",
           "invented_name", "needle_document"]

FACT_TYPES = ("code", "year", "place", "person", "object")
# the answer kind of each question type (the knowledge format's optional `kind`: the eval breaks results down by it)
KIND_OF_TYPE = {"code": "digits", "year": "digits", "place": "place", "person": "name", "object": "word",
                "needle": "digits"}
SYLLABLES = {
    # the narrow training set of the first synthetic-facts generators, for ablations (`train_syllables`; names are
    # drawn under the held-out rule of `_name`, so not byte for byte the first generators' documents)
    "train_narrow": ["ba", "den", "ko", "lor", "mi", "sen", "tal", "vor", "ru", "fen", "gar", "ith", "mel", "pra",
                     "dun", "sa", "ker", "ly", "nor", "vel"],
    "validation": ["ti", "mar", "ob", "gre", "lun", "has", "pe", "dor", "ve", "sko", "nal", "bri", "ut", "cam",
                   "rie", "fo", "jos", "ka", "lim", "ser"],
    "test": ["zo", "qui", "hep", "wy", "jan", "cu", "bex", "ost", "yul", "fra", "dra", "mok", "tiv", "ela", "sum",
             "pik", "ron", "ga", "wex", "lia"],
}
KINDS = ["Society", "Guild", "Brotherhood", "Order", "Club", "Circle", "League", "Institute"]
THINGS = ["vault", "archive", "main gate", "strongroom", "library", "cellar"]
ADJECTIVES = ["copper", "silver", "wooden", "glass", "iron", "velvet", "ivory", "brass", "marble", "golden", "clay",
              "amber"]
NOUNS = ["telescope", "lantern", "compass", "drum", "mirror", "harp", "chalice", "clock", "map", "bell", "crown",
         "sextant", "globe", "quill"]
FILLER = [
    "Its members meet once a month to share news and food.",
    "Visitors are welcome on most days, although the rooms are small.",
    "The building has a red roof and a narrow garden behind it.",
    "Many of its early records were written by hand.",
    "Local children often come to watch the yearly parade.",
    "The members are known for their long and cheerful meetings.",
    "A small shop near the entrance sells tea and postcards.",
    "Its newsletter is printed on thick yellow paper.",
    "The winters there are cold, and the meetings move indoors.",
    "Nobody remembers who painted the large portrait in the hall.",
]


HELD_OUT_SYLLABLES = frozenset(SYLLABLES["validation"] + SYLLABLES["test"])
ONSETS = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "dr", "gr", "kr", "pl",
          "st", "tr", "sh", "ch"]
SYLLABLES["train"] = [onset + vowel + coda  # the wide inventory: 1,176 syllables
                      for onset in ONSETS for vowel in "aeiouy" for coda in ["", "n", "r", "l", "s", "m", "k", "x"]
                      if onset + vowel + coda not in HELD_OUT_SYLLABLES]


def invented_name(rng: random.Random, split: str, parts: int, syllables: list[str] | None = None) -> str:
    """A capitalised name of `parts` syllables. Training names containing a held-out syllable anywhere (also across a
    syllable boundary) are drawn again, so no held-out name can occur inside a training name."""
    pool = syllables or SYLLABLES[split]
    while True:
        name = "".join(rng.choice(pool) for _ in range(parts))
        if split in ("validation", "test") or not any(s in name for s in HELD_OUT_SYLLABLES):
            return name.capitalize()


def fact_document(split: str, index: int, seed: int = 0, n_facts: int = 4,
                  train_syllables: list[str] | None = None) -> dict:
    """Document `index` of `split`: `{"id", "context", "questions": [{"question", "answers", "type"}]}`.
    `train_syllables` replaces the training inventory (e.g. `SYLLABLES["train_narrow"]`); held-out splits ignore it."""
    rng = random.Random(f"{seed}-{split}-facts-{index}")
    name = lambda parts: invented_name(rng, split, parts, train_syllables if split == "train" else None)  # noqa: E731
    subject = f"the {name(2)} {rng.choice(KINDS)}"
    subject_start = subject[0].upper() + subject[1:]
    thing = rng.choice(THINGS)
    code = f"{rng.randint(1000, 9999)}"
    year = f"{rng.randint(1420, 1990)}"
    town = name(rng.choice([2, 3]))
    person = f"{name(2)} {name(rng.choice([2, 3]))}"
    thing_owned = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    facts = {
        "code": (rng.choice([f"The {thing} of {subject} opens only with the code {code}.",
                             f"To open the {thing} of {subject}, one enters the code {code}."]),
                 f"What is the code that opens the {thing} of {subject}?", code),
        "year": (rng.choice([f"{subject_start} was founded in {year}.",
                             f"{subject_start} first met in the year {year}."]),
                 f"In which year was {subject} founded?", year),
        "place": (rng.choice([f"{subject_start} has its home in the town of {town}.",
                              f"The headquarters of {subject} stand in the town of {town}."]),
                  f"In which town is {subject} based?", town),
        "person": (rng.choice([f"Today {subject} is led by {person}.",
                               f"The current leader of {subject} is {person}."]),
                   f"Who leads {subject}?", person),
        "object": (rng.choice([f"The most treasured possession of {subject} is a {thing_owned}.",
                               f"Above all, {subject} treasures an old {thing_owned}."]),
                   f"What is the most treasured possession of {subject}?", thing_owned),
    }
    kinds = rng.sample(FACT_TYPES, n_facts)
    sentences = [facts[k][0] for k in kinds] + rng.sample(FILLER, rng.randint(1, 3))
    rng.shuffle(sentences)
    return {
        "id": f"{split}-facts-{index}",
        "context": " ".join(sentences),
        "questions": [{"question": facts[k][1], "answers": [facts[k][2]], "type": k, "kind": KIND_OF_TYPE[k]}
                      for k in kinds],
    }


def needle_document(split: str, index: int, seed: int = 0) -> dict:
    """One 4-digit code among five filler sentences, and the question that asks for it."""
    rng = random.Random(f"{seed}-{split}-needle-{index}")
    code = f"{rng.randint(1000, 9999)}"
    sentences = rng.sample(FILLER, 5)
    sentences.insert(rng.randint(0, 5), f"The secret code is {code}.")
    return {"id": f"{split}-needle-{index}", "context": " ".join(sentences),
            "questions": [{"question": "What is the secret code?", "answers": [code], "type": "needle",
                           "kind": KIND_OF_TYPE["needle"]}]}


def instruction_rows(documents: list[dict], task: str = "synthetic_facts", kind: bool = False):
    """One training row per question of each document (`id`, `context`, `prompt`, `completion`, `type`, with `kind`
    also each question's answer kind, then `task`)."""
    for doc in documents:
        for q in doc["questions"]:
            yield {"id": doc["id"], "context": doc["context"], "prompt": q["question"], "completion": q["answers"][0],
                   "type": q["type"], **({"kind": q["kind"]} if kind else {}), "task": task}


def build_synthetic_facts_dataset(out_dir: str | os.PathLike, *, seed: int = 0, train_documents: int = 4000,
                                  heldout_documents: int = 200, needle_fraction: float = 0.2,
                                  quiet: bool = False) -> dict[str, Path]:
    """Write the dataset into `out_dir`; returns `{file key: path}`. `needle_fraction` of the training documents
    are needles; validation and test get `heldout_documents` fact documents and as many needles each. (`quiet` is
    accepted like the other builders'; this one downloads nothing and logs nothing.)"""
    if train_documents < 1 or heldout_documents < 1:
        raise ValueError("train_documents and heldout_documents must be positive.")
    if not 0 <= needle_fraction < 1:
        raise ValueError("needle_fraction must be in [0, 1).")
    out = Path(out_dir)
    mix = random.Random(f"{seed}-train-mix")
    train = [needle_document("train", i, seed) if mix.random() < needle_fraction else fact_document("train", i, seed)
             for i in range(train_documents)]
    paths = {"train": out / "train.jsonl"}
    counts = {"train": {"documents": len(train), "questions": write_jsonl(paths["train"], instruction_rows(train)),
                        "types": dict(Counter(q["type"] for d in train for q in d["questions"]))}}
    for split in ("validation", "test"):
        facts = [fact_document(split, i, seed) for i in range(heldout_documents)]
        needles = [needle_document(split, i, seed) for i in range(heldout_documents)]
        paths[f"{split}.eval"] = out / f"{split}.eval.jsonl"
        paths[f"{split}.needle.eval"] = out / f"{split}.needle.eval.jsonl"
        write_jsonl(paths[f"{split}.eval"], facts)
        write_jsonl(paths[f"{split}.needle.eval"], needles)
        counts[split] = {"documents": len(facts), "needles": len(needles),
                         "types": dict(Counter(q["type"] for d in facts for q in d["questions"]))}
    write_json(out / "manifest.json", {
        "dataset": "synthetic_facts", "seed": seed, "needle_fraction": needle_fraction, "counts": counts,
        "files": {k: v.name for k, v in paths.items()},
    })
    return paths
