"""Tasks: tokenised clean/corrupted pairs, where the loss reads, and each task's metrics.

    data = edgeprune.tasks.get("ioi", tokenizer, split="train")      # a registered task
    data = edgeprune.tasks.load("pairs.jsonl", tokenizer)             # or any accepted data
"""
from __future__ import annotations

import os

from ..errors import UserError
from .base import AnswerTask, Batch, Example, Task, TaskDataset
from .registry import names, register
from .registry import factory as _factory
from .splits import MissingSplit
from . import custom as _custom

register("ioi", "edgeprune.tasks.ioi:dataset")
register("ioi-t1", "edgeprune.tasks.ioi:dataset_t1")
register("ioi-b", "edgeprune.tasks.ioi:dataset_b")
register("greater-than", "edgeprune.tasks.greater_than:dataset")
register("gendered-pronoun", "edgeprune.tasks.gendered_pronoun:dataset")
register("boolean-expressions", "edgeprune.tasks.boolean_expressions:dataset")
register("boolean-expressions-instr", "edgeprune.tasks.boolean_expressions:dataset_instr")
for _name in ("ioi", "mcqa", "arithmetic-addition", "arithmetic-subtraction", "arc-easy", "arc-challenge"):
    register(f"mib-{_name}", f"edgeprune.tasks.mib:{_name.replace('-', '_')}")   # MIB's own files (tasks/mib.py)
del _name


def get(name: str, tokenizer, split: str = "train", n: int | None = None, seed: int = 0) -> TaskDataset:
    """The `split` of a registered task, n examples (default: the paper's size), drawn with `seed`."""
    return _factory(name)(tokenizer, split=split, n=n, seed=seed)


def load(data, tokenizer, split: str = "train", n: int | None = None, seed: int = 0) -> TaskDataset:
    """A TaskDataset from a task name, a .jsonl path, a list of {"clean", "corrupted"[, "split"]}
    dicts, or a TaskDataset (returned as it is)."""
    if isinstance(data, TaskDataset):
        return data
    if isinstance(data, (list, tuple)):
        return _custom.dataset(list(data), tokenizer, split, n, seed)
    if isinstance(data, os.PathLike) or (isinstance(data, str) and data not in names() and os.path.exists(data)):
        return _custom.from_path(data, tokenizer, split, n, seed)
    if isinstance(data, str) and data.endswith((".jsonl", ".json")) and data not in names():
        raise UserError(f"no such file: {data!r}")
    if isinstance(data, str):
        return get(data, tokenizer, split, n, seed)
    raise TypeError(f"data must be a task name, a path to a .jsonl file, a list of dicts or a TaskDataset; "
                    f"got {type(data).__name__}")


def load_split(data, tokenizer, split: str, seed: int = 0) -> TaskDataset | None:
    """`load` for an optional split: None when the data has no such split, any other error raised."""
    try:
        return load(data, tokenizer, split=split, seed=seed)
    except MissingSplit:
        return None


__all__ = ["AnswerTask", "Batch", "Example", "MissingSplit", "Task", "TaskDataset", "get", "load", "load_split",
           "names", "register"]
