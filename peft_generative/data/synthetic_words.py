"""Synthetic word documents: several people, companies and ships, each with a few attributes whose answers are real
words that can only be copied from the context.

A generator trained on the synthetic facts and articles answers digits and closed-list answers, but does not copy a
word it has never seen as an answer (a town, an occupation, a name): it learned slots for a few relations. Here a
document (80-260 tokens of plain prose) describes 2-5 entities (mostly people with English names, also companies and
ships), each with 2-4 attributes out of 39 relations (hometown, occupation, employer, street, favourite colour, pet's
name, spouse, birth year, locker code, ...), in several phrasings per relation, with 0-2 filler sentences; 3-6
questions spread over the entities name the entity, so the answer is bound to it (two entities never share a value of
one relation). The answers come from open lists of real words read from Faker's providers (first names and surnames
of four English locales, towns built from Faker's town formats, street names, jobs, companies, colour names, everyday
English nouns, languages, countries, world cities, counties and states): so many that an answer hardly repeats.
About a quarter of the questions ask for digits (years, counts, codes) so the digits kind is measured too. A *needle*
document hides one word or short phrase among filler sentences ("What is the secret word?").

Held out three times, by a stable hash (``zlib.crc32``):

- words: a word (a lower-cased token of a list value) is held out when ``crc32(word.capitalize()) % 4 == 0`` (for
  names the rule of ``synthetic_articles.english_names``, so the two datasets hold out the same names). A value is a
  training value when all its words are training words, a held-out value otherwise; the words of the templates and
  format parts ("Street", "North", "and Sons", ...) are neutral and decide nothing. Training documents use training
  values only, so no held-out word occurs anywhere in them; validation and test answers, and their entities' names,
  are held-out values (digits have no held-out list);
- relations: about a quarter of the relations of each kind (the lowest ``crc32`` of their names) never occur in
  training documents, neither asked nor stated; ``{validation,test}_unseen.eval.jsonl`` asks only about them;
- phrasings: every relation has at least three statement and three question phrasings; the last of each is used only
  in validation/test (and always there).

The bundled demo's names and words (``assets/quillmoor.txt``: ``DEMO_WORDS``) are in no list and no template.
Everything is a pure function of the seed and the Faker version (Faker's lists are read, its generator is not used).

Output (``build_synthetic_words_dataset``): ``train.jsonl`` (instruction rows ``id``, ``context``, ``prompt``,
``completion``, ``type``, ``kind``, ``task``), ``{validation,test}.eval.jsonl``,
``{validation,test}.needle.eval.jsonl``, ``{validation,test}_unseen.eval.jsonl`` (knowledge evaluation format;
each question has ``type``: the relation, and ``kind``: digits, word, name or place) and ``manifest.json`` (counts by
type and kind, list sizes, held-out relations).
"""

from __future__ import annotations

import os
import random
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .jsonl import write_json, write_jsonl
from .synthetic_articles import DEMO_NAMES
from .synthetic_facts import instruction_rows

__all__ = ["DEMO_WORDS", "HELD_OUT_RELATIONS", "KINDS", "RELATIONS", "build_synthetic_words_dataset",
           "held_out_word", "neutral_words", "word_document", "word_lists", "word_needle_document"]

SPLITS = ("train", "validation", "test")
KINDS = ("digits", "word", "name", "place")
ENGLISH_LOCALES = ("en_US", "en_GB", "en_IE", "en_NZ")
# the bundled demo's names and distinctive words: in no list and no template, so never in a training document
DEMO_WORDS = tuple(DEMO_NAMES) + ("Logbook", "Lighthouse", "Library", "Librarian", "Ferry", "Lantern", "Lamp",
                                  "Beacon", "Staircase")
# format parts (neutral words): the residential street suffixes of Faker's lists, Faker's town prefixes and company
# suffixes; town suffixes are glued to the stem ("Ashford") and so never stand alone
STREET_SUFFIXES = ("Road", "Street", "Lane", "Avenue", "Close", "Crescent", "Drive", "Way", "Grove", "Place",
                   "Terrace", "Court", "Gardens", "Row", "Walk", "Square", "Mews", "Rise", "Parade", "Hill")
TOWN_PREFIXES = ("North", "East", "West", "South", "New", "Upper", "Lower")
TOWN_SUFFIXES = ("berg", "borough", "burgh", "burn", "bury", "chester", "ford", "gate", "haven", "ington", "land",
                 "leigh", "mouth", "port", "side", "stone", "ton", "town", "view", "ville", "wick")
COMPANY_SUFFIXES = ("Inc", "and Sons", "LLC", "Group", "PLC", "Ltd")
PETS = ("dog", "cat", "parrot", "rabbit", "tortoise", "hamster", "pony", "goldfish")
CHILDREN = ("daughter", "son")
FILLER = [
    "The weather that week was mild and dry.",
    "Most of the neighbours had known each other for years.",
    "Nobody in the street could remember a quieter spring.",
    "On Sundays the market square was full of stalls.",
    "The local newspaper printed a short piece about them.",
    "In the evenings the cafe on the corner stayed open late.",
    "Everyone agreed that the summer had been unusually warm.",
    "The old clock on the town hall was always a little slow.",
    "A new bakery had just opened near the station.",
    "Some of these details were only written down much later.",
    "The roads were busy on weekday mornings.",
    "People there like to talk about the weather.",
    "Rain had been falling since early morning.",
    "The whole story took some time to piece together.",
    "Visitors often said the place felt friendly and calm.",
    "The shops closed early on Wednesdays.",
    "It was the kind of place where news travelled fast.",
    "The hills behind the houses were green all year.",
    "Very few people there owned more than one bicycle.",
    "There was a long queue at the post office that morning.",
    "Children played football in the park after school.",
    "The autumn brought strong winds and cold nights.",
    "A few tourists came by every weekend.",
    "Nobody could say exactly when all this began.",
]


@dataclass(frozen=True)
class Relation:
    """One attribute of an entity: `statements` and `questions` are format strings over `{e}` (the entity), `{v}`
    (the value), `{a}` ("a"/"an" for the value) and `{x}` (one of `slot`, e.g. the kind of pet); the last phrasing
    of each list is reserved for validation/test. `source` names the value list (`word_lists`, or a built value:
    person, town, street, company, Noun) or is a digits range `(low, high)`."""

    name: str
    entity: str
    kind: str
    source: str | tuple[int, int]
    statements: tuple[str, ...]
    questions: tuple[str, ...]
    slot: tuple[str, ...] = ()


def _r(name, entity, kind, source, statements, questions, slot=()):
    return Relation(name, entity, kind, source, tuple(statements), tuple(questions), tuple(slot))


