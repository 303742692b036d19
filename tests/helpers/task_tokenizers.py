"""A tokenizer for each built-in task, trained on the task's own generated text (cached).

    from helpers.task_tokenizers import tokenizer_for
    tok = tokenizer_for("ioi", "bpe")     # GPT-2-style: " Mary" is one token
    tok.save_pretrained(folder)            # beside a tiny model, for edgeprune.train(folder, "ioi")
"""
from __future__ import annotations

import functools
import itertools

from .tokenizers import byte_bpe, word_level

from edgeprune.tasks import boolean_expressions, gendered_pronoun, greater_than, ioi

DIGITS = [f"{i:02d}" for i in range(100)]


def task_texts(task: str, seeds=(101, 102), per_seed: int = 1500) -> list[str]:
    """Clean and corrupted prompts, with their answers, from seeds the tests do not use."""
    if task.startswith("boolean-expressions"):
        per_seed = min(per_seed, 200)  # few words, long prompts: a little text trains it
    if task in ("ioi", "ioi-t1"):
        streams = [ioi.candidates(ioi.TEMPLATES, s) for s in seeds]
    elif task == "gendered-pronoun":
        streams = [gendered_pronoun.candidates(s) for s in seeds]
    elif task == "greater-than":
        streams = [greater_than.candidates(s) for s in seeds[:1]]
    elif task.startswith("boolean-expressions"):
        streams = [boolean_expressions.candidates(s, instr) for s in seeds for instr in (False, True)]
    else:
        raise KeyError(task)
    texts = []
    for candidate in itertools.chain.from_iterable(itertools.islice(s, per_seed) for s in streams):
        texts.append(candidate.clean + (candidate.answer or ""))
        texts.append(candidate.corrupted + (candidate.distractor or ""))
    if task == "greater-than":
        texts += DIGITS * 5
    return texts


@functools.lru_cache(maxsize=None)
def tokenizer_for(task: str, kind: str = "bpe"):
    """kind: "word" (word-level), "bpe" (GPT-2-style byte-level BPE) or "word-bos" (adds a BOS)."""
    family = "boolean-expressions" if task.startswith("boolean-expressions") else task
    family = "ioi" if family == "ioi-t1" else family
    texts = task_texts(family)
    digits = family == "greater-than"
    if kind == "word":
        return word_level(texts, split_digit_pairs=digits)
    if kind == "word-bos":
        return word_level(texts, split_digit_pairs=digits, bos=True)
    if kind == "bpe":
        return byte_bpe(texts, vocab_size=1500, split_digit_pairs=digits)
    raise KeyError(kind)
