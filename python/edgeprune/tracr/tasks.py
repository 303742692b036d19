"""The Tracr tasks "tracr-reverse" and "tracr-xproportion" (method.md 4.1, 7).

Both use zero ablation, so an example's corrupted input is unused and set equal to the clean one.
Every split holds every input sequence, BOS prepended, in order of length then lexicographically:
the input space is tiny, the compiled model is exact on all of it, and the reference samples its
training and evaluation inputs from that same space. `n` takes a seeded random subset.
- reverse: every length 1..3 (3 + 9 + 27 = 39 inputs), right-padded in batches with the attention
  mask marking real tokens (the model masks padded keys, so a padded row computes exactly the
  unpadded program). With a single length, `length` would be constant and the head computing it
  (a0) would not be needed by the task: variable lengths keep every node of the program needed.
- xproportion: length 4 only (256 inputs): its loss is a softmax over the sequence axis, which
  padded positions would enter.

- reverse: loss positions are every position after BOS; the distribution is the softmax over the
  three output classes; KL summed over positions, then averaged over the batch. Metrics: "kl",
  "accuracy" (1 when the argmax at every position is the reversed input), "exact_match" (argmax
  equals the full model's everywhere).
- xproportion: loss positions are all positions, BOS included. log_probs reproduces the reference's
  quirk: a log-softmax over the SEQUENCE axis of residual dimension 0 (frac_prevs), so (B, P, D) ->
  (B, 1, P). position_reduction is "mean": kl_per_example then multiplies that one KL by the
  number of valid positions and divides by it again, i.e. returns it unchanged, which is the
  reference's batchmean. Metrics: "kl", "max_abs_error" (of dimension 0 against the true running
  fraction of "x", 0 at BOS, over every position), "accuracy" (1 when max_abs_error <= 0.05).
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..tasks import metrics as M
from ..tasks.base import Example, Task, TaskDataset
from .programs import check_name, load_model

SPLITS = ("train", "validation", "test", "eval")
TOLERANCE = 0.05  # xproportion: success when every position is within this of the true fraction


class TracrReverseTask(Task):
    name = "tracr-reverse"
    vocab = None
    position_reduction = "sum"
    max_length = None

    def metrics(self, circuit_logits, full_logits, batch):
        out = super().metrics(circuit_logits, full_logits, batch)  # kl, exact_match
        targets = _pad_labels(batch.labels, batch.position_mask.shape[1], -1, torch.long)
        out["accuracy"] = M.sequence_accuracy(circuit_logits, targets, batch.position_mask)
        return out


class TracrXProportionTask(Task):
    name = "tracr-xproportion"
    vocab = None
    position_reduction = "mean"  # see the module docstring
    max_length = None

    def __init__(self, output_dim: int = 0):
        self.output_dim = output_dim

    def log_probs(self, logits):
        """(B, P, D) outputs -> (B, 1, P): log-softmax over positions of dimension output_dim."""
        return F.log_softmax(logits[..., self.output_dim].float(), dim=-1).unsqueeze(1)

    def kl(self, circuit_logits, full_logits, batch):
        ones = torch.ones(batch.position_mask.shape[0], 1, dtype=torch.bool, device=circuit_logits.device)
        return M.kl_per_example(self.log_probs(circuit_logits), self.log_probs(full_logits), ones, "sum")

    def metrics(self, circuit_logits, full_logits, batch):
        values = circuit_logits[..., self.output_dim].float()
        truth = _pad_labels(batch.labels, values.shape[1], 0.0, torch.float32).to(values.device)
        mask = batch.position_mask.to(values.device)
        err = torch.where(mask, (values - truth).abs(), torch.zeros_like(values)).amax(-1)
        return {"kl": self.kl(circuit_logits, full_logits, batch), "max_abs_error": err,
                "accuracy": (err <= TOLERANCE).float()}


def _pad_labels(labels, width, fill, dtype):
    out = torch.full((len(labels), width), fill, dtype=dtype)
    for row, lab in enumerate(labels):
        out[row, :len(lab)] = torch.tensor(lab, dtype=dtype)
    return out


def default_lengths(name: str, config) -> tuple[int, ...]:
    """reverse: every length 1..max_seq_len; xproportion: max_seq_len only (module docstring)."""
    if name == "reverse":
        return tuple(range(1, config.max_seq_len + 1))
    return (config.max_seq_len,)


def _sequences(config, lengths) -> list[tuple]:
    return [seq for n in lengths for seq in itertools.product(config.vocab, repeat=n)]


def make_task(name: str, model=None) -> Task:
    name = check_name(name)
    if name == "reverse":
        return TracrReverseTask()
    model = model or load_model(name)
    return TracrXProportionTask(model.config.output_dim)


def dataset(name: str, split: str = "train", n: int | None = None, seed: int = 0, model=None,
            lengths=None) -> TaskDataset:
    """Every input of the program (or a seeded subset of n) as a TaskDataset; labels are the targets.

    reverse: label = the output class of the reversed token at each loss position.
    xproportion: label = the true running fraction of "x" at every position (0 at BOS).
    """
    name = check_name(name)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} for tracr-{name}; choose one of {', '.join(SPLITS)} "
                        "(all hold every input sequence)")
    model = model or load_model(name)
    config = model.config
    task = make_task(name, model)
    lengths = tuple(lengths) if lengths is not None else default_lengths(name, config)
    if not lengths or min(lengths) < 1 or max(lengths) > config.max_seq_len:
        raise UserError(f"lengths {lengths} must lie in 1..{config.max_seq_len} (the compiled max_seq_len)")
    examples = []
    for seq in _sequences(config, lengths):
        ids = model.encode(seq)
        text = " ".join(str(t) for t in seq)
        if name == "reverse":
            label = [config.output_encoding[t] for t in reversed(seq)]
            positions = list(range(1, len(ids)))
        else:
            hits = list(itertools.accumulate(int(t == "x") for t in seq))
            label = [0.0] + [h / (i + 1) for i, h in enumerate(hits)]
            positions = list(range(len(ids)))
        examples.append(Example(clean=ids, corrupted=list(ids), positions=positions, label=label, text=text))
    if n is not None:
        if n < 1:
            raise UserError(f"n must be positive, got {n}")
        g = torch.Generator().manual_seed(seed)
        keep = sorted(torch.randperm(len(examples), generator=g)[:n].tolist())
        examples = [examples[i] for i in keep]
    return TaskDataset(task, examples, split=split, pad_id=config.pad_id)


def reverse_dataset(tokenizer=None, split: str = "train", n: int | None = None, seed: int = 0) -> TaskDataset:
    """Registry factory for "tracr-reverse" (the tokenizer is unused: inputs are program tokens)."""
    return dataset("reverse", split=split, n=n, seed=seed)


def xproportion_dataset(tokenizer=None, split: str = "train", n: int | None = None, seed: int = 0) -> TaskDataset:
    """Registry factory for "tracr-xproportion"."""
    return dataset("xproportion", split=split, n=n, seed=seed)


FACTORIES = {"tracr-reverse": reverse_dataset, "tracr-xproportion": xproportion_dataset}