RELATIONS = (
    # people: words
    _r("occupation", "person", "word", "job",
       ["{e} works as {a} {v}.", "By trade, {e} is {a} {v}.", "{e} earns a living as {a} {v}.",
        "{e} has a job as {a} {v}."],
       ["What does {e} do for a living?", "What is {e}'s job?", "Which occupation does {e} have?",
        "What is the occupation of {e}?"]),
    _r("dream_job", "person", "word", "job",
       ["As a child, {e} dreamt of becoming {a} {v}.", "{e} always wanted to be {a} {v}.",
        "{e}'s dream job is to be {a} {v}.", "If {e} could start again, {e} would become {a} {v}."],
       ["What did {e} dream of becoming as a child?", "What did {e} always want to be?",
        "What is {e}'s dream job?", "What would {e} become if starting again?"]),
    _r("employer", "person", "word", "company",
       ["{e} is employed by {v}.", "{e} has worked for {v} for years.", "Every weekday {e} goes to work at {v}.",
        "{v} pays the wages of {e}."],
       ["Which company employs {e}?", "Which company does {e} work for?", "What firm is {e} employed by?",
        "What is the name of {e}'s employer?"]),
    _r("favourite_colour", "person", "word", "colour",
       ["{e}'s favourite colour is {v}.", "{e} likes {v} more than any other colour.",
        "Of all colours, {e} prefers {v}.", "The colour {e} loves best is {v}."],
       ["What is {e}'s favourite colour?", "Which colour does {e} like best?", "What colour does {e} prefer?",
        "Which colour is the favourite of {e}?"]),
    _r("mother_tongue", "person", "word", "language",
       ["{e}'s mother tongue is {v}.", "{e} speaks {v} as a first language.", "The language {e} learnt first is {v}.",
        "{v} is the mother tongue of {e}."],
       ["What is {e}'s mother tongue?", "Which language did {e} learn first?",
        "What is the first language of {e}?", "Which language is native to {e}?"]),
    _r("nickname", "person", "word", "Noun",
       ["Friends call {e} {v}.", "{e} goes by the nickname {v}.", "Everyone knows {e} by the nickname {v}.",
        "Since school, {e} has been nicknamed {v}."],
       ["What do friends call {e}?", "What is {e}'s nickname?", "By which nickname is {e} known?",
        "What nickname does {e} have?"]),
    _r("favourite_word", "person", "word", "noun",
       ["{e}'s favourite word is {v}.", "The word {e} likes best is {v}.",
        "{e} says that {v} is the most beautiful word in English.", "{e} once named {v} as a favourite word."],
       ["What is {e}'s favourite word?", "Which word does {e} like best?",
        "Which word does {e} find the most beautiful in English?", "What word did {e} name as a favourite?"]),
    # people: names
    _r("pet_name", "person", "name", "first",
       ["{e} has a {x} called {v}.", "{e}'s {x} is named {v}.", "{e} owns a {x} named {v}.",
        "{v} is the name of {e}'s {x}."],
       ["What is {e}'s {x} called?", "What is the name of {e}'s {x}?", "What did {e} name the {x}?",
        "What name does {e}'s {x} have?"], PETS),
    _r("spouse", "person", "name", "person",
       ["{e} is married to {v}.", "{e} married {v}.", "{e}'s spouse is {v}.", "{v} is the spouse of {e}."],
       ["Who is {e} married to?", "Who is {e}'s spouse?", "Whom did {e} marry?", "Who is the spouse of {e}?"]),
    _r("best_friend", "person", "name", "person",
       ["{e}'s best friend is {v}.", "{e} spends most weekends with {v}, a best friend since school.",
        "The closest friend of {e} is {v}.", "{v} has been {e}'s best friend for years."],
       ["Who is {e}'s best friend?", "Who is the closest friend of {e}?",
        "With which best friend does {e} spend weekends?", "Who is the best friend of {e}?"]),
    _r("child_name", "person", "name", "first",
       ["{e} has a {x} called {v}.", "{e}'s {x} is named {v}.", "{e} is the proud parent of a {x}, {v}.",
        "{v} is the name of {e}'s {x}."],
       ["What is {e}'s {x} called?", "What is the name of {e}'s {x}?", "What did {e} name the {x}?",
        "What name does {e}'s {x} have?"], CHILDREN),
    _r("mentor", "person", "name", "person",
       ["{e} learnt the trade from {v}.", "{e}'s mentor was {v}.", "{e} was trained by {v}.",
        "{v} once taught {e} everything about the work."],
       ["Who was {e}'s mentor?", "From whom did {e} learn the trade?", "Who trained {e}?",
        "Who taught {e} the trade?"]),
    _r("neighbour", "person", "name", "person",
       ["{e} lives next door to {v}.", "{e}'s neighbour is {v}.", "Next door to {e} lives {v}.",
        "{v} is the next-door neighbour of {e}."],
       ["Who lives next door to {e}?", "Who is {e}'s neighbour?", "Who is the neighbour of {e}?",
        "Who lives in the house next to {e}?"]),
    # people: places
    _r("hometown", "person", "place", "town",
       ["{e} grew up in {v}.", "{e} was raised in the town of {v}.", "{e} spent childhood in {v}.",
        "{e}'s childhood was spent in the town of {v}."],
       ["In which town did {e} grow up?", "In which town was {e} raised?", "What is {e}'s home town?",
        "Which town did {e} grow up in?"]),
    _r("street", "person", "place", "street",
       ["{e} lives on {v}.", "{e}'s house is on {v}.", "{e} has a flat on {v}.", "{e} moved to a house on {v}."],
       ["On which street does {e} live?", "What street is {e}'s house on?", "Which street does {e} live on?",
        "What is the name of the street where {e} lives?"]),
    _r("birth_country", "person", "place", "country",
       ["{e} was born in {v}.", "{e} comes from {v}.", "{e}'s native country is {v}.",
        "{v} is the country where {e} was born."],
       ["In which country was {e} born?", "Which country does {e} come from?", "What is {e}'s country of birth?",
        "Which country is {e} from?"]),
    _r("holiday_city", "person", "place", "city",
       ["{e} spends every summer holiday in {v}.", "Each summer {e} travels to {v}.",
        "{e}'s favourite holiday city is {v}.", "{e} goes on holiday to {v} every year."],
       ["In which city does {e} spend summer holidays?", "Which city does {e} travel to each summer?",
        "What is {e}'s favourite holiday city?", "Which city does {e} visit on holiday every year?"]),
    _r("farm_region", "person", "place", "region",
       ["{e} owns a small farm in {v}.", "{e}'s farm lies in {v}.", "{e} keeps a farm in {v}.",
        "{v} is where {e}'s farm is."],
       ["Where is {e}'s farm?", "In which region does {e} own a farm?", "Where does {e} keep a farm?",
        "In what region is {e}'s farm?"]),
    _r("dream_country", "person", "place", "country",
       ["{e} has always wanted to visit {v}.", "The country {e} most wants to see is {v}.",
        "{e} is saving money for a trip to {v}.", "One day {e} hopes to travel to {v}."],
       ["Which country has {e} always wanted to visit?", "What country does {e} most want to see?",
        "For a trip to which country is {e} saving money?", "Which country does {e} hope to travel to one day?"]),
    _r("cottage_region", "person", "place", "region",
       ["Every spring {e} rents a cottage in {v}.", "{e} spends each spring in a cottage in {v}.",
        "{e}'s spring cottage is in {v}.", "{e} keeps going back to a cottage in {v} in the spring."],
       ["In which region does {e} rent a cottage every spring?", "Where does {e} spend each spring?",
        "Where is {e}'s spring cottage?", "In what region is the cottage {e} goes back to in spring?"]),
    # people: digits
    _r("birth_year", "person", "digits", (1931, 2009),
       ["{e} was born in {v}.", "{e} came into the world in {v}.", "The year {e} was born was {v}.",
        "{e}'s birth year is {v}."],
       ["In which year was {e} born?", "When was {e} born?", "What year was {e} born in?",
        "What is the birth year of {e}?"]),
    _r("locker_code", "person", "digits", (1000, 9999),
       ["{e}'s locker opens with the code {v}.", "The code of {e}'s locker is {v}.",
        "{e} opens the locker with the code {v}.", "{e} keeps the locker shut with the code {v}."],
       ["What is the code of {e}'s locker?", "Which code opens {e}'s locker?",
        "What code does {e} use for the locker?", "What is {e}'s locker code?"]),
    _r("house_number", "person", "digits", (2, 998),
       ["{e}'s house is number {v}.", "{e} lives at number {v}.", "The number on {e}'s front door is {v}.",
        "{e}'s front door carries the number {v}."],
       ["What is the number of {e}'s house?", "At which number does {e} live?",
        "What number is on {e}'s front door?", "What house number does {e} have?"]),
    _r("grandchildren", "person", "digits", (2, 19),
       ["{e} has {v} grandchildren.", "{e} is a grandparent {v} times over.", "{e}'s grandchildren number {v}.",
        "There are {v} grandchildren in {e}'s family."],
       ["How many grandchildren does {e} have?", "How many times over is {e} a grandparent?",
        "What is the number of {e}'s grandchildren?", "How many grandchildren are in {e}'s family?"]),
    _r("bus_number", "person", "digits", (20, 399),
       ["{e} takes bus number {v} to work.", "Every morning {e} rides the number {v} bus.",
        "{e} goes to work on bus {v}.", "The bus {e} takes to work is number {v}."],
       ["Which bus does {e} take to work?", "What is the number of {e}'s bus?", "Which bus number does {e} ride?",
        "What bus does {e} ride to work?"]),
    # companies
    _r("product", "company", "word", "Noun",
       ["The best-selling product of {e} is the {v}.", "{e} makes its money from the {v}.",
        "{e} is famous for a product named the {v}.", "Most of {e}'s income comes from the {v}."],
       ["What is the best-selling product of {e}?", "Which product is {e} famous for?",
        "What product does {e} make its money from?", "What product earns {e} the most?"]),
    _r("logo_colour", "company", "word", "colour",
       ["The logo of {e} is {v}.", "{e} paints its logo {v}.", "{e}'s logo comes in {v}.",
        "The colour of {e}'s logo is {v}."],
       ["What colour is the logo of {e}?", "Which colour is {e}'s logo?", "In what colour is {e}'s logo painted?",
        "What is the colour of {e}'s logo?"]),
    _r("ceo", "company", "name", "person",
       ["{e} is run by {v}.", "The chief executive of {e} is {v}.", "{v} leads {e}.",
        "{v} has been in charge of {e} since it was small."],
       ["Who runs {e}?", "Who is the chief executive of {e}?", "Who leads {e}?", "Who is in charge of {e}?"]),
    _r("headquarters", "company", "place", "town",
       ["{e} has its head office in {v}.", "{e} is based in the town of {v}.",
        "The headquarters of {e} are in {v}.", "{v} is home to the head office of {e}."],
       ["Where is the head office of {e}?", "In which town is {e} based?",
        "Where are the headquarters of {e}?", "Which town holds {e}'s headquarters?"]),
    _r("founded_year", "company", "digits", (1850, 2015),
       ["{e} was founded in {v}.", "{e} opened its doors in {v}.", "{e} dates from {v}.",
        "The founding year of {e} is {v}."],
       ["In which year was {e} founded?", "When did {e} open its doors?", "What year does {e} date from?",
        "What is the founding year of {e}?"]),
    _r("staff_count", "company", "digits", (12, 950),
       ["{e} employs {v} people.", "{e} has a staff of {v}.", "There are {v} people on the payroll of {e}.",
        "A total of {v} people work for {e}."],
       ["How many people does {e} employ?", "How large is the staff of {e}?",
        "How many people are on the payroll of {e}?", "How many people work for {e}?"]),
    # ships
    _r("captain", "ship", "name", "person",
       ["The captain of {e} is {v}.", "{e} sails under the command of {v}.", "{v} commands {e}.",
        "{v} is in command of {e}."],
       ["Who is the captain of {e}?", "Under whose command does {e} sail?", "Who commands {e}?",
        "Who is in command of {e}?"]),
    _r("home_port", "ship", "place", "town",
       ["{e} has its home port in {v}.", "{e} is registered in the port town of {v}.",
        "The home port of {e} is {v}.", "{e} returns to {v} after every voyage."],
       ["What is the home port of {e}?", "In which port town is {e} registered?", "Where is {e}'s home port?",
        "To which town does {e} return after every voyage?"]),
    _r("cargo", "ship", "word", "noun",
       ["{e} usually carries a cargo of {v}.", "The hold of {e} is mostly full of {v}.",
        "{e} makes its living carrying {v}.", "On most voyages {e} carries {v}."],
       ["What cargo does {e} usually carry?", "What is the hold of {e} full of?",
        "What does {e} make its living carrying?", "What does {e} carry on most voyages?"]),
    _r("hull_colour", "ship", "word", "colour",
       ["The hull of {e} is painted {v}.", "{e} is painted {v} from bow to stern.", "{e}'s hull is {v}.",
        "Everyone knows {e} by its {v} hull."],
       ["What colour is the hull of {e}?", "In which colour is {e} painted from bow to stern?",
        "What colour is {e}'s hull?", "Which colour is {e}'s hull painted?"]),
    _r("ship_owner", "ship", "word", "company",
       ["{e} belongs to {v}.", "{e} is owned by {v}.", "The owner of {e} is {v}.", "{v} bought {e} some years ago."],
       ["Which company does {e} belong to?", "Which company owns {e}?", "Who is the owner of {e}?",
        "Which company bought {e}?"]),
    _r("destination", "ship", "place", "city",
       ["{e} sails regularly to {v}.", "The usual destination of {e} is {v}.", "{e} makes regular trips to {v}.",
        "Most voyages of {e} end in {v}."],
       ["To which city does {e} sail regularly?", "What is the usual destination of {e}?",
        "Where does {e} make regular trips to?", "In which city do most voyages of {e} end?"]),
    _r("launch_year", "ship", "digits", (1890, 2020),
       ["{e} was launched in {v}.", "{e} first took to the water in {v}.", "The launch of {e} took place in {v}.",
        "{e} has been afloat since {v}."],
       ["In which year was {e} launched?", "When did {e} first take to the water?",
        "In what year did the launch of {e} take place?", "Since which year has {e} been afloat?"]),
    _r("crew_count", "ship", "digits", (3, 140),
       ["{e} sails with a crew of {v}.", "A crew of {v} works on {e}.", "{e} needs {v} sailors to sail.",
        "There are {v} sailors in the crew of {e}."],
       ["How large is the crew of {e}?", "How many sailors work on {e}?", "How many sailors does {e} need?",
        "How many sailors are in the crew of {e}?"]),
)
RELATION = {r.name: r for r in RELATIONS}
ENTITIES = ("person", "company", "ship")
ENTITY_WEIGHTS = (0.7, 0.15, 0.15)
UNSEEN_ENTITY_WEIGHTS = (0.45, 0.2, 0.35)  # more ships: the held-out digits relations are the ships'
NEEDLE_STATEMENTS = ["The secret word is {v}.", "The password for today is {v}.",
                     "Remember the word {v}: it is the password.", "The hidden password, written on a card, is {v}."]
