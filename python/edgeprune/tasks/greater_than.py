"""Greater-Than (Hanna et al. 2023): "The war lasted from the year 1732 to the year 17" -> YY > 32.

The loss and metrics read only the 100 two-digit tokens "00".."99" (the first token of f"{i:02d}",
no leading space), renormalised. The corrupted prompt starts in year 01, which leaves no "greater
than" signal. Start years run from 02 to 98, so every example has later and earlier years.
"""
from __future__ import annotations

import random

import torch

from ..errors import UserError
from . import metrics as M
from .base import Example, Task, TaskDataset
from .encoding import Encoder
from .splits import Candidate, Drop, build

NOUNS = [
    "war", "expedition", "drought", "campaign", "contract", "occupation", "siege", "reign", "dynasty",
    "journey", "voyage", "trial", "project", "program", "investigation", "negotiation", "rebellion",
    "revolution", "crisis", "famine", "epidemic", "plague", "conflict", "festival", "marriage",
    "partnership", "alliance", "treaty", "strike", "blockade", "construction", "study", "tour",
    "pilgrimage", "rivalry", "friendship", "feud", "truce", "apprenticeship", "exile", "imprisonment",
    "career", "tradition", "boom", "recession", "migration", "experiment", "mission", "competition",
    "collaboration", "engagement", "quest",
]
YEARS = range(2, 99)
CENTURY = "17"
CORRUPT_YEAR = 1

SIZES = {"train": 150, "validation": 150, "test": 1000}
FRACTIONS = {"train": 0.6, "validation": 0.1, "test": 0.3}


def prompt(noun: str, yy: int) -> str:
    return f"The {noun} lasted from the year {CENTURY}{yy:02d} to the year {CENTURY}"


def digit_tokens(encoder: Encoder) -> list[int]:
    """The first token of "00".."99"; the task is undefined unless these are 100 distinct tokens."""
    tokens = [encoder.first_token(f"{i:02d}") for i in range(100)]
    if None in tokens or len(set(tokens)) != 100:
        raise UserError("greater-than needs a tokenizer whose first tokens of '00'..'99' are 100 distinct "
                        f"tokens; this one has {len(set(tokens) - {None})} (GPT-2's tokenizer qualifies)")
    return tokens


class GreaterThanTask(Task):
    """Metrics over the renormalised digit distribution at the last prompt token: KL, probability
    difference P(> YY) - P(< YY), PD10 (the same within YY-10..YY+10, windows clamped to 00..99,
    as the reference's eval/gt.py; its in-training variant wraps around, method.md 9.8) and
    Kendall's tau between the circuit's and the full model's digit probabilities."""
    name = "greater-than"
    position_reduction = "mean"
    max_length = 64

    def __init__(self, vocab: list[int]):
        self.vocab = list(vocab)

    def metrics(self, circuit_logits, full_logits, batch):
        out = super().metrics(circuit_logits, full_logits, batch)
        probs = self.log_probs(circuit_logits[:, :1])[:, 0].exp()
        full_probs = self.log_probs(full_logits[:, :1])[:, 0].exp()
        years = torch.tensor([int(label) for label in batch.labels], device=probs.device)
        out["probability_difference"] = probability_difference(probs, years)
        out["pd10"] = probability_difference(probs, years, window=10)
        out["kendall_tau"] = M.kendall_tau(probs, full_probs)
        return out


def probability_difference(probs: torch.Tensor, years: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """sum P(y > YY) - sum P(y < YY) over (B, 100) digit probabilities, optionally within +-window."""
    y = torch.arange(probs.shape[-1], device=probs.device).unsqueeze(0)
    yy = years.unsqueeze(1)
    above = y > yy
    below = y < yy
    if window is not None:
        above &= y <= yy + window
        below &= y >= yy - window
    return (probs * above).sum(-1) - (probs * below).sum(-1)


def candidates(seed: int):
    pool = [(noun, yy) for noun in NOUNS for yy in YEARS]
    random.Random(f"greater-than:{seed}").shuffle(pool)
    for noun, yy in pool:
        clean = prompt(noun, yy)
        yield Candidate(key=clean, clean=clean, corrupted=prompt(noun, CORRUPT_YEAR), label=yy)


def make_maker(vocab: list[int]):
    def make(candidate: Candidate, encoder: Encoder) -> Example:
        clean = encoder.encode(candidate.clean)
        corrupted = encoder.encode(candidate.corrupted)
        if len(clean) != len(corrupted):
            raise Drop("clean and corrupted prompts tokenise to different lengths")
        yy = candidate.label
        # The start year must split as "17" + "YY", so that the model sees YY as one digit token.
        start = candidate.clean[: candidate.clean.index(" to the year")]
        if encoder.encode(start)[-1] != vocab[yy]:
            raise Drop(f"the start year does not split into '{CENTURY}' + two digits")
        return Example(clean=clean, corrupted=corrupted, positions=[len(clean) - 1], answer=vocab[yy],
                       label=yy, text=candidate.clean,
                       corrupted_text=candidate.corrupted)
    return make


def dataset(tokenizer, split: str = "train", n: int | None = None, seed: int = 0) -> TaskDataset:
    """150 train, 150 validation and up to 1000 test examples by default."""
    vocab = digit_tokens(Encoder(tokenizer))
    return build(GreaterThanTask(vocab), candidates(seed), tokenizer, split, n, family="greater-than",
                 fractions=FRACTIONS, sizes=SIZES, make=make_maker(vocab))
