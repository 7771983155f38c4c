"""Synthetic encyclopedia articles: free prose about invented subjects, many facts of one kind in each, so a question
can only be answered by the fact's relation, not by its type.

The synthetic facts (``synthetic_facts``) state each fact once, in one of two sentences, with one value of each type
per document: an adapter can learn the template. An article here (170-330 tokens, 3-4 paragraphs) tells the story of
an invented town's old building, an invented composer or an invented company, in sentences drawn from several
phrasings per fact, and holds several values of each type: four or five years (built, closed, opened, since ...),
several counts, four or five people and places. Each relation has its own question (who built it, how many of its
features, which year it opened, who runs it, its most valuable item, where the transport to the town leaves from,
...), whose answer is a verbatim span of the article.

Held out twice: validation/test names use the held-out syllables of ``synthetic_facts`` and their own first names (no
training name contains one), and the last phrasing of every fact sentence and of every question is reserved for
validation/test, so the test set measures whether what was learnt transfers to new wording. No article shares a
six-word sequence with the bundled demo article (``assets/quillmoor.txt``), whose questions are asked in the reserved
phrasings. Everything is a pure function of the seed (and, for English names, of the Faker version).

Invented names repeat their first names (30 in training), so a generator can lower its loss by learning which first
names are likely. A share of the training articles (``english_share``) therefore takes real English first names and
surnames (Faker's lists, about a thousand first names and 2,400 surnames in training): a name then hardly repeats and
has to be copied from the context. A hashed quarter of those names is held out for ``*_english.eval.jsonl``; the
demo's names (``DEMO_NAMES``) are in no list.

Output (``build_synthetic_articles_dataset``): ``train.jsonl`` (instruction rows ``id``, ``context``, ``prompt``,
``completion``, ``type``, ``task``), ``{validation,test}.eval.jsonl`` and ``{validation,test}_english.eval.jsonl``
(knowledge evaluation format) and ``manifest.json``.
"""

from __future__ import annotations

import os
import random
import zlib
from collections import Counter
from functools import lru_cache
from pathlib import Path

from .jsonl import write_json, write_jsonl
from .synthetic_facts import KIND_OF_TYPE, instruction_rows, invented_name

__all__ = ["ARTICLE_KINDS", "DEMO_NAMES", "article_document", "build_synthetic_articles_dataset", "english_names"]