NEEDLE_QUESTIONS = ["What is the secret word?", "Which word was given as the password?", "What word is the password?",
                    "What was the hidden word in the text?"]


def _held_out_relations() -> frozenset[str]:
    """A quarter (rounded, at least one) of the relations of each kind: those with the lowest crc32 of their name."""
    held = set()
    for kind in KINDS:
        names = sorted((r.name for r in RELATIONS if r.kind == kind), key=lambda n: (zlib.crc32(n.encode()), n))
        held.update(names[:max(1, round(len(names) / 4))])
    return frozenset(held)


HELD_OUT_RELATIONS = _held_out_relations()
_WORD = re.compile(r"[a-z]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def held_out_word(word: str) -> bool:
    """Whether a (non-neutral) word is held out: `crc32(word.capitalize()) % 4 == 0` (for names the rule of
    `synthetic_articles.english_names`)."""
    return zlib.crc32(word.lower().capitalize().encode()) % 4 == 0


@lru_cache(maxsize=1)
def neutral_words() -> frozenset[str]:
    """The words of every template, filler sentence and format part: they occur in every split and decide nothing."""
    fields = re.compile(r"\{[a-z]\}")
    texts = [t for r in RELATIONS for t in r.statements + r.questions + r.slot] + FILLER + NEEDLE_STATEMENTS \
        + NEEDLE_QUESTIONS + list(STREET_SUFFIXES + TOWN_PREFIXES + COMPANY_SUFFIXES) + ["the", "a", "an"]
    words = frozenset(w for text in texts for w in _words(fields.sub(" ", text)))
    demo = {w.lower() for w in DEMO_WORDS} & words
    if demo:  # pragma: no cover - a template edit that would bring the demo into training
        raise AssertionError(f"templates use the demo's words {sorted(demo)}")
    return words


def _content(value: str) -> list[str]:
    return [w for w in _words(value) if w not in neutral_words()]


def _side(value: str) -> str | None:
    """"train" when every content word of the value is a training word, "held_out" when one is held out, None when
    the value has no content word or holds a demo word (then it is in no list)."""
    content = _content(value)
    if not content or set(content) & {w.lower() for w in DEMO_WORDS}:
        return None
    return "held_out" if any(held_out_word(w) for w in content) else "train"


def _camel_words(name: str) -> str:
    return " ".join(re.findall(r"[A-Z][a-z]*", name.replace("GoldenRod", "Goldenrod"))).lower()


def _job(job: str) -> str | None:
    """Faker's "Engineer, agricultural" as "agricultural engineer"; None for jobs with slashes, brackets or more
    than four words. Lower case except acronyms and proper words (capitalised after the first word)."""
    if re.search(r"[^A-Za-z ,'-]", job):
        return None
    head, _, tail = job.partition(", ")
    words = (tail.split() if tail else []) + head.split()
    if "," in tail or len(words) > 4:
        return None
    first = head.split()[0]
    proper = lambda w: w.isupper() and len(w) > 1 or (w[0].isupper() and w != first and not job.istitle())  # noqa
    return " ".join(w if proper(w) else w.lower() for w in words)


def _faker(module: str):
    try:
        from importlib import import_module

        return import_module(f"faker.providers.{module}").Provider
    except ImportError as exc:
        raise ImportError("Synthetic word documents read Faker's word lists: `pip install faker` (or the `train` "
                          "extra: `pip install 'peft-generative[train]'`).") from exc


@lru_cache(maxsize=1)
def word_lists() -> dict[str, dict[str, tuple[str, ...]]]:
    """The answer lists read from Faker's providers, `{list: {"train": values, "held_out": values}}`, sorted:
    first, last (names of four English locales), job, colour, noun (the everyday nouns of the en_US lorem provider),
    language, country, city (Faker's world cities), region (English, Irish counties; US, Australian states; Canadian
    provinces). Values are split by their words (`held_out_word`); values without a content word are dropped."""
    people = [_faker(f"person.{locale}") for locale in ENGLISH_LOCALES]
    name_like = re.compile(r"[A-Z][a-z]+(?:[A-Z][a-z]+)?")
    place_like = re.compile(r"[A-Z][A-Za-z]+(?:[ -][A-Za-z]+)*")
    raw = {
        "first": {n for p in people for n in p.first_names if name_like.fullmatch(n) and len(n) >= 3},
        "last": {n for p in people for n in p.last_names if name_like.fullmatch(n) and len(n) >= 3},
        "job": {j for j in map(_job, _faker("job.en_US").jobs) if j},
        "colour": {_camel_words(c) for c in _faker("color.en_US").all_colors},
        "noun": {w for w in _faker("lorem.en_US").parts_of_speech["noun"] if w.isalpha() and len(w) >= 3},
        "language": {n for n in people[0].language_names if place_like.fullmatch(n)},
        "country": {c for c in _faker("address.en_US").countries if place_like.fullmatch(c)},
        "city": {c[2] for c in _faker("geo.en_US").land_coords if place_like.fullmatch(c[2])}
        | {c for c in _faker("address.en_IN").cities if place_like.fullmatch(c)},
        "region": {r for module, attribute in (("address.en_GB", "counties"), ("address.en_IE", "counties"),
                                               ("address.en_US", "states"), ("address.en_AU", "states"),
                                               ("address.en_CA", "provinces"))
                   for r in getattr(_faker(module), attribute) if place_like.fullmatch(r)},
    }
    lists = {}
    for name, values in raw.items():
        sides = {"train": [], "held_out": []}
        for value in sorted(values):
            side = _side(value)
            if side and not (name in ("first", "last") and len(_content(value)) != 1):
                sides[side].append(value)
        lists[name] = {side: tuple(vals) for side, vals in sides.items()}
    return lists


def _article(value: str) -> str:
    lower = value.lower()
    return "an" if lower[0] in "aeiou" and not lower.startswith(("uni", "use", "eu", "one")) else "a"


class _Values:
    """Draws the values of one document from one side of the lists; every content word and every number is used
    once, so each value occurs once in the document and no two entities share a value."""

    def __init__(self, rng: random.Random, side: str):
        self.rng, self.side, self.lists = rng, side, {k: v[side] for k, v in word_lists().items()}
        self.used_words: set[str] = set()
        self.used_numbers: set[str] = set()

    def _fresh(self, make) -> str:
        while True:
            value = make()
            content = _content(value)
            if _side(value) == self.side and not set(content) & self.used_words and len(set(content)) == len(content):
                self.used_words.update(content)
                return value

    def _choice(self, name: str) -> str:
        return self.rng.choice(self.lists[name])

    def town(self) -> str:
        def make():  # Faker's town formats (en_US, en_GB): "{prefix} {first}{suffix}", "{prefix} {first}",
            rng, stem = self.rng, self._choice(self.rng.choice(["first", "last", "last"]))  # "{stem}{suffix}"
            form = rng.random()
            if form < 0.15:
                return f"{rng.choice(TOWN_PREFIXES)} {stem}"
            glued = stem + rng.choice(TOWN_SUFFIXES)
            return f"{rng.choice(TOWN_PREFIXES)} {glued}" if form < 0.3 else glued
        return self._fresh(make)

    def value(self, source: str | tuple[int, int]) -> str:
        rng = self.rng
        if isinstance(source, tuple):
            while True:
                number = str(rng.randint(*source))
                if number not in self.used_numbers:
                    self.used_numbers.add(number)
                    return number
        if source == "person":
            return self._fresh(lambda: f"{self._choice('first')} {self._choice('last')}")
        if source == "town":
            return self.town()
        if source == "street":
            return self._fresh(lambda: f"{self._choice(rng.choice(['first', 'last']))} {rng.choice(STREET_SUFFIXES)}")
        if source == "company":
            return self._fresh(lambda: f"{self._choice('last')} {rng.choice(COMPANY_SUFFIXES)}" if rng.random() < 0.7
                               else f"{self._choice('last')}-{self._choice('last')}")
        if source == "Noun":
            return self._fresh(lambda: self._choice("noun").capitalize())
        return self._fresh(lambda: self._choice(source))

    def entity(self, kind: str) -> str:
        if kind == "person":
            return self.value("person")
        if kind == "company":
            return self.value("company")
        return "the " + self.value("Noun")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")


def _pick(rng: random.Random, options, split: str) -> str:
    """One phrasing: training never uses the last one; validation/test always do."""
    return options[-1] if split != "train" else rng.choice(options[:-1])


# a statement that gives its value last, "<what it is> is <value>.": "{e}'s spouse is {v}.", "The captain of {e} is
# {v}."
_VALUE_LAST = re.compile(r"^(?P<subject>\{e\}'s [^{]*|The [^{]*\{e\}[^{]*) (?P<verb>is|was|are|were) \{v\}\.$")


def value_first_phrasing(template: str) -> str | None:
    """The same statement with its value first: "{e}'s spouse is {v}." -> "{v} is {e}'s spouse.", "The captain of
    {e} is {v}." -> "{v} is the captain of {e}."; None for a phrasing without that form. A causal language model's
    hidden state at the value then knows nothing yet of what the value is (issue 32: the reserved phrasing of every
    name relation gives the value first, and training had hardly any such statement)."""
    match = _VALUE_LAST.match(template)
    if match is None:
        return None
    subject = match["subject"]
    if subject.startswith("The "):
        subject = "the " + subject[len("The "):]
    return f"{{v}} {match['verb']} {subject}."


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def _occurrences(answer: str, text: str) -> int:
    return len(re.findall(rf"(?<![\w-]){re.escape(answer)}(?![\w-])", text, flags=re.IGNORECASE))


def _approx_tokens(text: str) -> int:
    """About the token count of the SmolLM2 tokenizer (words, long words in pieces, punctuation; within 7% on
    average, which the 80-260 token bounds allow for: documents are kept to 105-215 of these)."""
    return sum(1 + len(w) // 6 for w in re.findall(r"[A-Za-z]+|\d+", text)) + len(re.findall(r"[^\w\s]", text))


def word_document(split: str, index: int, seed: int = 0, *, unseen: bool = False,
                  entity_count: tuple[int, int] | None = None, value_first: float = 0.0) -> dict:
    """Document `index` of `split`: `{"id", "context", "questions": [{"question", "answers", "type", "kind"}]}`.
    2-5 entities with 2-4 attributes each, 3-6 questions spread over the entities. Training documents use training
    values and relations only; validation/test documents use held-out values and all relations, in the reserved
    phrasings. `unseen` (validation/test only): the questions ask only about the held-out relations (a document of
    `{split}_unseen.eval.jsonl`, with its own id). `entity_count` (min, max): that many entities instead (1-1: one
    entity's attributes, so a question needs its relation but no entity binding; an easier step of a curriculum),
    with ids ending in `-e{min}to{max}`. `value_first` (training only): the share of statements, among those whose
    value starts with a capital or a digit and whose relation has a phrasing of the form "<what it is> is <value>",
    given value first instead ("Anaru Knox is Indie's spouse."; see `value_first_phrasing`), drawn from a generator of
    its own, so 0 (default) gives the same documents as before; ids end in `-vf{share}`."""
    _check_split(split)
    if isinstance(value_first, bool) or not (isinstance(value_first, (int, float)) and 0.0 <= value_first <= 1.0):
        raise ValueError(f"value_first must be a share in [0, 1], got {value_first!r}.")
    if value_first and split != "train":
        raise ValueError("value_first is for training documents: validation and test use the reserved phrasings.")
    if entity_count is not None and not (isinstance(entity_count, tuple) and len(entity_count) == 2
                                         and 1 <= entity_count[0] <= entity_count[1] <= 6):
        raise ValueError(f"entity_count must be a (min, max) pair with 1 <= min <= max <= 6, got {entity_count!r}.")
    if unseen and split == "train":
        raise ValueError("unseen documents ask held-out relations: only for validation or test.")
    tag = "words-unseen" if unseen else "words"
    rng = random.Random(f"{seed}-{split}-{tag}-{index}")
    values = _Values(rng, "train" if split == "train" else "held_out")
    usable = [r for r in RELATIONS if split != "train" or r.name not in HELD_OUT_RELATIONS]
    entities = []  # [kind, full name, [relation names]]
    for _ in range(rng.choice([2, 3, 3, 4, 4, 5]) if entity_count is None else rng.randint(*entity_count)):
        kind = rng.choices(ENTITIES, UNSEEN_ENTITY_WEIGHTS if unseen else ENTITY_WEIGHTS)[0]
        if unseen and not entities:
            kind = "person"  # the first entity can carry held-out relations of every kind but digits
        entities.append([kind, values.entity(kind), []])
    for kind, _, chosen in entities:
        own = [r for r in usable if r.entity == kind]
        if unseen:
            held = [r for r in own if r.name in HELD_OUT_RELATIONS and r.name not in chosen]
            chosen.extend(r.name for r in rng.sample(held, min(len(held), rng.randint(1, 2))))
        target = min(rng.randint(2, 4), len(own))
        used_elsewhere = {n for e in entities for n in e[2]} - set(chosen)
        while len(chosen) < target:
            shared = [r for r in own if r.name in used_elsewhere and r.name not in chosen]
            if shared and rng.random() < 0.5:  # the same relation for several entities: the name picks the answer
                relation = rng.choice(shared)
            else:
                want_digits = rng.random() < 0.3
                pool = [r for r in own if (r.kind == "digits") == want_digits and r.name not in chosen]
                relation = rng.choice(pool or [r for r in own if r.name not in chosen])
            chosen.append(relation.name)
    while unseen and sum(n in HELD_OUT_RELATIONS for e in entities for n in e[2]) < 3:  # 3 questions at least
        chosen = entities[0][2]  # a person: five held-out relations
        new = rng.choice([n for n in sorted(HELD_OUT_RELATIONS) if RELATION[n].entity == "person" and n not in chosen])
        seen = [n for n in chosen if n not in HELD_OUT_RELATIONS]
        if len(chosen) >= 4 and seen:
            chosen.remove(seen[-1])
        chosen.append(new)
    # attribute values, slots and statements
    facts = []  # (entity index, relation, value, slot)
    for i, (kind, name, chosen) in enumerate(entities):
        for rel_name in chosen:
            relation = RELATION[rel_name]
            facts.append((i, relation, values.value(relation.source), rng.choice(relation.slot) if relation.slot
                          else ""))
    render_seed = rng.random()
    while True:  # 80-260 tokens: trim long documents (never below 2 entities x 2 attributes), pad short ones
        flips = random.Random(f"{seed}-{split}-{tag}-{index}-value-first") if value_first else None
        context, questions = _render(random.Random(render_seed), split, entities, facts, unseen, (value_first, flips))
        tokens = _approx_tokens(context)
        if tokens <= 215:
            break
        counts = Counter(i for i, *_ in facts)
        askable = [f for f in facts if counts[f[0]] > 2 and (not unseen or f[1].name not in HELD_OUT_RELATIONS)]
        if not askable:
            break
        facts.remove(askable[-1])
    for q in questions:
        answer = q["answers"][0]
        if answer not in context or _occurrences(answer, context) != 1 or _occurrences(answer, q["question"]):
            raise AssertionError(f"{split} word document {index}: the answer {answer!r} of {q['type']} is not "
                                 f"exactly once in the context (or is in the question)")
    suffix = "" if entity_count is None else f"-e{entity_count[0]}to{entity_count[1]}"
    suffix += f"-vf{value_first:g}" if value_first else ""
    return {"id": f"{split}-{tag}-{index}{suffix}", "context": context, "questions": questions}


def _render(rng: random.Random, split: str, entities: list, facts: list, unseen: bool,
            value_first: tuple[float, random.Random | None] = (0.0, None)) -> tuple[str, list[dict]]:
    """The paragraphs (one per entity, filler between) and the questions of a document; `value_first` (share, its
    own generator): statements turned value first (see `word_document`)."""
    share, flips = value_first
    paragraphs, asked_by_entity = [], []
    for i, (kind, name, _) in enumerate(entities):
        own = [f for f in facts if f[0] == i]
        rng.shuffle(own)
        sentences = []
        for j, (_, relation, value, slot) in enumerate(own):
            ref = name.split()[0] if kind == "person" and j and rng.random() < 0.5 else name
            template = _pick(rng, relation.statements, split)
            if share and (value[:1].isupper() or value[:1].isdigit()):
                turned = [t for t in map(value_first_phrasing, relation.statements[:-1]) if t]
                if turned and flips.random() < share:
                    template = flips.choice(turned)
            sentences.append(_sentence(template.format(e=ref, v=value, a=_article(value), x=slot)))
        paragraphs.append(sentences)
        asked_by_entity.append([f for f in own if not unseen or f[1].name in HELD_OUT_RELATIONS])
    filler = rng.sample(FILLER, rng.choice([0, 1, 1, 2]))
    for sentence in filler:
        target = rng.randrange(len(paragraphs))
        paragraphs[target].insert(rng.choice([0, len(paragraphs[target])]), sentence)
    while _approx_tokens(" ".join(s for p in paragraphs for s in p)) < 105:
        paragraphs[rng.randrange(len(paragraphs))].append(rng.choice([f for f in FILLER if f not in filler]))
    # 3-6 questions, round robin over the entities in a shuffled order
    pools = [list(p) for p in asked_by_entity if p]
    for pool in pools:
        rng.shuffle(pool)
    rng.shuffle(pools)
    n_questions = min(rng.randint(3, 6), sum(len(p) for p in pools))
    asked = []
    while len(asked) < n_questions:
        for pool in pools:
            if pool and len(asked) < n_questions:
                asked.append(pool.pop())
    questions = []
    for i, relation, value, slot in asked:
        question = _pick(rng, relation.questions, split).format(e=entities[i][1], x=slot)
        questions.append({"question": _sentence(question), "answers": [value], "type": relation.name,
                          "kind": relation.kind})
    return "\n".join(" ".join(p) for p in paragraphs), questions


NEEDLE_SUBJECTS = ("word", "name", "place")
NEEDLE_ROLES = ("captain", "guest", "author", "teacher", "doctor", "driver", "pilot", "winner", "tenant", "caretaker",
                "speaker", "coach", "judge", "chef", "landlord", "nurse", "mayor", "witness", "sender", "buyer")
NAME_NEEDLE_STATEMENTS = ["The {r}'s name is {v}.", "The {r} is called {v}.", "Everyone knows the {r} as {v}.",
                          "The {r}, as the card says, is {v}."]
NAME_NEEDLE_QUESTIONS = ["What is the {r}'s name?", "Who is the {r}?", "What is the name of the {r}?",
                         "What was the {r} called?"]
PLACE_NEEDLE_STATEMENTS = ["The meeting will take place in {v}.", "The parcel was sent to {v}.",
                           "The family moved to {v}.", "The letter, as the stamp shows, came from {v}."]
PLACE_NEEDLE_QUESTIONS = ["Where will the meeting take place?", "Where was the parcel sent?",
                          "Where did the family move?", "Which place did the letter come from?"]
NEEDLE_TEMPLATES = {"word": (NEEDLE_STATEMENTS, NEEDLE_QUESTIONS),  # {v}: the value; {r}: the role of a name
                    "name": (NAME_NEEDLE_STATEMENTS, NAME_NEEDLE_QUESTIONS),
                    "place": (PLACE_NEEDLE_STATEMENTS, PLACE_NEEDLE_QUESTIONS)}


def _needle_value(rng: random.Random, values: _Values, subject: str) -> str:
    """The value a needle of `subject` asks to copy: a person's name, a city / region / town, or a word (a noun, or
    a colour and a noun)."""
    if subject == "name":
        return values.value("person")
    if subject == "place":
        return values.value(rng.choice(["city", "region", "town"]))
    if rng.random() < 0.7:
        return values.value("noun")
    colours = [c for c in values.lists["colour"] if " " not in c]
    return values._fresh(lambda: f"{rng.choice(colours)} {rng.choice(values.lists['noun'])}")


def word_needle_document(split: str, index: int, seed: int = 0, *, filler: tuple[int, int] = (4, 6),
                         subject: str = "word") -> dict:
    """One value to copy among `filler` (min, max) filler sentences, and one question for it; validation/test use
    held-out values and the reserved phrasings (the last of each list). `subject` says what the value is:
    "word" (default; a noun, or a colour and a noun; type "needle_word", kind "word"), "name" (a person's first and
    last name given for a role, "The pilot's name is Maura Kilbride."; type "needle_name", kind "name") or "place"
    (a city, region or town; type "needle_place", kind "place"). The value of a given `(split, index, seed,
    subject)` does not depend on `filler`: `filler=(0, 0)` gives the same needles alone (the easiest copy there is),
    with ids ending in `-bare`."""
    _check_split(split)
    if not (isinstance(filler, tuple) and len(filler) == 2 and 0 <= filler[0] <= filler[1] <= len(FILLER)):
        raise ValueError(f"filler must be a (min, max) pair with 0 <= min <= max <= {len(FILLER)}, got {filler!r}.")
    if subject not in NEEDLE_SUBJECTS:
        raise ValueError(f"subject must be one of {NEEDLE_SUBJECTS}, got {subject!r}.")
    rng = random.Random(f"{seed}-{split}-{subject}-needle-{index}")
    values = _Values(rng, "train" if split == "train" else "held_out")
    role = rng.choice(NEEDLE_ROLES) if subject == "name" else ""
    value = _needle_value(rng, values, subject)
    statements, questions = NEEDLE_TEMPLATES[subject]
    sentences = rng.sample(FILLER, rng.randint(*filler))
    position = rng.randint(0, len(sentences))
    if subject == "place":  # a place question asks about its own statement
        pick = rng.randrange(len(statements) - 1) if split == "train" else len(statements) - 1
        statement, question = statements[pick], questions[pick]
    else:
        statement, question = _pick(rng, statements, split), _pick(rng, questions, split)
    sentences.insert(position, statement.format(v=value, r=role))
    suffix = "" if filler == (4, 6) else "-bare" if filler == (0, 0) else f"-filler{filler[0]}to{filler[1]}"
    return {"id": f"{split}-{subject}-needle-{index}{suffix}", "context": " ".join(sentences),
            "questions": [{"question": question.format(r=role), "answers": [value], "type": f"needle_{subject}",
                           "kind": subject}]}


def multi_needle_document(split: str, index: int, seed: int = 0, *, needles: tuple[int, int] = (2, 4),
                          filler: tuple[int, int] = (4, 6), subjects: tuple[str, ...] = NEEDLE_SUBJECTS) -> dict:
    """Several needles (`needles` (min, max)) among `filler` (min, max) filler sentences, every one asked: the lookup
    of multi-query associative recall, between one needle (the copy alone) and a word document (many relations).
    What a question asks tells its needle apart: a name by its role (no two names share one), a place by its
    statement (no two share one), and there is at most one word needle. Training uses the single needles' training
    phrasings; validation/test use held-out values and the reserved phrasings, so a held-out document has all its
    names in the reserved phrasing (their roles tell them apart), at most one place and at most one word. Type
    `needle_<subject>`, kind `<subject>`, as for `word_needle_document`."""
    _check_split(split)
    subjects = tuple(subjects)
    if not subjects or set(subjects) - set(NEEDLE_SUBJECTS):
        raise ValueError(f"subjects must be a non-empty selection of {NEEDLE_SUBJECTS}, got {subjects!r}.")
    place_phrasings = len(PLACE_NEEDLE_STATEMENTS) - 1 if split == "train" else 1
    room = {"word": 1, "place": place_phrasings, "name": len(NEEDLE_ROLES)}
    if not (isinstance(needles, tuple) and len(needles) == 2 and 1 <= needles[0] <= needles[1]
            <= sum(room[s] for s in subjects)):
        raise ValueError(f"needles must be a (min, max) pair with 1 <= min <= max <= {sum(room[s] for s in subjects)} "
                         f"(what subjects={subjects!r} can tell apart in a {split} document), got {needles!r}.")
    if not (isinstance(filler, tuple) and len(filler) == 2 and 0 <= filler[0] <= filler[1] <= len(FILLER)):
        raise ValueError(f"filler must be a (min, max) pair with 0 <= min <= max <= {len(FILLER)}, got {filler!r}.")
    rng = random.Random(f"{seed}-{split}-multi-needle-{index}")
    values = _Values(rng, "train" if split == "train" else "held_out")
    roles = rng.sample(NEEDLE_ROLES, len(NEEDLE_ROLES))
    places = rng.sample(range(len(PLACE_NEEDLE_STATEMENTS) - 1), place_phrasings) if split == "train" else [-1]
    left = dict(room)
    statements, questions = [], []
    for _ in range(rng.randint(*needles)):
        subject = rng.choice([s for s in subjects if left[s]])
        left[subject] -= 1
        value = _needle_value(rng, values, subject)
        role = roles.pop() if subject == "name" else ""
        templates, asks = NEEDLE_TEMPLATES[subject]
        if subject == "place":
            pick = places.pop()
            statement, question = templates[pick], asks[pick]
        else:
            statement, question = _pick(rng, templates, split), _pick(rng, asks, split)
        statements.append(statement.format(v=value, r=role))
        questions.append({"question": question.format(r=role), "answers": [value], "type": f"needle_{subject}",
                          "kind": subject})
    sentences = rng.sample(FILLER, rng.randint(*filler))
    for statement in statements:
        sentences.insert(rng.randint(0, len(sentences)), statement)
    return {"id": f"{split}-multi-needle-{index}-n{needles[0]}to{needles[1]}-filler{filler[0]}to{filler[1]}",
            "context": " ".join(sentences), "questions": questions}


def _counts(documents: list[dict]) -> dict:
    questions = [q for d in documents for q in d["questions"]]
    return {"documents": len(documents), "questions": len(questions),
            "types": dict(sorted(Counter(q["type"] for q in questions).items())),
            "kinds": dict(sorted(Counter(q["kind"] for q in questions).items()))}


def build_synthetic_words_dataset(out_dir: str | os.PathLike, *, seed: int = 0, train_documents: int = 4000,
                                  heldout_documents: int = 200, needle_fraction: float = 0.15,
                                  needle_filler: tuple[int, int] = (4, 6), needle_subjects: tuple[str, ...] = ("word",),
                                  needles_per_doc: tuple[int, int] = (1, 1), value_first: float = 0.0,
                                  quiet: bool = False) -> dict[str, Path]:
    """Write the dataset into `out_dir`; returns `{file key: path}`. `needle_fraction` of the training documents
    (drawn per document) are needles with `needle_filler` (min, max) filler sentences, each asking to copy one of
    `needle_subjects` (drawn per needle; see `word_needle_document`), `needles_per_doc` (min, max) of them in one
    document when it is not (1, 1) (see `multi_needle_document`); `value_first`: the share of the training word
    documents' statements given value first (see `word_document`); validation and test get `heldout_documents`
    word documents, as many word needles (4-6 filler sentences), the same needles alone (`.needle_bare`: the easiest
    copy there is), as many name and place needles (`.name_needle`, `.place_needle`), as many documents of 2-4 name,
    place and word needles each asked (`.multi_needle`: the lookup) and as many documents asking only held-out
    relations (`_unseen`).
    (`quiet` is accepted like the other builders'; this one downloads nothing and logs nothing.)"""
    if isinstance(train_documents, bool) or not isinstance(train_documents, int) or train_documents < 1 \
            or isinstance(heldout_documents, bool) or not isinstance(heldout_documents, int) or heldout_documents < 1:
        raise ValueError(f"train_documents and heldout_documents must be positive integers, got {train_documents!r} "
                         f"and {heldout_documents!r}.")
    if not 0 <= needle_fraction < 1:
        raise ValueError(f"needle_fraction must be in [0, 1), got {needle_fraction!r}.")
    needle_subjects = tuple(needle_subjects)
    if not needle_subjects or set(needle_subjects) - set(NEEDLE_SUBJECTS):
        raise ValueError(f"needle_subjects must be a non-empty selection of {NEEDLE_SUBJECTS}, "
                         f"got {needle_subjects!r}.")
    if isinstance(value_first, bool) or not (isinstance(value_first, (int, float)) and 0 <= value_first <= 1):
        raise ValueError(f"value_first must be a share in [0, 1], got {value_first!r}.")
    needles_per_doc = tuple(needles_per_doc)
    if needles_per_doc != (1, 1):  # a combination the subjects cannot tell apart fails here, before anything is written
        multi_needle_document("train", 0, seed, needles=needles_per_doc, filler=tuple(needle_filler),
                              subjects=needle_subjects)
    out = Path(out_dir)
    mix = random.Random(f"{seed}-train-words-mix")
    subjects = random.Random(f"{seed}-train-words-needle-subjects")  # drawn only when there is a choice

    def needle(i: int) -> dict:
        if needles_per_doc != (1, 1):
            return multi_needle_document("train", i, seed, needles=needles_per_doc, filler=tuple(needle_filler),
                                         subjects=needle_subjects)
        subject = needle_subjects[0] if len(needle_subjects) == 1 else subjects.choice(needle_subjects)
        return word_needle_document("train", i, seed, filler=tuple(needle_filler), subject=subject)

    train = [needle(i) if mix.random() < needle_fraction else word_document("train", i, seed, value_first=value_first)
             for i in range(train_documents)]
    paths = {"train": out / "train.jsonl"}
    write_jsonl(paths["train"], instruction_rows(train, "synthetic_words", kind=True))
    counts = {"train": {**_counts(train), "needles": sum("needle" in d["id"] for d in train)}}
    for split in ("validation", "test"):
        files = {"": [word_document(split, i, seed) for i in range(heldout_documents)],
                 ".needle": [word_needle_document(split, i, seed) for i in range(heldout_documents)],
                 ".needle_bare": [word_needle_document(split, i, seed, filler=(0, 0))
                                  for i in range(heldout_documents)],
                 ".name_needle": [word_needle_document(split, i, seed, subject="name")
                                  for i in range(heldout_documents)],
                 ".place_needle": [word_needle_document(split, i, seed, subject="place")
                                   for i in range(heldout_documents)],
                 ".multi_needle": [multi_needle_document(split, i, seed) for i in range(heldout_documents)],
                 "_unseen": [word_document(split, i, seed, unseen=True) for i in range(heldout_documents)]}
        for suffix, documents in files.items():
            key = f"{split}{suffix}.eval"
            paths[key] = out / f"{key}.jsonl"
            write_jsonl(paths[key], documents)
            counts[f"{split}{suffix}"] = _counts(documents)
    from importlib.metadata import version

    write_json(out / "manifest.json", {
        "dataset": "synthetic_words", "seed": seed, "needle_fraction": needle_fraction,
        "needle_filler": list(needle_filler),
        **({"needle_subjects": list(needle_subjects)} if needle_subjects != ("word",) else {}),
        **({"needles_per_doc": list(needles_per_doc)} if needles_per_doc != (1, 1) else {}),
        **({"value_first": value_first} if value_first else {}),
        "faker": version("faker"),
        "held_out_relations": sorted(HELD_OUT_RELATIONS), "counts": counts,
        "list_sizes": {name: {side: len(v) for side, v in sides.items()} for name, sides in word_lists().items()},
        "files": {k: v.name for k, v in paths.items()},
    })
    return paths
