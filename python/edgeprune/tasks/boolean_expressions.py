"""Boolean Expressions in the BIG-Bench Hard style: "not ( True and False ) or False is" -> True.

Two prompt formats, as in the paper's CodeLlama experiments (method.md 6):
- "boolean-expressions": few-shot, three fixed "<expression> is True/False" lines, then the test
  expression ending in " is"; the answer is the next token (" True" / " False").
- "boolean-expressions-instr": the Llama-2 chat wrapper asking for 'True' or 'False', the
  expression without " is", and the answer right after the opening quote.
The corrupted expression flips literals until its value is the other one, so it has the same
words, and is kept only if it tokenises to the same length.
"""
from __future__ import annotations

import random

from ..errors import UserError
from .base import AnswerTask, TaskDataset
from .splits import Candidate, build

DEMOS = [
    "( True or False ) and not True is False",
    "not ( False and True ) or False is True",
    "True and ( not False or False ) is True",
]
INSTRUCTION = ("[INST] <<SYS>>\nEvaluate the following boolean expression as either 'True' or 'False'.\n"
               "<</SYS>>\n\n{expression} [/INST] '")

SIZES = {"train": 8000, "validation": 200, "test": 1000}
FRACTIONS = {"train": 0.8, "validation": 0.05, "test": 0.15}


class BooleanExpressionsTask(AnswerTask):
    """Metrics: KL, accuracy (argmax is the right truth value), logit difference, exact match."""
    position_reduction = "mean"

    def __init__(self, name: str, max_length: int):
        self.name = name
        self.max_length = max_length


def evaluate(expression: str) -> bool:
    """The value of an expression of True, False, not, and, or and parentheses (space separated),
    with Python's precedence: not binds tighter than and, and tighter than or."""
    words = expression.split()
    value, end = _or(words, 0)
    if end != len(words):
        raise UserError(f"not a boolean expression: {expression!r}")
    return value


def _or(words, i):
    value, i = _and(words, i)
    while i < len(words) and words[i] == "or":
        right, i = _and(words, i + 1)
        value = value or right
    return value, i


def _and(words, i):
    value, i = _not(words, i)
    while i < len(words) and words[i] == "and":
        right, i = _not(words, i + 1)
        value = value and right
    return value, i


def _not(words, i):
    if words[i] == "not":
        value, i = _not(words, i + 1)
        return not value, i
    if words[i] == "(":
        value, i = _or(words, i + 1)
        if i >= len(words) or words[i] != ")":
            raise UserError(f"unbalanced parentheses in {' '.join(words)!r}")
        return value, i + 1
    if words[i] in ("True", "False"):
        return words[i] == "True", i + 1
    raise UserError(f"unexpected {words[i]!r} in {' '.join(words)!r}")


def random_expression(rng: random.Random, literals: int) -> str:
    if literals == 1:
        term = "not " * rng.choice((0, 0, 1, 2)) + rng.choice(("True", "False"))
        return f"( {term} )" if rng.random() < 0.2 else term
    left = rng.randint(1, literals - 1)
    text = f"{random_expression(rng, left)} {rng.choice(('and', 'or'))} {random_expression(rng, literals - left)}"
    if rng.random() < 0.5:
        text = f"( {text} )"
        if rng.random() < 0.4:
            text = "not " + text
    return text


def corrupt(rng: random.Random, expression: str) -> str | None:
    """The expression with one or two literals flipped so that its value changes, or None."""
    words = expression.split(" ")
    spots = [i for i, w in enumerate(words) if w in ("True", "False")]
    flips = [(i,) for i in spots] + [(i, j) for i in spots for j in spots if i < j]
    singles, pairs = flips[:len(spots)], flips[len(spots):]
    rng.shuffle(singles)
    rng.shuffle(pairs)
    value = evaluate(expression)
    for flip in singles + pairs:
        changed = list(words)
        for i in flip:
            changed[i] = "False" if changed[i] == "True" else "True"
        text = " ".join(changed)
        if evaluate(text) != value:
            return text
    return None


def candidates(seed: int, instruction: bool):
    rng = random.Random(f"boolean-expressions:{seed}")
    while True:
        expression = random_expression(rng, rng.randint(2, 4))
        corrupted = corrupt(rng, expression)
        if corrupted is None:
            continue
        value = evaluate(expression)
        answer, distractor = str(value), str(not value)
        if instruction:
            clean = INSTRUCTION.format(expression=expression)
            corr = INSTRUCTION.format(expression=corrupted)
        else:
            clean = "\n".join(DEMOS + [expression + " is"])
            corr = "\n".join(DEMOS + [corrupted + " is"])
            answer, distractor = " " + answer, " " + distractor
        yield Candidate(key=expression, clean=clean, corrupted=corr, answer=answer,
                        distractor=distractor, label=value)


def dataset(tokenizer, split: str = "train", n: int | None = None, seed: int = 0) -> TaskDataset:
    """Few-shot format: 8000 train, 200 validation, 1000 test examples by default."""
    return build(BooleanExpressionsTask("boolean-expressions", 72), candidates(seed, False), tokenizer, split, n,
                 family="boolean-expressions", fractions=FRACTIONS, sizes=SIZES,
                 max_draws=_max_draws(split, n))


def dataset_instr(tokenizer, split: str = "train", n: int | None = None, seed: int = 0) -> TaskDataset:
    """Instruction (Llama-2 chat) format, same expressions and sizes."""
    return build(BooleanExpressionsTask("boolean-expressions-instr", 64), candidates(seed, True), tokenizer, split,
                 n, family="boolean-expressions", fractions=FRACTIONS, sizes=SIZES,
                 max_draws=_max_draws(split, n))


def _max_draws(split, n):
    target = SIZES.get(split, 0) if n is None else n
    return 100 * target + 20000
