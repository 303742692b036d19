"""Build a split of a generated task: assign candidates to splits, tokenise, drop and count failures.

A candidate's split is a fixed function of its key (a stable hash), independent of the seed, of n
and of the tokenizer, so train, validation and test never share a prompt whatever is asked for.
The seed only decides which candidates are drawn and in which order.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..errors import UserError
from .base import Example, Task, TaskDataset
from .encoding import Encoder

SPLITS = ("train", "validation", "test")


@dataclass
class Candidate:
    """A generated pair before tokenisation. key identifies the prompt for dedup and splitting."""
    key: str
    clean: str
    corrupted: str
    answer: str | None = None        # continuation text whose token is the answer, e.g. " Mary"
    distractor: str | None = None
    label: Any = None


class MissingSplit(UserError):
    """The data has no examples of the asked split (a JSONL file whose lines name other splits)."""


class Drop(Exception):
    """Raised by an example maker when a candidate fails a tokenizer check; the message is the reason."""


def split_of(family: str, key: str, fractions: dict[str, float]) -> str:
    digest = hashlib.blake2b(f"{family}\x00{key}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2 ** 64
    edge = 0.0
    for split in SPLITS:
        edge += fractions[split]
        if u < edge:
            return split
    return SPLITS[-1]


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def build(task: Task, candidates: Iterable[Candidate], tokenizer, split: str, n: int | None, *,
          family: str, fractions: dict[str, float], sizes: dict[str, int],
          make: Callable[[Candidate, Encoder], Example] | None = None, max_draws: int | None = None) -> TaskDataset:
    """Collect n examples (default sizes[split]) of `split` from a seeded candidate stream.

    make turns a candidate into an Example or raises Drop. The test split may come out smaller than
    its default size when the task has fewer distinct examples; any other shortfall is an error.
    """
    check_split(split)
    if n is not None and n < 1:
        raise UserError(f"n must be a positive number of examples, got {n}")
    encoder = Encoder(tokenizer)
    make = make or prompt_example
    target = sizes[split] if n is None else n
    max_tried = max(2000, 20 * target)
    seen: set[str] = set()
    examples: list[Example] = []
    reasons: Counter = Counter()
    samples: dict[str, str] = {}
    tried = 0

    def finished() -> bool:
        return len(examples) == target or tried >= max_tried or (tried >= 500 and not examples)

    for chunk in _chunks(candidates, family, fractions, split, seen, max_draws):
        encoder.prefetch([text for c in chunk for text in (c.clean, c.corrupted) + _continued(c)])
        for candidate in chunk:
            tried += 1
            try:
                example = make(candidate, encoder)
                if task.max_length is not None and len(example.clean) > task.max_length:
                    raise Drop(f"the prompt is longer than {task.max_length} tokens")
                examples.append(example)
            except Drop as drop:
                reason = str(drop)
                reasons[reason] += 1
                samples.setdefault(reason, _describe(candidate))
            if finished():
                break
        if finished():
            break
    dropped = sum(reasons.values())
    short = len(examples) < target
    if short and (n is not None or split != "test" or not examples):
        raise UserError(_shortfall(task.name, split, target, n, examples, tried, reasons, samples))
    return TaskDataset(task, examples, split=split, pad_id=encoder.pad_id, dropped=dropped,
                       drop_reasons=dict(reasons))


def _chunks(candidates, family, fractions, split, seen, max_draws, size: int = 128):
    """New candidates of `split`, in chunks so that a chunk is tokenised in one call."""
    chunk = []
    for draws, candidate in enumerate(candidates, start=1):
        if max_draws is not None and draws > max_draws:
            break
        if candidate.key in seen or split_of(family, candidate.key, fractions) != split:
            continue
        seen.add(candidate.key)
        chunk.append(candidate)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _continued(candidate: Candidate) -> tuple[str, ...]:
    return tuple(candidate.clean + text for text in (candidate.answer, candidate.distractor) if text is not None)


def _shortfall(name, split, target, n, examples, tried, reasons, samples) -> str:
    asked = f"n={n}" if n is not None else f"the default {target}"
    message = f"{name}: could only build {len(examples)} {split} examples, but {asked} were asked for"
    if not reasons:
        return message + f"; the task has no more distinct {split} examples (pass a smaller n)"
    message += f"; {sum(reasons.values())} of {tried} generated pairs failed the tokenizer checks:"
    for reason, count in reasons.most_common():
        message += f"\n  {count} x {reason} (e.g. {samples[reason]})"
    if not examples:
        message += ("\nThis tokenizer cannot express the task (for example, it splits every name or answer "
                    "into several tokens); use a tokenizer with single-token names, such as GPT-2's.")
    return message


def _describe(candidate: Candidate) -> str:
    text = repr(candidate.clean)
    return text if candidate.answer is None else f"{text} -> {candidate.answer!r}"


def prompt_example(candidate: Candidate, encoder: Encoder) -> Example:
    """The common case: a next-token prompt whose answer (and distractor) must be single tokens."""
    clean = encoder.encode(candidate.clean)
    corrupted = encoder.encode(candidate.corrupted)
    if len(clean) != len(corrupted):
        raise Drop("clean and corrupted prompts tokenise to different lengths")
    answer = single_token(encoder, clean, candidate.clean, candidate.answer, "answer")
    distractor = single_token(encoder, clean, candidate.clean, candidate.distractor, "distractor")
    return Example(clean=clean, corrupted=corrupted, positions=[len(clean) - 1], answer=answer,
                   distractor=distractor, label=candidate.label, text=candidate.clean,
                   corrupted_text=candidate.corrupted)


def single_token(encoder: Encoder, prompt_ids: list[int], prompt: str, text: str | None, role: str) -> int | None:
    """The one token `text` adds after the prompt, or Drop if it takes several."""
    if text is None:
        return None
    ids = encoder.continuation(prompt_ids, prompt, text)
    if ids is None:
        raise Drop(f"the {role} merges with the prompt's last token")
    if len(ids) != 1:
        raise Drop(f"the {role} is not a single token")
    return ids[0]
