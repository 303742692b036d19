"""Gendered Pronoun (Mathwin et al.): "So Mary is a really great friend, isn't" -> " she".

A sentence names one person and stops where the next word is their pronoun. The corrupted prompt
is the same sentence with a name of the other gender. The answer is " he" or " she" (in context),
the distractor the other one.
"""
from __future__ import annotations

import random

from .base import AnswerTask, TaskDataset
from .splits import Candidate, build
from .words import FEMALE_NAMES, MALE_NAMES

TEMPLATES = [
    "So {N} is a really great friend, isn't",
    "So {N} is such a good cook, isn't",
    "Yesterday {N} called to say that",
    "My friend {N} told me that",
    "After dinner, {N} told us that",
    "Before the game, {N} promised that",
    "On the phone, {N} explained that",
    "Last night {N} could not sleep because",
    "At the party, {N} was happy because",
    "In the morning, {N} woke up early because",
    "Our neighbour {N} is moving away because",
    "My cousin {N} always says that",
    "When {N} finished the race,",
    "Although {N} was tired,",
    "Because {N} was late for work,",
    "As soon as {N} opened the door,",
    "Ever since {N} moved to the city,",
    "Once {N} heard the news,",
    "Whenever {N} goes to the beach,",
    "The teacher asked {N} a question, and",
    "I met {N} at the station, and",
    "The doctor called {N} and asked whether",
    "Everyone knows that {N} loves music, because",
    "Every Sunday {N} visits the market, where",
    "Then {N} looked at the clock and realised that",
    "When the bus was late, {N} called home and said that",
    "Although it was raining, {N} went out because",
    "After the exam, {N} was relieved because",
    "Our manager {N} is always early, because",
    "So {N} is the best player on the team, isn't",
]

SIZES = {"train": 150, "validation": 150, "test": 1000}
FRACTIONS = {"train": 0.35, "validation": 0.15, "test": 0.5}


class GenderedPronounTask(AnswerTask):
    """Metrics: KL, logit difference (the right pronoun vs the other), accuracy, exact match."""
    name = "gendered-pronoun"
    position_reduction = "mean"
    max_length = 64


def candidates(seed: int):
    pool = [(t, name, "he") for t in range(len(TEMPLATES)) for name in MALE_NAMES]
    pool += [(t, name, "she") for t in range(len(TEMPLATES)) for name in FEMALE_NAMES]
    rng = random.Random(f"gendered-pronoun:{seed}")
    rng.shuffle(pool)
    for t, name, pronoun in pool:
        other = rng.choice(FEMALE_NAMES if pronoun == "he" else MALE_NAMES)
        clean = TEMPLATES[t].format(N=name)
        distractor = "she" if pronoun == "he" else "he"
        yield Candidate(key=clean, clean=clean, corrupted=TEMPLATES[t].format(N=other), answer=" " + pronoun,
                        distractor=" " + distractor, label=pronoun)


def dataset(tokenizer, split: str = "train", n: int | None = None, seed: int = 0) -> TaskDataset:
    """150 train, 150 validation and up to 1000 test examples by default."""
    return build(GenderedPronounTask(), candidates(seed), tokenizer, split, n, family="gendered-pronoun",
                 fractions=FRACTIONS, sizes=SIZES)
