"""Indirect Object Identification (Wang et al. 2023), in the form Edge Pruning trains on.

"When Mary and John went to the store, John gave a drink to" -> " Mary". The first clause names
the indirect object (IO) and the subject (S) in either order (ABBA: IO first; BABA: S first); the
prompt stops before the IO's final mention, whose first token is the answer. The corrupted prompt
fills the same template with three other distinct names (ABC), so every position lines up.

"ioi-b" is the same task on different text: its own templates (TEMPLATES_B) and names (NAMES_B),
sharing none with "ioi", and its own train/validation/test splits. A model trained on one can
be checked against the other, so that no claim about circuits rests on one text distribution.
"""
from __future__ import annotations

import random

from .base import AnswerTask, TaskDataset
from .splits import Candidate, build
from .words import NAMES, NAMES_B, OBJECTS, PLACES

# {A} and {B} are the first clause's names, {S} the subject's second mention; the IO comes next.
TEMPLATES = [
    "Then, {A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "When {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to",
    "After {A} and {B} went to the {PLACE}, {S} handed a {OBJECT} to",
    "While {A} and {B} were working at the {PLACE}, {S} gave a {OBJECT} to",
    "Then, {A} and {B} found a {OBJECT} at the {PLACE}. {S} gave it to",
    "When {A} and {B} arrived at the {PLACE}, {S} passed a {OBJECT} to",
    "Yesterday {A} and {B} visited the {PLACE}, and {S} showed a {OBJECT} to",
    "At the {PLACE}, {A} and {B} were laughing. {S} threw a {OBJECT} to",
    "After the meeting at the {PLACE}, {A} and {B} stayed late. {S} lent a {OBJECT} to",
    "Afterwards, {A} and {B} went to the {PLACE}. {S} sent a {OBJECT} to",
    "Since {A} and {B} were hungry at the {PLACE}, {S} offered a {OBJECT} to",
    "Once {A} and {B} reached the {PLACE}, {S} passed the {OBJECT} to",
    "Later that day, {A} and {B} met at the {PLACE}. {S} sold a {OBJECT} to",
    "On Monday, {A} and {B} cleaned the {PLACE}. {S} gave the {OBJECT} to",
    "Then, {A} and {B} were talking at the {PLACE}. {S} brought a {OBJECT} to",
    "When {A} and {B} left the {PLACE}, {S} returned the {OBJECT} to",
    "The {PLACE} was busy, so {A} and {B} waited outside. {S} gave a {OBJECT} to",
    "Last week {A} and {B} worked at the {PLACE}, and {S} mailed a {OBJECT} to",
]

# "ioi-b"'s templates: none equals one of TEMPLATES.
TEMPLATES_B = [
    "As {A} and {B} walked into the {PLACE}, {S} tossed a {OBJECT} to",
    "Before {A} and {B} left the {PLACE}, {S} gave a {OBJECT} to",
    "{A} and {B} spent the morning at the {PLACE}. Later, {S} gave a {OBJECT} to",
    "During lunch at the {PLACE}, {A} and {B} chatted. {S} handed a {OBJECT} to",
    "On Friday, {A} and {B} drove to the {PLACE}, where {S} gave a {OBJECT} to",
    "After {A} and {B} had dinner at the {PLACE}, {S} brought a {OBJECT} to",
    "Every morning {A} and {B} walk to the {PLACE}, and {S} gives a {OBJECT} to",
    "Because {A} and {B} were late to the {PLACE}, {S} left a {OBJECT} for",
    "In the {PLACE}, {A} and {B} sat together. {S} passed a {OBJECT} to",
    "{A} met {B} at the {PLACE}, and then {S} bought a {OBJECT} for",
    "Soon after {A} and {B} got to the {PLACE}, {S} offered the {OBJECT} to",
    "When the {PLACE} opened, {A} and {B} went in, and {S} gave a {OBJECT} to",
]

SINGLE_TEMPLATE = ["When {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to"]

SIZES = {"train": 200, "validation": 200, "test": 1000}
FRACTIONS = {"train": 0.6, "validation": 0.1, "test": 0.3}


class IOITask(AnswerTask):
    """Metrics: KL, logit difference IO vs S, accuracy (argmax is the IO), exact match."""
    position_reduction = "mean"
    max_length = 64

    def __init__(self, name: str = "ioi"):
        self.name = name


def fill(template: str, io: str, s: str, order: str, place: str, obj: str) -> str:
    first, second = (io, s) if order == "ABBA" else (s, io)
    return template.format(A=first, B=second, S=s, PLACE=place, OBJECT=obj)


def candidates(templates: list[str], seed: int, names: list[str] = NAMES):
    """An endless seeded stream of IOI pairs, filling `templates` with `names`."""
    rng = random.Random(f"ioi:{seed}")
    while True:
        t = rng.randrange(len(templates))
        io, s, a, b, c = rng.sample(names, 5)
        order = rng.choice(("ABBA", "BABA"))
        place, obj = rng.choice(PLACES), rng.choice(OBJECTS)
        clean = fill(templates[t], io, s, order, place, obj)
        corrupted = templates[t].format(A=a, B=b, S=c, PLACE=place, OBJECT=obj)
        label = {"io": io, "s": s, "order": order, "template": t}
        yield Candidate(key=clean, clean=clean, corrupted=corrupted, answer=" " + io, distractor=" " + s,
                        label=label)


def dataset(tokenizer, split: str = "train", n: int | None = None, seed: int = 0) -> TaskDataset:
    """IOI over all templates: 200 train, 200 validation, 1000 test by default."""
    return build(IOITask("ioi"), candidates(TEMPLATES, seed), tokenizer, split, n, family="ioi",
                 fractions=FRACTIONS, sizes=SIZES, max_draws=_max_draws(split, n))


def dataset_t1(tokenizer, split: str = "train", n: int | None = None, seed: int = 0) -> TaskDataset:
    """IOI-t1: the same task with a single template."""
    return build(IOITask("ioi-t1"), candidates(SINGLE_TEMPLATE, seed), tokenizer, split, n, family="ioi",
                 fractions=FRACTIONS, sizes=SIZES, max_draws=_max_draws(split, n))


def dataset_b(tokenizer, split: str = "train", n: int | None = None, seed: int = 0) -> TaskDataset:
    """IOI-b: the same task over TEMPLATES_B and NAMES_B, with splits of its own."""
    return build(IOITask("ioi-b"), candidates(TEMPLATES_B, seed, NAMES_B), tokenizer, split, n, family="ioi-b",
                 fractions=FRACTIONS, sizes=SIZES, max_draws=_max_draws(split, n))


def _max_draws(split, n):
    target = SIZES.get(split, 0) if n is None else n
    return 100 * target + 20000