ARTICLE_KINDS = ("building", "person", "company")
ANSWER_KINDS = {**KIND_OF_TYPE, "number": "digits"}  # question type -> answer kind
FIRST_NAMES = {  # disjoint lists: a held-out person's first name never occurs in training either
    "train": ["Agatha", "Bernard", "Clara", "Desmond", "Edith", "Felix", "Greta", "Harold", "Irene", "Jasper",
              "Lena", "Martin", "Nora", "Oscar", "Petra", "Rupert", "Sylvia", "Tobias", "Ursula", "Walter", "Yvonne",
              "Alfred", "Beatrice", "Conrad", "Dora", "Emil", "Frieda", "Gustav", "Helena", "Ivo"],
    "held_out": ["Ada", "Basil", "Cora", "Dmitri", "Elsa", "Florian", "Gwen", "Hugo", "Ilse", "Jonas", "Lotte",
                 "Magnus", "Nell", "Otto", "Pia"],
}
# the bundled demo's names (assets/quillmoor.txt): never a training name, so the demo stays a held-out test
DEMO_NAMES = ("Agnes", "Tremayne", "Ines", "Calloway", "Oswin", "Farrow", "Aldane", "Quillmoor", "Maren", "Skerrow")
ENGLISH_LOCALES = ("en_US", "en_GB", "en_IE", "en_NZ")
SURNAME_ENDINGS = ["", "ton", "well", "by", "ford", "more", "field", "wick", "ley", "er"]
PLACE_FORMS = ["{}", "{}moor", "{}haven", "Port {}", "{} Bay", "{}ford", "{}wick"]
DIRECTIONS = ["northern", "southern", "eastern", "western"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
# building: (what it was, what it became, its countable feature, its collection, the head's title)
BUILDINGS = [("watermill", "museum", "wooden wheels", "objects", "curator"),
             ("railway station", "theatre", "arched windows", "seats", "director"),
             ("granary", "concert hall", "oak beams", "seats", "director"),
             ("customs house", "library", "marble columns", "books", "head librarian"),
             ("bell tower", "museum", "bronze bells", "objects", "curator"),
             ("brewery", "art gallery", "brick chimneys", "paintings", "keeper"),
             ("fort", "school", "stone towers", "pupils", "headmistress"),
             ("observatory", "museum", "glass domes", "instruments", "curator"),
             ("chapel", "library", "stained-glass windows", "books", "head librarian"),
             ("warehouse", "market hall", "iron pillars", "stalls", "manager")]
ARTIFACTS = ["Almanac", "Atlas", "Chronicle", "Lantern", "Globe", "Clock", "Bible", "Ledger", "Map", "Sketchbook",
             "Telescope", "Harp", "Compass", "Diary", "Psalter"]
TRANSPORT = ["ferry", "train", "bus", "steamboat", "mail coach"]
PROFESSIONS = ["engineer", "architect", "stonemason", "shipwright", "carpenter", "surveyor"]
JOBS = ["schoolteacher", "fisherman", "baker", "doctor", "postmistress", "clockmaker", "sailor"]
INSTRUMENTS = ["violin", "cello", "piano", "flute", "harp", "organ", "clarinet", "trumpet"]
WORK_KINDS = ["symphonies", "songs", "sonatas", "operas", "string quartets", "hymns"]
PRODUCTS = ["bicycles", "umbrellas", "sewing machines", "pocket watches", "typewriters", "tin toys", "pianos",
            "fountain pens", "ship engines", "telescopes"]
FILLER = [
    "The streets around it are narrow and paved with old grey stones.",
    "In summer the place is busy with visitors, and in winter it is almost empty.",
    "Several of the early records were lost in a fire and are known only from letters.",
    "Local newspapers wrote about it often, not always kindly.",
    "A small cafe nearby sells tea, cakes and postcards.",
    "The surrounding hills are covered with heather and sheep.",
    "Historians still argue about some details of these events.",
    "Most of the people who worked there lived within walking distance.",
]


def _pick(rng: random.Random, options: list, split: str):
    """One phrasing: training never uses the last one of a list of 3 or more; validation/test always do."""
    if len(options) < 3:
        return rng.choice(options)
    return options[-1] if split in ("validation", "test") else rng.choice(options[:-1])


@lru_cache(maxsize=1)
def english_names() -> dict[str, dict[str, tuple[str, ...]]]:
    """Real English first names and surnames (Faker's person lists of several English locales; `pip install
    faker`), split for good into `"train"` and `"held_out"` by a hash of the name (a quarter held out), so the
    held-out English names of validation/test never occur in training. The demo's names and the held-out first
    names of the invented people are in neither list. Sorted: the same on every machine for one Faker version."""
    try:
        from importlib import import_module

        providers = [import_module(f"faker.providers.person.{locale}").Provider for locale in ENGLISH_LOCALES]
    except ImportError as exc:
        raise ImportError("Synthetic articles with English names read Faker's name lists: `pip install faker` "
                          "(or the `train` extra: `pip install 'peft-generative[train]'`).") from exc
    excluded = set(DEMO_NAMES) | set(FIRST_NAMES["held_out"])
    lists = {}
    for kind, attribute in (("first", "first_names"), ("last", "last_names")):
        names = {n for p in providers for n in getattr(p, attribute, ())
                 if n.isalpha() and n[0].isupper() and len(n) >= 3 and n not in excluded}
        lists[kind] = {"held_out": tuple(sorted(n for n in names if zlib.crc32(n.encode()) % 4 == 0)),
                       "train": tuple(sorted(n for n in names if zlib.crc32(n.encode()) % 4 != 0))}
    return {split: {kind: lists[kind][split] for kind in lists} for split in ("train", "held_out")}


class _Names:
    """Draws distinct names for one article: people with a real first name and an invented surname, places from
    invented syllables; or, with `english`, people and place stems from real English names."""

    def __init__(self, rng: random.Random, split: str, english: bool = False):
        self.rng, self.split, self.used = rng, split, set()
        self.english = english_names()["train" if split == "train" else "held_out"] if english else None

    def _fresh(self, make):
        while True:
            value = make()
            if value not in self.used and not any(value in u or u in value for u in self.used):
                self.used.add(value)
                return value

    def person(self) -> str:
        if self.english:
            return self._fresh(lambda: f"{self.rng.choice(self.english['first'])} "
                                       f"{self.rng.choice(self.english['last'])}")
        firsts = FIRST_NAMES["train" if self.split == "train" else "held_out"]
        stem = lambda: invented_name(self.rng, self.split, self.rng.choice([1, 2]))  # noqa: E731
        return self._fresh(lambda: f"{self.rng.choice(firsts)} {stem()}{self.rng.choice(SURNAME_ENDINGS)}")

    def place(self) -> str:
        if self.english:
            return self._fresh(lambda: self.rng.choice(PLACE_FORMS).format(self.rng.choice(self.english["last"])))
        return self._fresh(lambda: self.rng.choice(PLACE_FORMS).format(invented_name(self.rng, self.split, 2)))

    def surname(self, person: str) -> str:
        return person.split(" ", 1)[1]


def _years(rng: random.Random, count: int, low: int, high: int) -> list[str]:
    """`count` distinct increasing years in [low, high]."""
    return [str(y) for y in sorted(rng.sample(range(low, high + 1), count))]


def _building(rng: random.Random, split: str, names: _Names) -> tuple[list[list[str]], dict]:
    town, origin = names.place(), names.place()
    region, river = invented_name(rng, split, 3), invented_name(rng, split, 2)
    was, became, feature, collection, title = rng.choice(BUILDINGS)
    builder, saviour, head, donor = names.person(), names.person(), names.person(), names.person()
    built, closed, opened, head_since = _years(rng, 4, 1820, 2015)
    features, visitors, holdings, signatures = (rng.randint(12, 400), rng.randint(300, 4000),
                                                rng.randint(5, 90) * 1000, rng.randint(200, 9000))
    minutes, floods = rng.choice([20, 35, 45, 60, 75, 90, 120]), rng.randint(3, 30)
    artifact = f"{names.surname(builder if rng.random() < 0.5 else donor)} {rng.choice(ARTIFACTS)}"
    transport, month = rng.choice(TRANSPORT), rng.choice(MONTHS)
    festival = f"{rng.choice(['Bell', 'Market', 'Lantern', 'Founders', 'River', 'Apple'])} " \
               f"{rng.choice(['Week', 'Day', 'Fair'])}"
    the_place = f"the {town} {became.title()}"
    the_old = f"the old {was} in {town}"
    prof, job = rng.choice(PROFESSIONS), rng.choice(JOBS)
    paragraphs = [
        [f"{town} lies in the valley of the {river} river, in the {rng.choice(DIRECTIONS)} part of {region}.",
         f"Of its old buildings, {the_place} draws the most visitors.",
         _pick(rng, [f"Since {opened} the former {was} has served as {the_place}.",
                     f"The {was} found a new life in {opened}, when it reopened as {the_place}.",
                     f"In {opened} the former {was} reopened as {the_place}, now the pride of the town."], split),
         _pick(rng, [f"Work on the {was} was finished in {built} under the {prof} {builder}, whose plans gave it "
                     f"{features} {feature}.",
                     f"{builder}, a {prof}, completed the {was} in {built}; the design has {features} {feature}.",
                     f"Its builder was {builder}, who finished the {was} in {built} and gave it {features} "
                     f"{feature}."], split),
         f"The {river} floods the lower streets about once every {floods} years."],
        [f"In {closed} the {was} fell out of use, and its owners wanted to sell the land.",
         _pick(rng, [f"{saviour}, a {job} who had grown up nearby, raised the money to buy it for the town.",
                     f"The building was bought for the town with money raised by {saviour}, a local {job}.",
                     f"It survived because {saviour}, once a {job}, persuaded {signatures} people to sign a letter "
                     f"against the sale."], split),
         f"On the opening day {visitors} people came to look inside."],
        [_pick(rng, [f"The {became} now owns some {holdings:,} {collection}.",
                     f"Its rooms now hold some {holdings:,} {collection}.",
                     f"About {holdings:,} {collection} are now kept in {the_place}."], split),
         _pick(rng, [f"Pride of place goes to the {artifact}, shown in a room of its own.",
                     f"The {artifact} is the treasure of the house and is rarely lent out.",
                     f"Of everything it owns, the {artifact} is the most valuable."], split),
         _pick(rng, [f"{head} has been in charge as {title} since {head_since}.",
                     f"The {title} since {head_since} is {head}.",
                     f"{head} became the {title} of {the_place} in {head_since} and still runs it."], split),
         rng.choice(FILLER)],
        [_pick(rng, [f"In {month} the town holds {festival}, with music in the square.",
                     f"{festival} fills the square with music every {month}.",
                     f"Each {month} the people of {town} hold {festival}."], split),
         _pick(rng, [f"A {transport} runs to {town} from {origin}; the trip lasts {minutes} minutes.",
                     f"Most guests come on the {transport} from {origin}, a journey of {minutes} minutes.",
                     f"It takes {minutes} minutes to reach {town} by {transport}, which leaves from {origin}."],
               split)],
    ]
    # the last phrasing of each question (validation/test only) is the plainest one
    questions = {
        "builder": ([f"Who was the builder of {the_old}?", f"Who constructed {the_old}?", f"Who built {the_old}?"],
                    builder, "person"),
        "feature_count": ([f"What is the number of {feature} of {the_old}?", f"How many {feature} were given to "
                           f"{the_old}?", f"How many {feature} does {the_old} have?"], str(features), "number"),
        "opened": ([f"When did {the_place} open?", f"In what year was {the_place} opened?",
                    f"In which year did {the_place} open?"], opened, "year"),
        "built": ([f"When was {the_old} completed?", f"In what year was {the_old} finished?",
                   f"In which year was {the_old} built?"], built, "year"),
        "head": ([f"Who runs {the_place} today?", f"Who is in charge of {the_place}?",
                  f"Who is the {title} of {the_place}?"], head, "person"),
        "saviour": ([f"Who saved {the_old} for the town?", f"Thanks to whom does {the_old} still stand?",
                     f"Who saved {the_old} from being sold?"], saviour, "person"),
        "treasure": ([f"What is the treasure of {the_place}?", f"Which item does {the_place} prize most?",
                      f"What is the most valuable item in {the_place}'s collection?"], f"the {artifact}", "object"),
        "origin": ([f"From which place does the {transport} to {town} run?", f"Where do guests board the "
                    f"{transport} to {town}?", f"Where does the {transport} to {town} leave from?"], origin, "place"),
        "festival": ([f"What festival does {town} hold?", f"Which yearly festival is held in {town}?",
                      f"What is the name of the festival of {town}?"], festival, "object"),
        "region": ([f"In which region is {town}?", f"Where does {town} lie?", f"Which region is {town} in?"],
                   region, "place"),
    }
    return paragraphs, questions


def _person(rng: random.Random, split: str, names: _Names) -> tuple[list[list[str]], dict]:
    person, teacher, spouse, rival = names.person(), names.person(), names.person(), names.person()
    birthplace, school_town, death_town = names.place(), names.place(), names.place()
    born, debut, married, prize, died = _years(rng, 5, 1780, 1990)
    instrument, work_kind = rng.choice(INSTRUMENTS), rng.choice(WORK_KINDS)
    works, pupils, concerts = rng.randint(8, 300), rng.randint(5, 120), rng.randint(100, 2000)
    masterpiece = f"the {rng.choice(['Winter', 'Harbour', 'Evening', 'Mountain', 'Lantern', 'Garden'])} " \
                  f"{rng.choice(['Suite', 'Variations', 'Requiem', 'Fantasy', 'Sonata', 'Nocturnes'])}"
    prize_name = f"{names.surname(names.person())} Medal"
    paragraphs = [
        [_pick(rng, [f"{person} was a composer and {instrument} player, born in {born} in the town of {birthplace}.",
                     f"Born in {birthplace} in {born}, {person} became a composer and a famous {instrument} player.",
                     f"The composer and {instrument} player {person} came into the world in {birthplace} in the year "
                     f"{born}."], split),
         f"As a child {person.split()[0]} studied music in {school_town}.",
         _pick(rng, [f"The first teacher was {teacher}, an organist who taught without payment.",
                     f"Lessons came from {teacher}, a local organist, who asked for no money.",
                     f"It was the organist {teacher} who gave the first music lessons."], split)],
        [f"The first public concert took place in {debut}.",
         f"A long rivalry with {rival} filled the newspapers for years.",
         _pick(rng, [f"In {married} {person.split()[0]} married {spouse}, a painter.",
                     f"The painter {spouse} and {person.split()[0]} married in {married}.",
                     f"{spouse}, a painter, and {person.split()[0]} were married in {married}."], split),
         rng.choice(FILLER)],
        [_pick(rng, [f"Over a long life {person.split()[0]} wrote {works} {work_kind} and gave about {concerts} "
                     f"concerts.",
                     f"The catalogue lists {works} {work_kind}; there were also about {concerts} concerts.",
                     f"All in all, {works} {work_kind} came from this pen, beside about {concerts} concerts."], split),
         _pick(rng, [f"The best-known work is {masterpiece}.",
                     f"Of all the pieces, {masterpiece} is the most famous.",
                     f"Today {masterpiece} is the piece most people know."], split),
         f"About {pupils} pupils studied with {person.split()[0]}.",
         _pick(rng, [f"In {prize} came the {prize_name}, the highest honour for musicians in the country.",
                     f"The {prize_name} was awarded in {prize}.",
                     f"The {prize_name}, the country's highest honour for music, followed in {prize}."], split)],
        [_pick(rng, [f"{person} died in {death_town} in {died}.",
                     f"{person.split()[0]} spent the last years in {death_town} and died there in {died}.",
                     f"The composer's life ended in {died} in {death_town}."], split)],
    ]
    questions = {
        "born": ([f"In which year was {person} born?", f"When was {person} born?",
                  f"What year was {person} born in?"], born, "year"),
        "birthplace": ([f"Where was {person} born?", f"In which town was {person} born?",
                        f"What is the birthplace of {person}?"], birthplace, "place"),
        "teacher": ([f"Who was the first teacher of {person}?", f"Who gave {person} the first music lessons?",
                     f"Who first taught {person} music?"], teacher, "person"),
        "spouse": ([f"Whom did {person} marry?", f"Who was married to {person}?",
                    f"Who was the spouse of {person}?"], spouse, "person"),
        "works": ([f"How many {work_kind} did {person} write?", f"How many {work_kind} did {person} compose?",
                   f"What number of {work_kind} did {person} write?"], str(works), "number"),
        "masterpiece": ([f"What is the best-known work of {person}?", f"Which piece by {person} is most famous?",
                         f"What is {person}'s most famous piece?"], masterpiece, "object"),
        "instrument": ([f"Which instrument did {person} play?", f"What instrument was {person} known for playing?",
                        f"On which instrument did {person} perform?"], instrument, "object"),
        "prize": ([f"In which year did {person} receive the {prize_name}?", f"When was {person} awarded the "
                   f"{prize_name}?", f"What year did {person} win the {prize_name}?"], prize, "year"),
        "died": ([f"Where did {person} die?", f"In which town did {person} die?",
                  f"Where did {person} spend the last years?"], death_town, "place"),
    }
    return paragraphs, questions


def _company(rng: random.Random, split: str, names: _Names) -> tuple[list[list[str]], dict]:
    founder, partner, chief, engineer = names.person(), names.person(), names.person(), names.person()
    company = f"{names.surname(founder)} & {names.surname(partner)}"
    home, factory_town, port = names.place(), names.place(), names.place()
    founded, factory, crisis, chief_since = _years(rng, 4, 1800, 2015)
    product, first_price = rng.choice(PRODUCTS), rng.randint(2, 90)
    workers, per_year, shops = rng.randint(40, 9000), rng.randint(500, 90000), rng.randint(3, 400)
    model = f"the {rng.choice(['Swift', 'Comet', 'Falcon', 'Heron', 'Star', 'Pioneer', 'Otter'])} " \
            f"{rng.choice(['Mark I', 'Special', 'Royal', 'No. 7', 'Classic'])}"
    paragraphs = [
        [_pick(rng, [f"{company} is a maker of {product} from the town of {home}, founded in {founded} by "
                     f"{founder} and {partner}.",
                     f"In {founded} {founder} and {partner} set up {company} in {home} to make {product}.",
                     f"The {product} firm {company} was started in {home} in the year {founded} by {founder} "
                     f"together with {partner}."], split),
         f"The first {product} sold for {first_price} shillings each.",
         _pick(rng, [f"Its most famous product is {model}.",
                     f"The best-selling design in its history is {model}.",
                     f"Customers know it best for {model}."], split)],
        [_pick(rng, [f"In {factory} the company opened a large factory in {factory_town}.",
                     f"A new factory in {factory_town} opened its doors in {factory}.",
                     f"The factory at {factory_town} dates from {factory}."], split),
         f"The engineer {engineer} designed most of its machines.",
         f"A fire in {crisis} nearly ruined the firm.", rng.choice(FILLER)],
        [_pick(rng, [f"Today it employs about {workers:,} people and makes {per_year:,} {product} a year.",
                     f"About {workers:,} people work for the company, which turns out {per_year:,} {product} a year.",
                     f"With a staff of about {workers:,}, it now makes {per_year:,} {product} every year."], split),
         _pick(rng, [f"The company has been led by {chief} since {chief_since}.",
                     f"Since {chief_since} its chief executive has been {chief}.",
                     f"{chief} took charge of the company in {chief_since}."], split),
         _pick(rng, [f"Its goods are shipped from the port of {port} and sold in {shops} shops.",
                     f"From the port of {port} its goods travel to {shops} shops.",
                     f"The {shops} shops that sell its goods are supplied through the port of {port}."], split)],
    ]
    questions = {
        "founded": ([f"In which year was {company} founded?", f"When was {company} founded?",
                     f"What year was {company} set up?"], founded, "year"),
        "founder": ([f"Who founded {company} together with {partner}?", f"Who set up {company} with {partner}?",
                     f"Who was {partner}'s partner in founding {company}?"], founder, "person"),
        "home": ([f"In which town was {company} founded?", f"Where does {company} come from?",
                  f"Which town is the home of {company}?"], home, "place"),
        "chief": ([f"Who leads {company} today?", f"Who is the chief executive of {company}?",
                   f"Who is in charge of {company} now?"], chief, "person"),
        "workers": ([f"How many people does {company} employ?", f"How many people work for {company}?",
                     f"What is the number of employees of {company}?"], f"{workers:,}", "number"),
        "factory_town": ([f"Where did {company} open its large factory?", f"In which town is the factory of "
                          f"{company}?", f"Where is {company}'s factory?"], factory_town, "place"),
        "model": ([f"What is the most famous product of {company}?", f"Which design of {company} sold best?",
                   f"What is {company} best known for?"], model, "object"),
        "factory_year": ([f"In which year did {company} open its factory in {factory_town}?", f"When did the factory "
                          f"of {company} open?", f"What year did {company}'s factory open?"], factory, "year"),
        "port": ([f"From which port are the goods of {company} shipped?", f"Through which port does {company} ship "
                  f"its goods?", f"Which port does {company} use?"], port, "place"),
    }
    return paragraphs, questions


def article_document(split: str, index: int, seed: int = 0, n_questions: int = 6, english: bool = False) -> dict:
    """Article `index` of `split`: `{"id", "kind", "context", "questions": [{"question", "answers", "type", "kind",
    "relation"}]}` with `n_questions` questions about distinct relations (the article's `kind` is its subject, a
    question's `kind` its answer's: digits, word, name, place). `english`: its people and places have real English
    names (`english_names`) instead of invented ones (another article, with its own id)."""
    tag = "english-article" if english else "article"
    rng = random.Random(f"{seed}-{split}-{tag}-{index}")
    kind = ARTICLE_KINDS[index % len(ARTICLE_KINDS)]
    writer = {"building": _building, "person": _person, "company": _company}[kind]
    paragraphs, relations = writer(rng, split, _Names(rng, split, english))
    context = "\n".join(" ".join(sentences) for sentences in paragraphs)
    asked = rng.sample(sorted(relations), min(n_questions, len(relations)))
    questions = []
    for relation in asked:
        phrasings, answer, answer_type = relations[relation]
        if answer.lower() not in context.lower():  # every answer is a span of the article ("the" may start a sentence)
            raise AssertionError(f"{kind} article {index}: the answer {answer!r} of {relation} is not in the text")
        questions.append({"question": _pick(rng, phrasings, split), "answers": [answer], "type": answer_type,
                          "kind": ANSWER_KINDS[answer_type], "relation": relation})
    return {"id": f"{split}-{tag}-{index}", "kind": kind, "context": context, "questions": questions}


def build_synthetic_articles_dataset(out_dir: str | os.PathLike, *, seed: int = 0, train_documents: int = 3000,
                                     heldout_documents: int = 120, english_share: float = 0.5,
                                     quiet: bool = False) -> dict[str, Path]:
    """Write the dataset into `out_dir`; returns `{file key: path}`. A share `english_share` of the training
    articles (drawn per article with its own seed) names its people and places with real English names; the
    others, and `{validation,test}.eval.jsonl`, with invented ones; `{validation,test}_english.eval.jsonl` hold
    articles with held-out English names. `english_share=0` writes the training file of the ninth generator's
    recipe. (`quiet` is accepted like the other builders'; this one downloads nothing and logs nothing.)"""
    if train_documents < 1 or heldout_documents < 1:
        raise ValueError("train_documents and heldout_documents must be positive.")
    if not 0.0 <= english_share <= 1.0:
        raise ValueError(f"english_share must be between 0 and 1, got {english_share}.")
    out = Path(out_dir)
    english = [english_share > 0 and random.Random(f"{seed}-train-names-{i}").random() < english_share
               for i in range(train_documents)]
    train = [article_document("train", i, seed, english=english[i]) for i in range(train_documents)]
    paths = {"train": out / "train.jsonl"}
    questions = write_jsonl(paths["train"], instruction_rows(train, "synthetic_articles"))
    counts = {"train": {"documents": len(train), "english_names": sum(english), "questions": questions}}
    for split in ("validation", "test"):
        for suffix, with_english in (("", False), ("_english", True)):
            documents = [article_document(split, i, seed, english=with_english) for i in range(heldout_documents)]
            key = f"{split}{suffix}.eval"
            paths[key] = out / f"{key}.jsonl"
            write_jsonl(paths[key], documents)
            counts[f"{split}{suffix}"] = {"documents": len(documents), "types": dict(
                Counter(q["type"] for d in documents for q in d["questions"]))}
    write_json(out / "manifest.json", {"dataset": "synthetic_articles", "seed": seed, "english_share": english_share,
                                       "counts": counts, "files": {k: v.name for k, v in paths.items()}})
    return paths
