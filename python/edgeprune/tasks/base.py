"""The task interface the trainer and evaluator code against: examples, batches, loss and metrics.

A task says where the loss reads (positions), over which distribution (the whole vocabulary, or a
restricted set such as Greater-Than's 100 two-digit tokens) and how an example's KL over its
positions is reduced; a dataset holds tokenised clean/corrupted pairs and pads them into batches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UserError
from . import metrics as M


@dataclass
class Example:
    """One clean/corrupted pair, already tokenised.

    positions: where the loss and metrics read the output distribution; logits at position p
    predict token p + 1, so for next-token prediction this is the last prompt token.
    text / corrupted_text: the clean and corrupted prompts, for people and error messages.
    """
    clean: list[int]
    corrupted: list[int]
    positions: list[int]
    answer: int | None = None
    distractor: int | None = None
    label: Any = None
    text: str = ""
    corrupted_text: str = ""


@dataclass
class Batch:
    """Padded tensors for a list of examples (right padding, clean and corrupted to one length S)."""
    clean: torch.Tensor            # (B, S) long
    corrupted: torch.Tensor        # (B, S) long
    attention_mask: torch.Tensor   # (B, S) long: 1 on the clean sequence's real tokens
    positions: torch.Tensor        # (B, P) long, padded with 0
    position_mask: torch.Tensor    # (B, P) bool
    answers: torch.Tensor          # (B,) long, -1 where none
    distractors: torch.Tensor      # (B,) long, -1 where none
    labels: list = field(default_factory=list)
    indices: list[int] = field(default_factory=list)

    def to(self, device) -> "Batch":
        moved = {name: getattr(self, name).to(device) for name in
                 ("clean", "corrupted", "attention_mask", "positions", "position_mask", "answers", "distractors")}
        return Batch(**moved, labels=self.labels, indices=self.indices)

    def __len__(self) -> int:
        return self.clean.shape[0]


class Task:
    """What a task's loss and metrics read. Subclasses add their own metrics.

    vocab: token ids the distribution is restricted to and renormalised over (None: the full
    vocabulary). position_reduction: how an example's KL over its positions is reduced ("mean" or
    "sum"); the batch is then always averaged. max_length: generated examples whose prompt is longer
    are dropped (the reference trained at 64 tokens); None keeps every length.
    """
    name: str = "task"
    vocab: list[int] | None = None
    position_reduction: str = "mean"
    max_length: int | None = 64

    def log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, P, V) logits -> (B, P, V') log-probabilities the KL compares."""
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # float64 stays float64
        if self.vocab is not None:
            logits = logits.index_select(-1, torch.tensor(self.vocab, device=logits.device))
        return F.log_softmax(logits, dim=-1)

    def kl(self, circuit_logits: torch.Tensor, full_logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return M.kl_per_example(self.log_probs(circuit_logits), self.log_probs(full_logits),
                                batch.position_mask, self.position_reduction)

    def metrics(self, circuit_logits: torch.Tensor, full_logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-example metrics, each (B,). Logits are (B, P, V), gathered at batch.positions."""
        return {"kl": self.kl(circuit_logits, full_logits, batch),
                "exact_match": M.exact_match(circuit_logits, full_logits, batch.position_mask)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class AnswerTask(Task):
    """A task with one answer token (and a distractor) at its first loss position."""

    def metrics(self, circuit_logits, full_logits, batch):
        out = super().metrics(circuit_logits, full_logits, batch)
        first = circuit_logits[:, 0]
        out["accuracy"] = M.accuracy(first, batch.answers)
        if bool((batch.distractors >= 0).any()):
            out["logit_difference"] = M.logit_difference(first, batch.answers, batch.distractors)
        return out


class TaskDataset:
    """A split of a task: tokenised examples plus what padding needs.

    dropped: how many generated pairs failed the tokenizer checks (unequal lengths, an answer that
    is not one token, ...); drop_reasons counts them by reason.
    """

    def __init__(self, task: Task, examples: list[Example], split: str = "train", pad_id: int = 0,
                 dropped: int = 0, drop_reasons: dict[str, int] | None = None):
        self.task = task
        self.examples = list(examples)
        self.split = split
        self.pad_id = int(pad_id)
        self.dropped = int(dropped)
        self.drop_reasons = dict(drop_reasons or {})
        for index, example in enumerate(self.examples):
            _check_example(index, example)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]

    def __iter__(self):
        return iter(self.examples)

    def __repr__(self) -> str:
        return (f"TaskDataset(task={self.task.name!r}, split={self.split!r}, examples={len(self)}, "
                f"dropped={self.dropped})")

    def batch(self, indices, pad_to: int | None = None) -> Batch:
        """Right-pad the examples at `indices` to the batch maximum length, or to `pad_to`."""
        indices = [int(i) for i in indices]
        if not indices:
            raise UserError("cannot build a batch from no examples")
        examples = [self.examples[i] for i in indices]
        longest = max(len(e.clean) for e in examples)
        if pad_to is not None:
            for i, e in zip(indices, examples):
                if len(e.clean) > pad_to:
                    raise UserError(f"{self.task.name} example {i} has {len(e.clean)} tokens, more than "
                                    f"pad_to={pad_to}: {e.text!r}")
            length = pad_to
        else:
            length = longest
        width = max(len(e.positions) for e in examples)
        B = len(examples)
        clean = torch.full((B, length), self.pad_id, dtype=torch.long)
        corrupted = torch.full((B, length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((B, length), dtype=torch.long)
        positions = torch.zeros((B, width), dtype=torch.long)
        position_mask = torch.zeros((B, width), dtype=torch.bool)
        for row, e in enumerate(examples):
            n = len(e.clean)
            clean[row, :n] = torch.tensor(e.clean, dtype=torch.long)
            corrupted[row, :n] = torch.tensor(e.corrupted, dtype=torch.long)
            attention_mask[row, :n] = 1
            positions[row, :len(e.positions)] = torch.tensor(e.positions, dtype=torch.long)
            position_mask[row, :len(e.positions)] = True
        answers = torch.tensor([-1 if e.answer is None else e.answer for e in examples], dtype=torch.long)
        distractors = torch.tensor([-1 if e.distractor is None else e.distractor for e in examples], dtype=torch.long)
        return Batch(clean, corrupted, attention_mask, positions, position_mask, answers, distractors,
                     labels=[e.label for e in examples], indices=indices)


def _check_example(index: int, example: Example) -> None:
    """Reject pairs that cannot be batched: the clean and corrupted runs must line up token by token."""
    if len(example.clean) != len(example.corrupted):
        raise UserError(f"example {index}: the clean input has {len(example.clean)} tokens but the corrupted "
                        f"input has {len(example.corrupted)}; they must tokenise to the same length: "
                        f"{example.text!r}")
    if not example.positions:
        raise UserError(f"example {index} has no loss positions: {example.text!r}")
    if min(example.positions) < 0 or max(example.positions) >= len(example.clean):
        raise UserError(f"example {index}: loss positions {example.positions} fall outside its "
                        f"{len(example.clean)} tokens: {example.text!r}")
